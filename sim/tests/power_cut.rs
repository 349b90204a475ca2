//! Power cut at every cycle of a small checkpoint (fused WRITE+COMMIT, and
//! WRITE followed by FLIP), and at random cycles of large ones: after the
//! restart the boot scan must find exactly the old or the new complete
//! image, never a mix; once the completion was posted, only the new one.
//! The same sweep with warm resets on the warm tier.

use hitless_hdl::contract::{
    self, flags, perm, reg, tier_state, BootResult, Descriptor, Opcode, DEFAULT_GEOMETRY,
};
use hitless_hdl::model::HostMemory;
use hitless_sim::harness::{program_entry, Rings, CQ_ADDR, DATA_ADDR};
use hitless_sim::{CardTiming, NvStore, SimCard, TornWrites};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TAG: u32 = 0x5A5A5A;

#[derive(Clone, Copy, PartialEq)]
enum Cut {
    /// Power cut: controller and warm tier gone; cold tier checked.
    Power,
    /// Warm reset: controller restarts; warm tier checked.
    WarmReset,
}

impl Cut {
    fn tier_flag(self) -> u8 {
        match self {
            Cut::Power => flags::COLD,
            Cut::WarmReset => 0,
        }
    }
}

fn boot_with(warm: &NvStore, cold: &NvStore) -> (SimCard, Rings, u32) {
    let g = DEFAULT_GEOMETRY;
    let copy = |s: &NvStore| s.snapshot();
    let mut card = SimCard::with_nv(CardTiming::default(), copy(warm), copy(cold));
    card.wait_boot(2_000_000).expect("boot");
    let rings = Rings::setup(&mut card, 2, 2).expect("rings");
    let all = perm::FULL_REGION_WINDOW;
    let key = program_entry(&mut card, 2, TAG, 0, g.region_size, all).expect("pt");
    (card, rings, key)
}

/// The checkpoint as descriptors: fused, or WRITE then FLIP checking the CRC.
fn checkpoint(key: u32, data: &[u8], fused: bool, tier: u8) -> Vec<Descriptor> {
    let write = Descriptor {
        opcode: Opcode::Write as u8,
        flags: tier | if fused { flags::COMMIT } else { 0 },
        tag: 1,
        key,
        host_addr: DATA_ADDR + 5,
        nv_offset: 0,
        len: data.len() as u32,
        ..Default::default()
    };
    if fused {
        return vec![write];
    }
    let flip = Descriptor {
        opcode: Opcode::Flip as u8,
        flags: tier | flags::CHECK,
        tag: 2,
        key,
        len: data.len() as u32,
        crc: contract::crc32c(data),
        ..Default::default()
    };
    vec![write, flip]
}

/// The image the tier serves after a restart (its bytes match their CRC).
fn served(card: &mut SimCard, cold: bool) -> (BootResult, Vec<u8>) {
    let (state, a, b) = if cold {
        (reg::COLD_STATE, reg::COLD_A_LEN, reg::COLD_B_LEN)
    } else {
        (reg::WARM_STATE, reg::WARM_A_LEN, reg::WARM_B_LEN)
    };
    let st = card.read_reg(state).unwrap();
    let active = (st >> tier_state::ACTIVE_SHIFT) & 1;
    let len = card.read_reg(if active == 0 { a } else { b }).unwrap();
    let crc = card
        .read_reg(if active == 0 { a + 4 } else { b + 4 })
        .unwrap();
    let base = DEFAULT_GEOMETRY.region_base(active as u8) as usize;
    let nv = if cold { &card.cold } else { &card.warm };
    let bytes = nv.bytes[base..base + len as usize].to_vec();
    assert_eq!(
        contract::crc32c(&bytes),
        crc,
        "served image does not match its recorded CRC"
    );
    (BootResult::from_bits(st), bytes)
}

struct Base {
    warm: NvStore,
    cold: NvStore,
    old: Vec<u8>,
}

fn base(cut: Cut) -> Base {
    let g = DEFAULT_GEOMETRY;
    let blank = NvStore::new(g.total() as usize);
    let (mut card, mut rings, key) = boot_with(&blank, &blank);
    let old: Vec<u8> = (0..200u32).map(|i| (i * 31 + 7) as u8).collect();
    card.host.write(DATA_ADDR + 5, &old);
    for d in checkpoint(key, &old, true, cut.tier_flag()) {
        assert_eq!(rings.exec(&mut card, d, 1_000_000).unwrap().status, 0);
    }
    Base {
        warm: card.warm.snapshot(),
        cold: card.cold.snapshot(),
        old,
    }
}

/// Run the checkpoint for `cut_after` cycles, cut, restart, check. Returns
/// whether the new image is served.
fn cut_and_check(
    b: &Base,
    new: &[u8],
    fused: bool,
    cut: Cut,
    cut_after: u64,
    torn: TornWrites,
) -> bool {
    let (mut card, mut rings, key) = boot_with(&b.warm, &b.cold);
    card.host.write(DATA_ADDR + 5, new);
    let descs = checkpoint(key, new, fused, cut.tier_flag());
    rings.submit(&mut card, &descs).unwrap();
    card.run(cut_after);
    // Was the last completion posted before the cut?
    let last = rings.cq_tail().wrapping_add(descs.len() as u16 - 1);
    let w1 = card.host.read_u64(CQ_ADDR + (last as u64 & 3) * 16 + 8);
    let completed = contract::Completion::from_words([0, w1]).phase == ((last >> 2) & 1 == 0);
    let mut card = match cut {
        Cut::Power => card.power_cycle(torn, false),
        Cut::WarmReset => {
            card.warm_reset(torn);
            card
        }
    };
    card.wait_boot(2_000_000).expect("boot after cut");
    let (result, image) = served(&mut card, cut == Cut::Power);
    assert_eq!(result, BootResult::Ok, "cut at {cut_after}");
    if completed {
        assert_eq!(image, new, "cut at {cut_after}: completed commit lost");
    } else {
        assert!(
            image == b.old || image == new,
            "cut at {cut_after}: mixed image"
        );
    }
    image == new
}

fn sweep(cut: Cut, fused: bool) {
    let b = base(cut);
    let new: Vec<u8> = (0..136u32).map(|i| (i * 13 + 1) as u8).collect();
    // How long the whole checkpoint takes, uncut.
    let (mut card, mut rings, key) = boot_with(&b.warm, &b.cold);
    card.host.write(DATA_ADDR + 5, &new);
    let descs = checkpoint(key, &new, fused, cut.tier_flag());
    let start = card.cycle();
    rings.submit(&mut card, &descs).unwrap();
    let done = rings.wait(&mut card, descs.len(), 1_000_000).unwrap();
    assert!(done.iter().all(|c| c.status == 0));
    let total = card.cycle() - start + 8;
    let (mut saw_old, mut saw_new) = (false, false);
    for at in 0..total {
        let is_new = cut_and_check(&b, &new, fused, cut, at, TornWrites::Random(at));
        saw_old |= !is_new;
        saw_new |= is_new;
    }
    assert!(saw_old && saw_new, "the sweep must cover both outcomes");
}

#[test]
fn power_cut_at_every_cycle_of_a_small_fused_commit() {
    sweep(Cut::Power, true);
}

#[test]
fn power_cut_at_every_cycle_of_write_then_flip() {
    sweep(Cut::Power, false);
}

#[test]
fn warm_reset_at_every_cycle_of_write_then_flip() {
    sweep(Cut::WarmReset, false);
}

#[test]
fn power_cut_at_random_cycles_of_large_commits() {
    let b = base(Cut::Power);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for i in 0..6 {
        let len = rng.gen_range(100_000..=(1 << 20));
        let new: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let at = rng.gen_range(0..(len as u64 / 8 + 2000));
        let torn = if i % 2 == 0 {
            TornWrites::Apply
        } else {
            TornWrites::Random(i)
        };
        cut_and_check(&b, &new, i % 3 != 0, Cut::Power, at, torn);
    }
}
