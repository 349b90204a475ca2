//! The driver core on the Verilated controller RTL (in-process).

use hitless_driver::{Card, Error, Options, Tier};
use hitless_hdl::contract::{self, perm, BootResult, Status, DEFAULT_GEOMETRY};
use hitless_sim::TornWrites;
use hitless_tests::SimIo;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const REGION: u32 = perm::FULL_REGION_WINDOW;

#[test]
fn driver_round_trips_on_the_rtl() {
    let mut card = Card::open(SimIo::new(8 << 20), Options::default()).unwrap();
    let key = card
        .program_entry(1, 0x77, 0, DEFAULT_GEOMETRY.region_size, REGION)
        .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (i, len) in [1usize, 7, 4096, 100_003, 1 << 20, (1 << 20) + 12_345]
        .into_iter()
        .enumerate()
    {
        let tier = if i % 2 == 0 { Tier::Cold } else { Tier::Warm };
        let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let c = card.checkpoint(key, tier, &data).unwrap();
        assert_eq!(c.crc, contract::crc32c(&data));
        assert_eq!(card.restore(key, tier).unwrap(), data, "{len} bytes");
    }
    assert_eq!(
        card.io().card.host.faults,
        0,
        "the controller touched memory outside the window"
    );
    assert!(matches!(
        card.validate(key, Tier::Cold, 0, 64, Some(1)),
        Err(Error::Device {
            status: Status::CrcMismatch
        })
    ));
}

#[test]
fn cold_image_survives_a_power_cycle_through_the_driver() {
    let mut card = Card::open(SimIo::new(4 << 20), Options::default()).unwrap();
    let key = card
        .program_entry(1, 0x77, 0, DEFAULT_GEOMETRY.region_size, REGION)
        .unwrap();
    let cold = vec![0xC0u8; 70_000];
    let warm = vec![0x3Au8; 9_000];
    card.checkpoint(key, Tier::Cold, &cold).unwrap();
    card.checkpoint(key, Tier::Warm, &warm).unwrap();
    let mut io = std::mem::replace(card.io(), SimIo::new(4096));
    drop(card);
    io.card = io.card.power_cycle(TornWrites::Random(1), false);
    let mut card = Card::open(io, Options::default()).unwrap();
    let key = card
        .program_entry(1, 0x77, 0, DEFAULT_GEOMETRY.region_size, REGION)
        .unwrap();
    let st = card.status().unwrap();
    assert_eq!(st.warm.result, BootResult::Empty);
    assert_eq!(st.cold.result, BootResult::Ok);
    assert_eq!(card.restore(key, Tier::Cold).unwrap(), cold);
}
