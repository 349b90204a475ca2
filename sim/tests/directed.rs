//! Directed corner cases for the controller RTL under Verilator: fault
//! injection (bit flips, torn superblocks, garbage NV, resets), every bad
//! input with its own status code, ring overflow and a full completion ring.

use hitless_hdl::contract::{
    self, flags, irq, make_key, perm, reg, status, tier_state, BootResult, Completion, Descriptor,
    NvGeometry, Opcode, Status, Superblock, CPL_BYTES, DEFAULT_GEOMETRY, MAX_TRANSFER,
};
use hitless_hdl::model::HostMemory;
use hitless_sim::harness::{program_entry, Rings, CQ_ADDR, DATA_ADDR};
use hitless_sim::{CardTiming, NvStore, SimCard, TornWrites};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const G: NvGeometry = DEFAULT_GEOMETRY;
const LIMIT: u64 = 20_000_000;
const ALL: u32 =
    perm::VALID | perm::READ | perm::WRITE | perm::COMMIT | perm::LOG | perm::WARM | perm::COLD;

struct Bench {
    card: SimCard,
    rings: Rings,
    region: u32,
}

fn attach(mut card: SimCard) -> Bench {
    card.wait_boot(LIMIT).expect("boot");
    let rings = Rings::setup(&mut card, 4, 4).expect("rings");
    let region =
        program_entry(&mut card, 1, 0xABC, 0, G.region_size, ALL | perm::REGION).expect("pt");
    Bench {
        card,
        rings,
        region,
    }
}

fn fresh() -> Bench {
    attach(SimCard::new(CardTiming::default()))
}

impl Bench {
    fn exec(&mut self, d: Descriptor) -> Completion {
        self.rings
            .exec(&mut self.card, d, LIMIT)
            .expect("completion")
    }
    fn commit(&mut self, data: &[u8], fl: u8) -> Completion {
        self.card.host.write(DATA_ADDR, data);
        self.exec(Descriptor {
            opcode: Opcode::Write as u8,
            flags: flags::COMMIT | fl,
            key: self.region,
            host_addr: DATA_ADDR,
            len: data.len() as u32,
            ..Default::default()
        })
    }
    fn read(&mut self, len: u32, fl: u8) -> (Completion, Vec<u8>) {
        let at = DATA_ADDR + 0x0800_0000;
        let c = self.exec(Descriptor {
            opcode: Opcode::Read as u8,
            flags: fl,
            key: self.region,
            host_addr: at,
            len,
            ..Default::default()
        });
        let mut b = vec![0u8; len as usize];
        self.card.host.read(at, &mut b);
        (c, b)
    }
    fn tier(&mut self, cold: bool) -> (BootResult, u8) {
        let st = self
            .card
            .read_reg(if cold {
                reg::COLD_STATE
            } else {
                reg::WARM_STATE
            })
            .unwrap();
        (
            BootResult::from_bits(st),
            ((st >> tier_state::ACTIVE_SHIFT) & 1) as u8,
        )
    }
}

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(977)) as u8)
        .collect()
}

// ---------------------------------------------------------------- faults ---

#[test]
fn warm_tier_survives_warm_reset_but_not_power_cycle() {
    let mut b = fresh();
    let warm = pattern(1, 5000);
    let cold = pattern(2, 7000);
    assert_eq!(b.commit(&warm, 0).status, 0);
    assert_eq!(b.commit(&cold, flags::COLD).status, 0);
    b.card.warm_reset(TornWrites::Drop);
    let mut b = attach(b.card);
    assert_eq!(b.tier(false).0, BootResult::Ok);
    assert_eq!(b.read(5000, 0).1, warm);
    assert_eq!(b.read(7000, flags::COLD).1, cold);
    let mut b = attach(b.card.power_cycle(TornWrites::Drop, false));
    assert_eq!(
        b.tier(false).0,
        BootResult::Empty,
        "warm tier must be blank after power loss"
    );
    assert_eq!(b.tier(true).0, BootResult::Ok);
    assert_eq!(b.read(7000, flags::COLD).1, cold);
}

#[test]
fn a_blank_tier_boots_empty_beside_a_committed_one() {
    // The boot scan reuses one state register for both tiers: the cold
    // tier, with no valid superblock, must not inherit the warm tier's.
    let mut b = fresh();
    let warm = pattern(3, 3000);
    assert_eq!(b.commit(&warm, 0).status, 0);
    b.card.warm_reset(TornWrites::Drop);
    let mut b = attach(b.card);
    assert_eq!(b.tier(false).0, BootResult::Ok);
    assert_eq!(b.tier(true).0, BootResult::Empty);
    for r in [reg::COLD_A_LEN, reg::COLD_B_LEN] {
        assert_eq!(b.card.read_reg(r).unwrap(), 0, "cold region length");
    }
    assert_eq!(b.read(3000, 0).1, warm);
}

#[test]
fn bit_flips_in_active_region_fall_back_to_alternate() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for round in 0..4u32 {
        let mut b = fresh();
        let v1 = pattern(10 + round, rng.gen_range(1..200_000));
        let v2 = pattern(20 + round, rng.gen_range(1..200_000));
        assert_eq!(b.commit(&v1, flags::COLD).status, 0);
        assert_eq!(b.commit(&v2, flags::COLD).status, 0);
        let (_, active) = b.tier(true);
        // VALIDATE with the committed CRC passes before the damage.
        let v2crc = contract::crc32c(&v2);
        let val = |b: &mut Bench| {
            b.exec(Descriptor {
                opcode: Opcode::Validate as u8,
                flags: flags::COLD | flags::CHECK,
                key: b.region,
                len: v2.len() as u32,
                crc: v2crc,
                ..Default::default()
            })
        };
        assert_eq!(val(&mut b).status, 0);
        let base = G.region_base(active) as u64;
        let flips = rng.gen_range(1..=8);
        b.card
            .flip_bits(1, base, v2.len() as u64, flips, round as u64);
        // Detected at run time by VALIDATE ...
        let c = val(&mut b);
        assert_eq!(
            c.status(),
            Some(Status::CrcMismatch),
            "round {round}: {flips} flips undetected"
        );
        // ... and at boot: the alternate (v1) is served.
        let mut b = attach(b.card.power_cycle(TornWrites::Drop, false));
        let (result, now_active) = b.tier(true);
        assert_eq!(result, BootResult::FellBack, "round {round}");
        assert_ne!(now_active, active);
        assert_eq!(b.read(v1.len() as u32, flags::COLD).1, v1, "round {round}");
        // The next commit goes to the damaged region and heals the tier.
        let v3 = pattern(30 + round, 1234);
        assert_eq!(b.commit(&v3, flags::COLD).status, 0);
        assert_eq!(b.tier(true), (BootResult::Ok, active));
    }
}

#[test]
fn bit_flips_in_both_regions_are_reported_lost() {
    let mut b = fresh();
    let v1 = pattern(1, 40_000);
    let v2 = pattern(2, 50_000);
    assert_eq!(b.commit(&v1, flags::COLD).status, 0);
    assert_eq!(b.commit(&v2, flags::COLD).status, 0);
    let mut card = b.card.power_cycle(TornWrites::Drop, false);
    card.flip_bits(1, G.region_a_base() as u64, 50_000, 2, 1);
    card.flip_bits(1, G.region_b_base() as u64, 50_000, 2, 2);
    let mut b = attach(card);
    assert_eq!(b.tier(true).0, BootResult::Lost);
}

#[test]
fn torn_newest_superblock_falls_back_to_the_older_slot() {
    let mut b = fresh();
    let v1 = pattern(1, 3000);
    let v2 = pattern(2, 4000);
    assert_eq!(b.commit(&v1, flags::COLD).status, 0);
    assert_eq!(b.commit(&v2, flags::COLD).status, 0);
    let seq = b.card.read_reg(reg::COLD_SEQ).unwrap() as u64;
    let mut card = b.card.power_cycle(TornWrites::Drop, false);
    // Corrupt one word of the newest slot: its CRC no longer matches.
    let at = Superblock::slot_addr(seq) as usize + 24;
    card.cold.bytes[at] ^= 0x40;
    let mut b = attach(card);
    assert_eq!(b.tier(true).0, BootResult::Ok);
    assert_eq!(b.card.read_reg(reg::COLD_SEQ).unwrap() as u64, seq - 1);
    assert_eq!(b.read(3000, flags::COLD).1, v1);
}

#[test]
fn garbage_nv_boots_without_hanging() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for _ in 0..3 {
        let mut warm = NvStore::new(G.total() as usize);
        let mut cold = NvStore::new(G.total() as usize);
        rng.fill(&mut warm.bytes[..]);
        rng.fill(&mut cold.bytes[..]);
        let mut b = attach(SimCard::with_nv(CardTiming::default(), warm, cold));
        assert_eq!(b.tier(false).0, BootResult::Empty);
        assert_eq!(b.tier(true).0, BootResult::Empty);
        // A valid superblock pointing at garbage with a huge length is LOST, not a hang.
        let sb = Superblock {
            seq: 3,
            active: 1,
            region_len: [u32::MAX, 77],
            region_crc: [1, 2],
            ..Default::default()
        };
        let mut cold = NvStore::new(G.total() as usize);
        rng.fill(&mut cold.bytes[..]);
        cold.bytes[64..128].copy_from_slice(&sb.to_bytes());
        let card = SimCard::with_nv(
            CardTiming::default(),
            NvStore::new(G.total() as usize),
            cold,
        );
        b = attach(card);
        assert_eq!(b.tier(true).0, BootResult::Lost);
    }
}

#[test]
fn reset_in_the_middle_of_a_transfer_recovers() {
    let mut b = fresh();
    let v1 = pattern(1, 100_000);
    assert_eq!(b.commit(&v1, 0).status, 0);
    let v2 = pattern(2, 300_000);
    b.card.host.write(DATA_ADDR, &v2);
    let d = Descriptor {
        opcode: Opcode::Write as u8,
        flags: flags::COMMIT,
        key: b.region,
        host_addr: DATA_ADDR,
        len: v2.len() as u32,
        ..Default::default()
    };
    b.rings.submit(&mut b.card, &[d]).unwrap();
    b.card.run(9_000);
    b.card.warm_reset(TornWrites::Random(9));
    let mut b = attach(b.card);
    assert_eq!(b.tier(false).0, BootResult::Ok);
    assert_eq!(b.read(100_000, 0).1, v1);
    // The controller works normally afterwards.
    assert_eq!(b.commit(&v2, 0).status, 0);
    assert_eq!(b.read(300_000, 0).1, v2);
}

// ------------------------------------------------------------ bad input ---

/// Every bad descriptor gets its own status and leaves NV untouched.
#[test]
fn each_bad_input_has_its_own_status_and_touches_nothing() {
    let mut b = fresh();
    let base = pattern(7, 20_000);
    assert_eq!(b.commit(&base, 0).status, 0);
    let ro = program_entry(
        &mut b.card,
        3,
        0x33,
        0,
        G.region_size,
        perm::VALID | perm::READ | perm::WARM | perm::REGION,
    )
    .unwrap();
    let warm_only = program_entry(
        &mut b.card,
        4,
        0x44,
        0,
        G.region_size,
        (ALL | perm::REGION) & !perm::COLD,
    )
    .unwrap();
    let window = program_entry(&mut b.card, 5, 0x55, 0x1000, 0x2000, ALL | perm::REGION).unwrap();
    let abs_top = program_entry(&mut b.card, 6, 0x66, G.total() - 64, 0x1000, ALL).unwrap();
    let invalid = program_entry(&mut b.card, 7, 0x77, 0, 4096, ALL & !perm::VALID).unwrap();
    let r = b.region;
    let w = |op: Opcode, key: u32, off: u32, len: u32, fl: u8| Descriptor {
        opcode: op as u8,
        flags: fl,
        key,
        host_addr: DATA_ADDR + 3,
        nv_offset: off,
        len,
        ..Default::default()
    };
    let cases: Vec<(&str, Descriptor, Status)> = vec![
        (
            "unknown opcode",
            Descriptor {
                opcode: 9,
                key: r,
                len: 8,
                ..Default::default()
            },
            Status::BadOpcode,
        ),
        (
            "reserved flag",
            w(Opcode::Write, r, 0, 8, 0x80),
            Status::BadOpcode,
        ),
        (
            "wrong key tag",
            w(Opcode::Write, r ^ 0x100, 0, 8, 0),
            Status::BadKey,
        ),
        (
            "invalid entry",
            w(Opcode::Write, invalid, 0, 8, 0),
            Status::BadKey,
        ),
        (
            "unprogrammed entry",
            w(Opcode::Write, make_key(12, 0xABC), 0, 8, 0),
            Status::BadKey,
        ),
        (
            "write through read-only",
            w(Opcode::Write, ro, 0, 8, 0),
            Status::Permission,
        ),
        (
            "cold through warm-only",
            w(Opcode::Write, warm_only, 0, 8, flags::COLD),
            Status::Permission,
        ),
        (
            "flip without commit right",
            w(Opcode::Flip, ro, 0, 8, 0),
            Status::Permission,
        ),
        (
            "append without log right",
            w(Opcode::Append, ro, 0, 8, 0),
            Status::Permission,
        ),
        (
            "commit at nonzero offset",
            w(Opcode::Write, r, 8, 8, flags::COMMIT),
            Status::BadCommit,
        ),
        (
            "zero length",
            w(Opcode::Write, r, 0, 0, 0),
            Status::BadLength,
        ),
        (
            "oversized",
            w(Opcode::Read, r, 0, MAX_TRANSFER + 1, 0),
            Status::BadLength,
        ),
        (
            "flip longer than region",
            w(Opcode::Flip, r, 0, G.region_size + 8, 0),
            Status::BadLength,
        ),
        (
            "unaligned nv offset",
            w(Opcode::Write, r, 4, 8, 0),
            Status::BadAlign,
        ),
        (
            "past the window",
            w(Opcode::Write, window, 0x1ff8, 16, 0),
            Status::OutOfRange,
        ),
        (
            "wrapping offset",
            w(Opcode::Read, window, 0xFFFF_FFF8, 16, 0),
            Status::OutOfRange,
        ),
        (
            "past the tier",
            w(Opcode::Write, abs_top, 0, 128, 0),
            Status::OutOfRange,
        ),
        (
            "overlapping copy",
            Descriptor {
                aux: 8,
                ..w(Opcode::Copy, abs_top, 0, 32, 0)
            },
            Status::OutOfRange,
        ),
        (
            "trim beyond head",
            Descriptor {
                aux: 64,
                ..w(Opcode::LogTrim, r, 0, 0, 0)
            },
            Status::BadTrim,
        ),
        (
            "append larger than the log",
            w(Opcode::Append, r, 0, MAX_TRANSFER, 0),
            Status::LogFull,
        ),
    ];
    let before = (b.card.warm.bytes.clone(), b.card.cold.bytes.clone());
    let failed_before = b.card.read_reg(reg::OPS_FAILED).unwrap();
    for (i, (what, d, want)) in cases.iter().enumerate() {
        let c = b.exec(Descriptor {
            tag: i as u16,
            ..*d
        });
        assert_eq!(c.status(), Some(*want), "{what}: {c:?}");
        assert_eq!((c.tag, c.crc, c.info), (i as u16, 0, 0), "{what}");
    }
    assert!(
        b.card.warm.bytes == before.0,
        "an error completion changed the warm tier"
    );
    assert!(
        b.card.cold.bytes == before.1,
        "an error completion changed the cold tier"
    );
    assert_eq!(
        b.card.read_reg(reg::OPS_FAILED).unwrap() - failed_before,
        cases.len() as u32
    );
    assert_eq!(b.read(20_000, 0).1, base);
}

#[test]
fn log_full_is_an_error_not_silent_loss() {
    let mut b = fresh();
    let log = program_entry(&mut b.card, 2, 0x1, G.log_base(), G.log_size, ALL).unwrap();
    let chunk = vec![0x5Au8; 200_000];
    b.card.host.write(DATA_ADDR, &chunk);
    let d = Descriptor {
        opcode: Opcode::Append as u8,
        key: log,
        host_addr: DATA_ADDR,
        len: chunk.len() as u32,
        ..Default::default()
    };
    let mut ok = 0;
    loop {
        let c = b.exec(d);
        match c.status() {
            Some(Status::Ok) => ok += 1,
            Some(Status::LogFull) => break,
            other => panic!("unexpected {other:?}"),
        }
        assert!(ok < 10, "log never filled");
    }
    assert_eq!(
        ok,
        (G.log_size / contract::log_record_bytes(200_000)) as usize
    );
    let head = b.card.read_reg(reg::WARM_LOG_HEAD).unwrap();
    // Trim everything; appends work again and wrap with a pad record.
    let c = b.exec(Descriptor {
        opcode: Opcode::LogTrim as u8,
        key: log,
        aux: head,
        ..Default::default()
    });
    assert_eq!(c.status, 0);
    for _ in 0..3 {
        assert_eq!(b.exec(d).status, 0);
    }
    let head = b.card.read_reg(reg::WARM_LOG_HEAD).unwrap();
    let tail = b.card.read_reg(reg::WARM_LOG_TAIL).unwrap();
    let model_view = hitless_hdl::model::parse_log(&b.card.warm.bytes, &G, head, tail).unwrap();
    assert_eq!(model_view.len(), 3);
    assert!(model_view.iter().all(|r| r.crc_ok && r.data == chunk));
}

#[test]
fn doorbell_past_the_ring_is_refused_with_ring_overflow() {
    let mut b = fresh();
    let tail = b.card.read_reg(reg::DQ_TAIL).unwrap();
    let bad = (tail + 17) & 0xFFFF; // ring has 16 entries
    b.card.write_reg(reg::DQ_TAIL, bad).unwrap();
    let c = b.rings.wait(&mut b.card, 1, LIMIT).unwrap().remove(0);
    assert_eq!(c.status(), Some(Status::RingOverflow));
    assert_eq!(
        (c.tag, c.desc_index as u32),
        (contract::TAG_CONTROLLER, bad)
    );
    assert_eq!(
        b.card.read_reg(reg::DQ_TAIL).unwrap(),
        tail,
        "refused doorbell must not move DQ_TAIL"
    );
    assert_ne!(
        b.card.read_reg(reg::STATUS).unwrap() & status::RING_ERROR,
        0
    );
    // The ring still works.
    assert_eq!(b.commit(&pattern(1, 100), 0).status, 0);
}

#[test]
fn full_completion_ring_stalls_until_the_host_consumes() {
    let mut b = fresh();
    // 16 NOPs fill the CQ (16 entries); the 17th waits.
    let nop = Descriptor {
        opcode: Opcode::Nop as u8,
        ..Default::default()
    };
    b.rings.submit(&mut b.card, &vec![nop; 15]).unwrap();
    b.card.run(20_000);
    // Do not consume: submit two more, only one fits.
    b.rings
        .submit(&mut b.card, &[nop, Descriptor { tag: 99, ..nop }])
        .unwrap();
    b.card.run(20_000);
    assert_eq!(b.card.read_reg(reg::CQ_HEAD).unwrap(), 16);
    assert_eq!(b.card.read_reg(reg::DQ_HEAD).unwrap(), 16);
    let got = b.rings.wait(&mut b.card, 17, LIMIT).unwrap();
    assert_eq!(got[16].tag, 99);
    // Nothing was overwritten: slot 0 of the second pass has the new phase.
    let w = [
        b.card.host.read_u64(CQ_ADDR),
        b.card.host.read_u64(CQ_ADDR + 8),
    ];
    assert!(!Completion::from_words(w).phase);
    let _ = CPL_BYTES;
}

#[test]
fn interrupts_follow_flags_mask_and_enable() {
    let mut b = fresh();
    let n0 = b.card.irq_count();
    let nop = Descriptor {
        opcode: 0,
        ..Default::default()
    };
    b.exec(nop);
    assert_eq!(b.card.irq_count(), n0, "no IRQ flag, no interrupt");
    b.exec(Descriptor {
        flags: flags::IRQ,
        ..nop
    });
    assert_eq!(b.card.irq_count(), n0 + 1);
    assert_ne!(
        b.card.read_reg(reg::IRQ_STATUS).unwrap() & irq::COMPLETION,
        0
    );
    // Still set: a second completion raises no new message until cleared.
    b.exec(Descriptor {
        flags: flags::IRQ,
        ..nop
    });
    assert_eq!(b.card.irq_count(), n0 + 1);
    b.card.write_reg(reg::IRQ_STATUS, irq::COMPLETION).unwrap();
    assert_eq!(
        b.card.read_reg(reg::IRQ_STATUS).unwrap() & irq::COMPLETION,
        0
    );
    b.exec(Descriptor {
        flags: flags::IRQ,
        ..nop
    });
    assert_eq!(b.card.irq_count(), n0 + 2);
    // Masked: status bit set, no message.
    b.card.write_reg(reg::IRQ_STATUS, 7).unwrap();
    b.card.write_reg(reg::IRQ_MASK, 0).unwrap();
    b.exec(Descriptor {
        flags: flags::IRQ,
        ..nop
    });
    assert_eq!(b.card.irq_count(), n0 + 2);
    assert_ne!(
        b.card.read_reg(reg::IRQ_STATUS).unwrap() & irq::COMPLETION,
        0
    );
    // Errors raise ERROR.
    b.card.write_reg(reg::IRQ_MASK, irq::ERROR).unwrap();
    b.exec(Descriptor { opcode: 77, ..nop });
    assert_eq!(b.card.irq_count(), n0 + 3);
}

#[test]
fn register_map_matches_the_contract() {
    let mut card = SimCard::new(CardTiming::default());
    card.wait_boot(LIMIT).unwrap();
    assert_eq!(card.read_reg(reg::ID).unwrap(), contract::CONTROLLER_ID);
    assert_eq!(
        card.read_reg(reg::VERSION).unwrap(),
        contract::CONTRACT_VERSION
    );
    assert_eq!(card.read_reg(reg::CAPS).unwrap(), contract::CAPS_VALUE);
    assert_eq!(card.read_reg(reg::NEXT_BLOCK).unwrap(), 0);
    assert_eq!(card.read_reg(reg::NV_REGION_SIZE).unwrap(), G.region_size);
    assert_eq!(card.read_reg(reg::NV_LOG_SIZE).unwrap(), G.log_size);
    assert_eq!(
        card.read_reg(reg::NV_REGION_A_BASE).unwrap(),
        G.region_a_base()
    );
    assert_eq!(
        card.read_reg(reg::NV_REGION_B_BASE).unwrap(),
        G.region_b_base()
    );
    assert_eq!(card.read_reg(reg::NV_LOG_BASE).unwrap(), G.log_base());
    assert_eq!(card.read_reg(reg::NV_DATA_BASE).unwrap(), G.data_base());
    assert_eq!(card.read_reg(reg::NV_DATA_SIZE).unwrap(), G.data_size);
    // Read-only registers ignore writes; unknown offsets read zero.
    card.write_reg(reg::ID, 0).unwrap();
    assert_eq!(card.read_reg(reg::ID).unwrap(), contract::CONTROLLER_ID);
    assert_eq!(card.read_reg(0xFFC).unwrap(), 0);
    // Keys are never read back.
    card.write_reg(reg::PT_KEY_TAG, 0xFFFF_FFF0).unwrap();
    assert_eq!(card.read_reg(reg::PT_KEY_TAG).unwrap(), 0);
    // The cycle counter runs.
    let c0 = card.read_reg(reg::CYCLES).unwrap();
    card.run(100);
    assert!(card.read_reg(reg::CYCLES).unwrap().wrapping_sub(c0) >= 100);
    // Programmed entries read back (without the key); others read zero.
    program_entry(&mut card, 3, 0x123, 0x100, 0x200, ALL).unwrap();
    card.write_reg(reg::PT_INDEX, 3).unwrap();
    assert_eq!(card.read_reg(reg::PT_BASE).unwrap(), 0x100);
    assert_eq!(card.read_reg(reg::PT_LEN).unwrap(), 0x200);
    assert_eq!(card.read_reg(reg::PT_PERM).unwrap(), ALL);
    card.write_reg(reg::PT_INDEX, 4).unwrap();
    assert_eq!(card.read_reg(reg::PT_PERM).unwrap(), 0);
}

/// The data area is plain NV after the log: an entry without REGION
/// writes and reads it up to the tier's last byte, CRC-checked, and the
/// region images are untouched.
#[test]
fn the_data_area_is_written_and_read_up_to_the_tiers_end() {
    let mut b = fresh();
    let image = pattern(3, 5000);
    assert_eq!(b.commit(&image, 0).status, 0);
    let data = program_entry(
        &mut b.card,
        2,
        0xDA7A,
        G.data_base(),
        G.data_size,
        perm::VALID | perm::READ | perm::WRITE | perm::WARM | perm::COLD,
    )
    .unwrap();
    let bytes = pattern(11, 4096);
    for (cold, off) in [(false, 0), (true, G.data_size - 4096)] {
        let fl = if cold { flags::COLD } else { 0 };
        b.card.host.write(DATA_ADDR, &bytes);
        let c = b.exec(Descriptor {
            opcode: Opcode::Write as u8,
            flags: fl | flags::CHECK,
            key: data,
            host_addr: DATA_ADDR,
            nv_offset: off,
            len: 4096,
            crc: contract::crc32c(&bytes),
            ..Default::default()
        });
        assert_eq!(c.status, 0, "write at {off:#x}");
        let at = DATA_ADDR + 0x10_0000;
        let c = b.exec(Descriptor {
            opcode: Opcode::Read as u8,
            flags: fl | flags::CHECK,
            key: data,
            host_addr: at,
            nv_offset: off,
            len: 4096,
            crc: contract::crc32c(&bytes),
            ..Default::default()
        });
        assert_eq!(c.status, 0, "read at {off:#x}");
        let mut back = vec![0u8; 4096];
        b.card.host.read(at, &mut back);
        assert_eq!(back, bytes);
        let nv = if cold { &b.card.cold } else { &b.card.warm };
        let phys = (G.data_base() + off) as usize;
        assert_eq!(&nv.bytes[phys..phys + 4096], &bytes[..]);
    }
    // One byte past the area's end is out of range and writes nothing.
    let c = b.exec(Descriptor {
        opcode: Opcode::Write as u8,
        key: data,
        host_addr: DATA_ADDR,
        nv_offset: G.data_size - 4096,
        len: 4097,
        ..Default::default()
    });
    assert_eq!(c.status, Status::OutOfRange as u8);
    assert_eq!(
        b.read(image.len() as u32, 0).1,
        image,
        "the region is untouched"
    );
}
