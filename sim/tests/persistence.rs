//! The file-backed cold tier: what the controller saw acknowledged is in
//! the file at once, so dropping the whole card without any shutdown (what
//! `kill -9` does to the card process) loses nothing committed.

use hitless_hdl::contract::{flags, perm, reg, BootResult, Descriptor, Opcode, DEFAULT_GEOMETRY};
use hitless_hdl::model::HostMemory;
use hitless_sim::harness::{program_entry, Rings, DATA_ADDR};
use hitless_sim::memory::WordStore;
use hitless_sim::{CardTiming, NvStore, SimCard};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hitless-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn file_tier_round_trip_and_wrong_size_refused() {
    let dir = temp_dir("nvfile");
    let path = dir.join("cold.nv");
    {
        let mut s = NvStore::open_file(&path, 4096).unwrap();
        s.write_word(8, 0x1122_3344_5566_7788, 0xFF);
        s.write_word(16, u64::MAX, 0x0F);
        assert!(s.corrupt(100, 0x80));
        // No flush: the process "dies" here.
    }
    let s = NvStore::open_file(&path, 4096).unwrap();
    assert_eq!(s.read_word(8), 0x1122_3344_5566_7788);
    assert_eq!(s.read_word(16), 0xFFFF_FFFF);
    assert_eq!(s.bytes[100], 0x80);
    assert!(
        NvStore::open_file(&path, 8192).is_err(),
        "a file of another size is not this card's state"
    );
}

#[test]
fn committed_cold_image_survives_the_card_dying_without_shutdown() {
    let dir = temp_dir("kill");
    let g = DEFAULT_GEOMETRY;
    let cold_path = dir.join("cold.nv");
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    {
        let cold = NvStore::open_file(&cold_path, g.total() as usize).unwrap();
        let mut card = SimCard::with_nv(
            CardTiming::default(),
            NvStore::new(g.total() as usize),
            cold,
        );
        card.wait_boot(1_000_000).unwrap();
        let mut rings = Rings::setup(&mut card, 2, 2).unwrap();
        let p = perm::VALID | perm::READ | perm::WRITE | perm::COMMIT | perm::COLD | perm::REGION;
        let key = program_entry(&mut card, 1, 3, 0, g.region_size, p).unwrap();
        card.host.write(DATA_ADDR, &data);
        let d = Descriptor {
            opcode: Opcode::Write as u8,
            flags: flags::COMMIT | flags::COLD,
            key,
            host_addr: DATA_ADDR,
            len: data.len() as u32,
            ..Default::default()
        };
        assert_eq!(rings.exec(&mut card, d, 1_000_000).unwrap().status, 0);
        // Start another checkpoint and die in the middle of it.
        card.host.write(DATA_ADDR, &vec![0xEE; 200_000]);
        rings
            .submit(&mut card, &[Descriptor { len: 200_000, ..d }])
            .unwrap();
        card.run(5_000);
    }
    let cold = NvStore::open_file(&cold_path, g.total() as usize).unwrap();
    let mut card = SimCard::with_nv(
        CardTiming::default(),
        NvStore::new(g.total() as usize),
        cold,
    );
    card.wait_boot(1_000_000).unwrap();
    let st = card.read_reg(reg::COLD_STATE).unwrap();
    assert_eq!(BootResult::from_bits(st), BootResult::Ok);
    let active = (st >> 4) & 1;
    let base = g.region_base(active as u8) as usize;
    assert_eq!(&card.cold.bytes[base..base + data.len()], &data[..]);
}
