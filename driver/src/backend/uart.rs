//! UART transport: a board without PCIe (ULX3S, OrangeCrab, iCEBreaker,
//! Tang Nano, Arty) driven over USB serial through the board top-level's
//! UART bridge (`hitless_hdl::rtl::bridge`).
//!
//! Registers are the bridge's CSR commands; the DMA window is the board's
//! 16 KiB block-RAM host memory at IOVA 0, read and written with the
//! bridge's memory commands. There is no interrupt line: `wait_irq` waits a
//! little and the driver polls the completion ring.
//!
//! The serial port is configured raw with `rustix::termios` (rustix is
//! already the driver's system-call crate, so the transport adds no
//! dependency); every read waits with `poll` and a deadline. A reply that
//! is short, late or not what the protocol allows is an error, and the
//! next command first waits out the bridge's resynchronization timeout and
//! drops whatever arrived late.

use crate::error::{Error, Result};
use crate::io::{CardIo, DmaWindow};
use hitless_hdl::contract::board;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};
use rustix::termios::{self, OptionalActions, QueueSelector};
use std::cell::{Cell, RefCell};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes of the board's host-memory window (`contract::board`).
pub const WINDOW_BYTES: usize = board::HOST_WINDOW_BYTES as usize;
/// The window's address as the controller sees it.
pub const WINDOW_IOVA: u64 = board::HOST_WINDOW_IOVA;
/// The default line rate of the board builds.
pub const DEFAULT_BAUD: u32 = board::DEFAULT_BAUD;

use board::{
    CMD_CSR_READ as CSR_READ, CMD_CSR_WRITE as CSR_WRITE, CMD_MEM_READ as MEM_READ,
    CMD_MEM_WRITE as MEM_WRITE, REPLY_ERR, REPLY_OK,
};
/// Largest memory command (the count field is 16 bits).
const MAX_CHUNK: usize = board::MAX_MEM_COMMAND as usize;

/// The serial line and the protocol on it.
struct Port {
    fd: OwnedFd,
    /// Seconds per byte on the line (10 bits per 8N1 frame).
    byte_time: f64,
    timeout: Duration,
    /// The last command failed: the bridge may hold a partial command.
    desync: Cell<bool>,
}

impl Port {
    /// How long the bridge takes to drop a partial command
    /// (`board::RESYNC_BYTE_TIMES`) plus margin.
    fn resync_wait(&self) -> Duration {
        Duration::from_secs_f64(self.byte_time * f64::from(board::RESYNC_WAIT_BYTE_TIMES))
            .max(Duration::from_millis(5))
    }

    /// Time allowed for a command that moves `bytes` bytes in total.
    fn deadline(&self, bytes: usize) -> Instant {
        Instant::now() + self.timeout + Duration::from_secs_f64(self.byte_time * bytes as f64 * 2.0)
    }

    /// Send `request`, then read exactly `reply.len()` bytes.
    fn transact(&self, request: &[u8], reply: &mut [u8]) -> Result<()> {
        if self.desync.get() {
            std::thread::sleep(self.resync_wait());
            termios::tcflush(&self.fd, QueueSelector::IFlush)
                .map_err(|e| Error::transport("tcflush", e))?;
        }
        self.desync.set(true);
        let deadline = self.deadline(request.len() + reply.len());
        let mut sent = 0;
        while sent < request.len() {
            self.wait(
                PollFlags::OUT,
                deadline,
                "the serial port to accept a command",
            )?;
            match rustix::io::write(&self.fd, &request[sent..]) {
                Ok(n) => sent += n,
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::transport("serial write", e)),
            }
        }
        let mut got = 0;
        while got < reply.len() {
            if let Err(e) = self.wait(PollFlags::IN, deadline, "the board's UART reply") {
                return Err(match e {
                    Error::Timeout { .. } if got > 0 => Error::transport_msg(format!(
                        "short reply from the board: {got} of {} bytes",
                        reply.len()
                    )),
                    other => other,
                });
            }
            match rustix::io::read(&self.fd, &mut reply[got..]) {
                Ok(0) => return Err(Error::transport_msg("serial port closed")),
                Ok(n) => got += n,
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::transport("serial read", e)),
            }
        }
        self.desync.set(false);
        Ok(())
    }

    /// Wait until the port is ready for `flags`, at most until `deadline`.
    fn wait(&self, flags: PollFlags, deadline: Instant, what: &'static str) -> Result<()> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    what,
                    after: self.timeout,
                });
            }
            let ts = Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            };
            let mut fds = [PollFd::new(&self.fd, flags)];
            match poll(&mut fds, Some(&ts)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {
                    let ev = fds[0].revents();
                    if ev.intersects(PollFlags::ERR | PollFlags::NVAL) {
                        return Err(Error::transport_msg("serial port error"));
                    }
                    // HUP with data still readable: let read() drain it.
                    if ev.intersects(flags | PollFlags::HUP) {
                        return Ok(());
                    }
                }
                Err(e) => return Err(Error::transport("poll", e)),
            }
        }
    }

    fn mem_read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        for (i, chunk) in buf.chunks_mut(MAX_CHUNK).enumerate() {
            let at = mem_addr(addr + (i * MAX_CHUNK) as u64)?;
            let mut req = vec![MEM_READ];
            req.extend_from_slice(&at.to_le_bytes());
            req.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
            self.transact(&req, chunk)?;
        }
        Ok(())
    }

    fn mem_write(&self, addr: u64, data: &[u8]) -> Result<()> {
        for (i, chunk) in data.chunks(MAX_CHUNK).enumerate() {
            let at = mem_addr(addr + (i * MAX_CHUNK) as u64)?;
            let mut req = vec![MEM_WRITE];
            req.extend_from_slice(&at.to_le_bytes());
            req.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
            req.extend_from_slice(chunk);
            let mut ack = [0u8];
            self.transact(&req, &mut ack)?;
            if ack[0] != REPLY_OK {
                self.desync.set(true);
                return Err(Error::transport_msg(format!(
                    "memory write: the board answered {:#04x}, not 'K'",
                    ack[0]
                )));
            }
        }
        Ok(())
    }
}

fn mem_addr(addr: u64) -> Result<u32> {
    u32::try_from(addr)
        .map_err(|_| Error::InvalidArgument(format!("board memory address {addr:#x}")))
}

/// The DMA window: the board's host memory, over the UART. A failed
/// transfer reads or writes nothing, returns `false`, and keeps the error
/// for [`UartIo::take_error`] (the `DmaWindow` trait has no error type).
struct Window {
    port: Port,
    error: RefCell<Option<Error>>,
}

impl Window {
    fn in_range(&self, offset: usize, len: usize) -> bool {
        offset.checked_add(len).is_some_and(|e| e <= WINDOW_BYTES)
    }
}

impl DmaWindow for Window {
    fn iova(&self) -> u64 {
        WINDOW_IOVA
    }
    fn len(&self) -> usize {
        WINDOW_BYTES
    }
    fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        if !self.in_range(offset, buf.len()) {
            return false;
        }
        let mut tmp = vec![0u8; buf.len()];
        match self.port.mem_read(WINDOW_IOVA + offset as u64, &mut tmp) {
            Ok(()) => {
                buf.copy_from_slice(&tmp);
                true
            }
            Err(e) => {
                tracing::warn!("uart: DMA window read failed: {e}");
                *self.error.borrow_mut() = Some(e);
                false
            }
        }
    }
    fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        if !self.in_range(offset, data.len()) {
            return false;
        }
        match self.port.mem_write(WINDOW_IOVA + offset as u64, data) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("uart: DMA window write failed: {e}");
                *self.error.borrow_mut() = Some(e);
                false
            }
        }
    }
}

/// A board over a serial port.
pub struct UartIo {
    window: Window,
    path: PathBuf,
    baud: u32,
}

impl UartIo {
    /// Open `path` (a tty) raw at `baud` 8N1; `timeout` bounds every
    /// command (plus the line time of its bytes).
    pub fn open(path: &Path, baud: u32, timeout: Duration) -> Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::transport(format!("{}", path.display()), e))?;
        let mut t = termios::tcgetattr(&fd)
            .map_err(|e| Error::transport(format!("{}: not a tty", path.display()), e))?;
        t.make_raw();
        t.control_modes |= termios::ControlModes::CLOCAL | termios::ControlModes::CREAD;
        t.control_modes -= termios::ControlModes::CSTOPB | termios::ControlModes::PARENB;
        t.set_speed(baud)
            .map_err(|e| Error::transport(format!("{}: {baud} baud", path.display()), e))?;
        termios::tcsetattr(&fd, OptionalActions::Now, &t)
            .map_err(|e| Error::transport(format!("{}: tcsetattr", path.display()), e))?;
        termios::tcflush(&fd, QueueSelector::IOFlush)
            .map_err(|e| Error::transport(format!("{}: tcflush", path.display()), e))?;
        Ok(Self {
            window: Window {
                port: Port {
                    fd,
                    byte_time: 10.0 / baud.max(1) as f64,
                    timeout,
                    desync: Cell::new(false),
                },
                error: RefCell::new(None),
            },
            path: path.to_path_buf(),
            baud,
        })
    }

    /// Parse `DEVICE[@BAUD]` (what follows `uart:` in a card spec) and open it.
    pub fn from_spec(spec: &str, timeout: Duration) -> Result<Self> {
        let (dev, baud) = match spec.rsplit_once('@') {
            Some((d, b)) => (
                d,
                b.parse::<u32>()
                    .ok()
                    .filter(|&b| b > 0)
                    .ok_or_else(|| Error::InvalidArgument(format!("uart: bad baud rate {b:?}")))?,
            ),
            None => (spec, DEFAULT_BAUD),
        };
        if dev.is_empty() {
            return Err(Error::InvalidArgument("uart: device path missing".into()));
        }
        Self::open(Path::new(dev), baud, timeout)
    }

    /// The error behind the last DMA window access that returned `false`.
    pub fn take_error(&mut self) -> Option<Error> {
        self.window.error.borrow_mut().take()
    }
}

impl CardIo for UartIo {
    fn read32(&mut self, offset: u32) -> Result<u32> {
        let mut req = [CSR_READ, 0, 0, 0, 0];
        req[1..].copy_from_slice(&offset.to_le_bytes());
        let mut reply = [0u8; 4];
        self.window.port.transact(&req, &mut reply)?;
        Ok(u32::from_le_bytes(reply))
    }

    fn write32(&mut self, offset: u32, value: u32) -> Result<()> {
        let mut req = [CSR_WRITE, 0, 0, 0, 0, 0, 0, 0, 0];
        req[1..5].copy_from_slice(&offset.to_le_bytes());
        req[5..].copy_from_slice(&value.to_le_bytes());
        let mut ack = [0u8];
        self.window.port.transact(&req, &mut ack)?;
        match ack[0] {
            REPLY_OK => Ok(()),
            REPLY_ERR => Err(Error::transport_msg(format!(
                "register write {value:#x} to {offset:#x}: error response"
            ))),
            other => {
                self.window.port.desync.set(true);
                Err(Error::transport_msg(format!(
                    "register write: the board answered {other:#04x}, not 'K' or 'E'"
                )))
            }
        }
    }

    fn dma(&mut self) -> &mut dyn DmaWindow {
        &mut self.window
    }

    fn wait_irq(&mut self, timeout: Duration) -> Result<bool> {
        // No interrupt line over the UART; commands themselves take a while.
        std::thread::sleep(timeout.min(Duration::from_micros(200)));
        Ok(false)
    }

    fn describe(&self) -> String {
        format!("uart:{}@{}", self.path.display(), self.baud)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_errors_are_typed() {
        let t = Duration::from_millis(10);
        assert!(matches!(
            UartIo::from_spec("", t),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            UartIo::from_spec("/dev/null@fast", t),
            Err(Error::InvalidArgument(_))
        ));
        // Not a tty: a transport error, not a panic.
        assert!(matches!(
            UartIo::from_spec("/dev/null@9600", t),
            Err(Error::Transport { .. })
        ));
        assert!(matches!(
            UartIo::from_spec("/nonexistent/tty", t),
            Err(Error::Transport { .. })
        ));
    }

    /// A fake board on a pseudo-terminal that answers garbage and short
    /// replies: the transport reports errors, never hangs or panics.
    #[test]
    fn garbage_and_short_replies_are_errors() {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let path = PathBuf::from(name.to_str().unwrap());
        let mut io = UartIo::open(&path, 1_000_000, Duration::from_millis(100)).unwrap();
        let fake = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            // 1: a write answered with garbage.
            let _ = rustix::io::read(&master, &mut buf);
            rustix::io::write(&master, b"?").unwrap();
            // 2: a read answered with 2 of 4 bytes.
            std::thread::sleep(Duration::from_millis(20));
            let _ = rustix::io::read(&master, &mut buf);
            rustix::io::write(&master, &[1, 2]).unwrap();
            // 3: a write answered with 'E'.
            std::thread::sleep(Duration::from_millis(150));
            let _ = rustix::io::read(&master, &mut buf);
            rustix::io::write(&master, b"E").unwrap();
            std::thread::sleep(Duration::from_millis(300));
            master
        });
        let e = io.write32(0x10, 1).unwrap_err();
        assert!(e.to_string().contains("not 'K'"), "{e}");
        let e = io.read32(0x10).unwrap_err();
        assert!(e.to_string().contains("short reply"), "{e}");
        let e = io.write32(0x10, 1).unwrap_err();
        assert!(e.to_string().contains("error response"), "{e}");
        // Nothing answers now: a timeout.
        assert!(matches!(io.read32(0), Err(Error::Timeout { .. })));
        drop(fake.join().unwrap());
        let mut b = [0u8; 4];
        assert!(!io.dma().read(WINDOW_BYTES - 2, &mut b));
    }
}
