//! The board tops' register files against `docs/registers.md` (the
//! contract's `Register::reset` with the board geometry): the full board
//! reads BUSY while its boot scan waits for the flash cold tier to load,
//! and both boards read the documented values once booted.

use hitless_board_sim::{SerialBoard, Variant};
use hitless_hdl::contract::{board, reg, status};

fn check(variant: Variant) {
    let lite = variant == Variant::Lite;
    let mut b = SerialBoard::new(variant);
    let st = b.csr_read(reg::STATUS).expect("STATUS");
    if !lite {
        // The full board's scan waits for the flash tier's shadow load.
        assert_eq!(st, status::BUSY, "STATUS during the boot scan");
        for r in reg::REGISTERS {
            if let Some(v) = r.reset.during_boot(&board::GEOMETRY, lite) {
                assert_eq!(b.csr_read(r.offset), Some(v), "{} during boot", r.name);
            }
        }
    }
    let mut booted = false;
    for _ in 0..200 {
        if b.csr_read(reg::STATUS).expect("STATUS") & status::BOOT_DONE != 0 {
            booted = true;
            break;
        }
        b.run(50_000);
    }
    assert!(booted, "{variant:?}: no BOOT_DONE");
    for r in reg::REGISTERS {
        if let Some(v) = r.reset.after_boot(&board::GEOMETRY, lite) {
            assert_eq!(
                b.csr_read(r.offset),
                Some(v),
                "{variant:?}: {} after boot",
                r.name
            );
        }
    }
    // Misaligned offsets name no register.
    assert!(b.csr_write(reg::SCRATCH, 0x0102_0304));
    for off in 1..4 {
        assert_eq!(
            b.csr_read(reg::SCRATCH + off),
            Some(0),
            "{variant:?}: +{off}"
        );
        assert!(
            b.csr_write(reg::SCRATCH + off, 0xFFFF_FFFF),
            "ignored, OKAY"
        );
    }
    assert_eq!(b.csr_read(reg::SCRATCH), Some(0x0102_0304));
}

#[test]
fn full_board_registers_match_the_contract() {
    check(Variant::Full);
}

#[test]
fn lite_board_registers_match_the_contract() {
    check(Variant::Lite);
}
