//! The flash-backed cold tier (`hitless_hdl::rtl::flash::FlashTier`)
//! Verilated on its own, and a behavioural SPI NOR flash to put behind it:
//! the testbench's pieces for power cuts in the middle of erases and page
//! programs.
//!
//! [`SpiFlash`] models what makes flash hard: erase sets a 4 KiB sector to
//! 0xFF, page program can only clear bits (it ANDs) and wraps within its
//! 256-byte page, both take time (WIP set in the status register) and need
//! WRITE ENABLE first, and a command sent while busy is ignored except READ
//! STATUS. [`SpiFlash::power_cut`] interrupts the operation in progress the
//! way real parts fail: an interrupted erase leaves each byte somewhere
//! between its old value and 0xFF (bits set at random), an interrupted
//! program leaves a random subset of the bits it was clearing.

use rand::Rng;
use std::ffi::c_void;

/// Words (64-bit) of the tier under test (log2), as built.
pub const TIER_WORDS_LOG2: u32 = match u32::from_str_radix(env!("HITLESS_FLASH_WORDS_LOG2"), 10) {
    Ok(d) => d,
    Err(_) => panic!("HITLESS_FLASH_WORDS_LOG2"),
};
/// Flash byte address of the tier under test, as built.
pub const TIER_BASE: usize = match usize::from_str_radix(env!("HITLESS_FLASH_BASE"), 10) {
    Ok(d) => d,
    Err(_) => panic!("HITLESS_FLASH_BASE"),
};
/// Status polls the tier allows one erase or page program, as built.
pub const TIER_POLLS: u64 = match u64::from_str_radix(env!("HITLESS_FLASH_POLLS"), 10) {
    Ok(d) => d,
    Err(_) => panic!("HITLESS_FLASH_POLLS"),
};
/// Bytes of the tier under test.
pub const TIER_BYTES: usize = 8 << TIER_WORDS_LOG2;
/// Bytes per erase sector.
pub const SECTOR: usize = 4096;

const PAGE: usize = 256;

/// An operation the flash is busy with.
#[derive(Clone, Debug)]
enum Busy {
    Erase { at: usize },
    Program { at: usize, data: Vec<u8> },
}

/// A behavioural SPI NOR flash (mode 0, 3-byte addresses).
pub struct SpiFlash {
    mem: Vec<u8>,
    /// Cycles a sector erase takes.
    pub erase_cycles: u64,
    /// Cycles a page program takes.
    pub program_cycles: u64,
    /// Never finish an erase or program (a dead part).
    pub stuck: bool,
    now: u64,
    wel: bool,
    busy: Option<(Busy, u64)>,
    // Wire state.
    cs_n: bool,
    sck: bool,
    miso: bool,
    bits: u8,
    shift: u8,
    rx: Vec<u8>,
    out: u8,
    out_bit: u8,
    read_addr: usize,
    /// Sector erases started, per sector.
    pub erases: std::collections::BTreeMap<usize, u32>,
    /// Erases and page programs started.
    pub started: u64,
    /// Erases and page programs started, in order: (command, address, bytes).
    pub log: Vec<(u8, usize, usize)>,
}

impl SpiFlash {
    /// An erased flash of `bytes` (addresses wrap modulo its size).
    pub fn new(bytes: usize) -> Self {
        Self {
            mem: vec![0xFF; bytes.max(SECTOR)],
            erase_cycles: 3000,
            program_cycles: 400,
            stuck: false,
            now: 0,
            wel: false,
            busy: None,
            cs_n: true,
            sck: false,
            miso: true,
            bits: 0,
            shift: 0,
            rx: Vec::new(),
            out: 0xFF,
            out_bit: 0,
            read_addr: 0,
            erases: Default::default(),
            started: 0,
            log: Vec::new(),
        }
    }

    /// The array's content.
    pub fn mem(&self) -> &[u8] {
        &self.mem
    }

    /// Mutable access to the array (bit flips, pre-loaded images).
    pub fn mem_mut(&mut self) -> &mut [u8] {
        &mut self.mem
    }

    /// An erase or program is in progress.
    pub fn busy(&self) -> bool {
        self.busy.is_some()
    }

    fn status(&self) -> u8 {
        u8::from(self.busy.is_some()) | (u8::from(self.wel) << 1)
    }

    fn wrap(&self, a: usize) -> usize {
        a % self.mem.len()
    }

    /// One clock cycle: the master's pins as they are after the cycle;
    /// returns MISO for the next cycle.
    pub fn cycle(&mut self, cs_n: bool, sck: bool, mosi: bool) -> bool {
        self.now += 1;
        if let Some((_, until)) = &self.busy {
            if !self.stuck && self.now >= *until {
                if let Some((op, _)) = self.busy.take() {
                    self.finish(op);
                }
            }
        }
        if cs_n {
            if !self.cs_n {
                self.deselect();
            }
            self.cs_n = true;
            self.sck = sck;
            return self.miso;
        }
        if self.cs_n {
            // Select: a new command.
            self.cs_n = false;
            self.bits = 0;
            self.shift = 0;
            self.rx.clear();
        }
        if sck && !self.sck {
            self.shift = (self.shift << 1) | u8::from(mosi);
            self.bits += 1;
            if self.bits == 8 {
                self.bits = 0;
                let b = self.shift;
                self.rx.push(b);
                if self.rx.len() == 4 && self.rx[0] == 0x03 {
                    self.read_addr = (usize::from(self.rx[1]) << 16)
                        | (usize::from(self.rx[2]) << 8)
                        | usize::from(self.rx[3]);
                }
            }
        } else if !sck && self.sck {
            if self.bits == 0 {
                self.out = self.next_out();
                self.out_bit = 7;
            } else {
                self.out_bit = self.out_bit.saturating_sub(1);
            }
            self.miso = (self.out >> self.out_bit) & 1 != 0;
        }
        self.sck = sck;
        self.miso
    }

    /// The byte shifted out after the bytes received so far.
    fn next_out(&mut self) -> u8 {
        match self.rx.first() {
            Some(0x05) => self.status(),
            Some(0x03) if self.busy.is_none() && self.rx.len() >= 4 => {
                let b = self.mem[self.wrap(self.read_addr)];
                self.read_addr += 1;
                b
            }
            _ => 0xFF,
        }
    }

    /// Chip select rose: program and erase commands start here.
    fn deselect(&mut self) {
        let rx = std::mem::take(&mut self.rx);
        if self.bits != 0 || self.busy.is_some() {
            return; // a partial byte aborts the command; busy ignores it
        }
        let addr =
            |rx: &[u8]| (usize::from(rx[1]) << 16) | (usize::from(rx[2]) << 8) | usize::from(rx[3]);
        match rx.first() {
            Some(0x06) => self.wel = true,
            Some(0x04) => self.wel = false,
            Some(0x20) if rx.len() == 4 && self.wel => {
                let at = self.wrap(addr(&rx)) & !(SECTOR - 1);
                *self.erases.entry(at).or_default() += 1;
                self.started += 1;
                self.log.push((0x20, at, SECTOR));
                self.busy = Some((Busy::Erase { at }, self.now + self.erase_cycles));
                self.wel = false;
            }
            Some(0x02) if rx.len() > 4 && self.wel => {
                let at = self.wrap(addr(&rx));
                let data = rx[4..].to_vec();
                self.started += 1;
                self.log.push((0x02, at, data.len()));
                self.busy = Some((Busy::Program { at, data }, self.now + self.program_cycles));
                self.wel = false;
            }
            _ => {}
        }
    }

    fn finish(&mut self, op: Busy) {
        match op {
            Busy::Erase { at } => self.mem[at..at + SECTOR].fill(0xFF),
            Busy::Program { at, data } => {
                let page = at & !(PAGE - 1);
                for (i, d) in data.iter().enumerate() {
                    let a = page + (at + i) % PAGE;
                    self.mem[a] &= d;
                }
            }
        }
    }

    /// Power is cut: the operation in progress is left half done, the
    /// write-enable latch and any command on the wire are lost.
    pub fn power_cut(&mut self, rng: &mut impl Rng) {
        if let Some((op, _)) = self.busy.take() {
            match op {
                Busy::Erase { at } => {
                    for b in &mut self.mem[at..at + SECTOR] {
                        *b |= rng.gen::<u8>();
                    }
                }
                Busy::Program { at, data } => {
                    let page = at & !(PAGE - 1);
                    for (i, d) in data.iter().enumerate() {
                        let a = page + (at + i) % PAGE;
                        self.mem[a] &= d | rng.gen::<u8>();
                    }
                }
            }
        }
        self.wel = false;
        self.cs_n = true;
        self.sck = false;
        self.bits = 0;
        self.rx.clear();
    }
}

extern "C" {
    fn hf_new() -> *mut c_void;
    fn hf_free(p: *mut c_void);
    fn hf_cycle(p: *mut c_void, input: *const In, out: *mut Out);
}

/// The tier's inputs for one cycle.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct In {
    /// Write data.
    pub wdata: u64,
    /// Byte address.
    pub addr: u32,
    /// Command valid.
    pub valid: u32,
    /// Command is a write.
    pub write: u32,
    /// Byte strobes.
    pub wstrb: u32,
    /// Flash MISO.
    pub miso: u32,
    /// Reset.
    pub reset: u32,
}

/// The tier's outputs after one cycle.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Out {
    /// Read data of a response.
    pub rsp_data: u64,
    /// Commands are accepted (this cycle and the next, until it falls).
    pub cmd_ready: u32,
    /// A response.
    pub rsp_valid: u32,
    /// The response acknowledges a write.
    pub rsp_write: u32,
    /// Flash SCK.
    pub sck: u32,
    /// Flash chip select (active low).
    pub cs_n: u32,
    /// Flash MOSI.
    pub mosi: u32,
    /// The tier is loaded and serving.
    pub ready: u32,
    /// The tier has stopped on a flash failure.
    pub error: u32,
}

/// The Verilated flash tier, one clock per [`FlashTierModel::cycle`].
pub struct FlashTierModel {
    p: *mut c_void,
}

// SAFETY: the model is only used from the thread that owns it.
unsafe impl Send for FlashTierModel {}

impl FlashTierModel {
    /// A tier just after power-on (its registers zero, as Verilator
    /// initializes them); hold `reset` for a few cycles first.
    pub fn new() -> Self {
        // SAFETY: hf_new returns a fresh model or aborts.
        Self {
            p: unsafe { hf_new() },
        }
    }

    /// One clock cycle.
    pub fn cycle(&mut self, input: &In) -> Out {
        let mut out = Out::default();
        // SAFETY: `p` is a live model; `input` and `out` are valid for the
        // call and laid out as the C structs (repr(C), same field order).
        unsafe { hf_cycle(self.p, input, &mut out) };
        out
    }
}

impl Default for FlashTierModel {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlashTierModel {
    fn drop(&mut self) {
        // SAFETY: `p` came from hf_new and is freed once.
        unsafe { hf_free(self.p) };
    }
}
