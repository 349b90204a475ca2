//! On-chip memory behind the pipelined memory port: the board's host-memory
//! window and its NV tiers (block RAM).
//!
//! Eight byte lanes (one `RAM<Bits<8>, N>` each, so byte strobes are lane
//! write enables and every lane maps to block RAM), three-cycle latency on
//! port `a`, four on port `b`:
//! the command is registered before it reaches the RAM (so the masters'
//! address arithmetic and the port mux are not in the RAM's setup path),
//! and the RAM's output is registered before it reaches the port (on ECP5
//! the RAM's clock-to-output alone is 5.6 ns at speed 6);
//! always ready for port `b`, whose command waits one cycle in a holding
//! register and then has priority; port `a` is ready when that register is
//! empty (a register, not port `b`'s valid: no combinational path from one
//! master to the other). Port `b` has priority because its master (the UART
//! bridge) issues at most one command per received byte and cannot stall;
//! the controller on port `a` handles backpressure. Responses return to the port that issued the
//! command (one command per cycle, fixed latency, so a one-bit owner
//! per pipeline stage suffices). Addresses wrap modulo the memory size.

use super::bus::PmpTarget;
use rust_hdl::prelude::*;

/// `2^N` 64-bit words of block RAM with two pipelined memory ports.
#[derive(LogicBlock, Default)]
pub struct PmpBram<const N: usize> {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Port a (lower priority): 64-bit addresses (the controller's host port).
    pub a: PmpTarget<64>,
    /// Port b (priority): 32-bit addresses (NV ports, the UART bridge).
    pub b: PmpTarget<32>,
    lane0: RAM<Bits<8>, N>,
    lane1: RAM<Bits<8>, N>,
    lane2: RAM<Bits<8>, N>,
    lane3: RAM<Bits<8>, N>,
    lane4: RAM<Bits<8>, N>,
    lane5: RAM<Bits<8>, N>,
    lane6: RAM<Bits<8>, N>,
    lane7: RAM<Bits<8>, N>,
    hold_v: DFF<Bit>,
    hold_write: DFF<Bit>,
    hold_addr: DFF<Bits<N>>,
    hold_wdata: DFF<Bits<64>>,
    hold_wstrb: DFF<Bits<8>>,
    cmd_v: DFF<Bit>,
    cmd_b: DFF<Bit>,
    cmd_write: DFF<Bit>,
    cmd_addr: DFF<Bits<N>>,
    cmd_wdata: DFF<Bits<64>>,
    cmd_wstrb: DFF<Bits<8>>,
    rsp: DFF<Bit>,
    rsp_b: DFF<Bit>,
    rsp_write: DFF<Bit>,
    rsp2: DFF<Bit>,
    rsp2_b: DFF<Bit>,
    rsp2_write: DFF<Bit>,
    rdata_q: DFF<Bits<64>>,
    take_a: Signal<Local, Bit>,
    we: Signal<Local, Bit>,
    addr: Signal<Local, Bits<N>>,
    rdata: Signal<Local, Bits<64>>,
}

impl<const N: usize> Logic for PmpBram<N> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self, clock, hold_v, hold_write, hold_addr, hold_wdata, hold_wstrb, cmd_v, cmd_b,
            cmd_write, cmd_addr, cmd_wdata, cmd_wstrb, rsp, rsp_b, rsp_write, rsp2, rsp2_b,
            rsp2_write, rdata_q
        );
        self.lane0.read_clock.next = self.clock.val();
        self.lane0.write_clock.next = self.clock.val();
        self.lane1.read_clock.next = self.clock.val();
        self.lane1.write_clock.next = self.clock.val();
        self.lane2.read_clock.next = self.clock.val();
        self.lane2.write_clock.next = self.clock.val();
        self.lane3.read_clock.next = self.clock.val();
        self.lane3.write_clock.next = self.clock.val();
        self.lane4.read_clock.next = self.clock.val();
        self.lane4.write_clock.next = self.clock.val();
        self.lane5.read_clock.next = self.clock.val();
        self.lane5.write_clock.next = self.clock.val();
        self.lane6.read_clock.next = self.clock.val();
        self.lane6.write_clock.next = self.clock.val();
        self.lane7.read_clock.next = self.clock.val();
        self.lane7.write_clock.next = self.clock.val();
        // Port b's holding register: empty again one cycle after a command
        // arrives (it has priority), so port b is always ready.
        self.b.cmd_ready.next = true;
        self.hold_v.d.next = self.b.cmd_valid.val();
        if self.b.cmd_valid.val() {
            self.hold_write.d.next = self.b.cmd_write.val();
            self.hold_addr.d.next = self.b.cmd_addr.val().get_bits::<N>(3);
            self.hold_wdata.d.next = self.b.cmd_wdata.val();
            self.hold_wstrb.d.next = self.b.cmd_wstrb.val();
        }
        self.a.cmd_ready.next = !self.hold_v.q.val();
        // Command stage: the held port-b command, else port a's.
        self.take_a.next = self.a.cmd_valid.val() & !self.hold_v.q.val();
        self.cmd_v.d.next = self.hold_v.q.val() | self.a.cmd_valid.val();
        self.cmd_b.d.next = self.hold_v.q.val();
        self.cmd_write.d.next = self.hold_write.q.val();
        self.cmd_addr.d.next = self.hold_addr.q.val();
        self.cmd_wdata.d.next = self.hold_wdata.q.val();
        self.cmd_wstrb.d.next = self.hold_wstrb.q.val();
        if self.take_a.val() {
            self.cmd_write.d.next = self.a.cmd_write.val();
            self.cmd_addr.d.next = self.a.cmd_addr.val().get_bits::<N>(3);
            self.cmd_wdata.d.next = self.a.cmd_wdata.val();
            self.cmd_wstrb.d.next = self.a.cmd_wstrb.val();
        }
        // RAM stage.
        self.addr.next = self.cmd_addr.q.val();
        self.we.next = self.cmd_v.q.val() & self.cmd_write.q.val();
        self.rsp.d.next = self.cmd_v.q.val();
        self.rsp_b.d.next = self.cmd_b.q.val();
        self.rsp_write.d.next = self.cmd_write.q.val();
        self.lane0.read_address.next = self.addr.val();
        self.lane1.read_address.next = self.addr.val();
        self.lane2.read_address.next = self.addr.val();
        self.lane3.read_address.next = self.addr.val();
        self.lane4.read_address.next = self.addr.val();
        self.lane5.read_address.next = self.addr.val();
        self.lane6.read_address.next = self.addr.val();
        self.lane7.read_address.next = self.addr.val();
        self.lane0.write_address.next = self.addr.val();
        self.lane1.write_address.next = self.addr.val();
        self.lane2.write_address.next = self.addr.val();
        self.lane3.write_address.next = self.addr.val();
        self.lane4.write_address.next = self.addr.val();
        self.lane5.write_address.next = self.addr.val();
        self.lane6.write_address.next = self.addr.val();
        self.lane7.write_address.next = self.addr.val();
        self.lane0.write_data.next = self.cmd_wdata.q.val().get_bits::<8>(0);
        self.lane1.write_data.next = self.cmd_wdata.q.val().get_bits::<8>(8);
        self.lane2.write_data.next = self.cmd_wdata.q.val().get_bits::<8>(16);
        self.lane3.write_data.next = self.cmd_wdata.q.val().get_bits::<8>(24);
        self.lane4.write_data.next = self.cmd_wdata.q.val().get_bits::<8>(32);
        self.lane5.write_data.next = self.cmd_wdata.q.val().get_bits::<8>(40);
        self.lane6.write_data.next = self.cmd_wdata.q.val().get_bits::<8>(48);
        self.lane7.write_data.next = self.cmd_wdata.q.val().get_bits::<8>(56);
        self.lane0.write_enable.next = self.we.val() & self.cmd_wstrb.q.val().get_bit(0);
        self.lane1.write_enable.next = self.we.val() & self.cmd_wstrb.q.val().get_bit(1);
        self.lane2.write_enable.next = self.we.val() & self.cmd_wstrb.q.val().get_bit(2);
        self.lane3.write_enable.next = self.we.val() & self.cmd_wstrb.q.val().get_bit(3);
        self.lane4.write_enable.next = self.we.val() & self.cmd_wstrb.q.val().get_bit(4);
        self.lane5.write_enable.next = self.we.val() & self.cmd_wstrb.q.val().get_bit(5);
        self.lane6.write_enable.next = self.we.val() & self.cmd_wstrb.q.val().get_bit(6);
        self.lane7.write_enable.next = self.we.val() & self.cmd_wstrb.q.val().get_bit(7);
        self.rdata.next = bit_cast::<64, 8>(self.lane0.read_data.val())
            | (bit_cast::<64, 8>(self.lane1.read_data.val()) << 8)
            | (bit_cast::<64, 8>(self.lane2.read_data.val()) << 16)
            | (bit_cast::<64, 8>(self.lane3.read_data.val()) << 24)
            | (bit_cast::<64, 8>(self.lane4.read_data.val()) << 32)
            | (bit_cast::<64, 8>(self.lane5.read_data.val()) << 40)
            | (bit_cast::<64, 8>(self.lane6.read_data.val()) << 48)
            | (bit_cast::<64, 8>(self.lane7.read_data.val()) << 56);
        self.rsp2.d.next = self.rsp.q.val();
        self.rsp2_b.d.next = self.rsp_b.q.val();
        self.rsp2_write.d.next = self.rsp_write.q.val();
        self.rdata_q.d.next = self.rdata.val();
        self.a.rsp_valid.next = self.rsp2.q.val() & !self.rsp2_b.q.val();
        self.b.rsp_valid.next = self.rsp2_b.q.val();
        self.a.rsp_write.next = self.rsp2_write.q.val();
        self.b.rsp_write.next = self.rsp2_write.q.val();
        self.a.rsp_data.next = self.rdata_q.q.val();
        self.b.rsp_data.next = self.rdata_q.q.val();
    }
}
