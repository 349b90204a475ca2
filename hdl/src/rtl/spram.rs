//! Single-port RAM with byte write enables, written so that yosys maps it
//! to iCE40 UltraPlus SPRAM (`synth_ice40 -spram`): four 16-bit lanes, one
//! address for read and write, no read while writing (the SPRAM's output
//! holds during a write). Other tools infer ordinary block RAM from it.
//!
//! rust-hdl's `RAM` has separate read and write addresses and no byte
//! enables, which no SPRAM can implement; so this block carries its own
//! Verilog, in the shape of rust-hdl's `RAM`.

use super::bus::PmpTarget;
use rust_hdl::prelude::*;

/// `2^N` 64-bit words, byte-granular writes, one-cycle synchronous read.
#[derive(LogicBlock, Default)]
pub struct SpramLanes<const N: usize> {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Word address.
    pub addr: Signal<In, Bits<N>>,
    /// Write (with `wstrb`); otherwise the word at `addr` is read.
    pub write: Signal<In, Bit>,
    /// Write data.
    pub wdata: Signal<In, Bits<64>>,
    /// Byte write enables.
    pub wstrb: Signal<In, Bits<8>>,
    /// The word read at the last clock edge without `write` (held during writes).
    pub rdata: Signal<Out, Bits<64>>,
}

impl<const N: usize> Logic for SpramLanes<N> {
    // Simulation is Verilator's; rust-hdl only needs the port shapes.
    fn update(&mut self) {}

    fn connect(&mut self) {
        self.rdata.connect();
    }

    fn hdl(&self) -> Verilog {
        let mut lanes = String::new();
        for l in 0..4 {
            // "huge": yosys' kind for SPRAM; without it block RAM is
            // cheaper by its cost model for a lane shallower than an SPRAM.
            lanes += &format!(
                "(* ram_style = \"huge\" *) reg [15:0] lane{l} [0:{}];\n",
                (1usize << N) - 1
            );
        }
        let mut writes = String::new();
        for b in 0..8 {
            let (l, hi) = (b / 2, (b % 2) * 8);
            writes += &format!(
                "      if (wstrb[{b}]) lane{l}[addr][{}:{hi}] <= wdata[{}:{}];\n",
                hi + 7,
                b * 8 + 7,
                b * 8
            );
        }
        Verilog::Custom(format!(
            "\
{lanes}
always @(posedge clock) begin
   if (write) begin
{writes}   end else begin
      rdata <= {{lane3[addr], lane2[addr], lane1[addr], lane0[addr]}};
   end
end
"
        ))
    }
}

/// `2^N` 64-bit words of [`SpramLanes`] shared by two pipelined memory
/// ports, one command per cycle: port `b` (the UART bridge, which cannot
/// stall) always wins, port `a` (the controller) is ready when `b` is not
/// asking. The command goes straight to the RAM (its inputs are registers
/// inside the SPRAM; at the small FPGAs' clocks the port mux fits in front
/// of them), and the response follows a cycle later: latency 1, in order,
/// to the port that asked. Word address: port `a`'s byte address bits
/// `N+2..3` (with `N = 12`, bit 14 selects the tier half,
/// [`super::lite::TIER_BIT`]); port `b` reaches the host window only (its
/// bits 13:3, the lower half).
#[derive(LogicBlock, Default)]
pub struct PmpSpram<const N: usize> {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Port a: the lite controller's memory port.
    pub a: PmpTarget<15>,
    /// Port b: the UART bridge's memory window.
    pub b: PmpTarget<32>,
    ram: SpramLanes<N>,
    r_v: DFF<Bit>,
    r_b: DFF<Bit>,
    r_write: DFF<Bit>,
}

impl<const N: usize> Logic for PmpSpram<N> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, r_v, r_b, r_write);
        clock!(self, clock, ram);
        self.b.cmd_ready.next = true;
        self.a.cmd_ready.next = !self.b.cmd_valid.val();
        if self.b.cmd_valid.val() {
            // Bits 13:3 of the bridge's address: the host window.
            self.ram.addr.next = bit_cast::<N, 32>((self.b.cmd_addr.val() << 18) >> 21);
            self.ram.write.next = self.b.cmd_write.val();
            self.ram.wdata.next = self.b.cmd_wdata.val();
            self.ram.wstrb.next = self.b.cmd_wstrb.val();
            self.r_write.d.next = self.b.cmd_write.val();
        } else {
            self.ram.addr.next = bit_cast::<N, 15>(self.a.cmd_addr.val() >> 3);
            self.ram.write.next = self.a.cmd_valid.val() & self.a.cmd_write.val();
            self.ram.wdata.next = self.a.cmd_wdata.val();
            self.ram.wstrb.next = self.a.cmd_wstrb.val();
            self.r_write.d.next = self.a.cmd_write.val();
        }
        self.r_v.d.next = self.b.cmd_valid.val() | self.a.cmd_valid.val();
        self.r_b.d.next = self.b.cmd_valid.val();
        self.a.rsp_valid.next = self.r_v.q.val() & !self.r_b.q.val();
        self.b.rsp_valid.next = self.r_v.q.val() & self.r_b.q.val();
        self.a.rsp_write.next = self.r_write.q.val();
        self.b.rsp_write.next = self.r_write.q.val();
        self.a.rsp_data.next = self.ram.rdata.val();
        self.b.rsp_data.next = self.ram.rdata.val();
    }
}
