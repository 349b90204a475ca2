//! Framing over a Unix stream socket: whole messages in and out, file
//! descriptors over `SCM_RIGHTS`, every wait bounded by a deadline.
//!
//! All socket I/O is non-blocking (`MSG_DONTWAIT`) after a `poll` with the
//! remaining time, so a stalled peer can hold a caller at most until its
//! deadline. Sends use `MSG_NOSIGNAL`: a vanished peer is an `EPIPE` error,
//! never a `SIGPIPE`.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::proto::{Header, HEADER_SIZE};

/// Most file descriptors one message can carry. Descriptors beyond this are
/// closed by the kernel (the control buffer is truncated) and the message is
/// flagged; descriptors beyond the caller's own limit are closed by us.
pub const MAX_FDS: usize = 16;

/// Why a message could not be received or sent.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The peer closed the connection. `partial`: in the middle of a message.
    Eof { partial: bool },
    /// The deadline passed. `partial`: some bytes of the message were
    /// already transferred, so the stream is out of step.
    Timeout { partial: bool },
    /// The header declares a size below the header size.
    SizeTooSmall(Header),
    /// The header declares a size above the limit.
    SizeTooLarge(Header),
    /// Any other socket error.
    Io(io::Error),
}

/// One received message.
#[derive(Debug)]
pub(crate) struct Message {
    pub header: Header,
    pub payload: Vec<u8>,
    pub fds: Vec<OwnedFd>,
    /// More descriptors arrived than could be kept; the extras are closed.
    pub fds_truncated: bool,
}

/// Descriptors collected while receiving one message.
struct FdBag {
    fds: Vec<OwnedFd>,
    truncated: bool,
    max: usize,
}

impl FdBag {
    fn push(&mut self, fd: OwnedFd) {
        if self.fds.len() < self.max {
            self.fds.push(fd);
        } else {
            // Dropping closes it.
            self.truncated = true;
        }
    }
}

/// Time left until `deadline` (`None`: wait forever).
pub(crate) fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// `now + d`, or no deadline if that is not representable.
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// Wait until any of `fds` is ready or the deadline passes. Returns the
/// ready mask per fd (all empty on timeout).
pub(crate) fn poll_fds(
    fds: &[(BorrowedFd<'_>, PollFlags)],
    deadline: Option<Instant>,
) -> io::Result<Vec<PollFlags>> {
    loop {
        let mut pfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|(fd, ev)| PollFd::from_borrowed_fd(*fd, *ev))
            .collect();
        let left = remaining(deadline);
        let ts = left.map(timespec);
        match rustix::event::poll(&mut pfds, ts.as_ref()) {
            Ok(_) => return Ok(pfds.iter().map(|p| p.revents()).collect()),
            Err(Errno::INTR) => {
                if left.is_some_and(|l| l.is_zero()) {
                    return Ok(vec![PollFlags::empty(); fds.len()]);
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Wait for `events` on one fd. `Ok(false)`: deadline passed.
fn wait_one(fd: BorrowedFd<'_>, events: PollFlags, deadline: Option<Instant>) -> io::Result<bool> {
    let ready = poll_fds(&[(fd, events)], deadline)?;
    Ok(ready.first().is_some_and(|r| !r.is_empty()))
}

/// One `recvmsg` into `buf`, descriptors into `bag`. `Ok(0)` is end of file.
fn recv_some(fd: BorrowedFd<'_>, buf: &mut [u8], bag: &mut FdBag) -> Result<usize, Errno> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = rustix::net::recvmsg(
        fd,
        &mut iov,
        &mut control,
        RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    )?;
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        bag.truncated = true;
    }
    for cmsg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = cmsg {
            for fd in fds {
                bag.push(fd);
            }
        }
    }
    Ok(msg.bytes)
}

/// Fill `buf` completely. `started`: bytes of this message were already
/// received before this call (for the `partial` flag of errors).
fn recv_exact(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    deadline: Option<Instant>,
    bag: &mut FdBag,
    started: bool,
) -> Result<(), WireError> {
    let mut done = 0usize;
    while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
        let partial = started || done > 0;
        match recv_some(fd, rest, bag) {
            Ok(0) => return Err(WireError::Eof { partial }),
            Ok(n) => done = done.saturating_add(n),
            Err(Errno::AGAIN) | Err(Errno::INTR) => match wait_one(fd, PollFlags::IN, deadline) {
                Ok(true) => {}
                Ok(false) => return Err(WireError::Timeout { partial }),
                Err(e) => return Err(WireError::Io(e)),
            },
            Err(Errno::CONNRESET) => return Err(WireError::Eof { partial }),
            Err(e) => return Err(WireError::Io(e.into())),
        }
    }
    Ok(())
}

/// Receive one whole message: the header, then exactly the declared payload.
///
/// `max_size` caps the declared size (header included); `max_fds` caps the
/// descriptors kept (extras are closed and `fds_truncated` is set).
pub(crate) fn recv_message(
    fd: BorrowedFd<'_>,
    deadline: Option<Instant>,
    max_size: u32,
    max_fds: usize,
) -> Result<Message, WireError> {
    let mut bag = FdBag {
        fds: Vec::new(),
        truncated: false,
        max: max_fds.min(MAX_FDS),
    };
    let mut hdr = [0u8; HEADER_SIZE];
    recv_exact(fd, &mut hdr, deadline, &mut bag, false)?;
    let header = Header::decode(&hdr).ok_or(WireError::Eof { partial: true })?;
    if (header.size as usize) < HEADER_SIZE {
        return Err(WireError::SizeTooSmall(header));
    }
    if header.size > max_size {
        return Err(WireError::SizeTooLarge(header));
    }
    let payload_len = (header.size as usize).saturating_sub(HEADER_SIZE);
    let mut payload = vec![0u8; payload_len];
    recv_exact(fd, &mut payload, deadline, &mut bag, true)?;
    Ok(Message {
        header,
        payload,
        fds: bag.fds,
        fds_truncated: bag.truncated,
    })
}

/// Send `header` + `payload` with `fds` attached to the first byte.
pub(crate) fn send_message(
    fd: BorrowedFd<'_>,
    header: &Header,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
    deadline: Option<Instant>,
) -> Result<(), WireError> {
    let hdr = header.encode();
    let total = HEADER_SIZE.saturating_add(payload.len());
    let mut sent = 0usize;
    while sent < total {
        let partial = sent > 0;
        let (a, b): (&[u8], &[u8]) = if sent < HEADER_SIZE {
            (hdr.get(sent..).unwrap_or_default(), payload)
        } else {
            (
                payload
                    .get(sent.saturating_sub(HEADER_SIZE)..)
                    .unwrap_or_default(),
                &[],
            )
        };
        let iov = [io::IoSlice::new(a), io::IoSlice::new(b)];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if sent == 0 && !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(WireError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot pass more than {MAX_FDS} file descriptors"),
            )));
        }
        match rustix::net::sendmsg(
            fd,
            &iov,
            &mut control,
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        ) {
            Ok(0) => return Err(WireError::Eof { partial }),
            Ok(n) => sent = sent.saturating_add(n),
            Err(Errno::AGAIN) | Err(Errno::INTR) => match wait_one(fd, PollFlags::OUT, deadline) {
                Ok(true) => {}
                Ok(false) => return Err(WireError::Timeout { partial }),
                Err(e) => return Err(WireError::Io(e)),
            },
            Err(Errno::PIPE) | Err(Errno::CONNRESET) => return Err(WireError::Eof { partial }),
            Err(e) => return Err(WireError::Io(e.into())),
        }
    }
    Ok(())
}
