//! The driver's `uart:` transport against the Verilated board top-level
//! through a pseudo-terminal: open the card, checkpoint an image
//! (WRITE + FLIP) to each tier, restore it (READ) and compare; check the
//! board's LEDs show the new active regions. Then power: the cold tier is
//! on the board's (simulated) SPI flash, so a checkpoint committed there is
//! restored by a freshly powered-on board, while the warm tier (block RAM)
//! comes back blank.

use hitless_board_sim::PtyBoard;
use hitless_driver::backend::uart::{UartIo, WINDOW_BYTES};
use hitless_driver::{Card, Options, Tier};
use hitless_hdl::contract::{perm, BootResult};
use std::time::Duration;

mod common;
use common::options;

#[test]
fn checkpoint_round_trips_over_the_uart() {
    let board = PtyBoard::start(Duration::from_secs(120)).unwrap();
    // The pty ignores the line rate; the bridge runs at DIVIDER clocks per bit.
    let io = UartIo::open(board.path(), 115_200, Duration::from_secs(10)).unwrap();
    let opts = Options {
        dq_log2: 2,
        cq_log2: 3,
        op_timeout: Duration::from_secs(30),
        boot_timeout: Duration::from_secs(30),
    };
    let mut card = Card::open(io, opts).unwrap();
    let g = card.geometry();
    assert_eq!(g.region_size, 4096, "the board's geometry");
    let window = perm::VALID
        | perm::READ
        | perm::WRITE
        | perm::COMMIT
        | perm::WARM
        | perm::COLD
        | perm::REGION;
    let key = card
        .program_entry(1, 0x5eed, 0, g.region_size, window)
        .unwrap();
    let image: Vec<u8> = (0..1500u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let warm = card.checkpoint(key, Tier::Warm, &image).unwrap();
    assert_eq!(warm.seq, 1);
    assert_eq!(warm.crc, hitless_hdl::contract::crc32c(&image));
    assert_eq!(card.restore(key, Tier::Warm).unwrap(), image);
    let cold_image: Vec<u8> = image.iter().rev().copied().collect();
    card.checkpoint(key, Tier::Cold, &cold_image[..999])
        .unwrap();
    assert_eq!(card.restore(key, Tier::Cold).unwrap(), &cold_image[..999]);
    let st = card.status().unwrap();
    assert_eq!((st.warm.active, st.cold.active), (1, 1));
    // LEDs: bit 1 warm on region B, bit 2 cold on region B, bit 3 no error.
    assert_eq!(board.leds() & 0b1110, 0b0110);
    assert!(board.stop() > 0);
}

#[test]
fn window_matches_the_board() {
    assert_eq!(WINDOW_BYTES, 16 * 1024);
    assert_eq!(
        WINDOW_BYTES,
        hitless_hdl::contract::board::HOST_WINDOW_BYTES as usize
    );
}

const WINDOW: u32 =
    perm::VALID | perm::READ | perm::WRITE | perm::COMMIT | perm::WARM | perm::COLD | perm::REGION;

#[test]
fn a_cold_checkpoint_on_flash_survives_power_off() {
    let board = PtyBoard::start(Duration::from_secs(300)).unwrap();
    let io = UartIo::open(board.path(), 115_200, Duration::from_secs(10)).unwrap();
    let mut card = Card::open(io, options()).unwrap();
    let key = card.program_entry(2, 0xc01d, 0, 4096, WINDOW).unwrap();
    let image: Vec<u8> = (0..2600u32).map(|i| (i * 13 + i / 97) as u8).collect();
    // Two commits: the second makes region A active again, and the first
    // one's region B must not be what comes back.
    card.checkpoint(key, Tier::Cold, &image[..700]).unwrap();
    let committed = card.checkpoint(key, Tier::Cold, &image).unwrap();
    assert_eq!(committed.seq, 2);
    card.checkpoint(key, Tier::Warm, &image[..100]).unwrap();
    drop(card);
    let flash = board.power_off().expect("the board thread ran");

    let board = PtyBoard::start_with(Duration::from_secs(300), flash).unwrap();
    let io = UartIo::open(board.path(), 115_200, Duration::from_secs(10)).unwrap();
    let mut card = Card::open(io, options()).unwrap();
    let st = card.status().unwrap();
    assert_eq!(st.cold.result, BootResult::Ok, "cold tier after power-on");
    assert_eq!((st.cold.seq, st.cold.active), (2, 0));
    assert_eq!(
        st.cold.active_image(),
        (image.len() as u32, hitless_hdl::contract::crc32c(&image))
    );
    assert_eq!(
        st.warm.result,
        BootResult::Empty,
        "block RAM does not survive power-off"
    );
    // The protection table is volatile: program the window again.
    let key = card.program_entry(2, 0xc01d, 0, 4096, WINDOW).unwrap();
    assert_eq!(card.restore(key, Tier::Cold).unwrap(), image);
    // And the tier keeps working: a third commit, read back.
    let next: Vec<u8> = image.iter().map(|b| b ^ 0x5a).collect();
    assert_eq!(card.checkpoint(key, Tier::Cold, &next).unwrap().seq, 3);
    assert_eq!(card.restore(key, Tier::Cold).unwrap(), next);
    assert_eq!(board.leds() & 0b1000, 0, "error LED");
}
