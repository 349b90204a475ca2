//! Power cut at every cycle of a small checkpoint's WRITE + commit (and at
//! random cycles of large ones): after the restart the boot scan must find
//! exactly the old or the new complete image, never a mix; once the
//! completion was posted, only the new one.

use hitless_hdl::contract::{
    self, flags, perm, reg, BootResult, Descriptor, Opcode, DEFAULT_GEOMETRY,
};
use hitless_hdl::model::HostMemory;
use hitless_sim::harness::{program_entry, Rings, CQ_ADDR, DATA_ADDR};
use hitless_sim::{CardTiming, NvStore, SimCard, TornWrites};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TAG: u32 = 0x5A5A5A;

fn boot_with(cold: &NvStore) -> (SimCard, Rings, u32) {
    let g = DEFAULT_GEOMETRY;
    let mut card = SimCard::with_nv(
        CardTiming::default(),
        NvStore::new(g.total() as usize),
        NvStore {
            bytes: cold.bytes.clone(),
            out_of_range: 0,
        },
    );
    card.wait_boot(2_000_000).expect("boot");
    let rings = Rings::setup(&mut card, 2, 2).expect("rings");
    let all = perm::VALID | perm::READ | perm::WRITE | perm::COMMIT | perm::COLD | perm::REGION;
    let key = program_entry(&mut card, 2, TAG, 0, g.region_size, all).expect("pt");
    (card, rings, key)
}

fn commit_desc(key: u32, len: usize) -> Descriptor {
    Descriptor {
        opcode: Opcode::Write as u8,
        flags: flags::COMMIT | flags::COLD,
        tag: 1,
        key,
        host_addr: DATA_ADDR + 5,
        nv_offset: 0,
        len: len as u32,
        ..Default::default()
    }
}

/// The image the cold tier serves after a restart: (len, crc, bytes).
fn served(card: &mut SimCard) -> (BootResult, Vec<u8>) {
    let st = card.read_reg(reg::COLD_STATE).unwrap();
    let result = BootResult::from_bits(st);
    let active = (st >> contract::tier_state::ACTIVE_SHIFT) & 1;
    let (len, crc) = if active == 0 {
        (
            card.read_reg(reg::COLD_A_LEN).unwrap(),
            card.read_reg(reg::COLD_A_CRC).unwrap(),
        )
    } else {
        (
            card.read_reg(reg::COLD_B_LEN).unwrap(),
            card.read_reg(reg::COLD_B_CRC).unwrap(),
        )
    };
    let base = DEFAULT_GEOMETRY.region_base(active as u8) as usize;
    let bytes = card.cold.bytes[base..base + len as usize].to_vec();
    assert_eq!(
        contract::crc32c(&bytes),
        crc,
        "served image does not match its recorded CRC"
    );
    (result, bytes)
}

fn old_image() -> (NvStore, Vec<u8>) {
    let g = DEFAULT_GEOMETRY;
    let (mut card, mut rings, key) = boot_with(&NvStore::new(g.total() as usize));
    let old: Vec<u8> = (0..200u32).map(|i| (i * 31 + 7) as u8).collect();
    card.host.write(DATA_ADDR + 5, &old);
    let c = rings
        .exec(&mut card, commit_desc(key, old.len()), 1_000_000)
        .unwrap();
    assert_eq!(c.status, 0);
    let cold = NvStore {
        bytes: card.cold.bytes.clone(),
        out_of_range: 0,
    };
    (cold, old)
}

fn cut_and_check(base: &NvStore, old: &[u8], new: &[u8], cut_after: u64, torn: TornWrites) -> bool {
    let (mut card, mut rings, key) = boot_with(base);
    card.host.write(DATA_ADDR + 5, new);
    rings
        .submit(&mut card, &[commit_desc(key, new.len())])
        .unwrap();
    card.run(cut_after);
    // Completion posted before the cut?
    let w1 = card
        .host
        .read_u64(CQ_ADDR + (rings.cq_tail as u64 & 3) * 16 + 8);
    let completed =
        contract::Completion::from_words([0, w1]).phase == ((rings.cq_tail >> 2) & 1 == 0);
    let mut card = card.power_cycle(torn, false);
    card.wait_boot(2_000_000).expect("boot after cut");
    let (result, image) = served(&mut card);
    assert_eq!(result, BootResult::Ok, "cut at {cut_after}");
    if completed {
        assert_eq!(image, new, "cut at {cut_after}: completed commit lost");
    } else {
        assert!(
            image == old || image == new,
            "cut at {cut_after}: mixed image"
        );
    }
    image == new
}

#[test]
fn power_cut_at_every_cycle_of_a_small_commit() {
    let (base, old) = old_image();
    let new: Vec<u8> = (0..136u32).map(|i| (i * 13 + 1) as u8).collect();
    // How long the whole operation takes, uncut.
    let (mut card, mut rings, key) = boot_with(&base);
    card.host.write(DATA_ADDR + 5, &new);
    let start = card.cycle();
    rings
        .exec(&mut card, commit_desc(key, new.len()), 1_000_000)
        .unwrap();
    let total = card.cycle() - start + 8;
    let mut saw_old = false;
    let mut saw_new = false;
    for cut in 0..total {
        let is_new = cut_and_check(&base, &old, &new, cut, TornWrites::Random(cut));
        saw_old |= !is_new;
        saw_new |= is_new;
    }
    assert!(saw_old && saw_new, "the sweep must cover both outcomes");
}

#[test]
fn power_cut_at_random_cycles_of_large_commits() {
    let (base, old) = old_image();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for i in 0..6 {
        let len = rng.gen_range(100_000..=(1 << 20));
        let new: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let cut = rng.gen_range(0..(len as u64 / 8 + 2000));
        let torn = if i % 2 == 0 {
            TornWrites::Apply
        } else {
            TornWrites::Random(i)
        };
        cut_and_check(&base, &old, &new, cut, torn);
    }
}
