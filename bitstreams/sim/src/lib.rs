//! The Verilated UART board top-level (`hitless_hdl::rtl::board::BoardTop`:
//! controller, UART bridge, block-RAM host memory and warm tier, the cold
//! tier on SPI flash) behind a pseudo-terminal: the board's "USB serial
//! port" is the pty's slave side, so the driver's `uart:` transport talks to
//! the real bridge RTL, bit by bit on the simulated line. The board's flash
//! is a [`flash::SpiFlash`] that outlives the board: power the board off
//! ([`PtyBoard::power_off`]) and start a new one on the same flash.
//!
//! Two boards: [`Variant::Full`] (`BoardTop`) and [`Variant::Lite`]
//! (`LiteBoardTop`, the reduced controller of small FPGAs, no cold tier).
//! [`SerialBoard`] steps either in the caller's thread, cycle-exact, for
//! measurements in cycles.

pub mod flash;

use flash::{SpiFlash, SECTOR};
use hitless_hdl::contract::board;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// UART clocks per bit of the simulated board.
pub const DIVIDER: u32 = match u32::from_str_radix(env!("HITLESS_BOARD_DIVIDER"), 10) {
    Ok(d) => d,
    Err(_) => panic!("HITLESS_BOARD_DIVIDER"),
};

/// Errors of the simulated board.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pseudo-terminal could not be set up.
    #[error("pseudo-terminal: {0}")]
    Pty(#[from] rustix::io::Errno),
    /// The board's UART bridge did not answer a command as it should.
    #[error("the UART bridge refused or did not answer {0}")]
    Bridge(&'static str),
    /// The ring engine (ring full, a timeout in board cycles).
    #[error(transparent)]
    Ring(#[from] hitless_ring::RingError),
}

extern "C" {
    fn hb_new() -> *mut c_void;
    fn hb_free(p: *mut c_void);
    fn hb_cycle(p: *mut c_void, rx: u32, miso: u32, reset: u32) -> u32;
    fn hl_new() -> *mut c_void;
    fn hl_free(p: *mut c_void);
    fn hl_cycle(p: *mut c_void, rx: u32, miso: u32, reset: u32) -> u32;
}

/// Which board top-level runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variant {
    /// `BoardTop`: the full controller, warm tier in block RAM, cold tier
    /// on the SPI flash.
    #[default]
    Full,
    /// `LiteBoardTop`: the reduced controller for small FPGAs (one tier,
    /// no COPY or log; `contract::LITE_LIMITS`); the flash is not used.
    Lite,
}

/// Bytes of the simulated board flash.
pub const FLASH_BYTES: usize = 1 << 20;

/// The Verilated board with its flash, one clock cycle per call.
pub struct BoardModel {
    p: *mut c_void,
    variant: Variant,
    /// Cycles the reset button stays pressed.
    reset_left: u32,
    flash: SpiFlash,
    miso: bool,
    irqs: u64,
}

// SAFETY: the model is only used from the thread that owns it.
unsafe impl Send for BoardModel {}

impl BoardModel {
    /// A board just powered on, with an erased flash.
    pub fn new() -> Self {
        Self::with_flash(SpiFlash::new(FLASH_BYTES))
    }

    /// A board just powered on, with `flash`.
    pub fn with_flash(flash: SpiFlash) -> Self {
        Self::of(Variant::Full, flash)
    }

    /// A board of `variant` just powered on, with `flash`.
    pub fn of(variant: Variant, flash: SpiFlash) -> Self {
        // SAFETY: hb_new / hl_new return a fresh model or abort.
        let p = unsafe {
            match variant {
                Variant::Full => hb_new(),
                Variant::Lite => hl_new(),
            }
        };
        Self {
            p,
            variant,
            reset_left: 0,
            flash,
            miso: true,
            irqs: 0,
        }
    }

    /// One cycle with `rx` on the UART input; returns (tx, leds).
    pub fn cycle(&mut self, rx: bool) -> (bool, u8) {
        // SAFETY: `p` is a live model of `variant` (freed only in drop).
        let reset = (self.reset_left > 0) as u32;
        self.reset_left = self.reset_left.saturating_sub(1);
        let r = unsafe {
            match self.variant {
                Variant::Full => hb_cycle(self.p, rx as u32, self.miso as u32, reset),
                Variant::Lite => hl_cycle(self.p, rx as u32, self.miso as u32, reset),
            }
        };
        self.miso = self
            .flash
            .cycle(r >> 6 & 1 != 0, r >> 5 & 1 != 0, r >> 7 & 1 != 0);
        self.irqs += u64::from(r >> 8 & 1);
        (r & 1 != 0, ((r >> 1) & 15) as u8)
    }

    /// Interrupt messages (one-cycle pulses of the board top's `irq`) since
    /// power-on; a warm reset keeps the count.
    pub fn irqs(&self) -> u64 {
        self.irqs
    }

    /// Press the reset button for the next `cycles` cycles: a warm reset
    /// (memories keep their contents, the controller boots again).
    pub fn press_reset(&mut self, cycles: u32) {
        self.reset_left = cycles;
    }

    /// Cut the power: the board's state is gone, the flash keeps what it
    /// holds (an erase or program in progress is left half done).
    pub fn power_off(mut self, rng: &mut impl rand::Rng) -> SpiFlash {
        let mut flash = std::mem::replace(&mut self.flash, SpiFlash::new(SECTOR));
        flash.power_cut(rng);
        flash
    }
}

impl Default for BoardModel {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for BoardModel {
    fn drop(&mut self) {
        // SAFETY: `p` came from hb_new / hl_new (per `variant`) and is
        // freed once.
        unsafe {
            match self.variant {
                Variant::Full => hb_free(self.p),
                Variant::Lite => hl_free(self.p),
            }
        }
    }
}

/// The host side of the simulated line: serializes bytes onto `rx` and
/// deserializes `tx`, 8N1 at `DIVIDER` clocks per bit.
#[derive(Default)]
struct Line {
    to_board: VecDeque<u8>,
    /// Current frame being sent: (bits left incl. start/stop, frame, clocks left in bit).
    sending: Option<(u32, u16, u32)>,
    /// Receiver: None idle, Some((bit index, shift, clocks to next sample)).
    receiving: Option<(u32, u8, u32)>,
}

impl Line {
    /// The rx level for this cycle.
    fn rx(&mut self) -> bool {
        if self.sending.is_none() {
            if let Some(b) = self.to_board.pop_front() {
                // start 0, data LSB first, stop 1
                self.sending = Some((10, (b as u16) << 1 | 0x200, DIVIDER));
            }
        }
        match &mut self.sending {
            None => true,
            Some((left, frame, clocks)) => {
                let level = *frame & 1 != 0;
                *clocks -= 1;
                if *clocks == 0 {
                    *frame >>= 1;
                    *left -= 1;
                    *clocks = DIVIDER;
                    if *left == 0 {
                        self.sending = None;
                    }
                }
                level
            }
        }
    }

    /// Sample tx; returns a completed byte.
    fn tx(&mut self, level: bool) -> Option<u8> {
        match &mut self.receiving {
            None => {
                if !level {
                    // Start bit seen: sample its middle, then every bit.
                    self.receiving = Some((0, 0, DIVIDER / 2));
                }
                None
            }
            Some((idx, shift, clocks)) => {
                *clocks -= 1;
                if *clocks > 0 {
                    return None;
                }
                *clocks = DIVIDER;
                match *idx {
                    0 => {
                        if level {
                            self.receiving = None; // glitch
                        } else {
                            *idx = 1;
                        }
                        None
                    }
                    1..=8 => {
                        *shift = (*shift >> 1) | ((level as u8) << 7);
                        *idx += 1;
                        None
                    }
                    _ => {
                        let b = *shift;
                        self.receiving = None;
                        level.then_some(b)
                    }
                }
            }
        }
    }
}

/// A board and the host end of its line stepped in the caller's thread,
/// one cycle at a time: cycle-exact timing, with no pseudo-terminal and no
/// host scheduling in between (for measurements in cycles).
pub struct SerialBoard {
    board: BoardModel,
    line: Line,
    cycles: u64,
    leds: u8,
}

impl SerialBoard {
    /// A board of `variant` just powered on (erased flash), past its reset.
    pub fn new(variant: Variant) -> Self {
        let mut b = Self {
            board: BoardModel::of(variant, SpiFlash::new(FLASH_BYTES)),
            line: Line::default(),
            cycles: 0,
            leds: 0,
        };
        b.run(100);
        b
    }

    /// Cycles since power-on.
    pub fn cycles(&self) -> u64 {
        self.cycles
    }

    /// The LEDs after the last cycle.
    pub fn leds(&self) -> u8 {
        self.leds
    }

    /// Interrupt messages since power-on.
    pub fn irqs(&self) -> u64 {
        self.board.irqs()
    }

    /// One cycle; returns a byte the board finished sending.
    fn step(&mut self) -> Option<u8> {
        let rx = self.line.rx();
        let (tx, leds) = self.board.cycle(rx);
        self.leds = leds;
        self.cycles += 1;
        self.line.tx(tx)
    }

    /// Send `req` and collect `n` reply bytes (fewer if the board stays
    /// quiet for longer than the request and reply take on the line).
    pub fn exchange(&mut self, req: &[u8], n: usize) -> Vec<u8> {
        self.line.to_board.extend(req);
        let mut got = Vec::new();
        for _ in 0..(req.len() + n + 4) * 20 * DIVIDER as usize + 2000 {
            if let Some(b) = self.step() {
                got.push(b);
                if got.len() == n {
                    break;
                }
            }
        }
        got
    }

    /// Write a CSR through the bridge; whether it answered OKAY.
    pub fn csr_write(&mut self, addr: u32, value: u32) -> bool {
        let mut w = vec![board::CMD_CSR_WRITE];
        w.extend(addr.to_le_bytes());
        w.extend(value.to_le_bytes());
        self.exchange(&w, 1) == [board::REPLY_OK]
    }

    /// Read a CSR through the bridge.
    pub fn csr_read(&mut self, addr: u32) -> Option<u32> {
        let mut r = vec![board::CMD_CSR_READ];
        r.extend(addr.to_le_bytes());
        let got = self.exchange(&r, 4);
        Some(u32::from_le_bytes(got.try_into().ok()?))
    }

    /// Write host memory through the bridge (chunks of
    /// `board::MAX_MEM_COMMAND` bytes at most).
    pub fn mem_write(&mut self, addr: u32, data: &[u8]) -> bool {
        let chunk = board::MAX_MEM_COMMAND as usize;
        data.chunks(chunk).enumerate().all(|(i, c)| {
            let mut w = vec![board::CMD_MEM_WRITE];
            w.extend((addr + (i * chunk) as u32).to_le_bytes());
            w.extend((c.len() as u16).to_le_bytes());
            w.extend(c);
            self.exchange(&w, 1) == [board::REPLY_OK]
        })
    }

    /// Read host memory through the bridge (chunks of
    /// `board::MAX_MEM_COMMAND` bytes at most).
    pub fn mem_read(&mut self, addr: u32, buf: &mut [u8]) -> bool {
        let chunk = board::MAX_MEM_COMMAND as usize;
        buf.chunks_mut(chunk).enumerate().all(|(i, c)| {
            let mut r = vec![board::CMD_MEM_READ];
            r.extend((addr + (i * chunk) as u32).to_le_bytes());
            r.extend((c.len() as u16).to_le_bytes());
            let got = self.exchange(&r, c.len());
            if got.len() != c.len() {
                return false;
            }
            c.copy_from_slice(&got);
            true
        })
    }

    /// Run `n` cycles.
    pub fn run(&mut self, n: u64) {
        for _ in 0..n {
            self.step();
        }
    }

    /// Run until `done(leds)` holds, at most `max` cycles; the cycles it took.
    pub fn run_until(&mut self, max: u64, done: impl Fn(u8) -> bool) -> Option<u64> {
        (1..=max).find(|_| {
            self.step();
            done(self.leds)
        })
    }
}

/// One board clock cycle as the ring engine counts time (nominal).
const BOARD_CYCLE: std::time::Duration = std::time::Duration::from_nanos(10);

/// The board as the ring engine (`hitless-ring`, the driver's and the
/// firmware's) sees it: CSRs and host memory through the UART bridge,
/// waiting clocks the board.
impl hitless_ring::RingIo for SerialBoard {
    type Error = Error;
    fn read32(&mut self, offset: u32) -> Result<u32, Error> {
        self.csr_read(offset).ok_or(Error::Bridge("a CSR read"))
    }
    fn write32(&mut self, offset: u32, value: u32) -> Result<(), Error> {
        self.csr_write(offset, value)
            .then_some(())
            .ok_or(Error::Bridge("a CSR write"))
    }
    fn mem_write(&mut self, addr: u64, data: &[u8]) -> Result<(), Error> {
        let addr = u32::try_from(addr).map_err(|_| Error::Bridge("a memory write above 4 GiB"))?;
        SerialBoard::mem_write(self, addr, data)
            .then_some(())
            .ok_or(Error::Bridge("a memory write"))
    }
    fn mem_read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
        let addr = u32::try_from(addr).map_err(|_| Error::Bridge("a memory read above 4 GiB"))?;
        SerialBoard::mem_read(self, addr, buf)
            .then_some(())
            .ok_or(Error::Bridge("a memory read"))
    }
    fn idle(&mut self, _slice: std::time::Duration) -> Result<bool, Error> {
        self.run(64);
        Ok(false)
    }
    fn now(&self) -> std::time::Duration {
        BOARD_CYCLE * u32::try_from(self.cycles).unwrap_or(u32::MAX)
    }
}

/// A board with its rings taken by the ring engine, for timed checkpoints.
pub struct CheckpointBoard {
    board: SerialBoard,
    rings: hitless_ring::Rings,
}

impl std::ops::Deref for CheckpointBoard {
    type Target = SerialBoard;
    fn deref(&self) -> &SerialBoard {
        &self.board
    }
}

impl std::ops::DerefMut for CheckpointBoard {
    fn deref_mut(&mut self) -> &mut SerialBoard {
        &mut self.board
    }
}

/// The lite board ready for timed checkpoints: booted, rings at the
/// bottom of the window (DQ at 0, 4 entries; CQ at 0x100, 8), protection
/// entry 1 a region window with key tag [`LITE_KEY_TAG`], and `len` bytes
/// of data at 0x1000 (`None` if the board does not answer as it should).
pub fn lite_checkpoint_board(len: usize) -> Option<CheckpointBoard> {
    use hitless_hdl::contract::{self, perm, reg};
    let mut b = SerialBoard::new(Variant::Lite);
    b.run(100_000);
    if b.csr_read(reg::STATUS)? & contract::status::BOOT_DONE == 0 {
        return None;
    }
    let window = perm::VALID | perm::READ | perm::WRITE | perm::COMMIT | perm::WARM | perm::REGION;
    contract::program_protection_entry(
        |r, v| b.csr_write(r, v).then_some(()).ok_or(()),
        1,
        LITE_KEY_TAG,
        0,
        board::GEOMETRY.region_size,
        window,
    )
    .ok()?;
    let cfg = hitless_ring::RingConfig {
        dq_base: 0,
        cq_base: 0x100,
        dq_log2: 2,
        cq_log2: 3,
        irq_mask: 0,
    };
    let rings = hitless_ring::Rings::start(&mut b, cfg).ok()?;
    b.mem_write(0x1000, &lite_checkpoint_data(len))
        .then_some(CheckpointBoard { board: b, rings })
}

/// Key tag of [`lite_checkpoint_board`]'s region window (entry 1).
pub const LITE_KEY_TAG: u32 = 0x5eed;

/// The data [`lite_checkpoint_board`] puts at 0x1000.
pub fn lite_checkpoint_data(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i * 31 + i / 7) as u8).collect()
}

impl CheckpointBoard {
    /// WRITE+COMMIT number `n` (its tag) of the first `len` bytes at
    /// 0x1000; the cycles from its doorbell to the active-region LED
    /// turning (the commit durable). Its completion is then taken off the
    /// ring and must be OK.
    pub fn checkpoint_cycles(&mut self, n: u16, len: u32) -> Option<u64> {
        use hitless_hdl::contract::{self, Status};
        let d = contract::Descriptor {
            opcode: contract::Opcode::Write as u8,
            flags: contract::flags::COMMIT,
            tag: n,
            key: contract::make_key(1, LITE_KEY_TAG),
            host_addr: 0x1000,
            len,
            ..Default::default()
        };
        let region = self.board.leds() & 2;
        self.rings.submit(&mut self.board, &[d]).ok()?;
        let cycles = self
            .board
            .run_until(10_000_000, |leds| leds & 2 != region)?;
        let c = self
            .rings
            .wait_next(&mut self.board, 1, BOARD_CYCLE * 1_000_000)
            .ok()?;
        (c[0].tag == n && c[0].status() == Some(Status::Ok)).then_some(cycles)
    }
}

/// A running simulated board behind a pseudo-terminal.
pub struct PtyBoard {
    path: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<(u64, SpiFlash)>>,
}

impl PtyBoard {
    /// Start the board with an erased flash; it runs until dropped or for
    /// at most `limit`.
    pub fn start(limit: Duration) -> Result<Self, Error> {
        Self::start_with(limit, SpiFlash::new(FLASH_BYTES))
    }

    /// Start the board with `flash` (e.g. one from [`PtyBoard::power_off`]).
    pub fn start_with(limit: Duration, flash: SpiFlash) -> Result<Self, Error> {
        Self::start_variant(Variant::Full, limit, flash)
    }

    /// Start a board of `variant` with `flash`.
    pub fn start_variant(
        variant: Variant,
        limit: Duration,
        flash: SpiFlash,
    ) -> Result<Self, Error> {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let name = ptsname(&master, Vec::new())?;
        let path = PathBuf::from(name.to_string_lossy().into_owned());
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::spawn(move || run(variant, master, &s, limit, flash));
        Ok(Self {
            path,
            shared,
            thread: Some(thread),
        })
    }

    /// Press the board's reset button (a warm reset: memories keep their
    /// contents, the controller runs its boot scan again).
    pub fn press_reset(&self) {
        self.shared.reset.store(true, Ordering::Relaxed);
    }

    /// The serial device to open (`uart:<path>`).
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The board's LEDs (0 heartbeat, 1 warm active region, 2 cold active
    /// region, 3 error).
    pub fn leds(&self) -> u8 {
        self.shared.leds.load(Ordering::Relaxed) as u8
    }

    /// Interrupt messages the board sent so far (pulses of its `irq`
    /// output, which a UART board has no wire for: a test instrument).
    pub fn irq_count(&self) -> u64 {
        self.shared.irqs.load(Ordering::Relaxed)
    }

    /// Bytes (received from the host, sent to the host) so far.
    pub fn traffic(&self) -> (u64, u64) {
        (
            self.shared.traffic[0].load(Ordering::Relaxed),
            self.shared.traffic[1].load(Ordering::Relaxed),
        )
    }

    /// Stop the board; returns the cycles it ran.
    pub fn stop(mut self) -> u64 {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .map_or(0, |(c, _)| c)
    }

    /// Cut the board's power wherever it is; returns its flash (what a new
    /// board starts from), or `None` if the board's thread panicked.
    pub fn power_off(mut self) -> Option<SpiFlash> {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .map(|(_, f)| f)
    }
}

impl Drop for PtyBoard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether the fd is ready for `flags` right now.
fn ready(fd: &OwnedFd, flags: PollFlags) -> bool {
    let mut fds = [PollFd::new(fd, flags)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0) && fds[0].revents().intersects(flags)
}

/// What the board's thread and its owner share.
#[derive(Default)]
struct Shared {
    /// Stop the board.
    stop: AtomicBool,
    /// Press the reset button.
    reset: AtomicBool,
    /// The LEDs.
    leds: AtomicU32,
    /// Bytes from / to the host.
    traffic: [AtomicU64; 2],
    /// Interrupt messages.
    irqs: AtomicU64,
}

fn run(
    variant: Variant,
    master: OwnedFd,
    shared: &Shared,
    limit: Duration,
    flash: SpiFlash,
) -> (u64, SpiFlash) {
    let start = Instant::now();
    let mut board = BoardModel::of(variant, flash);
    let mut line = Line::default();
    let mut cycles: u64 = 0;
    let mut buf = [0u8; 256];
    let mut out = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) && start.elapsed() < limit {
        if shared.reset.swap(false, Ordering::Relaxed) {
            board.press_reset(32);
        }
        // Between host bytes the board idles: poll the pty only now and
        // then (a byte on the line takes 10 × DIVIDER cycles anyway).
        // The host's bytes are taken only once the board is out of reset
        // (as a real board is configured and running before the host opens
        // its serial port): a byte arriving during reset is lost.
        if cycles >= 1000
            && line.to_board.is_empty()
            && cycles.is_multiple_of(64)
            && ready(&master, PollFlags::IN)
        {
            if let Ok(n) = rustix::io::read(&master, &mut buf) {
                line.to_board.extend(&buf[..n]);
                shared.traffic[0].fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        let rx = line.rx();
        let (tx, l) = board.cycle(rx);
        if let Some(b) = line.tx(tx) {
            out.push(b);
        }
        if !out.is_empty() && (out.len() >= 64 || cycles.is_multiple_of(256)) {
            // The slave side reads it; a full pty buffer just waits.
            if let Ok(n) = rustix::io::write(&master, &out) {
                out.drain(..n);
                shared.traffic[1].fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        shared.leds.store(l as u32, Ordering::Relaxed);
        shared.irqs.store(board.irqs(), Ordering::Relaxed);
        cycles += 1;
    }
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(cycles);
    (cycles, board.power_off(&mut rng))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Send `req` on the simulated line and collect `n` reply bytes.
    fn exchange(board: &mut BoardModel, line: &mut Line, req: &[u8], n: usize) -> Vec<u8> {
        line.to_board.extend(req);
        let mut got = Vec::new();
        for _ in 0..(req.len() + n + 4) * 20 * DIVIDER as usize + 2000 {
            let rx = line.rx();
            let (tx, _) = board.cycle(rx);
            if let Some(b) = line.tx(tx) {
                got.push(b);
                if got.len() == n {
                    break;
                }
            }
        }
        got
    }

    /// The bridge on the bare model: the ID register, a scratch write and
    /// read-back, and host memory written and read byte-wise.
    #[test]
    fn bridge_answers_on_the_simulated_line() {
        let mut board = BoardModel::new();
        let mut line = Line::default();
        for _ in 0..100 {
            board.cycle(true);
        }
        let id = exchange(&mut board, &mut line, &[b'R', 0, 0, 0, 0], 4);
        assert_eq!(id, b"HTLS");
        let scratch = 0x018u32.to_le_bytes();
        let mut w = vec![b'W'];
        w.extend(scratch);
        w.extend(0xdead_beefu32.to_le_bytes());
        assert_eq!(exchange(&mut board, &mut line, &w, 1), b"K");
        let mut r = vec![b'R'];
        r.extend(scratch);
        assert_eq!(
            exchange(&mut board, &mut line, &r, 4),
            0xdead_beefu32.to_le_bytes()
        );
        let mut mw = vec![b'w', 3, 1, 0, 0, 5, 0];
        mw.extend(b"hello");
        assert_eq!(exchange(&mut board, &mut line, &mw, 1), b"K");
        let mr = [b'r', 2, 1, 0, 0, 7, 0];
        assert_eq!(exchange(&mut board, &mut line, &mr, 7), b"\0hello\0");
    }
}
