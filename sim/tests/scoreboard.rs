//! The controller under Verilator against the Rust reference model, with
//! seeded random traffic (every opcode, sizes 1 B..1 MiB, unaligned host
//! addresses, bad keys, bad flags, out-of-range windows, CHECK with the
//! right CRC as often as with a wrong one): every completion must equal the
//! model's, carry its descriptor's ring index and the phase of its
//! completion slot, every completion status an operation can have must be
//! reached, and at the end both NV tiers must be identical byte for byte
//! (so no operation touched a byte the model did not).

use hitless_hdl::contract::{
    flags, make_key, perm, reg, Descriptor, Opcode, Status, DEFAULT_GEOMETRY,
};
use hitless_hdl::model::{HostMemory, Model, PagedMemory};
use hitless_sim::harness::{program_entry, Rings, DATA_ADDR};
use hitless_sim::{CardTiming, PortTiming, SimCard};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Entry {
    index: u32,
    tag: u32,
    base: u32,
    len: u32,
    perm: u32,
}

fn entries() -> Vec<Entry> {
    let g = DEFAULT_GEOMETRY;
    let all =
        perm::VALID | perm::READ | perm::WRITE | perm::COMMIT | perm::LOG | perm::WARM | perm::COLD;
    vec![
        Entry {
            index: 1,
            tag: 0x0AB_CDEF,
            base: 0,
            len: g.region_size,
            perm: all | perm::REGION,
        },
        Entry {
            index: 2,
            tag: 0x1234,
            base: g.region_a_base(),
            len: 2 * g.region_size,
            perm: perm::VALID | perm::READ | perm::WRITE | perm::WARM | perm::COLD,
        },
        Entry {
            index: 3,
            tag: 0x77,
            base: g.log_base(),
            len: g.log_size,
            perm: perm::VALID | perm::READ | perm::LOG | perm::WARM | perm::COLD,
        },
        Entry {
            index: 4,
            tag: 0x5,
            base: 0x1_0000,
            len: 0x1_0000,
            perm: perm::VALID | perm::WRITE | perm::WARM | perm::REGION,
        },
        Entry {
            index: 5,
            tag: 0x9,
            base: 0,
            len: 4096,
            perm: perm::READ | perm::WRITE,
        },
    ]
}

fn random_len(rng: &mut ChaCha8Rng) -> u32 {
    match rng.gen_range(0..100) {
        0..=2 => 0,
        3..=40 => rng.gen_range(1..64),
        41..=85 => rng.gen_range(64..8192),
        86..=97 => rng.gen_range(8192..131072),
        _ => rng.gen_range(131072..=(1 << 20) + 16),
    }
}

fn random_desc(rng: &mut ChaCha8Rng, ents: &[Entry], tag: u16) -> Descriptor {
    let op = match rng.gen_range(0..100) {
        0..=1 => rng.gen_range(8..=255),
        2..=4 => 0,
        5..=34 => Opcode::Write as u8,
        35..=49 => Opcode::Read as u8,
        50..=59 => Opcode::Validate as u8,
        60..=69 => Opcode::Copy as u8,
        70..=79 => Opcode::Flip as u8,
        80..=93 => Opcode::Append as u8,
        _ => Opcode::LogTrim as u8,
    };
    // Mostly the all-permission region window, so most operations execute.
    let e = if rng.gen_bool(0.75) {
        &ents[0]
    } else {
        &ents[rng.gen_range(0..ents.len())]
    };
    let mut key = make_key(e.index, e.tag);
    match rng.gen_range(0..40) {
        0 => key ^= 1 << rng.gen_range(4..32),
        1 => key = make_key(rng.gen_range(0..16), e.tag),
        _ => {}
    }
    let mut fl = rng.gen::<u8>() & 0x3F;
    // Keep commits likely but not universal; CHECK on half the operations
    // (the caller gives half of those the right CRC).
    if rng.gen_bool(0.5) {
        fl &= !flags::CHECK;
    }
    if rng.gen_range(0..50) == 0 {
        fl |= 0x40 << rng.gen_range(0..2);
    }
    let len = random_len(rng);
    let window = e.len.max(8);
    let mut off = rng.gen_range(0..window) & !7;
    if rng.gen_range(0..20) == 0 {
        off |= rng.gen_range(1..8);
    }
    if rng.gen_bool(0.5) {
        off = 0;
    }
    let aux = if op == Opcode::LogTrim as u8 {
        rng.gen::<u32>() % 4096 * 8
    } else {
        rng.gen_range(0..window) & !7
    };
    Descriptor {
        opcode: op,
        flags: fl,
        tag,
        key,
        host_addr: DATA_ADDR + rng.gen_range(0..64u64),
        nv_offset: off,
        len,
        aux,
        crc: rng.gen(),
    }
}

/// The statuses an executed descriptor can complete with (`RING_OVERFLOW`
/// answers a refused doorbell, not a descriptor: the directed tests).
fn reachable() -> Vec<u8> {
    Status::ALL
        .iter()
        .filter(|s| **s != Status::RingOverflow)
        .map(|s| *s as u8)
        .collect()
}

/// Runs the scoreboard; returns the completion statuses seen.
fn run_scoreboard(seed: u64, ops: usize, timing: CardTiming) -> std::collections::BTreeSet<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let g = DEFAULT_GEOMETRY;
    let mut card = SimCard::new(timing);
    card.wait_boot(1_000_000).expect("boot");
    let mut model = Model::new(g);
    model.boot_scan();
    let mut mhost = PagedMemory::new();
    const CQ_LOG2: u32 = 3;
    let mut rings = Rings::setup(&mut card, 3, CQ_LOG2).expect("rings");
    let ents = entries();
    for e in &ents {
        program_entry(&mut card, e.index, e.tag, e.base, e.len, e.perm).expect("pt");
        model.program_pt(e.index, e.tag, e.base, e.len, e.perm);
    }
    let mut hist = std::collections::BTreeMap::new();
    let (mut right_crc, mut checked_ok) = (0u32, 0u32);
    for i in 0..ops {
        let mut d = random_desc(&mut rng, &ents, i as u16);
        // Fresh payload in both host memories.
        let n = (d.len as usize).min((1 << 20) + 64);
        let payload: Vec<u8> = (0..n + 8).map(|_| rng.gen()).collect();
        card.host.write(d.host_addr, &payload);
        mhost.write(d.host_addr, &payload);
        if d.flags & flags::CHECK != 0 && rng.gen_bool(0.5) {
            // The CRC the operation will compute, from a dry run of the
            // model: CHECK then passes (and a commit follows where asked).
            let mut dry = model.clone();
            let mut dry_host = mhost.clone();
            d.crc = dry.execute(&d, &mut dry_host).crc;
            right_crc += 1;
        }
        let want = model.execute(&d, &mut mhost);
        let (index, cq_index) = (rings.tail(), rings.cq_tail());
        let got = rings
            .exec(&mut card, d, 20_000_000)
            .unwrap_or_else(|e| panic!("op {i} {d:?}: {e}"));
        assert_eq!(
            (got.tag, got.status, got.opcode, got.crc, got.info),
            (want.tag, want.status, want.opcode, want.crc, want.info),
            "seed {seed} op {i}: {d:?}"
        );
        assert_eq!(
            (got.desc_index, got.phase),
            (index, (cq_index >> CQ_LOG2) & 1 == 0),
            "seed {seed} op {i}: ring index and phase of the completion"
        );
        if d.flags & flags::CHECK != 0 && got.status == Status::Ok as u8 {
            checked_ok += 1;
        }
        *hist.entry((d.opcode.min(8), got.status)).or_insert(0u32) += 1;
        if d.opcode == Opcode::Read as u8 && n > 0 {
            let mut a = vec![0u8; n + 8];
            let mut b = vec![0u8; n + 8];
            card.host.read(d.host_addr, &mut a);
            mhost.read(d.host_addr, &mut b);
            assert!(a == b, "seed {seed} op {i}: READ data differs");
        }
    }
    eprintln!(
        "seed {seed}: (opcode, status) counts {hist:?}, {} cycles",
        card.cycle()
    );
    let ok_data_ops = hist
        .iter()
        .filter(|((op, st), _)| (1..=6).contains(op) && *st == 0)
        .map(|(_, n)| n)
        .sum::<u32>();
    assert!(
        ok_data_ops as usize > ops / 4,
        "seed {seed}: too few successful operations: {hist:?}"
    );
    // CHECK with the right CRC must pass often, not only fail.
    assert!(
        checked_ok as usize >= ops / 20,
        "seed {seed}: {checked_ok} CHECKed operations passed ({right_crc} had the right CRC)"
    );
    for r in [
        reg::WARM_STATE,
        reg::WARM_SEQ,
        reg::WARM_A_LEN,
        reg::WARM_A_CRC,
        reg::WARM_B_LEN,
        reg::WARM_B_CRC,
        reg::WARM_LOG_HEAD,
        reg::WARM_LOG_TAIL,
        reg::COLD_STATE,
        reg::COLD_SEQ,
        reg::COLD_A_LEN,
        reg::COLD_A_CRC,
        reg::COLD_B_LEN,
        reg::COLD_B_CRC,
        reg::COLD_LOG_HEAD,
        reg::COLD_LOG_TAIL,
        reg::OPS_OK,
        reg::OPS_FAILED,
    ] {
        assert_eq!(
            card.read_reg(r).unwrap(),
            model.read_reg(r),
            "seed {seed}: register {r:#x}"
        );
    }
    assert!(
        card.warm.bytes == model.nv[0],
        "seed {seed}: warm tier differs from the model"
    );
    assert!(
        card.cold.bytes == model.nv[1],
        "seed {seed}: cold tier differs from the model"
    );
    assert_eq!(card.warm.out_of_range + card.cold.out_of_range, 0);
    hist.keys().map(|(_, st)| *st).collect()
}

fn assert_every_status(seen: &std::collections::BTreeSet<u8>) {
    let missing: Vec<_> = reachable()
        .into_iter()
        .filter(|s| !seen.contains(s))
        .filter_map(Status::from_u8)
        .collect();
    assert!(missing.is_empty(), "statuses never reached: {missing:?}");
}

#[test]
fn random_traffic_matches_model() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in [1, 3, 4] {
        seen.extend(run_scoreboard(seed, 400, CardTiming::default()));
    }
    assert_every_status(&seen);
}

#[test]
fn random_traffic_with_stalls_and_long_latency() {
    let t = CardTiming {
        host: PortTiming {
            latency: 256,
            write_latency: 200,
            stall: 0.2,
        },
        warm: PortTiming {
            latency: 3,
            write_latency: 1,
            stall: 0.3,
        },
        cold: PortTiming {
            latency: 64,
            write_latency: 130,
            stall: 0.1,
        },
    };
    let _ = run_scoreboard(2, 200, t);
}
