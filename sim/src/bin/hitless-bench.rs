//! `cargo xtask bench`: controller figures measured on the Verilated RTL,
//! one `name = value` line each. Efficiencies are payload bytes per cycle
//! divided by the datapath width (8 bytes per cycle), measured end to end:
//! from the doorbell to the last completion, descriptor fetch and
//! completion write included.

use hitless_hdl::contract::{
    flags, perm, reg, Descriptor, Opcode, DATAPATH_BYTES, DEFAULT_GEOMETRY,
};
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

/// Host CPU time per operation of the driver core (descriptor write,
/// doorbell, completion reap) through the in-process model, with NOPs so
/// the device's own work is next to nothing.
fn driver_submit_overhead_ns() -> f64 {
    use hitless_driver::backend::model::ModelIo;
    use hitless_driver::{Card, Options};
    let io = ModelIo::new(DEFAULT_GEOMETRY, 1 << 20);
    let Ok(mut card) = Card::open(io, Options::default()) else {
        return f64::NAN;
    };
    let n = 50_000u32;
    let t = Instant::now();
    for _ in 0..n {
        if card.execute(Descriptor::default()).is_err() {
            return f64::NAN;
        }
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// A binary built next to this one (`cargo xtask bench` builds them all).
fn sibling(name: &str) -> Option<std::path::PathBuf> {
    let p = std::env::current_exe().ok()?.parent()?.join(name);
    p.exists().then_some(p)
}

struct CardProcess(std::process::Child, std::path::PathBuf);

impl Drop for CardProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn card_process() -> Option<(CardProcess, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!("hitless-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok()?;
    let sock = dir.join("card.sock");
    let child = std::process::Command::new(sibling("hitless-sim")?)
        .args(["serve", "--socket"])
        .arg(&sock)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let proc_ = CardProcess(child, dir);
    let t = Instant::now();
    while !sock.exists() {
        if t.elapsed() > std::time::Duration::from_secs(10) {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Some((proc_, sock))
}

/// Mean time of a BAR0 register read over vfio-user to `hitless-sim`.
fn vfio_user_bar_roundtrip_ns() -> f64 {
    use hitless_driver::backend::vfio_user::VfioUserIo;
    use hitless_driver::CardIo;
    let Some((_p, sock)) = card_process() else {
        return f64::NAN;
    };
    let Ok(mut io) = VfioUserIo::connect(&sock, 1 << 20, std::time::Duration::from_secs(10)) else {
        return f64::NAN;
    };
    let n = 5_000u32;
    let t = Instant::now();
    for _ in 0..n {
        if io.read32(reg::ID).is_err() {
            return f64::NAN;
        }
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Wall time of `hitless checkpoint` + `hitless restore` of 1 MiB, end to
/// end (two CLI processes, vfio-user, the Verilated card).
fn cli_checkpoint_restore_1mib_s() -> f64 {
    let (Some((p, sock)), Some(cli)) = (card_process(), sibling("hitless")) else {
        return f64::NAN;
    };
    let file = p.1.join("state.bin");
    if std::fs::write(&file, vec![0xA5u8; 1 << 20]).is_err() {
        return f64::NAN;
    }
    let spec = format!("vfio-user:{}", sock.display());
    let run = |args: &[&str]| {
        std::process::Command::new(&cli)
            .arg("--card")
            .arg(&spec)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let t = Instant::now();
    let ok = run(&[
        "checkpoint",
        "--app",
        "1",
        "--cold",
        file.to_str().unwrap_or(""),
    ]) && run(&["restore", "--app", "1", "--cold", "-o", "/dev/null"]);
    if ok {
        t.elapsed().as_secs_f64()
    } else {
        f64::NAN
    }
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
    println!(
        "driver_submit_overhead_ns = {:.0}",
        driver_submit_overhead_ns()
    );
    println!(
        "vfio_user_bar_roundtrip_ns = {:.0}",
        vfio_user_bar_roundtrip_ns()
    );
    println!(
        "cli_checkpoint_restore_1MiB_s = {:.3}",
        cli_checkpoint_restore_1mib_s()
    );
}
