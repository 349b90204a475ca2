//! The register file of the Verilated full controller against what
//! `docs/registers.md` says (the contract's data: `Register::reset`,
//! `ACCESS_RULES`): reset values during and after the boot scan, and the
//! answers to unmapped, misaligned and narrow accesses and to ring sizes
//! above the maximum.

use hitless_hdl::contract::{reg, status, Reset, DEFAULT_GEOMETRY, RING_MAX_LOG2};
use hitless_sim::{CardTiming, PortTiming, SimCard};

const LIMIT: u64 = 20_000_000;

#[test]
fn reset_values_during_and_after_the_boot_scan() {
    // Slow tiers: the boot scan takes long enough to be read during it.
    let timing = CardTiming {
        warm: PortTiming::fixed(2000),
        cold: PortTiming::fixed(2000),
        ..CardTiming::default()
    };
    let mut card = SimCard::new(timing);
    let st = card.read_reg(reg::STATUS).unwrap();
    assert_eq!(st, status::BUSY, "STATUS during the boot scan");
    for r in reg::REGISTERS {
        if let Some(v) = r.reset.during_boot(&DEFAULT_GEOMETRY, false) {
            assert_eq!(
                card.read_reg(r.offset).unwrap(),
                v,
                "{} during boot",
                r.name
            );
        }
    }
    assert_ne!(
        card.read_reg(reg::STATUS).unwrap() & status::BUSY,
        0,
        "the scan was still running"
    );
    card.wait_boot(LIMIT).unwrap();
    for r in reg::REGISTERS {
        match r.reset.after_boot(&DEFAULT_GEOMETRY, false) {
            Some(v) => assert_eq!(card.read_reg(r.offset).unwrap(), v, "{} after boot", r.name),
            None => assert_eq!(r.reset, Reset::Counter),
        }
    }
    let c0 = card.read_reg(reg::CYCLES).unwrap();
    card.run(100);
    assert!(card.read_reg(reg::CYCLES).unwrap().wrapping_sub(c0) >= 100);
}

#[test]
fn unmapped_misaligned_and_narrow_accesses() {
    let mut card = SimCard::new(CardTiming::default());
    card.wait_boot(LIMIT).unwrap();
    card.write_reg(reg::SCRATCH, 0xAABB_CCDD).unwrap();
    // Misaligned: no register, not the one the offset falls in.
    for off in 1..4 {
        assert_eq!(card.read_reg(reg::SCRATCH + off).unwrap(), 0, "+{off}");
        card.write_reg(reg::SCRATCH + off, 0x1234_5678).unwrap();
        card.write_reg(reg::CTRL + off, 3).unwrap();
    }
    assert_eq!(card.read_reg(reg::SCRATCH).unwrap(), 0xAABB_CCDD);
    assert_eq!(card.read_reg(reg::CTRL).unwrap(), 0);
    // Unmapped, aligned: reads 0, writes ignored (OKAY).
    let mapped: Vec<u32> = reg::REGISTERS.iter().map(|r| r.offset).collect();
    for off in (0..0x1000).step_by(4).filter(|o| !mapped.contains(o)) {
        card.write_reg(off, 0xFFFF_FFFF).unwrap();
        assert_eq!(card.read_reg(off).unwrap(), 0, "{off:#x}");
    }
    assert_eq!(card.read_reg(reg::SCRATCH).unwrap(), 0xAABB_CCDD);
    // Narrow registers keep their low bits.
    for (r, bits) in [
        (reg::CTRL, 0x3),
        (reg::DQ_SIZE_LOG2, 0xF),
        (reg::CQ_SIZE_LOG2, 0xF),
        (reg::CQ_TAIL, 0xFFFF),
        (reg::IRQ_MASK, 0x7),
        (reg::PT_INDEX, 0xF),
    ] {
        card.write_reg(r, 0xFFFF_FFF0 | 0x5).unwrap();
        assert_eq!(card.read_reg(r).unwrap(), (0xFFFF_FFF5) & bits, "{r:#x}");
        card.write_reg(r, 0).unwrap();
    }
    // WO reads 0.
    card.write_reg(reg::PT_KEY_TAG, 0xFFFF_FFF0).unwrap();
    assert_eq!(card.read_reg(reg::PT_KEY_TAG).unwrap(), 0);
    assert_eq!(card.read_reg(reg::PT_COMMIT).unwrap(), 0);
    // Ring sizes above the maximum read back as written (4 bits).
    for v in [RING_MAX_LOG2 + 1, 15, 16, 17] {
        card.write_reg(reg::DQ_SIZE_LOG2, v).unwrap();
        assert_eq!(card.read_reg(reg::DQ_SIZE_LOG2).unwrap(), v & 0xF);
    }
}
