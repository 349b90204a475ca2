//! The cycle-free reference model of the controller.
//!
//! It implements "Operation semantics" of ARCHITECTURE.md on whole operations:
//! no cycles, no latency, no bus protocol. It is the scoreboard of the
//! Verilator tests (the RTL must agree with it bit for bit on NV contents,
//! completions and registers, except `CYCLES` and `STATUS.BUSY`) and the
//! in-process fake card of the driver's unit tests.
//!
//! Choices where ARCHITECTURE.md leaves room (keep the RTL in step):
//! - Register widths: `CTRL` keeps bits 1:0, `IRQ_MASK` bits 2:0,
//!   `DQ_SIZE_LOG2`/`CQ_SIZE_LOG2` bits 3:0 (read back unclamped, used
//!   clamped to `RING_MAX_LOG2`), `DQ_TAIL`/`CQ_TAIL` bits 15:0, `PT_INDEX`
//!   bits 3:0, `PT_PERM` bits 7:0. `PT_KEY_TAG` takes the tag from bits 31:4
//!   of the written value, in place, as in the key: the driver writes the
//!   key itself (its index bits are ignored). Base registers keep all 32
//!   bits; the low bits are used as written (no forced alignment).
//! - Completion `info` and `crc` on errors: 0, except `CRC_MISMATCH` of
//!   WRITE/READ/VALIDATE/COPY (crc = computed CRC, info = len: the data
//!   moved) and of FLIP (crc = computed CRC, info = 0: no new sequence).
//!   `LOG_FULL` and `BAD_TRIM` have crc 0 and info 0.
//! - A ring-overflow completion is posted as soon as the boot scan is done
//!   and the CQ has a free slot, before the next descriptor; it does not
//!   need `CTRL.ENABLE` (it is not descriptor processing). The controller
//!   holds at most one pending: a further refused doorbell while one is
//!   pending replaces its value (the latest refused tail is reported) and
//!   posts nothing more.
//! - Interrupt messages: one per completion (or boot scan) that newly sets
//!   at least one `IRQ_STATUS` bit enabled in `IRQ_MASK` while
//!   `CTRL.IRQ_ENABLE` is set. `IRQ_STATUS.COMPLETION` is set for every
//!   completion of a descriptor whose flag byte has `IRQ`, whatever its status.
//! - The boot result does not gate operations: READ/COPY of a `LOST` tier
//!   proceed against the served state. A commit sets the result to `OK`.
//! - Sequence numbers wrap (`seq + 1` modulo 2^64) instead of panicking.
//! - Garbage-only cases (a valid superblock with an unaligned log head): a
//!   pad word that would run past the ring is truncated at the ring end.

mod check;
mod host;

pub use crate::logring::{parse_log, LogError, LogRecord};
pub use check::{check_descriptor, log_base, region_base, tier_bytes, translate, Plan, PtEntry};
pub use host::{HostMemory, PageHasher, PagedMemory, PAGE_BYTES};

use crate::contract::{
    crc32c, ctrl, flags, irq, log_header_word, log_pad_word, log_record_bytes, log_trailer_word,
    reg, status, BootResult, Completion, Descriptor, NvGeometry, Status, Superblock, CAPS_VALUE,
    CONTRACT_VERSION, CONTROLLER_ID, CPL_BYTES, DESC_BYTES, LITE_CAPS_VALUE, LITE_LIMITS,
    LOG_HEADER_BYTES, PT_ENTRIES, RING_MAX_LOG2, SUPERBLOCK_BYTES, TAG_CONTROLLER,
};

/// Committed state of one tier as the controller serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierState {
    pub result: BootResult,
    /// The current committed superblock, with `active` as served (after a
    /// fallback it differs from the copy on NV until the next commit).
    pub sb: Superblock,
}

impl Default for TierState {
    fn default() -> Self {
        Self {
            result: BootResult::Empty,
            sb: Superblock::blank(),
        }
    }
}

/// One NV write, as recorded by the journal (see [`Model::set_journal`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvWrite {
    pub tier: usize,
    pub addr: u64,
    pub data: Vec<u8>,
}

/// Whether the model supports `g`: regions a multiple of 8 bytes, the log a
/// power of two of at least 64 bytes, the tier at most 2 GiB. Looser than
/// [`NvGeometry::is_valid`] so tests can use small tiers.
pub fn geometry_supported(g: &NvGeometry) -> bool {
    g.region_size & 7 == 0
        && g.log_size.is_power_of_two()
        && g.log_size >= 64
        && tier_bytes(g) <= 1 << 31
}

/// The reference model of the controller.
#[derive(Clone)]
pub struct Model {
    pub geometry: NvGeometry,
    /// NV contents: index 0 the warm tier, 1 the cold tier, `geometry.total()` bytes each.
    pub nv: [Vec<u8>; 2],
    /// Value `CYCLES` reads (the model has no clock; the harness may set it).
    pub cycles: u32,

    tiers: [TierState; 2],
    boot_done: bool,
    ring_error: bool,

    ctrl: u32,
    scratch: u32,
    dq_base: u64,
    dq_size_log2: u32,
    dq_head: u16,
    dq_tail: u16,
    cq_base: u64,
    cq_size_log2: u32,
    cq_head: u16,
    cq_tail: u16,
    irq_status: u32,
    irq_mask: u32,
    ops_ok: u32,
    ops_failed: u32,

    pt: [PtEntry; PT_ENTRIES as usize],
    pt_index: u32,
    pt_stage: PtEntry,

    /// Refused doorbell value whose RING_OVERFLOW completion is not posted yet.
    pending_overflow: Option<u16>,
    irq_pulses: u64,
    journal: Option<Vec<NvWrite>>,
    /// `LIMITS`: what this controller lacks (0: the full controller).
    limits: u32,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("geometry", &self.geometry)
            .field("tiers", &self.tiers)
            .field("boot_done", &self.boot_done)
            .field("ctrl", &self.ctrl)
            .field(
                "dq",
                &(self.dq_base, self.dq_size_log2, self.dq_head, self.dq_tail),
            )
            .field(
                "cq",
                &(self.cq_base, self.cq_size_log2, self.cq_head, self.cq_tail),
            )
            .field("irq", &(self.irq_status, self.irq_mask, self.irq_pulses))
            .field("ops", &(self.ops_ok, self.ops_failed))
            .field("pt", &self.pt)
            .finish_non_exhaustive()
    }
}

fn clamp_log2(v: u32) -> u32 {
    v.min(RING_MAX_LOG2)
}

impl Model {
    /// A controller with blank (zeroed) NV, registers at reset values and the
    /// boot scan not yet run.
    ///
    /// # Panics
    /// If the model does not support `geometry` (see [`geometry_supported`]).
    pub fn new(geometry: NvGeometry) -> Self {
        Self::with_nv(geometry, Vec::new(), Vec::new())
    }

    /// The reduced controller for small FPGAs (`rtl::lite`): as
    /// [`Model::new`], lacking what [`LITE_LIMITS`] says (descriptors that
    /// need it complete `BAD_OPCODE`; the cold tier stays blank).
    pub fn lite(geometry: NvGeometry) -> Self {
        let mut m = Self::new(geometry);
        m.limits = LITE_LIMITS;
        m
    }

    /// As [`Model::new`] with the given NV images, each truncated or
    /// zero-extended to the tier size. The boot scan is not run.
    pub fn with_nv(geometry: NvGeometry, mut warm: Vec<u8>, mut cold: Vec<u8>) -> Self {
        assert!(
            geometry_supported(&geometry),
            "unsupported NV geometry {geometry:?}"
        );
        let total = tier_bytes(&geometry) as usize;
        // A blank tier from the allocator's zero pages: a 512 MiB data area
        // costs nothing until it is written.
        for nv in [&mut warm, &mut cold] {
            if nv.is_empty() {
                *nv = vec![0; total];
            } else {
                nv.resize(total, 0);
            }
        }
        let mut m = Self {
            geometry,
            nv: [warm, cold],
            cycles: 0,
            tiers: [TierState::default(); 2],
            boot_done: false,
            ring_error: false,
            ctrl: 0,
            scratch: 0,
            dq_base: 0,
            dq_size_log2: 0,
            dq_head: 0,
            dq_tail: 0,
            cq_base: 0,
            cq_size_log2: 0,
            cq_head: 0,
            cq_tail: 0,
            irq_status: 0,
            irq_mask: 0,
            ops_ok: 0,
            ops_failed: 0,
            pt: [PtEntry::default(); PT_ENTRIES as usize],
            pt_index: 0,
            pt_stage: PtEntry::default(),
            pending_overflow: None,
            irq_pulses: 0,
            journal: None,
            limits: 0,
        };
        m.reset_registers();
        m
    }

    fn reset_registers(&mut self) {
        self.tiers = [TierState::default(); 2];
        self.boot_done = false;
        self.ring_error = false;
        self.ctrl = 0;
        self.scratch = 0;
        self.dq_base = 0;
        self.dq_size_log2 = 0;
        self.dq_head = 0;
        self.dq_tail = 0;
        self.cq_base = 0;
        self.cq_size_log2 = 0;
        self.cq_head = 0;
        self.cq_tail = 0;
        self.irq_status = 0;
        self.irq_mask = 0;
        self.ops_ok = 0;
        self.ops_failed = 0;
        self.pt = [PtEntry::default(); PT_ENTRIES as usize];
        self.pt_index = 0;
        self.pt_stage = PtEntry::default();
        self.pending_overflow = None;
        self.cycles = 0;
    }

    /// Warm reset: every register to its reset value (protection table and
    /// rings cleared), NV kept, then the boot scan. The interrupt-message
    /// count and the journal setting survive (they are test instruments).
    pub fn reset(&mut self) {
        self.reset_registers();
        self.boot_scan();
    }

    /// The boot scan of ARCHITECTURE.md, warm tier then cold; sets
    /// `STATUS.BOOT_DONE` and `IRQ_STATUS.BOOT_DONE`.
    pub fn boot_scan(&mut self) {
        for t in 0..2 {
            self.tiers[t] = scan_tier(&self.nv[t], &self.geometry);
        }
        self.boot_done = true;
        self.raise(irq::BOOT_DONE);
    }

    /// Boot result and served committed state of tier `tier` (0 warm, 1
    /// cold; other values select `tier & 1`).
    pub fn tier_state(&self, tier: usize) -> (BootResult, Superblock) {
        let t = &self.tiers[tier & 1];
        (t.result, t.sb)
    }

    /// Interrupt messages raised since construction.
    pub fn irq_pulses(&self) -> u64 {
        self.irq_pulses
    }

    /// Whether the boot scan has run since construction / reset.
    pub fn boot_done(&self) -> bool {
        self.boot_done
    }

    /// Protection-table entry `index & 15`.
    pub fn pt_entry(&self, index: u32) -> PtEntry {
        self.pt[(index % PT_ENTRIES) as usize]
    }

    /// The whole protection table.
    pub fn pt(&self) -> &[PtEntry; PT_ENTRIES as usize] {
        &self.pt
    }

    /// Program entry `index` through the register window (PT_INDEX, staging
    /// with the key written to PT_KEY_TAG, PT_COMMIT) as a driver would.
    /// `tag` is the 28-bit key tag. Returns the key that selects the entry.
    pub fn program_pt(&mut self, index: u32, tag: u32, base: u32, len: u32, perm: u32) -> u32 {
        let written = crate::contract::program_protection_entry(
            |r, v| {
                self.write_reg(r, v);
                Ok::<(), std::convert::Infallible>(())
            },
            index,
            tag,
            base,
            len,
            perm,
        );
        match written {
            Ok(key) => key,
            Err(never) => match never {},
        }
    }

    /// Refused doorbell value whose RING_OVERFLOW completion is still to be posted.
    pub fn pending_overflow(&self) -> Option<u16> {
        self.pending_overflow
    }

    /// Record every NV write (in order) from now on (`true`), or stop and
    /// drop the record (`false`). For power-cut tests.
    pub fn set_journal(&mut self, on: bool) {
        self.journal = if on { Some(Vec::new()) } else { None };
    }

    /// The NV writes recorded since the last call (journal stays on).
    pub fn take_journal(&mut self) -> Vec<NvWrite> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The unread records of tier `tier`'s log (between its committed tail and head).
    pub fn read_log(&self, tier: usize) -> Result<Vec<LogRecord>, LogError> {
        let sb = &self.tiers[tier & 1].sb;
        parse_log(&self.nv[tier & 1], &self.geometry, sb.log_head, sb.log_tail)
    }

    // -----------------------------------------------------------------------
    // Registers
    // -----------------------------------------------------------------------

    fn status_reg(&self) -> u32 {
        (if self.boot_done { status::BOOT_DONE } else { 0 })
            | (if self.ring_error {
                status::RING_ERROR
            } else {
                0
            })
    }

    fn tier_reg(&self, t: usize, idx: u32) -> u32 {
        let s = &self.tiers[t];
        match idx {
            0 => s.result as u32 | ((s.sb.active & 1) as u32) << 4,
            1 => s.sb.seq as u32,
            2 => s.sb.region_len[0],
            3 => s.sb.region_crc[0],
            4 => s.sb.region_len[1],
            5 => s.sb.region_crc[1],
            6 => s.sb.log_head,
            _ => s.sb.log_tail,
        }
    }

    /// Read a register. Unknown offsets and write-only registers read 0.
    pub fn read_reg(&self, offset: u32) -> u32 {
        let g = &self.geometry;
        let sel = &self.pt[(self.pt_index % PT_ENTRIES) as usize];
        match offset {
            reg::ID => CONTROLLER_ID,
            reg::VERSION => CONTRACT_VERSION,
            reg::CAPS if self.limits != 0 => LITE_CAPS_VALUE,
            reg::CAPS => CAPS_VALUE,
            reg::LIMITS => self.limits,
            reg::NEXT_BLOCK => 0,
            reg::CTRL => self.ctrl,
            reg::STATUS => self.status_reg(),
            reg::SCRATCH => self.scratch,
            reg::CYCLES => self.cycles,
            reg::WARM_STATE..=reg::WARM_LOG_TAIL if offset & 3 == 0 => {
                self.tier_reg(0, (offset - reg::WARM_STATE) / 4)
            }
            reg::COLD_STATE..=reg::COLD_LOG_TAIL if offset & 3 == 0 => {
                self.tier_reg(1, (offset - reg::COLD_STATE) / 4)
            }
            reg::NV_REGION_SIZE => g.region_size,
            reg::NV_LOG_SIZE => g.log_size,
            reg::NV_REGION_A_BASE => region_base(g, 0) as u32,
            reg::NV_REGION_B_BASE => region_base(g, 1) as u32,
            reg::NV_LOG_BASE => log_base(g) as u32,
            reg::NV_DATA_BASE => g.data_base(),
            reg::NV_DATA_SIZE => g.data_size,
            reg::DQ_BASE_LO => self.dq_base as u32,
            reg::DQ_BASE_HI => (self.dq_base >> 32) as u32,
            reg::DQ_SIZE_LOG2 => self.dq_size_log2,
            reg::DQ_TAIL => self.dq_tail as u32,
            reg::DQ_HEAD => self.dq_head as u32,
            reg::CQ_BASE_LO => self.cq_base as u32,
            reg::CQ_BASE_HI => (self.cq_base >> 32) as u32,
            reg::CQ_SIZE_LOG2 => self.cq_size_log2,
            reg::CQ_HEAD => self.cq_head as u32,
            reg::CQ_TAIL => self.cq_tail as u32,
            reg::IRQ_STATUS => self.irq_status,
            reg::IRQ_MASK => self.irq_mask,
            reg::OPS_OK => self.ops_ok,
            reg::OPS_FAILED => self.ops_failed,
            reg::PT_INDEX => self.pt_index,
            // An entry without VALID reads back as zero (the RTL clears
            // only the valid bits on reset; the rest is unreachable).
            reg::PT_BASE if sel.perm & crate::contract::perm::VALID != 0 => sel.base,
            reg::PT_LEN if sel.perm & crate::contract::perm::VALID != 0 => sel.len,
            reg::PT_PERM if sel.perm & crate::contract::perm::VALID != 0 => sel.perm,
            _ => 0,
        }
    }

    /// Write a register. Writes to read-only and unknown offsets are ignored.
    pub fn write_reg(&mut self, offset: u32, value: u32) {
        match offset {
            reg::CTRL => self.irq_change(|m| m.ctrl = value & (ctrl::ENABLE | ctrl::IRQ_ENABLE)),
            reg::SCRATCH => self.scratch = value,
            reg::DQ_BASE_LO => self.dq_base = (self.dq_base & !0xFFFF_FFFF) | value as u64,
            reg::DQ_BASE_HI => self.dq_base = (self.dq_base & 0xFFFF_FFFF) | (value as u64) << 32,
            reg::DQ_SIZE_LOG2 => self.dq_size_log2 = value & 0xF,
            reg::DQ_TAIL => self.doorbell(value as u16),
            reg::CQ_BASE_LO => self.cq_base = (self.cq_base & !0xFFFF_FFFF) | value as u64,
            reg::CQ_BASE_HI => self.cq_base = (self.cq_base & 0xFFFF_FFFF) | (value as u64) << 32,
            reg::CQ_SIZE_LOG2 => self.cq_size_log2 = value & 0xF,
            reg::CQ_TAIL => self.cq_tail = value as u16,
            reg::IRQ_STATUS => self.irq_status &= !value,
            reg::IRQ_MASK => self.irq_change(|m| {
                m.irq_mask = value & (irq::COMPLETION | irq::ERROR | irq::BOOT_DONE)
            }),
            reg::PT_INDEX => self.pt_index = value % PT_ENTRIES,
            reg::PT_KEY_TAG => self.pt_stage.tag = crate::contract::key_tag(value),
            reg::PT_BASE => self.pt_stage.base = value,
            reg::PT_LEN => self.pt_stage.len = value,
            reg::PT_PERM => self.pt_stage.perm = value & crate::contract::perm::ALL,
            reg::PT_COMMIT => self.pt[(self.pt_index % PT_ENTRIES) as usize] = self.pt_stage,
            _ => {}
        }
    }

    fn doorbell(&mut self, new_tail: u16) {
        let ahead = new_tail.wrapping_sub(self.dq_head) as u32;
        if ahead > 1 << clamp_log2(self.dq_size_log2) {
            self.ring_error = true;
            self.pending_overflow = Some(new_tail);
        } else {
            self.dq_tail = new_tail;
        }
    }

    // -----------------------------------------------------------------------
    // Rings
    // -----------------------------------------------------------------------

    fn cq_has_room(&self) -> bool {
        (self.cq_head.wrapping_sub(self.cq_tail) as u32) < 1 << clamp_log2(self.cq_size_log2)
    }

    fn post(&mut self, mut c: Completion, host: &mut dyn HostMemory) -> Completion {
        let log2 = clamp_log2(self.cq_size_log2);
        let h = self.cq_head;
        c.phase = (h >> log2) & 1 == 0;
        let slot = (h as u64) & ((1u64 << log2) - 1);
        let addr = self
            .cq_base
            .wrapping_add(slot.wrapping_mul(CPL_BYTES as u64));
        let w = c.to_words();
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&w[0].to_le_bytes());
        b[8..].copy_from_slice(&w[1].to_le_bytes());
        host.write(addr, &b);
        self.cq_head = h.wrapping_add(1);
        c
    }

    /// Process the rings as the controller does until it would go idle:
    /// post a pending RING_OVERFLOW completion (boot done and a free CQ
    /// slot), then, while `CTRL.ENABLE`, boot done, `DQ_HEAD != DQ_TAIL` and
    /// the CQ has a free slot, fetch, execute and complete descriptors.
    /// Returns the completions written, in order.
    pub fn process_rings(&mut self, host: &mut dyn HostMemory) -> Vec<Completion> {
        let mut out = Vec::new();
        while self.boot_done && self.cq_has_room() {
            if let Some(idx) = self.pending_overflow.take() {
                let c = Completion {
                    tag: TAG_CONTROLLER,
                    status: Status::RingOverflow as u8,
                    opcode: 0,
                    crc: 0,
                    info: 0,
                    desc_index: idx,
                    phase: false,
                };
                self.account(&c, false);
                out.push(self.post(c, host));
                continue;
            }
            if self.ctrl & ctrl::ENABLE == 0 || self.dq_head == self.dq_tail {
                break;
            }
            let i = self.dq_head;
            let slot = (i as u64) & ((1u64 << clamp_log2(self.dq_size_log2)) - 1);
            let addr = self
                .dq_base
                .wrapping_add(slot.wrapping_mul(DESC_BYTES as u64));
            let mut b = [0u8; 32];
            host.read(addr, &mut b);
            let d = Descriptor::from_bytes(&b);
            let mut c = self.execute(&d, host);
            c.desc_index = i;
            out.push(self.post(c, host));
            self.dq_head = i.wrapping_add(1);
        }
        out
    }

    // -----------------------------------------------------------------------
    // Operations
    // -----------------------------------------------------------------------

    /// `IRQ_STATUS` bits that would send an interrupt now: set, enabled
    /// in `IRQ_MASK`, with `CTRL.IRQ_ENABLE`.
    fn irq_deliverable(&self) -> u32 {
        if self.ctrl & ctrl::IRQ_ENABLE == 0 {
            0
        } else {
            self.irq_status & self.irq_mask
        }
    }

    /// Apply a change of `IRQ_STATUS`, `IRQ_MASK` or `CTRL`: a bit that
    /// becomes deliverable (newly set while enabled, or already pending
    /// when it is unmasked or interrupts are enabled) sends one interrupt
    /// message, as MSI-X sends a pending vector on unmask.
    fn irq_change(&mut self, change: impl FnOnce(&mut Self)) {
        let before = self.irq_deliverable();
        change(self);
        if self.irq_deliverable() & !before != 0 {
            self.irq_pulses += 1;
        }
    }

    fn raise(&mut self, bits: u32) {
        self.irq_change(|m| m.irq_status |= bits);
    }

    fn account(&mut self, c: &Completion, irq_flag: bool) {
        let mut bits = 0;
        if c.status == Status::Ok as u8 {
            self.ops_ok = self.ops_ok.wrapping_add(1);
        } else {
            self.ops_failed = self.ops_failed.wrapping_add(1);
            bits |= irq::ERROR;
        }
        if irq_flag {
            bits |= irq::COMPLETION;
        }
        self.raise(bits);
    }

    /// Execute one descriptor (checks, execution, commit) and account for
    /// its completion (OPS_OK / OPS_FAILED, IRQ_STATUS, interrupt message).
    /// `desc_index` and `phase` of the result are 0; `process_rings` fills them.
    pub fn execute(&mut self, d: &Descriptor, host: &mut dyn HostMemory) -> Completion {
        let c = self.perform(d, host);
        self.account(&c, d.flags & flags::IRQ != 0);
        c
    }

    /// Execute one descriptor without touching counters or interrupts.
    pub fn perform(&mut self, d: &Descriptor, host: &mut dyn HostMemory) -> Completion {
        let mut c = Completion {
            tag: d.tag,
            opcode: d.opcode,
            ..Completion::default()
        };
        let active = [self.tiers[0].sb.active, self.tiers[1].sb.active];
        let plan = match check_descriptor(d, &self.pt, &self.geometry, active, self.limits) {
            Ok(p) => p,
            Err(s) => {
                c.status = s as u8;
                return c;
            }
        };
        let check = d.flags & flags::CHECK != 0;
        let mismatch = |crc: u32| check && crc != d.crc;
        match plan {
            Plan::Nop => {}
            Plan::Write {
                tier,
                phys,
                len,
                commit,
            } => {
                let mut data = vec![0u8; len as usize];
                host.read(d.host_addr, &mut data);
                self.nv_write(tier, phys, &data);
                c.crc = crc32c(&data);
                c.info = len;
                if mismatch(c.crc) {
                    c.status = Status::CrcMismatch as u8;
                } else if let Some(r) = commit {
                    let crc = c.crc;
                    self.commit(tier, |sb| {
                        sb.active = r;
                        sb.region_len[r as usize] = len;
                        sb.region_crc[r as usize] = crc;
                    });
                }
            }
            Plan::Read { tier, phys, len } => {
                let data = self.nv_slice(tier, phys, len as u64);
                c.crc = crc32c(data);
                host.write(d.host_addr, data);
                c.info = len;
                if mismatch(c.crc) {
                    c.status = Status::CrcMismatch as u8;
                }
            }
            Plan::Validate { tier, phys, len } => {
                c.crc = crc32c(self.nv_slice(tier, phys, len as u64));
                c.info = len;
                if mismatch(c.crc) {
                    c.status = Status::CrcMismatch as u8;
                }
            }
            Plan::Copy {
                src_tier,
                src_phys,
                tier,
                phys,
                len,
            } => {
                let data = self.nv_slice(src_tier, src_phys, len as u64).to_vec();
                self.nv_write(tier, phys, &data);
                c.crc = crc32c(&data);
                c.info = len;
                if mismatch(c.crc) {
                    c.status = Status::CrcMismatch as u8;
                }
            }
            Plan::Flip { tier, region, len } => {
                let base = region_base(&self.geometry, region);
                c.crc = crc32c(self.nv_slice(tier, base, len as u64));
                if mismatch(c.crc) {
                    c.status = Status::CrcMismatch as u8;
                } else {
                    let crc = c.crc;
                    let seq = self.commit(tier, |sb| {
                        sb.active = region;
                        sb.region_len[region as usize] = len;
                        sb.region_crc[region as usize] = crc;
                    });
                    c.info = seq as u32;
                }
            }
            Plan::Append { tier, len } => match self.append(tier, len, d.host_addr, host) {
                Ok((crc, info)) => {
                    c.crc = crc;
                    c.info = info;
                }
                Err(s) => c.status = s as u8,
            },
            Plan::LogTrim { tier, new_tail } => {
                let sb = &self.tiers[tier].sb;
                if new_tail.wrapping_sub(sb.log_tail) > sb.log_head.wrapping_sub(sb.log_tail) {
                    c.status = Status::BadTrim as u8;
                } else {
                    self.commit(tier, |sb| sb.log_tail = new_tail);
                    c.info = new_tail;
                }
            }
        }
        c
    }

    /// APPEND after the checks. Returns (payload CRC, record offset).
    fn append(
        &mut self,
        tier: usize,
        len: u32,
        host_addr: u64,
        host: &mut dyn HostMemory,
    ) -> Result<(u32, u32), Status> {
        let size = self.geometry.log_size as u64;
        let lbase = log_base(&self.geometry);
        let sb = self.tiers[tier].sb;
        let (head, tail) = (sb.log_head, sb.log_tail);
        let rec = log_record_bytes(len) as u64;
        let pos = head as u64 % size;
        let pad = if pos + rec > size { size - pos } else { 0 };
        if head.wrapping_sub(tail) as u64 + pad + rec > size {
            return Err(Status::LogFull);
        }
        if pad != 0 {
            let w = log_pad_word(pad as u32).to_le_bytes();
            let n = pad.min(8) as usize;
            self.nv_write(tier, lbase + pos, &w[..n]);
        }
        let rec_off = head.wrapping_add(pad as u32);
        let start = lbase + rec_off as u64 % size;
        let mut hdr = [0u8; 16];
        hdr[..8].copy_from_slice(&log_header_word(len).to_le_bytes());
        hdr[8..].copy_from_slice(&sb.log_seq.to_le_bytes());
        self.nv_write(tier, start, &hdr);
        let mut data = vec![0u8; len as usize];
        host.read(host_addr, &mut data);
        let data_at = start + LOG_HEADER_BYTES as u64;
        self.nv_write(tier, data_at, &data);
        let crc = crc32c(&data);
        let trailer_at = data_at + (len as u64).div_ceil(8) * 8;
        self.nv_write(tier, trailer_at, &log_trailer_word(crc).to_le_bytes());
        let new_head = rec_off.wrapping_add(rec as u32);
        self.commit(tier, |sb| {
            sb.log_head = new_head;
            sb.log_seq = sb.log_seq.wrapping_add(1);
        });
        Ok((crc, rec_off))
    }

    /// Commit the tier's state changed by `f`: write the superblock with
    /// `seq + 1` into slot `(seq + 1) & 1`, make it current, result OK.
    /// Returns the new sequence number.
    fn commit(&mut self, tier: usize, f: impl FnOnce(&mut Superblock)) -> u64 {
        let mut sb = self.tiers[tier].sb;
        f(&mut sb);
        sb.seq = sb.seq.wrapping_add(1);
        self.nv_write(tier, Superblock::slot_addr(sb.seq) as u64, &sb.to_bytes());
        self.tiers[tier] = TierState {
            result: BootResult::Ok,
            sb,
        };
        sb.seq
    }

    /// `[addr, addr + len)` of a tier, clipped to the tier.
    fn nv_slice(&self, tier: usize, addr: u64, len: u64) -> &[u8] {
        clipped(&self.nv[tier & 1], addr, len)
    }

    fn nv_write(&mut self, tier: usize, addr: u64, data: &[u8]) {
        let nv = &mut self.nv[tier & 1];
        let n = nv.len() as u64;
        if addr >= n {
            return;
        }
        let k = (data.len() as u64).min(n - addr) as usize;
        nv[addr as usize..addr as usize + k].copy_from_slice(&data[..k]);
        if let Some(j) = self.journal.as_mut() {
            j.push(NvWrite {
                tier: tier & 1,
                addr,
                data: data[..k].to_vec(),
            });
        }
    }
}

fn clipped(b: &[u8], addr: u64, len: u64) -> &[u8] {
    let n = b.len() as u64;
    let a = addr.min(n);
    let e = addr.saturating_add(len).min(n);
    &b[a as usize..e as usize]
}

/// Whether region `r` of `nv` holds the image `sb` records for it.
fn region_intact(nv: &[u8], g: &NvGeometry, sb: &Superblock, r: u8) -> bool {
    let len = sb.region_len[r as usize];
    if len > g.region_size {
        return false;
    }
    let base = region_base(g, r);
    let data = clipped(nv, base, len as u64);
    data.len() == len as usize && crc32c(data) == sb.region_crc[r as usize]
}

/// Boot scan of one tier image ("Boot scan" in ARCHITECTURE.md).
pub fn scan_tier(nv: &[u8], g: &NvGeometry) -> TierState {
    let slot = |i: u32| Superblock::from_bytes(clipped(nv, (i * SUPERBLOCK_BYTES) as u64, 64));
    let sb = match (slot(0), slot(1)) {
        (Some(a), Some(b)) => {
            if b.seq > a.seq {
                b
            } else {
                a
            }
        }
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => return TierState::default(),
    };
    let r = sb.active & 1;
    if region_intact(nv, g, &sb, r) {
        TierState {
            result: BootResult::Ok,
            sb,
        }
    } else if region_intact(nv, g, &sb, 1 - r) {
        TierState {
            result: BootResult::FellBack,
            sb: Superblock {
                active: 1 - r,
                ..sb
            },
        }
    } else {
        TierState {
            result: BootResult::Lost,
            sb,
        }
    }
}
