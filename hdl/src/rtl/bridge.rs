//! UART-to-AXI4-Lite bridge with a memory window: how a host drives a board
//! without PCIe over USB serial.
//!
//! The protocol is the board contract's (`contract::board`: command and
//! reply bytes, the resynchronization timeout, the CSR window):
//!
//! | command | bytes | reply |
//! |---|---|---|
//! | CSR read  | `'R'` addr32 | data32 |
//! | CSR write | `'W'` addr32 data32 | `'K'` (OKAY) or `'E'` (error response) |
//! | memory read  | `'r'` addr32 count16 | `count` bytes |
//! | memory write | `'w'` addr32 count16, then `count` bytes | `'K'` |
//!
//! The CSR address is decoded in full: only addresses below
//! `board::CSR_WINDOW_BYTES` (the controller's 4 KiB register file) reach
//! the controller; a write above answers `'E'` and a read answers 0
//! without a bus transaction (a board has no mailbox page, and a 12-bit
//! decode would alias it onto the controller's registers).
//!
//! Unknown command bytes are ignored. If the host goes quiet in the middle
//! of a command for longer than the timeout (`board::RESYNC_BYTE_TIMES`
//! byte times), the bridge drops it and waits for a new command, so a host
//! can always resynchronize by waiting. The memory commands move one byte
//! per memory command (byte strobes), far faster than the line.

use super::bus::{AxiLiteInitiator, PmpInitiator, CSR_ADDR_BITS};
use crate::contract::board::{
    CMD_CSR_READ, CMD_CSR_WRITE, CMD_MEM_READ, CMD_MEM_WRITE, CSR_WINDOW_BYTES, REPLY_ERR,
    REPLY_OK, RESYNC_BYTE_TIMES,
};
use rust_hdl::prelude::*;

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
enum State {
    Idle,
    Args,
    Dispatch,
    CsrRead,
    CsrWrite,
    MemRead,
    MemReadWait,
    MemWrite,
    MemWriteCmd,
    MemWriteWait,
    Send,
    SendGap,
}

/// The bridge.
#[derive(LogicBlock)]
pub struct UartBridge {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset, active high.
    pub reset: Signal<In, Bit>,
    /// Received byte (from `UartRx`).
    pub rx_data: Signal<In, Bits<8>>,
    /// One-cycle strobe: `rx_data` is a new byte.
    pub rx_valid: Signal<In, Bit>,
    /// Byte to send (to `UartTx`).
    pub tx_data: Signal<Out, Bits<8>>,
    /// Send `tx_data`.
    pub tx_start: Signal<Out, Bit>,
    /// The transmitter is busy.
    pub tx_busy: Signal<In, Bit>,
    /// The controller's CSR port.
    pub csr: AxiLiteInitiator,
    /// The host-memory window.
    pub mem: PmpInitiator<32>,
    state: DFF<State>,
    cmd: DFF<Bits<8>>,
    args: DFF<Bits<64>>,
    need: DFF<Bits<4>>,
    out: DFF<Bits<32>>,
    nout: DFF<Bits<3>>,
    addr: DFF<Bits<32>>,
    count: DFF<Bits<16>>,
    // `count != 0` as a register, updated with `count`, so the state
    // decisions do not wait on a 16-bit compare.
    count_nz: DFF<Bit>,
    idle: DFF<Bits<24>>,
    ar_v: DFF<Bit>,
    aw_v: DFF<Bit>,
    w_v: DFF<Bit>,
    m_v: DFF<Bit>,
    m_write: DFF<Bit>,
    m_data: DFF<Bits<64>>,
    m_strb: DFF<Bits<8>>,
    lane: Signal<Local, Bits<6>>,
    rbyte: Signal<Local, Bits<64>>,
    k_timeout: Constant<Bits<24>>,
    k_r: Constant<Bits<8>>,
    k_w: Constant<Bits<8>>,
    k_mr: Constant<Bits<8>>,
    k_mw: Constant<Bits<8>>,
    k_ok: Constant<Bits<32>>,
    k_err: Constant<Bits<32>>,
    // Address bits above the CSR window: any set is an address the board
    // does not have.
    k_csr_hi: Constant<Bits<32>>,
}

impl UartBridge {
    /// A bridge for a UART of `divider` clocks per bit (sets the timeout).
    pub fn new(divider: u16) -> Self {
        let timeout = (divider.max(4) as u64 * 10 * RESYNC_BYTE_TIMES as u64).min((1 << 24) - 1);
        Self {
            clock: Default::default(),
            reset: Default::default(),
            rx_data: Default::default(),
            rx_valid: Default::default(),
            tx_data: Default::default(),
            tx_start: Default::default(),
            tx_busy: Default::default(),
            csr: Default::default(),
            mem: Default::default(),
            state: Default::default(),
            cmd: Default::default(),
            args: Default::default(),
            need: Default::default(),
            out: Default::default(),
            nout: Default::default(),
            addr: Default::default(),
            count: Default::default(),
            count_nz: Default::default(),
            idle: Default::default(),
            ar_v: Default::default(),
            aw_v: Default::default(),
            w_v: Default::default(),
            m_v: Default::default(),
            m_write: Default::default(),
            m_data: Default::default(),
            m_strb: Default::default(),
            lane: Default::default(),
            rbyte: Default::default(),
            k_timeout: Constant::new(timeout.into()),
            k_r: Constant::new((CMD_CSR_READ as u64).into()),
            k_w: Constant::new((CMD_CSR_WRITE as u64).into()),
            k_mr: Constant::new((CMD_MEM_READ as u64).into()),
            k_mw: Constant::new((CMD_MEM_WRITE as u64).into()),
            k_ok: Constant::new((REPLY_OK as u64).into()),
            k_err: Constant::new((REPLY_ERR as u64).into()),
            k_csr_hi: Constant::new((!(CSR_WINDOW_BYTES - 1) as u64).into()),
        }
    }
}

impl Default for UartBridge {
    fn default() -> Self {
        Self::new(16)
    }
}

impl Logic for UartBridge {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self, clock, state, cmd, args, need, out, nout, addr, count, count_nz, idle, ar_v,
            aw_v, w_v, m_v, m_write, m_data, m_strb
        );
        self.lane.next = bit_cast::<6, 3>(self.addr.q.val().get_bits::<3>(0)) << 3;
        self.rbyte.next = self.mem.rsp_data.val() >> self.lane.val();
        // AXI4-Lite: every valid is a register; responses are always taken.
        self.csr.awvalid.next = self.aw_v.q.val();
        self.csr.awaddr.next = self.args.q.val().get_bits::<CSR_ADDR_BITS>(0);
        self.csr.wvalid.next = self.w_v.q.val();
        self.csr.wdata.next = self.args.q.val().get_bits::<32>(32);
        self.csr.wstrb.next = 15.into();
        self.csr.bready.next = true;
        self.csr.arvalid.next = self.ar_v.q.val();
        self.csr.araddr.next = self.args.q.val().get_bits::<CSR_ADDR_BITS>(0);
        self.csr.rready.next = true;
        self.mem.cmd_valid.next = self.m_v.q.val();
        self.mem.cmd_write.next = self.m_write.q.val();
        self.mem.cmd_addr.next = (self.addr.q.val() >> 3) << 3;
        self.mem.cmd_wdata.next = self.m_data.q.val();
        self.mem.cmd_wstrb.next = self.m_strb.q.val();
        self.tx_data.next = self.out.q.val().get_bits::<8>(0);
        self.tx_start.next = false;
        if self.ar_v.q.val() & self.csr.arready.val() {
            self.ar_v.d.next = false;
        }
        if self.aw_v.q.val() & self.csr.awready.val() {
            self.aw_v.d.next = false;
        }
        if self.w_v.q.val() & self.csr.wready.val() {
            self.w_v.d.next = false;
        }
        if self.m_v.q.val() & self.mem.cmd_ready.val() {
            self.m_v.d.next = false;
        }
        // Inter-byte timeout while a command is incomplete.
        self.idle.d.next = self.idle.q.val() + 1;
        if self.rx_valid.val() {
            self.idle.d.next = 0.into();
        }
        match self.state.q.val() {
            State::Idle => {
                self.idle.d.next = 0.into();
                if self.rx_valid.val() {
                    self.cmd.d.next = self.rx_data.val();
                    self.args.d.next = 0.into();
                    if self.rx_data.val() == self.k_r.val() {
                        self.need.d.next = 4.into();
                        self.state.d.next = State::Args;
                    }
                    if self.rx_data.val() == self.k_w.val() {
                        self.need.d.next = 8.into();
                        self.state.d.next = State::Args;
                    }
                    if (self.rx_data.val() == self.k_mr.val())
                        | (self.rx_data.val() == self.k_mw.val())
                    {
                        self.need.d.next = 6.into();
                        self.state.d.next = State::Args;
                    }
                }
            }
            State::Args => {
                if self.rx_valid.val() {
                    self.args.d.next =
                        (self.args.q.val() >> 8) | (bit_cast::<64, 8>(self.rx_data.val()) << 56);
                    self.need.d.next = self.need.q.val() - 1;
                    if self.need.q.val() == 1 {
                        self.state.d.next = State::Dispatch;
                    }
                }
                if self.idle.q.val() == self.k_timeout.val() {
                    self.state.d.next = State::Idle;
                }
            }
            State::Dispatch => {
                // The arguments were shifted in from the top: align them.
                // A CSR address outside the window is answered here: a
                // read with 0, a write with an error, no bus transaction.
                if self.cmd.q.val() == self.k_r.val() {
                    self.args.d.next = self.args.q.val() >> 32;
                    if (self.args.q.val().get_bits::<32>(32) & self.k_csr_hi.val()).any() {
                        self.out.d.next = 0.into();
                        self.nout.d.next = 4.into();
                        self.state.d.next = State::Send;
                    } else {
                        self.ar_v.d.next = true;
                        self.state.d.next = State::CsrRead;
                    }
                } else if self.cmd.q.val() == self.k_w.val() {
                    if (self.args.q.val().get_bits::<32>(0) & self.k_csr_hi.val()).any() {
                        self.out.d.next = self.k_err.val();
                        self.nout.d.next = 1.into();
                        self.state.d.next = State::Send;
                    } else {
                        self.aw_v.d.next = true;
                        self.w_v.d.next = true;
                        self.state.d.next = State::CsrWrite;
                    }
                } else {
                    self.addr.d.next = self.args.q.val().get_bits::<32>(16);
                    self.count.d.next = self.args.q.val().get_bits::<16>(48);
                    self.count_nz.d.next = self.args.q.val().get_bits::<16>(48).any();
                    if self.cmd.q.val() == self.k_mr.val() {
                        self.state.d.next = State::MemRead;
                    } else {
                        self.state.d.next = State::MemWrite;
                    }
                }
            }
            State::CsrRead => {
                if self.csr.rvalid.val() {
                    self.out.d.next = self.csr.rdata.val();
                    self.nout.d.next = 4.into();
                    self.state.d.next = State::Send;
                }
            }
            State::CsrWrite => {
                if self.csr.bvalid.val() {
                    self.out.d.next = self.k_ok.val();
                    if self.csr.bresp.val() != 0 {
                        self.out.d.next = self.k_err.val();
                    }
                    self.nout.d.next = 1.into();
                    self.state.d.next = State::Send;
                }
            }
            State::MemRead => {
                if !self.count_nz.q.val() {
                    self.state.d.next = State::Idle;
                } else {
                    self.m_v.d.next = true;
                    self.m_write.d.next = false;
                    self.state.d.next = State::MemReadWait;
                }
            }
            State::MemReadWait => {
                if self.mem.rsp_valid.val() {
                    self.out.d.next = bit_cast::<32, 8>(self.rbyte.val().get_bits::<8>(0));
                    self.nout.d.next = 1.into();
                    self.addr.d.next = self.addr.q.val() + 1;
                    self.count.d.next = self.count.q.val() - 1;
                    self.count_nz.d.next = self.count.q.val() != 1;
                    self.state.d.next = State::Send;
                }
            }
            State::MemWrite => {
                if !self.count_nz.q.val() {
                    self.out.d.next = self.k_ok.val();
                    self.nout.d.next = 1.into();
                    self.state.d.next = State::Send;
                } else if self.rx_valid.val() {
                    self.m_data.d.next = bit_cast::<64, 8>(self.rx_data.val()) << self.lane.val();
                    self.m_strb.d.next =
                        bit_cast::<8, 1>(true.into()) << self.addr.q.val().get_bits::<3>(0);
                    self.state.d.next = State::MemWriteCmd;
                } else if self.idle.q.val() == self.k_timeout.val() {
                    self.state.d.next = State::Idle;
                }
            }
            State::MemWriteCmd => {
                self.m_v.d.next = true;
                self.m_write.d.next = true;
                self.state.d.next = State::MemWriteWait;
            }
            State::MemWriteWait => {
                if self.mem.rsp_valid.val() {
                    self.addr.d.next = self.addr.q.val() + 1;
                    self.count.d.next = self.count.q.val() - 1;
                    self.count_nz.d.next = self.count.q.val() != 1;
                    self.idle.d.next = 0.into();
                    self.state.d.next = State::MemWrite;
                }
            }
            State::Send => {
                if !self.tx_busy.val() {
                    self.tx_start.next = true;
                    self.out.d.next = self.out.q.val() >> 8;
                    self.nout.d.next = self.nout.q.val() - 1;
                    self.state.d.next = State::SendGap;
                }
            }
            State::SendGap => {
                // One cycle for the transmitter's busy to rise.
                if self.nout.q.val() != 0 {
                    self.state.d.next = State::Send;
                } else if (self.cmd.q.val() == self.k_mr.val()) & self.count_nz.q.val() {
                    self.state.d.next = State::MemRead;
                } else {
                    self.state.d.next = State::Idle;
                }
            }
            _ => {
                self.state.d.next = State::Idle;
            }
        }
        if self.reset.val() {
            self.state.d.next = State::Idle;
            self.ar_v.d.next = false;
            self.aw_v.d.next = false;
            self.w_v.d.next = false;
            self.m_v.d.next = false;
        }
    }
}
