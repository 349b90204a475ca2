//! Shared test fixtures: a fake card, a server thread, raw socket helpers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hitless_vfio_user::proto::{self, cmd, Header, Version, HEADER_SIZE};
use hitless_vfio_user::{
    card, Device, DeviceDescription, DmaRegion, DmaSpace, Error, IrqFd, Limits, Server, StopHandle,
};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

/// Fake card registers (byte offsets in BAR0).
pub const REG_DMA_ADDR: u64 = 0x80; // u64
pub const REG_DMA_LEN: u64 = 0x88; // u32
pub const REG_DOORBELL: u64 = 0x8c; // u32: 1 = read+sum, 2 = write pattern, 3 = irq
pub const REG_RESULT: u64 = 0x90; // u32: sum of bytes
pub const REG_STATUS: u64 = 0x94; // u32: 0 ok, 1 DMA error, 2 no IRQ fd

pub const CMD_SUM: u32 = 1;
pub const CMD_PATTERN: u32 = 2;
pub const CMD_IRQ: u32 = 3;

pub fn pattern(i: usize) -> u8 {
    (i as u8) ^ 0x5a
}

#[derive(Debug, Default)]
pub struct FakeState {
    pub regs: Vec<u8>,
    pub dma: DmaSpace,
    pub irq: Option<IrqFd>,
    pub resets: u32,
    /// Calls the server should never have made (out of range etc.).
    pub violations: Vec<String>,
}

/// A register array with a tiny DMA engine and one interrupt.
#[derive(Clone)]
pub struct FakeCard {
    pub state: Arc<Mutex<FakeState>>,
}

impl FakeCard {
    pub fn new() -> FakeCard {
        FakeCard {
            state: Arc::new(Mutex::new(FakeState {
                regs: vec![0; card::BAR0_SIZE as usize],
                ..FakeState::default()
            })),
        }
    }
}

fn get32(regs: &[u8], off: u64) -> u32 {
    let o = off as usize;
    u32::from_ne_bytes(regs[o..o + 4].try_into().unwrap())
}

fn put32(regs: &mut [u8], off: u64, v: u32) {
    let o = off as usize;
    regs[o..o + 4].copy_from_slice(&v.to_ne_bytes());
}

impl FakeState {
    fn check(&mut self, what: &str, region: u32, offset: u64, len: usize) -> bool {
        let ok = region == card::BAR0
            && len > 0
            && len.is_power_of_two()
            && offset
                .checked_add(len as u64)
                .is_some_and(|e| e <= card::BAR0_SIZE);
        if !ok {
            self.violations.push(format!(
                "{what} region {region} offset {offset:#x} len {len}"
            ));
        }
        ok
    }

    fn doorbell(&mut self, cmd: u32) {
        let addr = u64::from_ne_bytes(
            self.regs[REG_DMA_ADDR as usize..REG_DMA_ADDR as usize + 8]
                .try_into()
                .unwrap(),
        );
        let len = (get32(&self.regs, REG_DMA_LEN) as usize).min(1 << 20);
        let status = match cmd {
            CMD_SUM => {
                let mut buf = vec![0u8; len];
                match self.dma.read(addr, &mut buf) {
                    Ok(()) => {
                        let sum = buf.iter().map(|&b| u32::from(b)).sum::<u32>();
                        put32(&mut self.regs, REG_RESULT, sum);
                        0
                    }
                    Err(_) => 1,
                }
            }
            CMD_PATTERN => {
                let buf: Vec<u8> = (0..len).map(pattern).collect();
                match self.dma.write(addr, &buf) {
                    Ok(()) => 0,
                    Err(_) => 1,
                }
            }
            CMD_IRQ => match &self.irq {
                Some(fd) => {
                    fd.trigger().unwrap();
                    0
                }
                None => 2,
            },
            _ => 0,
        };
        put32(&mut self.regs, REG_STATUS, status);
    }
}

impl Device for FakeCard {
    fn description(&self) -> DeviceDescription {
        card::description()
    }

    fn region_read(&mut self, region: u32, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let mut s = self.state.lock().unwrap();
        if !s.check("read", region, offset, buf.len()) {
            return Err(Error::InvalidArgument("fake card: out of range"));
        }
        let o = offset as usize;
        buf.copy_from_slice(&s.regs[o..o + buf.len()]);
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> Result<(), Error> {
        let mut s = self.state.lock().unwrap();
        if !s.check("write", region, offset, data.len()) {
            return Err(Error::InvalidArgument("fake card: out of range"));
        }
        let o = offset as usize;
        s.regs[o..o + data.len()].copy_from_slice(data);
        if offset == REG_DOORBELL && data.len() == 4 {
            let cmd = get32(&s.regs, REG_DOORBELL);
            s.doorbell(cmd);
        }
        Ok(())
    }

    fn dma_map(&mut self, region: DmaRegion) -> Result<(), Error> {
        let mut s = self.state.lock().unwrap();
        if region.size == 0 || region.iova.checked_add(region.size).is_none() {
            s.violations.push(format!("bad dma_map {region:?}"));
        }
        s.dma.map(region)
    }

    fn dma_unmap(&mut self, iova: u64, size: u64) -> Result<(), Error> {
        let mut s = self.state.lock().unwrap();
        let r = s.dma.unmap(iova, size);
        if r.is_err() {
            s.violations
                .push(format!("unmap of unknown {iova:#x}+{size:#x}"));
        }
        r
    }

    fn set_irqs(
        &mut self,
        index: u32,
        start: u32,
        count: u32,
        mut fds: Vec<IrqFd>,
    ) -> Result<(), Error> {
        let mut s = self.state.lock().unwrap();
        let ok = index == card::IRQ_INDEX
            && start
                .checked_add(count)
                .is_some_and(|e| e <= card::IRQ_VECTORS)
            && (fds.is_empty() || fds.len() == count as usize);
        if !ok {
            s.violations.push(format!(
                "set_irqs index {index} start {start} count {count} fds {}",
                fds.len()
            ));
            return Err(Error::InvalidArgument("fake card: out of range"));
        }
        s.irq = fds.pop();
        Ok(())
    }

    fn reset(&mut self) -> Result<(), Error> {
        let mut s = self.state.lock().unwrap();
        s.regs.iter_mut().for_each(|b| *b = 0);
        s.resets += 1;
        Ok(())
    }
}

/// Limits for tests: short timeouts so stalls end quickly.
pub fn test_limits() -> Limits {
    Limits {
        message_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

/// A server thread on a socket in a temporary directory.
pub struct TestServer {
    pub path: PathBuf,
    pub card: FakeCard,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(test_limits())
    }

    pub fn start_with(limits: Limits) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.sock");
        let server = Server::bind(&path, limits).unwrap();
        let stop = server.stop_handle();
        let card = FakeCard::new();
        let mut dev = card.clone();
        let thread = std::thread::spawn(move || {
            server.run(&mut dev).unwrap();
        });
        TestServer {
            path,
            card,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn violations(&self) -> Vec<String> {
        self.card.state.lock().unwrap().violations.clone()
    }

    /// Wait until the server has released the last connection's DMA maps
    /// and IRQ (it does so before closing the socket, but the test may look
    /// before the server thread got there).
    pub fn wait_released(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            {
                let s = self.card.state.lock().unwrap();
                if s.dma.is_empty() && s.irq.is_none() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server did not release resources"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.expect("server thread panicked");
            }
        }
    }
}

/// A whole message: header + payload.
pub fn message(id: u16, command: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Header::command(id, command, payload.len())
        .unwrap()
        .encode()
        .to_vec();
    v.extend_from_slice(payload);
    v
}

/// A message whose header declares `size` regardless of the payload.
pub fn message_sized(id: u16, command: u16, flags: u32, size: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Header {
        msg_id: id,
        command,
        size,
        flags,
        error: 0,
    }
    .encode()
    .to_vec();
    v.extend_from_slice(payload);
    v
}

pub fn version_payload() -> Vec<u8> {
    Version {
        major: proto::VERSION_MAJOR,
        minor: proto::VERSION_MINOR,
        json: Some(serde_json_value()),
    }
    .encode()
}

fn serde_json_value() -> serde_json::Value {
    serde_json::json!({"capabilities": {"max_msg_fds": 8}})
}

pub fn version_message() -> Vec<u8> {
    message(0, cmd::VERSION, &version_payload())
}

pub fn get_info_message(id: u16) -> Vec<u8> {
    message(
        id,
        cmd::DEVICE_GET_INFO,
        &proto::DeviceInfo {
            argsz: 16,
            ..Default::default()
        }
        .encode(),
    )
}

/// Send bytes with descriptors attached to the first byte.
pub fn send_with_fds(stream: &UnixStream, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    try_send_with_fds(stream, bytes, fds).unwrap();
}

/// [`send_with_fds`] returning the error (the server may hang up first).
pub fn try_send_with_fds(
    stream: &UnixStream,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    if fds.is_empty() {
        return (&*stream).write_all(bytes);
    }
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    let iov = [std::io::IoSlice::new(bytes)];
    let n = rustix::net::sendmsg(stream, &iov, &mut control, SendFlags::NOSIGNAL)?;
    if n < bytes.len() {
        (&*stream).write_all(&bytes[n..])?;
    }
    Ok(())
}

/// Read one message (header + payload); `None` on EOF or timeout.
pub fn read_message(stream: &UnixStream, timeout: Duration) -> Option<(Header, Vec<u8>)> {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut hdr = [0u8; HEADER_SIZE];
    (&*stream).read_exact(&mut hdr).ok()?;
    let h = Header::decode(&hdr)?;
    let mut payload = vec![0u8; (h.size as usize).saturating_sub(HEADER_SIZE)];
    (&*stream).read_exact(&mut payload).ok()?;
    Some((h, payload))
}

/// Whether the peer closes the connection within `timeout` (reading and
/// discarding anything that arrives before).
pub fn closed_within(stream: &UnixStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match (&*stream).read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Connect a raw stream and negotiate (consuming the VERSION reply).
pub fn raw_negotiated(path: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    (&s).write_all(&version_message()).unwrap();
    let (h, _) = read_message(&s, Duration::from_secs(2)).expect("VERSION reply");
    assert!(!h.is_error(), "VERSION refused: {h:?}");
    s
}

/// A sealed memfd of `len` bytes.
pub fn sealed_memfd(len: u64) -> OwnedFd {
    let fd = unsealed_memfd(len);
    rustix::fs::fcntl_add_seals(
        &fd,
        rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW,
    )
    .unwrap();
    fd
}

/// An unsealed (but sealable) memfd of `len` bytes.
pub fn unsealed_memfd(len: u64) -> OwnedFd {
    let fd = rustix::fs::memfd_create(
        "test",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    rustix::fs::ftruncate(&fd, len).unwrap();
    fd
}

pub fn eventfd() -> OwnedFd {
    rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap()
}

pub fn borrow(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(|f| f.as_fd()).collect()
}

/// A good client still works: connect, write and read back a register.
pub fn assert_good_client(server: &TestServer) {
    let mut c = hitless_vfio_user::Client::connect(&server.path, Duration::from_secs(2))
        .expect("good client connects");
    let v = 0xC0FF_EE00u32 ^ (Instant::now().elapsed().subsec_nanos());
    c.write32(card::BAR0, 0x40, v).unwrap();
    assert_eq!(c.read32(card::BAR0, 0x40).unwrap(), v);
}
