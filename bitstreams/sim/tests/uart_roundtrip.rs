//! The driver's `uart:` transport against the Verilated board top-level
//! through a pseudo-terminal: open the card, checkpoint an image
//! (WRITE + FLIP) to each tier, restore it (READ) and compare; check the
//! board's LEDs show the new active regions.

use hitless_board_sim::PtyBoard;
use hitless_driver::backend::uart::{UartIo, WINDOW_BYTES};
use hitless_driver::{Card, Options, Tier};
use hitless_hdl::contract::perm;
use std::time::Duration;

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
}
