//! The client side: [`Client`] talks to a vfio-user server with a timeout
//! on every call; [`DmaBuffer`] is fd-backed memory to share for DMA;
//! [`IrqEvent`] is an eventfd to receive interrupts on.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFlags};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::device::{DmaProt, FdMemory};
pub use crate::error::Error;
use crate::proto::{
    self, cmd, dma_flags, errno, flags, irq_set_flags, Caps, DeviceInfo, DmaMap, DmaUnmap, Header,
    IrqInfo, IrqSet, RegionAccess, RegionInfo, Version, HEADER_SIZE,
};
use crate::wire::{self, WireError, MAX_FDS};
use crate::DMA_PAGE_SIZE;

/// Largest region access the client itself will send or accept.
pub const CLIENT_MAX_DATA_XFER: u32 = 1 << 20;

/// What the server advertised in its VERSION reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerCaps {
    /// Negotiated minor version.
    pub minor: u16,
    /// Most file descriptors per message the server accepts.
    pub max_msg_fds: u32,
    /// Largest region access (also capped by [`CLIENT_MAX_DATA_XFER`]).
    pub max_data_xfer: u32,
    /// Most simultaneous DMA mappings.
    pub max_dma_maps: u32,
    /// Supported DMA page sizes, or-ed.
    pub pgsizes: u64,
}

/// A connection to a vfio-user server.
///
/// Every call sends one request and waits for its reply, for at most the
/// client's timeout. A call that times out before any byte of the reply
/// arrived leaves the connection usable (a late reply is recognised by its
/// message id and skipped); one that times out in the middle of a message
/// makes the connection unusable ([`Error::Disconnected`] from then on).
#[derive(Debug)]
pub struct Client {
    sock: OwnedFd,
    timeout: Duration,
    next_id: u16,
    broken: bool,
    caps: ServerCaps,
    info: DeviceInfo,
}

impl Client {
    /// Connect to the server at `path`, negotiate the version and fetch the
    /// device info; all within `timeout`. A server busy with another client
    /// gives [`Error::Busy`].
    pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Client, Error> {
        let deadline = wire::deadline_after(timeout);
        let sock = connect_socket(path.as_ref(), deadline, timeout)?;
        let mut client = Client {
            sock,
            timeout,
            next_id: 0,
            broken: false,
            caps: ServerCaps {
                minor: 0,
                max_msg_fds: 1,
                max_data_xfer: CLIENT_MAX_DATA_XFER,
                max_dma_maps: u32::from(u16::MAX),
                pgsizes: DMA_PAGE_SIZE,
            },
            info: DeviceInfo::default(),
        };
        client.negotiate(deadline)?;
        let info = client.transact_until(
            cmd::DEVICE_GET_INFO,
            &DeviceInfo {
                argsz: proto::DEVICE_INFO_SIZE as u32,
                ..DeviceInfo::default()
            }
            .encode(),
            &[],
            deadline,
        )?;
        client.info = DeviceInfo::decode(&info)
            .ok_or_else(|| Error::Protocol("short DEVICE_GET_INFO reply".into()))?;
        Ok(client)
    }

    /// What this client proposes at VERSION: it can receive up to
    /// [`MAX_FDS`] descriptors in one message (it closes any it gets), and
    /// takes up to [`CLIENT_MAX_DATA_XFER`] bytes per transfer.
    pub fn proposed_caps() -> Caps {
        Caps {
            max_msg_fds: Some(MAX_FDS as u64),
            max_data_xfer_size: Some(u64::from(CLIENT_MAX_DATA_XFER)),
            max_dma_maps: Some(proto::caps::DEFAULT_MAX_DMA_MAPS),
            pgsizes: Some(DMA_PAGE_SIZE),
        }
    }

    /// Propose our version and capabilities, and check the reply as the
    /// specification requires: same major, a minor no higher than ours,
    /// capabilities a subset of ours and none larger.
    fn negotiate(&mut self, deadline: Option<Instant>) -> Result<(), Error> {
        let proposed = Client::proposed_caps();
        let payload = Version {
            major: proto::VERSION_MAJOR,
            minor: proto::VERSION_MINOR,
            json: Some(proposed.to_json()),
        }
        .encode();
        let reply = match self.transact_until(cmd::VERSION, &payload, &[], deadline) {
            Ok(r) => r,
            Err(Error::Remote(e)) if e == errno::EBUSY as i32 => return Err(Error::Busy),
            Err(e) => return Err(e),
        };
        let v = Version::decode(&reply)?;
        if v.major != proto::VERSION_MAJOR {
            return Err(Error::VersionMajor(v.major));
        }
        if v.minor > proto::VERSION_MINOR {
            return Err(Error::VersionMinor {
                proposed: proto::VERSION_MINOR,
                reply: v.minor,
            });
        }
        let got = v.caps()?;
        Caps::check_reply(&proposed, &got)?;
        // Absent capabilities take the specification's default, which may
        // be above what we proposed: the agreed value is the lower one.
        let agreed = |reply: u64, ours: Option<u64>| ours.map_or(reply, |o| reply.min(o));
        let to_u32 = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
        self.caps = ServerCaps {
            minor: v.minor,
            max_msg_fds: to_u32(agreed(got.max_msg_fds_or_default(), proposed.max_msg_fds)),
            max_data_xfer: to_u32(agreed(
                got.max_data_xfer_size_or_default(),
                proposed.max_data_xfer_size,
            )),
            max_dma_maps: to_u32(agreed(got.max_dma_maps_or_default(), proposed.max_dma_maps)),
            pgsizes: got.pgsizes_or_default() & proposed.pgsizes_or_default(),
        };
        Ok(())
    }

    /// The timeout applied to each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Change the timeout applied to each call.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// What the server advertised.
    pub fn server_caps(&self) -> ServerCaps {
        self.caps
    }

    /// The device info fetched at connect time.
    pub fn device_info(&self) -> DeviceInfo {
        self.info
    }

    /// Whether the connection can still be used.
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// Describe region `index`.
    pub fn get_region_info(&mut self, index: u32) -> Result<RegionInfo, Error> {
        let req = RegionInfo {
            argsz: proto::REGION_INFO_SIZE as u32,
            index,
            ..RegionInfo::default()
        };
        let reply = self.transact(cmd::DEVICE_GET_REGION_INFO, &req.encode(), &[])?;
        let info = RegionInfo::decode(&reply)
            .ok_or_else(|| Error::Protocol("short DEVICE_GET_REGION_INFO reply".into()))?;
        if info.index != index {
            return Err(Error::Protocol("region info for another index".into()));
        }
        Ok(info)
    }

    /// Describe IRQ index `index`.
    pub fn get_irq_info(&mut self, index: u32) -> Result<IrqInfo, Error> {
        let req = IrqInfo {
            argsz: proto::IRQ_INFO_SIZE as u32,
            index,
            ..IrqInfo::default()
        };
        let reply = self.transact(cmd::DEVICE_GET_IRQ_INFO, &req.encode(), &[])?;
        let info = IrqInfo::decode(&reply)
            .ok_or_else(|| Error::Protocol("short DEVICE_GET_IRQ_INFO reply".into()))?;
        if info.index != index {
            return Err(Error::Protocol("IRQ info for another index".into()));
        }
        Ok(info)
    }

    fn access(&self, region: u32, offset: u64, len: usize) -> Result<RegionAccess, Error> {
        let count = u32::try_from(len)
            .ok()
            .filter(|&c| c > 0 && c <= self.caps.max_data_xfer)
            .ok_or(Error::InvalidArgument(
                "access size is 0 or above the transfer limit",
            ))?;
        Ok(RegionAccess {
            offset,
            region,
            count,
        })
    }

    /// Read `buf.len()` bytes of `region` at `offset`. The server accepts
    /// power-of-two sizes, naturally aligned (up to 8 bytes).
    pub fn region_read(&mut self, region: u32, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let a = self.access(region, offset, buf.len())?;
        let reply = self.transact(cmd::REGION_READ, &a.encode(), &[])?;
        let (echo, data) = RegionAccess::decode_prefix(&reply)
            .ok_or_else(|| Error::Protocol("short REGION_READ reply".into()))?;
        if echo != a || data.len() != buf.len() {
            return Err(Error::Protocol(
                "REGION_READ reply does not match the request".into(),
            ));
        }
        buf.copy_from_slice(data);
        Ok(())
    }

    /// Write `data` to `region` at `offset`.
    pub fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> Result<(), Error> {
        let a = self.access(region, offset, data.len())?;
        let reply = self.transact(cmd::REGION_WRITE, &a.encode_with(data), &[])?;
        match RegionAccess::decode(&reply) {
            Some(echo) if echo == a => Ok(()),
            _ => Err(Error::Protocol(
                "REGION_WRITE reply does not match the request".into(),
            )),
        }
    }

    /// Read a 32-bit register.
    pub fn read32(&mut self, region: u32, offset: u64) -> Result<u32, Error> {
        let mut b = [0u8; 4];
        self.region_read(region, offset, &mut b)?;
        Ok(u32::from_ne_bytes(b))
    }

    /// Write a 32-bit register.
    pub fn write32(&mut self, region: u32, offset: u64, value: u32) -> Result<(), Error> {
        self.region_write(region, offset, &value.to_ne_bytes())
    }

    /// Read a 64-bit register.
    pub fn read64(&mut self, region: u32, offset: u64) -> Result<u64, Error> {
        let mut b = [0u8; 8];
        self.region_read(region, offset, &mut b)?;
        Ok(u64::from_ne_bytes(b))
    }

    /// Write a 64-bit register.
    pub fn write64(&mut self, region: u32, offset: u64, value: u64) -> Result<(), Error> {
        self.region_write(region, offset, &value.to_ne_bytes())
    }

    /// Share `size` bytes of `fd` from `offset` with the device at DMA
    /// address `iova`, readable and writable. All three must be multiples
    /// of [`DMA_PAGE_SIZE`]; the fd must be a regular file (a memfd such as
    /// [`DmaBuffer`]'s, or any shared-memory file) at least `offset + size`
    /// bytes long.
    pub fn dma_map(
        &mut self,
        fd: BorrowedFd<'_>,
        iova: u64,
        size: u64,
        offset: u64,
    ) -> Result<(), Error> {
        self.dma_map_prot(fd, iova, size, offset, DmaProt::READ_WRITE)
    }

    /// [`Client::dma_map`] with explicit access rights.
    pub fn dma_map_prot(
        &mut self,
        fd: BorrowedFd<'_>,
        iova: u64,
        size: u64,
        offset: u64,
        prot: DmaProt,
    ) -> Result<(), Error> {
        let mut fl = 0;
        if prot.read {
            fl |= dma_flags::READ;
        }
        if prot.write {
            fl |= dma_flags::WRITE;
        }
        let req = DmaMap {
            argsz: proto::DMA_MAP_SIZE as u32,
            flags: fl,
            offset,
            address: iova,
            size,
        };
        self.transact(cmd::DMA_MAP, &req.encode(), &[fd])?;
        Ok(())
    }

    /// Withdraw the mapping made for exactly `iova`/`size`.
    pub fn dma_unmap(&mut self, iova: u64, size: u64) -> Result<(), Error> {
        let req = DmaUnmap {
            argsz: proto::DMA_UNMAP_SIZE as u32,
            flags: 0,
            address: iova,
            size,
        };
        self.transact(cmd::DMA_UNMAP, &req.encode(), &[])?;
        Ok(())
    }

    /// Assign eventfds to vectors `start .. start + fds.len()` of IRQ
    /// `index`: the server signals vector `start + i` on `fds[i]`.
    pub fn set_irqs(
        &mut self,
        index: u32,
        start: u32,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        if fds.is_empty() {
            return Err(Error::InvalidArgument("no descriptors (use disable_irqs)"));
        }
        let max = usize::try_from(self.caps.max_msg_fds)
            .unwrap_or(0)
            .min(MAX_FDS);
        if fds.len() > max {
            return Err(Error::InvalidArgument(
                "more descriptors than the server accepts per message",
            ));
        }
        let req = IrqSet {
            argsz: proto::IRQ_SET_SIZE as u32,
            flags: irq_set_flags::DATA_EVENTFD | irq_set_flags::ACTION_TRIGGER,
            index,
            start,
            count: u32::try_from(fds.len()).unwrap_or(u32::MAX),
        };
        self.transact(cmd::DEVICE_SET_IRQS, &req.encode(), fds)?;
        Ok(())
    }

    /// Deassign every vector of IRQ `index`.
    pub fn disable_irqs(&mut self, index: u32) -> Result<(), Error> {
        let req = IrqSet {
            argsz: proto::IRQ_SET_SIZE as u32,
            flags: irq_set_flags::DATA_NONE | irq_set_flags::ACTION_TRIGGER,
            index,
            start: 0,
            count: 0,
        };
        self.transact(cmd::DEVICE_SET_IRQS, &req.encode(), &[])?;
        Ok(())
    }

    /// Reset the device.
    pub fn reset(&mut self) -> Result<(), Error> {
        self.transact(cmd::DEVICE_RESET, &[], &[])?;
        Ok(())
    }

    fn transact(
        &mut self,
        command: u16,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<Vec<u8>, Error> {
        let deadline = wire::deadline_after(self.timeout);
        self.transact_until(command, payload, fds, deadline)
    }

    fn max_reply(&self) -> u32 {
        CLIENT_MAX_DATA_XFER.saturating_add((HEADER_SIZE + proto::REGION_ACCESS_SIZE) as u32)
    }

    /// Send one command and wait for its reply payload.
    fn transact_until(
        &mut self,
        command: u16,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>, Error> {
        if self.broken {
            return Err(Error::Disconnected);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let header = Header::command(id, command, payload.len())
            .ok_or(Error::InvalidArgument("message too large"))?;
        let sock = self.sock.as_fd();
        match wire::send_message(sock, &header, payload, fds, deadline) {
            Ok(()) => {}
            // The server may have answered before hanging up (a busy
            // refusal does): read what is there.
            Err(WireError::Eof { .. }) => {}
            Err(e) => return Err(self.fail(e)),
        }
        loop {
            let msg = match wire::recv_message(sock, deadline, self.max_reply(), MAX_FDS) {
                Ok(m) => m,
                Err(e) => return Err(self.fail(e)),
            };
            let h = msg.header;
            match h.msg_type() {
                flags::TYPE_REPLY => {}
                flags::TYPE_COMMAND => {
                    // Server-to-client commands (DMA_READ/WRITE) are not
                    // implemented: our DMA memory is always fd-backed.
                    if !h.no_reply() {
                        let r = Header::error_reply(h.msg_id, h.command, errno::ENOSYS);
                        if let Err(e) = wire::send_message(sock, &r, &[], &[], deadline) {
                            return Err(self.fail(e));
                        }
                    }
                    continue;
                }
                t => {
                    self.broken = true;
                    return Err(Error::Protocol(format!("message type {t:#x}")));
                }
            }
            if h.msg_id != id {
                tracing::debug!(msg_id = h.msg_id, expected = id, "skipping a stale reply");
                continue;
            }
            if h.command != command {
                return Err(Error::Protocol(format!(
                    "reply for command {} to command {}",
                    h.command, command
                )));
            }
            if h.is_error() {
                return Err(Error::Remote(i32::try_from(h.error).unwrap_or(i32::MAX)));
            }
            return Ok(msg.payload);
        }
    }

    /// Map a transport failure to an error, marking the connection unusable
    /// when the framing may be lost.
    fn fail(&mut self, e: WireError) -> Error {
        match e {
            WireError::Timeout { partial } => {
                if partial {
                    self.broken = true;
                }
                Error::Timeout(self.timeout)
            }
            WireError::Eof { .. } => {
                self.broken = true;
                Error::Disconnected
            }
            WireError::SizeTooSmall(h) | WireError::SizeTooLarge(h) => {
                self.broken = true;
                Error::Protocol(format!("reply with size {}", h.size))
            }
            WireError::Io(e) => {
                self.broken = true;
                Error::Io(e)
            }
        }
    }
}

fn connect_socket(
    path: &Path,
    deadline: Option<Instant>,
    timeout: Duration,
) -> Result<OwnedFd, Error> {
    let addr = SocketAddrUnix::new(path).map_err(io::Error::from)?;
    loop {
        let sock = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(io::Error::from)?;
        match rustix::net::connect(&sock, &addr) {
            Ok(()) => return Ok(sock),
            // The listener's backlog is full (a server not accepting).
            Err(Errno::AGAIN) | Err(Errno::INTR) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(Error::Timeout(timeout));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(Error::Io(e.into())),
        }
    }
}

/// Memory to share with the device for DMA: a memfd of a whole number of
/// pages, sealed against shrinking and growing (so neither side can pull
/// it from under the other), accessed by copying (`pread`/`pwrite`, see
/// [`FdMemory`]).
#[derive(Debug)]
pub struct DmaBuffer {
    fd: OwnedFd,
    mem: FdMemory,
}

impl DmaBuffer {
    /// A zeroed buffer of at least `size` bytes (rounded up to a page).
    pub fn new(size: usize) -> io::Result<DmaBuffer> {
        let page = DMA_PAGE_SIZE as usize;
        let len = size
            .max(1)
            .checked_next_multiple_of(page)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "size too large"))?;
        let fd = rustix::fs::memfd_create(
            "hitless-dma",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        let mem = FdMemory::new(fd.try_clone()?, 0, len as u64, true);
        Ok(DmaBuffer { fd, mem })
    }

    /// The memfd to pass to [`Client::dma_map`].
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Length in bytes (a multiple of [`DMA_PAGE_SIZE`]).
    pub fn len(&self) -> usize {
        usize::try_from(self.mem.len()).unwrap_or(usize::MAX)
    }

    /// Whether the buffer is empty (never).
    pub fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }

    /// Copy out `buf.len()` bytes at `offset`. `false`: out of range.
    #[must_use]
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        self.mem.read(offset as u64, buf).is_ok()
    }

    /// Copy `data` in at `offset`. `false`: out of range.
    #[must_use]
    pub fn write(&self, offset: usize, data: &[u8]) -> bool {
        self.mem.write(offset as u64, data).is_ok()
    }

    /// The memory itself.
    pub fn memory(&self) -> &FdMemory {
        &self.mem
    }
}

/// An eventfd to receive interrupts on (non-blocking, close-on-exec). Pass
/// `as_fd()` to [`Client::set_irqs`].
#[derive(Debug)]
pub struct IrqEvent {
    fd: OwnedFd,
}

impl IrqEvent {
    /// A fresh eventfd with counter 0.
    pub fn new() -> io::Result<IrqEvent> {
        let fd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(IrqEvent { fd })
    }

    /// Take the pending count without waiting (`None`: nothing pending).
    pub fn try_take(&self) -> io::Result<Option<u64>> {
        let mut b = [0u8; 8];
        match rustix::io::read(&self.fd, &mut b) {
            Ok(8) => Ok(Some(u64::from_ne_bytes(b))),
            Ok(_) | Err(Errno::AGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Wait up to `timeout` for interrupts and take the pending count
    /// (`None`: none arrived in time).
    pub fn wait(&self, timeout: Duration) -> io::Result<Option<u64>> {
        let deadline = wire::deadline_after(timeout);
        loop {
            if let Some(n) = self.try_take()? {
                return Ok(Some(n));
            }
            let ready = wire::poll_fds(&[(self.fd.as_fd(), PollFlags::IN)], deadline)?;
            if ready.iter().all(|r| r.is_empty()) {
                return self.try_take();
            }
        }
    }
}

impl AsFd for IrqEvent {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
