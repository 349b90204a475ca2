//! A first-word-fall-through FIFO with a synchronous reset, on one
//! `RAM<D, N>` (block or distributed RAM, as synthesis sees fit).
//!
//! rust-hdl's `SynchronousFIFO` has no reset: a block that is reset in the
//! middle of its work (the AXI4 adapter, whose AXI side is reset with it)
//! would find stale entries there. This one clears its pointers on reset.
//!
//! Timing shape: the RAM is read at the *next* read pointer (the look-ahead
//! the rust-hdl FIFO uses), so `data_out` is the RAM's output register and
//! a popped entry is replaced in the next cycle. A pushed entry is visible
//! (`empty` low) two cycles after its push: the write pointer is compared
//! through a register, so a read never meets the RAM write of the same
//! edge. `used` counts a push at once and a pop at once: owners decide
//! their `ready` from it with the margin their registered ready needs.

use rust_hdl::prelude::*;

/// `2^N` entries of `D`; `NP1` must be `N + 1`.
#[derive(LogicBlock, Default)]
pub struct Fifo<D: Synth, const N: usize, const NP1: usize> {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset, active high: empties the FIFO.
    pub reset: Signal<In, Bit>,
    /// Append `data_in` (only while `used < 2^N`).
    pub push: Signal<In, Bit>,
    /// Entry to append.
    pub data_in: Signal<In, D>,
    /// Drop the head (ignored while `empty`).
    pub pop: Signal<In, Bit>,
    /// The head entry, valid while `empty` is low.
    pub data_out: Signal<Out, D>,
    /// No entry visible.
    pub empty: Signal<Out, Bit>,
    /// Entries pushed and not popped, as of this cycle's start (a push or
    /// pop shows in the next cycle).
    pub used: Signal<Out, Bits<NP1>>,
    ram: RAM<D, N>,
    wr: DFF<Bits<NP1>>,
    wr_vis: DFF<Bits<NP1>>,
    rd: DFF<Bits<NP1>>,
    rd_next: Signal<Local, Bits<NP1>>,
}

impl<D: Synth, const N: usize, const NP1: usize> Logic for Fifo<D, N, NP1> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, wr, wr_vis, rd);
        self.ram.read_clock.next = self.clock.val();
        self.ram.write_clock.next = self.clock.val();
        self.ram.write_enable.next = self.push.val();
        self.ram.write_address.next = bit_cast::<N, NP1>(self.wr.q.val());
        self.ram.write_data.next = self.data_in.val();
        if self.push.val() {
            self.wr.d.next = self.wr.q.val() + 1;
        }
        self.wr_vis.d.next = self.wr.q.val();
        self.empty.next = self.rd.q.val() == self.wr_vis.q.val();
        self.rd_next.next = self.rd.q.val();
        if self.pop.val() & !self.empty.val() {
            self.rd_next.next = self.rd.q.val() + 1;
        }
        self.rd.d.next = self.rd_next.val();
        self.ram.read_address.next = bit_cast::<N, NP1>(self.rd_next.val());
        self.data_out.next = self.ram.read_data.val();
        self.used.next = self.wr.q.val() - self.rd.q.val();
        if self.reset.val() {
            self.wr.d.next = 0.into();
            self.wr_vis.d.next = 0.into();
            self.rd.d.next = 0.into();
        }
    }
}
