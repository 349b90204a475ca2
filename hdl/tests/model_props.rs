//! Property tests of the reference model: no input makes it panic, the boot
//! scan always yields a consistent state, committed state survives reboot,
//! the log reads back what was appended, and a power cut at any NV write
//! boundary leaves the old or the new state.

use std::collections::VecDeque;

use hitless_hdl::contract::{
    crc32c, flags, perm, reg, BootResult, Descriptor, NvGeometry, Opcode, Status, Superblock,
    MAX_TRANSFER,
};
use hitless_hdl::model::{region_base, tier_bytes, HostMemory, Model, PagedMemory};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const G: NvGeometry = NvGeometry {
    region_size: 8192,
    log_size: 1024,
    data_size: 8192,
};
const HOST: u64 = 0x40_0000;
const HOST_SPAN: u32 = 0x4000;
const TAG: u32 = 0x00C0_FFEE;
const FULL: u32 = perm::VALID
    | perm::READ
    | perm::WRITE
    | perm::COMMIT
    | perm::LOG
    | perm::WARM
    | perm::COLD
    | perm::REGION;

fn host_with_data(seed: u64) -> PagedMemory {
    let mut h = PagedMemory::new();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf = vec![0u8; HOST_SPAN as usize + 64];
    rng.fill(&mut buf[..]);
    h.write(HOST, &buf);
    h
}

fn intact(nv: &[u8], sb: &Superblock, r: u8) -> bool {
    let len = sb.region_len[r as usize];
    if len > G.region_size {
        return false;
    }
    let b = region_base(&G, r) as usize;
    crc32c(&nv[b..b + len as usize]) == sb.region_crc[r as usize]
}

/// What the boot scan promises about the state it reports.
fn assert_boot_invariant(m: &Model) {
    for t in 0..2 {
        let (r, sb) = m.tier_state(t);
        let nv = &m.nv[t];
        match r {
            BootResult::Empty => {
                assert_eq!(sb, Superblock::blank());
                assert!(Superblock::from_bytes(&nv[0..64]).is_none());
                assert!(Superblock::from_bytes(&nv[64..128]).is_none());
            }
            BootResult::Ok => assert!(intact(nv, &sb, sb.active)),
            BootResult::FellBack => {
                assert!(intact(nv, &sb, sb.active));
                assert!(!intact(nv, &sb, 1 - sb.active));
            }
            BootResult::Lost => {
                assert!(!intact(nv, &sb, 0));
                assert!(!intact(nv, &sb, 1));
            }
        }
        let base = if t == 0 {
            reg::WARM_STATE
        } else {
            reg::COLD_STATE
        };
        assert_eq!(m.read_reg(base), r as u32 | (sb.active as u32) << 4);
        assert_eq!(m.read_reg(base + 4), sb.seq as u32);
        assert_eq!(m.read_reg(base + 24), sb.log_head);
        assert_eq!(m.read_reg(base + 28), sb.log_tail);
    }
}

fn reboot(m: &Model) -> Model {
    let mut n = Model::with_nv(G, m.nv[0].clone(), m.nv[1].clone());
    n.reset();
    n
}

// ---------------------------------------------------------------------------
// Arbitrary inputs never panic; boot is always consistent.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Action {
    Reg(u32, u32),
    Exec([u64; 4]),
    Process,
    Reset,
    Corrupt(usize, u32, u8),
}

fn interesting_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..64,
        (0u32..2048).prop_map(|x| x * 8),
        any::<u32>(),
        Just(G.region_size),
        Just(G.region_size - 8),
        Just(MAX_TRANSFER),
        Just(MAX_TRANSFER + 1),
        (0u32..64).prop_map(|x| u32::MAX - x),
        (0u32..4096).prop_map(|x| tier_bytes(&G) as u32 - x),
    ]
}

fn descriptor() -> impl Strategy<Value = [u64; 4]> {
    (
        prop_oneof![4 => 0u8..8, 1 => any::<u8>()],
        prop_oneof![4 => 0u8..0x40, 1 => any::<u8>()],
        prop_oneof![4 => (0u32..6).prop_map(|i| (TAG + i) << 4 | i), 1 => any::<u32>()],
        prop_oneof![4 => (0u64..HOST_SPAN as u64).prop_map(|a| HOST + a), 1 => any::<u64>()],
        interesting_u32(),
        prop_oneof![3 => 0u32..700, 1 => interesting_u32()],
        interesting_u32(),
        any::<u32>(),
    )
        .prop_map(|(op, fl, key, host, off, len, aux, crc)| {
            Descriptor {
                opcode: op,
                flags: fl,
                tag: 7,
                key,
                host_addr: host,
                nv_offset: off,
                len,
                aux,
                crc,
            }
            .to_words()
        })
}

fn action() -> impl Strategy<Value = Action> {
    let regs: Vec<u32> = reg::REGISTERS.iter().map(|r| r.offset).collect();
    prop_oneof![
        8 => descriptor().prop_map(Action::Exec),
        2 => (prop::sample::select(regs), any::<u32>()).prop_map(|(o, v)| Action::Reg(o, v)),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(o, v)| Action::Reg(o & 0xFFF, v)),
        1 => Just(Action::Process),
        1 => Just(Action::Reset),
        1 => (0usize..2, any::<u32>(), any::<u8>()).prop_map(|(t, a, b)| Action::Corrupt(t, a, b)),
    ]
}

fn program_default_table(m: &mut Model) {
    // 0: region, everything; 1: region at an offset; 2: raw whole tier;
    // 3: raw, read only; 4: region without the cold tier; 5: huge raw window.
    let t = tier_bytes(&G) as u32;
    m.program_pt(0, TAG, 0, G.region_size, FULL);
    m.program_pt(1, TAG + 1, 64, 4096, FULL);
    m.program_pt(2, TAG + 2, 0, t, FULL & !perm::REGION);
    m.program_pt(3, TAG + 3, 4096, t, perm::VALID | perm::READ | perm::WARM);
    m.program_pt(4, TAG + 4, 0, u32::MAX, FULL & !perm::COLD);
    m.program_pt(5, TAG + 5, 8, u32::MAX, FULL & !perm::REGION);
}

fn garbage_nv(seed: u64, kind: u8) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut nv = vec![0u8; tier_bytes(&G) as usize];
    match kind % 4 {
        0 => {}
        1 => rng.fill(&mut nv[..]),
        _ => {
            // Valid superblocks with random fields.
            for slot in 0..2 {
                let sb = Superblock {
                    seq: rng.gen_range(0..4) + if rng.gen() { u64::MAX - 3 } else { 0 },
                    active: rng.gen_range(0..2),
                    region_len: [rng.gen_range(0..G.region_size + 64), rng.gen()],
                    region_crc: [if rng.gen() { 0 } else { rng.gen() }, rng.gen()],
                    log_head: rng.gen(),
                    log_tail: rng.gen(),
                    log_seq: rng.gen(),
                };
                nv[slot * 64..slot * 64 + 64].copy_from_slice(&sb.to_bytes());
            }
        }
    }
    nv
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_inputs_never_panic(
        seed in any::<u64>(),
        nv_kind in any::<(u8, u8)>(),
        actions in prop::collection::vec(action(), 1..60),
    ) {
        let mut m = Model::with_nv(G, garbage_nv(seed, nv_kind.0), garbage_nv(seed ^ 1, nv_kind.1));
        m.reset();
        assert_boot_invariant(&m);
        program_default_table(&mut m);
        m.write_reg(reg::DQ_SIZE_LOG2, 3);
        m.write_reg(reg::CQ_SIZE_LOG2, 2);
        m.write_reg(reg::DQ_BASE_LO, HOST as u32);
        m.write_reg(reg::CQ_BASE_LO, HOST as u32 + 0x8000);
        m.write_reg(reg::CTRL, 3);
        m.write_reg(reg::IRQ_MASK, 7);
        let mut h = host_with_data(seed);
        for a in &actions {
            match a {
                Action::Reg(o, v) => m.write_reg(*o, *v),
                Action::Exec(w) => {
                    let d = Descriptor::from_words(*w);
                    let c = m.execute(&d, &mut h);
                    prop_assert!(c.status().is_some());
                    prop_assert_eq!(c.tag, d.tag);
                    if c.status != Status::Ok as u8 && c.status != Status::CrcMismatch as u8 {
                        prop_assert_eq!(c.crc, 0);
                    }
                }
                Action::Process => {
                    let cq = m.read_reg(reg::CQ_HEAD);
                    m.write_reg(reg::CQ_TAIL, cq);
                    let n = m.process_rings(&mut h).len();
                    prop_assert!(n <= 1 << 12);
                }
                Action::Reset => {
                    m.reset();
                    assert_boot_invariant(&m);
                    program_default_table(&mut m);
                }
                Action::Corrupt(t, a, b) => {
                    let len = m.nv[*t].len();
                    m.nv[*t][*a as usize % len] ^= *b;
                }
            }
            for r in reg::REGISTERS {
                let _ = m.read_reg(r.offset);
            }
            let _ = m.read_log(0);
            let _ = m.read_log(1);
            let ok = m.read_reg(reg::OPS_OK) as u64;
            let failed = m.read_reg(reg::OPS_FAILED) as u64;
            prop_assert!(ok + failed <= 1 << 20);
        }
        // Boot after any prefix: the reported state is consistent.
        let n = reboot(&m);
        assert_boot_invariant(&n);
    }
}

// ---------------------------------------------------------------------------
// Region-only workloads: state survives reboot, the log reads back, and a
// power cut anywhere leaves old or new.
// ---------------------------------------------------------------------------

/// A raw op choice, interpreted against the live state.
type RawOp = (u8, u8, u32, u32, u32);

fn raw_op() -> impl Strategy<Value = RawOp> {
    (
        0u8..9,
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
}

struct Workload {
    m: Model,
    h: PagedMemory,
    key: u32,
    key_off: u32,
    /// Expected unread log records per tier: (offset, seq, data).
    logs: [VecDeque<(u32, u64, Vec<u8>)>; 2],
}

impl Workload {
    fn new(seed: u64) -> Self {
        let mut m = Model::new(G);
        m.reset();
        let key = m.program_pt(0, TAG, 0, G.region_size, FULL);
        let key_off = m.program_pt(1, TAG + 1, 1024, 4096, FULL & !perm::COMMIT);
        Self {
            m,
            h: host_with_data(seed),
            key,
            key_off,
            logs: [VecDeque::new(), VecDeque::new()],
        }
    }

    /// Turn a raw choice into a descriptor (mostly valid ones).
    fn descriptor(&self, op: RawOp) -> Descriptor {
        let (kind, fl, a, b, c) = op;
        let tier = (fl & 1) as usize;
        let tier_flag = if tier == 1 { flags::COLD } else { 0 };
        let check = fl & 2 != 0;
        let key = if fl & 4 != 0 { self.key_off } else { self.key };
        let mut d = Descriptor {
            opcode: 0,
            flags: tier_flag,
            tag: kind as u16,
            key,
            host_addr: HOST + (a % HOST_SPAN / 2) as u64,
            nv_offset: (b % 600) & !7,
            len: 1 + c % 700,
            aux: 0,
            crc: 0,
        };
        let sb = self.m.tier_state(tier).1;
        match kind {
            0 | 1 => {
                d.opcode = Opcode::Write as u8;
                if kind == 1 {
                    // Through the offset entry (no COMMIT permission): PERMISSION.
                    d.flags |= flags::COMMIT;
                    d.nv_offset = 0;
                } else if fl & 8 != 0 {
                    // Near the end of the region: often OUT_OF_RANGE.
                    d.nv_offset = G.region_size - 8 * (b % 100);
                }
            }
            2 => d.opcode = Opcode::Read as u8,
            3 => {
                d.opcode = Opcode::Validate as u8;
                if fl & 8 != 0 {
                    d.flags |= flags::ALT;
                }
            }
            4 => {
                d.opcode = Opcode::Copy as u8;
                if fl & 16 != 0 {
                    d.flags |= flags::SRC_COLD;
                }
                d.aux = (a % 600) & !7;
                d.host_addr = 0;
            }
            5 => {
                d.opcode = Opcode::Flip as u8;
                d.len = if fl & 32 != 0 {
                    c % (G.region_size + 1)
                } else {
                    c % 800
                };
            }
            6 | 7 => {
                d.opcode = Opcode::Append as u8;
                d.len = 1 + c % 300;
            }
            _ => {
                d.opcode = Opcode::LogTrim as u8;
                let recs = &self.logs[tier];
                let k = (a as usize) % (recs.len() + 1);
                d.aux = recs.get(k).map(|r| r.0).unwrap_or(sb.log_head);
                if fl & 64 != 0 {
                    d.aux = b; // usually BAD_TRIM
                }
            }
        }
        if check {
            d.flags |= flags::CHECK;
            d.crc = if fl & 128 != 0 {
                b
            } else {
                self.expected_crc(&d)
            };
        }
        d
    }

    /// The CRC the operation will compute (for CHECK with a good value).
    fn expected_crc(&self, d: &Descriptor) -> u32 {
        let mut buf = vec![0u8; d.len.min(G.region_size) as usize];
        match Opcode::from_u8(d.opcode) {
            Some(Opcode::Write) => self.h.read(d.host_addr, &mut buf),
            Some(Opcode::Flip) => {
                let t = (d.flags & flags::COLD != 0) as usize;
                let alt = 1 - self.m.tier_state(t).1.active;
                let b = region_base(&G, alt) as usize;
                let n = buf.len();
                buf.copy_from_slice(&self.m.nv[t][b..b + n]);
            }
            _ => return 0,
        }
        crc32c(&buf)
    }

    fn run(&mut self, op: RawOp) -> Result<(Descriptor, Status), TestCaseError> {
        let d = self.descriptor(op);
        let tier = (d.flags & flags::COLD != 0) as usize;
        let before = self.m.tier_state(tier).1;
        let mut payload = vec![0u8; d.len as usize];
        if d.opcode == Opcode::Append as u8 {
            self.h.read(d.host_addr, &mut payload);
        }
        let c = self.m.execute(&d, &mut self.h);
        let s = c.status().unwrap();
        // Region-only workloads never see these.
        prop_assert!(
            !matches!(
                s,
                Status::BadOpcode | Status::BadKey | Status::BadAlign | Status::RingOverflow
            ),
            "{:?} for {:?}",
            s,
            d
        );
        if s == Status::Ok {
            if d.opcode == Opcode::Append as u8 {
                self.logs[tier].push_back((c.info, before.log_seq, payload));
            }
            if d.opcode == Opcode::LogTrim as u8 {
                let t = d.aux;
                let q = &mut self.logs[tier];
                while let Some(f) = q.front() {
                    if f.0.wrapping_sub(before.log_tail) < t.wrapping_sub(before.log_tail) {
                        q.pop_front();
                    } else {
                        break;
                    }
                }
            }
        }
        Ok((d, s))
    }

    fn check_log(&self) -> Result<(), TestCaseError> {
        for t in 0..2 {
            let recs = self
                .m
                .read_log(t)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let got: Vec<_> = recs
                .iter()
                .map(|r| {
                    assert!(r.crc_ok);
                    (r.offset, r.seq, r.data.clone())
                })
                .collect();
            let want: Vec<_> = self.logs[t].iter().cloned().collect();
            prop_assert_eq!(got, want);
        }
        Ok(())
    }
}

/// NV images after a power cut at every 8-byte boundary of every write of `journal`.
fn cut_images(pre: &[Vec<u8>; 2], journal: &[hitless_hdl::model::NvWrite]) -> Vec<[Vec<u8>; 2]> {
    let mut out = Vec::new();
    let mut nv = pre.clone();
    for w in journal {
        let words = w.data.len().div_ceil(8);
        let step = if words > 16 { words / 8 } else { 1 };
        let mut k = 0;
        while k < words {
            let mut img = nv.clone();
            let n = (k * 8).min(w.data.len());
            let a = w.addr as usize;
            img[w.tier][a..a + n].copy_from_slice(&w.data[..n]);
            out.push(img);
            k += step;
        }
        let a = w.addr as usize;
        nv[w.tier][a..a + w.data.len()].copy_from_slice(&w.data);
    }
    out.push(nv);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn committed_state_survives_reboot_and_log_reads_back(
        seed in any::<u64>(),
        ops in prop::collection::vec(raw_op(), 1..80),
    ) {
        let mut w = Workload::new(seed);
        for op in ops {
            w.run(op)?;
            let n = reboot(&w.m);
            prop_assert_eq!(n.tier_state(0), w.m.tier_state(0));
            prop_assert_eq!(n.tier_state(1), w.m.tier_state(1));
            assert_boot_invariant(&n);
            w.check_log()?;
        }
    }

    #[test]
    fn power_cut_leaves_old_or_new(
        seed in any::<u64>(),
        prefix in prop::collection::vec(raw_op(), 0..30),
        last in raw_op(),
    ) {
        let mut w = Workload::new(seed);
        for op in prefix {
            w.run(op)?;
        }
        let old = [w.m.tier_state(0), w.m.tier_state(1)];
        let pre = w.m.nv.clone();
        w.m.set_journal(true);
        w.run(last)?;
        let journal = w.m.take_journal();
        let new = [w.m.tier_state(0), w.m.tier_state(1)];
        for (i, img) in cut_images(&pre, &journal).into_iter().enumerate() {
            let mut n = Model::with_nv(G, img[0].clone(), img[1].clone());
            n.reset();
            for t in 0..2 {
                let s = n.tier_state(t);
                prop_assert!(
                    s == old[t] || s == new[t],
                    "cut {} tier {}: {:?} not old {:?} nor new {:?}", i, t, s, old[t], new[t]
                );
            }
        }
        // The superblock is the last write of a committing operation.
        if old != new {
            let lastw = journal.last().unwrap();
            prop_assert!(lastw.addr == 0 || lastw.addr == 64);
            prop_assert_eq!(lastw.data.len(), 64);
        }
    }
}

/// A long deterministic run of the same workload, checking that it reaches
/// the interesting paths (so the properties above are not vacuous).
#[test]
fn long_workload_reaches_every_path() {
    use std::collections::BTreeSet;
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut w = Workload::new(7);
    let mut seen = BTreeSet::new();
    let mut pads = 0;
    for i in 0..4000 {
        let op: RawOp = (
            rng.gen_range(0..9),
            rng.gen(),
            rng.gen(),
            rng.gen(),
            rng.gen(),
        );
        let head_before = [w.m.tier_state(0).1.log_head, w.m.tier_state(1).1.log_head];
        let (d, s) = w.run(op).unwrap();
        seen.insert((d.opcode, s as u8));
        if d.opcode == Opcode::Append as u8 && s == Status::Ok {
            let t = (d.flags & flags::COLD != 0) as usize;
            let rec = hitless_hdl::contract::log_record_bytes(d.len);
            if w.m.tier_state(t).1.log_head.wrapping_sub(head_before[t]) != rec {
                pads += 1;
            }
        }
        if i % 50 == 0 {
            let n = reboot(&w.m);
            assert_eq!(n.tier_state(0), w.m.tier_state(0));
            assert_eq!(n.tier_state(1), w.m.tier_state(1));
            w.check_log().unwrap();
        }
    }
    let ok = Status::Ok as u8;
    for want in [
        (Opcode::Write as u8, ok),
        (Opcode::Write as u8, Status::CrcMismatch as u8),
        (Opcode::Write as u8, Status::Permission as u8),
        (Opcode::Write as u8, Status::OutOfRange as u8),
        (Opcode::Read as u8, ok),
        (Opcode::Validate as u8, Status::CrcMismatch as u8),
        (Opcode::Copy as u8, ok),
        (Opcode::Flip as u8, ok),
        (Opcode::Flip as u8, Status::CrcMismatch as u8),
        (Opcode::Flip as u8, Status::Permission as u8),
        (Opcode::Append as u8, ok),
        (Opcode::Append as u8, Status::LogFull as u8),
        (Opcode::LogTrim as u8, ok),
        (Opcode::LogTrim as u8, Status::BadTrim as u8),
    ] {
        assert!(seen.contains(&want), "never saw {want:?}: {seen:?}");
    }
    assert!(pads > 10, "only {pads} padded appends");
    assert!(w.m.tier_state(0).1.seq > 100 && w.m.tier_state(1).1.seq > 100);
}
