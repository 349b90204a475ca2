//! A register slice for the pipelined memory port: every signal crossing it
//! leaves a flip-flop, in both directions.
//!
//! Commands pass a two-entry skid buffer (the verilog-axis `axis_register`
//! shape): `cmd_ready` upstream is a register, so neither the command
//! (address arithmetic, port muxes) nor the target's ready reaches across.
//! Responses are delayed one cycle (they have no backpressure). Order and
//! the one-response-per-command rule are kept, so the masters' outstanding
//! counts stay exact; only latency grows, by two cycles.

use super::bus::{PmpInitiator, PmpTarget};
use rust_hdl::prelude::*;

/// The slice between a master (`up`) and a target (`down`).
#[derive(LogicBlock, Default)]
pub struct PmpSlice<const A: usize> {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset, active high (drops what the slice holds).
    pub reset: Signal<In, Bit>,
    /// Toward the master.
    pub up: PmpTarget<A>,
    /// Toward the target.
    pub down: PmpInitiator<A>,
    ready: DFF<Bit>,
    out_v: DFF<Bit>,
    out_write: DFF<Bit>,
    out_addr: DFF<Bits<A>>,
    out_wdata: DFF<Bits<64>>,
    out_wstrb: DFF<Bits<8>>,
    tmp_v: DFF<Bit>,
    tmp_write: DFF<Bit>,
    tmp_addr: DFF<Bits<A>>,
    tmp_wdata: DFF<Bits<64>>,
    tmp_wstrb: DFF<Bits<8>>,
    rsp_v: DFF<Bit>,
    rsp_write: DFF<Bit>,
    rsp_data: DFF<Bits<64>>,
    out_free: Signal<Local, Bit>,
}

impl<const A: usize> Logic for PmpSlice<A> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self, clock, ready, out_v, out_write, out_addr, out_wdata, out_wstrb, tmp_v, tmp_write,
            tmp_addr, tmp_wdata, tmp_wstrb, rsp_v, rsp_write, rsp_data
        );
        self.up.cmd_ready.next = self.ready.q.val();
        self.down.cmd_valid.next = self.out_v.q.val();
        self.down.cmd_write.next = self.out_write.q.val();
        self.down.cmd_addr.next = self.out_addr.q.val();
        self.down.cmd_wdata.next = self.out_wdata.q.val();
        self.down.cmd_wstrb.next = self.out_wstrb.q.val();
        self.out_free.next = self.down.cmd_ready.val() | !self.out_v.q.val();
        // Ready next cycle unless both entries could be full.
        self.ready.d.next = self.down.cmd_ready.val()
            | (!self.tmp_v.q.val() & (!self.out_v.q.val() | !self.up.cmd_valid.val()));
        if self.ready.q.val() {
            if self.out_free.val() {
                self.out_v.d.next = self.up.cmd_valid.val();
                self.out_write.d.next = self.up.cmd_write.val();
                self.out_addr.d.next = self.up.cmd_addr.val();
                self.out_wdata.d.next = self.up.cmd_wdata.val();
                self.out_wstrb.d.next = self.up.cmd_wstrb.val();
            } else {
                self.tmp_v.d.next = self.up.cmd_valid.val();
                self.tmp_write.d.next = self.up.cmd_write.val();
                self.tmp_addr.d.next = self.up.cmd_addr.val();
                self.tmp_wdata.d.next = self.up.cmd_wdata.val();
                self.tmp_wstrb.d.next = self.up.cmd_wstrb.val();
            }
        } else if self.down.cmd_ready.val() {
            self.out_v.d.next = self.tmp_v.q.val();
            self.out_write.d.next = self.tmp_write.q.val();
            self.out_addr.d.next = self.tmp_addr.q.val();
            self.out_wdata.d.next = self.tmp_wdata.q.val();
            self.out_wstrb.d.next = self.tmp_wstrb.q.val();
            self.tmp_v.d.next = false;
        }
        // Responses: one cycle later, unchanged.
        self.rsp_v.d.next = self.down.rsp_valid.val();
        self.rsp_write.d.next = self.down.rsp_write.val();
        self.rsp_data.d.next = self.down.rsp_data.val();
        self.up.rsp_valid.next = self.rsp_v.q.val();
        self.up.rsp_write.next = self.rsp_write.q.val();
        self.up.rsp_data.next = self.rsp_data.q.val();
        if self.reset.val() {
            self.ready.d.next = false;
            self.out_v.d.next = false;
            self.tmp_v.d.next = false;
            self.rsp_v.d.next = false;
        }
    }
}
