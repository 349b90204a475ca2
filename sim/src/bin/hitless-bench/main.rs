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

mod daemon;
mod failover;
mod heap;
mod replication;

const KEY_TAG: u32 = 0xBE4C;

fn card_for(timing: CardTiming) -> (SimCard, Rings, u32) {
    let mut card = SimCard::new(timing);
    card.wait_boot(5_000_000).expect("boot");
    let rings = Rings::setup(&mut card, 6, 6).expect("rings");
    let p = perm::FULL_REGION_WINDOW;
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

/// NV-to-NV COPY from the active to the alternate region of one tier,
/// shifted by 8 bytes (how the firmware splices the sets that follow a
/// resized one): card cycles per KiB moved.
fn splice_cycles_per_kib(size: u32) -> f64 {
    let (mut card, mut rings, key) = card_for(CardTiming::default());
    card.host.write(DATA_ADDR, &vec![0x3C; size as usize]);
    measure(
        &mut card,
        &mut rings,
        desc(Opcode::Write, key, size, flags::COMMIT),
        1,
    );
    let len = size - 8;
    let copy = Descriptor {
        opcode: Opcode::Copy as u8,
        key,
        nv_offset: 8,
        aux: 0,
        len,
        ..Default::default()
    };
    let cycles = measure(&mut card, &mut rings, copy, 4);
    cycles as f64 / 4.0 / (len as f64 / 1024.0)
}

/// The firmware through the in-process served card: a vfio-user client,
/// the mailbox, the memory manager, the Verilated controller.
type FwRig = (
    hitless_sim::inproc::InProcessCard,
    hitless_driver::firmware::Client<Box<dyn hitless_driver::CardIo>>,
    hitless_driver::firmware::Session,
);

fn firmware_client(dir: &std::path::Path) -> Option<FwRig> {
    use hitless_driver::firmware::{Client, OpenFlags};
    let card = hitless_sim::inproc::InProcessCard::start(dir).ok()?;
    let io: Box<dyn hitless_driver::CardIo> = Box::new(card.connect().ok()?);
    let mut fw = Client::open(io, std::time::Duration::from_secs(30)).ok()?;
    let (s, _) = fw.open_app(1, OpenFlags::all(), None).ok()?;
    Some((card, fw, s))
}

fn bench_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hitless-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::create_dir_all(&d);
    d
}

/// Stores of a 4 KiB set per second, in a table holding 8 other 4 KiB sets
/// (each store: data write, index write with commit, mirror copy, flip).
fn store_set_4kib_per_s() -> f64 {
    let dir = bench_dir("store");
    let r = (|| {
        let (_card, mut fw, s) = firmware_client(&dir)?;
        let set = vec![0x42u8; 4096];
        for object in 1..=8 {
            fw.store(&s, object, 0, 0, false, &set).ok()?;
        }
        let n = 40;
        let t = Instant::now();
        for _ in 0..n {
            fw.store(&s, 0, 0, 0, false, &set).ok()?;
        }
        Some(n as f64 / t.elapsed().as_secs_f64())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    r.unwrap_or(f64::NAN)
}

/// Card cycles of one 4 KiB store (median of 9) into a warm tier already
/// holding `others` sets of 4 KiB: the firmware's data write, index commit
/// and mirror, mailbox included.
fn store_4kib_cycles(others: u32) -> Option<u64> {
    use hitless_sim::service::Control;
    let dir = bench_dir(&format!("store-cost-{others}"));
    let r = (|| {
        let (card, mut fw, s) = firmware_client(&dir)?;
        let set = vec![0x42u8; 4096];
        for object in 1..=others {
            fw.store(&s, object, 0, 0, false, &set).ok()?;
        }
        let mut cycles = Vec::new();
        for _ in 0..9 {
            let c0 = card.control(Control::Status).ok()?.cycle;
            fw.store(&s, 0, 0, 0, false, &set).ok()?;
            cycles.push(card.control(Control::Status).ok()?.cycle - c0);
        }
        cycles.sort_unstable();
        Some(cycles[cycles.len() / 2])
    })();
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// Seconds to store and restore one 3 MiB set (three controller transfers
/// each way, checked against the whole set's CRC).
fn store_restore_3mib_s() -> f64 {
    let dir = bench_dir("big");
    let r = (|| {
        let (_card, mut fw, s) = firmware_client(&dir)?;
        let set: Vec<u8> = (0..3 << 20).map(|i: u32| (i >> 3) as u8).collect();
        let t = Instant::now();
        fw.store(&s, 1, 0, 0, false, &set).ok()?;
        let back = fw.restore(&s, 1).ok()?.1;
        (back == set).then(|| t.elapsed().as_secs_f64())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    r.unwrap_or(f64::NAN)
}

/// Seconds to deliver 1 MiB of sets (16 of 64 KiB) at a reboot stage.
fn restore_all_1mib_s() -> f64 {
    let dir = bench_dir("restore");
    let r = (|| {
        let (_card, mut fw, s) = firmware_client(&dir)?;
        for object in 0..16 {
            fw.store(
                &s,
                object,
                0,
                1,
                object % 2 == 0,
                &vec![object as u8; 64 << 10],
            )
            .ok()?;
        }
        fw.announce(1).ok()?;
        let t = Instant::now();
        let sets = fw.fetch(&s, 1).ok()?;
        let secs = t.elapsed().as_secs_f64();
        (sets.iter().map(|(_, d)| d.len()).sum::<usize>() == 1 << 20).then_some(secs)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    r.unwrap_or(f64::NAN)
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

/// A card process in a fresh directory (removed afterwards).
struct Served {
    card: hitless_sim::serve::CardProcess,
    dir: std::path::PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.card.child.kill();
        let _ = self.card.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn card_process() -> Option<(Served, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!("hitless-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok()?;
    let card = hitless_sim::serve::spawn_card(
        &sibling("hitless-sim")?,
        &dir,
        &[],
        std::time::Duration::from_secs(10),
    )
    .ok()?;
    let sock = card.socket.clone();
    Some((Served { card, dir }, sock))
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
    let file = p.dir.join("state.bin");
    let creds = p.dir.join("credentials");
    if std::fs::write(&file, vec![0xA5u8; 1 << 20]).is_err() {
        return f64::NAN;
    }
    let spec = format!("vfio-user:{}", sock.display());
    let run = |args: &[&str]| {
        std::process::Command::new(&cli)
            .arg("--card")
            .arg(&spec)
            .arg("--credentials")
            .arg(&creds)
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
    ]) && run(&["restore", "--app", "1", "-o", "/dev/null"]);
    if ok {
        t.elapsed().as_secs_f64()
    } else {
        f64::NAN
    }
}

/// The record store's scaling: a 4 KiB store's card cycles into an empty
/// tier and into one holding 1,000 sets, and a 3 MiB set's round trip.
fn store_lines() {
    let empty = store_4kib_cycles(0);
    let full = store_4kib_cycles(1000);
    let show = |c: Option<u64>| c.map_or("NaN".to_string(), |c| c.to_string());
    println!("store_4KiB_cycles_empty_tier = {}", show(empty));
    println!("store_4KiB_cycles_1000_sets = {}", show(full));
    println!(
        "store_4KiB_cost_ratio_1000_sets = {:.2}",
        match (empty, full) {
            (Some(e), Some(f)) if e > 0 => f as f64 / e as f64,
            _ => f64::NAN,
        }
    );
    println!("store_restore_3MiB_set_s = {:.3}", store_restore_3mib_s());
}

fn main() {
    // `hitless-bench daemon`: the daemon's lines alone.
    if std::env::args().nth(1).as_deref() == Some("daemon") {
        daemon::lines();
        return;
    }
    // `hitless-bench failover`: the replicated pair's lines alone.
    if std::env::args().nth(1).as_deref() == Some("failover") {
        failover::lines();
        return;
    }
    // `hitless-bench heap`: the heap store's checkpoint ratios.
    if std::env::args().nth(1).as_deref() == Some("heap") {
        heap::lines();
        return;
    }
    // `hitless-bench replication`: throughput, sync latency, fault trials.
    if std::env::args().nth(1).as_deref() == Some("replication") {
        replication::lines();
        return;
    }
    // `hitless-bench store`: the record store's scaling lines alone.
    if std::env::args().nth(1).as_deref() == Some("store") {
        store_lines();
        return;
    }
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
        "splice_cycles_per_KiB_64KiB = {:.1}",
        splice_cycles_per_kib(64 << 10)
    );
    println!(
        "splice_cycles_per_KiB = {:.1}",
        splice_cycles_per_kib(1 << 20)
    );
    println!("store_set_4KiB_per_s = {:.1}", store_set_4kib_per_s());
    println!("restore_all_1MiB_s = {:.4}", restore_all_1mib_s());
    store_lines();
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
    daemon::lines();
    failover::lines();
    replication::lines();
    heap::lines();
}
