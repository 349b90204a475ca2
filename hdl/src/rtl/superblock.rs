//! The full controller's superblock logic, as blocks with their own
//! benches against the reference model:
//!
//! - [`SbScan`]: the boot scan's judgement. The superblock slots of a tier
//!   are decoded as their words arrive, each is judged (magic, layout
//!   version, CRC over words 0-6 with bits 63:32 of word 7 zero), the valid
//!   slot with the higher sequence number is kept (slot 0 on a tie), and the
//!   region verdicts are applied: active region intact → `OK`; else the
//!   alternate region intact → `FELL_BACK` with the alternate active; else
//!   `LOST`; no valid slot → `EMPTY` and the blank state.
//! - [`SbCommit`]: the commit's new superblock (one kind of commit per
//!   strobe: FLIP / WRITE+COMMIT, LOG_TRIM, APPEND), its eight words as the
//!   commit writes them, and the slot they go to.
//!
//! What stays in the controller's sequencer (`controller.rs`), and why: the
//! reads of the slots and the writes of the new superblock go through the
//! engine's memory port, the CRC of the slot words and of the new
//! superblock through the CRC unit in the mover, and the region scans
//! through the mover itself. Those three are shared with every other
//! operation, and the port's command mux is on the controller's critical
//! path on ECP5 (`bitstreams/REPORT.md`): a boot-scan or commit block with
//! its own port and CRC unit would add a level of muxing there (or a
//! second CRC matrix, ~600 LUT4). So the phases that sequence those
//! accesses (`Boot*`, `CommitCrc`, `CommitWrite`, `CommitAck`) stay in the
//! controller's Phase FSM and strobe these blocks; everything that decides
//! (decoding, judging, building, encoding) is here. The blocks hold the
//! registers the controller held for them, with the same enables (the
//! strobes are the one-hot phase bits), but for one: `SbScan` keeps the
//! slot's stored CRC in a register of its own (`slot_crc`, 32 flip-flops)
//! where the controller had borrowed its result-CRC register, so that the
//! block's judgement needs nothing of the controller's.
//!
//! The reduced controller (`lite`) keeps its own superblock logic: it holds
//! the tier's superblock as eight words in RAM, not decoded (its area
//! shape, ARCHITECTURE.md), so these decoded-state blocks do not fit it.

use crate::contract;
use rust_hdl::prelude::*;

/// Committed state of one tier, as held by the controller (the decoded
/// superblock plus the boot result).
#[derive(Copy, Clone, Debug, Default, PartialEq, LogicStruct)]
pub struct TierState {
    pub seq: Bits<64>,
    pub active: Bit,
    pub len_a: Bits<32>,
    pub crc_a: Bits<32>,
    pub len_b: Bits<32>,
    pub crc_b: Bits<32>,
    pub log_head: Bits<32>,
    pub log_tail: Bits<32>,
    pub log_seq: Bits<64>,
    pub result: Bits<2>,
}

fn c64(v: u64) -> Constant<Bits<64>> {
    Constant::new(v.into())
}
fn res(r: contract::BootResult) -> Constant<Bits<2>> {
    Constant::new((r as u64).into())
}

/// The boot scan's judgement of one tier (see the module doc). The
/// controller strobes it as its phases go: `clear` when a tier starts,
/// `word_valid` for each slot word read, `check` when the slot's CRC is
/// folded, `take` after it, `region_first` before the region checks and
/// `verdict` after each one.
#[derive(LogicBlock)]
pub struct SbScan {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// A tier starts: the state is the blank tier (`EMPTY`, all zero), no
    /// slot kept.
    pub clear: Signal<In, Bit>,
    /// Word `word_idx` of the slot being read is `word`.
    pub word_valid: Signal<In, Bit>,
    pub word_idx: Signal<In, Bits<3>>,
    pub word: Signal<In, Bits<64>>,
    /// All eight words are in and `crc` is the CRC-32C of words 0-6: judge
    /// the slot (registered: `take` may come a cycle later).
    pub check: Signal<In, Bit>,
    pub crc: Signal<In, Bits<32>>,
    /// Keep the slot if it is valid and no valid slot is kept yet, or
    /// (`second`: this is slot 1) it is newer than the kept one.
    pub take: Signal<In, Bit>,
    pub second: Signal<In, Bit>,
    /// The region checks start with the active region.
    pub region_first: Signal<In, Bit>,
    /// The region under test (`region_b`, `region_len`, `region_crc`) was
    /// scanned; `region_ok`: its CRC matched and its length fits.
    pub verdict: Signal<In, Bit>,
    pub region_ok: Signal<In, Bit>,
    /// The tier's state so far (the result once the verdicts are in).
    pub state: Signal<Out, TierState>,
    /// A valid slot was kept.
    pub have: Signal<Out, Bit>,
    /// The region under test is the alternate one (the active one failed).
    pub tried: Signal<Out, Bit>,
    /// The region under test is B, its recorded length and CRC.
    pub region_b: Signal<Out, Bit>,
    pub region_len: Signal<Out, Bits<32>>,
    pub region_crc: Signal<Out, Bits<32>>,
    scan: DFF<TierState>,
    cand: DFF<TierState>,
    have_r: DFF<Bit>,
    magic_ok: DFF<Bit>,
    ver_ok: DFF<Bit>,
    slot_hi_zero: DFF<Bit>,
    slot_crc: DFF<Bits<32>>,
    slot_ok: DFF<Bit>,
    slot_newer: DFF<Bit>,
    tried_r: DFF<Bit>,
    k_magic: Constant<Bits<64>>,
    k_layout: Constant<Bits<8>>,
    k_blank: Constant<TierState>,
    k_res_empty: Constant<Bits<2>>,
    k_res_ok: Constant<Bits<2>>,
    k_res_fell_back: Constant<Bits<2>>,
    k_res_lost: Constant<Bits<2>>,
}

impl Default for SbScan {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            clear: Default::default(),
            word_valid: Default::default(),
            word_idx: Default::default(),
            word: Default::default(),
            check: Default::default(),
            crc: Default::default(),
            take: Default::default(),
            second: Default::default(),
            region_first: Default::default(),
            verdict: Default::default(),
            region_ok: Default::default(),
            state: Default::default(),
            have: Default::default(),
            tried: Default::default(),
            region_b: Default::default(),
            region_len: Default::default(),
            region_crc: Default::default(),
            scan: Default::default(),
            cand: Default::default(),
            have_r: Default::default(),
            magic_ok: Default::default(),
            ver_ok: Default::default(),
            slot_hi_zero: Default::default(),
            slot_crc: Default::default(),
            slot_ok: Default::default(),
            slot_newer: Default::default(),
            tried_r: Default::default(),
            k_magic: c64(contract::SUPERBLOCK_MAGIC),
            k_layout: Constant::new((contract::LAYOUT_VERSION as u64).into()),
            k_blank: Constant::new(TierState::default()),
            k_res_empty: res(contract::BootResult::Empty),
            k_res_ok: res(contract::BootResult::Ok),
            k_res_fell_back: res(contract::BootResult::FellBack),
            k_res_lost: res(contract::BootResult::Lost),
        }
    }
}

impl Logic for SbScan {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            scan,
            cand,
            have_r,
            magic_ok,
            ver_ok,
            slot_hi_zero,
            slot_crc,
            slot_ok,
            slot_newer,
            tried_r
        );
        self.state.next = self.scan.q.val();
        self.have.next = self.have_r.q.val();
        self.tried.next = self.tried_r.q.val();
        self.region_b.next = self.scan.q.val().active ^ self.tried_r.q.val();
        self.region_len.next = self.scan.q.val().len_a;
        self.region_crc.next = self.scan.q.val().crc_a;
        if self.scan.q.val().active ^ self.tried_r.q.val() {
            self.region_len.next = self.scan.q.val().len_b;
            self.region_crc.next = self.scan.q.val().crc_b;
        }
        if self.clear.val() {
            // The tier is blank until a valid slot is taken.
            self.scan.d.next = self.k_blank.val();
            self.have_r.d.next = false;
        }
        // A slot's words into the candidate as they arrive (no 512-bit
        // buffer); word 7 is the slot's own CRC over words 0-6.
        if self.word_valid.val() {
            if self.word_idx.val() == 0 {
                self.magic_ok.d.next = self.word.val() == self.k_magic.val();
            } else if self.word_idx.val() == 1 {
                self.cand.d.next.seq = self.word.val();
            } else if self.word_idx.val() == 2 {
                self.cand.d.next.active = self.word.val().get_bit(0);
                self.ver_ok.d.next = self.word.val().get_bits::<8>(8) == self.k_layout.val();
            } else if self.word_idx.val() == 3 {
                self.cand.d.next.len_a = self.word.val().get_bits::<32>(0);
                self.cand.d.next.crc_a = self.word.val().get_bits::<32>(32);
            } else if self.word_idx.val() == 4 {
                self.cand.d.next.len_b = self.word.val().get_bits::<32>(0);
                self.cand.d.next.crc_b = self.word.val().get_bits::<32>(32);
            } else if self.word_idx.val() == 5 {
                self.cand.d.next.log_head = self.word.val().get_bits::<32>(0);
                self.cand.d.next.log_tail = self.word.val().get_bits::<32>(32);
            } else if self.word_idx.val() == 6 {
                self.cand.d.next.log_seq = self.word.val();
            } else {
                self.slot_crc.d.next = self.word.val().get_bits::<32>(0);
                self.slot_hi_zero.d.next = !self.word.val().get_bits::<32>(32).any();
            }
        }
        if self.check.val() {
            self.slot_ok.d.next = self.magic_ok.q.val()
                & self.ver_ok.q.val()
                & self.slot_hi_zero.q.val()
                & (self.slot_crc.q.val() == self.crc.val());
            self.slot_newer.d.next = self.cand.q.val().seq > self.scan.q.val().seq;
        }
        if self.take.val()
            & self.slot_ok.q.val()
            & (!self.have_r.q.val() | (self.second.val() & self.slot_newer.q.val()))
        {
            self.scan.d.next = self.cand.q.val();
            self.scan.d.next.result = self.k_res_empty.val();
            self.have_r.d.next = true;
        }
        if self.region_first.val() {
            self.tried_r.d.next = false;
        }
        if self.verdict.val() {
            if self.region_ok.val() {
                if self.tried_r.q.val() {
                    self.scan.d.next.result = self.k_res_fell_back.val();
                    self.scan.d.next.active = !self.scan.q.val().active;
                } else {
                    self.scan.d.next.result = self.k_res_ok.val();
                }
            } else if !self.tried_r.q.val() {
                self.tried_r.d.next = true;
            } else {
                self.scan.d.next.result = self.k_res_lost.val();
            }
        }
    }
}

/// The commit's new superblock. One strobe per kind of commit builds it
/// from the tier's current state `cur` with the sequence number plus one
/// (registered from `cur`, which is stable for many cycles before a
/// commit); then `word` is word `word_idx` of its encoding (`word_sel`
/// low: 0, so nothing wide is built per cycle), word 7 being `sb_crc`, the
/// CRC-32C of words 0-6 the controller folds; `slot` is the slot it is
/// written to (`(seq + 1) & 1`).
#[derive(LogicBlock)]
pub struct SbCommit {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// The tier's committed state.
    pub cur: Signal<In, TierState>,
    /// FLIP or WRITE+COMMIT: the alternate region becomes active with
    /// length `len` and CRC `crc`.
    pub flip: Signal<In, Bit>,
    pub len: Signal<In, Bits<32>>,
    pub crc: Signal<In, Bits<32>>,
    /// LOG_TRIM: the log tail becomes `tail`.
    pub trim: Signal<In, Bit>,
    pub tail: Signal<In, Bits<32>>,
    /// APPEND: the log head advances by `need` (pad and record), the log
    /// sequence by one.
    pub log: Signal<In, Bit>,
    pub need: Signal<In, Bits<32>>,
    /// The word being folded or written.
    pub word_sel: Signal<In, Bit>,
    pub word_idx: Signal<In, Bits<3>>,
    pub sb_crc: Signal<In, Bits<32>>,
    pub word: Signal<Out, Bits<64>>,
    /// The new superblock (the tier's state once it is durable).
    pub new_sb: Signal<Out, TierState>,
    /// Its slot: bit 0 of its sequence number.
    pub slot: Signal<Out, Bit>,
    nsb: DFF<TierState>,
    seq_inc: DFF<Bits<64>>,
    // Whole fields first: yosys cannot slice a slice.
    nsb_seq: Signal<Local, Bits<64>>,
    cur_seq: Signal<Local, Bits<64>>,
    k_magic: Constant<Bits<64>>,
    k_layout: Constant<Bits<8>>,
}

impl Default for SbCommit {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            cur: Default::default(),
            flip: Default::default(),
            len: Default::default(),
            crc: Default::default(),
            trim: Default::default(),
            tail: Default::default(),
            log: Default::default(),
            need: Default::default(),
            word_sel: Default::default(),
            word_idx: Default::default(),
            sb_crc: Default::default(),
            word: Default::default(),
            new_sb: Default::default(),
            slot: Default::default(),
            nsb: Default::default(),
            seq_inc: Default::default(),
            nsb_seq: Default::default(),
            cur_seq: Default::default(),
            k_magic: c64(contract::SUPERBLOCK_MAGIC),
            k_layout: Constant::new((contract::LAYOUT_VERSION as u64).into()),
        }
    }
}

impl Logic for SbCommit {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, nsb, seq_inc);
        self.cur_seq.next = self.cur.val().seq;
        self.seq_inc.d.next = self.cur_seq.val() + 1;
        self.nsb_seq.next = self.nsb.q.val().seq;
        self.new_sb.next = self.nsb.q.val();
        self.slot.next = self.nsb_seq.val().get_bit(0);
        // Each kind of commit in a phase of its own, so the ~330 flip-flops
        // are enabled by the phase alone (deciding whether to commit was the
        // design's longest path when it also drove their enable).
        if self.flip.val() {
            self.nsb.d.next = self.cur.val();
            self.nsb.d.next.active = !self.cur.val().active;
            if self.cur.val().active {
                self.nsb.d.next.len_a = self.len.val();
                self.nsb.d.next.crc_a = self.crc.val();
            } else {
                self.nsb.d.next.len_b = self.len.val();
                self.nsb.d.next.crc_b = self.crc.val();
            }
            self.nsb.d.next.seq = self.seq_inc.q.val();
        }
        if self.trim.val() {
            self.nsb.d.next = self.cur.val();
            self.nsb.d.next.log_tail = self.tail.val();
            self.nsb.d.next.seq = self.seq_inc.q.val();
        }
        if self.log.val() {
            self.nsb.d.next = self.cur.val();
            self.nsb.d.next.log_head = self.cur.val().log_head + self.need.val();
            self.nsb.d.next.log_seq = self.cur.val().log_seq + 1;
            self.nsb.d.next.seq = self.seq_inc.q.val();
        }
        // One word of the superblock (word 7 is its CRC).
        self.word.next = 0.into();
        if self.word_sel.val() {
            if self.word_idx.val() == 0 {
                self.word.next = self.k_magic.val();
            } else if self.word_idx.val() == 1 {
                self.word.next = self.nsb_seq.val();
            } else if self.word_idx.val() == 2 {
                self.word.next = bit_cast::<64, 1>(self.nsb.q.val().active.into())
                    | (bit_cast::<64, 8>(self.k_layout.val()) << 8);
            } else if self.word_idx.val() == 3 {
                self.word.next = bit_cast::<64, 32>(self.nsb.q.val().len_a)
                    | (bit_cast::<64, 32>(self.nsb.q.val().crc_a) << 32);
            } else if self.word_idx.val() == 4 {
                self.word.next = bit_cast::<64, 32>(self.nsb.q.val().len_b)
                    | (bit_cast::<64, 32>(self.nsb.q.val().crc_b) << 32);
            } else if self.word_idx.val() == 5 {
                self.word.next = bit_cast::<64, 32>(self.nsb.q.val().log_head)
                    | (bit_cast::<64, 32>(self.nsb.q.val().log_tail) << 32);
            } else if self.word_idx.val() == 6 {
                self.word.next = self.nsb.q.val().log_seq;
            } else {
                self.word.next = bit_cast::<64, 32>(self.sb_crc.val());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Both blocks in rust-hdl's simulator against the reference model:
    //! `SbCommit`'s words against `Superblock::to_words` of the model's
    //! commit rule, `SbScan`'s verdict against `model::scan_tier` on NV
    //! images with seeded random superblocks, corruptions and regions, and
    //! the directed corners of the boot scan.
    use super::*;
    use crate::contract::{crc32c, superblock_crc, BootResult, NvGeometry, Superblock};
    use crate::model::{self, scan_tier};
    use rand::{Rng, SeedableRng};
    use std::sync::{Arc, Mutex};

    const G: NvGeometry = contract::board::GEOMETRY;

    fn state_of(sb: &Superblock, result: u8) -> TierState {
        TierState {
            seq: sb.seq.into(),
            active: sb.active & 1 == 1,
            len_a: u64::from(sb.region_len[0]).into(),
            crc_a: u64::from(sb.region_crc[0]).into(),
            len_b: u64::from(sb.region_len[1]).into(),
            crc_b: u64::from(sb.region_crc[1]).into(),
            log_head: u64::from(sb.log_head).into(),
            log_tail: u64::from(sb.log_tail).into(),
            log_seq: sb.log_seq.into(),
            result: u64::from(result).into(),
        }
    }

    fn served(t: &TierState) -> model::TierState {
        let result = match t.result.to_u64() {
            0 => BootResult::Empty,
            1 => BootResult::Ok,
            2 => BootResult::FellBack,
            _ => BootResult::Lost,
        };
        model::TierState {
            result,
            sb: Superblock {
                seq: t.seq.to_u64(),
                active: u8::from(t.active),
                region_len: [t.len_a.to_u64() as u32, t.len_b.to_u64() as u32],
                region_crc: [t.crc_a.to_u64() as u32, t.crc_b.to_u64() as u32],
                log_head: t.log_head.to_u64() as u32,
                log_tail: t.log_tail.to_u64() as u32,
                log_seq: t.log_seq.to_u64(),
            },
        }
    }

    fn random_sb(rng: &mut impl Rng) -> Superblock {
        Superblock {
            seq: rng.gen(),
            active: rng.gen_range(0..2),
            region_len: [rng.gen(), rng.gen()],
            region_crc: [rng.gen(), rng.gen()],
            log_head: rng.gen(),
            log_tail: rng.gen(),
            log_seq: rng.gen(),
        }
    }

    /// A commit: its kind and operand.
    #[derive(Clone, Copy, Debug)]
    enum Kind {
        Flip { len: u32, crc: u32 },
        Trim { tail: u32 },
        Log { need: u32 },
    }

    /// The model's commit rule (ARCHITECTURE.md "Execution"; `Model`'s
    /// FLIP / WRITE+COMMIT, LOG_TRIM and APPEND commits).
    fn committed(cur: &Superblock, k: Kind) -> Superblock {
        let mut sb = *cur;
        match k {
            Kind::Flip { len, crc } => {
                let alt = 1 - (cur.active & 1);
                sb.active = alt;
                sb.region_len[alt as usize] = len;
                sb.region_crc[alt as usize] = crc;
            }
            Kind::Trim { tail } => sb.log_tail = tail,
            Kind::Log { need } => {
                sb.log_head = sb.log_head.wrapping_add(need);
                sb.log_seq = sb.log_seq.wrapping_add(1);
            }
        }
        sb.seq = sb.seq.wrapping_add(1);
        sb
    }

    /// Seeded random current states (sequence numbers at the wrap among
    /// them) and commits of each kind: the new superblock, its eight words
    /// (word 7 the CRC the controller folds from words 0-6) and its slot
    /// must be the model's; with `word_sel` low the word is 0.
    #[test]
    fn sb_commit_builds_the_models_superblock() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(31);
        let mut cases = Vec::new();
        for i in 0..300 {
            let mut cur = random_sb(&mut rng);
            if i % 10 == 0 {
                cur.seq = u64::MAX - (i / 10) % 2;
            }
            let k = match i % 3 {
                0 => Kind::Flip {
                    len: rng.gen(),
                    crc: rng.gen(),
                },
                1 => Kind::Trim { tail: rng.gen() },
                _ => Kind::Log { need: rng.gen() },
            };
            cases.push((cur, k));
        }
        let got = Arc::new(Mutex::new(Vec::new()));
        let out = got.clone();
        let inputs = cases.clone();
        let mut sim = Simulation::new();
        sim.add_clock(5, |x: &mut Box<SbCommit>| x.clock.next = !x.clock.val());
        sim.add_testbench(move |mut sim: Sim<SbCommit>| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(33);
            let mut x = sim.init()?;
            for (cur, k) in &inputs {
                x.cur.next = state_of(cur, rng.gen_range(0..4));
                wait_clock_cycle!(sim, clock, x);
                match *k {
                    Kind::Flip { len, crc } => {
                        x.flip.next = true;
                        x.len.next = u64::from(len).into();
                        x.crc.next = u64::from(crc).into();
                    }
                    Kind::Trim { tail } => {
                        x.trim.next = true;
                        x.tail.next = u64::from(tail).into();
                    }
                    Kind::Log { need } => {
                        x.log.next = true;
                        x.need.next = u64::from(need).into();
                    }
                }
                wait_clock_cycle!(sim, clock, x);
                x.flip.next = false;
                x.trim.next = false;
                x.log.next = false;
                // The current state may change once the commit is built.
                x.cur.next = state_of(&random_sb(&mut rng), 0);
                let mut words = [0u64; 8];
                x.word_sel.next = false;
                x.word_idx.next = 3.into();
                wait_clock_cycle!(sim, clock, x);
                let unselected = x.word.val().to_u64();
                for i in 0..8 {
                    x.word_sel.next = true;
                    x.word_idx.next = (i as u64).into();
                    if i == 7 {
                        x.sb_crc.next = u64::from(superblock_crc(&words)).into();
                    }
                    wait_clock_cycle!(sim, clock, x);
                    words[i] = x.word.val().to_u64();
                }
                x.word_sel.next = false;
                let next = served(&x.new_sb.val()).sb;
                let slot = x.slot.val();
                if let Ok(mut o) = out.lock() {
                    o.push((words, next, slot, unselected));
                }
            }
            sim.done(x)
        });
        let mut uut = SbCommit::default();
        uut.connect_all();
        sim.run(Box::new(uut), 1_000_000).unwrap();
        let got = got.lock().unwrap();
        assert_eq!(got.len(), cases.len());
        for ((cur, k), (words, next, slot, unselected)) in cases.iter().zip(got.iter()) {
            let want = committed(cur, *k);
            assert_eq!(*next, want, "{k:?} on {cur:?}");
            assert_eq!(*words, want.to_words(), "{k:?} on {cur:?}");
            assert_eq!(Superblock::from_words(words), Some(want));
            assert_eq!(
                Superblock::slot_addr(want.seq),
                u32::from(*slot) * contract::SUPERBLOCK_BYTES
            );
            assert_eq!(*unselected, 0);
        }
    }

    /// Runs the boot scan's judgement on each NV image the way the
    /// controller's phases strobe it (the slot words with random gaps, the
    /// CRC of words 0-6 as the CRC unit gives it, each region's verdict as
    /// the mover's scan and the length check give it) and returns the
    /// tier state it ends with.
    fn scan_on_block(images: Vec<Vec<u8>>, seed: u64) -> Vec<model::TierState> {
        let got = Arc::new(Mutex::new(Vec::new()));
        let out = got.clone();
        let mut sim = Simulation::new();
        sim.add_clock(5, |x: &mut Box<SbScan>| x.clock.next = !x.clock.val());
        sim.add_testbench(move |mut sim: Sim<SbScan>| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut x = sim.init()?;
            for nv in &images {
                x.clear.next = true;
                wait_clock_cycle!(sim, clock, x);
                x.clear.next = false;
                for slot in 0..2usize {
                    let bytes = &nv[slot * 64..slot * 64 + 64];
                    for i in 0..8 {
                        while rng.gen_bool(0.3) {
                            x.word.next = rng.gen::<u64>().into();
                            wait_clock_cycle!(sim, clock, x);
                        }
                        let mut le = [0u8; 8];
                        le.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
                        x.word_valid.next = true;
                        x.word_idx.next = (i as u64).into();
                        x.word.next = u64::from_le_bytes(le).into();
                        wait_clock_cycle!(sim, clock, x);
                        x.word_valid.next = false;
                    }
                    x.check.next = true;
                    x.crc.next = u64::from(crc32c(&bytes[..56])).into();
                    wait_clock_cycle!(sim, clock, x);
                    x.check.next = false;
                    x.take.next = true;
                    x.second.next = slot == 1;
                    wait_clock_cycle!(sim, clock, x);
                    x.take.next = false;
                }
                if x.have.val() {
                    x.region_first.next = true;
                    wait_clock_cycle!(sim, clock, x);
                    x.region_first.next = false;
                    loop {
                        let b = u8::from(x.region_b.val());
                        let len = x.region_len.val().to_u64() as u32;
                        let crc = x.region_crc.val().to_u64() as u32;
                        let base = G.region_base(b) as usize;
                        let ok =
                            len <= G.region_size && crc32c(&nv[base..base + len as usize]) == crc;
                        let tried = x.tried.val();
                        x.verdict.next = true;
                        x.region_ok.next = ok;
                        wait_clock_cycle!(sim, clock, x);
                        x.verdict.next = false;
                        if ok || tried {
                            break;
                        }
                    }
                }
                let s = served(&x.state.val());
                if let Ok(mut o) = out.lock() {
                    o.push(s);
                }
            }
            sim.done(x)
        });
        let mut uut = SbScan::default();
        uut.connect_all();
        sim.run(Box::new(uut), 10_000_000).unwrap();
        let v = got.lock().unwrap().clone();
        v
    }

    /// A tier image: two slots as given, regions A and B of random bytes.
    fn image(rng: &mut impl Rng, slots: [[u8; 64]; 2]) -> Vec<u8> {
        let mut nv: Vec<u8> = (0..G.total()).map(|_| rng.gen()).collect();
        nv[..64].copy_from_slice(&slots[0]);
        nv[64..128].copy_from_slice(&slots[1]);
        nv
    }

    /// A superblock recording the regions of `nv` as they are (so the boot
    /// scan finds them intact), with `seq` and `active`.
    fn recording(nv: &[u8], rng: &mut impl Rng, seq: u64, active: u8) -> Superblock {
        let mut sb = random_sb(rng);
        sb.seq = seq;
        sb.active = active;
        for r in 0..2u8 {
            let len = rng.gen_range(0..=G.region_size);
            let base = G.region_base(r) as usize;
            sb.region_len[r as usize] = len;
            sb.region_crc[r as usize] = crc32c(&nv[base..base + len as usize]);
        }
        sb
    }

    /// Ways a slot can be damaged.
    fn damaged(rng: &mut impl Rng, sb: &Superblock) -> [u8; 64] {
        let mut b = sb.to_bytes();
        match rng.gen_range(0..7) {
            0 => {
                let bit = rng.gen_range(0..512);
                b[bit / 8] ^= 1 << (bit % 8);
            }
            1 => b[0] ^= 0x40, // magic
            2 => {
                // Layout version, the CRC made right again.
                b[17] = b[17].wrapping_add(1);
                let mut w = [0u64; 8];
                for (i, x) in w.iter_mut().enumerate() {
                    *x = u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
                }
                b[56..64].copy_from_slice(&u64::from(superblock_crc(&w)).to_le_bytes());
            }
            3 => b[60] = 1, // bits 63:32 of word 7
            4 => b = [0; 64],
            5 => b = [0xFF; 64],
            _ => b[rng.gen_range(0..56)] ^= 0xFF, // torn
        }
        b
    }

    /// Seeded random tiers: two slots each intact or damaged (a flipped
    /// bit, magic, layout version, the CRC word's high half, blank, erased,
    /// torn), sequence numbers random, equal, adjacent or at the wrap,
    /// regions intact or not (a wrong CRC, a length beyond the region):
    /// the judgement must be `scan_tier`'s, and every boot result must
    /// occur.
    #[test]
    fn sb_scan_judges_as_the_model_on_random_tiers() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(41);
        let mut images = Vec::new();
        for _ in 0..400 {
            let mut nv = image(&mut rng, [[0; 64]; 2]);
            let s0: u64 = rng.gen();
            let s1 = match rng.gen_range(0..4) {
                0 => rng.gen(),
                1 => s0,
                2 => s0.wrapping_add(1),
                _ => s0.wrapping_sub(1),
            };
            let (s0, s1) = if rng.gen_bool(0.1) {
                (u64::MAX, 0)
            } else {
                (s0, s1)
            };
            let mut slots = [[0u8; 64]; 2];
            for (i, seq) in [s0, s1].into_iter().enumerate() {
                let active = rng.gen_range(0..2);
                let mut sb = recording(&nv, &mut rng, seq, active);
                for r in 0..2 {
                    match rng.gen_range(0..6) {
                        0 => sb.region_crc[r] ^= 1 << rng.gen_range(0..32),
                        1 => sb.region_len[r] = G.region_size + rng.gen_range(1..=4096),
                        _ => {}
                    }
                }
                slots[i] = if rng.gen_bool(0.3) {
                    damaged(&mut rng, &sb)
                } else {
                    sb.to_bytes()
                };
            }
            nv[..64].copy_from_slice(&slots[0]);
            nv[64..128].copy_from_slice(&slots[1]);
            images.push(nv);
        }
        let want: Vec<model::TierState> = images.iter().map(|nv| scan_tier(nv, &G)).collect();
        let got = scan_on_block(images, 43);
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            assert_eq!(g, w, "tier {i}");
        }
        for r in [
            BootResult::Empty,
            BootResult::Ok,
            BootResult::FellBack,
            BootResult::Lost,
        ] {
            assert!(
                want.iter().any(|t| t.result == r),
                "no {r:?} among the tiers"
            );
        }
    }

    /// A slot of a directed case: sequence number, active region, each
    /// region intact, the slot corrupt.
    type Slot = (u64, u8, [bool; 2], bool);

    /// The corners by name: newer slot wins (across the sequence wrap as
    /// the model compares: plainly), a tie goes to slot 0, a corrupt newer
    /// slot loses to the older one, both corrupt is a blank tier, an
    /// active region whose CRC does not match falls back to an intact
    /// alternate, both failing is LOST, a length beyond the region fails.
    #[test]
    fn sb_scan_boot_corners() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(47);
        let mut cases: Vec<(&str, Vec<u8>, BootResult, Option<u64>)> = Vec::new();
        let mut add = |name, slot: [Option<Slot>; 2], want, seq| {
            let mut nv = image(&mut rng, [[0; 64]; 2]);
            for (i, s) in slot.iter().enumerate() {
                let bytes = match s {
                    None => [0u8; 64],
                    Some((seq, active, intact, corrupt)) => {
                        let mut sb = recording(&nv, &mut rng, *seq, *active);
                        for (crc, ok) in sb.region_crc.iter_mut().zip(intact) {
                            if !ok {
                                *crc ^= 0x100;
                            }
                        }
                        let mut b = sb.to_bytes();
                        if *corrupt {
                            b[40] ^= 1;
                        }
                        b
                    }
                };
                nv[i * 64..i * 64 + 64].copy_from_slice(&bytes);
            }
            cases.push((name, nv, want, seq));
        };
        let ok = [true, true];
        add(
            "slot 1 newer",
            [Some((5, 0, ok, false)), Some((6, 1, ok, false))],
            BootResult::Ok,
            Some(6),
        );
        add(
            "slot 0 newer",
            [Some((9, 0, ok, false)), Some((8, 1, ok, false))],
            BootResult::Ok,
            Some(9),
        );
        add(
            "wrap: MAX beats 0",
            [Some((u64::MAX, 0, ok, false)), Some((0, 1, ok, false))],
            BootResult::Ok,
            Some(u64::MAX),
        );
        add(
            "wrap: MAX in slot 1",
            [Some((0, 0, ok, false)), Some((u64::MAX, 1, ok, false))],
            BootResult::Ok,
            Some(u64::MAX),
        );
        add(
            "tie: slot 0",
            [Some((3, 0, ok, false)), Some((3, 1, ok, false))],
            BootResult::Ok,
            Some(3),
        );
        add(
            "newer corrupt",
            [Some((4, 0, ok, false)), Some((5, 1, ok, true))],
            BootResult::Ok,
            Some(4),
        );
        add(
            "older corrupt",
            [Some((4, 0, ok, true)), Some((5, 1, ok, false))],
            BootResult::Ok,
            Some(5),
        );
        add(
            "both corrupt",
            [Some((4, 0, ok, true)), Some((5, 1, ok, true))],
            BootResult::Empty,
            Some(0),
        );
        add("blank", [None, None], BootResult::Empty, Some(0));
        add(
            "active A mismatch",
            [Some((7, 0, [false, true], false)), None],
            BootResult::FellBack,
            Some(7),
        );
        add(
            "active B mismatch",
            [None, Some((7, 1, [true, false], false))],
            BootResult::FellBack,
            Some(7),
        );
        add(
            "both mismatch",
            [Some((7, 0, [false, false], false)), None],
            BootResult::Lost,
            Some(7),
        );
        add(
            "alternate mismatch only",
            [Some((7, 1, [false, true], false)), None],
            BootResult::Ok,
            Some(7),
        );
        let images: Vec<Vec<u8>> = cases.iter().map(|c| c.1.clone()).collect();
        // A length beyond the region: the active region fails.
        let mut long = image(&mut rng, [[0; 64]; 2]);
        let mut sb = recording(&long, &mut rng, 2, 0);
        sb.region_len[0] = G.region_size + 8;
        long[..64].copy_from_slice(&sb.to_bytes());
        let mut images = images;
        images.push(long);
        let want: Vec<model::TierState> = images.iter().map(|nv| scan_tier(nv, &G)).collect();
        let got = scan_on_block(images, 53);
        for (i, (name, _, result, seq)) in cases.iter().enumerate() {
            assert_eq!(got[i], want[i], "{name}");
            assert_eq!(got[i].result, *result, "{name}");
            assert_eq!(Some(got[i].sb.seq), *seq, "{name}");
            if *result == BootResult::Empty {
                assert_eq!(got[i].sb, Superblock::blank(), "{name}");
            }
        }
        let last = got.len() - 1;
        assert_eq!(got[last], want[last], "length beyond the region");
        assert_eq!(got[last].result, BootResult::FellBack);
    }
}
