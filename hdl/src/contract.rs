//! The hardware contract: the one description of everything software and RTL
//! must agree on. Register map, descriptor and completion formats, status
//! codes, protection-table permissions and the non-volatile (NV) layout.
//!
//! This module has no dependency on rust-hdl, so the driver, the firmware and
//! the simulator import it without pulling in the RTL. The RTL (`crate::rtl`)
//! builds its address decoders and field extractors from these constants, and
//! `cargo xtask regs` generates `docs/registers.md` and `include/hitless_regs.h`
//! from [`REGISTERS`] and the tables below. Nobody types an address twice.

/// `ID` register value: ASCII "HTLS" read as a little-endian u32.
pub const CONTROLLER_ID: u32 = u32::from_le_bytes(*b"HTLS");
/// Contract version: major in bits 31:16, minor in 15:0. The major changes
/// when a layout changes incompatibly.
pub const CONTRACT_VERSION: u32 = 0x0001_0000;

/// Datapath width in bytes (one beat of every memory port).
pub const DATAPATH_BYTES: u32 = 8;
/// Number of protection-table entries.
pub const PT_ENTRIES: u32 = 16;
/// log2 of the protection-table size; the low bits of a key select the entry.
pub const PT_INDEX_BITS: u32 = 4;
/// Largest descriptor / completion ring, as log2 of the entry count.
pub const RING_MAX_LOG2: u32 = 12;
/// log2 of the depth of the read-response buffer: how many reads the DMA
/// engine keeps in flight.
pub const INFLIGHT_LOG2: u32 = 9;
/// Largest single transfer in bytes (1 MiB); larger ones are `BAD_LENGTH`.
pub const MAX_TRANSFER: u32 = 1 << 20;

// ---------------------------------------------------------------------------
// Register map (BAR0 / AXI4-Lite, 32-bit registers, byte addresses)
// ---------------------------------------------------------------------------

/// Access type of a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read only.
    Ro,
    /// Read / write.
    Rw,
    /// Write only (reads return 0).
    Wo,
    /// Read; write 1 to clear.
    W1c,
}

/// One register of the map.
#[derive(Clone, Copy, Debug)]
pub struct Register {
    pub name: &'static str,
    pub offset: u32,
    pub access: Access,
    /// What it reads after reset.
    pub reset: Reset,
    pub doc: &'static str,
}

/// What a register reads after reset (the RTL's behaviour, checked by the
/// register tests of `sim` and `bitstreams/sim`), for generators and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reset {
    /// This value, on every controller.
    Value(u32),
    /// The full controller's value and the reduced controller's (`rtl::lite`).
    PerController { full: u32, lite: u32 },
    /// `during` from reset until the boot scan is done, `after` from then on.
    Boot { during: u32, after: u32 },
    /// A constant of the build's NV geometry.
    Geometry(GeometryReg),
    /// 0 until the boot scan has scanned the tier, then the tier's
    /// committed state (still 0 for a blank tier).
    TierScan,
    /// A free-running counter, 0 at reset.
    Counter,
}

/// The NV geometry registers' values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryReg {
    RegionSize,
    LogSize,
    RegionABase,
    RegionBBase,
    LogBase,
    DataBase,
    DataSize,
}

impl GeometryReg {
    pub const fn value(self, g: &NvGeometry) -> u32 {
        match self {
            Self::RegionSize => g.region_size,
            Self::LogSize => g.log_size,
            Self::RegionABase => g.region_a_base(),
            Self::RegionBBase => g.region_b_base(),
            Self::LogBase => g.log_base(),
            Self::DataBase => g.data_base(),
            Self::DataSize => g.data_size,
        }
    }
    pub const fn describe(self) -> &'static str {
        match self {
            Self::RegionSize => "region size",
            Self::LogSize => "log size",
            Self::RegionABase => "region A base",
            Self::RegionBBase => "region B base",
            Self::LogBase => "log base",
            Self::DataBase => "data area base",
            Self::DataSize => "data area size",
        }
    }
}

impl Reset {
    /// What the register reads once the boot scan of blank tiers is done,
    /// on a controller of geometry `g` (`lite`: the reduced controller);
    /// `None` for a free-running counter.
    pub const fn after_boot(self, g: &NvGeometry, lite: bool) -> Option<u32> {
        match self {
            Self::Value(v) => Some(v),
            Self::PerController { full, lite: l } => Some(if lite { l } else { full }),
            Self::Boot { after, .. } => Some(after),
            Self::Geometry(r) => Some(r.value(g)),
            Self::TierScan => Some(0),
            Self::Counter => None,
        }
    }
    /// What it reads while the boot scan runs; `None` for a counter.
    pub const fn during_boot(self, g: &NvGeometry, lite: bool) -> Option<u32> {
        match self {
            Self::Boot { during, .. } => Some(during),
            Self::TierScan => Some(0),
            other => other.after_boot(g, lite),
        }
    }
}

macro_rules! registers {
    ($( $(#[doc = $doc:literal])* $name:ident = $off:literal, $acc:ident, $reset:expr; )*) => {
        $( $(#[doc = $doc])* pub const $name: u32 = $off; )*
        /// Every register, in address order, for generators and tests.
        pub const REGISTERS: &[Register] = &[
            $( Register { name: stringify!($name), offset: $off, access: Access::$acc, reset: $reset,
                          doc: concat!($($doc),*) }, )*
        ];
    };
}

pub mod reg {
    //! Register offsets. `REGISTERS` lists them with access type and docs.
    use super::GeometryReg::*;
    use super::Reset::*;
    use super::{Access, Register};
    registers! {
        /// Controller identifier, always "HTLS" (0x534c5448).
        ID = 0x000, Ro, Value(super::CONTROLLER_ID);
        /// Contract version: major[31:16], minor[15:0].
        VERSION = 0x004, Ro, Value(super::CONTRACT_VERSION);
        /// Capabilities: datapath bytes[7:0], protection entries[15:8], max ring log2[23:16], in-flight reads log2[31:24].
        CAPS = 0x008, Ro, PerController { full: super::CAPS_VALUE, lite: super::LITE_CAPS_VALUE };
        /// Offset of the next register block (0: none). Corundum-style chaining for future blocks.
        NEXT_BLOCK = 0x00C, Ro, Value(0);
        /// Control: bit0 ENABLE (process descriptors), bit1 IRQ_ENABLE (interrupts on completion).
        CTRL = 0x010, Rw, Value(0);
        /// Status: bit0 BOOT_DONE, bit1 BUSY (an operation is running), bit2 RING_ERROR (a doorbell overflowed the descriptor ring).
        STATUS = 0x014, Ro, Boot { during: super::status::BUSY, after: super::status::BOOT_DONE };
        /// Scratch register for bus tests.
        SCRATCH = 0x018, Rw, Value(0);
        /// Free-running cycle counter, low 32 bits.
        CYCLES = 0x01C, Ro, Counter;
        /// Warm tier state: boot result[1:0] (BootResult), active region[4] (0 = A, 1 = B).
        WARM_STATE = 0x020, Ro, TierScan;
        /// Warm tier superblock sequence number, low 32 bits.
        WARM_SEQ = 0x024, Ro, TierScan;
        /// Warm tier region A committed length in bytes.
        WARM_A_LEN = 0x028, Ro, TierScan;
        /// Warm tier region A committed CRC-32C.
        WARM_A_CRC = 0x02C, Ro, TierScan;
        /// Warm tier region B committed length in bytes.
        WARM_B_LEN = 0x030, Ro, TierScan;
        /// Warm tier region B committed CRC-32C.
        WARM_B_CRC = 0x034, Ro, TierScan;
        /// Warm tier append-log head (free-running byte counter).
        WARM_LOG_HEAD = 0x038, Ro, TierScan;
        /// Warm tier append-log tail (free-running byte counter).
        WARM_LOG_TAIL = 0x03C, Ro, TierScan;
        /// Cold tier state, as WARM_STATE.
        COLD_STATE = 0x040, Ro, TierScan;
        /// Cold tier superblock sequence number, low 32 bits.
        COLD_SEQ = 0x044, Ro, TierScan;
        /// Cold tier region A committed length in bytes.
        COLD_A_LEN = 0x048, Ro, TierScan;
        /// Cold tier region A committed CRC-32C.
        COLD_A_CRC = 0x04C, Ro, TierScan;
        /// Cold tier region B committed length in bytes.
        COLD_B_LEN = 0x050, Ro, TierScan;
        /// Cold tier region B committed CRC-32C.
        COLD_B_CRC = 0x054, Ro, TierScan;
        /// Cold tier append-log head (free-running byte counter).
        COLD_LOG_HEAD = 0x058, Ro, TierScan;
        /// Cold tier append-log tail (free-running byte counter).
        COLD_LOG_TAIL = 0x05C, Ro, TierScan;
        /// NV geometry: size of one region in bytes (both tiers).
        NV_REGION_SIZE = 0x060, Ro, Geometry(RegionSize);
        /// NV geometry: size of the append-log ring in bytes (both tiers).
        NV_LOG_SIZE = 0x064, Ro, Geometry(LogSize);
        /// NV geometry: byte address of region A.
        NV_REGION_A_BASE = 0x068, Ro, Geometry(RegionABase);
        /// NV geometry: byte address of region B.
        NV_REGION_B_BASE = 0x06C, Ro, Geometry(RegionBBase);
        /// NV geometry: byte address of the append-log ring.
        NV_LOG_BASE = 0x070, Ro, Geometry(LogBase);
        /// NV geometry: byte address of the data area (set data and heap pages, addressed through entries without REGION).
        NV_DATA_BASE = 0x074, Ro, Geometry(DataBase);
        /// NV geometry: size of the data area in bytes (0: none, every set lives in the region image).
        NV_DATA_SIZE = 0x078, Ro, Geometry(DataSize);
        /// Descriptor ring base address (host), low 32 bits; 32-byte aligned.
        DQ_BASE_LO = 0x080, Rw, Value(0);
        /// Descriptor ring base address (host), high 32 bits.
        DQ_BASE_HI = 0x084, Rw, Value(0);
        /// Descriptor ring size as log2 of the entry count (0..=RING_MAX_LOG2).
        DQ_SIZE_LOG2 = 0x088, Rw, Value(0);
        /// Descriptor ring tail: free-running 16-bit producer index written by the host (the doorbell).
        DQ_TAIL = 0x08C, Rw, Value(0);
        /// Descriptor ring head: free-running 16-bit consumer index, advanced by the controller.
        DQ_HEAD = 0x090, Ro, Value(0);
        /// Completion ring base address (host), low 32 bits; 16-byte aligned.
        CQ_BASE_LO = 0x0A0, Rw, Value(0);
        /// Completion ring base address (host), high 32 bits.
        CQ_BASE_HI = 0x0A4, Rw, Value(0);
        /// Completion ring size as log2 of the entry count (0..=RING_MAX_LOG2).
        CQ_SIZE_LOG2 = 0x0A8, Rw, Value(0);
        /// Completion ring head: free-running 16-bit producer index, advanced by the controller.
        CQ_HEAD = 0x0AC, Ro, Value(0);
        /// Completion ring tail: free-running 16-bit consumer index written by the host.
        CQ_TAIL = 0x0B0, Rw, Value(0);
        /// Interrupt status, write 1 to clear: bit0 COMPLETION, bit1 ERROR, bit2 BOOT_DONE.
        IRQ_STATUS = 0x0C0, W1c, Boot { during: 0, after: super::irq::BOOT_DONE };
        /// Interrupt mask, 1 = enabled, bits as IRQ_STATUS.
        IRQ_MASK = 0x0C4, Rw, Value(0);
        /// Operations completed successfully since reset.
        OPS_OK = 0x0D0, Ro, Value(0);
        /// Operations completed with an error status since reset.
        OPS_FAILED = 0x0D4, Ro, Value(0);
        /// Features this controller lacks (see `limits`): 0 on the full controller; the reduced controller for small FPGAs sets LITE_LIMITS.
        LIMITS = 0x0D8, Ro, PerController { full: 0, lite: super::LITE_LIMITS };
        /// Protection table: entry selected for PT_* reads and PT_COMMIT.
        PT_INDEX = 0x100, Rw, Value(0);
        /// Protection table staging: key tag (key bits 31:4). Write only: keys are never read back.
        PT_KEY_TAG = 0x104, Wo, Value(0);
        /// Protection table: base byte address (staging on write, selected entry on read).
        PT_BASE = 0x108, Rw, Value(0);
        /// Protection table: window length in bytes (staging on write, selected entry on read).
        PT_LEN = 0x10C, Rw, Value(0);
        /// Protection table: permissions (see `perm`) (staging on write, selected entry on read).
        PT_PERM = 0x110, Rw, Value(0);
        /// Protection table: writing any value stores the staged key tag, base, length and permissions into entry PT_INDEX.
        PT_COMMIT = 0x114, Wo, Value(0);
    }
}

/// How the register file answers what is not a plain 32-bit access to a
/// register of the map, and what the `irq` output is: `(topic, rule)`,
/// for generators (`docs/registers.md`). Each rule is the RTL's behaviour
/// (both controllers), checked where the rule names a test.
pub const ACCESS_RULES: &[(&str, &str)] = &[
    ("Unmapped offsets", "A 4-byte-aligned offset below CSR_WINDOW_BYTES that names no register reads 0; a write to it is ignored and answered OKAY."),
    ("Misaligned offsets", "The register file compares the whole byte offset: an offset that is not a multiple of 4 names no register (reads 0; a write is ignored, OKAY). It does not select the register it falls in."),
    ("Partial writes", "A write whose byte strobes are not all four set answers SLVERR and changes nothing: every register is 32 bits (sim/tests/axil.rs). Reads always return the whole register. The UART bridge always writes all four bytes."),
    ("Read-only, write-only, W1C", "A write to an RO register is ignored (OKAY). A WO register reads 0. Writing 1 to an IRQ_STATUS bit clears it; 0 leaves it."),
    ("Narrow registers", "A register narrower than 32 bits keeps the low bits of a write and reads the others as 0: CTRL 2 bits, DQ_SIZE_LOG2 and CQ_SIZE_LOG2 4, DQ_TAIL and CQ_TAIL 16, IRQ_MASK 3, PT_INDEX 4, PT_PERM 8; PT_KEY_TAG stores bits 31:4 (the key's tag) and reads 0."),
    ("Ring sizes above the maximum", "DQ_SIZE_LOG2 and CQ_SIZE_LOG2 keep bits 3:0 of a write and read them back as written; a value above RING_MAX_LOG2 (13 to 15) acts as RING_MAX_LOG2. Higher bits are dropped: writing 16 is 0, a one-entry ring."),
    ("Beyond the register file", "The controller decodes CSR_ADDR_BITS address bits: its registers are BAR0 page 0. Page 1 (MAILBOX_BASE up to BAR0_BYTES) is the firmware mailbox of a card with firmware and never reaches the controller. A board (UART bridge) has only page 0 and decodes all 32 address bits: a write at or above CSR_WINDOW_BYTES answers REPLY_ERR and changes nothing, a read answers 0 (so MB_ID reads no firmware and MB_STATE is not READY) (bitstreams/sim/tests/csr_window.rs)."),
    ("Reset values", "The reset column is what a register reads after reset: 'during / after boot' values change when the boot scan finishes (STATUS.BOOT_DONE); NV geometry registers read the build's geometry from reset on; the tier registers read 0 until the boot scan has scanned the tier."),
    ("irq is a pulse", "The controller's irq output is a pulse, not a level: high for one clock cycle per message (an MSI-X style message). It pulses in each cycle in which a bit of IRQ_STATUS & IRQ_MASK, with CTRL.IRQ_ENABLE, turns on: a cause newly set while enabled, or one already pending when it is unmasked or IRQ_ENABLE is set (as MSI-X sends a pending vector on unmask). Bits turning on together are one message; a cause set again while it is still set sends none, so a handler clears (W1C) what it handled and then looks for more work. IRQ_STATUS is the level. The UART boards have no interrupt line (the driver polls); their error LED shows IRQ_STATUS.ERROR."),
];

/// Base of the firmware's mailbox block in BAR0: the page after the
/// controller's 4 KiB register file. On a card with a CPU the firmware
/// serves it; the controller's own registers stay below it.
pub const MAILBOX_BASE: u32 = 0x1000;
/// Size of BAR0 with the mailbox block.
pub const BAR0_BYTES: u32 = 0x2000;
/// `MB_ID` register value: ASCII "HTFW" read as a little-endian u32.
pub const FIRMWARE_ID: u32 = u32::from_le_bytes(*b"HTFW");
/// Version of the mailbox message format: major[31:16], minor[15:0].
pub const MESSAGE_VERSION: u32 = 0x0001_0000;

pub mod mbox {
    //! The firmware mailbox (BAR0 page 1): a host writes a request message
    //! (versioned TLV, see `docs/firmware.md`) into its own memory, tells
    //! the card where it is and where the answer may go, and rings the
    //! doorbell with a sequence number; the card reads the request by DMA,
    //! runs it, writes the response by DMA and publishes the sequence
    //! number in `MB_DONE`. `REGISTERS` lists them.
    use super::Reset::*;
    use super::{Access, Register};
    registers! {
        /// Firmware identifier, always "HTFW" (0x57465448).
        MB_ID = 0x1000, Ro, Value(super::FIRMWARE_ID);
        /// Message format version: major[31:16], minor[15:0].
        MB_VERSION = 0x1004, Ro, Value(super::MESSAGE_VERSION);
        /// Firmware state: bit0 READY (the firmware accepts requests), bit1 BUSY (a request is running).
        MB_STATE = 0x1008, Ro, Value(0);
        /// Request message address (host), low 32 bits.
        MB_REQ_LO = 0x1010, Rw, Value(0);
        /// Request message address (host), high 32 bits.
        MB_REQ_HI = 0x1014, Rw, Value(0);
        /// Request message length in bytes (at most MAX_MESSAGE).
        MB_REQ_LEN = 0x1018, Rw, Value(0);
        /// Response buffer address (host), low 32 bits.
        MB_RESP_LO = 0x1020, Rw, Value(0);
        /// Response buffer address (host), high 32 bits.
        MB_RESP_HI = 0x1024, Rw, Value(0);
        /// Response buffer capacity in bytes.
        MB_RESP_CAP = 0x1028, Rw, Value(0);
        /// Doorbell: writing a sequence number runs the request described above.
        MB_DOORBELL = 0x1030, Wo, Value(0);
        /// Sequence number of the last finished request.
        MB_DONE = 0x1034, Ro, Value(0);
        /// Result code of the last finished request (0 = OK; see docs/firmware.md).
        MB_RESULT = 0x1038, Ro, Value(0);
        /// Length of the response message written for the last request.
        MB_RESP_LEN = 0x103C, Ro, Value(0);
        /// Authentication challenge, low 32 bits: a fresh random value after every authenticated request.
        MB_NONCE_LO = 0x1040, Ro, Value(0);
        /// Authentication challenge, high 32 bits.
        MB_NONCE_HI = 0x1044, Ro, Value(0);
        /// Requests refused for wrong credentials since the firmware started.
        MB_AUTH_FAILS = 0x1048, Ro, Value(0);
        /// Requests handled since the firmware started.
        MB_REQUESTS = 0x104C, Ro, Value(0);
    }
}

/// Address bits of the controller's register file (its AXI4-Lite port):
/// the controller decodes byte offsets below `1 << CSR_ADDR_BITS` (4 KiB,
/// the first page of BAR0); the mailbox page above it is not the
/// controller's.
pub const CSR_ADDR_BITS: u32 = 12;
const _: () = assert!(1 << CSR_ADDR_BITS == MAILBOX_BASE);

/// Bits of `MB_STATE`.
pub mod mb_state {
    pub const READY: u32 = 1 << 0;
    pub const BUSY: u32 = 1 << 1;
}

/// Largest request or response message (payload data travels separately by DMA).
pub const MAX_MESSAGE: u32 = 64 * 1024;

/// `(name, value, doc)` tables for generators (`cargo xtask regs`): each
/// entry names a constant of module `$m`, so a rename breaks the build instead
/// of the documentation.
macro_rules! named {
    ($m:ident; $( $name:ident: $doc:literal ),* $(,)?) => {
        &[ $( (stringify!($name), $m::$name, $doc) ),* ]
    };
}

/// A bit field of one little-endian 64-bit word of an in-memory structure
/// (descriptor, completion, superblock, log record), for generators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    /// Index of the 64-bit word inside the structure.
    pub word: u32,
    /// Lowest bit of the field inside the word.
    pub lsb: u32,
    /// Width in bits.
    pub width: u32,
    pub doc: &'static str,
}

/// CAPS register value.
pub const CAPS_VALUE: u32 =
    DATAPATH_BYTES | (PT_ENTRIES << 8) | (RING_MAX_LOG2 << 16) | (INFLIGHT_LOG2 << 24);

/// `CAPS` of the reduced controller (`rtl::lite`): the same datapath word,
/// table and rings, one memory command in flight (in-flight log2 0).
pub const LITE_CAPS_VALUE: u32 = DATAPATH_BYTES | (PT_ENTRIES << 8) | (RING_MAX_LOG2 << 16);

/// Bits of `LIMITS`: what a controller lacks. A descriptor that needs a
/// missing feature completes `BAD_OPCODE`.
pub mod limits {
    /// No COPY.
    pub const NO_COPY: u32 = 1 << 0;
    /// No append log: no APPEND, no LOG_TRIM (the log fields of the
    /// superblock are carried through commits unchanged).
    pub const NO_LOG: u32 = 1 << 1;
    /// No cold tier: `COLD` and `SRC_COLD` flags are refused and the cold
    /// tier's registers read as a blank tier.
    pub const NO_COLD: u32 = 1 << 2;
}

/// `LIMITS` bits, for generators.
pub const LIMITS_BITS: &[(&str, u32, &str)] = named! { limits;
    NO_COPY: "No COPY.",
    NO_LOG: "No append log: no APPEND or LOG_TRIM.",
    NO_COLD: "No cold tier: COLD and SRC_COLD are refused; its registers read as a blank tier.",
};

/// Cycles per 64-bit word of a WRITE or READ on the reduced controller's
/// board (`rtl::lite`, where the count is broken down; measured exactly by
/// `bitstreams/sim/tests/lite.rs`).
pub const LITE_CYCLES_PER_WORD: u32 = 15;

/// `LIMITS` of the reduced controller for small FPGAs (`rtl::lite`).
pub const LITE_LIMITS: u32 = limits::NO_COPY | limits::NO_LOG | limits::NO_COLD;

/// What descriptor `d` needs that a controller with `LIMITS` = `limits`
/// lacks (it would complete `BAD_OPCODE`), or `None`.
pub fn lacks(limits: u32, d: &Descriptor) -> Option<&'static str> {
    let op = Opcode::from_u8(d.opcode);
    if limits & limits::NO_COPY != 0 && op == Some(Opcode::Copy) {
        Some("COPY")
    } else if limits & limits::NO_LOG != 0 && matches!(op, Some(Opcode::Append | Opcode::LogTrim)) {
        Some("the append log")
    } else if limits & limits::NO_COLD != 0 && d.flags & (flags::COLD | flags::SRC_COLD) != 0 {
        Some("the cold tier")
    } else {
        None
    }
}

/// Bits of `CTRL`.
pub mod ctrl {
    pub const ENABLE: u32 = 1 << 0;
    pub const IRQ_ENABLE: u32 = 1 << 1;
}

/// `CTRL` bits, for generators.
pub const CTRL_BITS: &[(&str, u32, &str)] = named! { ctrl;
    ENABLE: "Process descriptors.",
    IRQ_ENABLE: "Send interrupts (IRQ_STATUS bits enabled in IRQ_MASK).",
};

/// Bits of `STATUS`.
pub mod status {
    pub const BOOT_DONE: u32 = 1 << 0;
    pub const BUSY: u32 = 1 << 1;
    pub const RING_ERROR: u32 = 1 << 2;
}

/// `STATUS` bits, for generators.
pub const STATUS_BITS: &[(&str, u32, &str)] = named! { status;
    BOOT_DONE: "The boot scan of both tiers has finished.",
    BUSY: "An operation is running.",
    RING_ERROR: "A doorbell overflowed the descriptor ring (the write was refused).",
};

/// Bits of `IRQ_STATUS` / `IRQ_MASK`.
pub mod irq {
    pub const COMPLETION: u32 = 1 << 0;
    pub const ERROR: u32 = 1 << 1;
    pub const BOOT_DONE: u32 = 1 << 2;
}

/// `IRQ_STATUS` / `IRQ_MASK` bits, for generators.
pub const IRQ_BITS: &[(&str, u32, &str)] = named! { irq;
    COMPLETION: "A descriptor with the IRQ flag completed.",
    ERROR: "A descriptor completed with an error status.",
    BOOT_DONE: "The boot scan finished.",
};

/// Fields of `WARM_STATE` / `COLD_STATE`.
pub mod tier_state {
    pub const RESULT_MASK: u32 = 0x3;
    pub const ACTIVE_SHIFT: u32 = 4;
}

/// `WARM_STATE` / `COLD_STATE` fields, for generators.
pub const TIER_STATE_FIELDS: &[(&str, u32, &str)] = named! { tier_state;
    RESULT_MASK: "Mask of the boot result (`BootResult`), bits 1:0.",
    ACTIVE_SHIFT: "Bit position of the active region (0 = A, 1 = B).",
};

/// Outcome of the boot-time scan of one tier (seed 000, claims 7-8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BootResult {
    /// No valid superblock: the tier is blank (fresh memory).
    Empty = 0,
    /// The active region passed its integrity test.
    Ok = 1,
    /// The active region failed; the alternate region passed and is now served as active.
    FellBack = 2,
    /// Both regions failed their integrity test: nothing is served.
    Lost = 3,
}

impl BootResult {
    pub const ALL: [BootResult; 4] = [
        BootResult::Empty,
        BootResult::Ok,
        BootResult::FellBack,
        BootResult::Lost,
    ];
    pub fn describe(self) -> &'static str {
        match self {
            Self::Empty => "no valid superblock: the tier is blank",
            Self::Ok => "the active region passed its integrity test",
            Self::FellBack => {
                "the active region failed; the alternate passed and is served as active"
            }
            Self::Lost => "both regions failed their integrity test: nothing is served",
        }
    }
    pub fn from_bits(v: u32) -> Self {
        match v & 3 {
            0 => Self::Empty,
            1 => Self::Ok,
            2 => Self::FellBack,
            _ => Self::Lost,
        }
    }
}

// ---------------------------------------------------------------------------
// Descriptors and completions
// ---------------------------------------------------------------------------

/// Size of one descriptor in host memory.
pub const DESC_BYTES: u32 = 32;
/// Size of one completion in host memory.
pub const CPL_BYTES: u32 = 16;

/// Operation codes (descriptor word 0, bits 7:0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// Do nothing; completes OK. Used to test the rings.
    Nop = 0,
    /// Host -> NV, CRC computed on the way in.
    Write = 1,
    /// NV -> host, CRC computed on the way out.
    Read = 2,
    /// NV scan, CRC only.
    Validate = 3,
    /// NV -> NV (mirroring, size-change splicing).
    Copy = 4,
    /// Commit: validate the alternate region and make it active (superblock written last).
    Flip = 5,
    /// Append a record to the log ring and commit the new head.
    Append = 6,
    /// Advance the log tail (the reader has consumed up to it) and commit.
    LogTrim = 7,
}

impl Opcode {
    pub const ALL: [Opcode; 8] = [
        Opcode::Nop,
        Opcode::Write,
        Opcode::Read,
        Opcode::Validate,
        Opcode::Copy,
        Opcode::Flip,
        Opcode::Append,
        Opcode::LogTrim,
    ];
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }
    pub fn describe(self) -> &'static str {
        match self {
            Opcode::Nop => "do nothing; completes OK (tests the rings)",
            Opcode::Write => {
                "host -> NV, CRC computed on the way in; optionally commits (COMMIT flag)"
            }
            Opcode::Read => "NV -> host, CRC computed on the way out",
            Opcode::Validate => "CRC scan of NV",
            Opcode::Copy => "NV -> NV (mirroring, size-change splicing)",
            Opcode::Flip => {
                "validate the alternate region and commit it as active (superblock written last)"
            }
            Opcode::Append => "append a record to the log ring and commit the new head",
            Opcode::LogTrim => "advance the log tail and commit",
        }
    }
}

/// Descriptor flags (word 0, bits 15:8).
pub mod flags {
    /// Target tier is the cold tier (else warm).
    pub const COLD: u8 = 1 << 0;
    /// COPY: source tier is the cold tier (else warm).
    pub const SRC_COLD: u8 = 1 << 1;
    /// Compare the computed CRC with the expected CRC in word 3; mismatch is `CRC_MISMATCH`.
    pub const CHECK: u8 = 1 << 2;
    /// READ / VALIDATE through a region-relative entry: use the alternate region instead of the active one.
    pub const ALT: u8 = 1 << 3;
    /// WRITE: after the data is durable, commit it as the new active image (fused WRITE + FLIP).
    pub const COMMIT: u8 = 1 << 4;
    /// Raise an interrupt when this descriptor completes (if CTRL.IRQ_ENABLE).
    pub const IRQ: u8 = 1 << 5;
    /// Every defined flag; others must be zero.
    pub const ALL: u8 = 0x3F;
}

/// Descriptor flag bits, for generators.
pub const FLAGS: &[(&str, u8, &str)] = named! { flags;
    COLD: "Target tier is the cold tier (else warm).",
    SRC_COLD: "COPY: source tier is the cold tier (else warm).",
    CHECK: "Compare the computed CRC with the expected CRC in word 3; mismatch is CRC_MISMATCH.",
    ALT: "READ / VALIDATE through a region-relative entry: use the alternate region instead of the active one.",
    COMMIT: "WRITE: after the data is durable, commit it as the new active image (fused WRITE + FLIP).",
    IRQ: "Raise an interrupt when this descriptor completes (if CTRL.IRQ_ENABLE).",
};

/// Protection-table permission bits (`PT_PERM`).
pub mod perm {
    /// Entry is valid.
    pub const VALID: u32 = 1 << 0;
    /// NV may be read through this entry (READ, VALIDATE, COPY source).
    pub const READ: u32 = 1 << 1;
    /// NV may be written through this entry (WRITE, COPY destination).
    pub const WRITE: u32 = 1 << 2;
    /// The entry may commit (FLIP, WRITE with COMMIT).
    pub const COMMIT: u32 = 1 << 3;
    /// The entry may append to and trim the log ring.
    pub const LOG: u32 = 1 << 4;
    /// The warm tier may be addressed.
    pub const WARM: u32 = 1 << 5;
    /// The cold tier may be addressed.
    pub const COLD: u32 = 1 << 6;
    /// Region-relative window: base is an offset inside a region; writes go to
    /// the alternate region, reads to the active one (or alternate with ALT).
    pub const REGION: u32 = 1 << 7;
    /// Every defined bit.
    pub const ALL: u32 = 0xFF;
    /// Everything on both tiers' regions: the window a single owner of the
    /// card (a test, the `raw` CLI, a benchmark) programs.
    pub const FULL_REGION_WINDOW: u32 = VALID | READ | WRITE | COMMIT | WARM | COLD | REGION;
}

/// Protection-table permission bits, for generators.
pub const PERMS: &[(&str, u32, &str)] = named! { perm;
    VALID: "Entry is valid.",
    READ: "NV may be read through this entry (READ, VALIDATE, COPY source).",
    WRITE: "NV may be written through this entry (WRITE, COPY destination).",
    COMMIT: "The entry may commit (FLIP, WRITE with COMMIT).",
    LOG: "The entry may append to and trim the log ring.",
    WARM: "The warm tier may be addressed.",
    COLD: "The cold tier may be addressed.",
    REGION: "Region-relative window: base is an offset inside a region; writes go to the alternate region, reads to the active one (or alternate with ALT).",
};

/// Completion status codes (completion word 0, bits 23:16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    /// Opcode not defined, or reserved flag bits set.
    BadOpcode = 1,
    /// Length zero (where data is moved) or larger than `MAX_TRANSFER`.
    BadLength = 2,
    /// NV offset (or COPY source offset) not a multiple of 8.
    BadAlign = 3,
    /// Offset + length outside the protection window, the region or the tier, or wrapping.
    OutOfRange = 4,
    /// Key selects an invalid entry or its tag does not match.
    BadKey = 5,
    /// Entry lacks the permission or tier the operation needs.
    Permission = 6,
    /// CRC differs from the expected CRC (CHECK flag, FLIP, boot scan).
    CrcMismatch = 7,
    /// APPEND does not fit in the free part of the log ring.
    LogFull = 8,
    /// A doorbell moved DQ_TAIL more than the ring size ahead of DQ_HEAD; the doorbell was refused.
    RingOverflow = 9,
    /// LOG_TRIM beyond the head or behind the tail.
    BadTrim = 10,
    /// WRITE with COMMIT not covering the region from offset 0 through a region-relative entry.
    BadCommit = 11,
}

impl Status {
    pub const ALL: [Status; 12] = [
        Status::Ok,
        Status::BadOpcode,
        Status::BadLength,
        Status::BadAlign,
        Status::OutOfRange,
        Status::BadKey,
        Status::Permission,
        Status::CrcMismatch,
        Status::LogFull,
        Status::RingOverflow,
        Status::BadTrim,
        Status::BadCommit,
    ];
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }
    pub fn describe(self) -> &'static str {
        match self {
            Status::Ok => "success",
            Status::BadOpcode => "undefined opcode or reserved flag set",
            Status::BadLength => "length is zero or larger than the maximum transfer",
            Status::BadAlign => "NV offset is not 8-byte aligned",
            Status::OutOfRange => "address range outside the protection window, region or tier",
            Status::BadKey => "key does not match a valid protection entry",
            Status::Permission => "protection entry lacks the permission or tier",
            Status::CrcMismatch => "CRC does not match the expected value",
            Status::LogFull => "append does not fit in the free part of the log ring",
            Status::RingOverflow => "doorbell overflowed the descriptor ring",
            Status::BadTrim => "log trim outside the unread part of the log",
            Status::BadCommit => {
                "commit must cover the region from offset 0 through a region window"
            }
        }
    }
}

/// Tag the controller puts in completions it generates on its own (ring overflow).
pub const TAG_CONTROLLER: u16 = 0xFFFF;

/// A descriptor as the host writes it (four little-endian u64 words).
///
/// | word | bits  | field |
/// |------|-------|-------|
/// | 0    | 7:0   | opcode |
/// | 0    | 15:8  | flags |
/// | 0    | 31:16 | tag (echoed in the completion) |
/// | 0    | 63:32 | key: entry index in bits 3:0, tag in bits 31:4 |
/// | 1    | 63:0  | host address (byte granular) |
/// | 2    | 31:0  | NV offset inside the protection window (8-byte aligned) |
/// | 2    | 63:32 | length in bytes |
/// | 3    | 31:0  | aux: COPY source offset; LOG_TRIM new tail |
/// | 3    | 63:32 | expected CRC-32C (CHECK, FLIP) |
/// Descriptor fields (the table above), for generators.
#[rustfmt::skip]
pub const DESCRIPTOR_FIELDS: &[Field] = &[
    Field { name: "OPCODE", word: 0, lsb: 0, width: 8, doc: "opcode (`Opcode`)" },
    Field { name: "FLAGS", word: 0, lsb: 8, width: 8, doc: "flags (`flags`)" },
    Field { name: "TAG", word: 0, lsb: 16, width: 16, doc: "tag, echoed in the completion" },
    Field { name: "KEY", word: 0, lsb: 32, width: 32, doc: "key: entry index in bits 3:0, tag in bits 31:4" },
    Field { name: "HOST_ADDR", word: 1, lsb: 0, width: 64, doc: "host address (byte granular)" },
    Field { name: "NV_OFFSET", word: 2, lsb: 0, width: 32, doc: "NV offset inside the protection window (8-byte aligned)" },
    Field { name: "LEN", word: 2, lsb: 32, width: 32, doc: "length in bytes" },
    Field { name: "AUX", word: 3, lsb: 0, width: 32, doc: "aux: COPY source offset; LOG_TRIM new tail" },
    Field { name: "CRC", word: 3, lsb: 32, width: 32, doc: "expected CRC-32C (CHECK, FLIP)" },
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    pub opcode: u8,
    pub flags: u8,
    pub tag: u16,
    pub key: u32,
    pub host_addr: u64,
    pub nv_offset: u32,
    pub len: u32,
    pub aux: u32,
    pub crc: u32,
}

impl Descriptor {
    pub fn to_words(&self) -> [u64; 4] {
        [
            self.opcode as u64
                | (self.flags as u64) << 8
                | (self.tag as u64) << 16
                | (self.key as u64) << 32,
            self.host_addr,
            self.nv_offset as u64 | (self.len as u64) << 32,
            self.aux as u64 | (self.crc as u64) << 32,
        ]
    }
    pub fn from_words(w: [u64; 4]) -> Self {
        Self {
            opcode: w[0] as u8,
            flags: (w[0] >> 8) as u8,
            tag: (w[0] >> 16) as u16,
            key: (w[0] >> 32) as u32,
            host_addr: w[1],
            nv_offset: w[2] as u32,
            len: (w[2] >> 32) as u32,
            aux: w[3] as u32,
            crc: (w[3] >> 32) as u32,
        }
    }
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, w) in self.to_words().iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        out
    }
    pub fn from_bytes(b: &[u8; 32]) -> Self {
        let mut w = [0u64; 4];
        for (i, x) in w.iter_mut().enumerate() {
            let mut le = [0u8; 8];
            le.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *x = u64::from_le_bytes(le);
        }
        Self::from_words(w)
    }
}

/// A completion as the controller writes it (two little-endian u64 words).
///
/// | word | bits  | field |
/// |------|-------|-------|
/// | 0    | 15:0  | tag |
/// | 0    | 23:16 | status (`Status`) |
/// | 0    | 31:24 | opcode |
/// | 0    | 63:32 | CRC-32C computed by the operation (0 where none) |
/// | 1    | 31:0  | info: bytes moved; FLIP: new sequence (low 32); APPEND: log offset of the record |
/// | 1    | 47:32 | descriptor index (DQ_HEAD value when it was fetched) |
/// | 1    | 62:48 | reserved, 0 |
/// | 1    | 63    | phase: 1 on the first pass through the ring, toggling on every wrap |
/// Completion fields (the table above), for generators.
#[rustfmt::skip]
pub const COMPLETION_FIELDS: &[Field] = &[
    Field { name: "TAG", word: 0, lsb: 0, width: 16, doc: "tag of the descriptor" },
    Field { name: "STATUS", word: 0, lsb: 16, width: 8, doc: "status (`Status`)" },
    Field { name: "OPCODE", word: 0, lsb: 24, width: 8, doc: "opcode of the descriptor" },
    Field { name: "CRC", word: 0, lsb: 32, width: 32, doc: "CRC-32C computed by the operation (0 where none)" },
    Field { name: "INFO", word: 1, lsb: 0, width: 32, doc: "bytes moved; FLIP: new sequence (low 32); APPEND: log offset of the record" },
    Field { name: "DESC_INDEX", word: 1, lsb: 32, width: 16, doc: "descriptor index (DQ_HEAD value when it was fetched)" },
    Field { name: "PHASE", word: 1, lsb: 63, width: 1, doc: "phase: 1 on the first pass through the ring, toggling on every wrap" },
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    pub tag: u16,
    pub status: u8,
    pub opcode: u8,
    pub crc: u32,
    pub info: u32,
    pub desc_index: u16,
    pub phase: bool,
}

impl Completion {
    pub fn to_words(&self) -> [u64; 2] {
        [
            self.tag as u64
                | (self.status as u64) << 16
                | (self.opcode as u64) << 24
                | (self.crc as u64) << 32,
            self.info as u64 | (self.desc_index as u64) << 32 | (self.phase as u64) << 63,
        ]
    }
    pub fn from_words(w: [u64; 2]) -> Self {
        Self {
            tag: w[0] as u16,
            status: (w[0] >> 16) as u8,
            opcode: (w[0] >> 24) as u8,
            crc: (w[0] >> 32) as u32,
            info: w[1] as u32,
            desc_index: (w[1] >> 32) as u16,
            phase: (w[1] >> 63) != 0,
        }
    }
    pub fn status(&self) -> Option<Status> {
        Status::from_u8(self.status)
    }
}

/// Key layout: the low `PT_INDEX_BITS` select the entry, the rest must match its tag.
pub fn key_index(key: u32) -> u32 {
    key & (PT_ENTRIES - 1)
}
/// The tag part of a key (bits 31:4).
pub fn key_tag(key: u32) -> u32 {
    key >> PT_INDEX_BITS
}
/// Compose a key from entry index and tag.
pub fn make_key(index: u32, tag: u32) -> u32 {
    (tag << PT_INDEX_BITS) | (index & (PT_ENTRIES - 1))
}

/// Program protection entry `index` through `write32(register, value)`:
/// the one register sequence (select, key tag, window, permissions, then
/// the commit strobe that makes it live) every software layer uses.
/// Returns the entry's key.
pub fn program_protection_entry<E>(
    mut write32: impl FnMut(u32, u32) -> Result<(), E>,
    index: u32,
    tag: u32,
    base: u32,
    len: u32,
    perm: u32,
) -> Result<u32, E> {
    let key = make_key(index, tag);
    write32(reg::PT_INDEX, index)?;
    write32(reg::PT_KEY_TAG, key)?;
    write32(reg::PT_BASE, base)?;
    write32(reg::PT_LEN, len)?;
    write32(reg::PT_PERM, perm)?;
    write32(reg::PT_COMMIT, 1)?;
    Ok(key)
}

// ---------------------------------------------------------------------------
// NV layout (identical in both tiers)
// ---------------------------------------------------------------------------

/// Size of one superblock slot.
pub const SUPERBLOCK_BYTES: u32 = 64;
/// Byte address of superblock slot 0; slot 1 follows it. Slot `seq & 1` holds sequence `seq`.
pub const SUPERBLOCK_BASE: u32 = 0;
/// Superblock magic, word 0: "HTLSSB01".
pub const SUPERBLOCK_MAGIC: u64 = u64::from_le_bytes(*b"HTLSSB01");
/// NV layout version stored in superblock word 2, bits 15:8.
pub const LAYOUT_VERSION: u8 = 1;

/// Geometry of one tier. Regions and log are 8-byte aligned; the log size is a power of two.
///
/// The data area after the log holds bytes that no region image contains:
/// the firmware writes set data and heap pages there (into space no
/// committed image references) and commits only a small index through the
/// regions, so a store's cost follows the bytes that changed, not the bytes
/// stored. The controller treats it as plain NV (entries without REGION);
/// it only bounds addresses by `total()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NvGeometry {
    pub region_size: u32,
    pub log_size: u32,
    /// Bytes of the data area (4 KiB multiple; 0 = none).
    pub data_size: u32,
}

impl NvGeometry {
    /// Region A starts after the superblock pair, 4 KiB aligned.
    pub const fn region_a_base(&self) -> u32 {
        4096
    }
    pub const fn region_b_base(&self) -> u32 {
        self.region_a_base() + self.region_size
    }
    pub const fn log_base(&self) -> u32 {
        self.region_b_base() + self.region_size
    }
    /// The data area starts after the log (4 KiB aligned: the log size is
    /// a power of two of at least 4 KiB and the regions are 4 KiB multiples).
    pub const fn data_base(&self) -> u32 {
        self.log_base() + self.log_size
    }
    /// Total bytes the tier must have.
    pub const fn total(&self) -> u32 {
        self.data_base() + self.data_size
    }
    pub const fn region_base(&self, region: u8) -> u32 {
        if region == 0 {
            self.region_a_base()
        } else {
            self.region_b_base()
        }
    }
    pub fn is_valid(&self) -> bool {
        self.region_size.is_multiple_of(4096)
            && self.region_size >= MAX_TRANSFER
            && self.log_size.is_power_of_two()
            && self.log_size >= 4096
            && self.data_size.is_multiple_of(4096)
            && (self.log_base() as u64 + self.log_size as u64 + self.data_size as u64)
                <= (1u64 << 31)
    }
}

/// The default geometry the simulator and the generated Verilog use:
/// two 2 MiB regions, a 1 MiB log and a 512 MiB data area per tier (a
/// 256 MiB heap and the copy-on-write space of its next versions fit;
/// the in-memory and file-backed tiers only hold the pages written).
pub const DEFAULT_GEOMETRY: NvGeometry = NvGeometry {
    region_size: 2 << 20,
    log_size: 1 << 20,
    data_size: 512 << 20,
};

/// The superblock: committed state of one tier (64 bytes, 8 LE words).
///
/// | word | field |
/// |------|-------|
/// | 0 | magic `HTLSSB01` |
/// | 1 | sequence number (the newer valid slot wins) |
/// | 2 | bit 0 active region (0 = A, 1 = B); bits 15:8 layout version |
/// | 3 | region A: length[31:0], CRC-32C[63:32] |
/// | 4 | region B: length[31:0], CRC-32C[63:32] |
/// | 5 | log head[31:0], log tail[63:32] (free-running byte counters) |
/// | 6 | log sequence: number of the next appended record |
/// | 7 | CRC-32C of words 0-6 (56 bytes) in bits 31:0; bits 63:32 zero |
/// Superblock fields (the table above), for generators.
#[rustfmt::skip]
pub const SUPERBLOCK_FIELDS: &[Field] = &[
    Field { name: "MAGIC", word: 0, lsb: 0, width: 64, doc: "magic `HTLSSB01` (SUPERBLOCK_MAGIC)" },
    Field { name: "SEQ", word: 1, lsb: 0, width: 64, doc: "sequence number (the newer valid slot wins)" },
    Field { name: "ACTIVE", word: 2, lsb: 0, width: 1, doc: "active region (0 = A, 1 = B)" },
    Field { name: "LAYOUT_VERSION", word: 2, lsb: 8, width: 8, doc: "NV layout version (LAYOUT_VERSION)" },
    Field { name: "A_LEN", word: 3, lsb: 0, width: 32, doc: "region A committed length in bytes" },
    Field { name: "A_CRC", word: 3, lsb: 32, width: 32, doc: "region A committed CRC-32C" },
    Field { name: "B_LEN", word: 4, lsb: 0, width: 32, doc: "region B committed length in bytes" },
    Field { name: "B_CRC", word: 4, lsb: 32, width: 32, doc: "region B committed CRC-32C" },
    Field { name: "LOG_HEAD", word: 5, lsb: 0, width: 32, doc: "log head (free-running byte counter)" },
    Field { name: "LOG_TAIL", word: 5, lsb: 32, width: 32, doc: "log tail (free-running byte counter)" },
    Field { name: "LOG_SEQ", word: 6, lsb: 0, width: 64, doc: "log sequence: number of the next appended record" },
    Field { name: "CRC", word: 7, lsb: 0, width: 32, doc: "CRC-32C of words 0-6 (56 bytes); bits 63:32 zero" },
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Superblock {
    pub seq: u64,
    pub active: u8,
    pub region_len: [u32; 2],
    pub region_crc: [u32; 2],
    pub log_head: u32,
    pub log_tail: u32,
    pub log_seq: u64,
}

impl Superblock {
    pub fn to_words(&self) -> [u64; 8] {
        let mut w = [
            SUPERBLOCK_MAGIC,
            self.seq,
            (self.active & 1) as u64 | (LAYOUT_VERSION as u64) << 8,
            self.region_len[0] as u64 | (self.region_crc[0] as u64) << 32,
            self.region_len[1] as u64 | (self.region_crc[1] as u64) << 32,
            self.log_head as u64 | (self.log_tail as u64) << 32,
            self.log_seq,
            0,
        ];
        w[7] = superblock_crc(&w) as u64;
        w
    }
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (i, w) in self.to_words().iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        out
    }
    /// Decode and check a slot; `None` if magic, version or CRC is wrong.
    pub fn from_words(w: &[u64; 8]) -> Option<Self> {
        if w[0] != SUPERBLOCK_MAGIC || ((w[2] >> 8) & 0xFF) as u8 != LAYOUT_VERSION {
            return None;
        }
        if w[7] != superblock_crc(w) as u64 {
            return None;
        }
        Some(Self {
            seq: w[1],
            active: (w[2] & 1) as u8,
            region_len: [w[3] as u32, w[4] as u32],
            region_crc: [(w[3] >> 32) as u32, (w[4] >> 32) as u32],
            log_head: w[5] as u32,
            log_tail: (w[5] >> 32) as u32,
            log_seq: w[6],
        })
    }
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < 64 {
            return None;
        }
        let mut w = [0u64; 8];
        for (i, x) in w.iter_mut().enumerate() {
            let mut le = [0u8; 8];
            le.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *x = u64::from_le_bytes(le);
        }
        Self::from_words(&w)
    }
    /// Byte address of the slot this superblock is written to.
    pub fn slot_addr(seq: u64) -> u32 {
        SUPERBLOCK_BASE + (seq & 1) as u32 * SUPERBLOCK_BYTES
    }
    /// The state of a blank tier (no valid superblock).
    pub fn blank() -> Self {
        Self::default()
    }
}

/// CRC-32C of superblock words 0-6.
pub fn superblock_crc(w: &[u64; 8]) -> u32 {
    let mut d = crc32c_digest();
    for x in &w[..7] {
        d.update(&x.to_le_bytes());
    }
    d.finalize()
}

// ---------------------------------------------------------------------------
// Append-log records
// ---------------------------------------------------------------------------

/// Record header word 0 magic (bits 15:0) of a data record.
pub const LOG_RECORD_MAGIC: u16 = 0x4C52; // "RL"
/// Header word 0 magic of a pad record: skip to the start of the ring.
pub const LOG_PAD_MAGIC: u16 = 0x4450; // "PD"
/// Header bytes of a record: word 0 magic[15:0] | length[63:32], word 1 log sequence.
pub const LOG_HEADER_BYTES: u32 = 16;
/// Trailer bytes: CRC-32C of the payload in bits 31:0 and its complement in 63:32.
pub const LOG_TRAILER_BYTES: u32 = 8;

/// Log record header fields (words 0 and 1 of a record), for generators.
#[rustfmt::skip]
pub const LOG_HEADER_FIELDS: &[Field] = &[
    Field { name: "MAGIC", word: 0, lsb: 0, width: 16, doc: "LOG_RECORD_MAGIC (data record) or LOG_PAD_MAGIC (pad: skip to the start of the ring)" },
    Field { name: "LEN", word: 0, lsb: 32, width: 32, doc: "payload length in bytes (data record)" },
    Field { name: "SEQ", word: 1, lsb: 0, width: 64, doc: "log sequence number of the record" },
];

/// Log record trailer fields (the word after the payload, padded to 8 bytes), for generators.
#[rustfmt::skip]
pub const LOG_TRAILER_FIELDS: &[Field] = &[
    Field { name: "CRC", word: 0, lsb: 0, width: 32, doc: "CRC-32C of the payload" },
    Field { name: "CRC_INV", word: 0, lsb: 32, width: 32, doc: "bitwise complement of the CRC" },
];

/// Bytes a record of `len` payload bytes takes in the ring.
pub const fn log_record_bytes(len: u32) -> u32 {
    LOG_HEADER_BYTES + len.div_ceil(8) * 8 + LOG_TRAILER_BYTES
}

/// Header word 0 of a data record.
pub fn log_header_word(len: u32) -> u64 {
    LOG_RECORD_MAGIC as u64 | (len as u64) << 32
}
/// Header word 0 of a pad record covering `pad` bytes to the end of the ring.
pub fn log_pad_word(pad: u32) -> u64 {
    LOG_PAD_MAGIC as u64 | (pad as u64) << 32
}
/// Trailer word of a record with payload CRC `crc`.
pub fn log_trailer_word(crc: u32) -> u64 {
    crc as u64 | ((!crc) as u64) << 32
}

/// Scalar constants of the contract as `(name, value, doc)`, for generators.
#[rustfmt::skip]
#[allow(clippy::unnecessary_cast)]
pub const CONSTANTS: &[(&str, u64, &str)] = &[
    ("CONTROLLER_ID", CONTROLLER_ID as u64, "ID register value: \"HTLS\" as a little-endian u32"),
    ("CONTRACT_VERSION", CONTRACT_VERSION as u64, "contract version: major[31:16], minor[15:0]"),
    ("CAPS_VALUE", CAPS_VALUE as u64, "CAPS register value"),
    ("DATAPATH_BYTES", DATAPATH_BYTES as u64, "datapath width in bytes (one beat of every memory port)"),
    ("PT_ENTRIES", PT_ENTRIES as u64, "number of protection-table entries"),
    ("PT_INDEX_BITS", PT_INDEX_BITS as u64, "key bits that select the protection entry (the rest is the tag)"),
    ("RING_MAX_LOG2", RING_MAX_LOG2 as u64, "largest descriptor / completion ring, log2 of the entry count"),
    ("INFLIGHT_LOG2", INFLIGHT_LOG2 as u64, "log2 of the number of reads the DMA engine keeps in flight"),
    ("MAX_TRANSFER", MAX_TRANSFER as u64, "largest single transfer in bytes"),
    ("DESC_BYTES", DESC_BYTES as u64, "size of one descriptor"),
    ("CPL_BYTES", CPL_BYTES as u64, "size of one completion"),
    ("CSR_ADDR_BITS", CSR_ADDR_BITS as u64, "address bits of the controller's register file (its AXI4-Lite port): offsets below 1 << CSR_ADDR_BITS"),
    ("MAILBOX_BASE", MAILBOX_BASE as u64, "BAR0 offset of the firmware mailbox block"),
    ("BAR0_BYTES", BAR0_BYTES as u64, "size of BAR0 (controller registers + mailbox)"),
    ("FIRMWARE_ID", FIRMWARE_ID as u64, "MB_ID register value: \"HTFW\" as a little-endian u32"),
    ("MESSAGE_VERSION", MESSAGE_VERSION as u64, "mailbox message format version: major[31:16], minor[15:0]"),
    ("MAX_MESSAGE", MAX_MESSAGE as u64, "largest mailbox request or response message in bytes"),
    ("TAG_CONTROLLER", TAG_CONTROLLER as u64, "completion tag of completions the controller generates itself (ring overflow)"),
    ("SUPERBLOCK_BYTES", SUPERBLOCK_BYTES as u64, "size of one superblock slot"),
    ("SUPERBLOCK_BASE", SUPERBLOCK_BASE as u64, "NV address of superblock slot 0; slot 1 follows; slot seq & 1 holds sequence seq"),
    ("SUPERBLOCK_MAGIC", SUPERBLOCK_MAGIC, "superblock word 0: \"HTLSSB01\""),
    ("LAYOUT_VERSION", LAYOUT_VERSION as u64, "NV layout version (superblock word 2, bits 15:8)"),
    ("LOG_RECORD_MAGIC", LOG_RECORD_MAGIC as u64, "log record header magic of a data record"),
    ("LOG_PAD_MAGIC", LOG_PAD_MAGIC as u64, "log record header magic of a pad record (skip to the start of the ring)"),
    ("LOG_HEADER_BYTES", LOG_HEADER_BYTES as u64, "bytes of a log record header"),
    ("LOG_TRAILER_BYTES", LOG_TRAILER_BYTES as u64, "bytes of a log record trailer"),
];

// ---------------------------------------------------------------------------
// Boards without PCIe
// ---------------------------------------------------------------------------

pub mod board {
    //! The board contract: how a host reaches a board without PCIe (the
    //! board top-levels `rtl::board::{BoardTop, LiteBoardTop}`) over a
    //! UART. The RTL, the driver's `uart:` transport and the board
    //! simulator all take these from here; `cargo xtask regs` documents
    //! them.
    //!
    //! Framed protocol (bytes; multi-byte fields little-endian; the host
    //! sends one command and reads its whole reply before the next):
    //! see [`COMMANDS`]. Unknown command bytes are ignored. A command left
    //! incomplete for [`RESYNC_BYTE_TIMES`] byte times is dropped, so a host
    //! resynchronizes by waiting that long.
    use super::{NvGeometry, CSR_ADDR_BITS};

    /// Command byte: CSR read.
    pub const CMD_CSR_READ: u8 = b'R';
    /// Command byte: CSR write.
    pub const CMD_CSR_WRITE: u8 = b'W';
    /// Command byte: host-memory read.
    pub const CMD_MEM_READ: u8 = b'r';
    /// Command byte: host-memory write.
    pub const CMD_MEM_WRITE: u8 = b'w';
    /// Reply byte: the write was done.
    pub const REPLY_OK: u8 = b'K';
    /// Reply byte: the CSR write was refused (error response, or an
    /// address outside [`CSR_WINDOW_BYTES`]).
    pub const REPLY_ERR: u8 = b'E';

    /// The bridge's commands, for generators and docs: (constant, byte,
    /// command, request after the command byte, reply).
    #[rustfmt::skip]
    pub const COMMANDS: &[(&str, u8, &str, &str, &str)] = &[
        ("CMD_CSR_READ", CMD_CSR_READ, "CSR read", "addr32", "data32 (0 for an address outside the CSR window)"),
        ("CMD_CSR_WRITE", CMD_CSR_WRITE, "CSR write", "addr32 data32", "REPLY_OK, or REPLY_ERR (error response, or an address outside the CSR window: nothing is written)"),
        ("CMD_MEM_READ", CMD_MEM_READ, "memory read", "addr32 count16", "count bytes"),
        ("CMD_MEM_WRITE", CMD_MEM_WRITE, "memory write", "addr32 count16, then count bytes", "REPLY_OK"),
    ];

    /// The CSR window a board has: byte addresses below it reach the
    /// controller (`1 << CSR_ADDR_BITS`, BAR0 page 0). A board has no
    /// mailbox page and nothing above: the bridge decodes all 32 address
    /// bits, refuses writes there (`REPLY_ERR`) and reads them as 0.
    pub const CSR_WINDOW_BYTES: u32 = 1 << CSR_ADDR_BITS;

    /// Bytes of the board's host-memory window (block RAM; SPRAM on the
    /// lite board): 16 KiB, seen by the controller at every host address
    /// modulo its size.
    pub const HOST_WINDOW_BYTES: u32 = 16 * 1024;
    /// The window's address as the host driver uses it (DMA IOVA).
    pub const HOST_WINDOW_IOVA: u64 = 0;
    /// Largest memory command: the count field is 16 bits; the driver
    /// moves at most this many bytes a command.
    pub const MAX_MEM_COMMAND: u32 = 4096;

    /// NV geometry of the board builds: 4 KiB superblock area, two 4 KiB
    /// regions and a 4 KiB log = 16 KiB per tier (smaller than the
    /// contract's 1 MiB minimum region, so `is_valid()` is false:
    /// transfers above 4 KiB into a region are `OUT_OF_RANGE`).
    pub const GEOMETRY: NvGeometry = NvGeometry {
        region_size: 4096,
        log_size: 4096,
        data_size: 0,
    };

    /// A command incomplete for this many byte times (10 bits each, 8N1)
    /// is dropped: the bridge's inter-byte timeout.
    pub const RESYNC_BYTE_TIMES: u32 = 256;
    /// What a host waits after an error before its next command: the
    /// resynchronization timeout plus margin, in byte times.
    pub const RESYNC_WAIT_BYTE_TIMES: u32 = 300;

    /// The default line rate of the board builds.
    pub const DEFAULT_BAUD: u32 = 115_200;

    /// LED bits of the board top-level's `leds` output.
    pub mod led {
        /// Toggles about every 2^26 clocks: the design is running.
        pub const HEARTBEAT: u32 = 1 << 0;
        /// The warm tier's active region is B.
        pub const WARM_ACTIVE: u32 = 1 << 1;
        /// The cold tier's active region is B (off on the lite board).
        pub const COLD_ACTIVE: u32 = 1 << 2;
        /// `IRQ_STATUS.ERROR` is set, or the flash cold tier stopped.
        pub const ERROR: u32 = 1 << 3;
    }

    /// LED bits, for generators.
    pub const LEDS: &[(&str, u32, &str)] = named! { led;
        HEARTBEAT: "Toggles every 2^26 clocks: the design is running.",
        WARM_ACTIVE: "The warm tier's active region is B.",
        COLD_ACTIVE: "The cold tier's active region is B (off on the lite board).",
        ERROR: "IRQ_STATUS.ERROR is set, or the flash cold tier stopped.",
    };

    /// Scalar board constants as `(name, value, doc)`, for generators.
    #[rustfmt::skip]
    pub const CONSTANTS: &[(&str, u64, &str)] = &[
        ("CSR_WINDOW_BYTES", CSR_WINDOW_BYTES as u64, "CSR bytes a board decodes; writes above answer REPLY_ERR, reads return 0"),
        ("HOST_WINDOW_BYTES", HOST_WINDOW_BYTES as u64, "bytes of the board's host-memory window (addresses modulo its size)"),
        ("HOST_WINDOW_IOVA", HOST_WINDOW_IOVA, "the host-memory window's DMA address"),
        ("MAX_MEM_COMMAND", MAX_MEM_COMMAND as u64, "bytes the driver moves per memory command"),
        ("REGION_SIZE", GEOMETRY.region_size as u64, "NV region size of the board builds"),
        ("LOG_SIZE", GEOMETRY.log_size as u64, "NV log ring size of the board builds"),
        ("TIER_BYTES", GEOMETRY.total() as u64, "NV bytes of one board tier"),
        ("RESYNC_BYTE_TIMES", RESYNC_BYTE_TIMES as u64, "byte times of silence after which the bridge drops a partial command"),
        ("RESYNC_WAIT_BYTE_TIMES", RESYNC_WAIT_BYTE_TIMES as u64, "byte times a host waits after an error before its next command"),
        ("DEFAULT_BAUD", DEFAULT_BAUD as u64, "line rate of the board builds (8N1)"),
        ("REPLY_OK", REPLY_OK as u64, "reply byte 'K': the write was done"),
        ("REPLY_ERR", REPLY_ERR as u64, "reply byte 'E': the CSR write was refused"),
    ];
}

// ---------------------------------------------------------------------------
// CRC
// ---------------------------------------------------------------------------

/// The datapath CRC: CRC-32C (Castagnoli), reflected, init and final XOR
/// 0xFFFFFFFF. Chosen over CRC-32 (IEEE) for its better Hamming distance at
/// checkpoint-sized lengths and because hosts compute it in hardware (SSE4.2
/// `crc32`, ARMv8 `crc32c`); chosen over CRC-64/NVME because at 8 bytes per
/// cycle it is half the XOR matrix and meets timing on ECP5.
pub const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// CRC-32C of a byte string.
pub fn crc32c(data: &[u8]) -> u32 {
    CRC32C.checksum(data)
}

/// A running CRC-32C.
pub fn crc32c_digest() -> crc::Digest<'static, u32> {
    CRC32C.digest()
}

/// The CRC-32C of `a ‖ b` from `crc32c(a)`, `crc32c(b)` and `b`'s length
/// (zlib's `crc32_combine`, with the Castagnoli polynomial): a set moved in
/// several transfers is checked against the CRC of the whole set.
pub fn crc32c_combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    // Reflected polynomial; multiplication modulo it, x^(2^k) by squaring.
    const POLY: u32 = 0x82F6_3B78;
    fn mul(a: u32, mut b: u32) -> u32 {
        let mut m = 1u32 << 31;
        let mut p = 0u32;
        loop {
            if a & m != 0 {
                p ^= b;
                if a & (m - 1) == 0 {
                    return p;
                }
            }
            m >>= 1;
            b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        }
    }
    // x^(8 * len_b): square x^(2^k) starting from x^8 (k = 3).
    let mut x2k = 1u32 << 30; // x^1
    for _ in 0..3 {
        x2k = mul(x2k, x2k);
    }
    let mut p = 1u32 << 31; // x^0
    let mut n = len_b;
    while n != 0 {
        if n & 1 != 0 {
            p = mul(x2k, p);
        }
        x2k = mul(x2k, x2k);
        n >>= 1;
    }
    mul(p, crc_a) ^ crc_b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_combine_equals_the_crc_of_the_concatenation() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for cut in [0, 1, 7, 8, 100, 4096, 4999, 5000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(
                crc32c_combine(crc32c(a), crc32c(b), b.len() as u64),
                crc32c(&data),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn limits_name_what_a_descriptor_lacks() {
        let d = |opcode: Opcode, flags: u8| Descriptor {
            opcode: opcode as u8,
            flags,
            ..Default::default()
        };
        assert_eq!(
            lacks(0, &d(Opcode::Copy, flags::COLD)),
            None,
            "full controller"
        );
        assert_eq!(lacks(LITE_LIMITS, &d(Opcode::Copy, 0)), Some("COPY"));
        assert_eq!(
            lacks(LITE_LIMITS, &d(Opcode::Append, 0)),
            Some("the append log")
        );
        assert_eq!(
            lacks(LITE_LIMITS, &d(Opcode::LogTrim, 0)),
            Some("the append log")
        );
        assert_eq!(
            lacks(LITE_LIMITS, &d(Opcode::Read, flags::COLD)),
            Some("the cold tier")
        );
        assert_eq!(
            lacks(LITE_LIMITS, &d(Opcode::Nop, flags::SRC_COLD)),
            Some("the cold tier")
        );
        for op in [
            Opcode::Nop,
            Opcode::Write,
            Opcode::Read,
            Opcode::Validate,
            Opcode::Flip,
        ] {
            assert_eq!(lacks(LITE_LIMITS, &d(op, flags::ALL & !3)), None, "{op:?}");
        }
        assert_eq!(lacks(limits::NO_COLD, &d(Opcode::Copy, 0)), None);
    }

    #[test]
    fn registers_are_unique_aligned_and_sorted() {
        let mut last = None;
        for r in reg::REGISTERS {
            assert_eq!(r.offset % 4, 0, "{} not aligned", r.name);
            assert!(r.offset < 0x1000, "{} outside the 4 KiB BAR", r.name);
            if let Some(prev) = last {
                assert!(r.offset > prev, "{} out of order or duplicate", r.name);
            }
            last = Some(r.offset);
            assert!(!r.doc.is_empty(), "{} undocumented", r.name);
        }
    }

    #[test]
    fn mailbox_registers_are_in_the_mailbox_page() {
        let mut last = None;
        for r in mbox::REGISTERS {
            assert_eq!(r.offset % 4, 0, "{} not aligned", r.name);
            assert!(
                (MAILBOX_BASE..BAR0_BYTES).contains(&r.offset),
                "{} outside the mailbox page",
                r.name
            );
            if let Some(prev) = last {
                assert!(r.offset > prev, "{} out of order or duplicate", r.name);
            }
            last = Some(r.offset);
        }
    }

    #[test]
    fn descriptor_round_trip() {
        let d = Descriptor {
            opcode: 6,
            flags: 0x25,
            tag: 0xBEEF,
            key: make_key(3, 0x1234567),
            host_addr: 0x1234_5678_9ABC_DEF1,
            nv_offset: 0x1000,
            len: 77,
            aux: 9,
            crc: 0xCAFEBABE,
        };
        assert_eq!(Descriptor::from_bytes(&d.to_bytes()), d);
        assert_eq!(key_index(d.key), 3);
        assert_eq!(key_tag(d.key), 0x1234567);
    }

    #[test]
    fn completion_round_trip() {
        let c = Completion {
            tag: 7,
            status: Status::LogFull as u8,
            opcode: 6,
            crc: 0xDEADBEEF,
            info: 42,
            desc_index: 513,
            phase: true,
        };
        assert_eq!(Completion::from_words(c.to_words()), c);
    }

    #[test]
    fn superblock_round_trip_and_corruption() {
        let sb = Superblock {
            seq: 9,
            active: 1,
            region_len: [10, 20],
            region_crc: [0x11, 0x22],
            log_head: 100,
            log_tail: 50,
            log_seq: 3,
        };
        let w = sb.to_words();
        assert_eq!(Superblock::from_words(&w), Some(sb));
        for bit in 0..512 {
            let mut c = w;
            c[bit / 64] ^= 1 << (bit % 64);
            assert_eq!(
                Superblock::from_words(&c),
                None,
                "flip of bit {bit} undetected"
            );
        }
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn default_geometry_is_valid() {
        assert!(DEFAULT_GEOMETRY.is_valid());
        assert_eq!(log_record_bytes(1), 32);
        assert_eq!(log_record_bytes(8), 32);
        assert_eq!(log_record_bytes(9), 40);
    }
}
