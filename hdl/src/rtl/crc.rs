//! CRC-32C at 8 bytes per cycle, in XOR-matrix form.
//!
//! Each next-state bit is the parity of a masked copy of {state, data}; the
//! masks are computed here at elaboration time from the bit-serial
//! definition. This formulation is what reaches >150 MHz on ECP5 (the
//! bit-serial loop written naturally reaches 40 MHz, see DESIGN.md).
//! A final word with fewer than 8 valid bytes is folded in one byte per
//! cycle through an 8-bit matrix (`busy` is high meanwhile), which costs at
//! most 7 cycles per transfer instead of eight parallel partial matrices.
//!
//! The inputs are registered before the matrix: the matrix is four LUT
//! levels on its own, and the inputs come from muxes and handshakes in the
//! mover and the sequencer. So a word given with `valid` is in `crc` two
//! edges later; `idle` says when everything given has been folded.

use rust_hdl::prelude::*;

/// Reflected CRC-32C polynomial.
const POLY: u32 = 0x82F6_3B78;

/// Advance `state` by `nbits` data bits, LSB first (the reflected CRC).
fn serial(mut state: u32, data: u64, nbits: usize) -> u32 {
    for i in 0..nbits {
        let bit = ((data >> i) & 1) as u32;
        let fb = (state ^ bit) & 1;
        state >>= 1;
        if fb != 0 {
            state ^= POLY;
        }
    }
    state
}

/// Masks for a `nbits`-wide update: for output bit i, the mask over
/// {data (low nbits), state (next 32 bits)}.
pub(super) fn masks(nbits: usize) -> Vec<u128> {
    let mut out = vec![0u128; 32];
    for k in 0..32 {
        let s = serial(1 << k, 0, nbits);
        for (i, m) in out.iter_mut().enumerate() {
            if (s >> i) & 1 != 0 {
                *m |= 1u128 << (nbits + k);
            }
        }
    }
    for j in 0..nbits {
        let s = serial(0, 1u64 << j, nbits);
        for (i, m) in out.iter_mut().enumerate() {
            if (s >> i) & 1 != 0 {
                *m |= 1u128 << j;
            }
        }
    }
    out
}

pub(super) fn pack<const W: usize>(masks: &[u128], width: usize) -> Bits<W> {
    let mut b = Bits::<W>::default();
    for (i, m) in masks.iter().enumerate() {
        for j in 0..width {
            if (m >> j) & 1 != 0 {
                b = b.replace_bit(i * width + j, true);
            }
        }
    }
    b
}

/// CRC-32C unit: `init` restarts, `valid` folds `data` (its low `nbytes`
/// bytes, 1..=8; anything but 8 only on the final word of a transfer).
#[derive(LogicBlock)]
pub struct Crc32c {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Restart the CRC (state := 0xFFFFFFFF). Wins over `valid`.
    pub init: Signal<In, Bit>,
    /// Fold `data` (taken this cycle). Must not be asserted while `busy`.
    pub valid: Signal<In, Bit>,
    /// Data word, byte 0 in bits 7:0.
    pub data: Signal<In, Bits<64>>,
    /// Number of valid bytes in `data`, 1..=8.
    pub nbytes: Signal<In, Bits<4>>,
    /// The CRC of everything folded since `init` (final XOR applied);
    /// complete when `idle`.
    pub crc: Signal<Out, Bits<32>>,
    /// A short final word is waiting or being folded: `valid` must wait.
    pub busy: Signal<Out, Bit>,
    /// Everything given so far is folded into `crc`.
    pub idle: Signal<Out, Bit>,
    init_q: DFF<Bit>,
    valid_q: DFF<Bit>,
    data_q: DFF<Bits<64>>,
    nbytes_q: DFF<Bits<4>>,
    short_q: DFF<Bit>,
    state: DFF<Bits<32>>,
    tail: DFF<Bits<64>>,
    tail_left: DFF<Bits<4>>,
    m64: Constant<Bits<3072>>,
    m8: Constant<Bits<1280>>,
    in64: Signal<Local, Bits<96>>,
    in8: Signal<Local, Bits<40>>,
    step64: Signal<Local, Bits<32>>,
    step8: Signal<Local, Bits<32>>,
    byte_in: Signal<Local, Bits<8>>,
}

impl Default for Crc32c {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            init: Default::default(),
            valid: Default::default(),
            data: Default::default(),
            nbytes: Default::default(),
            crc: Default::default(),
            busy: Default::default(),
            idle: Default::default(),
            init_q: Default::default(),
            valid_q: Default::default(),
            data_q: Default::default(),
            nbytes_q: Default::default(),
            short_q: Default::default(),
            state: Default::default(),
            tail: Default::default(),
            tail_left: Default::default(),
            m64: Constant::new(pack::<3072>(&masks(64), 96)),
            m8: Constant::new(pack::<1280>(&masks(8), 40)),
            in64: Default::default(),
            in8: Default::default(),
            step64: Default::default(),
            step8: Default::default(),
            byte_in: Default::default(),
        }
    }
}

impl Logic for Crc32c {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, init_q, valid_q, data_q, nbytes_q, short_q, state, tail, tail_left);
        // Input stage.
        self.init_q.d.next = self.init.val();
        self.valid_q.d.next = self.valid.val();
        self.short_q.d.next = self.valid.val() & (self.nbytes.val() != 8);
        // Loaded every cycle (used only in the cycle after `valid`): no clock
        // enable, so `valid`, late from the ports, reaches one flip-flop only.
        self.data_q.d.next = self.data.val();
        self.nbytes_q.d.next = self.nbytes.val();
        self.crc.next = !self.state.q.val();
        self.busy.next = self.tail_left.q.val().any() | self.short_q.q.val();
        self.idle.next =
            !self.tail_left.q.val().any() & !self.valid_q.q.val() & !self.init_q.q.val();
        // The byte folded by the 8-bit matrix: the tail byte while busy, else
        // byte 0 of a short final word.
        self.byte_in.next = self.data_q.q.val().get_bits::<8>(0);
        if self.tail_left.q.val().any() {
            self.byte_in.next = self.tail.q.val().get_bits::<8>(0);
        }
        self.in64.next = (bit_cast::<96, 32>(self.state.q.val()) << 64)
            | bit_cast::<96, 64>(self.data_q.q.val());
        self.in8.next =
            (bit_cast::<40, 32>(self.state.q.val()) << 8) | bit_cast::<40, 8>(self.byte_in.val());
        self.step64.next = 0.into();
        self.step8.next = 0.into();
        for i in 0..32 {
            self.step64.next = self.step64.val().replace_bit(
                i,
                (self.m64.val().get_bits::<96>(i * 96) & self.in64.val()).xor(),
            );
            self.step8.next = self.step8.val().replace_bit(
                i,
                (self.m8.val().get_bits::<40>(i * 40) & self.in8.val()).xor(),
            );
        }
        if self.init_q.q.val() {
            self.state.d.next = 0xFFFF_FFFF_u64.into();
            self.tail_left.d.next = 0.into();
        } else if self.tail_left.q.val().any() {
            self.state.d.next = self.step8.val();
            self.tail.d.next = self.tail.q.val() >> 8;
            self.tail_left.d.next = self.tail_left.q.val() - 1;
        } else if self.valid_q.q.val() {
            if !self.short_q.q.val() {
                self.state.d.next = self.step64.val();
            } else {
                self.state.d.next = self.step8.val();
                self.tail.d.next = self.data_q.q.val() >> 8;
                self.tail_left.d.next = self.nbytes_q.q.val() - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_matches_serial() {
        let m = masks(64);
        let mut x = 0x1234_5678_9abc_def0_u64;
        let mut st = 0xFFFF_FFFFu32;
        for _ in 0..50 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let want = serial(st, x, 64);
            let inp = (st as u128) << 64 | x as u128;
            let mut got = 0u32;
            for (i, mi) in m.iter().enumerate() {
                if (mi & inp).count_ones() % 2 == 1 {
                    got |= 1 << i;
                }
            }
            assert_eq!(got, want);
            st = want;
        }
        assert_eq!(
            !serial(!0, u64::from_le_bytes(*b"12345678"), 64),
            crate::contract::crc32c(b"12345678")
        );
    }
}
