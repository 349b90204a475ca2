//! `cargo xtask bench`: controller figures measured on the Verilated RTL,
//! one `name = value` line each. Efficiencies are payload bytes per cycle
//! divided by the datapath width (8 bytes per cycle), measured end to end:
//! from the doorbell to the last completion, descriptor fetch and
//! completion write included.

use hitless_hdl::contract::{flags, perm, Descriptor, Opcode, DATAPATH_BYTES, DEFAULT_GEOMETRY};
use hitless_hdl::model::HostMemory;
use hitless_sim::harness::{program_entry, Rings, DATA_ADDR};
use hitless_sim::{CardTiming, PortTiming, SimCard};
use std::time::Instant;

const KEY_TAG: u32 = 0xBE4C;

fn card_for(timing: CardTiming) -> (SimCard, Rings, u32) {
    let mut card = SimCard::new(timing);
    card.wait_boot(5_000_000).expect("boot");
    let rings = Rings::setup(&mut card, 6, 6).expect("rings");
    let p = perm::VALID
        | perm::READ
        | perm::WRITE
        | perm::COMMIT
        | perm::WARM
        | perm::COLD
        | perm::REGION;
    let key = program_entry(&mut card, 1, KEY_TAG, 0, DEFAULT_GEOMETRY.region_size, p).expect("pt");
    (card, rings, key)
}

fn desc(op: Opcode, key: u32, len: u32, fl: u8) -> Descriptor {
    Descriptor {
        opcode: op as u8,
        flags: fl,
        key,
        host_addr: DATA_ADDR,
        nv_offset: 0,
        len,
        ..Default::default()
    }
}

/// Cycles for `count` back-to-back operations of `size` bytes (one doorbell).
fn measure(card: &mut SimCard, rings: &mut Rings, d: Descriptor, count: usize) -> u64 {
    let batch = vec![d; count];
    let start = card.cycle();
    rings.submit(card, &batch).expect("submit");
    let c = rings.wait(card, count, 500_000_000).expect("completions");
    assert!(
        c.iter().all(|c| c.status == 0),
        "benchmark operation failed: {c:?}"
    );
    card.cycle() - start
}

fn efficiency(op: Opcode, size: u32, latency: u64) -> f64 {
    // "Read latency L": the latency of the port the data is read from. Host
    // writes are posted (short acknowledgement); warm NV acknowledges
    // (makes durable) a write in 8 cycles.
    let timing = match op {
        Opcode::Write => CardTiming {
            host: PortTiming::split(latency, 4),
            ..CardTiming::default()
        },
        _ => CardTiming {
            host: PortTiming::split(latency, 4),
            warm: PortTiming::split(latency, 8),
            ..CardTiming::default()
        },
    };
    let (mut card, mut rings, key) = card_for(timing);
    let data: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    card.host.write(DATA_ADDR, &data);
    if op != Opcode::Write {
        measure(&mut card, &mut rings, desc(Opcode::Write, key, size, 0), 1);
    }
    let count = ((4 << 20) / size as usize).clamp(2, 32);
    let cycles = measure(&mut card, &mut rings, desc(op, key, size, 0), count);
    let bytes = size as f64 * count as f64;
    bytes / cycles as f64 / DATAPATH_BYTES as f64
}

/// Cycles from the last data beat accepted by NV to the superblock durable.
fn flip_cycles(size: u32) -> u64 {
    let (mut card, mut rings, key) = card_for(CardTiming::default());
    card.host.write(DATA_ADDR, &vec![0xA5; size as usize]);
    card.trace_nv_writes(true);
    measure(
        &mut card,
        &mut rings,
        desc(Opcode::Write, key, size, flags::COMMIT),
        1,
    );
    let ev = card.nv_write_events();
    let sb_end = 2 * hitless_hdl::contract::SUPERBLOCK_BYTES as u64;
    let last_data = ev
        .iter()
        .filter(|(_, e)| e.addr >= sb_end)
        .map(|(_, e)| e.accepted)
        .max();
    let sb_durable = ev
        .iter()
        .filter(|(_, e)| e.addr < sb_end)
        .map(|(_, e)| e.acked)
        .max();
    match (last_data, sb_durable) {
        (Some(d), Some(s)) if s > d => s - d,
        _ => panic!("no commit observed in the write trace"),
    }
}

fn cycles_per_second() -> f64 {
    let (mut card, mut rings, key) = card_for(CardTiming::default());
    card.host.write(DATA_ADDR, &vec![0x3C; 1 << 20]);
    let c0 = card.cycle();
    let t0 = Instant::now();
    for _ in 0..4 {
        measure(
            &mut card,
            &mut rings,
            desc(Opcode::Write, key, 1 << 20, 0),
            2,
        );
        measure(
            &mut card,
            &mut rings,
            desc(Opcode::Validate, key, 1 << 20, 0),
            2,
        );
    }
    (card.cycle() - c0) as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let sizes = [(4096u32, "4KiB"), (65536, "64KiB"), (1 << 20, "1MiB")];
    for (op, name) in [
        (Opcode::Write, "write"),
        (Opcode::Read, "read"),
        (Opcode::Validate, "validate"),
    ] {
        for (size, sname) in sizes {
            for lat in [64u64, 128, 256] {
                println!(
                    "{name}_efficiency_{sname}_lat{lat} = {:.3}",
                    efficiency(op, size, lat)
                );
            }
        }
    }
    println!("flip_cycles_4KiB = {}", flip_cycles(4096));
    println!("flip_cycles_1MiB = {}", flip_cycles(1 << 20));
    println!(
        "flip_cycles = {}",
        flip_cycles(1 << 20).max(flip_cycles(4096))
    );
    println!("verilator_cycles_per_s = {:.0}", cycles_per_second());
}
