//! SPI master, mode 0, one byte per `start`: the wire-level half of the
//! flash-backed cold tier ([`super::flash`]). Chip select belongs to the
//! caller (a command spans several bytes).
//!
//! SCK idles low; MOSI is set before each rising edge (MSB first) and MISO
//! is sampled as SCK rises, i.e. at the end of the low half, where a mode-0
//! slave has held it since its previous falling edge. Each half period is
//! `half` clocks, so SCK = clock / (2 × half).

use rust_hdl::prelude::*;

/// One SPI byte transfer at a time.
#[derive(LogicBlock)]
pub struct SpiByte {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset, active high.
    pub reset: Signal<In, Bit>,
    /// Transfer `tx` (ignored while `busy`).
    pub start: Signal<In, Bit>,
    /// The byte to send, sampled with `start`.
    pub tx: Signal<In, Bits<8>>,
    /// A transfer is running (high from the cycle after `start`).
    pub busy: Signal<Out, Bit>,
    /// The byte received by the last transfer (valid when `busy` falls).
    pub rx: Signal<Out, Bits<8>>,
    /// Serial clock.
    pub sck: Signal<Out, Bit>,
    /// Master out.
    pub mosi: Signal<Out, Bit>,
    /// Master in.
    pub miso: Signal<In, Bit>,
    shift: DFF<Bits<8>>,
    rxs: DFF<Bits<8>>,
    left: DFF<Bits<4>>,
    cnt: DFF<Bits<8>>,
    sck_q: DFF<Bit>,
    k_half: Constant<Bits<8>>,
}

impl SpiByte {
    /// A master whose SCK half period is `half` clocks (1..=256).
    pub fn new(half: u16) -> Self {
        let half = half.clamp(1, 256);
        Self {
            clock: Default::default(),
            reset: Default::default(),
            start: Default::default(),
            tx: Default::default(),
            busy: Default::default(),
            rx: Default::default(),
            sck: Default::default(),
            mosi: Default::default(),
            miso: Default::default(),
            shift: Default::default(),
            rxs: Default::default(),
            left: Default::default(),
            cnt: Default::default(),
            sck_q: Default::default(),
            k_half: Constant::new(((half - 1) as u64).into()),
        }
    }
}

impl Default for SpiByte {
    fn default() -> Self {
        Self::new(2)
    }
}

impl Logic for SpiByte {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, shift, rxs, left, cnt, sck_q);
        self.busy.next = self.left.q.val() != 0;
        self.rx.next = self.rxs.q.val();
        self.sck.next = self.sck_q.q.val();
        self.mosi.next = self.shift.q.val().get_bit(7);
        if self.left.q.val() == 0 {
            if self.start.val() {
                self.shift.d.next = self.tx.val();
                self.left.d.next = 8.into();
                self.cnt.d.next = self.k_half.val();
            }
        } else if self.cnt.q.val() != 0 {
            self.cnt.d.next = self.cnt.q.val() - 1;
        } else {
            self.cnt.d.next = self.k_half.val();
            if !self.sck_q.q.val() {
                self.sck_q.d.next = true;
                self.rxs.d.next =
                    (self.rxs.q.val() << 1) | bit_cast::<8, 1>(self.miso.val().into());
            } else {
                self.sck_q.d.next = false;
                self.shift.d.next = self.shift.q.val() << 1;
                self.left.d.next = self.left.q.val() - 1;
            }
        }
        if self.reset.val() {
            self.left.d.next = 0.into();
            self.sck_q.d.next = false;
        }
    }
}
