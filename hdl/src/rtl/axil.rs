//! AXI4-Lite target that turns bus transactions into single-cycle register
//! strobes for the CSR file. One transaction at a time: CSR traffic is
//! control-plane only, so simplicity beats throughput here.

use super::bus::AxiLiteTarget;
use rust_hdl::prelude::*;

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
enum AxilState {
    Idle,
    ReadFetch,
    ReadResp,
    WriteResp,
}

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
    /// Write address (byte).
    pub wr_addr: Signal<Out, Bits<12>>,
    /// Write data.
    pub wr_data: Signal<Out, Bits<32>>,
    /// One-cycle read strobe; `rd_data` is sampled in the same cycle.
    pub rd: Signal<Out, Bit>,
    /// Read address (byte), stable from the cycle after the address is accepted.
    pub rd_addr: Signal<Out, Bits<12>>,
    /// Read data from the register file (combinational on `rd_addr`).
    pub rd_data: Signal<In, Bits<32>>,
    state: DFF<AxilState>,
    addr: DFF<Bits<12>>,
    data: DFF<Bits<32>>,
    resp: DFF<Bits<2>>,
}

impl Logic for AxiLiteCsr {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, state, addr, data, resp);
        self.axi.awready.next = false;
        self.axi.wready.next = false;
        self.axi.arready.next = false;
        self.axi.bvalid.next = false;
        self.axi.rvalid.next = false;
        self.axi.bresp.next = self.resp.q.val();
        self.axi.rresp.next = 0.into();
        self.axi.rdata.next = self.data.q.val();
        self.wr.next = false;
        self.wr_addr.next = self.axi.awaddr.val();
        self.wr_data.next = self.axi.wdata.val();
        self.rd.next = false;
        self.rd_addr.next = self.addr.q.val();
        match self.state.q.val() {
            AxilState::Idle => {
                if self.axi.awvalid.val() & self.axi.wvalid.val() {
                    // Partial writes are refused: every register is 32 bits.
                    self.axi.awready.next = true;
                    self.axi.wready.next = true;
                    if self.axi.wstrb.val() == 15 {
                        self.wr.next = true;
                        self.resp.d.next = 0.into();
                    } else {
                        self.resp.d.next = 2.into();
                    }
                    self.state.d.next = AxilState::WriteResp;
                } else if self.axi.arvalid.val() {
                    self.axi.arready.next = true;
                    self.addr.d.next = self.axi.araddr.val();
                    self.state.d.next = AxilState::ReadFetch;
                }
            }
            AxilState::ReadFetch => {
                self.rd.next = true;
                self.data.d.next = self.rd_data.val();
                self.state.d.next = AxilState::ReadResp;
            }
            AxilState::ReadResp => {
                self.axi.rvalid.next = true;
                if self.axi.rready.val() {
                    self.state.d.next = AxilState::Idle;
                }
            }
            AxilState::WriteResp => {
                self.axi.bvalid.next = true;
                if self.axi.bready.val() {
                    self.state.d.next = AxilState::Idle;
                }
            }
            _ => {
                self.state.d.next = AxilState::Idle;
            }
        }
        if self.reset.val() {
            self.state.d.next = AxilState::Idle;
        }
    }
}
