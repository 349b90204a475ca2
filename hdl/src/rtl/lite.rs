//! The reduced controller for small FPGAs (iCE40 UltraPlus): the same
//! register map, descriptor and completion rings, protection table, checks,
//! superblock commit and boot scan as [`HitlessController`], built for area
//! instead of throughput.
//!
//! What is reduced (`LIMITS` reads [`LITE_LIMITS`], see the contract):
//! - one NV tier (warm): descriptors with `COLD` or `SRC_COLD` are
//!   `BAD_OPCODE`, and the cold tier's registers read as a blank tier;
//! - no COPY, APPEND or LOG_TRIM (`BAD_OPCODE`); the append-log fields of
//!   the superblock are carried through commits unchanged;
//! - one memory port for host window and tier (bit [`TIER_BIT`] of its
//!   byte address selects the tier), one command in flight, one byte per
//!   cycle through the CRC: a word-at-a-time mover instead of the streaming
//!   one ([`LITE_CYCLES_PER_WORD`]).
//!
//! Everything else is the contract as ARCHITECTURE.md states it, in the
//! same order of checks, and is tested against the same reference model
//! (`Model::lite`).
//!
//! [`HitlessController`]: super::controller::HitlessController

use super::axil::AxiLiteCsr;
use super::bus::{AxiLiteTarget, PmpInitiator, CSR_ADDR_BITS};
use super::crc::{masks, pack};
use super::irq::IrqUnit;
use crate::contract::{self, reg, NvGeometry};
use rust_hdl::prelude::*;

pub use crate::contract::LITE_LIMITS;

/// Bit of the memory port's byte address that selects the NV tier (else
/// the host window).
pub const TIER_BIT: usize = 14;
/// Bytes of the host window (host addresses wrap modulo it) and of the
/// tier: the board contract's host window.
pub const LITE_WINDOW_BYTES: u32 = contract::board::HOST_WINDOW_BYTES;
const _: () = assert!(LITE_WINDOW_BYTES == 1 << TIER_BIT);

/// Cycles per 64-bit word of a WRITE or READ on the lite board, stated in
/// the contract so that the tests, the benchmark and the bitstream report
/// (which do not link the RTL) use the one number: with `PmpSpram`'s latency
/// of 1, load the source word (`MvLoad`, issue, wait: 3), eight bytes
/// through the CRC (8), store the destination word (`MvStore`, issue, wait,
/// `MvStored`: 4). `bitstreams/sim/tests/lite.rs` measures it.
pub use crate::contract::LITE_CYCLES_PER_WORD;

// Literals in `update` (hdl_gen takes no paths), checked against the contract.
const _: () = assert!(
    contract::flags::COLD == 1
        && contract::flags::SRC_COLD == 2
        && contract::flags::CHECK == 4
        && contract::flags::ALT == 8
        && contract::flags::COMMIT == 16
        && contract::flags::IRQ == 32
        && contract::flags::ALL == 0x3F
        && contract::perm::VALID == 1
        && contract::perm::READ == 2
        && contract::perm::WRITE == 4
        && contract::perm::COMMIT == 8
        && contract::perm::WARM == 32
        && contract::perm::REGION == 128
        && contract::Opcode::Write as u8 == 1
        && contract::Opcode::Read as u8 == 2
        && contract::Opcode::Validate as u8 == 3
        && contract::Opcode::Flip as u8 == 5
        && contract::Status::BadOpcode as u8 == 1
        && contract::Status::BadLength as u8 == 2
        && contract::Status::BadAlign as u8 == 3
        && contract::Status::OutOfRange as u8 == 4
        && contract::Status::BadKey as u8 == 5
        && contract::Status::Permission as u8 == 6
        && contract::Status::CrcMismatch as u8 == 7
        && contract::Status::RingOverflow as u8 == 9
        && contract::Status::BadCommit as u8 == 11
        && contract::irq::COMPLETION == 1
        && contract::irq::ERROR == 2
        && contract::irq::BOOT_DONE == 4
        && contract::RING_MAX_LOG2 == 12
        && contract::MAX_TRANSFER == 1 << 20
        && contract::LAYOUT_VERSION == 1
        && contract::SUPERBLOCK_BYTES == 64
        && contract::SUPERBLOCK_BASE == 0
        && contract::DESC_BYTES == 32
        && contract::CPL_BYTES == 16
        // The tier registers' layout the register reads decode.
        && reg::WARM_SEQ == 0x024
        && reg::WARM_A_LEN == 0x028
        && reg::WARM_A_CRC == 0x02C
        && reg::WARM_B_LEN == 0x030
        && reg::WARM_B_CRC == 0x034
        && reg::WARM_LOG_HEAD == 0x038
        && reg::WARM_LOG_TAIL == 0x03C
);

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
enum Phase {
    BootSlot,
    BootWord,
    BootSlotEnd,
    BootPick,
    BootClear,
    BootRegionRead,
    BootRegion,
    BootJudge,
    Idle,
    Fetch,
    FetchWord,
    PtCap,
    CheckKey,
    CheckPerm,
    CheckRange,
    CheckRange2,
    Exec,
    ExecDone,
    SbLoad,
    SbFolded,
    SbWrite,
    SbNext,
    CplWrite,
    CplNext,
    CplDone,
    MvStart,
    MvLoad,
    MvByte,
    MvStore,
    MvStored,
    CrcByte,
    MemCmd,
    MemWait,
}

fn k12(v: u32) -> Constant<Bits<CSR_ADDR_BITS>> {
    Constant::new((v as u64).into())
}
fn k32(v: u32) -> Constant<Bits<32>> {
    Constant::new((v as u64).into())
}

/// The reduced controller.
#[derive(LogicBlock)]
pub struct LiteController {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset, active high (a warm reset: registers cleared, the
    /// boot scan runs again).
    pub reset: Signal<In, Bit>,
    /// CSR port.
    pub csr: AxiLiteTarget,
    /// Memory port: host window (bit [`TIER_BIT`] clear) and NV tier (set).
    pub mem: PmpInitiator<15>,
    /// Active region: bit 0 the tier's (bit 1, the absent cold tier, is 0).
    pub active: Signal<Out, Bits<2>>,
    /// `IRQ_STATUS.ERROR` is set.
    pub error: Signal<Out, Bit>,
    /// Interrupt message: a one-cycle pulse.
    pub irq: Signal<Out, Bit>,
    axil: AxiLiteCsr,
    pt_eng: RAM<Bits<100>, 4>,
    pt_csr: RAM<Bits<100>, 4>,
    // Every CSR written below 0x100, as written: SCRATCH and the ring
    // bases read back from here (flip-flops cost logic cells on an iCE40).
    shadow: RAM<Bits<32>, 6>,
    // The tier's superblock, the eight words as in NV (all zero for a blank
    // tier): one copy for the sequencer, one for register reads. The
    // served active region and the boot result are `act` and `result`.
    sb_eng: RAM<Bits<64>, 3>,
    sb_csr: RAM<Bits<64>, 3>,
    // Which shadowed registers were written since reset (a RAM is not
    // cleared by reset): SCRATCH, DQ_BASE_LO/HI, CQ_BASE_LO/HI.
    shadow_ok: DFF<Bits<5>>,
    phase: DFF<Phase>,
    ret: DFF<Phase>,
    mv_ret: DFF<Phase>,
    crc_ret: DFF<Phase>,
    // CSR state
    ctrl: DFF<Bits<2>>,
    cycles: DFF<Bits<32>>,
    // The ring bases' bits the engine uses (the window is 16 KiB); the
    // registers as written are in `shadow`.
    dq_base: DFF<Bits<14>>,
    dq_log2: DFF<Bits<4>>,
    dq_tail: DFF<Bits<16>>,
    dq_head: DFF<Bits<16>>,
    cq_base: DFF<Bits<14>>,
    cq_log2: DFF<Bits<4>>,
    cq_head: DFF<Bits<16>>,
    cq_tail: DFF<Bits<16>>,
    // IRQ_STATUS, IRQ_MASK and the interrupt message (the full
    // controller's unit).
    irq_unit: IrqUnit,
    ops_ok: DFF<Bits<32>>,
    ops_failed: DFF<Bits<32>>,
    ring_error: DFF<Bit>,
    ovf_pending: DFF<Bit>,
    ovf_tail: DFF<Bits<16>>,
    boot_done: DFF<Bit>,
    pt_index: DFF<Bits<4>>,
    pt_tag: DFF<Bits<28>>,
    pt_base: DFF<Bits<32>>,
    pt_len: DFF<Bits<32>>,
    pt_perm: DFF<Bits<8>>,
    pt_valid: DFF<Bits<16>>,
    // The tier's committed state (the decoded superblock, boot result).
    act: DFF<Bit>,
    // The slot the next commit writes, and its sequence number's low half
    // (FLIP's `info`), taken while the commit folds word 1.
    nslot: DFF<Bit>,
    nseq_lo: DFF<Bits<32>>,
    result: DFF<Bits<2>>,
    // Boot scan
    slot: DFF<Bit>,
    store: DFF<Bit>,
    have: DFF<Bit>,
    sb_ok: DFF<Bit>,
    newer: DFF<Bit>,
    region: DFF<Bit>,
    tried_alt: DFF<Bit>,
    // Descriptor
    opcode: DFF<Bits<8>>,
    flags: DFF<Bits<8>>,
    tag: DFF<Bits<16>>,
    key: DFF<Bits<32>>,
    host: DFF<Bits<14>>,
    off: DFF<Bits<32>>,
    len: DFF<Bits<32>>,
    xcrc: DFF<Bits<32>>,
    e_valid: DFF<Bit>,
    sum_a: DFF<Bits<34>>,
    sum_b: DFF<Bits<34>>,
    phys: DFF<Bits<14>>,
    status: DFF<Bits<8>>,
    res_crc: DFF<Bits<32>>,
    info: DFF<Bits<32>>,
    desc_index: DFF<Bits<16>>,
    is_desc: DFF<Bit>,
    widx: DFF<Bits<3>>,
    // Memory command (one in flight)
    m_write: DFF<Bit>,
    m_addr: DFF<Bits<15>>,
    rdata: DFF<Bits<64>>,
    // Mover: byte addresses in the memory port's space, bytes left
    mv_src: DFF<Bits<15>>,
    mv_dst: DFF<Bits<15>>,
    mv_left: DFF<Bits<21>>,
    mv_has_dst: DFF<Bit>,
    dst_word: DFF<Bits<64>>,
    dst_strb: DFF<Bits<8>>,
    // CRC-32C, one byte per cycle
    crc_s: DFF<Bits<32>>,
    crc_idx: DFF<Bits<3>>,
    m8: Constant<Bits<1280>>,
    crc_in: Signal<Local, Bits<40>>,
    crc_next: Signal<Local, Bits<32>>,
    crc_byte: Signal<Local, Bits<8>>,
    crc_step: Signal<Local, Bit>,
    crc_val: Signal<Local, Bits<32>>,
    crc_src: Signal<Local, Bits<64>>,
    crc_sel: Signal<Local, Bits<64>>,
    // Decoded
    f_check: Signal<Local, Bit>,
    f_alt: Signal<Local, Bit>,
    f_commit: Signal<Local, Bit>,
    f_irq: Signal<Local, Bit>,
    e_tag: Signal<Local, Bits<28>>,
    e_base: Signal<Local, Bits<32>>,
    e_len: Signal<Local, Bits<32>>,
    e_perm: Signal<Local, Bits<8>>,
    need: Signal<Local, Bits<8>>,
    is_write: Signal<Local, Bit>,
    is_flip: Signal<Local, Bit>,
    dq_eff: Signal<Local, Bits<4>>,
    // RING_MAX_LOG2: larger ring sizes act as this.
    k_ring_max: Constant<Bits<4>>,
    cq_eff: Signal<Local, Bits<4>>,
    dq_mask: Signal<Local, Bits<16>>,
    cq_mask: Signal<Local, Bits<16>>,
    cq_room: Signal<Local, Bit>,
    sb_word: Signal<Local, Bits<64>>,
    cur_len: Signal<Local, Bits<32>>,
    cur_crc: Signal<Local, Bits<32>>,
    nseq: Signal<Local, Bits<64>>,
    rd_data: Signal<Local, Bits<32>>,
    tier_state: Signal<Local, Bits<32>>,
    irq_set: Signal<Local, Bits<3>>,
    irq_clear: Signal<Local, Bits<3>>,
    src_byte: Signal<Local, Bits<8>>,
    mv_src_next: Signal<Local, Bits<15>>,
    mv_dst_next: Signal<Local, Bits<15>>,
    cpl_w0: Signal<Local, Bits<64>>,
    cpl_w1: Signal<Local, Bits<64>>,
    dst_shift: Signal<Local, Bits<64>>,
    src_word: Signal<Local, Bits<64>>,
    cq_pass: Signal<Local, Bits<16>>,
    k_tier: Constant<Bits<15>>,
    k_wrap: Constant<Bits<15>>,
    k_ff: Constant<Bits<64>>,
    // Contract constants
    k_region_size: Constant<Bits<34>>,
    k_total: Constant<Bits<34>>,
    k_region_a: Constant<Bits<14>>,
    k_region_b: Constant<Bits<14>>,
    k_magic: Constant<Bits<64>>,
    k_geom: Constant<Bits<224>>,
    k_id: Constant<Bits<32>>,
    k_version: Constant<Bits<32>>,
    k_caps: Constant<Bits<32>>,
    k_limits: Constant<Bits<32>>,
    r_id: Constant<Bits<CSR_ADDR_BITS>>,
    r_version: Constant<Bits<CSR_ADDR_BITS>>,
    r_caps: Constant<Bits<CSR_ADDR_BITS>>,
    r_ctrl: Constant<Bits<CSR_ADDR_BITS>>,
    r_status: Constant<Bits<CSR_ADDR_BITS>>,
    r_scratch: Constant<Bits<CSR_ADDR_BITS>>,
    r_cycles: Constant<Bits<CSR_ADDR_BITS>>,
    r_warm_state: Constant<Bits<CSR_ADDR_BITS>>,
    r_warm_seq: Constant<Bits<CSR_ADDR_BITS>>,
    r_warm_log_tail: Constant<Bits<CSR_ADDR_BITS>>,
    r_nv_region_size: Constant<Bits<CSR_ADDR_BITS>>,
    r_nv_log_size: Constant<Bits<CSR_ADDR_BITS>>,
    r_nv_region_a: Constant<Bits<CSR_ADDR_BITS>>,
    r_nv_region_b: Constant<Bits<CSR_ADDR_BITS>>,
    r_nv_log_base: Constant<Bits<CSR_ADDR_BITS>>,
    r_nv_data_base: Constant<Bits<CSR_ADDR_BITS>>,
    r_nv_data_size: Constant<Bits<CSR_ADDR_BITS>>,
    r_dq_base_lo: Constant<Bits<CSR_ADDR_BITS>>,
    r_dq_base_hi: Constant<Bits<CSR_ADDR_BITS>>,
    r_dq_size_log2: Constant<Bits<CSR_ADDR_BITS>>,
    r_dq_tail: Constant<Bits<CSR_ADDR_BITS>>,
    r_dq_head: Constant<Bits<CSR_ADDR_BITS>>,
    r_cq_base_lo: Constant<Bits<CSR_ADDR_BITS>>,
    r_cq_base_hi: Constant<Bits<CSR_ADDR_BITS>>,
    r_cq_size_log2: Constant<Bits<CSR_ADDR_BITS>>,
    r_cq_head: Constant<Bits<CSR_ADDR_BITS>>,
    r_cq_tail: Constant<Bits<CSR_ADDR_BITS>>,
    r_irq_status: Constant<Bits<CSR_ADDR_BITS>>,
    r_irq_mask: Constant<Bits<CSR_ADDR_BITS>>,
    r_ops_ok: Constant<Bits<CSR_ADDR_BITS>>,
    r_ops_failed: Constant<Bits<CSR_ADDR_BITS>>,
    r_limits: Constant<Bits<CSR_ADDR_BITS>>,
    r_pt_index: Constant<Bits<CSR_ADDR_BITS>>,
    r_pt_key_tag: Constant<Bits<CSR_ADDR_BITS>>,
    r_pt_base: Constant<Bits<CSR_ADDR_BITS>>,
    r_pt_len: Constant<Bits<CSR_ADDR_BITS>>,
    r_pt_perm: Constant<Bits<CSR_ADDR_BITS>>,
    r_pt_commit: Constant<Bits<CSR_ADDR_BITS>>,
}

impl LiteController {
    /// A reduced controller for a tier of `geometry`, which must fit the
    /// tier's 16 KiB half of the memory port.
    pub fn new(geometry: &NvGeometry) -> Self {
        assert!(
            geometry.total() <= LITE_WINDOW_BYTES,
            "the lite controller's tier is {LITE_WINDOW_BYTES} bytes"
        );
        let g = geometry;
        let geom = (g.region_size as u128)
            | (g.log_size as u128) << 32
            | (g.region_a_base() as u128) << 64
            | (g.region_b_base() as u128) << 96;
        let mut k_geom = Bits::<224>::default();
        for i in 0..128 {
            k_geom = k_geom.replace_bit(i, (geom >> i) & 1 != 0);
        }
        for i in 0..32 {
            k_geom = k_geom.replace_bit(128 + i, (g.log_base() >> i) & 1 != 0);
            k_geom = k_geom.replace_bit(160 + i, (g.data_base() >> i) & 1 != 0);
            k_geom = k_geom.replace_bit(192 + i, (g.data_size >> i) & 1 != 0);
        }
        Self {
            clock: Default::default(),
            reset: Default::default(),
            csr: Default::default(),
            mem: Default::default(),
            active: Default::default(),
            error: Default::default(),
            irq: Default::default(),
            axil: Default::default(),
            pt_eng: Default::default(),
            pt_csr: Default::default(),
            shadow: Default::default(),
            sb_eng: Default::default(),
            sb_csr: Default::default(),
            shadow_ok: Default::default(),
            phase: Default::default(),
            ret: Default::default(),
            mv_ret: Default::default(),
            crc_ret: Default::default(),
            ctrl: Default::default(),
            cycles: Default::default(),
            dq_base: Default::default(),
            dq_log2: Default::default(),
            dq_tail: Default::default(),
            dq_head: Default::default(),
            cq_base: Default::default(),
            cq_log2: Default::default(),
            cq_head: Default::default(),
            cq_tail: Default::default(),
            irq_unit: Default::default(),
            ops_ok: Default::default(),
            ops_failed: Default::default(),
            ring_error: Default::default(),
            ovf_pending: Default::default(),
            ovf_tail: Default::default(),
            boot_done: Default::default(),
            pt_index: Default::default(),
            pt_tag: Default::default(),
            pt_base: Default::default(),
            pt_len: Default::default(),
            pt_perm: Default::default(),
            pt_valid: Default::default(),
            act: Default::default(),
            nslot: Default::default(),
            nseq_lo: Default::default(),
            result: Default::default(),
            slot: Default::default(),
            store: Default::default(),
            have: Default::default(),
            sb_ok: Default::default(),
            newer: Default::default(),
            region: Default::default(),
            tried_alt: Default::default(),
            opcode: Default::default(),
            flags: Default::default(),
            tag: Default::default(),
            key: Default::default(),
            host: Default::default(),
            off: Default::default(),
            len: Default::default(),
            xcrc: Default::default(),
            e_valid: Default::default(),
            sum_a: Default::default(),
            sum_b: Default::default(),
            phys: Default::default(),
            status: Default::default(),
            res_crc: Default::default(),
            info: Default::default(),
            desc_index: Default::default(),
            is_desc: Default::default(),
            widx: Default::default(),
            m_write: Default::default(),
            m_addr: Default::default(),
            rdata: Default::default(),
            mv_src: Default::default(),
            mv_dst: Default::default(),
            mv_left: Default::default(),
            mv_has_dst: Default::default(),
            dst_word: Default::default(),
            dst_strb: Default::default(),
            crc_s: Default::default(),
            crc_idx: Default::default(),
            m8: Constant::new(pack::<1280>(&masks(8), 40)),
            crc_in: Default::default(),
            crc_next: Default::default(),
            crc_byte: Default::default(),
            crc_step: Default::default(),
            crc_val: Default::default(),
            crc_src: Default::default(),
            crc_sel: Default::default(),
            f_check: Default::default(),
            f_alt: Default::default(),
            f_commit: Default::default(),
            f_irq: Default::default(),
            e_tag: Default::default(),
            e_base: Default::default(),
            e_len: Default::default(),
            e_perm: Default::default(),
            need: Default::default(),
            is_write: Default::default(),
            is_flip: Default::default(),
            dq_eff: Default::default(),
            k_ring_max: Constant::new((contract::RING_MAX_LOG2 as u64).into()),
            cq_eff: Default::default(),
            dq_mask: Default::default(),
            cq_mask: Default::default(),
            cq_room: Default::default(),
            sb_word: Default::default(),
            cur_len: Default::default(),
            cur_crc: Default::default(),
            nseq: Default::default(),
            rd_data: Default::default(),
            tier_state: Default::default(),
            irq_set: Default::default(),
            irq_clear: Default::default(),
            src_byte: Default::default(),
            mv_src_next: Default::default(),
            mv_dst_next: Default::default(),
            cpl_w0: Default::default(),
            cpl_w1: Default::default(),
            dst_shift: Default::default(),
            src_word: Default::default(),
            cq_pass: Default::default(),
            k_tier: Constant::new((1u64 << TIER_BIT).into()),
            k_wrap: Constant::new((LITE_WINDOW_BYTES as u64 - 1).into()),
            k_ff: Constant::new(0xFF_u64.into()),
            k_region_size: Constant::new((g.region_size as u64).into()),
            k_total: Constant::new((g.total() as u64).into()),
            k_region_a: Constant::new((g.region_a_base() as u64).into()),
            k_region_b: Constant::new((g.region_b_base() as u64).into()),
            k_magic: Constant::new(contract::SUPERBLOCK_MAGIC.into()),
            k_geom: Constant::new(k_geom),
            k_id: k32(contract::CONTROLLER_ID),
            k_version: k32(contract::CONTRACT_VERSION),
            k_caps: k32(contract::LITE_CAPS_VALUE),
            k_limits: k32(LITE_LIMITS),
            r_id: k12(reg::ID),
            r_version: k12(reg::VERSION),
            r_caps: k12(reg::CAPS),
            r_ctrl: k12(reg::CTRL),
            r_status: k12(reg::STATUS),
            r_scratch: k12(reg::SCRATCH),
            r_cycles: k12(reg::CYCLES),
            r_warm_state: k12(reg::WARM_STATE),
            r_warm_seq: k12(reg::WARM_SEQ),
            r_warm_log_tail: k12(reg::WARM_LOG_TAIL),
            r_nv_region_size: k12(reg::NV_REGION_SIZE),
            r_nv_log_size: k12(reg::NV_LOG_SIZE),
            r_nv_region_a: k12(reg::NV_REGION_A_BASE),
            r_nv_region_b: k12(reg::NV_REGION_B_BASE),
            r_nv_log_base: k12(reg::NV_LOG_BASE),
            r_nv_data_base: k12(reg::NV_DATA_BASE),
            r_nv_data_size: k12(reg::NV_DATA_SIZE),
            r_dq_base_lo: k12(reg::DQ_BASE_LO),
            r_dq_base_hi: k12(reg::DQ_BASE_HI),
            r_dq_size_log2: k12(reg::DQ_SIZE_LOG2),
            r_dq_tail: k12(reg::DQ_TAIL),
            r_dq_head: k12(reg::DQ_HEAD),
            r_cq_base_lo: k12(reg::CQ_BASE_LO),
            r_cq_base_hi: k12(reg::CQ_BASE_HI),
            r_cq_size_log2: k12(reg::CQ_SIZE_LOG2),
            r_cq_head: k12(reg::CQ_HEAD),
            r_cq_tail: k12(reg::CQ_TAIL),
            r_irq_status: k12(reg::IRQ_STATUS),
            r_irq_mask: k12(reg::IRQ_MASK),
            r_ops_ok: k12(reg::OPS_OK),
            r_ops_failed: k12(reg::OPS_FAILED),
            r_limits: k12(reg::LIMITS),
            r_pt_index: k12(reg::PT_INDEX),
            r_pt_key_tag: k12(reg::PT_KEY_TAG),
            r_pt_base: k12(reg::PT_BASE),
            r_pt_len: k12(reg::PT_LEN),
            r_pt_perm: k12(reg::PT_PERM),
            r_pt_commit: k12(reg::PT_COMMIT),
        }
    }
}

impl Logic for LiteController {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            phase,
            ret,
            mv_ret,
            crc_ret,
            ctrl,
            shadow_ok,
            cycles,
            dq_base,
            dq_log2,
            dq_tail,
            dq_head,
            cq_base,
            cq_log2,
            cq_head,
            cq_tail,
            ops_ok,
            ops_failed,
            ring_error,
            ovf_pending,
            ovf_tail,
            boot_done,
            pt_index,
            pt_tag,
            pt_base,
            pt_len,
            pt_perm,
            pt_valid,
            act,
            nslot,
            nseq_lo,
            result,
            slot,
            store,
            have,
            sb_ok,
            newer,
            region,
            tried_alt,
            opcode,
            flags,
            tag,
            key,
            host,
            off,
            len,
            xcrc,
            e_valid,
            sum_a,
            sum_b,
            phys,
            status,
            res_crc,
            info,
            desc_index,
            is_desc,
            widx,
            m_write,
            m_addr,
            rdata,
            mv_src,
            mv_dst,
            mv_left,
            mv_has_dst,
            dst_word,
            dst_strb,
            crc_s,
            crc_idx
        );
        clock!(self, clock, axil, irq_unit);
        self.pt_eng.read_clock.next = self.clock.val();
        self.pt_eng.write_clock.next = self.clock.val();
        self.pt_csr.read_clock.next = self.clock.val();
        self.pt_csr.write_clock.next = self.clock.val();
        self.axil.reset.next = self.reset.val();
        self.irq_unit.reset.next = self.reset.val();
        AxiLiteTarget::link(&mut self.csr, &mut self.axil.axi);
        self.cycles.d.next = self.cycles.q.val() + 1;
        self.irq.next = self.irq_unit.irq.val();
        self.active.next = bit_cast::<2, 1>(self.act.q.val().into());
        self.error.next = self.irq_unit.status.val().get_bit(1);
        self.irq_set.next = 0.into();
        self.irq_clear.next = 0.into();
        self.irq_unit.mask_write.next = false;
        self.irq_unit.mask_data.next = self.axil.wr_data.val().get_bits::<3>(0);

        // ---- CRC-32C, one byte per cycle (8-bit XOR matrix) ----
        self.crc_val.next = !self.crc_s.q.val();
        self.crc_step.next = false;

        // ---- decoded descriptor, entry, rings ----
        self.f_check.next = self.flags.q.val().get_bit(2);
        self.f_alt.next = self.flags.q.val().get_bit(3);
        self.f_commit.next = self.flags.q.val().get_bit(4);
        self.f_irq.next = self.flags.q.val().get_bit(5);
        // The entry straight from the engine's table copy, addressed by the
        // key (held for the whole descriptor); a PT_COMMIT to that entry
        // during the checks starts them again (below).
        self.e_tag.next = self.pt_eng.read_data.val().get_bits::<28>(0);
        self.e_base.next = self.pt_eng.read_data.val().get_bits::<32>(28);
        self.e_len.next = self.pt_eng.read_data.val().get_bits::<32>(60);
        self.e_perm.next = self.pt_eng.read_data.val().get_bits::<8>(92);
        self.is_write.next = self.opcode.q.val() == 1;
        self.is_flip.next = self.opcode.q.val() == 5;
        // WARM always; WRITE needs WRITE (and COMMIT with the flag); READ and
        // VALIDATE need READ; FLIP needs COMMIT.
        self.need.next = 32.into();
        if self.is_write.val() {
            self.need.next = self.need.val() | 4;
            if self.f_commit.val() {
                self.need.next = self.need.val() | 8;
            }
        } else if self.is_flip.val() {
            self.need.next = self.need.val() | 8;
        } else {
            self.need.next = self.need.val() | 2;
        }
        self.dq_eff.next = self.dq_log2.q.val();
        if self.dq_log2.q.val() > self.k_ring_max.val() {
            self.dq_eff.next = self.k_ring_max.val();
        }
        self.cq_eff.next = self.cq_log2.q.val();
        if self.cq_log2.q.val() > self.k_ring_max.val() {
            self.cq_eff.next = self.k_ring_max.val();
        }
        self.dq_mask.next = (bit_cast::<16, 1>(true.into()) << self.dq_eff.val()) - 1;
        self.cq_mask.next = (bit_cast::<16, 1>(true.into()) << self.cq_eff.val()) - 1;
        self.cq_room.next = bit_cast::<17, 16>(self.cq_head.q.val() - self.cq_tail.q.val())
            < (bit_cast::<17, 1>(true.into()) << self.cq_eff.val());

        // ---- superblock words of a commit (the alternate region becomes
        // active with the operation's length and CRC) ----
        // The sequencer's copy is read at `widx` (the boot scan's region
        // checks read the region's word: 3 for A, 4 for B).
        self.sb_eng.read_clock.next = self.clock.val();
        self.sb_eng.write_clock.next = self.clock.val();
        self.sb_csr.read_clock.next = self.clock.val();
        self.sb_csr.write_clock.next = self.clock.val();
        self.sb_eng.read_address.next = self.widx.q.val();
        if (self.phase.q.val() == Phase::BootRegionRead) | (self.phase.q.val() == Phase::BootRegion)
        {
            self.sb_eng.read_address.next = 3.into();
            if self.region.q.val() {
                self.sb_eng.read_address.next = 4.into();
            }
        }
        self.sb_eng.write_address.next = self.widx.q.val();
        self.sb_eng.write_enable.next = false;
        self.sb_eng.write_data.next = self.rdata.q.val();
        self.nseq.next = self.sb_eng.read_data.val() + 1;
        self.cur_len.next = self.sb_eng.read_data.val().get_bits::<32>(0);
        self.cur_crc.next = self.sb_eng.read_data.val().get_bits::<32>(32);
        // Words 0 and 2 are constants but for the active region, 1 is the
        // next sequence number, the new active region's word gets the
        // operation's length and CRC, 7 the CRC; the rest stay as they are.
        self.sb_word.next = self.sb_eng.read_data.val();
        if self.widx.q.val() == 0 {
            self.sb_word.next = self.k_magic.val();
        }
        if self.widx.q.val() == 1 {
            self.sb_word.next = self.nseq.val();
        }
        if self.widx.q.val() == 2 {
            self.sb_word.next =
                bit_cast::<64, 1>(self.region.q.val().into()) | bit_cast::<64, 16>(256.into());
        }
        if ((self.widx.q.val() == 3) & !self.region.q.val())
            | ((self.widx.q.val() == 4) & self.region.q.val())
        {
            self.sb_word.next = bit_cast::<64, 32>(self.info.q.val())
                | (bit_cast::<64, 32>(self.res_crc.q.val()) << 32);
        }
        if self.widx.q.val() == 7 {
            self.sb_word.next = bit_cast::<64, 32>(self.crc_val.val());
        }
        // CrcByte folds a word from where it stands: a superblock word being
        // read (boot scan) or composed (commit), byte `crc_idx`.
        self.crc_src.next = self.sb_word.val();
        if self.crc_ret.q.val() == Phase::BootSlot {
            self.crc_src.next = self.rdata.q.val();
        }
        self.crc_sel.next = self.crc_src.val() >> (bit_cast::<64, 3>(self.crc_idx.q.val()) << 3);
        self.crc_byte.next = self.crc_sel.val().get_bits::<8>(0);

        // ---- completion words ----
        self.cq_pass.next = self.cq_head.q.val() >> self.cq_eff.val();
        self.cpl_w0.next = bit_cast::<64, 16>(self.tag.q.val())
            | (bit_cast::<64, 8>(self.status.q.val()) << 16)
            | (bit_cast::<64, 8>(self.opcode.q.val()) << 24)
            | (bit_cast::<64, 32>(self.res_crc.q.val()) << 32);
        self.cpl_w1.next = bit_cast::<64, 32>(self.info.q.val())
            | (bit_cast::<64, 16>(self.desc_index.q.val()) << 32)
            | (bit_cast::<64, 1>((!self.cq_pass.val().get_bit(0)).into()) << 63);

        // ---- CSR reads: an OR of the selected registers (the addresses are
        // distinct), not a priority chain: fewer LUTs ----
        self.tier_state.next = bit_cast::<32, 2>(self.result.q.val())
            | (bit_cast::<32, 1>(self.act.q.val().into()) << 4);
        self.sb_csr.read_address.next =
            bit_cast::<3, 2>(self.axil.rd_addr.val().get_bits::<2>(3)) + 2;
        if self.axil.rd_addr.val() == self.r_warm_seq.val() {
            self.sb_csr.read_address.next = 1.into();
        }
        self.rd_data.next = 0.into();
        if self.axil.rd_addr.val() == self.r_id.val() {
            self.rd_data.next = self.rd_data.val() | self.k_id.val();
        }
        if self.axil.rd_addr.val() == self.r_version.val() {
            self.rd_data.next = self.rd_data.val() | self.k_version.val();
        }
        if self.axil.rd_addr.val() == self.r_caps.val() {
            self.rd_data.next = self.rd_data.val() | self.k_caps.val();
        }
        if self.axil.rd_addr.val() == self.r_limits.val() {
            self.rd_data.next = self.rd_data.val() | self.k_limits.val();
        }
        if self.axil.rd_addr.val() == self.r_ctrl.val() {
            self.rd_data.next = self.rd_data.val() | bit_cast::<32, 2>(self.ctrl.q.val());
        }
        if self.axil.rd_addr.val() == self.r_status.val() {
            self.rd_data.next = self.rd_data.val()
                | bit_cast::<32, 1>(self.boot_done.q.val().into())
                | (bit_cast::<32, 1>((self.phase.q.val() != Phase::Idle).into()) << 1)
                | (bit_cast::<32, 1>(self.ring_error.q.val().into()) << 2);
        }
        if ((self.axil.rd_addr.val() == self.r_scratch.val()) & self.shadow_ok.q.val().get_bit(0))
            | ((self.axil.rd_addr.val() == self.r_dq_base_lo.val())
                & self.shadow_ok.q.val().get_bit(1))
            | ((self.axil.rd_addr.val() == self.r_dq_base_hi.val())
                & self.shadow_ok.q.val().get_bit(2))
            | ((self.axil.rd_addr.val() == self.r_cq_base_lo.val())
                & self.shadow_ok.q.val().get_bit(3))
            | ((self.axil.rd_addr.val() == self.r_cq_base_hi.val())
                & self.shadow_ok.q.val().get_bit(4))
        {
            self.rd_data.next = self.rd_data.val() | self.shadow.read_data.val();
        }
        if self.axil.rd_addr.val() == self.r_cycles.val() {
            self.rd_data.next = self.rd_data.val() | self.cycles.q.val();
        }
        if self.axil.rd_addr.val() == self.r_warm_state.val() {
            self.rd_data.next = self.rd_data.val() | self.tier_state.val();
        }
        // WARM_SEQ (word 1, low half), WARM_A_LEN/CRC (word 3), B (word 4),
        // LOG_HEAD/TAIL (word 5), from the superblock copy: the address
        // picks the word, bit 2 the half.
        if (self.axil.rd_addr.val() >= self.r_warm_seq.val())
            & (self.axil.rd_addr.val() <= self.r_warm_log_tail.val())
        {
            if self.axil.rd_addr.val().get_bit(2)
                & (self.axil.rd_addr.val() != self.r_warm_seq.val())
            {
                self.rd_data.next =
                    self.rd_data.val() | self.sb_csr.read_data.val().get_bits::<32>(32);
            } else {
                self.rd_data.next =
                    self.rd_data.val() | self.sb_csr.read_data.val().get_bits::<32>(0);
            }
        }
        if self.axil.rd_addr.val() == self.r_nv_region_size.val() {
            self.rd_data.next = self.rd_data.val() | self.k_geom.val().get_bits::<32>(0);
        }
        if self.axil.rd_addr.val() == self.r_nv_log_size.val() {
            self.rd_data.next = self.rd_data.val() | self.k_geom.val().get_bits::<32>(32);
        }
        if self.axil.rd_addr.val() == self.r_nv_region_a.val() {
            self.rd_data.next = self.rd_data.val() | self.k_geom.val().get_bits::<32>(64);
        }
        if self.axil.rd_addr.val() == self.r_nv_region_b.val() {
            self.rd_data.next = self.rd_data.val() | self.k_geom.val().get_bits::<32>(96);
        }
        if self.axil.rd_addr.val() == self.r_nv_log_base.val() {
            self.rd_data.next = self.rd_data.val() | self.k_geom.val().get_bits::<32>(128);
        }
        if self.axil.rd_addr.val() == self.r_nv_data_base.val() {
            self.rd_data.next = self.rd_data.val() | self.k_geom.val().get_bits::<32>(160);
        }
        if self.axil.rd_addr.val() == self.r_nv_data_size.val() {
            self.rd_data.next = self.rd_data.val() | self.k_geom.val().get_bits::<32>(192);
        }
        if self.axil.rd_addr.val() == self.r_dq_size_log2.val() {
            self.rd_data.next = self.rd_data.val() | bit_cast::<32, 4>(self.dq_log2.q.val());
        }
        if self.axil.rd_addr.val() == self.r_dq_tail.val() {
            self.rd_data.next = self.rd_data.val() | bit_cast::<32, 16>(self.dq_tail.q.val());
        }
        if self.axil.rd_addr.val() == self.r_dq_head.val() {
            self.rd_data.next = self.rd_data.val() | bit_cast::<32, 16>(self.dq_head.q.val());
        }
        if self.axil.rd_addr.val() == self.r_cq_size_log2.val() {
            self.rd_data.next = self.rd_data.val() | bit_cast::<32, 4>(self.cq_log2.q.val());
        }
        if self.axil.rd_addr.val() == self.r_cq_head.val() {
            self.rd_data.next = self.rd_data.val() | bit_cast::<32, 16>(self.cq_head.q.val());
        }
        if self.axil.rd_addr.val() == self.r_cq_tail.val() {
            self.rd_data.next = self.rd_data.val() | bit_cast::<32, 16>(self.cq_tail.q.val());
        }
        if self.axil.rd_addr.val() == self.r_irq_status.val() {
            self.rd_data.next = self.rd_data.val() | bit_cast::<32, 3>(self.irq_unit.status.val());
        }
        if self.axil.rd_addr.val() == self.r_irq_mask.val() {
            self.rd_data.next = self.rd_data.val() | bit_cast::<32, 3>(self.irq_unit.mask.val());
        }
        if self.axil.rd_addr.val() == self.r_ops_ok.val() {
            self.rd_data.next = self.rd_data.val() | self.ops_ok.q.val();
        }
        if self.axil.rd_addr.val() == self.r_ops_failed.val() {
            self.rd_data.next = self.rd_data.val() | self.ops_failed.q.val();
        }
        if self.axil.rd_addr.val() == self.r_pt_index.val() {
            self.rd_data.next = self.rd_data.val() | bit_cast::<32, 4>(self.pt_index.q.val());
        }
        // An entry without VALID reads back as zero.
        if self.pt_valid.q.val().get_bit(self.pt_index.q.val().index()) {
            if self.axil.rd_addr.val() == self.r_pt_base.val() {
                self.rd_data.next =
                    self.rd_data.val() | self.pt_csr.read_data.val().get_bits::<32>(28);
            }
            if self.axil.rd_addr.val() == self.r_pt_len.val() {
                self.rd_data.next =
                    self.rd_data.val() | self.pt_csr.read_data.val().get_bits::<32>(60);
            }
            if self.axil.rd_addr.val() == self.r_pt_perm.val() {
                self.rd_data.next = self.rd_data.val()
                    | bit_cast::<32, 8>(self.pt_csr.read_data.val().get_bits::<8>(92));
            }
        }
        // Sampled two cycles after the strobe, the address held meanwhile.
        self.axil.rd_data.next = self.rd_data.val();

        // ---- CSR writes ----
        self.pt_eng.read_address.next = self.key.q.val().get_bits::<4>(0);
        self.pt_csr.read_address.next = self.pt_index.q.val();
        self.pt_eng.write_enable.next = false;
        self.pt_csr.write_enable.next = false;
        self.pt_eng.write_address.next = self.pt_index.q.val();
        self.pt_csr.write_address.next = self.pt_index.q.val();
        self.pt_eng.write_data.next = (bit_cast::<100, 8>(self.pt_perm.q.val()) << 92)
            | (bit_cast::<100, 32>(self.pt_len.q.val()) << 60)
            | (bit_cast::<100, 32>(self.pt_base.q.val()) << 28)
            | bit_cast::<100, 28>(self.pt_tag.q.val());
        self.pt_csr.write_data.next = self.pt_eng.write_data.val();
        self.shadow.read_clock.next = self.clock.val();
        self.shadow.write_clock.next = self.clock.val();
        self.shadow.read_address.next = self.axil.rd_addr.val().get_bits::<6>(2);
        self.shadow.write_address.next = self.axil.wr_addr.val().get_bits::<6>(2);
        self.shadow.write_data.next = self.axil.wr_data.val();
        // Aligned offsets below 0x100 only: a misaligned write (SCRATCH + 1)
        // names no register and must not land on the one it falls in.
        self.shadow.write_enable.next = self.axil.wr.val()
            & !self.axil.wr_addr.val().get_bits::<4>(8).any()
            & !self.axil.wr_addr.val().get_bits::<2>(0).any();
        if self.axil.wr.val() {
            if self.axil.wr_addr.val() == self.r_scratch.val() {
                self.shadow_ok.d.next = self.shadow_ok.q.val() | 1;
            }
            if self.axil.wr_addr.val() == self.r_dq_base_lo.val() {
                self.shadow_ok.d.next = self.shadow_ok.q.val() | 2;
            }
            if self.axil.wr_addr.val() == self.r_dq_base_hi.val() {
                self.shadow_ok.d.next = self.shadow_ok.q.val() | 4;
            }
            if self.axil.wr_addr.val() == self.r_cq_base_lo.val() {
                self.shadow_ok.d.next = self.shadow_ok.q.val() | 8;
            }
            if self.axil.wr_addr.val() == self.r_cq_base_hi.val() {
                self.shadow_ok.d.next = self.shadow_ok.q.val() | 16;
            }
            if self.axil.wr_addr.val() == self.r_ctrl.val() {
                self.ctrl.d.next = self.axil.wr_data.val().get_bits::<2>(0);
            } else if self.axil.wr_addr.val() == self.r_dq_base_lo.val() {
                self.dq_base.d.next = self.axil.wr_data.val().get_bits::<14>(0);
            } else if self.axil.wr_addr.val() == self.r_dq_size_log2.val() {
                self.dq_log2.d.next = self.axil.wr_data.val().get_bits::<4>(0);
            } else if self.axil.wr_addr.val() == self.r_dq_tail.val() {
                // A doorbell more than the ring ahead of the head is refused.
                if bit_cast::<17, 16>(
                    self.axil.wr_data.val().get_bits::<16>(0) - self.dq_head.q.val(),
                ) > (bit_cast::<17, 1>(true.into()) << self.dq_eff.val())
                {
                    self.ring_error.d.next = true;
                    self.ovf_pending.d.next = true;
                    self.ovf_tail.d.next = self.axil.wr_data.val().get_bits::<16>(0);
                } else {
                    self.dq_tail.d.next = self.axil.wr_data.val().get_bits::<16>(0);
                }
            } else if self.axil.wr_addr.val() == self.r_cq_base_lo.val() {
                self.cq_base.d.next = self.axil.wr_data.val().get_bits::<14>(0);
            } else if self.axil.wr_addr.val() == self.r_cq_size_log2.val() {
                self.cq_log2.d.next = self.axil.wr_data.val().get_bits::<4>(0);
            } else if self.axil.wr_addr.val() == self.r_cq_tail.val() {
                self.cq_tail.d.next = self.axil.wr_data.val().get_bits::<16>(0);
            } else if self.axil.wr_addr.val() == self.r_irq_status.val() {
                self.irq_clear.next = self.axil.wr_data.val().get_bits::<3>(0);
            } else if self.axil.wr_addr.val() == self.r_irq_mask.val() {
                self.irq_unit.mask_write.next = true;
            } else if self.axil.wr_addr.val() == self.r_pt_index.val() {
                self.pt_index.d.next = self.axil.wr_data.val().get_bits::<4>(0);
            } else if self.axil.wr_addr.val() == self.r_pt_key_tag.val() {
                self.pt_tag.d.next = self.axil.wr_data.val().get_bits::<28>(4);
            } else if self.axil.wr_addr.val() == self.r_pt_base.val() {
                self.pt_base.d.next = self.axil.wr_data.val();
            } else if self.axil.wr_addr.val() == self.r_pt_len.val() {
                self.pt_len.d.next = self.axil.wr_data.val();
            } else if self.axil.wr_addr.val() == self.r_pt_perm.val() {
                self.pt_perm.d.next = self.axil.wr_data.val().get_bits::<8>(0);
            } else if self.axil.wr_addr.val() == self.r_pt_commit.val() {
                self.pt_eng.write_enable.next = true;
                self.pt_csr.write_enable.next = true;
                self.pt_valid.d.next = self.pt_valid.q.val().replace_bit(
                    self.pt_index.q.val().index(),
                    self.pt_perm.q.val().get_bit(0),
                );
            }
        }

        // ---- memory port: one command in flight ----
        self.mem.cmd_valid.next = self.phase.q.val() == Phase::MemCmd;
        self.mem.cmd_write.next = self.m_write.q.val();
        self.mem.cmd_addr.next = self.m_addr.q.val();
        // Write data straight from its source, stable while the command
        // waits: the destination word, a superblock word, a completion word.
        self.mem.cmd_wdata.next = self.dst_word.q.val();
        self.mem.cmd_wstrb.next = self.dst_strb.q.val();
        if self.ret.q.val() == Phase::SbNext {
            self.mem.cmd_wdata.next = self.sb_word.val();
            self.mem.cmd_wstrb.next = 0xFF.into();
        }
        if self.ret.q.val() == Phase::CplNext {
            self.mem.cmd_wdata.next = self.cpl_w0.val();
            if self.widx.q.val().get_bit(0) {
                self.mem.cmd_wdata.next = self.cpl_w1.val();
            }
            self.mem.cmd_wstrb.next = 0xFF.into();
        }

        // ---- mover: the source byte, next addresses (host addresses wrap
        // in the window; tier addresses never reach its end) ----
        self.src_word.next =
            self.rdata.q.val() >> (bit_cast::<64, 3>(self.mv_src.q.val().get_bits::<3>(0)) << 3);
        self.src_byte.next = self.src_word.val().get_bits::<8>(0);
        self.mv_src_next.next = ((self.mv_src.q.val() + 1) & self.k_wrap.val())
            | (self.mv_src.q.val() & self.k_tier.val());
        self.mv_dst_next.next = ((self.mv_dst.q.val() + 1) & self.k_wrap.val())
            | (self.mv_dst.q.val() & self.k_tier.val());
        self.dst_shift.next = bit_cast::<64, 3>(self.mv_dst.q.val().get_bits::<3>(0)) << 3;
        if self.phase.q.val() == Phase::MvByte {
            self.crc_byte.next = self.src_byte.val();
        }
        self.crc_in.next =
            (bit_cast::<40, 32>(self.crc_s.q.val()) << 8) | bit_cast::<40, 8>(self.crc_byte.val());
        self.crc_next.next = 0.into();
        for i in 0..32 {
            self.crc_next.next = self.crc_next.val().replace_bit(
                i,
                (self.m8.val().get_bits::<40>(i * 40) & self.crc_in.val()).xor(),
            );
        }

        // ---- the sequencer ----
        match self.phase.q.val() {
            // Memory access: issue, then wait for the response.
            Phase::MemCmd => {
                if self.mem.cmd_ready.val() {
                    self.phase.d.next = Phase::MemWait;
                }
            }
            Phase::MemWait => {
                if self.mem.rsp_valid.val() {
                    if !self.mem.rsp_write.val() {
                        self.rdata.d.next = self.mem.rsp_data.val();
                    }
                    self.phase.d.next = self.ret.q.val();
                }
            }
            // Fold the 8 bytes of `crc_src` into the CRC.
            Phase::CrcByte => {
                self.crc_step.next = true;
                self.crc_idx.d.next = self.crc_idx.q.val() + 1;
                if self.crc_idx.q.val() == 7 {
                    self.phase.d.next = self.crc_ret.q.val();
                }
            }

            // ---- boot scan: slot 0 into the tier state, slot 1 checked
            // and, if newer, read again into the tier state ----
            Phase::BootSlot => {
                self.m_write.d.next = false;
                self.m_addr.d.next = self.k_tier.val()
                    | (bit_cast::<15, 1>(self.slot.q.val().into()) << 6)
                    | (bit_cast::<15, 3>(self.widx.q.val()) << 3);
                if self.widx.q.val() == 0 {
                    self.crc_s.d.next = 0xFFFF_FFFF_u64.into();
                    self.sb_ok.d.next = true;
                }
                self.ret.d.next = Phase::BootWord;
                self.phase.d.next = Phase::MemCmd;
            }
            Phase::BootWord => {
                self.crc_ret.d.next = Phase::BootSlot;
                self.phase.d.next = Phase::CrcByte;
                self.widx.d.next = self.widx.q.val() + 1;
                if (self.widx.q.val() == 0) & (self.rdata.q.val() != self.k_magic.val()) {
                    self.sb_ok.d.next = false;
                }
                // Slot 0 is stored as it is read; slot 1 is compared with
                // it (the stored word 1, read at `widx`) and stored if newer.
                self.sb_eng.write_enable.next = self.store.q.val();
                if self.widx.q.val() == 1 {
                    self.newer.d.next = self.rdata.q.val() > self.sb_eng.read_data.val();
                }
                if self.widx.q.val() == 2 {
                    if self.rdata.q.val().get_bits::<8>(8) != 1 {
                        self.sb_ok.d.next = false;
                    }
                    if self.store.q.val() {
                        self.act.d.next = self.rdata.q.val().get_bit(0);
                    }
                }
                if self.widx.q.val() == 7 {
                    if self.rdata.q.val() != bit_cast::<64, 32>(self.crc_val.val()) {
                        self.sb_ok.d.next = false;
                    }
                    self.phase.d.next = Phase::BootSlotEnd;
                }
            }
            Phase::BootSlotEnd => {
                self.widx.d.next = 0.into();
                if !self.slot.q.val() {
                    self.have.d.next = self.sb_ok.q.val();
                    self.slot.d.next = true;
                    self.store.d.next = false;
                    self.phase.d.next = Phase::BootSlot;
                } else if !self.store.q.val()
                    & self.sb_ok.q.val()
                    & (!self.have.q.val() | self.newer.q.val())
                {
                    self.store.d.next = true;
                    self.phase.d.next = Phase::BootSlot;
                } else {
                    self.have.d.next = self.have.q.val() | self.store.q.val();
                    self.phase.d.next = Phase::BootPick;
                }
            }
            Phase::BootPick => {
                self.widx.d.next = 0.into();
                if !self.have.q.val() {
                    // No valid superblock: a blank tier, all zero.
                    self.act.d.next = false;
                    self.result.d.next = 0.into();
                    self.phase.d.next = Phase::BootClear;
                } else {
                    self.region.d.next = self.act.q.val();
                    self.tried_alt.d.next = false;
                    self.phase.d.next = Phase::BootRegionRead;
                }
            }
            Phase::BootClear => {
                self.sb_eng.write_enable.next = true;
                self.sb_eng.write_data.next = 0.into();
                self.widx.d.next = self.widx.q.val() + 1;
                if self.widx.q.val() == 7 {
                    self.boot_done.d.next = true;
                    self.irq_set.next = 4.into();
                    self.phase.d.next = Phase::Idle;
                }
            }
            // The region's word (length, CRC) is read a cycle ahead.
            Phase::BootRegionRead => {
                self.phase.d.next = Phase::BootRegion;
            }
            Phase::BootRegion => {
                // CRC of the region's committed image; a length beyond the
                // region fails without reading.
                self.mv_src.d.next = self.k_tier.val() | bit_cast::<15, 14>(self.k_region_a.val());
                if self.region.q.val() {
                    self.mv_src.d.next =
                        self.k_tier.val() | bit_cast::<15, 14>(self.k_region_b.val());
                }
                self.info.d.next = self.cur_len.val();
                self.res_crc.d.next = self.cur_crc.val();
                self.mv_left.d.next = self.cur_len.val().get_bits::<21>(0);
                self.mv_has_dst.d.next = false;
                self.mv_ret.d.next = Phase::BootJudge;
                self.phase.d.next = Phase::MvStart;
                if bit_cast::<34, 32>(self.cur_len.val()) > self.k_region_size.val() {
                    self.phase.d.next = Phase::BootJudge;
                }
            }
            Phase::BootJudge => {
                if (bit_cast::<34, 32>(self.info.q.val()) <= self.k_region_size.val())
                    & (self.crc_val.val() == self.res_crc.q.val())
                {
                    self.act.d.next = self.region.q.val();
                    self.result.d.next = 1.into();
                    if self.tried_alt.q.val() {
                        self.result.d.next = 2.into();
                    }
                    self.boot_done.d.next = true;
                    self.irq_set.next = 4.into();
                    self.phase.d.next = Phase::Idle;
                } else if !self.tried_alt.q.val() {
                    self.tried_alt.d.next = true;
                    self.region.d.next = !self.region.q.val();
                    self.phase.d.next = Phase::BootRegionRead;
                } else {
                    self.result.d.next = 3.into();
                    self.boot_done.d.next = true;
                    self.irq_set.next = 4.into();
                    self.phase.d.next = Phase::Idle;
                }
            }

            // ---- descriptors ----
            Phase::Idle => {
                self.widx.d.next = 0.into();
                self.status.d.next = 0.into();
                self.res_crc.d.next = 0.into();
                self.info.d.next = 0.into();
                if self.cq_room.val() {
                    if self.ovf_pending.q.val() {
                        self.ovf_pending.d.next = false;
                        self.tag.d.next = 0xFFFF_u64.into();
                        self.status.d.next = 9.into();
                        self.opcode.d.next = 0.into();
                        self.flags.d.next = 0.into();
                        self.desc_index.d.next = self.ovf_tail.q.val();
                        self.is_desc.d.next = false;
                        self.phase.d.next = Phase::CplWrite;
                    } else if self.ctrl.q.val().get_bit(0)
                        & (self.dq_head.q.val() != self.dq_tail.q.val())
                    {
                        self.desc_index.d.next = self.dq_head.q.val();
                        self.is_desc.d.next = true;
                        self.phase.d.next = Phase::Fetch;
                    }
                }
            }
            Phase::Fetch => {
                self.m_write.d.next = false;
                self.m_addr.d.next = bit_cast::<15, 14>(
                    self.dq_base.q.val()
                        + (bit_cast::<14, 16>(self.dq_head.q.val() & self.dq_mask.val()) << 5)
                        + (bit_cast::<14, 3>(self.widx.q.val()) << 3),
                );
                self.ret.d.next = Phase::FetchWord;
                self.phase.d.next = Phase::MemCmd;
            }
            Phase::FetchWord => {
                self.widx.d.next = self.widx.q.val() + 1;
                self.phase.d.next = Phase::Fetch;
                if self.widx.q.val() == 0 {
                    self.opcode.d.next = self.rdata.q.val().get_bits::<8>(0);
                    self.flags.d.next = self.rdata.q.val().get_bits::<8>(8);
                    self.tag.d.next = self.rdata.q.val().get_bits::<16>(16);
                    self.key.d.next = self.rdata.q.val().get_bits::<32>(32);
                }
                if self.widx.q.val() == 1 {
                    self.host.d.next = self.rdata.q.val().get_bits::<14>(0);
                }
                if self.widx.q.val() == 2 {
                    self.off.d.next = self.rdata.q.val().get_bits::<32>(0);
                    self.len.d.next = self.rdata.q.val().get_bits::<32>(32);
                }
                if self.widx.q.val() == 3 {
                    self.xcrc.d.next = self.rdata.q.val().get_bits::<32>(32);
                    // Every way to the completion starts at its word 0.
                    self.widx.d.next = 0.into();
                    self.phase.d.next = Phase::PtCap;
                    // BAD_OPCODE: undefined opcode or flag, and what this
                    // controller lacks (COPY, APPEND, LOG_TRIM, the cold tier).
                    if (self.opcode.q.val() > 7)
                        | (self.opcode.q.val() == 4)
                        | (self.opcode.q.val() == 6)
                        | (self.opcode.q.val() == 7)
                        | (self.flags.q.val() & 0xC3).any()
                    {
                        self.status.d.next = 1.into();
                        self.phase.d.next = Phase::CplWrite;
                    } else if self.opcode.q.val() == 0 {
                        self.phase.d.next = Phase::CplWrite;
                    }
                }
            }
            Phase::PtCap => {
                // The engine's table copy is addressed by the key.
                self.e_valid.d.next = self
                    .pt_valid
                    .q
                    .val()
                    .get_bit(self.key.q.val().get_bits::<4>(0).index());
                self.phase.d.next = Phase::CheckKey;
            }
            Phase::CheckKey => {
                self.sum_a.d.next =
                    bit_cast::<34, 32>(self.off.q.val()) + bit_cast::<34, 32>(self.len.q.val());
                self.sum_b.d.next =
                    bit_cast::<34, 32>(self.e_base.val()) + bit_cast::<34, 32>(self.off.q.val());
                if !self.e_valid.q.val()
                    | !self.e_perm.val().get_bit(0)
                    | (self.e_tag.val() != self.key.q.val().get_bits::<28>(4))
                {
                    self.status.d.next = 5.into();
                    self.phase.d.next = Phase::CplWrite;
                } else if (self.e_perm.val() & self.need.val()) != self.need.val() {
                    self.status.d.next = 6.into();
                    self.phase.d.next = Phase::CplWrite;
                } else {
                    self.phase.d.next = Phase::CheckPerm;
                }
            }
            Phase::CheckPerm => {
                // sum_a = off + len, sum_b = base + off (rel).
                self.phase.d.next = Phase::CheckRange;
                if self.is_write.val()
                    & self.f_commit.val()
                    & (!self.e_perm.val().get_bit(7) | self.sum_b.q.val().any())
                {
                    self.status.d.next = 11.into();
                    self.phase.d.next = Phase::CplWrite;
                } else if self.is_flip.val() {
                    if bit_cast::<34, 32>(self.len.q.val()) > self.k_region_size.val() {
                        self.status.d.next = 2.into();
                        self.phase.d.next = Phase::CplWrite;
                    } else {
                        self.phase.d.next = Phase::Exec;
                    }
                } else if (self.len.q.val() == 0) | (self.len.q.val() > 0x10_0000) {
                    self.status.d.next = 2.into();
                    self.phase.d.next = Phase::CplWrite;
                } else if self.off.q.val().get_bits::<3>(0).any() {
                    self.status.d.next = 3.into();
                    self.phase.d.next = Phase::CplWrite;
                }
            }
            Phase::CheckRange => {
                self.sum_b.d.next = self.sum_b.q.val() + bit_cast::<34, 32>(self.len.q.val());
                self.phys.d.next = self.sum_b.q.val().get_bits::<14>(0);
                // Region-relative: WRITE to the alternate region, READ and
                // VALIDATE to the active one (alternate with ALT).
                self.region.d.next = self.act.q.val();
                if self.is_write.val() | self.f_alt.val() {
                    self.region.d.next = !self.act.q.val();
                }
                if self.sum_a.q.val() > bit_cast::<34, 32>(self.e_len.val()) {
                    self.status.d.next = 4.into();
                    self.phase.d.next = Phase::CplWrite;
                } else {
                    self.phase.d.next = Phase::CheckRange2;
                }
            }
            Phase::CheckRange2 => {
                // sum_b = rel + len
                self.phase.d.next = Phase::Exec;
                if self.e_perm.val().get_bit(7) {
                    if self.sum_b.q.val() > self.k_region_size.val() {
                        self.status.d.next = 4.into();
                        self.phase.d.next = Phase::CplWrite;
                    } else if self.region.q.val() {
                        self.phys.d.next = self.phys.q.val() + self.k_region_b.val();
                    } else {
                        self.phys.d.next = self.phys.q.val() + self.k_region_a.val();
                    }
                } else if self.sum_b.q.val() > self.k_total.val() {
                    self.status.d.next = 4.into();
                    self.phase.d.next = Phase::CplWrite;
                }
            }
            Phase::Exec => {
                self.mv_left.d.next = self.len.q.val().get_bits::<21>(0);
                self.mv_ret.d.next = Phase::ExecDone;
                self.phase.d.next = Phase::MvStart;
                self.mv_has_dst.d.next = self.opcode.q.val() != 3;
                if self.is_write.val() {
                    self.mv_src.d.next = bit_cast::<15, 14>(self.host.q.val());
                    self.mv_dst.d.next = self.k_tier.val() | bit_cast::<15, 14>(self.phys.q.val());
                } else {
                    self.mv_src.d.next = self.k_tier.val() | bit_cast::<15, 14>(self.phys.q.val());
                    self.mv_dst.d.next = bit_cast::<15, 14>(self.host.q.val());
                }
                if self.is_flip.val() {
                    // CRC of the alternate region [0, len).
                    self.region.d.next = !self.act.q.val();
                    self.mv_has_dst.d.next = false;
                    self.mv_src.d.next =
                        self.k_tier.val() | bit_cast::<15, 14>(self.k_region_a.val());
                    if !self.act.q.val() {
                        self.mv_src.d.next =
                            self.k_tier.val() | bit_cast::<15, 14>(self.k_region_b.val());
                    }
                }
            }
            Phase::ExecDone => {
                self.res_crc.d.next = self.crc_val.val();
                self.info.d.next = self.len.q.val();
                self.widx.d.next = 0.into();
                self.phase.d.next = Phase::CplWrite;
                if self.f_check.val() & (self.crc_val.val() != self.xcrc.q.val()) {
                    self.status.d.next = 7.into();
                    // FLIP's info is the new sequence: nothing committed.
                    if self.is_flip.val() {
                        self.info.d.next = 0.into();
                    }
                } else if self.is_flip.val() | (self.is_write.val() & self.f_commit.val()) {
                    // Commit: the superblock's CRC first, then its words.
                    self.crc_s.d.next = 0xFFFF_FFFF_u64.into();
                    self.phase.d.next = Phase::SbLoad;
                }
            }

            // ---- commit: superblock seq + 1 into slot (seq + 1) & 1, after
            // every data write was acknowledged ----
            Phase::SbLoad => {
                self.crc_ret.d.next = Phase::SbFolded;
                self.phase.d.next = Phase::CrcByte;
            }
            Phase::SbFolded => {
                if self.widx.q.val() == 1 {
                    self.nslot.d.next = self.nseq.val().get_bit(0);
                    self.nseq_lo.d.next = self.nseq.val().get_bits::<32>(0);
                }
                self.widx.d.next = self.widx.q.val() + 1;
                self.phase.d.next = Phase::SbLoad;
                if self.widx.q.val() == 6 {
                    self.widx.d.next = 0.into();
                    self.phase.d.next = Phase::SbWrite;
                }
            }
            Phase::SbWrite => {
                self.m_write.d.next = true;
                self.m_addr.d.next = self.k_tier.val()
                    | (bit_cast::<15, 1>(self.nslot.q.val().into()) << 6)
                    | (bit_cast::<15, 3>(self.widx.q.val()) << 3);
                self.ret.d.next = Phase::SbNext;
                self.phase.d.next = Phase::MemCmd;
            }
            Phase::SbNext => {
                // Durable in NV: the word is the tier's now.
                self.sb_eng.write_enable.next = true;
                self.sb_eng.write_data.next = self.sb_word.val();
                self.widx.d.next = self.widx.q.val() + 1;
                self.phase.d.next = Phase::SbWrite;
                if self.widx.q.val() == 7 {
                    self.act.d.next = self.region.q.val();
                    self.result.d.next = 1.into();
                    if self.is_flip.val() {
                        self.info.d.next = self.nseq_lo.q.val();
                    }
                    self.widx.d.next = 0.into();
                    self.phase.d.next = Phase::CplWrite;
                }
            }

            // ---- completion ----
            Phase::CplWrite => {
                self.m_write.d.next = true;
                self.m_addr.d.next = bit_cast::<15, 14>(
                    self.cq_base.q.val()
                        + (bit_cast::<14, 16>(self.cq_head.q.val() & self.cq_mask.val()) << 4)
                        + (bit_cast::<14, 3>(self.widx.q.val()) << 3),
                );
                self.ret.d.next = Phase::CplNext;
                self.phase.d.next = Phase::MemCmd;
            }
            Phase::CplNext => {
                self.widx.d.next = self.widx.q.val() + 1;
                self.phase.d.next = Phase::CplWrite;
                if self.widx.q.val() == 1 {
                    self.phase.d.next = Phase::CplDone;
                }
            }
            Phase::CplDone => {
                self.cq_head.d.next = self.cq_head.q.val() + 1;
                if self.is_desc.q.val() {
                    self.dq_head.d.next = self.dq_head.q.val() + 1;
                }
                if self.status.q.val() == 0 {
                    self.ops_ok.d.next = self.ops_ok.q.val() + 1;
                } else {
                    self.ops_failed.d.next = self.ops_failed.q.val() + 1;
                    self.irq_set.next = self.irq_set.val() | 2;
                }
                if self.f_irq.val() {
                    self.irq_set.next = self.irq_set.val() | 1;
                }
                self.phase.d.next = Phase::Idle;
            }

            // ---- the mover: a byte per cycle, a word read when the source
            // crosses into it, a word written (byte strobes) when the
            // destination leaves it or the transfer ends ----
            Phase::MvStart => {
                self.crc_s.d.next = 0xFFFF_FFFF_u64.into();
                self.dst_strb.d.next = 0.into();
                if !self.mv_left.q.val().any() {
                    self.phase.d.next = self.mv_ret.q.val();
                } else {
                    self.phase.d.next = Phase::MvLoad;
                }
            }
            Phase::MvLoad => {
                self.m_write.d.next = false;
                self.m_addr.d.next = (self.mv_src.q.val() >> 3) << 3;
                self.ret.d.next = Phase::MvByte;
                self.phase.d.next = Phase::MemCmd;
            }
            Phase::MvByte => {
                self.crc_step.next = true;
                self.mv_src.d.next = self.mv_src_next.val();
                self.mv_dst.d.next = self.mv_dst_next.val();
                self.mv_left.d.next = self.mv_left.q.val() - 1;
                self.dst_word.d.next = (self.dst_word.q.val()
                    & !(self.k_ff.val() << self.dst_shift.val()))
                    | (bit_cast::<64, 8>(self.src_byte.val()) << self.dst_shift.val());
                self.dst_strb.d.next = self.dst_strb.q.val()
                    | (bit_cast::<8, 1>(true.into()) << self.mv_dst.q.val().get_bits::<3>(0));
                if self.mv_has_dst.q.val()
                    & ((self.mv_dst.q.val().get_bits::<3>(0) == 7) | (self.mv_left.q.val() == 1))
                {
                    self.phase.d.next = Phase::MvStore;
                } else if self.mv_left.q.val() == 1 {
                    self.phase.d.next = self.mv_ret.q.val();
                } else if self.mv_src.q.val().get_bits::<3>(0) == 7 {
                    self.phase.d.next = Phase::MvLoad;
                }
            }
            Phase::MvStore => {
                self.m_write.d.next = true;
                // The word of the last byte placed (the address has moved on).
                self.m_addr.d.next = ((((self.mv_dst.q.val() - 1) & self.k_wrap.val())
                    | (self.mv_dst.q.val() & self.k_tier.val()))
                    >> 3)
                    << 3;
                self.ret.d.next = Phase::MvStored;
                self.phase.d.next = Phase::MemCmd;
            }
            Phase::MvStored => {
                self.dst_strb.d.next = 0.into();
                if !self.mv_left.q.val().any() {
                    self.phase.d.next = self.mv_ret.q.val();
                } else if self.mv_src.q.val().get_bits::<3>(0) == 0 {
                    self.phase.d.next = Phase::MvLoad;
                } else {
                    self.phase.d.next = Phase::MvByte;
                }
            }
        }
        if self.crc_step.val() {
            self.crc_s.d.next = self.crc_next.val();
        }
        self.sb_csr.write_address.next = self.sb_eng.write_address.val();
        self.sb_csr.write_data.next = self.sb_eng.write_data.val();
        self.sb_csr.write_enable.next = self.sb_eng.write_enable.val();
        // The entry changed under the checks: run them again on the new one.
        if self.axil.wr.val()
            & (self.axil.wr_addr.val() == self.r_pt_commit.val())
            & (self.pt_index.q.val() == self.key.q.val().get_bits::<4>(0))
            & ((self.phase.q.val() == Phase::PtCap)
                | (self.phase.q.val() == Phase::CheckKey)
                | (self.phase.q.val() == Phase::CheckPerm)
                | (self.phase.q.val() == Phase::CheckRange)
                | (self.phase.q.val() == Phase::CheckRange2))
        {
            self.status.d.next = 0.into();
            self.phase.d.next = Phase::PtCap;
        }

        // ---- interrupts (the rule is the unit's) ----
        self.irq_unit.raise.next = self.irq_set.val();
        self.irq_unit.clear.next = self.irq_clear.val();
        self.irq_unit.enable.next = self.ctrl.q.val().get_bit(1);

        if self.reset.val() {
            self.phase.d.next = Phase::BootSlot;
            self.ctrl.d.next = 0.into();
            self.shadow_ok.d.next = 0.into();
            self.dq_base.d.next = 0.into();
            self.dq_log2.d.next = 0.into();
            self.dq_tail.d.next = 0.into();
            self.dq_head.d.next = 0.into();
            self.cq_base.d.next = 0.into();
            self.cq_log2.d.next = 0.into();
            self.cq_head.d.next = 0.into();
            self.cq_tail.d.next = 0.into();
            self.ops_ok.d.next = 0.into();
            self.ops_failed.d.next = 0.into();
            self.ring_error.d.next = false;
            self.ovf_pending.d.next = false;
            self.boot_done.d.next = false;
            self.pt_index.d.next = 0.into();
            self.pt_valid.d.next = 0.into();
            self.slot.d.next = false;
            self.store.d.next = true;
            self.have.d.next = false;
            self.widx.d.next = 0.into();
            self.result.d.next = 0.into();
            self.act.d.next = false;
            self.crc_idx.d.next = 0.into();
        }
    }
}
