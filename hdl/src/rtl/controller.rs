//! The checkpoint controller: CSR file, descriptor/completion rings, the
//! operation sequencer, the protection table, the superblock commit and the
//! boot-time scan. The datapath is the `Mover`; port ownership is the
//! `PortRouter`; the bus front end is `AxiLiteCsr`; interrupts are the
//! `IrqUnit`; the boot scan's judgement and the commit's new superblock are
//! `SbScan` and `SbCommit` (`superblock.rs`), which the sequencer's phases
//! strobe.
//!
//! Everything visible to software comes from `crate::contract`: register
//! offsets, field layouts, status codes, permissions and the NV layout.

use super::axil::AxiLiteCsr;
use super::bus::{AxiLiteTarget, PmpInitiator, CSR_ADDR_BITS};
use super::irq::IrqUnit;
use super::mover::Mover;
use super::router::{PortRouter, SEL_COLD, SEL_HOST, SEL_NONE, SEL_WARM};
use super::slice::PmpSlice;
use super::superblock::{SbCommit, SbScan};
use crate::contract::{self, reg, NvGeometry};
use rust_hdl::prelude::*;

pub use super::superblock::TierState;

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
enum Phase {
    BootStart,
    BootRead,
    BootSlot,
    BootSlotEnd,
    BootSlotTake,
    BootPick,
    BootSel,
    BootCheck,
    BootGo,
    BootWait,
    BootJudge,
    BootNext,
    Idle,
    Fetch,
    PtWait,
    PtCap,
    Translate,
    Translate2,
    Translate3,
    Translate4,
    Check,
    Dispatch,
    ExecStart,
    ExecWait,
    ExecCmp,
    ExecDone,
    CommitFlip,
    CommitTrim,
    CommitLog,
    AppPlan,
    AppPlan2,
    AppPlan3,
    AppPlan4,
    AppHdr,
    AppAck,
    AppData,
    AppDataWait,
    AppTrailer,
    AppTrailerAck,
    CommitCrc,
    CommitWrite,
    CommitAck,
    CplBuild,
    CplWrite,
    CplAck,
    CplDone,
}

// `op_dec` bit i is opcode i (literals in `update`: hdl_gen takes no paths).
const _: () = assert!(
    contract::Opcode::Nop as u8 == 0
        && contract::Opcode::Write as u8 == 1
        && contract::Opcode::Read as u8 == 2
        && contract::Opcode::Validate as u8 == 3
        && contract::Opcode::Copy as u8 == 4
        && contract::Opcode::Flip as u8 == 5
        && contract::Opcode::Append as u8 == 6
        && contract::Opcode::LogTrim as u8 == 7
);

fn c12(v: u32) -> Constant<Bits<CSR_ADDR_BITS>> {
    Constant::new((v as u64).into())
}
fn c8(v: u64) -> Constant<Bits<8>> {
    Constant::new(v.into())
}
fn c32(v: u32) -> Constant<Bits<32>> {
    Constant::new((v as u64).into())
}
fn c64(v: u64) -> Constant<Bits<64>> {
    Constant::new(v.into())
}

/// The controller top level.
#[derive(LogicBlock)]
pub struct HitlessController {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset, active high (a warm reset: the boot scan runs again).
    pub reset: Signal<In, Bit>,
    /// Register port (BAR0 / AXI GP).
    pub csr: AxiLiteTarget,
    /// Host DMA port (descriptors, completions, checkpoint data).
    pub host: PmpInitiator<64>,
    /// Warm-tier NV port.
    pub warm: PmpInitiator<32>,
    /// Cold-tier NV port.
    pub cold: PmpInitiator<32>,
    /// Interrupt message: one-cycle pulse per interrupt (MSI-X style).
    pub irq: Signal<Out, Bit>,
    /// Active region of each tier (bit 0 warm, bit 1 cold): board LEDs.
    pub active: Signal<Out, Bits<2>>,
    /// `IRQ_STATUS.ERROR` (an error completion not yet acknowledged): a board LED.
    pub error: Signal<Out, Bit>,
    axil: AxiLiteCsr,
    mover: Mover,
    router: PortRouter,
    host_slice: PmpSlice<64>,
    warm_slice: PmpSlice<32>,
    cold_slice: PmpSlice<32>,
    src_slice: PmpSlice<64>,
    dst_slice: PmpSlice<64>,
    // And the engine's port: its command muxes (superblock words, ring
    // addresses, log headers) end in flip-flops, and its responses arrive
    // registered, after the router's steer.
    eng_slice: PmpSlice<64>,
    pt_eng: RAM<Bits<100>, 4>,
    pt_csr: RAM<Bits<100>, 4>,
    phase: DFF<Phase>,
    ctrl: DFF<Bits<2>>,
    scratch: DFF<Bits<32>>,
    cycles: DFF<Bits<32>>,
    dq_base: DFF<Bits<64>>,
    dq_log2: DFF<Bits<4>>,
    dq_tail: DFF<Bits<16>>,
    dq_head: DFF<Bits<16>>,
    cq_base: DFF<Bits<64>>,
    cq_log2: DFF<Bits<4>>,
    cq_head: DFF<Bits<16>>,
    cq_tail: DFF<Bits<16>>,
    // IRQ_STATUS, IRQ_MASK and the interrupt message.
    irq_unit: IrqUnit,
    ops_ok: DFF<Bits<32>>,
    ops_failed: DFF<Bits<32>>,
    ring_error: DFF<Bit>,
    boot_done: DFF<Bit>,
    ovf_pending: DFF<Bit>,
    ovf_tail: DFF<Bits<16>>,
    cpl_is_ovf: DFF<Bit>,
    pt_index: DFF<Bits<4>>,
    pt_tag: DFF<Bits<28>>,
    pt_base: DFF<Bits<32>>,
    pt_len: DFF<Bits<32>>,
    pt_perm: DFF<Bits<8>>,
    pt_valid: DFF<Bits<16>>,
    // The entry at PT_INDEX as PT_BASE/PT_LEN/PT_PERM read it ({perm, len,
    // base}) and its VALID bit (without it the entry reads as zero),
    // registered: the table's read and the valid-bit select get a cycle of
    // their own before the read mux. They lag a write by a cycle, which a
    // read that follows the write's response never sees (AxiLiteCsr
    // answers B a cycle before the write lands, and a read takes another
    // cycle to reach the decode).
    pt_view: DFF<Bits<72>>,
    pt_view_valid: DFF<Bit>,
    warm_st: DFF<TierState>,
    cold_st: DFF<TierState>,
    // The boot scan's judgement of the tier being scanned (`scan`), and the
    // commit's new superblock.
    sb_scan: SbScan,
    sb_commit: SbCommit,
    tier: DFF<Bit>,
    desc: DFF<Bits<256>>,
    entry: DFF<Bits<100>>,
    crc0: DFF<Bits<32>>,
    k: DFF<Bits<5>>,
    issued: DFF<Bits<5>>,
    got: DFF<Bits<5>>,
    eng_inflight: DFF<Bits<6>>,
    slot: DFF<Bit>,
    status: DFF<Bits<8>>,
    res_crc: DFF<Bits<32>>,
    info: DFF<Bits<32>>,
    phys: DFF<Bits<64>>,
    src_phys: DFF<Bits<64>>,
    rel: DFF<Bits<64>>,
    oor: DFF<Bit>,
    m_src: DFF<Bits<64>>,
    m_dst: DFF<Bits<64>>,
    m_len: DFF<Bits<32>>,
    m_has_dst: DFF<Bit>,
    m_src_sel: DFF<Bits<2>>,
    m_dst_sel: DFF<Bits<2>>,
    app_pos: DFF<Bits<32>>,
    app_pad: DFF<Bits<32>>,
    app_start: DFF<Bits<32>>,
    app_rec: DFF<Bits<32>>,
    cpl_w0: DFF<Bits<64>>,
    cpl_w1: DFF<Bits<64>>,
    eng_sel: DFF<Bits<2>>,
    dq_size_q: DFF<Bits<17>>,
    tail_dist_q: DFF<Bits<16>>,
    wr_data_q: DFF<Bits<32>>,
    wr_addr_q: DFF<Bits<CSR_ADDR_BITS>>,
    wr_q: DFF<Bit>,
    rd_q: DFF<Bits<32>>,
    rd_sel: DFF<Bits<48>>,
    sb_idx: DFF<Bits<3>>,
    mism: DFF<Bit>,
    app_need: DFF<Bits<32>>,
    app_used: DFF<Bits<34>>,
    // Log space left (log size - used) and its verdict, each in a cycle of
    // its own (a sum and a compare would be two carry chains in one).
    app_room: DFF<Bits<34>>,
    app_full: DFF<Bit>,
    overlap: DFF<Bit>,
    trim_bad: DFF<Bit>,
    flip_len_bad: DFF<Bit>,
    long_len: DFF<Bit>,
    t_trim_b: DFF<Bits<32>>,
    t_trim_a: DFF<Bits<32>>,
    t_src_hi: DFF<Bits<64>>,
    t_dst_hi: DFF<Bits<64>>,
    t_src_end: DFF<Bits<64>>,
    t_end: DFF<Bits<64>>,
    t_src_rel: DFF<Bits<64>>,
    t_aux_end: DFF<Bits<64>>,
    t_off_end: DFF<Bits<64>>,
    // Blank the scanned tier in BootStart: a registered strobe (set by whoever enters
    // BootStart) rather than a phase decode, because it resets ~220
    // flip-flops and its fan-out is most of a cycle by itself.
    scan_clear: DFF<Bit>,
    // The region's CRC matched (registered before the boot scan acts on it).
    boot_crc_ok: DFF<Bit>,
    // Descriptor decode, registered from `desc` and `entry` every cycle
    // (both are stable for many cycles before `Check` reads these), so the
    // checks and the dispatch start from flip-flops: one bit per opcode, an
    // invalid opcode or flag, a bad key, a missing permission.
    op_dec: DFF<Bits<8>>,
    op_bad: DFF<Bit>,
    key_bad: DFF<Bit>,
    perm_bad: DFF<Bit>,
    sc_crc: DFF<Bits<32>>,
    // `sc_len` exceeds a region, registered with it in BootSel.
    sc_big: DFF<Bit>,
    sc_len: DFF<Bits<32>>,
    ring_addr: DFF<Bits<64>>,
    cq_room_q: DFF<Bit>,
    cq_mask: DFF<Bits<16>>,
    dq_mask: DFF<Bits<16>>,
    // ---- combinational ----
    cur: Signal<Local, TierState>,
    scur: Signal<Local, TierState>,
    opcode: Signal<Local, Bits<8>>,
    flags: Signal<Local, Bits<8>>,
    key: Signal<Local, Bits<32>>,
    off: Signal<Local, Bits<32>>,
    len: Signal<Local, Bits<32>>,
    aux: Signal<Local, Bits<32>>,
    xcrc: Signal<Local, Bits<32>>,
    e_tag: Signal<Local, Bits<28>>,
    e_base: Signal<Local, Bits<32>>,
    e_len: Signal<Local, Bits<32>>,
    e_perm: Signal<Local, Bits<8>>,
    e_valid: Signal<Local, Bit>,
    f_cold: Signal<Local, Bit>,
    f_src_cold: Signal<Local, Bit>,
    f_check: Signal<Local, Bit>,
    f_alt: Signal<Local, Bit>,
    f_commit: Signal<Local, Bit>,
    f_irq: Signal<Local, Bit>,
    is_data_op: Signal<Local, Bit>,
    need_perm: Signal<Local, Bits<8>>,
    chk: Signal<Local, Bits<8>>,
    alt_base: Signal<Local, Bits<64>>,
    act_base: Signal<Local, Bits<64>>,
    sact_base: Signal<Local, Bits<64>>,
    dq_size: Signal<Local, Bits<17>>,
    cq_size: Signal<Local, Bits<17>>,
    dq_eff: Signal<Local, Bits<4>>,
    // RING_MAX_LOG2: larger ring sizes act as this.
    k_ring_max: Constant<Bits<4>>,
    cq_eff: Signal<Local, Bits<4>>,
    cq_room: Signal<Local, Bit>,
    tail_dist: Signal<Local, Bits<16>>,
    rd_data: Signal<Local, Bits<32>>,
    rd_dec: Signal<Local, Bits<48>>,
    eng_fire: Signal<Local, Bit>,
    eng_ack: Signal<Local, Bit>,
    sb_sel: Signal<Local, Bit>,
    ws: Signal<Local, Bits<64>>,
    irq_set: Signal<Local, Bits<3>>,
    tier_sel: Signal<Local, Bits<2>>,
    stier_sel: Signal<Local, Bits<2>>,
    used: Signal<Local, Bits<34>>,
    tstate_w: Signal<Local, Bits<32>>,
    tstate_c: Signal<Local, Bits<32>>,
    pad_l: Signal<Local, Bits<32>>,
    mismatch: Signal<Local, Bit>,
    want: Signal<Local, Bit>,
    wseq: Signal<Local, Bits<64>>,
    cseq: Signal<Local, Bits<64>>,
    cur_seq: Signal<Local, Bits<64>>,
    cq_shifted: Signal<Local, Bits<16>>,
    irq_clear: Signal<Local, Bits<3>>,
    // ---- constants ----
    k_region_size: Constant<Bits<64>>,
    k_region_a: Constant<Bits<64>>,
    k_region_b: Constant<Bits<64>>,
    k_log_base: Constant<Bits<64>>,
    k_log_size: Constant<Bits<32>>,
    k_log_mask: Constant<Bits<32>>,
    k_total: Constant<Bits<64>>,
    k_data_base: Constant<Bits<32>>,
    k_data_size: Constant<Bits<32>>,
    k_max_xfer: Constant<Bits<32>>,
    k_id: Constant<Bits<32>>,
    k_version: Constant<Bits<32>>,
    k_caps: Constant<Bits<32>>,
    k_rec_magic: Constant<Bits<64>>,
    k_pad_magic: Constant<Bits<64>>,
    k_blank: Constant<TierState>,
    k_op_max: Constant<Bits<8>>,
    k_one8: Constant<Bits<8>>,
    k_fl_all: Constant<Bits<8>>,
    k_fl_cold: Constant<Bits<8>>,
    k_fl_src_cold: Constant<Bits<8>>,
    k_fl_check: Constant<Bits<8>>,
    k_fl_alt: Constant<Bits<8>>,
    k_fl_commit: Constant<Bits<8>>,
    k_fl_irq: Constant<Bits<8>>,
    k_perm_valid: Constant<Bits<8>>,
    k_perm_read: Constant<Bits<8>>,
    k_perm_write: Constant<Bits<8>>,
    k_perm_commit: Constant<Bits<8>>,
    k_perm_log: Constant<Bits<8>>,
    k_perm_warm: Constant<Bits<8>>,
    k_perm_cold: Constant<Bits<8>>,
    k_perm_region: Constant<Bits<8>>,
    k_st_ok: Constant<Bits<8>>,
    k_st_bad_opcode: Constant<Bits<8>>,
    k_st_bad_length: Constant<Bits<8>>,
    k_st_bad_align: Constant<Bits<8>>,
    k_st_out_of_range: Constant<Bits<8>>,
    k_st_bad_key: Constant<Bits<8>>,
    k_st_permission: Constant<Bits<8>>,
    k_st_crc_mismatch: Constant<Bits<8>>,
    k_st_log_full: Constant<Bits<8>>,
    k_st_bad_trim: Constant<Bits<8>>,
    k_st_bad_commit: Constant<Bits<8>>,
    k_res_ok: Constant<Bits<2>>,
    k_irq_completion: Constant<Bits<3>>,
    k_irq_error: Constant<Bits<3>>,
    k_irq_boot_done: Constant<Bits<3>>,
    k_ctrl_enable: Constant<Bits<2>>,
    k_ctrl_irq_enable: Constant<Bits<2>>,
    k_log_overhead: Constant<Bits<32>>,
    k_log_hdr: Constant<Bits<64>>,
    k_log_trl: Constant<Bits<64>>,
    is_nop: Signal<Local, Bit>,
    is_write: Signal<Local, Bit>,
    is_read: Signal<Local, Bit>,
    is_validate: Signal<Local, Bit>,
    is_copy: Signal<Local, Bit>,
    is_flip: Signal<Local, Bit>,
    is_append: Signal<Local, Bit>,
    is_trim: Signal<Local, Bit>,
    p_valid: Signal<Local, Bit>,
    p_read: Signal<Local, Bit>,
    p_write: Signal<Local, Bit>,
    p_commit: Signal<Local, Bit>,
    p_log: Signal<Local, Bit>,
    p_warm: Signal<Local, Bit>,
    p_cold: Signal<Local, Bit>,
    p_region: Signal<Local, Bit>,
    k_sel_host: Constant<Bits<2>>,
    k_sel_warm: Constant<Bits<2>>,
    k_sel_cold: Constant<Bits<2>>,
    k_sel_none: Constant<Bits<2>>,
    k_st_ring_overflow: Constant<Bits<8>>,
    r_id: Constant<Bits<CSR_ADDR_BITS>>,
    r_version: Constant<Bits<CSR_ADDR_BITS>>,
    r_caps: Constant<Bits<CSR_ADDR_BITS>>,
    r_next_block: Constant<Bits<CSR_ADDR_BITS>>,
    r_ctrl: Constant<Bits<CSR_ADDR_BITS>>,
    r_status: Constant<Bits<CSR_ADDR_BITS>>,
    r_scratch: Constant<Bits<CSR_ADDR_BITS>>,
    r_cycles: Constant<Bits<CSR_ADDR_BITS>>,
    r_warm_state: Constant<Bits<CSR_ADDR_BITS>>,
    r_warm_seq: Constant<Bits<CSR_ADDR_BITS>>,
    r_warm_a_len: Constant<Bits<CSR_ADDR_BITS>>,
    r_warm_a_crc: Constant<Bits<CSR_ADDR_BITS>>,
    r_warm_b_len: Constant<Bits<CSR_ADDR_BITS>>,
    r_warm_b_crc: Constant<Bits<CSR_ADDR_BITS>>,
    r_warm_log_head: Constant<Bits<CSR_ADDR_BITS>>,
    r_warm_log_tail: Constant<Bits<CSR_ADDR_BITS>>,
    r_cold_state: Constant<Bits<CSR_ADDR_BITS>>,
    r_cold_seq: Constant<Bits<CSR_ADDR_BITS>>,
    r_cold_a_len: Constant<Bits<CSR_ADDR_BITS>>,
    r_cold_a_crc: Constant<Bits<CSR_ADDR_BITS>>,
    r_cold_b_len: Constant<Bits<CSR_ADDR_BITS>>,
    r_cold_b_crc: Constant<Bits<CSR_ADDR_BITS>>,
    r_cold_log_head: Constant<Bits<CSR_ADDR_BITS>>,
    r_cold_log_tail: Constant<Bits<CSR_ADDR_BITS>>,
    r_nv_region_size: Constant<Bits<CSR_ADDR_BITS>>,
    r_nv_log_size: Constant<Bits<CSR_ADDR_BITS>>,
    r_nv_region_a_base: Constant<Bits<CSR_ADDR_BITS>>,
    r_nv_region_b_base: Constant<Bits<CSR_ADDR_BITS>>,
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
    r_pt_index: Constant<Bits<CSR_ADDR_BITS>>,
    r_pt_key_tag: Constant<Bits<CSR_ADDR_BITS>>,
    r_pt_base: Constant<Bits<CSR_ADDR_BITS>>,
    r_pt_len: Constant<Bits<CSR_ADDR_BITS>>,
    r_pt_perm: Constant<Bits<CSR_ADDR_BITS>>,
    r_pt_commit: Constant<Bits<CSR_ADDR_BITS>>,
}

impl HitlessController {
    /// A controller for NV tiers of the given geometry.
    pub fn new(g: &NvGeometry) -> Self {
        Self {
            clock: Default::default(),
            reset: Default::default(),
            csr: Default::default(),
            host: Default::default(),
            warm: Default::default(),
            cold: Default::default(),
            irq: Default::default(),
            active: Default::default(),
            error: Default::default(),
            axil: Default::default(),
            mover: Default::default(),
            router: Default::default(),
            host_slice: Default::default(),
            warm_slice: Default::default(),
            cold_slice: Default::default(),
            src_slice: Default::default(),
            dst_slice: Default::default(),
            eng_slice: Default::default(),
            pt_eng: Default::default(),
            pt_csr: Default::default(),
            phase: Default::default(),
            ctrl: Default::default(),
            scratch: Default::default(),
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
            boot_done: Default::default(),
            ovf_pending: Default::default(),
            ovf_tail: Default::default(),
            cpl_is_ovf: Default::default(),
            pt_index: Default::default(),
            pt_tag: Default::default(),
            pt_base: Default::default(),
            pt_len: Default::default(),
            pt_perm: Default::default(),
            pt_valid: Default::default(),
            pt_view: Default::default(),
            pt_view_valid: Default::default(),
            warm_st: Default::default(),
            cold_st: Default::default(),
            sb_scan: Default::default(),
            sb_commit: Default::default(),
            tier: Default::default(),
            desc: Default::default(),
            entry: Default::default(),
            crc0: Default::default(),
            k: Default::default(),
            issued: Default::default(),
            got: Default::default(),
            eng_inflight: Default::default(),
            slot: Default::default(),
            status: Default::default(),
            res_crc: Default::default(),
            info: Default::default(),
            phys: Default::default(),
            src_phys: Default::default(),
            rel: Default::default(),
            oor: Default::default(),
            m_src: Default::default(),
            m_dst: Default::default(),
            m_len: Default::default(),
            m_has_dst: Default::default(),
            m_src_sel: Default::default(),
            m_dst_sel: Default::default(),
            app_pos: Default::default(),
            app_pad: Default::default(),
            app_start: Default::default(),
            app_rec: Default::default(),
            cpl_w0: Default::default(),
            cpl_w1: Default::default(),
            eng_sel: Default::default(),
            dq_size_q: Default::default(),
            tail_dist_q: Default::default(),
            wr_data_q: Default::default(),
            wr_addr_q: Default::default(),
            wr_q: Default::default(),
            rd_q: Default::default(),
            rd_sel: Default::default(),
            sb_idx: Default::default(),
            mism: Default::default(),
            app_need: Default::default(),
            app_used: Default::default(),
            app_room: Default::default(),
            app_full: Default::default(),
            overlap: Default::default(),
            trim_bad: Default::default(),
            flip_len_bad: Default::default(),
            long_len: Default::default(),
            t_trim_b: Default::default(),
            t_trim_a: Default::default(),
            t_src_hi: Default::default(),
            t_dst_hi: Default::default(),
            t_src_end: Default::default(),
            t_end: Default::default(),
            t_src_rel: Default::default(),
            t_aux_end: Default::default(),
            t_off_end: Default::default(),
            scan_clear: Default::default(),
            boot_crc_ok: Default::default(),
            op_dec: Default::default(),
            op_bad: Default::default(),
            key_bad: Default::default(),
            perm_bad: Default::default(),
            sc_crc: Default::default(),
            sc_big: Default::default(),
            sc_len: Default::default(),
            ring_addr: Default::default(),
            cq_room_q: Default::default(),
            cq_mask: Default::default(),
            dq_mask: Default::default(),
            pad_l: Default::default(),
            mismatch: Default::default(),
            want: Default::default(),
            wseq: Default::default(),
            cseq: Default::default(),
            cur_seq: Default::default(),
            cq_shifted: Default::default(),
            irq_clear: Default::default(),
            cur: Default::default(),
            scur: Default::default(),
            opcode: Default::default(),
            flags: Default::default(),
            key: Default::default(),
            off: Default::default(),
            len: Default::default(),
            aux: Default::default(),
            xcrc: Default::default(),
            e_tag: Default::default(),
            e_base: Default::default(),
            e_len: Default::default(),
            e_perm: Default::default(),
            e_valid: Default::default(),
            f_cold: Default::default(),
            f_src_cold: Default::default(),
            f_check: Default::default(),
            f_alt: Default::default(),
            f_commit: Default::default(),
            f_irq: Default::default(),
            is_data_op: Default::default(),
            need_perm: Default::default(),
            chk: Default::default(),
            alt_base: Default::default(),
            act_base: Default::default(),
            sact_base: Default::default(),
            dq_size: Default::default(),
            cq_size: Default::default(),
            dq_eff: Default::default(),
            k_ring_max: Constant::new((contract::RING_MAX_LOG2 as u64).into()),
            cq_eff: Default::default(),
            cq_room: Default::default(),
            tail_dist: Default::default(),
            rd_data: Default::default(),
            rd_dec: Default::default(),
            eng_fire: Default::default(),
            eng_ack: Default::default(),
            sb_sel: Default::default(),
            ws: Default::default(),
            irq_set: Default::default(),
            tier_sel: Default::default(),
            stier_sel: Default::default(),
            used: Default::default(),
            tstate_w: Default::default(),
            tstate_c: Default::default(),
            k_region_size: c64(g.region_size as u64),
            k_region_a: c64(g.region_a_base() as u64),
            k_region_b: c64(g.region_b_base() as u64),
            k_log_base: c64(g.log_base() as u64),
            k_log_size: c32(g.log_size),
            k_log_mask: c32(g.log_size - 1),
            k_total: c64(g.total() as u64),
            k_data_base: c32(g.data_base()),
            k_data_size: c32(g.data_size),
            k_max_xfer: c32(contract::MAX_TRANSFER),
            k_id: c32(contract::CONTROLLER_ID),
            k_version: c32(contract::CONTRACT_VERSION),
            k_caps: c32(contract::CAPS_VALUE),
            k_rec_magic: c64(contract::LOG_RECORD_MAGIC as u64),
            k_pad_magic: c64(contract::LOG_PAD_MAGIC as u64),
            k_blank: Constant::new(TierState::default()),
            k_op_max: c8(contract::Opcode::LogTrim as u64),
            k_one8: c8(1),
            k_fl_all: c8(contract::flags::ALL as u64),
            k_fl_cold: c8(contract::flags::COLD as u64),
            k_fl_src_cold: c8(contract::flags::SRC_COLD as u64),
            k_fl_check: c8(contract::flags::CHECK as u64),
            k_fl_alt: c8(contract::flags::ALT as u64),
            k_fl_commit: c8(contract::flags::COMMIT as u64),
            k_fl_irq: c8(contract::flags::IRQ as u64),
            k_perm_valid: c8(contract::perm::VALID as u64),
            k_perm_read: c8(contract::perm::READ as u64),
            k_perm_write: c8(contract::perm::WRITE as u64),
            k_perm_commit: c8(contract::perm::COMMIT as u64),
            k_perm_log: c8(contract::perm::LOG as u64),
            k_perm_warm: c8(contract::perm::WARM as u64),
            k_perm_cold: c8(contract::perm::COLD as u64),
            k_perm_region: c8(contract::perm::REGION as u64),
            k_st_ok: c8(contract::Status::Ok as u64),
            k_st_bad_opcode: c8(contract::Status::BadOpcode as u64),
            k_st_bad_length: c8(contract::Status::BadLength as u64),
            k_st_bad_align: c8(contract::Status::BadAlign as u64),
            k_st_out_of_range: c8(contract::Status::OutOfRange as u64),
            k_st_bad_key: c8(contract::Status::BadKey as u64),
            k_st_permission: c8(contract::Status::Permission as u64),
            k_st_crc_mismatch: c8(contract::Status::CrcMismatch as u64),
            k_st_log_full: c8(contract::Status::LogFull as u64),
            k_st_bad_trim: c8(contract::Status::BadTrim as u64),
            k_st_bad_commit: c8(contract::Status::BadCommit as u64),
            k_res_ok: Constant::new((contract::BootResult::Ok as u64).into()),
            k_irq_completion: Constant::new((contract::irq::COMPLETION as u64).into()),
            k_irq_error: Constant::new((contract::irq::ERROR as u64).into()),
            k_irq_boot_done: Constant::new((contract::irq::BOOT_DONE as u64).into()),
            k_ctrl_enable: Constant::new((contract::ctrl::ENABLE as u64).into()),
            k_ctrl_irq_enable: Constant::new((contract::ctrl::IRQ_ENABLE as u64).into()),
            k_log_overhead: c32(contract::LOG_HEADER_BYTES + contract::LOG_TRAILER_BYTES),
            k_log_hdr: c64(contract::LOG_HEADER_BYTES as u64),
            k_log_trl: c64(contract::LOG_TRAILER_BYTES as u64),
            is_nop: Default::default(),
            is_write: Default::default(),
            is_read: Default::default(),
            is_validate: Default::default(),
            is_copy: Default::default(),
            is_flip: Default::default(),
            is_append: Default::default(),
            is_trim: Default::default(),
            p_valid: Default::default(),
            p_read: Default::default(),
            p_write: Default::default(),
            p_commit: Default::default(),
            p_log: Default::default(),
            p_warm: Default::default(),
            p_cold: Default::default(),
            p_region: Default::default(),
            k_sel_host: Constant::new(SEL_HOST.into()),
            k_sel_warm: Constant::new(SEL_WARM.into()),
            k_sel_cold: Constant::new(SEL_COLD.into()),
            k_sel_none: Constant::new(SEL_NONE.into()),
            k_st_ring_overflow: Constant::new((contract::Status::RingOverflow as u64).into()),
            r_id: c12(reg::ID),
            r_version: c12(reg::VERSION),
            r_caps: c12(reg::CAPS),
            r_next_block: c12(reg::NEXT_BLOCK),
            r_ctrl: c12(reg::CTRL),
            r_status: c12(reg::STATUS),
            r_scratch: c12(reg::SCRATCH),
            r_cycles: c12(reg::CYCLES),
            r_warm_state: c12(reg::WARM_STATE),
            r_warm_seq: c12(reg::WARM_SEQ),
            r_warm_a_len: c12(reg::WARM_A_LEN),
            r_warm_a_crc: c12(reg::WARM_A_CRC),
            r_warm_b_len: c12(reg::WARM_B_LEN),
            r_warm_b_crc: c12(reg::WARM_B_CRC),
            r_warm_log_head: c12(reg::WARM_LOG_HEAD),
            r_warm_log_tail: c12(reg::WARM_LOG_TAIL),
            r_cold_state: c12(reg::COLD_STATE),
            r_cold_seq: c12(reg::COLD_SEQ),
            r_cold_a_len: c12(reg::COLD_A_LEN),
            r_cold_a_crc: c12(reg::COLD_A_CRC),
            r_cold_b_len: c12(reg::COLD_B_LEN),
            r_cold_b_crc: c12(reg::COLD_B_CRC),
            r_cold_log_head: c12(reg::COLD_LOG_HEAD),
            r_cold_log_tail: c12(reg::COLD_LOG_TAIL),
            r_nv_region_size: c12(reg::NV_REGION_SIZE),
            r_nv_log_size: c12(reg::NV_LOG_SIZE),
            r_nv_region_a_base: c12(reg::NV_REGION_A_BASE),
            r_nv_region_b_base: c12(reg::NV_REGION_B_BASE),
            r_nv_log_base: c12(reg::NV_LOG_BASE),
            r_nv_data_base: c12(reg::NV_DATA_BASE),
            r_nv_data_size: c12(reg::NV_DATA_SIZE),
            r_dq_base_lo: c12(reg::DQ_BASE_LO),
            r_dq_base_hi: c12(reg::DQ_BASE_HI),
            r_dq_size_log2: c12(reg::DQ_SIZE_LOG2),
            r_dq_tail: c12(reg::DQ_TAIL),
            r_dq_head: c12(reg::DQ_HEAD),
            r_cq_base_lo: c12(reg::CQ_BASE_LO),
            r_cq_base_hi: c12(reg::CQ_BASE_HI),
            r_cq_size_log2: c12(reg::CQ_SIZE_LOG2),
            r_cq_head: c12(reg::CQ_HEAD),
            r_cq_tail: c12(reg::CQ_TAIL),
            r_irq_status: c12(reg::IRQ_STATUS),
            r_irq_mask: c12(reg::IRQ_MASK),
            r_ops_ok: c12(reg::OPS_OK),
            r_ops_failed: c12(reg::OPS_FAILED),
            r_pt_index: c12(reg::PT_INDEX),
            r_pt_key_tag: c12(reg::PT_KEY_TAG),
            r_pt_base: c12(reg::PT_BASE),
            r_pt_len: c12(reg::PT_LEN),
            r_pt_perm: c12(reg::PT_PERM),
            r_pt_commit: c12(reg::PT_COMMIT),
        }
    }
}

impl Logic for HitlessController {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            phase,
            ctrl,
            scratch,
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
            boot_done,
            ovf_pending,
            ovf_tail,
            cpl_is_ovf,
            pt_index,
            pt_tag,
            pt_base,
            pt_len,
            pt_perm,
            pt_valid,
            pt_view,
            pt_view_valid,
            warm_st,
            cold_st,
            tier,
            desc,
            entry,
            crc0,
            k,
            issued,
            got,
            eng_inflight,
            slot,
            status,
            res_crc,
            info,
            phys,
            src_phys,
            rel,
            oor,
            m_src,
            m_dst,
            m_len,
            m_has_dst,
            m_src_sel,
            m_dst_sel,
            app_pos,
            app_pad,
            app_start,
            app_rec,
            cpl_w0,
            cpl_w1,
            eng_sel,
            dq_size_q,
            tail_dist_q,
            wr_data_q,
            wr_addr_q,
            wr_q,
            rd_q,
            rd_sel,
            sb_idx,
            mism,
            app_need,
            app_used,
            app_room,
            app_full,
            overlap,
            trim_bad,
            flip_len_bad,
            long_len,
            t_trim_b,
            t_trim_a,
            t_src_hi,
            t_dst_hi,
            t_src_end,
            t_end,
            t_src_rel,
            t_aux_end,
            t_off_end,
            dq_mask,
            cq_mask,
            cq_room_q,
            ring_addr,
            sc_len,
            sc_crc,
            sc_big,
            scan_clear,
            boot_crc_ok,
            op_dec,
            op_bad,
            key_bad,
            perm_bad
        );
        clock!(
            self, clock, axil, mover, host_slice, warm_slice, cold_slice, src_slice, dst_slice,
            eng_slice, irq_unit, sb_scan, sb_commit
        );
        self.pt_eng.read_clock.next = self.clock.val();
        self.pt_eng.write_clock.next = self.clock.val();
        self.pt_csr.read_clock.next = self.clock.val();
        self.pt_csr.write_clock.next = self.clock.val();
        self.axil.reset.next = self.reset.val();
        self.irq_unit.reset.next = self.reset.val();
        self.mover.reset.next = self.reset.val();
        self.host_slice.reset.next = self.reset.val();
        self.warm_slice.reset.next = self.reset.val();
        self.cold_slice.reset.next = self.reset.val();
        self.src_slice.reset.next = self.reset.val();
        self.dst_slice.reset.next = self.reset.val();
        self.eng_slice.reset.next = self.reset.val();
        AxiLiteTarget::link(&mut self.csr, &mut self.axil.axi);
        // Register slices between the router and the ports: the engine's and
        // the mover's command muxes end in flip-flops inside the controller.
        PmpInitiator::<64>::join(&mut self.router.host, &mut self.host_slice.up);
        PmpInitiator::<32>::join(&mut self.router.warm, &mut self.warm_slice.up);
        PmpInitiator::<32>::join(&mut self.router.cold, &mut self.cold_slice.up);
        PmpInitiator::<64>::link(&mut self.host, &mut self.host_slice.down);
        PmpInitiator::<32>::link(&mut self.warm, &mut self.warm_slice.down);
        PmpInitiator::<32>::link(&mut self.cold, &mut self.cold_slice.down);
        // And between the mover and the router: the mover's ready inputs are
        // flip-flops, so a port's readiness never reaches its counters and
        // realigners in the same cycle.
        PmpInitiator::<64>::join(&mut self.mover.src, &mut self.src_slice.up);
        PmpInitiator::<64>::join(&mut self.src_slice.down, &mut self.router.src);
        PmpInitiator::<64>::join(&mut self.mover.dst, &mut self.dst_slice.up);
        PmpInitiator::<64>::join(&mut self.dst_slice.down, &mut self.router.dst);
        PmpInitiator::<64>::join(&mut self.eng_slice.down, &mut self.router.eng);
        self.cycles.d.next = self.cycles.q.val() + 1;
        self.irq.next = self.irq_unit.irq.val();
        self.active.next = bit_cast::<2, 1>(self.warm_st.q.val().active.into())
            | (bit_cast::<2, 1>(self.cold_st.q.val().active.into()) << 1);
        self.error.next = (self.irq_unit.status.val() & self.k_irq_error.val()) != 0;
        self.irq_set.next = 0.into();
        self.irq_clear.next = 0.into();
        self.irq_unit.mask_write.next = false;
        self.irq_unit.mask_data.next = self.wr_data_q.q.val().get_bits::<3>(0);

        // ---- decoded descriptor and protection entry ----
        self.opcode.next = self.desc.q.val().get_bits::<8>(0);
        self.flags.next = self.desc.q.val().get_bits::<8>(8);
        self.key.next = self.desc.q.val().get_bits::<32>(32);
        self.off.next = self.desc.q.val().get_bits::<32>(128);
        self.len.next = self.desc.q.val().get_bits::<32>(160);
        self.aux.next = self.desc.q.val().get_bits::<32>(192);
        self.xcrc.next = self.desc.q.val().get_bits::<32>(224);
        self.f_cold.next = (self.flags.val() & self.k_fl_cold.val()).any();
        self.f_src_cold.next = (self.flags.val() & self.k_fl_src_cold.val()).any();
        self.f_check.next = (self.flags.val() & self.k_fl_check.val()).any();
        self.f_alt.next = (self.flags.val() & self.k_fl_alt.val()).any();
        self.f_commit.next = (self.flags.val() & self.k_fl_commit.val()).any();
        self.f_irq.next = (self.flags.val() & self.k_fl_irq.val()).any();
        self.e_tag.next = self.entry.q.val().get_bits::<28>(0);
        self.e_base.next = self.entry.q.val().get_bits::<32>(28);
        self.e_len.next = self.entry.q.val().get_bits::<32>(60);
        self.e_perm.next = self.entry.q.val().get_bits::<8>(92);
        self.op_dec.d.next = 0.into();
        if self.opcode.val() <= self.k_op_max.val() {
            self.op_dec.d.next = self.k_one8.val() << self.opcode.val().get_bits::<3>(0);
        }
        self.op_bad.d.next = (self.opcode.val() > self.k_op_max.val())
            | (self.flags.val() & !self.k_fl_all.val()).any();
        self.is_nop.next = self.op_dec.q.val().get_bit(0);
        self.is_write.next = self.op_dec.q.val().get_bit(1);
        self.is_read.next = self.op_dec.q.val().get_bit(2);
        self.is_validate.next = self.op_dec.q.val().get_bit(3);
        self.is_copy.next = self.op_dec.q.val().get_bit(4);
        self.is_flip.next = self.op_dec.q.val().get_bit(5);
        self.is_append.next = self.op_dec.q.val().get_bit(6);
        self.is_trim.next = self.op_dec.q.val().get_bit(7);
        self.p_valid.next = (self.e_perm.val() & self.k_perm_valid.val()).any();
        self.p_read.next = (self.e_perm.val() & self.k_perm_read.val()).any();
        self.p_write.next = (self.e_perm.val() & self.k_perm_write.val()).any();
        self.p_commit.next = (self.e_perm.val() & self.k_perm_commit.val()).any();
        self.p_log.next = (self.e_perm.val() & self.k_perm_log.val()).any();
        self.p_warm.next = (self.e_perm.val() & self.k_perm_warm.val()).any();
        self.p_cold.next = (self.e_perm.val() & self.k_perm_cold.val()).any();
        self.p_region.next = (self.e_perm.val() & self.k_perm_region.val()).any();
        self.e_valid.next = self
            .pt_valid
            .q
            .val()
            .get_bit(self.key.val().get_bits::<4>(0).index())
            & self.p_valid.val();
        self.pt_eng.read_address.next = self.key.val().get_bits::<4>(0);
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

        // ---- tier selection ----
        self.cur.next = self.warm_st.q.val();
        self.tier_sel.next = self.k_sel_warm.val();
        if self.tier.q.val() {
            self.cur.next = self.cold_st.q.val();
            self.tier_sel.next = self.k_sel_cold.val();
        }
        self.scur.next = self.warm_st.q.val();
        self.stier_sel.next = self.k_sel_warm.val();
        if self.f_src_cold.val() {
            self.scur.next = self.cold_st.q.val();
            self.stier_sel.next = self.k_sel_cold.val();
        }
        self.alt_base.next = self.k_region_b.val();
        self.act_base.next = self.k_region_a.val();
        if self.cur.val().active {
            self.alt_base.next = self.k_region_a.val();
            self.act_base.next = self.k_region_b.val();
        }
        self.sact_base.next = self.k_region_a.val();
        if self.scur.val().active {
            self.sact_base.next = self.k_region_b.val();
        }

        // ---- rings ----
        self.dq_eff.next = self.dq_log2.q.val();
        if self.dq_log2.q.val() > self.k_ring_max.val() {
            self.dq_eff.next = self.k_ring_max.val();
        }
        self.cq_eff.next = self.cq_log2.q.val();
        if self.cq_log2.q.val() > self.k_ring_max.val() {
            self.cq_eff.next = self.k_ring_max.val();
        }
        self.dq_size.next = bit_cast::<17, 1>(true.into()) << self.dq_eff.val();
        self.cq_size.next = bit_cast::<17, 1>(true.into()) << self.cq_eff.val();
        self.cq_room.next =
            bit_cast::<17, 16>(self.cq_head.q.val() - self.cq_tail.q.val()) < self.cq_size.val();
        // Registered copies for the sequencer (a cycle behind the ring
        // registers; CplDone lets cq_room_q see the new cq_head, and the ring
        // sizes only change while the host sets the rings up).
        self.cq_room_q.d.next = self.cq_room.val();
        self.dq_mask.d.next = self.dq_size.val().get_bits::<16>(0) - 1;
        self.dq_size_q.d.next = self.dq_size.val();
        self.cq_mask.d.next = self.cq_size.val().get_bits::<16>(0) - 1;
        // Whole fields first: yosys cannot slice a slice.
        self.wseq.next = self.warm_st.q.val().seq;
        self.cseq.next = self.cold_st.q.val().seq;
        self.cur_seq.next = self.cur.val().seq;
        self.sb_commit.cur.next = self.cur.val();
        self.cq_shifted.next = self.cq_head.q.val() >> self.cq_eff.val();
        self.tail_dist.next = self.axil.wr_data.val().get_bits::<16>(0) - self.dq_head.q.val();
        // Register writes take effect a cycle after the strobe, with the
        // doorbell's distance to dq_head computed meanwhile (dq_head only
        // moves toward the tail, so a host within the ring stays within).
        self.wr_q.d.next = self.axil.wr.val();
        self.wr_addr_q.d.next = self.axil.wr_addr.val();
        self.wr_data_q.d.next = self.axil.wr_data.val();
        self.tail_dist_q.d.next = self.tail_dist.val();

        // ---- register reads ----
        self.tstate_w.next = bit_cast::<32, 2>(self.warm_st.q.val().result)
            | (bit_cast::<32, 1>(self.warm_st.q.val().active.into()) << 4);
        self.tstate_c.next = bit_cast::<32, 2>(self.cold_st.q.val().result)
            | (bit_cast::<32, 1>(self.cold_st.q.val().active.into()) << 4);
        // Address decode, registered: the OR of the selected registers below
        // starts from flip-flops (AxiLiteCsr waits two cycles for `rd_data`).
        self.rd_dec.next = 0.into();
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(0, self.axil.rd_addr.val() == self.r_id.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(1, self.axil.rd_addr.val() == self.r_version.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(2, self.axil.rd_addr.val() == self.r_caps.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(3, self.axil.rd_addr.val() == self.r_ctrl.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(4, self.axil.rd_addr.val() == self.r_status.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(5, self.axil.rd_addr.val() == self.r_scratch.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(6, self.axil.rd_addr.val() == self.r_cycles.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(7, self.axil.rd_addr.val() == self.r_warm_state.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(8, self.axil.rd_addr.val() == self.r_warm_seq.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(9, self.axil.rd_addr.val() == self.r_warm_a_len.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(10, self.axil.rd_addr.val() == self.r_warm_a_crc.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(11, self.axil.rd_addr.val() == self.r_warm_b_len.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(12, self.axil.rd_addr.val() == self.r_warm_b_crc.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(13, self.axil.rd_addr.val() == self.r_warm_log_head.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(14, self.axil.rd_addr.val() == self.r_warm_log_tail.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(15, self.axil.rd_addr.val() == self.r_cold_state.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(16, self.axil.rd_addr.val() == self.r_cold_seq.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(17, self.axil.rd_addr.val() == self.r_cold_a_len.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(18, self.axil.rd_addr.val() == self.r_cold_a_crc.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(19, self.axil.rd_addr.val() == self.r_cold_b_len.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(20, self.axil.rd_addr.val() == self.r_cold_b_crc.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(21, self.axil.rd_addr.val() == self.r_cold_log_head.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(22, self.axil.rd_addr.val() == self.r_cold_log_tail.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(23, self.axil.rd_addr.val() == self.r_nv_region_size.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(24, self.axil.rd_addr.val() == self.r_nv_log_size.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(25, self.axil.rd_addr.val() == self.r_nv_region_a_base.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(26, self.axil.rd_addr.val() == self.r_nv_region_b_base.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(27, self.axil.rd_addr.val() == self.r_nv_log_base.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(28, self.axil.rd_addr.val() == self.r_dq_base_lo.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(29, self.axil.rd_addr.val() == self.r_dq_base_hi.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(30, self.axil.rd_addr.val() == self.r_dq_size_log2.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(31, self.axil.rd_addr.val() == self.r_dq_tail.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(32, self.axil.rd_addr.val() == self.r_dq_head.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(33, self.axil.rd_addr.val() == self.r_cq_base_lo.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(34, self.axil.rd_addr.val() == self.r_cq_base_hi.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(35, self.axil.rd_addr.val() == self.r_cq_size_log2.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(36, self.axil.rd_addr.val() == self.r_cq_head.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(37, self.axil.rd_addr.val() == self.r_cq_tail.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(38, self.axil.rd_addr.val() == self.r_irq_status.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(39, self.axil.rd_addr.val() == self.r_irq_mask.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(40, self.axil.rd_addr.val() == self.r_ops_ok.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(41, self.axil.rd_addr.val() == self.r_ops_failed.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(42, self.axil.rd_addr.val() == self.r_pt_index.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(43, self.axil.rd_addr.val() == self.r_pt_base.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(44, self.axil.rd_addr.val() == self.r_pt_len.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(45, self.axil.rd_addr.val() == self.r_pt_perm.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(46, self.axil.rd_addr.val() == self.r_nv_data_base.val());
        self.rd_dec.next = self
            .rd_dec
            .val()
            .replace_bit(47, self.axil.rd_addr.val() == self.r_nv_data_size.val());
        self.rd_sel.d.next = self.rd_dec.val();
        // An OR of the selected registers (the addresses are distinct), not a
        // priority chain: it balances into a shallow tree.
        self.rd_data.next = 0.into();
        if self.rd_sel.q.val().get_bit(0) {
            self.rd_data.next = self.rd_data.val() | (self.k_id.val());
        }
        if self.rd_sel.q.val().get_bit(1) {
            self.rd_data.next = self.rd_data.val() | (self.k_version.val());
        }
        if self.rd_sel.q.val().get_bit(2) {
            self.rd_data.next = self.rd_data.val() | (self.k_caps.val());
        }
        if self.rd_sel.q.val().get_bit(3) {
            self.rd_data.next = self.rd_data.val() | (bit_cast::<32, 2>(self.ctrl.q.val()));
        }
        if self.rd_sel.q.val().get_bit(4) {
            self.rd_data.next = self.rd_data.val()
                | (bit_cast::<32, 1>(self.boot_done.q.val().into())
                    | (bit_cast::<32, 1>((self.phase.q.val() != Phase::Idle).into()) << 1)
                    | (bit_cast::<32, 1>(self.ring_error.q.val().into()) << 2));
        }
        if self.rd_sel.q.val().get_bit(5) {
            self.rd_data.next = self.rd_data.val() | (self.scratch.q.val());
        }
        if self.rd_sel.q.val().get_bit(6) {
            self.rd_data.next = self.rd_data.val() | (self.cycles.q.val());
        }
        if self.rd_sel.q.val().get_bit(7) {
            self.rd_data.next = self.rd_data.val() | (self.tstate_w.val());
        }
        if self.rd_sel.q.val().get_bit(8) {
            self.rd_data.next = self.rd_data.val() | (self.wseq.val().get_bits::<32>(0));
        }
        if self.rd_sel.q.val().get_bit(9) {
            self.rd_data.next = self.rd_data.val() | (self.warm_st.q.val().len_a);
        }
        if self.rd_sel.q.val().get_bit(10) {
            self.rd_data.next = self.rd_data.val() | (self.warm_st.q.val().crc_a);
        }
        if self.rd_sel.q.val().get_bit(11) {
            self.rd_data.next = self.rd_data.val() | (self.warm_st.q.val().len_b);
        }
        if self.rd_sel.q.val().get_bit(12) {
            self.rd_data.next = self.rd_data.val() | (self.warm_st.q.val().crc_b);
        }
        if self.rd_sel.q.val().get_bit(13) {
            self.rd_data.next = self.rd_data.val() | (self.warm_st.q.val().log_head);
        }
        if self.rd_sel.q.val().get_bit(14) {
            self.rd_data.next = self.rd_data.val() | (self.warm_st.q.val().log_tail);
        }
        if self.rd_sel.q.val().get_bit(15) {
            self.rd_data.next = self.rd_data.val() | (self.tstate_c.val());
        }
        if self.rd_sel.q.val().get_bit(16) {
            self.rd_data.next = self.rd_data.val() | (self.cseq.val().get_bits::<32>(0));
        }
        if self.rd_sel.q.val().get_bit(17) {
            self.rd_data.next = self.rd_data.val() | (self.cold_st.q.val().len_a);
        }
        if self.rd_sel.q.val().get_bit(18) {
            self.rd_data.next = self.rd_data.val() | (self.cold_st.q.val().crc_a);
        }
        if self.rd_sel.q.val().get_bit(19) {
            self.rd_data.next = self.rd_data.val() | (self.cold_st.q.val().len_b);
        }
        if self.rd_sel.q.val().get_bit(20) {
            self.rd_data.next = self.rd_data.val() | (self.cold_st.q.val().crc_b);
        }
        if self.rd_sel.q.val().get_bit(21) {
            self.rd_data.next = self.rd_data.val() | (self.cold_st.q.val().log_head);
        }
        if self.rd_sel.q.val().get_bit(22) {
            self.rd_data.next = self.rd_data.val() | (self.cold_st.q.val().log_tail);
        }
        if self.rd_sel.q.val().get_bit(23) {
            self.rd_data.next = self.rd_data.val() | (self.k_region_size.val().get_bits::<32>(0));
        }
        if self.rd_sel.q.val().get_bit(24) {
            self.rd_data.next = self.rd_data.val() | (self.k_log_size.val());
        }
        if self.rd_sel.q.val().get_bit(25) {
            self.rd_data.next = self.rd_data.val() | (self.k_region_a.val().get_bits::<32>(0));
        }
        if self.rd_sel.q.val().get_bit(26) {
            self.rd_data.next = self.rd_data.val() | (self.k_region_b.val().get_bits::<32>(0));
        }
        if self.rd_sel.q.val().get_bit(27) {
            self.rd_data.next = self.rd_data.val() | (self.k_log_base.val().get_bits::<32>(0));
        }
        if self.rd_sel.q.val().get_bit(46) {
            self.rd_data.next = self.rd_data.val() | self.k_data_base.val();
        }
        if self.rd_sel.q.val().get_bit(47) {
            self.rd_data.next = self.rd_data.val() | self.k_data_size.val();
        }
        if self.rd_sel.q.val().get_bit(28) {
            self.rd_data.next = self.rd_data.val() | (self.dq_base.q.val().get_bits::<32>(0));
        }
        if self.rd_sel.q.val().get_bit(29) {
            self.rd_data.next = self.rd_data.val() | (self.dq_base.q.val().get_bits::<32>(32));
        }
        if self.rd_sel.q.val().get_bit(30) {
            self.rd_data.next = self.rd_data.val() | (bit_cast::<32, 4>(self.dq_log2.q.val()));
        }
        if self.rd_sel.q.val().get_bit(31) {
            self.rd_data.next = self.rd_data.val() | (bit_cast::<32, 16>(self.dq_tail.q.val()));
        }
        if self.rd_sel.q.val().get_bit(32) {
            self.rd_data.next = self.rd_data.val() | (bit_cast::<32, 16>(self.dq_head.q.val()));
        }
        if self.rd_sel.q.val().get_bit(33) {
            self.rd_data.next = self.rd_data.val() | (self.cq_base.q.val().get_bits::<32>(0));
        }
        if self.rd_sel.q.val().get_bit(34) {
            self.rd_data.next = self.rd_data.val() | (self.cq_base.q.val().get_bits::<32>(32));
        }
        if self.rd_sel.q.val().get_bit(35) {
            self.rd_data.next = self.rd_data.val() | (bit_cast::<32, 4>(self.cq_log2.q.val()));
        }
        if self.rd_sel.q.val().get_bit(36) {
            self.rd_data.next = self.rd_data.val() | (bit_cast::<32, 16>(self.cq_head.q.val()));
        }
        if self.rd_sel.q.val().get_bit(37) {
            self.rd_data.next = self.rd_data.val() | (bit_cast::<32, 16>(self.cq_tail.q.val()));
        }
        if self.rd_sel.q.val().get_bit(38) {
            self.rd_data.next =
                self.rd_data.val() | (bit_cast::<32, 3>(self.irq_unit.status.val()));
        }
        if self.rd_sel.q.val().get_bit(39) {
            self.rd_data.next = self.rd_data.val() | (bit_cast::<32, 3>(self.irq_unit.mask.val()));
        }
        if self.rd_sel.q.val().get_bit(40) {
            self.rd_data.next = self.rd_data.val() | (self.ops_ok.q.val());
        }
        if self.rd_sel.q.val().get_bit(41) {
            self.rd_data.next = self.rd_data.val() | (self.ops_failed.q.val());
        }
        if self.rd_sel.q.val().get_bit(42) {
            self.rd_data.next = self.rd_data.val() | (bit_cast::<32, 4>(self.pt_index.q.val()));
        }
        // An entry without VALID reads back as zero (reset clears only the valid bits).
        if self.rd_sel.q.val().get_bit(43) & self.pt_view_valid.q.val() {
            self.rd_data.next = self.rd_data.val() | (self.pt_view.q.val().get_bits::<32>(0));
        }
        if self.rd_sel.q.val().get_bit(44) & self.pt_view_valid.q.val() {
            self.rd_data.next = self.rd_data.val() | (self.pt_view.q.val().get_bits::<32>(32));
        }
        if self.rd_sel.q.val().get_bit(45) & self.pt_view_valid.q.val() {
            self.rd_data.next =
                self.rd_data.val() | (bit_cast::<32, 8>(self.pt_view.q.val().get_bits::<8>(64)));
        }
        self.pt_view.d.next = self.pt_csr.read_data.val().get_bits::<72>(28);
        self.pt_view_valid.d.next = self.pt_valid.q.val().get_bit(self.pt_index.q.val().index());
        // The read mux gets a cycle of its own (AxiLiteCsr samples rd_data
        // two cycles after its strobe: decode, then mux).
        self.rd_q.d.next = self.rd_data.val();
        self.axil.rd_data.next = self.rd_q.q.val();

        // ---- register writes ----
        if self.wr_q.q.val() {
            if self.wr_addr_q.q.val() == self.r_ctrl.val() {
                self.ctrl.d.next = self.wr_data_q.q.val().get_bits::<2>(0);
            } else if self.wr_addr_q.q.val() == self.r_scratch.val() {
                self.scratch.d.next = self.wr_data_q.q.val();
            } else if self.wr_addr_q.q.val() == self.r_dq_base_lo.val() {
                self.dq_base.d.next = (bit_cast::<64, 32>(self.dq_base.q.val().get_bits::<32>(32))
                    << 32)
                    | bit_cast::<64, 32>(self.wr_data_q.q.val());
            } else if self.wr_addr_q.q.val() == self.r_dq_base_hi.val() {
                self.dq_base.d.next = (bit_cast::<64, 32>(self.wr_data_q.q.val()) << 32)
                    | bit_cast::<64, 32>(self.dq_base.q.val().get_bits::<32>(0));
            } else if self.wr_addr_q.q.val() == self.r_dq_size_log2.val() {
                self.dq_log2.d.next = self.wr_data_q.q.val().get_bits::<4>(0);
            } else if self.wr_addr_q.q.val() == self.r_dq_tail.val() {
                if bit_cast::<17, 16>(self.tail_dist_q.q.val()) > self.dq_size_q.q.val() {
                    self.ring_error.d.next = true;
                    self.ovf_pending.d.next = true;
                    self.ovf_tail.d.next = self.wr_data_q.q.val().get_bits::<16>(0);
                } else {
                    self.dq_tail.d.next = self.wr_data_q.q.val().get_bits::<16>(0);
                }
            } else if self.wr_addr_q.q.val() == self.r_cq_base_lo.val() {
                self.cq_base.d.next = (bit_cast::<64, 32>(self.cq_base.q.val().get_bits::<32>(32))
                    << 32)
                    | bit_cast::<64, 32>(self.wr_data_q.q.val());
            } else if self.wr_addr_q.q.val() == self.r_cq_base_hi.val() {
                self.cq_base.d.next = (bit_cast::<64, 32>(self.wr_data_q.q.val()) << 32)
                    | bit_cast::<64, 32>(self.cq_base.q.val().get_bits::<32>(0));
            } else if self.wr_addr_q.q.val() == self.r_cq_size_log2.val() {
                self.cq_log2.d.next = self.wr_data_q.q.val().get_bits::<4>(0);
            } else if self.wr_addr_q.q.val() == self.r_cq_tail.val() {
                self.cq_tail.d.next = self.wr_data_q.q.val().get_bits::<16>(0);
            } else if self.wr_addr_q.q.val() == self.r_irq_status.val() {
                self.irq_clear.next = self.wr_data_q.q.val().get_bits::<3>(0);
            } else if self.wr_addr_q.q.val() == self.r_irq_mask.val() {
                self.irq_unit.mask_write.next = true;
            } else if self.wr_addr_q.q.val() == self.r_pt_index.val() {
                self.pt_index.d.next = self.wr_data_q.q.val().get_bits::<4>(0);
            } else if self.wr_addr_q.q.val() == self.r_pt_key_tag.val() {
                self.pt_tag.d.next = self.wr_data_q.q.val().get_bits::<28>(4);
            } else if self.wr_addr_q.q.val() == self.r_pt_base.val() {
                self.pt_base.d.next = self.wr_data_q.q.val();
            } else if self.wr_addr_q.q.val() == self.r_pt_len.val() {
                self.pt_len.d.next = self.wr_data_q.q.val();
            } else if self.wr_addr_q.q.val() == self.r_pt_perm.val() {
                self.pt_perm.d.next = self.wr_data_q.q.val().get_bits::<8>(0);
            } else if self.wr_addr_q.q.val() == self.r_pt_commit.val() {
                self.pt_eng.write_enable.next = true;
                self.pt_csr.write_enable.next = true;
                self.pt_valid.d.next = self.pt_valid.q.val().replace_bit(
                    self.pt_index.q.val().index(),
                    self.pt_perm.q.val().get_bit(0),
                );
            }
        }

        // ---- engine port defaults ----
        self.router.eng_sel.next = self.eng_sel.q.val();
        self.router.src_sel.next = self.m_src_sel.q.val();
        self.router.dst_sel.next = self.m_dst_sel.q.val();
        self.router.mover_active.next = self.mover.busy.val();
        self.eng_slice.up.cmd_valid.next = false;
        self.eng_slice.up.cmd_write.next = false;
        self.eng_slice.up.cmd_addr.next = 0.into();
        self.eng_slice.up.cmd_wdata.next = 0.into();
        self.eng_slice.up.cmd_wstrb.next = 0xFF.into();
        self.want.next = false;
        self.eng_fire.next = false;
        self.eng_ack.next = self.eng_slice.up.rsp_valid.val();
        self.mover.start.next = false;
        self.mover.src_addr.next = self.m_src.q.val();
        self.mover.dst_addr.next = self.m_dst.q.val();
        self.mover.len.next = self.m_len.q.val();
        self.mover.has_dst.next = self.m_has_dst.q.val();
        self.mover.ext_init.next = false;
        self.mover.ext_valid.next = false;
        self.mover.ext_data.next = 0.into();
        self.ws.next = 0.into();
        self.mismatch.next = self.f_check.val() & (self.res_crc.q.val() != self.xcrc.val());

        // One word of the superblock being committed (word 7 is its CRC),
        // selected only while committing so nothing wide is built per cycle.
        self.sb_sel.next =
            (self.phase.q.val() == Phase::CommitCrc) | (self.phase.q.val() == Phase::CommitWrite);
        self.sb_commit.word_sel.next = self.sb_sel.val();
        self.sb_commit.word_idx.next = self.sb_idx.q.val();
        self.sb_commit.sb_crc.next = self.crc0.q.val();
        // The new superblock: one strobe per kind of commit, from its phase.
        self.sb_commit.flip.next = self.phase.q.val() == Phase::CommitFlip;
        self.sb_commit.len.next = self.len.val();
        self.sb_commit.crc.next = self.res_crc.q.val();
        self.sb_commit.trim.next = self.phase.q.val() == Phase::CommitTrim;
        self.sb_commit.tail.next = self.aux.val();
        self.sb_commit.log.next = self.phase.q.val() == Phase::CommitLog;
        self.sb_commit.need.next = self.app_need.q.val();

        // The boot scan's judgement: strobed by its phases below.
        self.sb_scan.clear.next = self.scan_clear.q.val();
        self.sb_scan.word_valid.next = false;
        self.sb_scan.word_idx.next = self.got.q.val().get_bits::<3>(0);
        self.sb_scan.word.next = self.eng_slice.up.rsp_data.val();
        self.sb_scan.check.next = false;
        self.sb_scan.crc.next = self.mover.crc.val();
        self.sb_scan.take.next = false;
        self.sb_scan.second.next = self.slot.q.val();
        self.sb_scan.region_first.next = false;
        self.sb_scan.verdict.next = false;
        self.sb_scan.region_ok.next = self.boot_crc_ok.q.val();

        self.used.next = bit_cast::<34, 32>(self.cur.val().log_head - self.cur.val().log_tail);
        self.pad_l.next = 0.into();
        if (self.app_pos.q.val() + self.app_rec.q.val()) > self.k_log_size.val() {
            self.pad_l.next = self.k_log_size.val() - self.app_pos.q.val();
        }
        self.chk.next = 0.into();
        self.need_perm.next = 0.into();
        self.is_data_op.next =
            self.is_write.val() | self.is_read.val() | self.is_validate.val() | self.is_copy.val();
        // Permission each operation needs (perm bits of the contract).
        if self.is_write.val() {
            self.need_perm.next = self.k_perm_write.val();
            if self.f_commit.val() {
                self.need_perm.next = self.k_perm_write.val() | self.k_perm_commit.val();
            }
        } else if self.is_read.val() | self.is_validate.val() {
            self.need_perm.next = self.k_perm_read.val();
        } else if self.is_copy.val() {
            self.need_perm.next = self.k_perm_read.val() | self.k_perm_write.val();
        } else if self.is_flip.val() {
            self.need_perm.next = self.k_perm_commit.val();
        } else if self.is_append.val() | self.is_trim.val() {
            self.need_perm.next = self.k_perm_log.val();
        }
        self.key_bad.d.next =
            !self.e_valid.val() | (self.e_tag.val() != self.key.val().get_bits::<28>(4));
        self.perm_bad.d.next = (self.f_cold.val() & !self.p_cold.val())
            | (!self.f_cold.val() & !self.p_warm.val())
            | (self.is_copy.val()
                & ((self.f_src_cold.val() & !self.p_cold.val())
                    | (!self.f_src_cold.val() & !self.p_warm.val())))
            | ((self.e_perm.val() & self.need_perm.val()) != self.need_perm.val());

        self.scan_clear.d.next = false;
        match self.phase.q.val() {
            // ================= boot scan =================
            Phase::BootStart => {
                // (`scan_clear` blanks the judgement's state now.)
                self.slot.d.next = false;
                self.eng_sel.d.next = self.tier_sel.val();
                self.phase.d.next = Phase::BootSlot;
            }
            Phase::BootSlot => {
                // Read one superblock slot; its words stream through the CRC
                // unit and into the judgement as they arrive (no 512-bit buffer).
                self.mover.ext_init.next = true;
                self.issued.d.next = 0.into();
                self.got.d.next = 0.into();
                self.phase.d.next = Phase::BootRead;
            }
            Phase::BootRead => {
                self.want.next = self.issued.q.val() < 8;
                self.eng_slice.up.cmd_valid.next = self.want.val();
                self.eng_slice.up.cmd_addr.next = (bit_cast::<64, 1>(self.slot.q.val().into())
                    << 6)
                    + (bit_cast::<64, 5>(self.issued.q.val()) << 3);
                self.eng_fire.next = self.want.val() & self.eng_slice.up.cmd_ready.val();
                if self.eng_fire.val() {
                    self.issued.d.next = self.issued.q.val() + 1;
                }
                self.ws.next = self.eng_slice.up.rsp_data.val();
                if self.eng_ack.val() {
                    // The word into the CRC unit (words 0-6) and into the
                    // judgement (all eight).
                    self.got.d.next = self.got.q.val() + 1;
                    self.sb_scan.word_valid.next = true;
                    if self.got.q.val() < 7 {
                        self.mover.ext_valid.next = true;
                        self.mover.ext_data.next = self.ws.val();
                    } else {
                        // Word 7 is the slot's own CRC; word 6 is still in
                        // the CRC unit's input stage: judge in BootSlotEnd.
                        self.phase.d.next = Phase::BootSlotEnd;
                    }
                }
            }
            Phase::BootSlotEnd => {
                if self.mover.crc_idle.val() {
                    self.sb_scan.check.next = true;
                    self.phase.d.next = Phase::BootSlotTake;
                }
            }
            Phase::BootSlotTake => {
                self.sb_scan.take.next = true;
                if self.slot.q.val() {
                    self.phase.d.next = Phase::BootPick;
                } else {
                    self.slot.d.next = true;
                    self.phase.d.next = Phase::BootSlot;
                }
            }
            Phase::BootPick => {
                self.sb_scan.region_first.next = true;
                self.phase.d.next = Phase::BootSel;
                if !self.sb_scan.have.val() {
                    // Blank tier: the judgement's state is still the zero
                    // state of BootStart, whose result field is EMPTY.
                    self.phase.d.next = Phase::BootNext;
                }
            }
            Phase::BootSel => {
                // The region under test's length and CRC, registered.
                self.sc_len.d.next = self.sb_scan.region_len.val();
                self.sc_crc.d.next = self.sb_scan.region_crc.val();
                self.sc_big.d.next =
                    bit_cast::<64, 32>(self.sb_scan.region_len.val()) > self.k_region_size.val();
                self.phase.d.next = Phase::BootCheck;
            }
            Phase::BootCheck => {
                self.m_src.d.next = self.k_region_a.val();
                if self.sb_scan.region_b.val() {
                    self.m_src.d.next = self.k_region_b.val();
                }
                self.m_src_sel.d.next = self.tier_sel.val();
                self.m_dst_sel.d.next = self.k_sel_none.val();
                self.m_has_dst.d.next = false;
                self.m_len.d.next = self.sc_len.q.val();
                // The CRC the region must have, written here whatever
                // follows, so the phase alone enables `res_crc`.
                self.res_crc.d.next = self.sc_crc.q.val();
                if self.sc_big.q.val() {
                    // A length the region cannot hold fails its integrity test.
                    self.res_crc.d.next = !self.sc_crc.q.val();
                    self.phase.d.next = Phase::BootWait;
                } else {
                    self.phase.d.next = Phase::BootGo;
                }
            }
            Phase::BootGo => {
                self.mover.start.next = true;
                self.phase.d.next = Phase::BootWait;
            }
            Phase::BootWait => {
                if !self.mover.busy.val() {
                    self.boot_crc_ok.d.next = (self.mover.crc.val() == self.sc_crc.q.val())
                        & (self.res_crc.q.val() == self.sc_crc.q.val());
                    self.phase.d.next = Phase::BootJudge;
                }
            }
            Phase::BootJudge => {
                // OK, FELL_BACK or LOST (the judgement's), or the other
                // region next.
                self.sb_scan.verdict.next = true;
                if self.boot_crc_ok.q.val() | self.sb_scan.tried.val() {
                    self.phase.d.next = Phase::BootNext;
                } else {
                    self.phase.d.next = Phase::BootSel;
                }
            }
            Phase::BootNext => {
                if self.tier.q.val() {
                    self.cold_st.d.next = self.sb_scan.state.val();
                    self.tier.d.next = false;
                    self.boot_done.d.next = true;
                    self.irq_set.next = self.k_irq_boot_done.val();
                    self.phase.d.next = Phase::Idle;
                } else {
                    self.warm_st.d.next = self.sb_scan.state.val();
                    self.tier.d.next = true;
                    self.phase.d.next = Phase::BootStart;
                    self.scan_clear.d.next = true;
                }
            }
            // ================= descriptor processing =================
            Phase::Idle => {
                self.issued.d.next = 0.into();
                self.got.d.next = 0.into();
                self.eng_sel.d.next = self.k_sel_host.val();
                self.ring_addr.d.next = self.cq_base.q.val()
                    + (bit_cast::<64, 16>(self.cq_head.q.val() & self.cq_mask.q.val()) << 4);
                if self.ovf_pending.q.val() & self.cq_room_q.q.val() {
                    self.ovf_pending.d.next = false;
                    self.cpl_is_ovf.d.next = true;
                    self.status.d.next = self.k_st_ring_overflow.val();
                    self.cpl_w0.d.next = bit_cast::<64, 16>(0xFFFF.into())
                        | (bit_cast::<64, 8>(self.k_st_ring_overflow.val()) << 16);
                    self.cpl_w1.d.next = (bit_cast::<64, 16>(self.ovf_tail.q.val()) << 32)
                        | (bit_cast::<64, 1>((!self.cq_shifted.val().get_bit(0)).into()) << 63);
                    self.phase.d.next = Phase::CplWrite;
                } else if (self.ctrl.q.val() & self.k_ctrl_enable.val()).any()
                    & self.boot_done.q.val()
                    & (self.dq_head.q.val() != self.dq_tail.q.val())
                    & self.cq_room_q.q.val()
                {
                    self.cpl_is_ovf.d.next = false;
                    self.ring_addr.d.next = self.dq_base.q.val()
                        + (bit_cast::<64, 16>(self.dq_head.q.val() & self.dq_mask.q.val()) << 5);
                    self.phase.d.next = Phase::Fetch;
                }
            }
            Phase::Fetch => {
                self.want.next = self.issued.q.val() < 4;
                self.eng_slice.up.cmd_valid.next = self.want.val();
                self.eng_slice.up.cmd_addr.next = self.ring_addr.q.val();
                self.eng_fire.next = self.want.val() & self.eng_slice.up.cmd_ready.val();
                if self.eng_fire.val() {
                    self.issued.d.next = self.issued.q.val() + 1;
                    self.ring_addr.d.next = self.ring_addr.q.val() + 8;
                }
                if self.eng_ack.val() {
                    self.desc.d.next = (self.desc.q.val() >> 64)
                        | (bit_cast::<256, 64>(self.eng_slice.up.rsp_data.val()) << 192);
                    self.got.d.next = self.got.q.val() + 1;
                }
                if self.got.q.val() == 4 {
                    self.phase.d.next = Phase::PtWait;
                }
            }
            Phase::PtWait => {
                self.phase.d.next = Phase::PtCap;
            }
            Phase::PtCap => {
                self.entry.d.next = self.pt_eng.read_data.val();
                self.tier.d.next = self.f_cold.val();
                self.phase.d.next = Phase::Translate;
            }
            // Address checks, a carry chain or two per cycle (the
            // sequencer's longest paths were these sums and compares).
            Phase::Translate => {
                self.rel.d.next =
                    bit_cast::<64, 32>(self.e_base.val()) + bit_cast::<64, 32>(self.off.val());
                self.t_src_rel.d.next =
                    bit_cast::<64, 32>(self.e_base.val()) + bit_cast::<64, 32>(self.aux.val());
                self.t_off_end.d.next =
                    bit_cast::<64, 32>(self.off.val()) + bit_cast::<64, 32>(self.len.val());
                self.t_aux_end.d.next =
                    bit_cast::<64, 32>(self.aux.val()) + bit_cast::<64, 32>(self.len.val());
                self.long_len.d.next = self.len.val() > self.k_max_xfer.val();
                self.flip_len_bad.d.next =
                    bit_cast::<64, 32>(self.len.val()) > self.k_region_size.val();
                self.t_trim_a.d.next = self.aux.val() - self.cur.val().log_tail;
                self.t_trim_b.d.next = self.cur.val().log_head - self.cur.val().log_tail;
                self.app_rec.d.next = ((self.len.val() + 7) >> 3 << 3) + self.k_log_overhead.val();
                self.app_pos.d.next = self.cur.val().log_head & self.k_log_mask.val();
                self.phase.d.next = Phase::Translate2;
            }
            Phase::Translate2 => {
                self.t_end.d.next = self.rel.q.val() + bit_cast::<64, 32>(self.len.val());
                self.t_src_end.d.next = self.t_src_rel.q.val() + bit_cast::<64, 32>(self.len.val());
                self.trim_bad.d.next = self.t_trim_a.q.val() > self.t_trim_b.q.val();
                if self.p_region.val() {
                    // Region-relative window.
                    self.phys.d.next = self.alt_base.val() + self.rel.q.val();
                    if (self.is_read.val() | self.is_validate.val()) & !self.f_alt.val() {
                        self.phys.d.next = self.act_base.val() + self.rel.q.val();
                    }
                    self.src_phys.d.next = self.sact_base.val() + self.t_src_rel.q.val();
                } else {
                    self.phys.d.next = self.rel.q.val();
                    self.src_phys.d.next = self.t_src_rel.q.val();
                }
                self.phase.d.next = Phase::Translate3;
            }
            Phase::Translate3 => {
                self.oor.d.next = (self.t_off_end.q.val() > bit_cast::<64, 32>(self.e_len.val()))
                    | (self.is_copy.val()
                        & (self.t_aux_end.q.val() > bit_cast::<64, 32>(self.e_len.val())));
                if self.p_region.val() {
                    if (self.t_end.q.val() > self.k_region_size.val())
                        | (self.is_copy.val() & (self.t_src_end.q.val() > self.k_region_size.val()))
                    {
                        self.oor.d.next = true;
                    }
                } else if (self.t_end.q.val() > self.k_total.val())
                    | (self.is_copy.val() & (self.t_src_end.q.val() > self.k_total.val()))
                {
                    self.oor.d.next = true;
                }
                self.t_dst_hi.d.next = self.phys.q.val() + bit_cast::<64, 32>(self.len.val());
                self.t_src_hi.d.next = self.src_phys.q.val() + bit_cast::<64, 32>(self.len.val());
                self.phase.d.next = Phase::Translate4;
            }
            Phase::Translate4 => {
                // A COPY within one tier must not overlap itself.
                self.overlap.d.next = self.is_copy.val()
                    & (self.f_cold.val() == self.f_src_cold.val())
                    & (self.src_phys.q.val() < self.t_dst_hi.q.val())
                    & (self.phys.q.val() < self.t_src_hi.q.val());
                self.phase.d.next = Phase::Check;
            }
            Phase::Check => {
                if self.op_bad.q.val() {
                    self.chk.next = self.k_st_bad_opcode.val();
                } else if self.is_nop.val() {
                    self.chk.next = self.k_st_ok.val();
                } else if self.key_bad.q.val() {
                    self.chk.next = self.k_st_bad_key.val();
                } else if self.perm_bad.q.val() {
                    self.chk.next = self.k_st_permission.val();
                } else if self.is_write.val()
                    & self.f_commit.val()
                    & (!self.p_region.val() | self.rel.q.val().any())
                {
                    self.chk.next = self.k_st_bad_commit.val();
                } else if ((self.is_data_op.val() | self.is_append.val())
                    & (!self.len.val().any() | self.long_len.q.val()))
                    | (self.is_flip.val() & self.flip_len_bad.q.val())
                {
                    self.chk.next = self.k_st_bad_length.val();
                } else if self.is_data_op.val()
                    & (self.off.val().get_bits::<3>(0).any()
                        | (self.is_copy.val() & self.aux.val().get_bits::<3>(0).any()))
                {
                    self.chk.next = self.k_st_bad_align.val();
                } else if self.is_data_op.val() & (self.oor.q.val() | self.overlap.q.val()) {
                    self.chk.next = self.k_st_out_of_range.val();
                }
                self.status.d.next = self.chk.val();
                self.res_crc.d.next = 0.into();
                self.info.d.next = 0.into();
                self.phase.d.next = Phase::Dispatch;
            }
            Phase::Dispatch => {
                // The checks' verdict is in `status` (registered in Check).
                self.m_len.d.next = self.len.val();
                self.m_has_dst.d.next = true;
                self.phase.d.next = Phase::CplBuild;
                if self.status.q.val().any() | self.is_nop.val() {
                    self.phase.d.next = Phase::CplBuild;
                } else if self.is_write.val() {
                    self.m_src.d.next = self.desc.q.val().get_bits::<64>(64);
                    self.m_src_sel.d.next = self.k_sel_host.val();
                    self.m_dst.d.next = self.phys.q.val();
                    self.m_dst_sel.d.next = self.tier_sel.val();
                    self.phase.d.next = Phase::ExecStart;
                } else if self.is_read.val() {
                    self.m_src.d.next = self.phys.q.val();
                    self.m_src_sel.d.next = self.tier_sel.val();
                    self.m_dst.d.next = self.desc.q.val().get_bits::<64>(64);
                    self.m_dst_sel.d.next = self.k_sel_host.val();
                    self.phase.d.next = Phase::ExecStart;
                } else if self.is_validate.val() {
                    self.m_src.d.next = self.phys.q.val();
                    self.m_src_sel.d.next = self.tier_sel.val();
                    self.m_dst_sel.d.next = self.k_sel_none.val();
                    self.m_has_dst.d.next = false;
                    self.phase.d.next = Phase::ExecStart;
                } else if self.is_copy.val() {
                    self.m_src.d.next = self.src_phys.q.val();
                    self.m_src_sel.d.next = self.stier_sel.val();
                    self.m_dst.d.next = self.phys.q.val();
                    self.m_dst_sel.d.next = self.tier_sel.val();
                    self.phase.d.next = Phase::ExecStart;
                } else if self.is_flip.val() {
                    self.m_src.d.next = self.alt_base.val();
                    self.m_src_sel.d.next = self.tier_sel.val();
                    self.m_dst_sel.d.next = self.k_sel_none.val();
                    self.m_has_dst.d.next = false;
                    self.phase.d.next = Phase::ExecStart;
                } else if self.is_append.val() {
                    self.phase.d.next = Phase::AppPlan;
                } else {
                    // LOG_TRIM
                    if self.trim_bad.q.val() {
                        self.status.d.next = self.k_st_bad_trim.val();
                    } else {
                        self.info.d.next = self.aux.val();
                        self.phase.d.next = Phase::CommitTrim;
                    }
                }
            }
            Phase::ExecStart => {
                self.mover.start.next = true;
                self.phase.d.next = Phase::ExecWait;
            }
            Phase::ExecWait => {
                // Taken every cycle (the last one counts): the phase alone
                // enables `res_crc`, not the mover's `busy`.
                self.res_crc.d.next = self.mover.crc.val();
                if !self.mover.busy.val() {
                    self.phase.d.next = Phase::ExecCmp;
                }
            }
            Phase::ExecCmp => {
                self.mism.d.next = self.mismatch.val();
                self.phase.d.next = Phase::ExecDone;
            }
            Phase::ExecDone => {
                self.info.d.next = self.len.val();
                self.phase.d.next = Phase::CplBuild;
                if self.mism.q.val() {
                    self.status.d.next = self.k_st_crc_mismatch.val();
                    if self.is_flip.val() {
                        self.info.d.next = 0.into();
                    }
                } else if (self.is_write.val() & self.f_commit.val()) | self.is_flip.val() {
                    if self.is_flip.val() {
                        self.info.d.next = self.cur_seq.val().get_bits::<32>(0) + 1;
                    }
                    self.phase.d.next = Phase::CommitFlip;
                }
            }
            // The new superblock is built in phases of its own, one per kind
            // of commit (`SbCommit`'s strobes), so its ~330 flip-flops are
            // enabled by the phase alone: deciding whether to commit (the op
            // decode, the checks' verdict, the CRC compare) was the design's
            // longest path when it also drove their enable.
            Phase::CommitFlip => {
                self.k.d.next = 0.into();
                self.phase.d.next = Phase::CommitCrc;
            }
            Phase::CommitTrim => {
                self.k.d.next = 0.into();
                self.phase.d.next = Phase::CommitCrc;
            }
            Phase::CommitLog => {
                self.k.d.next = 0.into();
                self.phase.d.next = Phase::CommitCrc;
            }
            // ================= APPEND =================
            Phase::AppPlan => {
                self.app_pad.d.next = self.pad_l.val();
                self.app_used.d.next = self.used.val();
                self.phase.d.next = Phase::AppPlan2;
            }
            Phase::AppPlan2 => {
                self.app_need.d.next = self.app_pad.q.val() + self.app_rec.q.val();
                self.app_room.d.next =
                    bit_cast::<34, 32>(self.k_log_size.val()) - self.app_used.q.val();
                self.app_start.d.next = 0.into();
                if !self.app_pad.q.val().any() {
                    self.app_start.d.next = self.app_pos.q.val();
                }
                self.info.d.next = self.cur.val().log_head + self.app_pad.q.val();
                self.eng_sel.d.next = self.tier_sel.val();
                self.issued.d.next = 1.into();
                if self.app_pad.q.val().any() {
                    self.issued.d.next = 0.into();
                }
                self.phase.d.next = Phase::AppPlan3;
            }
            Phase::AppPlan3 => {
                // Bit 33 set: more used than the log holds (a wrapped room).
                self.app_full.d.next = (bit_cast::<34, 32>(self.app_need.q.val())
                    > self.app_room.q.val())
                    | self.app_room.q.val().get_bit(33);
                self.phase.d.next = Phase::AppPlan4;
            }
            Phase::AppPlan4 => {
                if self.app_full.q.val() {
                    self.status.d.next = self.k_st_log_full.val();
                    self.info.d.next = 0.into();
                    self.phase.d.next = Phase::CplBuild;
                } else {
                    self.phase.d.next = Phase::AppHdr;
                }
            }
            Phase::AppHdr => {
                self.want.next = self.issued.q.val() < 3;
                self.eng_slice.up.cmd_valid.next = self.want.val();
                self.eng_slice.up.cmd_write.next = true;
                if self.issued.q.val() == 0 {
                    self.eng_slice.up.cmd_addr.next =
                        self.k_log_base.val() + bit_cast::<64, 32>(self.app_pos.q.val());
                    self.eng_slice.up.cmd_wdata.next =
                        self.k_pad_magic.val() | (bit_cast::<64, 32>(self.app_pad.q.val()) << 32);
                } else if self.issued.q.val() == 1 {
                    self.eng_slice.up.cmd_addr.next =
                        self.k_log_base.val() + bit_cast::<64, 32>(self.app_start.q.val());
                    self.eng_slice.up.cmd_wdata.next =
                        self.k_rec_magic.val() | (bit_cast::<64, 32>(self.len.val()) << 32);
                } else {
                    self.eng_slice.up.cmd_addr.next =
                        self.k_log_base.val() + bit_cast::<64, 32>(self.app_start.q.val()) + 8;
                    self.eng_slice.up.cmd_wdata.next = self.cur.val().log_seq;
                }
                self.eng_fire.next = self.want.val() & self.eng_slice.up.cmd_ready.val();
                if self.eng_fire.val() {
                    self.issued.d.next = self.issued.q.val() + 1;
                }
                if self.issued.q.val() == 3 {
                    self.phase.d.next = Phase::AppAck;
                }
            }
            Phase::AppAck => {
                self.m_src.d.next = self.desc.q.val().get_bits::<64>(64);
                self.m_src_sel.d.next = self.k_sel_host.val();
                self.m_dst.d.next = self.k_log_base.val()
                    + bit_cast::<64, 32>(self.app_start.q.val())
                    + self.k_log_hdr.val();
                self.m_dst_sel.d.next = self.tier_sel.val();
                self.m_has_dst.d.next = true;
                if !self.eng_inflight.q.val().any() {
                    self.phase.d.next = Phase::AppData;
                }
            }
            Phase::AppData => {
                self.mover.start.next = true;
                self.phase.d.next = Phase::AppDataWait;
            }
            Phase::AppDataWait => {
                self.res_crc.d.next = self.mover.crc.val();
                if !self.mover.busy.val() {
                    self.issued.d.next = 0.into();
                    self.phase.d.next = Phase::AppTrailer;
                }
            }
            Phase::AppTrailer => {
                self.want.next = !self.issued.q.val().any();
                self.eng_slice.up.cmd_valid.next = self.want.val();
                self.eng_slice.up.cmd_write.next = true;
                self.eng_slice.up.cmd_addr.next = self.k_log_base.val()
                    + bit_cast::<64, 32>(self.app_start.q.val())
                    + bit_cast::<64, 32>(self.app_rec.q.val())
                    - self.k_log_trl.val();
                self.eng_slice.up.cmd_wdata.next = bit_cast::<64, 32>(self.res_crc.q.val())
                    | (bit_cast::<64, 32>(!self.res_crc.q.val()) << 32);
                self.eng_fire.next = self.want.val() & self.eng_slice.up.cmd_ready.val();
                if self.eng_fire.val() {
                    self.issued.d.next = 1.into();
                }
                if self.issued.q.val().any() {
                    self.phase.d.next = Phase::AppTrailerAck;
                }
            }
            Phase::AppTrailerAck => {
                if !self.eng_inflight.q.val().any() {
                    self.phase.d.next = Phase::CommitLog;
                }
            }
            // ================= commit =================
            Phase::CommitCrc => {
                // Word k-1 is folded at step k: sb_idx runs one step ahead.
                self.sb_idx.d.next = self.k.q.val().get_bits::<3>(0);
                self.k.d.next = self.k.q.val() + 1;
                if self.k.q.val() == 0 {
                    self.mover.ext_init.next = true;
                } else if self.k.q.val() < 8 {
                    self.mover.ext_valid.next = true;
                    self.mover.ext_data.next = self.sb_commit.word.val();
                } else if !self.mover.crc_idle.val() {
                    // The last word is still in the CRC unit's input stage.
                    self.k.d.next = self.k.q.val();
                } else {
                    self.crc0.d.next = self.mover.crc.val();
                    self.issued.d.next = 0.into();
                    self.sb_idx.d.next = 0.into();
                    self.eng_sel.d.next = self.tier_sel.val();
                    self.phase.d.next = Phase::CommitWrite;
                }
            }
            Phase::CommitWrite => {
                self.want.next = self.issued.q.val() < 8;
                self.eng_slice.up.cmd_valid.next = self.want.val();
                self.eng_slice.up.cmd_write.next = true;
                self.eng_slice.up.cmd_addr.next =
                    (bit_cast::<64, 1>(self.sb_commit.slot.val().into()) << 6)
                        + (bit_cast::<64, 5>(self.issued.q.val()) << 3);
                self.eng_slice.up.cmd_wdata.next = self.sb_commit.word.val();
                self.eng_fire.next = self.want.val() & self.eng_slice.up.cmd_ready.val();
                if self.eng_fire.val() {
                    self.issued.d.next = self.issued.q.val() + 1;
                    self.sb_idx.d.next = self.issued.q.val().get_bits::<3>(0) + 1;
                }
                if self.issued.q.val() == 8 {
                    self.phase.d.next = Phase::CommitAck;
                }
            }
            Phase::CommitAck => {
                if !self.eng_inflight.q.val().any() {
                    if self.tier.q.val() {
                        self.cold_st.d.next = self.sb_commit.new_sb.val();
                        self.cold_st.d.next.result = self.k_res_ok.val();
                    } else {
                        self.warm_st.d.next = self.sb_commit.new_sb.val();
                        self.warm_st.d.next.result = self.k_res_ok.val();
                    }
                    self.phase.d.next = Phase::CplBuild;
                }
            }
            // ================= completion =================
            Phase::CplBuild => {
                self.cpl_w0.d.next = bit_cast::<64, 16>(self.desc.q.val().get_bits::<16>(16))
                    | (bit_cast::<64, 8>(self.status.q.val()) << 16)
                    | (bit_cast::<64, 8>(self.opcode.val()) << 24)
                    | (bit_cast::<64, 32>(self.res_crc.q.val()) << 32);
                self.cpl_w1.d.next = bit_cast::<64, 32>(self.info.q.val())
                    | (bit_cast::<64, 16>(self.dq_head.q.val()) << 32)
                    | (bit_cast::<64, 1>((!self.cq_shifted.val().get_bit(0)).into()) << 63);
                self.issued.d.next = 0.into();
                self.eng_sel.d.next = self.k_sel_host.val();
                self.ring_addr.d.next = self.cq_base.q.val()
                    + (bit_cast::<64, 16>(self.cq_head.q.val() & self.cq_mask.q.val()) << 4);
                self.phase.d.next = Phase::CplWrite;
            }
            Phase::CplWrite => {
                self.want.next = self.issued.q.val() < 2;
                self.eng_slice.up.cmd_valid.next = self.want.val();
                self.eng_slice.up.cmd_write.next = true;
                self.eng_slice.up.cmd_addr.next = self.ring_addr.q.val();
                self.eng_slice.up.cmd_wdata.next = self.cpl_w0.q.val();
                if self.issued.q.val().any() {
                    self.eng_slice.up.cmd_wdata.next = self.cpl_w1.q.val();
                }
                self.eng_fire.next = self.want.val() & self.eng_slice.up.cmd_ready.val();
                if self.eng_fire.val() {
                    self.issued.d.next = self.issued.q.val() + 1;
                    self.ring_addr.d.next = self.ring_addr.q.val() + 8;
                }
                if self.issued.q.val() == 2 {
                    self.phase.d.next = Phase::CplAck;
                }
            }
            Phase::CplAck => {
                if !self.eng_inflight.q.val().any() {
                    self.cq_head.d.next = self.cq_head.q.val() + 1;
                    if !self.cpl_is_ovf.q.val() {
                        self.dq_head.d.next = self.dq_head.q.val() + 1;
                    }
                    if self.status.q.val().any() {
                        self.ops_failed.d.next = self.ops_failed.q.val() + 1;
                        self.irq_set.next = self.k_irq_error.val();
                    } else {
                        self.ops_ok.d.next = self.ops_ok.q.val() + 1;
                    }
                    if self.f_irq.val() & !self.cpl_is_ovf.q.val() {
                        self.irq_set.next = self.irq_set.val() | self.k_irq_completion.val();
                    }
                    self.phase.d.next = Phase::CplDone;
                }
            }
            Phase::CplDone => {
                // One cycle for cq_room_q to see the new cq_head.
                self.phase.d.next = Phase::Idle;
            }
            _ => {
                self.phase.d.next = Phase::BootStart;
                self.scan_clear.d.next = true;
            }
        }

        // ---- engine port bookkeeping ----
        if self.eng_fire.val() & !self.eng_ack.val() {
            self.eng_inflight.d.next = self.eng_inflight.q.val() + 1;
        } else if !self.eng_fire.val() & self.eng_ack.val() & self.eng_inflight.q.val().any() {
            self.eng_inflight.d.next = self.eng_inflight.q.val() - 1;
        }

        // ---- interrupts (the rule is the unit's) ----
        self.irq_unit.raise.next = self.irq_set.val();
        self.irq_unit.clear.next = self.irq_clear.val();
        self.irq_unit.enable.next = (self.ctrl.q.val() & self.k_ctrl_irq_enable.val()).any();

        // ---- reset ----
        if self.reset.val() {
            self.wr_q.d.next = false;
            self.phase.d.next = Phase::BootStart;
            self.scan_clear.d.next = true;
            self.tier.d.next = false;
            self.ctrl.d.next = 0.into();
            self.scratch.d.next = 0.into();
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
            self.boot_done.d.next = false;
            self.ovf_pending.d.next = false;
            self.pt_index.d.next = 0.into();
            self.pt_tag.d.next = 0.into();
            self.pt_base.d.next = 0.into();
            self.pt_len.d.next = 0.into();
            self.pt_perm.d.next = 0.into();
            self.pt_valid.d.next = 0.into();
            self.eng_inflight.d.next = 0.into();
            self.warm_st.d.next = self.k_blank.val();
            self.cold_st.d.next = self.k_blank.val();
        }
    }
}
