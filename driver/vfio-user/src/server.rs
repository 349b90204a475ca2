//! The server side: [`serve_connection`] speaks the protocol on one stream
//! to a [`Device`]; [`Server`] listens on a socket path and serves one
//! client at a time, refusing others while one is attached.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFlags};
use rustix::fs::{FileType, SealFlags};

use crate::config::PciEmulation;
use crate::device::{Device, DeviceDescription, DmaProt, DmaRegion, IrqFd};
use crate::error::Error;
use crate::proto::{
    self, cmd, dma_flags, errno, flags, irq_set_flags, region_flags, Caps, DeviceInfo, DmaMap,
    DmaUnmap, Header, IrqInfo, IrqSet, RegionAccess, RegionInfo, Version, HEADER_SIZE,
};
use crate::wire::{self, WireError, MAX_FDS};
use crate::DMA_PAGE_SIZE;

/// Limits the server enforces on every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest `count` of a region read or write (advertised as
    /// `max_data_xfer_size`). Messages larger than this plus the 32 bytes of
    /// header and access header end the connection.
    pub max_data_xfer: u32,
    /// Most file descriptors kept from one message (at most 16; advertised
    /// as `max_msg_fds`). Extra descriptors are closed and the message is
    /// answered with `EINVAL`.
    pub max_fds: usize,
    /// Most simultaneous DMA mappings per connection (`ENOSPC` beyond).
    pub max_dma_maps: usize,
    /// Once the first byte of a message has arrived, the rest of it must
    /// arrive within this time, and a reply must be accepted by the socket
    /// within this time; otherwise the connection ends.
    pub message_timeout: Duration,
    /// End a connection that sends nothing for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Refuse (`EPERM`) DMA file descriptors not sealed against shrinking
    /// (`F_SEAL_SHRINK`). Off by default: QEMU and other clients may pass
    /// ordinary, unsealed shared-memory descriptors, and this crate's DMA
    /// access ([`crate::DmaSpace`], [`crate::FdMemory`]) uses
    /// `pread`/`pwrite`, so a client shrinking its file yields an I/O error
    /// for that access, never a `SIGBUS`. Turn it on for a device that
    /// `mmap`s DMA memory (or let the device check
    /// [`crate::DmaRegion::sealed_against_shrinking`] itself).
    pub require_dma_seals: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_data_xfer: 1 << 20,
            max_fds: 8,
            max_dma_maps: 64,
            message_timeout: Duration::from_secs(2),
            idle_timeout: None,
            require_dma_seals: false,
        }
    }
}

impl Limits {
    /// Largest accepted message, header included.
    pub fn max_message_size(&self) -> u32 {
        self.max_data_xfer
            .saturating_add((HEADER_SIZE + proto::REGION_ACCESS_SIZE) as u32)
    }

    fn max_fds(&self) -> usize {
        self.max_fds.min(MAX_FDS)
    }

    /// What we support, as VERSION capabilities.
    fn caps(&self) -> Caps {
        Caps {
            max_msg_fds: Some(self.max_fds() as u64),
            max_data_xfer_size: Some(u64::from(self.max_data_xfer)),
            max_dma_maps: Some(self.max_dma_maps as u64),
            pgsizes: Some(DMA_PAGE_SIZE),
        }
    }
}

/// The limits agreed with one client at VERSION: ours, lowered to what the
/// client proposed (or the specification's default for what it did not).
#[derive(Debug, Clone, Copy)]
struct Agreed {
    max_data_xfer: u32,
    max_fds: usize,
    max_dma_maps: usize,
}

/// A clean end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeEnd {
    /// The client closed the connection between messages.
    ClientClosed,
    /// The server was asked to stop ([`StopHandle::stop`]).
    Stopped,
    /// The client sent nothing for [`Limits::idle_timeout`].
    IdleTimeout,
}

struct StopInner {
    stopped: AtomicBool,
    efd: OwnedFd,
}

/// Stops a [`Server`] from another thread: the current connection ends
/// (its DMA mappings and IRQs are released) and `run` returns.
#[derive(Clone)]
pub struct StopHandle {
    inner: Arc<StopInner>,
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

impl StopHandle {
    fn new() -> io::Result<StopHandle> {
        let efd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(StopHandle {
            inner: Arc::new(StopInner {
                stopped: AtomicBool::new(false),
                efd,
            }),
        })
    }

    /// Ask the server to stop. Idempotent.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        // A full counter (EAGAIN) still wakes the poller, so errors are moot.
        let _ = rustix::io::write(&self.inner.efd, &1u64.to_ne_bytes());
    }

    /// Whether [`StopHandle::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }
}

/// Serve one connection until the client leaves, the connection is ended
/// for a protocol violation, or (within a [`Server`]) the server is
/// stopped. Never panics on input; every wait is bounded by
/// [`Limits::message_timeout`] once a message has started.
///
/// On return the device's DMA mappings and IRQs from this connection have
/// been released.
pub fn serve_connection(
    stream: UnixStream,
    dev: &mut dyn Device,
    limits: Limits,
) -> Result<ServeEnd, Error> {
    serve(stream, dev, &limits, None, None)
}

fn serve(
    stream: UnixStream,
    dev: &mut dyn Device,
    limits: &Limits,
    listener: Option<&UnixListener>,
    stop: Option<&StopHandle>,
) -> Result<ServeEnd, Error> {
    let desc = dev.description();
    let (pci, desc) = match PciEmulation::new(&desc) {
        Some((pci, shown)) => (Some(pci), shown),
        None => (None, desc),
    };
    let mut session = Session {
        dev,
        limits,
        desc,
        pci,
        agreed: Agreed {
            max_data_xfer: limits.max_data_xfer,
            max_fds: limits.max_fds(),
            max_dma_maps: limits.max_dma_maps,
        },
        negotiated: false,
        maps: BTreeMap::new(),
        irqs: BTreeSet::new(),
    };
    let result = session.run(&stream, listener, stop);
    session.release();
    match &result {
        Ok(end) => tracing::debug!(?end, "vfio-user connection ended"),
        Err(e) => tracing::warn!(error = %e, "vfio-user connection ended by the server"),
    }
    result
}

/// What a handler decided.
enum Outcome {
    /// Success, with this reply payload.
    Reply(Vec<u8>),
    /// Error reply with this errno; the connection continues.
    Refuse(u32),
    /// Error reply with this errno, then end the connection.
    Fatal(u32, Error),
}

struct Session<'a> {
    dev: &'a mut dyn Device,
    limits: &'a Limits,
    /// The description presented to the client (with the PCI regions).
    desc: DeviceDescription,
    /// Configuration space and MSI-X BAR, for PCI devices.
    pci: Option<PciEmulation>,
    agreed: Agreed,
    negotiated: bool,
    /// Live DMA mappings of this connection: iova -> size.
    maps: BTreeMap<u64, u64>,
    /// IRQ indexes this connection assigned descriptors to.
    irqs: BTreeSet<u32>,
}

impl Session<'_> {
    fn run(
        &mut self,
        stream: &UnixStream,
        listener: Option<&UnixListener>,
        stop: Option<&StopHandle>,
    ) -> Result<ServeEnd, Error> {
        let sock = stream.as_fd();
        loop {
            // Wait for the next message, refusing newcomers meanwhile.
            let idle_deadline = self.limits.idle_timeout.and_then(wire::deadline_after);
            loop {
                if stop.is_some_and(|s| s.is_stopped()) {
                    return Ok(ServeEnd::Stopped);
                }
                let mut fds = vec![(sock, PollFlags::IN)];
                if let Some(l) = listener {
                    fds.push((l.as_fd(), PollFlags::IN));
                }
                if let Some(s) = stop {
                    fds.push((s.inner.efd.as_fd(), PollFlags::IN));
                }
                let ready = wire::poll_fds(&fds, idle_deadline)?;
                if ready.iter().all(|r| r.is_empty()) {
                    if idle_deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(ServeEnd::IdleTimeout);
                    }
                    continue;
                }
                // The attached client first: if it has just hung up, the
                // newcomer is served next rather than refused.
                if ready.first().is_some_and(|r| !r.is_empty()) {
                    break;
                }
                if let (Some(l), Some(r)) = (listener, ready.get(1)) {
                    if !r.is_empty() {
                        refuse_pending(l);
                    }
                }
            }

            let deadline = wire::deadline_after(self.limits.message_timeout);
            let msg = match wire::recv_message(
                sock,
                deadline,
                self.limits.max_message_size(),
                self.agreed.max_fds,
            ) {
                Ok(m) => m,
                Err(WireError::Eof { partial: false }) => return Ok(ServeEnd::ClientClosed),
                Err(WireError::Eof { partial: true }) => return Err(Error::Truncated),
                Err(WireError::Timeout { .. }) => {
                    return Err(Error::Timeout(self.limits.message_timeout))
                }
                Err(WireError::SizeTooSmall(h)) => {
                    return Err(Error::SizeTooSmall(h.size));
                }
                Err(WireError::SizeTooLarge(h)) => {
                    // Tell the client why before hanging up (best effort).
                    let reply = Header::error_reply(h.msg_id, h.command, errno::EMSGSIZE);
                    let _ = wire::send_message(sock, &reply, &[], &[], deadline);
                    return Err(Error::SizeTooLarge {
                        size: h.size,
                        max: self.limits.max_message_size(),
                    });
                }
                Err(WireError::Io(e)) => return Err(Error::Io(e)),
            };

            let h = msg.header;
            if h.msg_type() != flags::TYPE_COMMAND {
                return Err(Error::NotACommand(h.msg_type()));
            }
            let outcome = self.handle(msg);
            let (reply, payload, fatal) = match outcome {
                Outcome::Reply(p) => match Header::reply(h.msg_id, h.command, p.len()) {
                    Some(r) => (r, p, None),
                    None => (
                        Header::error_reply(h.msg_id, h.command, errno::EMSGSIZE),
                        Vec::new(),
                        None,
                    ),
                },
                Outcome::Refuse(e) => {
                    tracing::debug!(command = h.command, errno = e, "error reply");
                    (
                        Header::error_reply(h.msg_id, h.command, e),
                        Vec::new(),
                        None,
                    )
                }
                Outcome::Fatal(e, err) => (
                    Header::error_reply(h.msg_id, h.command, e),
                    Vec::new(),
                    Some(err),
                ),
            };
            // A fatal error is always answered: the client learns why.
            if !h.no_reply() || fatal.is_some() {
                match wire::send_message(sock, &reply, &payload, &[], deadline) {
                    Ok(()) => {}
                    Err(WireError::Eof { .. }) => {
                        return match fatal {
                            Some(err) => Err(err),
                            None => Ok(ServeEnd::ClientClosed),
                        }
                    }
                    Err(WireError::Timeout { .. }) => {
                        return Err(Error::Timeout(self.limits.message_timeout))
                    }
                    Err(WireError::Io(e)) => return Err(Error::Io(e)),
                    Err(WireError::SizeTooSmall(_)) | Err(WireError::SizeTooLarge(_)) => {
                        return Err(Error::Truncated)
                    }
                }
            }
            if let Some(err) = fatal {
                return Err(err);
            }
        }
    }

    /// Release what this connection set up, as the specification asks.
    fn release(&mut self) {
        for (iova, size) in std::mem::take(&mut self.maps) {
            if let Err(e) = self.dev.dma_unmap(iova, size) {
                tracing::warn!(iova, size, error = %e, "device refused DMA unmap at disconnect");
            }
        }
        for index in std::mem::take(&mut self.irqs) {
            let count = self.desc.irq(index).map_or(0, |i| i.count);
            if let Err(e) = self.dev.set_irqs(index, 0, count, Vec::new()) {
                tracing::warn!(index, error = %e, "device refused IRQ release at disconnect");
            }
        }
    }

    fn handle(&mut self, msg: wire::Message) -> Outcome {
        let h = msg.header;
        let wants_fds = matches!(h.command, cmd::DMA_MAP | cmd::DEVICE_SET_IRQS);
        if msg.fds_truncated || (!wants_fds && !msg.fds.is_empty()) {
            // Excess or unexpected descriptors: they are closed (dropped
            // with `msg`); the request itself is refused.
            return Outcome::Refuse(errno::EINVAL);
        }
        if !self.negotiated && h.command != cmd::VERSION {
            return Outcome::Fatal(errno::EINVAL, Error::NotNegotiated(h.command));
        }
        match h.command {
            cmd::VERSION => self.version(&msg.payload),
            cmd::DMA_MAP => self.dma_map(&msg.payload, msg.fds),
            cmd::DMA_UNMAP => self.dma_unmap(&msg.payload),
            cmd::DEVICE_GET_INFO => self.device_info(&msg.payload),
            cmd::DEVICE_GET_REGION_INFO => self.region_info(&msg.payload),
            cmd::DEVICE_GET_IRQ_INFO => self.irq_info(&msg.payload),
            cmd::DEVICE_SET_IRQS => self.set_irqs(&msg.payload, msg.fds),
            cmd::REGION_READ => self.region_read(&msg.payload),
            cmd::REGION_WRITE => self.region_write(&msg.payload),
            cmd::DEVICE_RESET => match self.dev.reset() {
                Ok(()) => {
                    if let Some(p) = &mut self.pci {
                        p.reset();
                    }
                    Outcome::Reply(Vec::new())
                }
                Err(e) => Outcome::Refuse(e.errno()),
            },
            _ => Outcome::Refuse(errno::ENOSYS),
        }
    }

    /// VERSION: same major (ours, 0), the lower minor, and capabilities
    /// that are a subset of the proposed ones, none larger
    /// ([`Caps::negotiate`]). The agreed values are enforced from then on.
    fn version(&mut self, payload: &[u8]) -> Outcome {
        if self.negotiated {
            return Outcome::Refuse(errno::EINVAL);
        }
        // A failed negotiation ends the connection, answered with the
        // error's errno (EINVAL: malformed; ENOTSUP: nothing in common).
        let fatal = |e: Error| Outcome::Fatal(e.errno(), e);
        let v = match Version::decode(payload) {
            Ok(v) => v,
            Err(e) => return fatal(e),
        };
        if v.major != proto::VERSION_MAJOR {
            return fatal(Error::VersionMajor(v.major));
        }
        let proposed = match v.caps() {
            Ok(c) => c,
            Err(e) => return fatal(e),
        };
        let reply = match Caps::negotiate(&self.limits.caps(), &proposed) {
            Ok(c) => c,
            Err(e) => return fatal(e),
        };
        let lower = |ours: u64, theirs: u64| ours.min(theirs);
        self.agreed = Agreed {
            max_data_xfer: u32::try_from(lower(
                u64::from(self.limits.max_data_xfer),
                proposed.max_data_xfer_size_or_default(),
            ))
            .unwrap_or(self.limits.max_data_xfer),
            max_fds: usize::try_from(lower(
                self.limits.max_fds() as u64,
                proposed.max_msg_fds_or_default(),
            ))
            .unwrap_or(0),
            max_dma_maps: usize::try_from(lower(
                self.limits.max_dma_maps as u64,
                proposed.max_dma_maps_or_default(),
            ))
            .unwrap_or(0),
        };
        self.negotiated = true;
        // The lower minor: a no-op while we speak only minor 0.
        #[allow(clippy::unnecessary_min_or_max)]
        let minor = v.minor.min(proto::VERSION_MINOR);
        Outcome::Reply(
            Version {
                major: proto::VERSION_MAJOR,
                minor,
                // Capabilities only if the client sent any (a subset of
                // nothing is nothing).
                json: v.json.as_ref().map(|_| reply.to_json()),
            }
            .encode(),
        )
    }

    fn dma_map(&mut self, payload: &[u8], mut fds: Vec<OwnedFd>) -> Outcome {
        let Some(m) = DmaMap::decode(payload) else {
            return Outcome::Refuse(errno::EINVAL);
        };
        if m.flags & !(dma_flags::READ | dma_flags::WRITE) != 0 {
            return Outcome::Refuse(errno::EINVAL);
        }
        let fd = match fds.len() {
            // In-band DMA (DMA_READ/DMA_WRITE messages) is not implemented.
            0 => return Outcome::Refuse(errno::ENOTSUP),
            1 => match fds.pop() {
                Some(fd) => fd,
                None => return Outcome::Refuse(errno::EINVAL),
            },
            _ => return Outcome::Refuse(errno::EINVAL),
        };
        let page = DMA_PAGE_SIZE;
        if m.size == 0
            || m.address % page != 0
            || m.size % page != 0
            || m.offset % page != 0
            || usize::try_from(m.size).is_err()
        {
            return Outcome::Refuse(errno::EINVAL);
        }
        let (Some(end), Some(file_end)) =
            (m.address.checked_add(m.size), m.offset.checked_add(m.size))
        else {
            return Outcome::Refuse(errno::EINVAL);
        };
        if let Some((&start, &size)) = self.maps.range(..end).next_back() {
            if start.saturating_add(size) > m.address {
                return Outcome::Refuse(errno::EEXIST);
            }
        }
        if self.maps.len() >= self.agreed.max_dma_maps {
            return Outcome::Refuse(errno::ENOSPC);
        }
        let st = match rustix::fs::fstat(&fd) {
            Ok(st) => st,
            Err(_) => return Outcome::Refuse(errno::EINVAL),
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
            || u64::try_from(st.st_size).map_or(true, |len| len < file_end)
        {
            return Outcome::Refuse(errno::EINVAL);
        }
        if self.limits.require_dma_seals {
            let sealed =
                rustix::fs::fcntl_get_seals(&fd).is_ok_and(|s| s.contains(SealFlags::SHRINK));
            if !sealed {
                return Outcome::Refuse(errno::EPERM);
            }
        }
        let region = DmaRegion {
            iova: m.address,
            size: m.size,
            fd,
            offset: m.offset,
            prot: DmaProt {
                read: m.flags & dma_flags::READ != 0,
                write: m.flags & dma_flags::WRITE != 0,
            },
        };
        match self.dev.dma_map(region) {
            Ok(()) => {
                self.maps.insert(m.address, m.size);
                Outcome::Reply(Vec::new())
            }
            Err(e) => Outcome::Refuse(e.errno()),
        }
    }

    fn dma_unmap(&mut self, payload: &[u8]) -> Outcome {
        let Some(u) = DmaUnmap::decode(payload) else {
            return Outcome::Refuse(errno::EINVAL);
        };
        let reply = DmaUnmap {
            argsz: proto::DMA_UNMAP_SIZE as u32,
            ..u
        };
        if u.flags == dma_flags::UNMAP_ALL {
            if u.address != 0 || u.size != 0 {
                return Outcome::Refuse(errno::EINVAL);
            }
            for (iova, size) in std::mem::take(&mut self.maps) {
                if let Err(e) = self.dev.dma_unmap(iova, size) {
                    tracing::warn!(iova, size, error = %e, "device refused DMA unmap");
                }
            }
            return Outcome::Reply(reply.encode());
        }
        if u.flags != 0 {
            return Outcome::Refuse(errno::EINVAL);
        }
        if self.maps.get(&u.address) != Some(&u.size) {
            return Outcome::Refuse(errno::ENOENT);
        }
        match self.dev.dma_unmap(u.address, u.size) {
            Ok(()) => {
                self.maps.remove(&u.address);
                Outcome::Reply(reply.encode())
            }
            Err(e) => Outcome::Refuse(e.errno()),
        }
    }

    fn device_info(&mut self, payload: &[u8]) -> Outcome {
        match DeviceInfo::decode(payload) {
            Some(req) if req.argsz as usize >= proto::DEVICE_INFO_SIZE => {}
            _ => return Outcome::Refuse(errno::EINVAL),
        }
        Outcome::Reply(
            DeviceInfo {
                argsz: proto::DEVICE_INFO_SIZE as u32,
                flags: self.desc.flags,
                num_regions: u32::try_from(self.desc.regions.len()).unwrap_or(u32::MAX),
                num_irqs: u32::try_from(self.desc.irqs.len()).unwrap_or(u32::MAX),
            }
            .encode(),
        )
    }

    fn region_info(&mut self, payload: &[u8]) -> Outcome {
        let req = match RegionInfo::decode(payload) {
            Some(req) if req.argsz as usize >= proto::REGION_INFO_SIZE => req,
            _ => return Outcome::Refuse(errno::EINVAL),
        };
        let Some(r) = usize::try_from(req.index)
            .ok()
            .and_then(|i| self.desc.regions.get(i))
        else {
            return Outcome::Refuse(errno::EINVAL);
        };
        Outcome::Reply(
            RegionInfo {
                argsz: proto::REGION_INFO_SIZE as u32,
                flags: r.flags & (region_flags::READ | region_flags::WRITE),
                index: req.index,
                cap_offset: 0,
                size: r.size,
                offset: 0,
            }
            .encode(),
        )
    }

    fn irq_info(&mut self, payload: &[u8]) -> Outcome {
        let req = match IrqInfo::decode(payload) {
            Some(req) if req.argsz as usize >= proto::IRQ_INFO_SIZE => req,
            _ => return Outcome::Refuse(errno::EINVAL),
        };
        let Some(i) = usize::try_from(req.index)
            .ok()
            .and_then(|i| self.desc.irqs.get(i))
        else {
            return Outcome::Refuse(errno::EINVAL);
        };
        Outcome::Reply(
            IrqInfo {
                argsz: proto::IRQ_INFO_SIZE as u32,
                flags: i.flags,
                index: req.index,
                count: i.count,
            }
            .encode(),
        )
    }

    fn set_irqs(&mut self, payload: &[u8], fds: Vec<OwnedFd>) -> Outcome {
        let Some(s) = IrqSet::decode(payload) else {
            return Outcome::Refuse(errno::EINVAL);
        };
        let Some(irq) = self.desc.irq(s.index).copied() else {
            return Outcome::Refuse(errno::EINVAL);
        };
        let data = s.flags & irq_set_flags::DATA_MASK;
        let action = s.flags & irq_set_flags::ACTION_MASK_ALL;
        if s.flags & !(irq_set_flags::DATA_MASK | irq_set_flags::ACTION_MASK_ALL) != 0
            || data.count_ones() != 1
            || action.count_ones() != 1
        {
            return Outcome::Refuse(errno::EINVAL);
        }
        if action != irq_set_flags::ACTION_TRIGGER {
            // Our IRQ indexes are not maskable.
            return Outcome::Refuse(errno::EINVAL);
        }
        let (start, count, fds) = match data {
            irq_set_flags::DATA_NONE if s.start == 0 && s.count == 0 && fds.is_empty() => {
                // Disable every vector of the index.
                (0, irq.count, Vec::new())
            }
            irq_set_flags::DATA_EVENTFD => {
                let in_range = s.count > 0
                    && s.start
                        .checked_add(s.count)
                        .is_some_and(|end| end <= irq.count);
                let fd_count_ok =
                    fds.is_empty() || u32::try_from(fds.len()).is_ok_and(|n| n == s.count);
                if !in_range || !fd_count_ok {
                    return Outcome::Refuse(errno::EINVAL);
                }
                (s.start, s.count, fds.into_iter().map(IrqFd::new).collect())
            }
            // Software triggers (DATA_NONE/DATA_BOOL with a range) are not
            // supported: the device, not the client, raises our interrupts.
            _ => return Outcome::Refuse(errno::EINVAL),
        };
        let assigning = !fds.is_empty();
        let all = start == 0 && count == irq.count;
        match self.dev.set_irqs(s.index, start, count, fds) {
            Ok(()) => {
                if assigning {
                    self.irqs.insert(s.index);
                } else if all {
                    self.irqs.remove(&s.index);
                }
                Outcome::Reply(Vec::new())
            }
            Err(e) => Outcome::Refuse(e.errno()),
        }
    }

    /// Validate a region access: the region exists and allows the
    /// direction, `count` is a power of two within the transfer limit,
    /// `offset` is naturally aligned (up to 8), and the range fits.
    fn check_access(&self, a: &RegionAccess, write: bool) -> bool {
        let Some(r) = self.desc.region(a.region) else {
            return false;
        };
        let need = if write {
            region_flags::WRITE
        } else {
            region_flags::READ
        };
        let align = u64::from(a.count.min(8));
        r.flags & need != 0
            && a.count.is_power_of_two()
            && a.count <= self.agreed.max_data_xfer
            && a.offset.checked_rem(align) == Some(0)
            && a.offset
                .checked_add(u64::from(a.count))
                .is_some_and(|end| end <= r.size)
    }

    fn region_read(&mut self, payload: &[u8]) -> Outcome {
        let Some((a, rest)) = RegionAccess::decode_prefix(payload) else {
            return Outcome::Refuse(errno::EINVAL);
        };
        if !rest.is_empty() || !self.check_access(&a, false) {
            return Outcome::Refuse(errno::EINVAL);
        }
        let mut data = vec![0u8; a.count as usize];
        if let Some(p) = self.pci.as_mut().filter(|p| p.handles(a.region)) {
            return match p.read(a.region, a.offset, &mut data) {
                true => Outcome::Reply(a.encode_with(&data)),
                false => Outcome::Refuse(errno::EINVAL),
            };
        }
        match self.dev.region_read(a.region, a.offset, &mut data) {
            Ok(()) => Outcome::Reply(a.encode_with(&data)),
            Err(e) => Outcome::Refuse(e.errno()),
        }
    }

    fn region_write(&mut self, payload: &[u8]) -> Outcome {
        let Some((a, data)) = RegionAccess::decode_prefix(payload) else {
            return Outcome::Refuse(errno::EINVAL);
        };
        if u32::try_from(data.len()).ok() != Some(a.count) || !self.check_access(&a, true) {
            return Outcome::Refuse(errno::EINVAL);
        }
        if let Some(p) = self.pci.as_mut().filter(|p| p.handles(a.region)) {
            return match p.write(a.region, a.offset, data) {
                true => Outcome::Reply(a.encode()),
                false => Outcome::Refuse(errno::EINVAL),
            };
        }
        match self.dev.region_write(a.region, a.offset, data) {
            Ok(()) => Outcome::Reply(a.encode()),
            Err(e) => Outcome::Refuse(e.errno()),
        }
    }
}

/// Accept every pending connection and refuse it: each newcomer gets one
/// error reply to its (future) VERSION message — msg id 0, command VERSION,
/// errno `EBUSY` — and is closed. The [`crate::Client`] sends VERSION with
/// msg id 0 and reports this as [`crate::Error::Busy`].
fn refuse_pending(listener: &UnixListener) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                tracing::info!("vfio-user: refusing a second client while one is attached");
                let reply = Header::error_reply(0, cmd::VERSION, errno::EBUSY);
                // A fresh socket has room for 16 bytes; don't wait for it.
                let _ = wire::send_message(stream.as_fd(), &reply, &[], &[], Some(Instant::now()));
                let _ = stream.shutdown(std::net::Shutdown::Write);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed while refusing");
                return;
            }
        }
    }
}

/// A vfio-user server on a Unix socket path, serving one client at a time.
///
/// While a client is attached, other clients that connect are refused at
/// once (see [`crate::Error::Busy`]). After a client leaves — cleanly or by a
/// protocol violation — the next one is served. The socket file is removed
/// when the `Server` is dropped.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    limits: Limits,
    stop: StopHandle,
    inode: Option<(u64, u64)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Server {
    /// Listen on `path`. A stale socket file left by a dead server is
    /// replaced; a live server on the path is an error.
    pub fn bind(path: impl AsRef<Path>, limits: Limits) -> Result<Server, Error> {
        let path = path.as_ref().to_path_buf();
        if let Ok(meta) = fs::symlink_metadata(&path) {
            if !meta.file_type().is_socket() {
                return Err(Error::NotASocket(path));
            }
            match UnixStream::connect(&path) {
                Ok(_) => return Err(Error::AddrInUse(path)),
                Err(_) => fs::remove_file(&path)?,
            }
        }
        let listener = UnixListener::bind(&path)?;
        listener.set_nonblocking(true)?;
        let inode = fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        Ok(Server {
            listener,
            path,
            limits,
            stop: StopHandle::new()?,
            inode,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The limits applied to each connection.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A handle that stops [`Server::run`] / [`Server::serve_one`] from
    /// another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Wait for one client and serve it to the end. `Ok(None)`: stopped
    /// before a client came. The inner result is that connection's end.
    pub fn serve_one(
        &self,
        dev: &mut dyn Device,
    ) -> Result<Option<Result<ServeEnd, Error>>, Error> {
        loop {
            if self.stop.is_stopped() {
                return Ok(None);
            }
            let fds = [
                (self.listener.as_fd(), PollFlags::IN),
                (self.stop.inner.efd.as_fd(), PollFlags::IN),
            ];
            let ready = wire::poll_fds(&fds, None)?;
            if ready.first().is_none_or(|r| r.is_empty()) {
                continue;
            }
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(Error::Io(e)),
            };
            tracing::debug!(path = %self.path.display(), "vfio-user client attached");
            return Ok(Some(serve(
                stream,
                dev,
                &self.limits,
                Some(&self.listener),
                Some(&self.stop),
            )));
        }
    }

    /// Serve clients one after another until stopped. Connection errors are
    /// logged and do not end the loop.
    pub fn run(&self, dev: &mut dyn Device) -> Result<(), Error> {
        while let Some(end) = self.serve_one(dev)? {
            if let Ok(ServeEnd::Stopped) = end {
                break;
            }
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Remove the socket file only if it is still ours.
        let same = fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()))
            .is_some_and(|id| Some(id) == self.inode);
        if same {
            let _ = fs::remove_file(&self.path);
        }
    }
}
