//! The lite board top-level (`LiteBoardTop`: the reduced controller for
//! small FPGAs) behind a pseudo-terminal, driven by the driver's `uart:`
//! transport: checkpoint and restore, what it lacks refused as the contract
//! says, and the boot scan after a warm reset (the tier survives a reset,
//! not a power cut): intact, fallen back to the alternate region, lost,
//! blank.

use hitless_board_sim::flash::SpiFlash;
use hitless_board_sim::{lite_checkpoint_board, lite_checkpoint_data, PtyBoard, Variant};
use hitless_driver::backend::uart::UartIo;
use hitless_driver::{Card, CardIo, Error, Tier};
use hitless_hdl::contract::{self, board, perm, reg, BootResult, NvGeometry};
use std::time::Duration;

mod common;
use common::options;

fn lite_board() -> PtyBoard {
    PtyBoard::start_variant(Variant::Lite, Duration::from_secs(600), SpiFlash::new(4096))
        .expect("pty")
}

fn open(board: &PtyBoard) -> Card<UartIo> {
    let io = UartIo::open(board.path(), 115_200, Duration::from_secs(10)).expect("open uart");
    Card::open(io, options()).expect("open card")
}

/// The board's tier geometry (the card reports it, the test checks).
const BOARD_GEOMETRY: NvGeometry = board::GEOMETRY;

const REGION_WINDOW: u32 =
    perm::VALID | perm::READ | perm::WRITE | perm::COMMIT | perm::WARM | perm::REGION;
/// The whole tier, raw: superblocks and both regions.
const RAW_WINDOW: u32 = perm::VALID | perm::READ | perm::WRITE | perm::WARM;

/// Warm-reset the board and open it again (the protection table is
/// cleared by the reset: the windows are programmed again).
fn reset(board: &PtyBoard, card: Card<UartIo>) -> (Card<UartIo>, u32, u32) {
    drop(card);
    board.press_reset();
    std::thread::sleep(Duration::from_millis(50));
    let mut card = open(board);
    let key = card
        .program_entry(1, 0x5eed, 0, BOARD_GEOMETRY.region_size, REGION_WINDOW)
        .unwrap();
    let raw = card
        .program_entry(2, 0xbad, 0, BOARD_GEOMETRY.total(), RAW_WINDOW)
        .unwrap();
    (card, key, raw)
}

#[test]
fn lite_checkpoints_restores_and_falls_back_after_reset() {
    let board = lite_board();
    let mut card = open(&board);
    let g = card.geometry();
    assert_eq!(g, BOARD_GEOMETRY);
    assert_eq!(
        card.io().read32(reg::LIMITS).unwrap(),
        contract::LITE_LIMITS
    );
    assert_eq!(
        card.io().read32(reg::CAPS).unwrap(),
        contract::LITE_CAPS_VALUE
    );
    let st = card.status().unwrap();
    assert_eq!(st.warm.result, BootResult::Empty, "fresh memory is blank");
    let key = card
        .program_entry(1, 0x5eed, 0, g.region_size, REGION_WINDOW)
        .unwrap();
    let first: Vec<u8> = (0..1500u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let c = card.checkpoint(key, Tier::Warm, &first).unwrap();
    assert_eq!((c.seq, c.crc), (1, contract::crc32c(&first)));
    assert_eq!(card.restore(key, Tier::Warm).unwrap(), first);
    assert_eq!(board.leds() & 0b1110, 0b0010, "region B active, no error");
    let second: Vec<u8> = first.iter().rev().take(999).map(|b| b ^ 0x3c).collect();
    assert_eq!(card.checkpoint(key, Tier::Warm, &second).unwrap().seq, 2);
    assert_eq!(card.restore(key, Tier::Warm).unwrap(), second);
    // What the reduced controller lacks: the driver says so before
    // submitting; the controller itself completes it BAD_OPCODE.
    assert_eq!(card.limits(), contract::LITE_LIMITS);
    match card.checkpoint(key, Tier::Cold, &first) {
        Err(Error::Unsupported { what, .. }) => assert_eq!(what, "the cold tier"),
        other => panic!("cold tier on the lite controller: {other:?}"),
    }
    assert_eq!(
        card.io().read32(reg::OPS_FAILED).unwrap(),
        0,
        "nothing submitted"
    );
    assert_eq!(card.status().unwrap().limits, contract::LITE_LIMITS);

    // Warm reset: the committed state comes back from the superblock.
    let (card, key, raw) = reset(&board, card);
    let mut card = card;
    let st = card.status().unwrap();
    assert_eq!(st.warm.result, BootResult::Ok);
    assert_eq!((st.warm.seq, st.warm.active), (2, 0));
    assert_eq!(card.restore(key, Tier::Warm).unwrap(), second);

    // Corrupt the active region (A): the boot scan falls back to B.
    card.write(raw, Tier::Warm, g.region_a_base() + 8, &[0xA5; 8], false)
        .unwrap();
    let (mut card, key, raw) = reset(&board, card);
    let st = card.status().unwrap();
    assert_eq!(st.warm.result, BootResult::FellBack);
    assert_eq!((st.warm.seq, st.warm.active), (2, 1));
    assert_eq!(card.restore(key, Tier::Warm).unwrap(), first);

    // Corrupt B as well: lost.
    card.write(raw, Tier::Warm, g.region_b_base(), &[0x5A; 16], false)
        .unwrap();
    let (mut card, _, raw) = reset(&board, card);
    assert_eq!(card.status().unwrap().warm.result, BootResult::Lost);

    // Break the newer superblock (seq 2, slot 0): the older one (seq 1,
    // slot 1, region B active) is served; B is still broken, and A holds
    // what seq 1 recorded for it (nothing: length 0): fallen back to A's
    // empty image.
    card.write(raw, Tier::Warm, 16, &[0; 8], false).unwrap();
    let (mut card, _, raw) = reset(&board, card);
    let st = card.status().unwrap();
    assert_eq!((st.warm.result, st.warm.seq), (BootResult::FellBack, 1));
    assert_eq!((st.warm.active, st.warm.active_image()), (0, (0, 0)));

    // Both superblocks broken: a blank tier.
    card.write(raw, Tier::Warm, 64, &[0; 8], false).unwrap();
    let (mut card, key, _) = reset(&board, card);
    let st = card.status().unwrap();
    assert_eq!((st.warm.result, st.warm.seq), (BootResult::Empty, 0));
    // And it takes a new checkpoint from there.
    assert_eq!(card.checkpoint(key, Tier::Warm, &first).unwrap().seq, 1);
    assert_eq!(card.restore(key, Tier::Warm).unwrap(), first);
    assert!(board.stop() > 0);
}

/// The lite datapath's rate, exactly, in cycles of the cycle-stepped
/// board: WRITE+COMMITs of 1 and 4 KiB through a region window, each timed
/// from the end of its doorbell to the active-region LED turning (the
/// commit is durable): everything but the data costs the same for both, so
/// the difference is the datapath's, `LITE_CYCLES_PER_WORD` a word.
#[test]
fn lite_moves_a_word_per_15_cycles() {
    let per_word = u64::from(contract::LITE_CYCLES_PER_WORD);
    let mut b = lite_checkpoint_board(4096).expect("the lite board comes up");
    let small = b.checkpoint_cycles(0, 1024).expect("1 KiB commits");
    let big = b.checkpoint_cycles(1, 4096).expect("4 KiB commits");
    assert_eq!(b.csr_read(reg::OPS_OK), Some(2));
    assert_eq!(
        b.csr_read(reg::WARM_A_CRC),
        Some(contract::crc32c(&lite_checkpoint_data(4096)))
    );
    eprintln!("lite WRITE+COMMIT: 1 KiB {small} cycles, 4 KiB {big} cycles");
    assert_eq!(per_word, 15, "the contract's figure");
    assert_eq!(big - small, (4096 - 1024) / 8 * per_word);
}
