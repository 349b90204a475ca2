//! The boards' CSR window over the driver's `uart:` transport: BAR0 is
//! 8 KiB (controller registers, then the firmware mailbox page), but a
//! board has only the controller's 4 KiB. An address the board does not
//! have must not alias a controller register: a write answers an error
//! and changes nothing, a read answers 0 (so `MB_ID` does not read "HTLS"
//! and `MB_STATE` does not read READY).

use hitless_board_sim::flash::SpiFlash;
use hitless_board_sim::{PtyBoard, Variant, FLASH_BYTES};
use hitless_driver::backend::uart::UartIo;
use hitless_driver::CardIo;
use hitless_hdl::contract::{self, mbox, reg};
use std::time::Duration;

fn check(variant: Variant) {
    let board = PtyBoard::start_variant(
        variant,
        Duration::from_secs(120),
        SpiFlash::new(FLASH_BYTES),
    )
    .unwrap();
    let mut io = UartIo::open(board.path(), 115_200, Duration::from_secs(10)).unwrap();
    assert_eq!(io.read32(reg::ID).unwrap(), contract::CONTROLLER_ID);
    io.write32(reg::SCRATCH, 0x1234_5678).unwrap();
    io.write32(reg::CTRL, 0).unwrap();
    // Each of these is a controller register's offset plus a multiple of
    // 4 KiB: a 12-bit decode would land on CTRL, SCRATCH, ID.
    for (addr, alias) in [
        (mbox::MB_REQ_LO, reg::CTRL),
        (mbox::MB_ID + reg::SCRATCH, reg::SCRATCH),
        (0x8000_0000 | reg::SCRATCH, reg::SCRATCH),
        (0xFFFF_F000 | reg::CTRL, reg::CTRL),
    ] {
        let r = io.write32(addr, 3);
        assert!(
            r.is_err(),
            "{variant:?}: a write to {addr:#x} must answer an error, got {r:?}"
        );
        assert_eq!(
            io.read32(reg::CTRL).unwrap(),
            0,
            "{variant:?}: the write to {addr:#x} landed on CTRL"
        );
        assert_eq!(
            io.read32(reg::SCRATCH).unwrap(),
            0x1234_5678,
            "{variant:?}: the write to {addr:#x} landed on SCRATCH"
        );
        assert_eq!(
            io.read32(addr).unwrap(),
            0,
            "{variant:?}: a read of {addr:#x} (aliasing {alias:#x})"
        );
    }
    for r in [mbox::MB_ID, mbox::MB_STATE] {
        assert_eq!(io.read32(r).unwrap(), 0, "{variant:?}: {r:#x}");
    }
    // The controller's own window still works after the refusals.
    io.write32(reg::SCRATCH, 0xfeed_f00d).unwrap();
    assert_eq!(io.read32(reg::SCRATCH).unwrap(), 0xfeed_f00d);
    assert!(board.stop() > 0);
}

#[test]
fn the_full_board_refuses_addresses_it_does_not_have() {
    check(Variant::Full);
}

#[test]
fn the_lite_board_refuses_addresses_it_does_not_have() {
    check(Variant::Lite);
}
