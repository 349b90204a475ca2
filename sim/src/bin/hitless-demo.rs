//! `cargo xtask demo`: a checkpoint's life on the simulated card, told as a
//! story. Everything below runs on the Verilated controller RTL: the host
//! side only writes descriptors and reads completions and registers.

use hitless_hdl::contract::{
    self, flags, perm, reg, tier_state, BootResult, Completion, Descriptor, Opcode, Status,
    DEFAULT_GEOMETRY,
};
use hitless_hdl::model::{parse_log, HostMemory};
use hitless_sim::harness::{program_entry, Rings, DATA_ADDR};
use hitless_sim::{CardTiming, SimCard, SimError, TornWrites};
use std::process::ExitCode;

const REGION_KEY_TAG: u32 = 0x00C0_FFEE;
const LOG_KEY_TAG: u32 = 0x0000_0106;
const LIMIT: u64 = 50_000_000;

struct Host {
    card: SimCard,
    rings: Rings,
    region: u32,
    log: u32,
}

fn attach(mut card: SimCard) -> Result<Host, SimError> {
    let start = card.cycle();
    card.wait_boot(LIMIT)?;
    let boot = card.cycle() - start;
    let rings = Rings::setup(&mut card, 4, 4)?;
    let g = DEFAULT_GEOMETRY;
    let all = perm::VALID | perm::READ | perm::WRITE | perm::COMMIT | perm::WARM | perm::COLD;
    let region = program_entry(
        &mut card,
        1,
        REGION_KEY_TAG,
        0,
        g.region_size,
        all | perm::REGION,
    )?;
    let log = program_entry(
        &mut card,
        2,
        LOG_KEY_TAG,
        g.log_base(),
        g.log_size,
        all | perm::LOG,
    )?;
    let mut h = Host {
        card,
        rings,
        region,
        log,
    };
    println!("  boot scan finished in {boot} cycles");
    for (name, tier) in [("warm", 0), ("cold", 1)] {
        println!("  {name} tier: {}", h.tier_summary(tier)?);
    }
    Ok(h)
}

impl Host {
    fn tier_summary(&mut self, tier: u32) -> Result<String, SimError> {
        let (state, seq, a_len, b_len) = if tier == 0 {
            (
                reg::WARM_STATE,
                reg::WARM_SEQ,
                reg::WARM_A_LEN,
                reg::WARM_B_LEN,
            )
        } else {
            (
                reg::COLD_STATE,
                reg::COLD_SEQ,
                reg::COLD_A_LEN,
                reg::COLD_B_LEN,
            )
        };
        let st = self.card.read_reg(state)?;
        let active = (st >> tier_state::ACTIVE_SHIFT) & 1;
        let len = self
            .card
            .read_reg(if active == 0 { a_len } else { b_len })?;
        let result = match BootResult::from_bits(st) {
            BootResult::Empty => "EMPTY (blank, nothing stored)",
            BootResult::Ok => "OK (active region passed its CRC check)",
            BootResult::FellBack => {
                "FELL BACK (active region failed its CRC; serving the alternate)"
            }
            BootResult::Lost => "LOST (both regions failed their CRC)",
        };
        Ok(format!(
            "{result}; superblock seq {}, active region {}, {len} bytes",
            self.card.read_reg(seq)?,
            if active == 0 { 'A' } else { 'B' }
        ))
    }

    fn run(&mut self, d: Descriptor) -> Result<Completion, SimError> {
        self.rings.exec(&mut self.card, d, LIMIT)
    }

    fn checkpoint(&mut self, data: &[u8], cold: bool) -> Result<Completion, SimError> {
        self.card.host.write(DATA_ADDR, data);
        self.run(Descriptor {
            opcode: Opcode::Write as u8,
            flags: flags::COMMIT | if cold { flags::COLD } else { 0 },
            key: self.region,
            host_addr: DATA_ADDR,
            len: data.len() as u32,
            ..Default::default()
        })
    }

    fn restore(&mut self, len: usize, cold: bool) -> Result<(Completion, Vec<u8>), SimError> {
        let at = DATA_ADDR + 0x1000_0000;
        let c = self.run(Descriptor {
            opcode: Opcode::Read as u8,
            flags: if cold { flags::COLD } else { 0 },
            key: self.region,
            host_addr: at,
            len: len as u32,
            ..Default::default()
        })?;
        let mut buf = vec![0u8; len];
        self.card.host.read(at, &mut buf);
        Ok((c, buf))
    }

    fn append(&mut self, data: &[u8]) -> Result<Completion, SimError> {
        self.card.host.write(DATA_ADDR, data);
        self.run(Descriptor {
            opcode: Opcode::Append as u8,
            flags: flags::COLD,
            key: self.log,
            host_addr: DATA_ADDR,
            len: data.len() as u32,
            ..Default::default()
        })
    }

    /// The backup's view: DMA-read the whole ring, parse the unread part,
    /// then trim what it consumed.
    fn backup_read_and_trim(&mut self) -> Result<Vec<Vec<u8>>, String> {
        let g = DEFAULT_GEOMETRY;
        let head = self
            .card
            .read_reg(reg::COLD_LOG_HEAD)
            .map_err(|e| e.to_string())?;
        let tail = self
            .card
            .read_reg(reg::COLD_LOG_TAIL)
            .map_err(|e| e.to_string())?;
        let at = DATA_ADDR + 0x2000_0000;
        let c = self
            .run(Descriptor {
                opcode: Opcode::Read as u8,
                flags: flags::COLD,
                key: self.log,
                host_addr: at,
                len: g.log_size,
                ..Default::default()
            })
            .map_err(|e| e.to_string())?;
        check(&c, "read log")?;
        let mut image = vec![0u8; g.total() as usize];
        self.card
            .host
            .read(at, &mut image[g.log_base() as usize..g.total() as usize]);
        let records = parse_log(&image, &g, head, tail).map_err(|e| e.to_string())?;
        if records.iter().any(|r| !r.crc_ok) {
            return Err("a log record failed its CRC".into());
        }
        let c = self
            .run(Descriptor {
                opcode: Opcode::LogTrim as u8,
                flags: flags::COLD,
                key: self.log,
                aux: head,
                ..Default::default()
            })
            .map_err(|e| e.to_string())?;
        check(&c, "trim log")?;
        Ok(records.into_iter().map(|r| r.data).collect())
    }
}

fn check(c: &Completion, what: &str) -> Result<(), String> {
    match c.status() {
        Some(Status::Ok) => Ok(()),
        Some(s) => Err(format!("{what}: {s:?} ({})", s.describe())),
        None => Err(format!("{what}: unknown status {}", c.status)),
    }
}

fn state(version: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ version.wrapping_mul(0x9E37_79B9)) as u8)
        .collect()
}

/// Part 1: what a user does, as a terminal session: the card runs as its
/// own process (`hitless-sim serve`) and the `hitless` CLI talks to it over
/// vfio-user.
fn session() -> Result<(), String> {
    let here = std::env::current_exe().map_err(|e| e.to_string())?;
    let bindir = here.parent().ok_or("no binary directory")?;
    let (sim, cli) = (bindir.join("hitless-sim"), bindir.join("hitless"));
    if !sim.exists() || !cli.exists() {
        return Err("hitless-sim and hitless are not built (run `cargo xtask demo`)".into());
    }
    let dir = std::env::temp_dir().join(format!("hitless-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    println!(
        "$ hitless-sim serve --socket {0}/card.sock --control {0}/card.ctl --state-dir {0}/state &",
        dir.display()
    );
    let proc_ =
        hitless_sim::serve::spawn_card(&sim, &dir, &[], std::time::Duration::from_secs(10))?;
    let card = format!("vfio-user:{}", proc_.socket.display());
    let creds = dir.join("credentials");
    let file = |name: &str, bytes: &[u8]| -> Result<String, String> {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| e.to_string())?;
        Ok(p.to_string_lossy().into_owned())
    };
    // Show a command line, run it, show what it printed.
    let exec = |mut cmd: std::process::Command, shown: String| -> Result<String, String> {
        println!("$ {shown}");
        let out = cmd.output().map_err(|e| e.to_string())?;
        for line in String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
        {
            println!("  {line}");
        }
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("`{shown}` failed"))
        }
    };
    let ctl_s = proc_.control.to_string_lossy().into_owned();
    let card_sim = |args: &[&str]| {
        let mut cmd = std::process::Command::new(&sim);
        cmd.args(args).args(["--control", ctl_s.as_str()]);
        exec(
            cmd,
            format!("hitless-sim {} --control {ctl_s}", args.join(" ")),
        )
    };
    // `hitless ARGS` (the card and credentials directory are set through
    // the environment, as a user would).
    let hitless = |args: &[&str]| {
        let mut cmd = std::process::Command::new(&cli);
        cmd.env("HITLESS_CARD", &card)
            .env("HITLESS_CREDENTIALS", &creds)
            .args(args);
        exec(cmd, format!("hitless {}", args.join(" ")))
    };
    let app_state = state(1, 256 * 1024);
    let steps = (|| -> Result<(), String> {
        println!("export HITLESS_CARD=vfio-user:{}", proc_.socket.display());
        println!("export HITLESS_CREDENTIALS={}", creds.display());
        hitless(&["status"])?;
        println!("\n# Application 42 stores three sets for three reboot stages; only");
        println!("# its state (object 2) is cold-committed.");
        let cfg = file("boot-config", b"mtu=9000 vlan=42")?;
        let st = file("app-state.bin", &app_state)?;
        let cache = file("session-cache", &state(2, 40 * 1024))?;
        for (object, stage, cold, path) in [
            ("1", "0", false, &cfg),
            ("2", "1", true, &st),
            ("3", "2", false, &cache),
        ] {
            let mut args = vec![
                "checkpoint",
                "--app",
                "42",
                "--object",
                object,
                "--stage",
                stage,
            ];
            if cold {
                args.push("--cold");
            }
            args.push(path);
            hitless(&args)?;
        }
        hitless(&["list", "--app", "42"])?;

        println!("\n# A warm reset: every set comes back, each at its stage.");
        card_sim(&["warm-reset"])?;
        let out = dir.join("delivered");
        let out_s = out.to_string_lossy().into_owned();
        for stage in ["0", "1", "2"] {
            hitless(&["stage", stage, "--app", "42", "--dir", &out_s])?;
        }

        println!("\n# A power cycle: the warm tier is gone, the cold set survives.");
        card_sim(&["power-cycle"])?;
        hitless(&["list", "--app", "42"])?;

        println!("\n# Bits flip in the cold tier's active region; at the next boot the");
        println!("# card serves the alternate region (a mirror of the same table).");
        card_sim(&[
            "flip-bits",
            "--tier",
            "cold",
            "--region",
            "active",
            "--count",
            "4",
        ])?;
        card_sim(&["warm-reset"])?;
        let back = dir.join("restored.bin");
        let back_s = back.to_string_lossy().into_owned();
        hitless(&["restore", "--app", "42", "--object", "2", "-o", &back_s])?;
        let same = std::fs::read(&back).map_err(|e| e.to_string())? == app_state;
        println!(
            "  restored.bin {} app-state.bin",
            if same { "==" } else { "!=" }
        );
        if !same {
            return Err("the restored state differs".into());
        }
        hitless(&["status"])?;

        println!("\n# The append log: a primary appends checkpoints at intervals, a backup");
        println!("# reads them all at once and clears them; the primary dies; the backup");
        println!("# reads exactly what it had not read yet.");
        for i in 1..=3 {
            let f = file(
                &format!("tick-{i}"),
                format!("primary state at tick {i}").as_bytes(),
            )?;
            hitless(&["log", "append", "--app", "7", "--cold", &f])?;
        }
        hitless(&["log", "read", "--app", "7", "--cold", "--trim"])?;
        for i in 4..=5 {
            let f = file(
                &format!("tick-{i}"),
                format!("primary state at tick {i}").as_bytes(),
            )?;
            hitless(&["log", "append", "--app", "7", "--cold", &f])?;
        }
        println!("# (the primary is killed here; the backup takes over)");
        let unread = hitless(&["log", "read", "--app", "7", "--cold", "--json"])?;
        if !unread.contains("tick 4") || !unread.contains("tick 5") || unread.contains("tick 3") {
            return Err("the backup did not read exactly the unread sets".into());
        }
        Ok(())
    })();
    drop(proc_);
    let _ = std::fs::remove_dir_all(&dir);
    steps
}

fn demo() -> Result<(), String> {
    let e = |e: SimError| e.to_string();
    println!("hitless demo\n\nPart 1: the card as a process, the hitless CLI over vfio-user\n");
    session()?;
    println!(
        "\nPart 2: inside the card: the checkpoint controller RTL (Verilated), step by step\n"
    );

    println!("1. Power on a blank card.");
    let mut h = attach(SimCard::new(CardTiming::default())).map_err(e)?;

    let v1 = state(1, 300 * 1024);
    println!(
        "\n2. The application checkpoints version 1 of its state ({} KiB) to the cold tier.",
        v1.len() / 1024
    );
    let c = h.checkpoint(&v1, true).map_err(e)?;
    check(&c, "checkpoint v1")?;
    println!(
        "  committed: CRC-32C {:#010x} computed in the datapath",
        c.crc
    );
    println!("  cold tier: {}", h.tier_summary(1).map_err(e)?);

    let v2 = state(2, 420 * 1024);
    println!(
        "\n3. It starts checkpointing version 2 ({} KiB); the power fails mid-transfer.",
        v2.len() / 1024
    );
    h.card.host.write(DATA_ADDR, &v2);
    let d = Descriptor {
        opcode: Opcode::Write as u8,
        flags: flags::COMMIT | flags::COLD,
        key: h.region,
        host_addr: DATA_ADDR,
        len: v2.len() as u32,
        ..Default::default()
    };
    h.rings.submit(&mut h.card, &[d]).map_err(e)?;
    h.card.run(25_000);
    println!("  power cut after 25000 cycles, with writes in flight torn at random");
    let card = h.card.power_cycle(TornWrites::Random(42), false);

    println!("\n4. Power on again.");
    let mut h = attach(card).map_err(e)?;
    let (c, back) = h.restore(v1.len(), true).map_err(e)?;
    check(&c, "restore")?;
    if back != v1 {
        return Err("restored state is not version 1".into());
    }
    println!(
        "  restore: version 1, byte for byte (the interrupted version 2 never became visible)"
    );

    println!("\n5. Version 2 is checkpointed again and completes.");
    let c = h.checkpoint(&v2, true).map_err(e)?;
    check(&c, "checkpoint v2")?;
    println!("  cold tier: {}", h.tier_summary(1).map_err(e)?);

    println!("\n6. While the card is off, 3 bits of the active region rot.");
    let st = h.card.read_reg(reg::COLD_STATE).map_err(e)?;
    let active = ((st >> tier_state::ACTIVE_SHIFT) & 1) as u8;
    let base = DEFAULT_GEOMETRY.region_base(active) as u64;
    let mut card = h.card.power_cycle(TornWrites::Drop, false);
    card.flip_bits(1, base, v2.len() as u64, 3, 7);
    let mut h = attach(card).map_err(e)?;
    let (c, back) = h.restore(v1.len(), true).map_err(e)?;
    check(&c, "restore after bit rot")?;
    if back != v1 {
        return Err("fallback did not serve version 1".into());
    }
    println!(
        "  restore: version 1 from the alternate region; the corrupted version 2 was not served"
    );

    println!(
        "\n7. A session cache lives in the warm tier: it survives a warm reset, not a power cycle."
    );
    let cache = state(9, 8 * 1024);
    check(&h.checkpoint(&cache, false).map_err(e)?, "warm checkpoint")?;
    h.card.warm_reset(TornWrites::Drop);
    println!("  warm reset:");
    let mut h = attach(h.card).map_err(e)?;
    let (c, back) = h.restore(cache.len(), false).map_err(e)?;
    check(&c, "warm restore")?;
    println!(
        "  warm restore after warm reset: {}",
        if back == cache { "intact" } else { "DIFFERENT" }
    );
    if back != cache {
        return Err("warm tier lost data on a warm reset".into());
    }
    println!("  power cycle:");
    let card = h.card.power_cycle(TornWrites::Drop, false);
    let mut h = attach(card).map_err(e)?;

    println!(
        "\n8. The primary appends successive sets to the log; a backup reads and clears them."
    );
    for i in 0..3u32 {
        let c = h
            .append(format!("delta {i}: balance += {}", 10 * i).as_bytes())
            .map_err(e)?;
        check(&c, "append")?;
    }
    let got = h.backup_read_and_trim()?;
    println!("  backup read {} unread sets and cleared them:", got.len());
    for r in &got {
        println!("    {:?}", String::from_utf8_lossy(r));
    }
    for i in 3..5u32 {
        check(
            &h.append(format!("delta {i}: balance += {}", 10 * i).as_bytes())
                .map_err(e)?,
            "append",
        )?;
    }
    println!("  the primary appends 2 more sets and dies (power cut); the backup takes over:");
    let card = h.card.power_cycle(TornWrites::Random(3), false);
    let mut h = attach(card).map_err(e)?;
    let got = h.backup_read_and_trim()?;
    println!("  backup read the {} previously unread sets:", got.len());
    for r in &got {
        println!("    {:?}", String::from_utf8_lossy(r));
    }
    if got.len() != 2 {
        return Err(format!("expected 2 unread sets, got {}", got.len()));
    }
    println!(
        "\ndone: CRC-32C of version 1 is {:#010x}; every step above ran on the controller RTL.",
        contract::crc32c(&v1)
    );
    Ok(())
}

fn main() -> ExitCode {
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("demo failed: {msg}");
            ExitCode::FAILURE
        }
    }
}
