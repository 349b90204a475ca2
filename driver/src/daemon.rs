//! The firmware API through `hitlessd`, the host daemon that owns a card
//! and serves many applications (`--card daemon:PATH`).
//!
//! [`wire`] moves frames ([`hitless_proto::daemon`]) over the Unix socket,
//! large data in a sealed memfd passed with `SCM_RIGHTS`; the daemon uses
//! the same functions. [`DaemonClient`] is the application's side: the
//! [`Firmware`] operations, with the errors the direct path gives.

use crate::error::{Error, Result};
use crate::firmware::{
    check_set_size, checked_set, tier_flag, Firmware, FwStatus, HeapVersion, LogRead, OpenFlags,
    Secret, Session,
};
use hitless_hdl::contract::crc32c;
use hitless_proto::message::Request;
use hitless_proto::msg::{flags, tag, SetInfo, HEAP_PAGE_BYTES, HEAP_REQUEST_PAGES};
use hitless_proto::tlv::Message;
use hitless_proto::Response;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The daemon's socket when none is named (and `hitless` finds it there,
/// it uses the daemon rather than opening the card itself).
pub const DEFAULT_SOCKET: &str = "/run/hitless/hitlessd.sock";

pub mod wire {
    //! Frames on the daemon's socket. Every read is bounded: a whole frame
    //! must arrive within its timeout once its first byte has, and no frame
    //! is larger than the protocol's limits.

    use hitless_proto::daemon::{FrameError, Header, FD_THRESHOLD, HEADER_BYTES};
    use rustix::fs::{MemfdFlags, SealFlags};
    use rustix::net::{
        RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
        SendAncillaryMessage, SendFlags,
    };
    use std::io::{IoSlice, IoSliceMut};
    use std::mem::MaybeUninit;
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    /// One frame: its message and its data.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub struct Frame {
        pub msg: Vec<u8>,
        pub data: Vec<u8>,
    }

    /// Why a frame could not be moved.
    #[derive(Debug, thiserror::Error)]
    pub enum WireError {
        #[error("socket: {0}")]
        Io(#[from] std::io::Error),
        #[error(transparent)]
        Frame(#[from] FrameError),
        #[error("the peer closed the connection in the middle of a frame")]
        Truncated,
        #[error("no frame within {0:?}")]
        Timeout(Duration),
        #[error("no request for {0:?}")]
        Idle(Duration),
        #[error("frame data: {0}")]
        Fd(&'static str),
    }

    fn io(e: rustix::io::Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(e.raw_os_error())
    }

    /// Send one frame. Data of [`FD_THRESHOLD`] bytes or more goes in a
    /// memfd sealed against any change, so the receiver can trust its size.
    pub fn send(sock: &UnixStream, msg: &[u8], data: &[u8]) -> Result<(), WireError> {
        let in_fd = data.len() >= FD_THRESHOLD;
        let header = Header::new(msg.len(), data.len(), in_fd)?.encode();
        let memfd = if in_fd {
            Some(sealed_memfd(data)?)
        } else {
            None
        };
        let inline: &[u8] = if in_fd { &[] } else { data };
        let parts = [&header[..], msg, inline];
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut sent = 0;
        while sent < total {
            // The slices still to send.
            let mut skip = sent;
            let mut iov = Vec::with_capacity(3);
            for p in parts {
                if skip >= p.len() {
                    skip -= p.len();
                } else {
                    iov.push(IoSlice::new(&p[skip..]));
                    skip = 0;
                }
            }
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            let fds;
            if sent == 0 {
                if let Some(fd) = &memfd {
                    fds = [fd.as_fd()];
                    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
                        return Err(WireError::Fd("no room for the descriptor"));
                    }
                }
            }
            match rustix::net::sendmsg(sock, &iov, &mut control, SendFlags::NOSIGNAL) {
                Ok(0) => return Err(WireError::Truncated),
                Ok(n) => sent += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => {
                    return Err(WireError::Timeout(
                        sock.write_timeout()?.unwrap_or_default(),
                    ))
                }
                Err(e) => return Err(io(e).into()),
            }
        }
        Ok(())
    }

    fn sealed_memfd(data: &[u8]) -> Result<OwnedFd, WireError> {
        let fd = rustix::fs::memfd_create(
            "hitless-frame",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .map_err(io)?;
        let mut at = 0;
        while at < data.len() {
            match rustix::io::pwrite(&fd, &data[at..], at as u64) {
                Ok(0) => return Err(WireError::Fd("memfd write made no progress")),
                Ok(n) => at += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(io(e).into()),
            }
        }
        rustix::fs::fcntl_add_seals(
            &fd,
            SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
        )
        .map_err(io)?;
        Ok(fd)
    }

    /// Receive one frame. Waits at most `idle` for its first byte
    /// (`Ok(None)` when the peer closed the connection between frames),
    /// then at most `frame` for the rest.
    pub fn recv(
        sock: &UnixStream,
        idle: Duration,
        frame: Duration,
    ) -> Result<Option<Frame>, WireError> {
        let mut fds: Vec<OwnedFd> = Vec::new();
        let mut header = [0u8; HEADER_BYTES];
        let mut deadline = None;
        let got = fill(sock, &mut header, &mut fds, idle, frame, &mut deadline)?;
        if got == 0 {
            return Ok(None);
        }
        if got < HEADER_BYTES {
            return Err(WireError::Truncated);
        }
        let h = Header::decode(&header)?;
        let mut msg = vec![0u8; h.msg_len as usize];
        if fill(sock, &mut msg, &mut fds, idle, frame, &mut deadline)? < msg.len() {
            return Err(WireError::Truncated);
        }
        let data = if h.data_in_fd() {
            let fd = match (fds.pop(), fds.is_empty()) {
                (Some(fd), true) => fd,
                (None, _) => return Err(WireError::Fd("the frame's descriptor is missing")),
                (Some(_), false) => return Err(WireError::Fd("more than one descriptor")),
            };
            read_fd(&fd, h.data_len as usize)?
        } else {
            if !fds.is_empty() {
                return Err(WireError::Fd("a descriptor on a frame with inline data"));
            }
            let mut data = vec![0u8; h.data_len as usize];
            if fill(sock, &mut data, &mut fds, idle, frame, &mut deadline)? < data.len() {
                return Err(WireError::Truncated);
            }
            data
        };
        Ok(Some(Frame { msg, data }))
    }

    /// Busy-poll the socket for at most `spin`: true as soon as a frame
    /// (or the end of the stream) is there to read, false when `spin`
    /// passed without one. Waiting this way instead of sleeping spares
    /// the sender a wake-up of this thread: on a machine whose idle CPUs
    /// halt (a VM's vCPUs above all) that wake-up costs tens of
    /// microseconds, more than the daemon's own work on a request.
    /// Costs at most `spin` of one CPU.
    pub fn spin_until_readable(sock: &UnixStream, spin: Duration) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        if spin.is_zero() {
            return false;
        }
        let start = Instant::now();
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            let mut fds = [PollFd::new(sock, PollFlags::IN)];
            match poll(&mut fds, Some(&zero)) {
                Ok(n) if n > 0 => return true,
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                // Let the blocking read report the socket's error.
                Err(_) => return true,
            }
            if start.elapsed() >= spin {
                return false;
            }
            // Let a thread waiting for this CPU run (the application being
            // woken by the answer, often on this very CPU).
            std::thread::yield_now();
        }
    }

    /// Read `len` bytes at offset 0 of a received descriptor (pread: a
    /// sender that truncates its file gets an error, not this side a
    /// SIGBUS).
    fn read_fd(fd: &OwnedFd, len: usize) -> Result<Vec<u8>, WireError> {
        let mut data = vec![0u8; len];
        let mut at = 0;
        while at < len {
            match rustix::io::pread(fd, &mut data[at..], at as u64) {
                Ok(0) => {
                    return Err(WireError::Fd(
                        "the descriptor holds fewer bytes than the frame says",
                    ))
                }
                Ok(n) => at += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return Err(WireError::Fd("the descriptor cannot be read")),
            }
        }
        Ok(data)
    }

    /// Fill `buf` from the socket, collecting descriptors; returns the bytes
    /// read (fewer than `buf.len()` only at end of stream). The frame's
    /// deadline starts with its first byte.
    fn fill(
        sock: &UnixStream,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
        idle: Duration,
        frame: Duration,
        deadline: &mut Option<Instant>,
    ) -> Result<usize, WireError> {
        let mut at = 0;
        // First without waiting: most of a frame is there already (it is
        // sent in one call), and then the timeout need not be set (a
        // system call per read saved).
        let mut block = false;
        while at < buf.len() {
            let mut how = RecvFlags::CMSG_CLOEXEC;
            if block {
                let wait = match *deadline {
                    None => idle,
                    Some(d) => d.saturating_duration_since(Instant::now()),
                };
                if wait.is_zero() {
                    return Err(WireError::Timeout(frame));
                }
                sock.set_read_timeout(Some(wait))?;
            } else {
                how |= RecvFlags::DONTWAIT;
            }
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut buf[at..])];
            match rustix::net::recvmsg(sock, &mut iov, &mut control, how) {
                Ok(r) => {
                    for m in control.drain() {
                        if let RecvAncillaryMessage::ScmRights(rights) = m {
                            fds.extend(rights);
                        }
                    }
                    if fds.len() > 1 {
                        return Err(WireError::Fd("more than one descriptor"));
                    }
                    if r.bytes == 0 {
                        return Ok(at);
                    }
                    at += r.bytes;
                    deadline.get_or_insert_with(|| Instant::now() + frame);
                    block = false;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) if !block => block = true,
                Err(rustix::io::Errno::AGAIN) => {
                    return Err(if deadline.is_some() {
                        WireError::Timeout(frame)
                    } else {
                        WireError::Idle(idle)
                    })
                }
                Err(e) => return Err(io(e).into()),
            }
        }
        Ok(at)
    }
}

/// The firmware API through `hitlessd`.
pub struct DaemonClient {
    sock: UnixStream,
    path: PathBuf,
    timeout: Duration,
}

fn unexpected(r: &Response) -> Error {
    Error::BadCompletion(format!("unexpected daemon response {r:?}"))
}

fn wire_err(path: &Path) -> impl Fn(wire::WireError) -> Error + '_ {
    move |e| match e {
        wire::WireError::Timeout(after) | wire::WireError::Idle(after) => Error::Timeout {
            what: "hitlessd's answer",
            after,
        },
        e => Error::transport(format!("hitlessd at {}", path.display()), e),
    }
}

impl DaemonClient {
    /// Connect to the daemon at `path`; each request waits at most
    /// `timeout` for its answer (plus the time the daemon allows the card).
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self> {
        let sock = UnixStream::connect(path).map_err(|e| {
            Error::transport(format!("connect to hitlessd at {}", path.display()), e)
        })?;
        sock.set_write_timeout(Some(timeout))
            .map_err(|e| Error::transport("socket timeout", e))?;
        Ok(Self {
            sock,
            path: path.to_path_buf(),
            timeout,
        })
    }

    /// Send raw frame bytes and read one answer (tests of the daemon's
    /// input checking): the answer's message and data.
    pub fn raw(&mut self, msg: &[u8], data: &[u8]) -> Result<wire::Frame> {
        wire::send(&self.sock, msg, data).map_err(wire_err(&self.path))?;
        self.answer()
    }

    fn answer(&mut self) -> Result<wire::Frame> {
        match wire::recv(&self.sock, self.timeout, self.timeout) {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(Error::transport_msg(format!(
                "hitlessd at {} closed the connection",
                self.path.display()
            ))),
            Err(e) => Err(wire_err(&self.path)(e)),
        }
    }

    /// One request and its answer; a refusal is `Error::Firmware`, as on
    /// the direct path.
    fn call(
        &mut self,
        r: &Request,
        handle: Option<u32>,
        data: &[u8],
    ) -> Result<(Response, Vec<u8>)> {
        let kind = r.kind();
        let m = r.encode();
        let m = match handle {
            Some(h) if Request::needs_session(kind) => m.u32(tag::HANDLE, h),
            _ => m,
        };
        let f = self.raw(m.finish().as_slice(), data)?;
        let msg = Message::decode(&f.msg).map_err(hitless_proto::message::ResponseError::from)?;
        match Response::decode(kind, &msg)? {
            Ok(r) => Ok((r, f.data)),
            Err(f) => Err(f.into()),
        }
    }

    fn signed(&mut self, s: &Session, r: &Request, data: &[u8]) -> Result<(Response, Vec<u8>)> {
        self.call(r, Some(s.handle), data)
    }

    fn sets(r: Response) -> Result<Vec<SetInfo>> {
        match r {
            Response::Sets { sets, .. } => Ok(sets),
            other => Err(unexpected(&other)),
        }
    }

    fn done(r: Response) -> Result<()> {
        match r {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn heap_version(r: Response) -> Result<HeapVersion> {
        match r {
            Response::HeapVersion(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    fn heap_versions_of(r: Response) -> Result<Vec<HeapVersion>> {
        match r {
            Response::HeapVersions { versions } => Ok(versions),
            other => Err(unexpected(&other)),
        }
    }
}

/// The bytes of a set or record the answer's data holds at `offset`.
fn slice(data: &[u8], offset: u32, len: u32) -> Result<Vec<u8>> {
    let (o, l) = (offset as usize, len as usize);
    o.checked_add(l)
        .and_then(|end| data.get(o..end))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            Error::BadCompletion(format!(
                "hitlessd answered {l} bytes at {o} of {} bytes of data",
                data.len()
            ))
        })
}

impl Firmware for DaemonClient {
    fn status(&mut self) -> Result<FwStatus> {
        match self.call(&Request::Status, None, &[])?.0 {
            Response::Status(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    fn open_app(
        &mut self,
        app: u32,
        what: OpenFlags,
        _secret: Option<&Secret>,
    ) -> Result<(Session, Option<Secret>)> {
        let r = Request::Open { app, flags: what.0 };
        match self.call(&r, None, &[])?.0 {
            Response::Opened { handle, key, .. } => {
                Ok((Session::through_daemon(app, handle, key), None))
            }
            other => Err(unexpected(&other)),
        }
    }

    fn close(&mut self, s: &Session) -> Result<()> {
        Self::done(self.signed(s, &Request::Close, &[])?.0)
    }

    fn store(
        &mut self,
        s: &Session,
        object: u32,
        endpoint: u32,
        stage: u32,
        cold: bool,
        data: &[u8],
    ) -> Result<()> {
        check_set_size(data.len())?;
        let r = Request::Store {
            object,
            endpoint,
            stage,
            flags: tier_flag(cold),
            addr: 0,
            len: data.len() as u32,
            crc: crc32c(data),
        };
        match self.signed(s, &r, data)?.0 {
            Response::Stored { .. } => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn delete(&mut self, s: &Session, object: u32) -> Result<()> {
        self.delete_from(s, object, 0)
    }

    fn delete_from(&mut self, s: &Session, object: u32, endpoint: u32) -> Result<()> {
        Self::done(
            self.signed(s, &Request::Delete { object, endpoint }, &[])?
                .0,
        )
    }

    fn restore(&mut self, s: &Session, object: u32) -> Result<(SetInfo, Vec<u8>)> {
        self.restore_from(s, object, 0)
    }

    fn restore_from(
        &mut self,
        s: &Session,
        object: u32,
        endpoint: u32,
    ) -> Result<(SetInfo, Vec<u8>)> {
        let r = Request::Restore {
            object,
            endpoint,
            addr: 0,
            cap: hitless_proto::daemon::MAX_DATA,
        };
        let (r, data) = self.signed(s, &r, &[])?;
        let info = *Self::sets(r)?
            .first()
            .ok_or_else(|| Error::BadCompletion("RESTORE without the set's record".into()))?;
        checked_set(&info, slice(&data, info.data_offset, info.len)?)
    }

    fn list(&mut self, s: &Session) -> Result<Vec<SetInfo>> {
        self.list_from(s, 0)
    }

    fn list_from(&mut self, s: &Session, endpoint: u32) -> Result<Vec<SetInfo>> {
        Self::sets(self.signed(s, &Request::List { endpoint }, &[])?.0)
    }

    fn announce(&mut self, stage: u32) -> Result<Vec<SetInfo>> {
        Self::sets(self.call(&Request::Stage { stage }, None, &[])?.0)
    }

    fn fetch(&mut self, s: &Session, stage: u32) -> Result<Vec<(SetInfo, Vec<u8>)>> {
        let r = Request::Fetch {
            stage,
            addr: 0,
            cap: hitless_proto::daemon::MAX_DATA,
        };
        let (r, data) = self.signed(s, &r, &[])?;
        Self::sets(r)?
            .into_iter()
            .map(|info| checked_set(&info, slice(&data, info.data_offset, info.len)?))
            .collect()
    }

    fn log_append(
        &mut self,
        s: &Session,
        object: u32,
        cold: bool,
        overwrite: bool,
        data: &[u8],
    ) -> Result<u32> {
        let r = Request::LogAppend {
            object,
            flags: tier_flag(cold) | if overwrite { flags::OVERWRITE } else { 0 },
            addr: 0,
            len: u32::try_from(data.len()).unwrap_or(u32::MAX),
        };
        match self.signed(s, &r, data)?.0 {
            Response::Appended { offset } => Ok(offset),
            other => Err(unexpected(&other)),
        }
    }

    fn log_read(&mut self, s: &Session, cold: bool) -> Result<LogRead> {
        let r = Request::LogRead {
            flags: tier_flag(cold),
            addr: 0,
            cap: hitless_proto::daemon::MAX_DATA,
        };
        let (r, data) = self.signed(s, &r, &[])?;
        let Response::Log {
            records: infos,
            head,
            tail,
        } = r
        else {
            return Err(Error::BadCompletion(
                "LOG_READ answered without records".into(),
            ));
        };
        let records = infos
            .into_iter()
            .map(|li| Ok((li, slice(&data, li.data_offset, li.len)?)))
            .collect::<Result<_>>()?;
        Ok(LogRead {
            records,
            head,
            tail,
        })
    }

    fn log_trim(&mut self, s: &Session, cold: bool, to: u32) -> Result<()> {
        let r = Request::LogTrim {
            flags: tier_flag(cold),
            to: Some(to),
        };
        match self.signed(s, &r, &[])?.0 {
            Response::Log { .. } => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn format(&mut self, s: &Session, cold: bool) -> Result<()> {
        let r = Request::Format {
            flags: tier_flag(cold),
        };
        Self::done(self.signed(s, &r, &[])?.0)
    }

    fn auth_failures(&mut self) -> Result<u32> {
        Ok(self.status()?.auth_fails)
    }

    fn switchover(&mut self, to: Option<u32>) -> Result<crate::firmware::Switched> {
        // hitlessd refuses it (an operator's request, not an
        // application's): the refusal says to use the card directly.
        crate::firmware::switched(self.call(&Request::Switchover { to }, None, &[])?.0)
    }

    fn promote(&mut self, accept_lost_warm: bool) -> Result<crate::firmware::Promoted> {
        // hitlessd refuses it too, saying to ask the card directly.
        crate::firmware::promoted(
            self.call(&Request::Promote { accept_lost_warm }, None, &[])?
                .0,
        )
    }

    fn describe(&self) -> String {
        format!("hitlessd at {}", self.path.display())
    }
    // Image management is the card operator's, not an application's:
    // hitlessd does not forward it (its policy knows applications, not
    // operators), so these are refused here, before anything is sent.
    fn images_refused(&self) -> Error {
        image_refused(self)
    }

    // The heap store: the same requests as on the card's mailbox, with the
    // pages and the state in the frame's data instead of a DMA buffer
    // (`addr` 0). hitlessd relays them for heaps this connection opened
    // (docs/daemon.md, "Heaps through the daemon").
    fn heap_open(
        &mut self,
        s: &Session,
        heap: u32,
        heap_pages: u32,
        keep: u32,
        cold: bool,
    ) -> Result<Vec<HeapVersion>> {
        let r = Request::HeapOpen {
            heap,
            heap_pages,
            keep,
            flags: tier_flag(cold),
        };
        Self::heap_versions_of(self.signed(s, &r, &[])?.0)
    }

    fn heap_close(&mut self, s: &Session, heap: u32) -> Result<()> {
        Self::done(self.signed(s, &Request::HeapClose { heap }, &[])?.0)
    }

    fn heap_stage(&mut self, s: &Session, heap: u32, pages: &[(u32, &[u8])]) -> Result<u64> {
        let mut sent = 0u64;
        for chunk in pages.chunks(HEAP_REQUEST_PAGES) {
            let mut numbers = Vec::with_capacity(chunk.len());
            let mut crcs = Vec::with_capacity(chunk.len());
            let mut data = Vec::with_capacity(chunk.len() * HEAP_PAGE_BYTES);
            for (p, d) in chunk {
                if d.len() != HEAP_PAGE_BYTES {
                    return Err(Error::InvalidArgument(format!(
                        "page {p} has {} bytes, not {HEAP_PAGE_BYTES}",
                        d.len()
                    )));
                }
                numbers.push(*p);
                crcs.push(crc32c(d));
                data.extend_from_slice(d);
            }
            let r = Request::HeapStage {
                heap,
                pages: numbers,
                crcs,
                addr: 0,
            };
            Self::done(self.signed(s, &r, &data)?.0)?;
            sent += data.len() as u64;
        }
        Ok(sent)
    }

    fn heap_commit(&mut self, s: &Session, heap: u32, state: &[u8]) -> Result<HeapVersion> {
        if state.len() > hitless_proto::daemon::MAX_DATA as usize {
            return Err(Error::InvalidArgument(format!(
                "{} bytes of state: hitlessd takes at most {} in one request",
                state.len(),
                hitless_proto::daemon::MAX_DATA
            )));
        }
        let r = Request::HeapCommit {
            heap,
            addr: 0,
            len: state.len() as u32,
            crc: crc32c(state),
        };
        Self::heap_version(self.signed(s, &r, state)?.0)
    }

    fn heap_abort(&mut self, s: &Session, heap: u32) -> Result<()> {
        Self::done(self.signed(s, &Request::HeapAbort { heap }, &[])?.0)
    }

    fn heap_read(&mut self, s: &Session, heap: u32, pages: &[u32]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut out = Vec::with_capacity(pages.len());
        for chunk in pages.chunks(HEAP_REQUEST_PAGES) {
            let r = Request::HeapRead {
                heap,
                pages: chunk.to_vec(),
                addr: 0,
                cap: (chunk.len() * HEAP_PAGE_BYTES) as u32,
            };
            let (r, data) = self.signed(s, &r, &[])?;
            let Response::HeapPages { absent } = r else {
                return Err(unexpected(&r));
            };
            // The data holds the present pages, in the order asked.
            let mut at = 0usize;
            for p in chunk {
                if absent.contains(p) {
                    out.push(None);
                } else {
                    out.push(Some(slice(&data, at as u32, HEAP_PAGE_BYTES as u32)?));
                    at += HEAP_PAGE_BYTES;
                }
            }
            if at != data.len() {
                return Err(Error::BadCompletion(format!(
                    "hitlessd answered {} bytes for {} pages",
                    data.len(),
                    at / HEAP_PAGE_BYTES
                )));
            }
        }
        Ok(out)
    }

    fn heap_versions(&mut self, s: &Session, heap: u32) -> Result<Vec<HeapVersion>> {
        Self::heap_versions_of(self.signed(s, &Request::HeapVersions { heap }, &[])?.0)
    }

    fn heap_checkout(
        &mut self,
        s: &Session,
        heap: u32,
        version: u64,
    ) -> Result<(HeapVersion, Vec<u8>)> {
        let r = Request::HeapCheckout {
            heap,
            version,
            addr: 0,
            cap: hitless_proto::daemon::MAX_DATA,
        };
        let (r, state) = self.signed(s, &r, &[])?;
        let v = Self::heap_version(r)?;
        if state.len() != v.state_len as usize || crc32c(&state) != v.state_crc {
            return Err(Error::BadCompletion(
                "the heap version's state failed its CRC on the way".into(),
            ));
        }
        Ok((v, state))
    }

    fn heap_changed(&mut self, s: &Session, heap: u32, since: u64) -> Result<Vec<u32>> {
        crate::firmware::changed_pages(|first| {
            let r = Request::HeapChanged { heap, since, first };
            Ok(self.signed(s, &r, &[])?.0)
        })
    }

    fn heap_delete(&mut self, s: &Session, heap: u32) -> Result<()> {
        Self::done(self.signed(s, &Request::HeapDelete { heap }, &[])?.0)
    }
}

/// Why an image request through the daemon is refused.
pub const IMAGE_THROUGH_DAEMON: &str =
    "image management is not served through hitlessd: stop hitlessd and run `hitless --card <the card> image ...` as the card's operator";

fn image_refused(d: &DaemonClient) -> Error {
    Error::InvalidArgument(format!("{} ({})", IMAGE_THROUGH_DAEMON, d.describe()))
}
