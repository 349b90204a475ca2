//! The Zynq-7000 top-level (PYNQ-Z2 with its processing system): the
//! controller in the PL, reached by the PS's CPUs through the general
//! purpose AXI port and moving data to and from the PS DDR through a high
//! performance AXI port.
//!
//! - CSRs: the PS's `M_AXI_GP0` (AXI3, 32-bit data, 12-bit IDs) →
//!   [`Axi3CsrBridge`] → the controller's AXI4-Lite CSR port. The bridge
//!   echoes each transaction's ID and handles single-beat accesses (what a
//!   CPU's 32-bit load or store of device memory is); a burst (`AxLEN` > 0)
//!   is refused: every beat of it answers SLVERR and no register is touched.
//!   Partial strobes answer SLVERR as on every board (the CSR target's rule).
//! - DMA: the controller's host port → [`PmpToAxi4`] with AXI3's 16-beat
//!   bursts ([`AXI3_MAX_LEN`]), never across 4 KiB, 64-bit data, ID 0, on
//!   the PS's `S_AXI_HP0`: host memory is the PS DDR, at its physical
//!   addresses (the low 32 bits of the descriptor's host address). The
//!   `hp` port is an AXI4 bundle whose `awlen`/`arlen` never exceed 15, so
//!   the board wrapper passes bits 3:0 and ties WID to AWID (0).
//! - Warm tier: 16 KiB of block RAM with the board geometry
//!   ([`BOARD_GEOMETRY`]), as on the UART boards; cold tier: block RAM too
//!   (the board's flash belongs to the PS).
//! - `irq`: the controller's interrupt message stretched to
//!   [`IRQ_STRETCH`] cycles, for `IRQ_F2P` configured rising-edge
//!   (a one-cycle pulse at the PL clock could be shorter than the GIC's
//!   sampling period). Messages closer together than that are one edge;
//!   the driver reads `IRQ_STATUS` and the completion ring, not a count.
//! - LEDs as on the UART boards; LED 3 (error) also lights for a SLVERR or
//!   DECERR from the HP port (`dma_error`, sticky until reset: the
//!   controller has no status bit for a failed host access yet, so the
//!   operation completes with whatever data came back).
//! - Reset: `reset` (active high, from `FCLK_RESET0_N` inverted in the
//!   wrapper) synchronized, after a 16-cycle power-on reset; the HP port's
//!   adapter is reset with the controller.

use super::axi4::PmpToAxi4;
use super::board::{BOARD_GEOMETRY, BOARD_MEM_WORDS_LOG2};
use super::bram::PmpBram;
use super::bus::{Axi4Initiator, AxiLiteInitiator, PmpInitiator, CSR_ADDR_BITS};
use super::controller::HitlessController;
use super::flash::FlashTier;
use rust_hdl::prelude::*;

/// AXI3's longest burst (a Zynq-7000 HP port): 16 beats, 128 bytes here.
pub const AXI3_MAX_LEN: u32 = 16;

/// Bursts the DMA adapter keeps in flight on the HP port (its read and
/// write acceptance is 8 and 8; 4 keeps the bookkeeping small and already
/// covers the DDR latency at 16 beats a burst).
pub const HP_MAX_OUTSTANDING: u32 = 4;

/// ID width of the PS's general purpose master port (`M_AXI_GP0xID`).
pub const GP_ID_BITS: usize = 12;

/// ID width of the PS's high performance slave ports (`S_AXI_HP0xID`).
pub const HP_ID_BITS: usize = 6;

/// Cycles the interrupt line stays high per message.
pub const IRQ_STRETCH: u64 = 32;

/// AXI3 slave port as the PS's `M_AXI_GP0` drives it: 32-bit addresses and
/// data, `I`-bit IDs, 4-bit lengths. The attributes the bridge ignores
/// (size, burst type, lock, cache, protection, QoS, WID) are not in it.
#[derive(LogicInterface, Default)]
pub struct Axi3GpTarget<const I: usize> {
    /// Write address ID.
    pub awid: Signal<In, Bits<I>>,
    /// Write byte address.
    pub awaddr: Signal<In, Bits<32>>,
    /// Write burst length in beats minus one (AXI3: 4 bits).
    pub awlen: Signal<In, Bits<4>>,
    /// Write address valid.
    pub awvalid: Signal<In, Bit>,
    /// Write address accepted.
    pub awready: Signal<Out, Bit>,
    /// Write data.
    pub wdata: Signal<In, Bits<32>>,
    /// Write byte strobes.
    pub wstrb: Signal<In, Bits<4>>,
    /// Last beat of the write burst.
    pub wlast: Signal<In, Bit>,
    /// Write data valid.
    pub wvalid: Signal<In, Bit>,
    /// Write data accepted.
    pub wready: Signal<Out, Bit>,
    /// Write response ID (the transaction's AWID).
    pub bid: Signal<Out, Bits<I>>,
    /// Write response (0 OKAY, 2 SLVERR).
    pub bresp: Signal<Out, Bits<2>>,
    /// Write response valid.
    pub bvalid: Signal<Out, Bit>,
    /// Write response accepted.
    pub bready: Signal<In, Bit>,
    /// Read address ID.
    pub arid: Signal<In, Bits<I>>,
    /// Read byte address.
    pub araddr: Signal<In, Bits<32>>,
    /// Read burst length in beats minus one (AXI3: 4 bits).
    pub arlen: Signal<In, Bits<4>>,
    /// Read address valid.
    pub arvalid: Signal<In, Bit>,
    /// Read address accepted.
    pub arready: Signal<Out, Bit>,
    /// Read data ID (the transaction's ARID).
    pub rid: Signal<Out, Bits<I>>,
    /// Read data.
    pub rdata: Signal<Out, Bits<32>>,
    /// Read response (0 OKAY, 2 SLVERR).
    pub rresp: Signal<Out, Bits<2>>,
    /// Last beat of the read burst.
    pub rlast: Signal<Out, Bit>,
    /// Read data valid.
    pub rvalid: Signal<Out, Bit>,
    /// Read data accepted.
    pub rready: Signal<In, Bit>,
}

/// AXI3 slave with IDs → AXI4-Lite master: one write and one read at a
/// time, each answered with its own ID; bursts refused with SLVERR (see
/// the module doc). The CSR window is the low [`CSR_ADDR_BITS`] bits of
/// the address (the PS decodes the rest).
///
/// Timing shape: `awready`/`arready`/`*valid` and every response payload
/// are registers; `wready` is this bridge's registers and the CSR
/// target's registered `wready`; the single write beat passes straight to
/// the CSR target's W holding register.
#[derive(LogicBlock, Default)]
pub struct Axi3CsrBridge<const I: usize> {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset, active high.
    pub reset: Signal<In, Bit>,
    /// The AXI3 slave port (the PS's GP master).
    pub gp: Axi3GpTarget<I>,
    /// The AXI4-Lite master (to the controller's CSR port).
    pub csr: AxiLiteInitiator,
    // Write: the held address phase, whether it is a burst, whether its
    // address and data went to the CSR port, the response.
    aw_full: DFF<Bit>,
    aw_id: DFF<Bits<I>>,
    aw_addr: DFF<Bits<CSR_ADDR_BITS>>,
    aw_burst: DFF<Bit>,
    aw_sent: DFF<Bit>,
    w_sent: DFF<Bit>,
    b_v: DFF<Bit>,
    b_resp: DFF<Bits<2>>,
    // Read: the held address phase, beats left - 1 of a refused burst,
    // whether it went to the CSR port, the beat shown.
    ar_full: DFF<Bit>,
    ar_id: DFF<Bits<I>>,
    ar_addr: DFF<Bits<CSR_ADDR_BITS>>,
    ar_burst: DFF<Bit>,
    ar_left: DFF<Bits<4>>,
    ar_sent: DFF<Bit>,
    r_v: DFF<Bit>,
    r_data: DFF<Bits<32>>,
    r_resp: DFF<Bits<2>>,
    r_last: DFF<Bit>,
    w_single: Signal<Local, Bit>,
    w_fire: Signal<Local, Bit>,
}

impl<const I: usize> Logic for Axi3CsrBridge<I> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self, clock, aw_full, aw_id, aw_addr, aw_burst, aw_sent, w_sent, b_v, b_resp, ar_full,
            ar_id, ar_addr, ar_burst, ar_left, ar_sent, r_v, r_data, r_resp, r_last
        );
        // ---- Write address: held until its response is taken. Nothing is
        // taken during reset (which outlasts the PS's: the top's power-on
        // reset and synchronizer), or it would be forgotten.
        self.gp.awready.next = !self.aw_full.q.val() & !self.reset.val();
        if self.gp.awready.val() & self.gp.awvalid.val() {
            self.aw_full.d.next = true;
            self.aw_id.d.next = self.gp.awid.val();
            self.aw_addr.d.next = self.gp.awaddr.val().get_bits::<CSR_ADDR_BITS>(0);
            self.aw_burst.d.next = self.gp.awlen.val().any();
        }
        self.csr.awvalid.next =
            self.aw_full.q.val() & !self.aw_burst.q.val() & !self.aw_sent.q.val();
        self.csr.awaddr.next = self.aw_addr.q.val();
        if self.csr.awvalid.val() & self.csr.awready.val() {
            self.aw_sent.d.next = true;
        }
        // ---- Write data: a single beat goes to the CSR port; a refused
        // burst's beats are taken and dropped, its last one answers SLVERR.
        self.w_single.next = self.aw_full.q.val() & !self.aw_burst.q.val() & !self.w_sent.q.val();
        self.csr.wvalid.next = self.w_single.val() & self.gp.wvalid.val();
        self.csr.wdata.next = self.gp.wdata.val();
        self.csr.wstrb.next = self.gp.wstrb.val();
        self.gp.wready.next = (self.w_single.val() & self.csr.wready.val())
            | (self.aw_full.q.val() & self.aw_burst.q.val() & !self.b_v.q.val());
        self.w_fire.next = self.gp.wvalid.val() & self.gp.wready.val();
        if self.w_fire.val() & !self.aw_burst.q.val() {
            self.w_sent.d.next = true;
        }
        if self.w_fire.val() & self.aw_burst.q.val() & self.gp.wlast.val() {
            self.b_v.d.next = true;
            self.b_resp.d.next = 2.into();
        }
        // ---- Write response: the CSR port's, with the held ID.
        self.csr.bready.next = self.aw_full.q.val() & !self.aw_burst.q.val() & !self.b_v.q.val();
        if self.csr.bvalid.val() & self.csr.bready.val() {
            self.b_v.d.next = true;
            self.b_resp.d.next = self.csr.bresp.val();
        }
        self.gp.bvalid.next = self.b_v.q.val();
        self.gp.bid.next = self.aw_id.q.val();
        self.gp.bresp.next = self.b_resp.q.val();
        if self.b_v.q.val() & self.gp.bready.val() {
            self.b_v.d.next = false;
            self.aw_full.d.next = false;
            self.aw_sent.d.next = false;
            self.w_sent.d.next = false;
        }

        // ---- Read address: held until its last beat is taken.
        self.gp.arready.next = !self.ar_full.q.val() & !self.reset.val();
        if self.gp.arready.val() & self.gp.arvalid.val() {
            self.ar_full.d.next = true;
            self.ar_id.d.next = self.gp.arid.val();
            self.ar_addr.d.next = self.gp.araddr.val().get_bits::<CSR_ADDR_BITS>(0);
            self.ar_burst.d.next = self.gp.arlen.val().any();
            self.ar_left.d.next = self.gp.arlen.val();
        }
        self.csr.arvalid.next =
            self.ar_full.q.val() & !self.ar_burst.q.val() & !self.ar_sent.q.val();
        self.csr.araddr.next = self.ar_addr.q.val();
        if self.csr.arvalid.val() & self.csr.arready.val() {
            self.ar_sent.d.next = true;
        }
        self.csr.rready.next = self.ar_full.q.val() & !self.ar_burst.q.val() & !self.r_v.q.val();
        if self.csr.rvalid.val() & self.csr.rready.val() {
            self.r_v.d.next = true;
            self.r_data.d.next = self.csr.rdata.val();
            self.r_resp.d.next = self.csr.rresp.val();
            self.r_last.d.next = true;
        }
        // A refused burst: its beats, SLVERR, zero data, RLAST on the last.
        if self.ar_full.q.val() & self.ar_burst.q.val() & !self.r_v.q.val() {
            self.r_v.d.next = true;
            self.r_data.d.next = 0.into();
            self.r_resp.d.next = 2.into();
            self.r_last.d.next = !self.ar_left.q.val().any();
        }
        self.gp.rvalid.next = self.r_v.q.val();
        self.gp.rid.next = self.ar_id.q.val();
        self.gp.rdata.next = self.r_data.q.val();
        self.gp.rresp.next = self.r_resp.q.val();
        self.gp.rlast.next = self.r_last.q.val();
        if self.r_v.q.val() & self.gp.rready.val() {
            self.r_v.d.next = false;
            if self.r_last.q.val() {
                self.ar_full.d.next = false;
                self.ar_sent.d.next = false;
            } else {
                self.ar_left.d.next = self.ar_left.q.val() - 1;
            }
        }

        if self.reset.val() {
            self.aw_full.d.next = false;
            self.aw_sent.d.next = false;
            self.w_sent.d.next = false;
            self.b_v.d.next = false;
            self.ar_full.d.next = false;
            self.ar_sent.d.next = false;
            self.r_v.d.next = false;
        }
    }
}

/// The Zynq top-level (see the module doc).
#[derive(LogicBlock)]
pub struct ZynqTop {
    /// Clock (`FCLK_CLK0`, also the GP0 and HP0 port clocks).
    pub clock: Signal<In, Clock>,
    /// Reset request, active high (asynchronous; synchronized here).
    pub reset: Signal<In, Bit>,
    /// The PS's general purpose master port (CSRs).
    pub gp: Axi3GpTarget<GP_ID_BITS>,
    /// To the PS's high performance slave port (DMA to the PS DDR);
    /// `awlen`/`arlen` < 16.
    pub hp: Axi4Initiator<32, HP_ID_BITS>,
    /// Interrupt to the PS (`IRQ_F2P[0]`), [`IRQ_STRETCH`] cycles a message.
    pub irq: Signal<Out, Bit>,
    /// LEDs: 0 heartbeat, 1 warm active region, 2 cold active region, 3 error.
    pub leds: Signal<Out, Bits<4>>,
    /// Sticky: the HP port answered SLVERR or DECERR since reset.
    pub dma_error: Signal<Out, Bit>,
    ctrl: HitlessController,
    bridge: Axi3CsrBridge<GP_ID_BITS>,
    dma: PmpToAxi4<32, HP_ID_BITS>,
    warm_mem: PmpBram<BOARD_MEM_WORDS_LOG2>,
    cold_mem: FlashTier<BOARD_MEM_WORDS_LOG2>,
    rst_meta: DFF<Bit>,
    rst_sync: DFF<Bit>,
    por: DFF<Bits<4>>,
    rst: DFF<Bit>,
    beat: DFF<Bits<27>>,
    irq_left: DFF<Bits<6>>,
    irq_len: Constant<Bits<6>>,
}

impl Default for ZynqTop {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            reset: Default::default(),
            gp: Default::default(),
            hp: Default::default(),
            irq: Default::default(),
            leds: Default::default(),
            dma_error: Default::default(),
            ctrl: HitlessController::new(&BOARD_GEOMETRY),
            bridge: Default::default(),
            dma: PmpToAxi4::new(AXI3_MAX_LEN, HP_MAX_OUTSTANDING),
            warm_mem: Default::default(),
            cold_mem: FlashTier::volatile(),
            rst_meta: Default::default(),
            rst_sync: Default::default(),
            por: Default::default(),
            rst: Default::default(),
            beat: Default::default(),
            irq_left: Default::default(),
            irq_len: Constant::new(IRQ_STRETCH.into()),
        }
    }
}

const _: () = assert!(IRQ_STRETCH < 64);

impl Logic for ZynqTop {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, rst_meta, rst_sync, por, rst, beat, irq_left);
        clock!(self, clock, ctrl, bridge, dma, warm_mem, cold_mem);
        self.rst_meta.d.next = self.reset.val();
        self.rst_sync.d.next = self.rst_meta.q.val();
        if self.por.q.val() != 15 {
            self.por.d.next = self.por.q.val() + 1;
        }
        self.rst.d.next = (self.por.q.val() != 15) | self.rst_sync.q.val();
        self.beat.d.next = self.beat.q.val() + 1;
        self.ctrl.reset.next = self.rst.q.val();
        self.bridge.reset.next = self.rst.q.val();
        self.dma.reset.next = self.rst.q.val();
        self.cold_mem.reset.next = self.rst.q.val();
        // The volatile cold tier has no flash: its SPI input idles.
        self.cold_mem.miso.next = true;

        // GP0 → bridge → CSRs.
        Axi3GpTarget::<GP_ID_BITS>::link(&mut self.gp, &mut self.bridge.gp);
        AxiLiteInitiator::join(&mut self.bridge.csr, &mut self.ctrl.csr);

        // Host port (64-bit addresses) → DMA adapter (the HP port's 32).
        self.dma.pmp.cmd_valid.next = self.ctrl.host.cmd_valid.val();
        self.ctrl.host.cmd_ready.next = self.dma.pmp.cmd_ready.val();
        self.dma.pmp.cmd_write.next = self.ctrl.host.cmd_write.val();
        self.dma.pmp.cmd_addr.next = self.ctrl.host.cmd_addr.val().get_bits::<32>(0);
        self.dma.pmp.cmd_wdata.next = self.ctrl.host.cmd_wdata.val();
        self.dma.pmp.cmd_wstrb.next = self.ctrl.host.cmd_wstrb.val();
        self.ctrl.host.rsp_valid.next = self.dma.pmp.rsp_valid.val();
        self.ctrl.host.rsp_write.next = self.dma.pmp.rsp_write.val();
        self.ctrl.host.rsp_data.next = self.dma.pmp.rsp_data.val();
        self.dma.err_clear.next = false;
        Axi4Initiator::<32, HP_ID_BITS>::link(&mut self.hp, &mut self.dma.axi);

        PmpInitiator::<32>::join(&mut self.ctrl.warm, &mut self.warm_mem.b);
        PmpInitiator::<32>::join(&mut self.ctrl.cold, &mut self.cold_mem.up);
        // The warm tier's second port is unused.
        self.warm_mem.a.cmd_valid.next = false;
        self.warm_mem.a.cmd_write.next = false;
        self.warm_mem.a.cmd_addr.next = 0.into();
        self.warm_mem.a.cmd_wdata.next = 0.into();
        self.warm_mem.a.cmd_wstrb.next = 0.into();

        // The interrupt message, stretched.
        if self.ctrl.irq.val() {
            self.irq_left.d.next = self.irq_len.val();
        } else if self.irq_left.q.val().any() {
            self.irq_left.d.next = self.irq_left.q.val() - 1;
        }
        if self.rst.q.val() {
            self.irq_left.d.next = 0.into();
        }
        self.irq.next = self.irq_left.q.val().any();
        self.dma_error.next = self.dma.err.val();
        self.leds.next = bit_cast::<4, 1>(self.beat.q.val().get_bit(26).into())
            | (bit_cast::<4, 2>(self.ctrl.active.val()) << 1)
            | (bit_cast::<4, 1>(
                (self.ctrl.error.val() | self.cold_mem.error.val() | self.dma.err.val()).into(),
            ) << 3);
    }
}
