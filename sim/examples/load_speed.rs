//! Simulated cycles per wall second with the datapath busy (for profiling).
use hitless_hdl::contract::{perm, Descriptor, Opcode, DEFAULT_GEOMETRY};
use hitless_hdl::model::HostMemory;
use hitless_sim::harness::{program_entry, Rings, DATA_ADDR};
use hitless_sim::{CardTiming, SimCard};
use std::time::Instant;

fn main() {
    let mib: u32 = std::env::var("MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mut card = SimCard::new(CardTiming::default());
    card.wait_boot(1_000_000).expect("boot");
    let mut rings = Rings::setup(&mut card, 4, 4).expect("rings");
    let p = perm::VALID | perm::READ | perm::WRITE | perm::WARM | perm::REGION;
    let key = program_entry(&mut card, 1, 9, 0, DEFAULT_GEOMETRY.region_size, p).expect("pt");
    card.host.write(DATA_ADDR, &vec![0x3C; 1 << 20]);
    let c0 = card.cycle();
    let t = Instant::now();
    for i in 0..mib {
        let op = if i % 2 == 0 {
            Opcode::Write
        } else {
            Opcode::Read
        };
        let d = Descriptor {
            opcode: op as u8,
            key,
            host_addr: DATA_ADDR,
            len: 1 << 20,
            ..Default::default()
        };
        rings.exec(&mut card, d, 10_000_000).expect("op");
    }
    let n = card.cycle() - c0;
    println!(
        "load: {n} cycles, {:.0} cycles/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
}
