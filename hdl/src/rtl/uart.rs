//! UART receiver and transmitter, 8N1, a fixed clock divider (clocks per
//! bit) chosen at elaboration. Used by the board top-levels (the CSR port
//! and the host-memory window over USB serial).

use rust_hdl::prelude::*;

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
enum RxState {
    Idle,
    Start,
    Data,
    Stop,
}

/// UART receiver: samples the middle of each bit, `valid` pulses for one
/// cycle with each received byte. A start bit that does not last half a bit
/// is a glitch and is ignored; a byte whose stop bit is low is dropped.
#[derive(LogicBlock)]
pub struct UartRx {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset, active high.
    pub reset: Signal<In, Bit>,
    /// The serial line (asynchronous; synchronized here).
    pub rx: Signal<In, Bit>,
    /// The received byte, valid with `valid`.
    pub data: Signal<Out, Bits<8>>,
    /// One-cycle strobe: a byte arrived.
    pub valid: Signal<Out, Bit>,
    sync1: DFF<Bit>,
    sync2: DFF<Bit>,
    state: DFF<RxState>,
    cnt: DFF<Bits<16>>,
    idx: DFF<Bits<3>>,
    shift: DFF<Bits<8>>,
    out: DFF<Bits<8>>,
    strobe: DFF<Bit>,
    k_bit: Constant<Bits<16>>,
    k_half: Constant<Bits<16>>,
}

impl UartRx {
    /// A receiver for `divider` clocks per bit (at least 4).
    pub fn new(divider: u16) -> Self {
        let divider = divider.max(4);
        Self {
            clock: Default::default(),
            reset: Default::default(),
            rx: Default::default(),
            data: Default::default(),
            valid: Default::default(),
            sync1: Default::default(),
            sync2: Default::default(),
            state: Default::default(),
            cnt: Default::default(),
            idx: Default::default(),
            shift: Default::default(),
            out: Default::default(),
            strobe: Default::default(),
            k_bit: Constant::new(((divider - 1) as u64).into()),
            k_half: Constant::new(((divider / 2 - 1) as u64).into()),
        }
    }
}

impl Default for UartRx {
    fn default() -> Self {
        Self::new(16)
    }
}

impl Logic for UartRx {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, sync1, sync2, state, cnt, idx, shift, out, strobe);
        self.sync1.d.next = self.rx.val();
        self.sync2.d.next = self.sync1.q.val();
        self.data.next = self.out.q.val();
        self.valid.next = self.strobe.q.val();
        self.strobe.d.next = false;
        if self.cnt.q.val() != 0 {
            self.cnt.d.next = self.cnt.q.val() - 1;
        }
        match self.state.q.val() {
            RxState::Idle => {
                if !self.sync2.q.val() {
                    self.cnt.d.next = self.k_half.val();
                    self.state.d.next = RxState::Start;
                }
            }
            RxState::Start => {
                if self.cnt.q.val() == 0 {
                    if self.sync2.q.val() {
                        self.state.d.next = RxState::Idle;
                    } else {
                        self.cnt.d.next = self.k_bit.val();
                        self.idx.d.next = 0.into();
                        self.state.d.next = RxState::Data;
                    }
                }
            }
            RxState::Data => {
                if self.cnt.q.val() == 0 {
                    self.shift.d.next = (self.shift.q.val() >> 1)
                        | (bit_cast::<8, 1>(self.sync2.q.val().into()) << 7);
                    self.cnt.d.next = self.k_bit.val();
                    self.idx.d.next = self.idx.q.val() + 1;
                    if self.idx.q.val() == 7 {
                        self.state.d.next = RxState::Stop;
                    }
                }
            }
            RxState::Stop => {
                if self.cnt.q.val() == 0 {
                    if self.sync2.q.val() {
                        self.out.d.next = self.shift.q.val();
                        self.strobe.d.next = true;
                    }
                    self.state.d.next = RxState::Idle;
                }
            }
            _ => {
                self.state.d.next = RxState::Idle;
            }
        }
        if self.reset.val() {
            self.state.d.next = RxState::Idle;
            self.strobe.d.next = false;
            self.sync1.d.next = true;
            self.sync2.d.next = true;
        }
    }
}

/// UART transmitter: `start` (while not `busy`) sends `data`. The line is a
/// register bit (the low bit of the frame shift register, all ones when
/// idle), so `tx` never glitches.
#[derive(LogicBlock)]
pub struct UartTx {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset, active high.
    pub reset: Signal<In, Bit>,
    /// The byte to send, sampled with `start`.
    pub data: Signal<In, Bits<8>>,
    /// Send `data` (ignored while `busy`).
    pub start: Signal<In, Bit>,
    /// A frame is being sent.
    pub busy: Signal<Out, Bit>,
    /// The serial line.
    pub tx: Signal<Out, Bit>,
    frame: DFF<Bits<10>>,
    left: DFF<Bits<4>>,
    cnt: DFF<Bits<16>>,
    k_bit: Constant<Bits<16>>,
}

impl UartTx {
    /// A transmitter for `divider` clocks per bit (at least 4).
    pub fn new(divider: u16) -> Self {
        let divider = divider.max(4);
        Self {
            clock: Default::default(),
            reset: Default::default(),
            data: Default::default(),
            start: Default::default(),
            busy: Default::default(),
            tx: Default::default(),
            frame: Default::default(),
            left: Default::default(),
            cnt: Default::default(),
            k_bit: Constant::new(((divider - 1) as u64).into()),
        }
    }
}

impl Default for UartTx {
    fn default() -> Self {
        Self::new(16)
    }
}

impl Logic for UartTx {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, frame, left, cnt);
        self.tx.next = self.frame.q.val().get_bit(0);
        self.busy.next = self.left.q.val() != 0;
        if self.left.q.val() == 0 {
            self.frame.d.next = 0x3FF.into();
            if self.start.val() {
                // stop bit, data LSB first, start bit
                self.frame.d.next = (bit_cast::<10, 8>(self.data.val()) << 1) | 0x200;
                self.left.d.next = 10.into();
                self.cnt.d.next = self.k_bit.val();
            }
        } else if self.cnt.q.val() == 0 {
            self.frame.d.next = (self.frame.q.val() >> 1) | 0x200;
            self.left.d.next = self.left.q.val() - 1;
            self.cnt.d.next = self.k_bit.val();
        } else {
            self.cnt.d.next = self.cnt.q.val() - 1;
        }
        if self.reset.val() {
            self.frame.d.next = 0x3FF.into();
            self.left.d.next = 0.into();
        }
    }
}
