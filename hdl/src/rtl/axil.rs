//! AXI4-Lite target that turns bus transactions into single-cycle register
//! strobes for the CSR file.
//!
//! Every output is a register (Moore style): the ready signals mean "a
//! holding register is free", so the address, data and read channels are
//! accepted independently, in any order, without a combinational path from
//! a `valid` to a `ready`. That is the timing-friendly shape for a bus that
//! crosses the chip, and it lets a simulator evaluate the design once per
//! clock. One write and one read are handled at a time; writes go first
//! when both are pending.

use super::bus::{AxiLiteTarget, CSR_ADDR_BITS};
use rust_hdl::prelude::*;

/// AXI4-Lite target → register strobes.
#[derive(LogicBlock, Default)]
pub struct AxiLiteCsr {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset, active high.
    pub reset: Signal<In, Bit>,
    /// The bus.
    pub axi: AxiLiteTarget,
    /// One-cycle write strobe.
    pub wr: Signal<Out, Bit>,
    /// Write address (byte), valid with `wr`.
    pub wr_addr: Signal<Out, Bits<CSR_ADDR_BITS>>,
    /// Write data, valid with `wr`.
    pub wr_data: Signal<Out, Bits<32>>,
    /// One-cycle read strobe; `rd_data` is sampled two cycles later (the
    /// address is held until then).
    pub rd: Signal<Out, Bit>,
    /// Read address (byte), valid with `rd` and held until `rd_data` is sampled.
    pub rd_addr: Signal<Out, Bits<CSR_ADDR_BITS>>,
    /// Read data from the register file, one register stage after
    /// `rd_addr` (the register file's read mux gets a whole cycle).
    pub rd_data: Signal<In, Bits<32>>,
    aw_full: DFF<Bit>,
    aw_addr: DFF<Bits<CSR_ADDR_BITS>>,
    w_full: DFF<Bit>,
    w_data: DFF<Bits<32>>,
    w_strb: DFF<Bits<4>>,
    b_valid: DFF<Bit>,
    b_resp: DFF<Bits<2>>,
    ar_full: DFF<Bit>,
    ar_addr: DFF<Bits<CSR_ADDR_BITS>>,
    r_valid: DFF<Bit>,
    r_data: DFF<Bits<32>>,
    rd_wait1: DFF<Bit>,
    rd_wait: DFF<Bit>,
    do_write: Signal<Local, Bit>,
    do_read: Signal<Local, Bit>,
}

impl Logic for AxiLiteCsr {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self, clock, aw_full, aw_addr, w_full, w_data, w_strb, b_valid, b_resp, ar_full,
            ar_addr, r_valid, r_data, rd_wait1, rd_wait
        );
        // Ready means "holding register free": registered, no valid->ready path.
        self.axi.awready.next = !self.aw_full.q.val();
        self.axi.wready.next = !self.w_full.q.val();
        self.axi.arready.next = !self.ar_full.q.val();
        self.axi.bvalid.next = self.b_valid.q.val();
        self.axi.bresp.next = self.b_resp.q.val();
        self.axi.rvalid.next = self.r_valid.q.val();
        self.axi.rdata.next = self.r_data.q.val();
        self.axi.rresp.next = 0.into();
        // Capture each channel when its holding register is free.
        if !self.aw_full.q.val() & self.axi.awvalid.val() {
            self.aw_full.d.next = true;
            self.aw_addr.d.next = self.axi.awaddr.val();
        }
        if !self.w_full.q.val() & self.axi.wvalid.val() {
            self.w_full.d.next = true;
            self.w_data.d.next = self.axi.wdata.val();
            self.w_strb.d.next = self.axi.wstrb.val();
        }
        if !self.ar_full.q.val() & self.axi.arvalid.val() {
            self.ar_full.d.next = true;
            self.ar_addr.d.next = self.axi.araddr.val();
        }
        // Perform a write once address and data are both held and the
        // previous response has been taken; a read likewise, writes first.
        self.do_write.next = self.aw_full.q.val() & self.w_full.q.val() & !self.b_valid.q.val();
        self.do_read.next = self.ar_full.q.val()
            & !self.r_valid.q.val()
            & !self.do_write.val()
            & !self.rd_wait1.q.val()
            & !self.rd_wait.q.val();
        self.wr.next = false;
        self.wr_addr.next = self.aw_addr.q.val();
        self.wr_data.next = self.w_data.q.val();
        self.rd.next = self.do_read.val();
        self.rd_addr.next = self.ar_addr.q.val();
        if self.do_write.val() {
            // Partial writes are refused: every register is 32 bits.
            self.wr.next = self.w_strb.q.val() == 15;
            self.b_resp.d.next = 0.into();
            if self.w_strb.q.val() != 15 {
                self.b_resp.d.next = 2.into();
            }
            self.b_valid.d.next = true;
            self.aw_full.d.next = false;
            self.w_full.d.next = false;
        }
        if self.b_valid.q.val() & self.axi.bready.val() {
            self.b_valid.d.next = false;
        }
        // A read is answered two cycles after its strobe (the CSR file
        // decodes the address, then muxes): the address stays held meanwhile.
        self.rd_wait1.d.next = self.do_read.val();
        self.rd_wait.d.next = self.rd_wait1.q.val();
        if self.rd_wait.q.val() {
            self.r_data.d.next = self.rd_data.val();
            self.r_valid.d.next = true;
            self.ar_full.d.next = false;
        }
        if self.r_valid.q.val() & self.axi.rready.val() {
            self.r_valid.d.next = false;
        }
        if self.reset.val() {
            self.aw_full.d.next = false;
            self.w_full.d.next = false;
            self.ar_full.d.next = false;
            self.b_valid.d.next = false;
            self.r_valid.d.next = false;
            self.rd_wait1.d.next = false;
            self.rd_wait.d.next = false;
        }
    }
}
