//! `cargo xtask demo`: a checkpoint's life on the simulated card, told as a
//! story. Everything below runs on the Verilated controller RTL: the host
//! side only writes descriptors and reads completions and registers.

use hitless_driver::backend::vfio_user::VfioUserIo;
use hitless_driver::firmware::Client;
use hitless_hdl::contract::{
    self, flags, perm, reg, tier_state, BootResult, Completion, Descriptor, Opcode, Status,
    DEFAULT_GEOMETRY,
};
use hitless_hdl::model::{parse_log, HostMemory};
use hitless_proto::PeerReport;
use hitless_sim::harness::{program_entry, Rings, DATA_ADDR};
use hitless_sim::{CardTiming, SimCard, SimError, TornWrites};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

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
    let exec = |cmd: std::process::Command, what: String| -> Result<String, String> {
        println!("$ {what}");
        shown(cmd, &what)
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

/// A card's replication state (STATUS's `PEER` field), `None` while it
/// does not answer.
fn peer_state(socket: &Path) -> Option<PeerReport> {
    let t = Duration::from_secs(2);
    let io = VfioUserIo::connect(socket, 4 << 20, t).ok()?;
    Client::open(io, t).ok()?.status().ok()?.peer
}

/// Poll `socket` until its replication state passes `want` (at most 20 s).
fn wait_peer(socket: &Path, want: impl Fn(&PeerReport) -> bool) -> Result<PeerReport, String> {
    let t = Instant::now();
    loop {
        if let Some(p) = peer_state(socket).filter(|p| want(p)) {
            return Ok(p);
        }
        if t.elapsed() > Duration::from_secs(20) {
            return Err(format!(
                "{}: no such replication state in 20 s",
                socket.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when dropped.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Run `cmd` (already shown as `what`), print its output indented; its
/// stdout, or an error naming the command.
fn shown(mut cmd: std::process::Command, what: &str) -> Result<String, String> {
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
        Err(format!("`{what}` failed"))
    }
}

/// Part 2: a replicated pair: a witness and two card processes; the
/// application checkpoints on the master, the master is killed, the slave
/// takes over with every set, the old master returns as its slave; then a
/// rolling upgrade of the pair to a new release (`hitless peer upgrade`).
fn replication() -> Result<(), String> {
    let here = std::env::current_exe().map_err(|e| e.to_string())?;
    let bindir = here.parent().ok_or("no binary directory")?;
    let (sim, cli) = (bindir.join("hitless-sim"), bindir.join("hitless"));
    let dir = std::env::temp_dir().join(format!("hitless-demo-pair-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = pair_story(&sim, &cli, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn pair_story(sim: &Path, cli: &Path, dir: &Path) -> Result<(), String> {
    let started = Instant::now();
    let key = dir.join("pair.key");
    let hex: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    std::fs::write(&key, hex).map_err(|e| e.to_string())?;
    let key_s = key.to_string_lossy().into_owned();
    let creds = dir.join("credentials");
    // `hitless --card SPEC ARGS` (shown as `--card LABEL`), run, its output
    // shown.
    let run = |card: Option<(&str, &str)>, args: &[&str]| -> Result<String, String> {
        let mut cmd = std::process::Command::new(cli);
        cmd.env("HITLESS_CREDENTIALS", &creds);
        match card {
            Some((label, spec)) => {
                println!("$ hitless --card {label} {}", args.join(" "));
                cmd.args(["--card", spec]);
            }
            None => println!("$ hitless {}", args.join(" ")),
        }
        cmd.args(args);
        shown(cmd, &format!("hitless {}", args.join(" ")))
    };
    // The release key the cards trust (the rolling upgrade at the end).
    let release = dir.join("release.key").to_string_lossy().into_owned();
    run(None, &["image", "keygen", &release])?;
    let trusted = format!("{release}.pub");
    let (pw, p1, p2) = (free_port()?, free_port()?, free_port()?);
    let witness = format!("127.0.0.1:{pw}");
    println!("$ head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > pair.key");
    println!(
        "$ hitless-sim witness --listen {witness} --members 1,2 --lease-ms 2000 --key pair.key &"
    );
    let log = |name: &str| -> Result<std::process::Stdio, String> {
        std::fs::File::create(dir.join(name))
            .map(std::process::Stdio::from)
            .map_err(|e| e.to_string())
    };
    let _witness = Child(
        std::process::Command::new(sim)
            .args(["witness", "--listen", &witness, "--members", "1,2"])
            .args(["--lease-ms", "2000", "--skew-ms", "20", "--key", &key_s])
            .stderr(log("witness.log")?)
            .spawn()
            .map_err(|e| format!("{}: {e}", sim.display()))?,
    );
    let card_args = |node: u32| -> Vec<String> {
        let (me, peer, other) = if node == 1 { (p1, 2, p2) } else { (p2, 1, p1) };
        [
            "--node".to_string(),
            node.to_string(),
            "--listen".into(),
            format!("127.0.0.1:{me}"),
            "--peer".into(),
            format!("{peer}=127.0.0.1:{other}"),
            "--pair-key".into(),
            key_s.clone(),
            "--witness".into(),
            witness.clone(),
            "--mode".into(),
            "sync".into(),
            "--heartbeat-ms".into(),
            "200".into(),
            "--image-trust".into(),
            trusted.clone(),
            "--image-flash-mib".into(),
            "1".into(),
        ]
        .to_vec()
    };
    let start = |node: u32| -> Result<hitless_sim::serve::CardProcess, String> {
        let d = dir.join(format!("card{node}"));
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        let args = card_args(node);
        println!(
            "$ hitless-sim serve --socket card{node}/card.sock --state-dir card{node}/state {} &",
            args.join(" ")
                .replace(&key_s, "pair.key")
                .replace(&trusted, "release.key.pub")
        );
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        hitless_sim::serve::spawn_card(sim, &d, &refs, Duration::from_secs(10))
    };
    let mut procs = [Some(start(1)?), Some(start(2)?)];
    let sockets = [dir.join("card1/card.sock"), dir.join("card2/card.sock")];
    // `hitless --card CARD ARGS`, shown and run.
    let hitless = |card: usize, args: &[&str]| -> Result<String, String> {
        let spec = format!("vfio-user:{}", sockets[card].display());
        run(Some((&format!("card{}.sock", card + 1), &spec)), args)
    };
    // The first card whose silence passes gets epoch 1 from the witness.
    let t = Instant::now();
    let m = loop {
        if let Some(m) =
            (0..2).find(|&i| peer_state(&sockets[i]).is_some_and(|p| p.role == 0 && p.in_sync == 1))
        {
            break m;
        }
        if t.elapsed() > Duration::from_secs(20) {
            return Err("no master with its slave in sync within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let s = 1 - m;
    wait_peer(&sockets[s], |p| p.role == 1)?;
    println!(
        "\n# Card {} is master (granted epoch 1 by the witness), card {} its slave.",
        m + 1,
        s + 1
    );
    hitless(m, &["peer", "status"])?;
    hitless(s, &["peer", "status"])?;

    println!("\n# The application checkpoints on the master. Sync mode: each store is");
    println!("# acknowledged only once the slave holds it too.");
    let sets: Vec<(String, Vec<u8>, bool)> = (1..=3u32)
        .map(|i| {
            (
                i.to_string(),
                state(100 + i, [700usize, 9000, 48_000][i as usize - 1]),
                i != 2,
            )
        })
        .collect();
    for (object, data, cold) in &sets {
        let f = dir.join(format!("set-{object}.bin"));
        std::fs::write(&f, data).map_err(|e| e.to_string())?;
        let f = f.to_string_lossy().into_owned();
        let mut args = vec!["checkpoint", "--app", "9", "--object", object];
        if *cold {
            args.push("--cold");
        }
        args.push(&f);
        hitless(m, &args)?;
    }

    println!("\n# The master dies (kill -9). The slave hears no heartbeat, waits out the");
    println!("# old lease and takes over with the witness's grant (a newer epoch).");
    let pid = procs[m].as_ref().map_or(0, |p| p.child.id());
    println!("$ kill -9 {pid}");
    let killed = Instant::now();
    procs[m] = None;
    let p = wait_peer(&sockets[s], |p| p.role == 0)?;
    println!(
        "  ... card {} master in epoch {} after {:.1} s",
        s + 1,
        p.epoch,
        killed.elapsed().as_secs_f64()
    );
    // Its dead peer leaves the in-sync set after one silence period.
    wait_peer(&sockets[s], |p| p.role == 0 && p.in_sync == 0)?;
    hitless(s, &["peer", "status"])?;
    println!("\n# Every acknowledged set restores from the new master, byte for byte.");
    for (object, data, _) in &sets {
        let out = dir.join(format!("restored-{object}.bin"));
        let out_s = out.to_string_lossy().into_owned();
        hitless(
            s,
            &["restore", "--app", "9", "--object", object, "-o", &out_s],
        )?;
        let back = std::fs::read(&out).map_err(|e| e.to_string())?;
        println!(
            "  restored-{object}.bin {} set-{object}.bin ({} bytes)",
            if back == *data { "==" } else { "!=" },
            back.len()
        );
        if back != *data {
            return Err(format!("set {object} differs after the takeover"));
        }
    }

    println!("\n# The old master comes back: the newer epoch fences it; it follows the");
    println!("# new master as slave and gets its state.");
    procs[m] = Some(start(m as u32 + 1)?);
    let p = wait_peer(&sockets[m], |q| {
        q.role == 1 && q.master == Some(s as u32 + 1)
    })?;
    wait_peer(&sockets[s], |q| q.role == 0 && q.in_sync == 1)?;
    hitless(m, &["peer", "status"])?;
    hitless(s, &["peer", "status"])?;
    println!(
        "\nreplication: card {} took over in epoch {} with every set; card {} is its slave again \
         ({:.1} s in all).",
        s + 1,
        p.epoch,
        m + 1,
        started.elapsed().as_secs_f64()
    );

    println!("\n# A hitless rolling upgrade. Both cards run release 1 (a blank card's first");
    println!("# package is current at once); `peer upgrade` takes the pair to release 2:");
    println!("# the slave installs, activates and reboots into it, rejoins and is marked");
    println!("# good, takes over by a switchover, then the old master does the same.");
    let upgraded = Instant::now();
    for v in ["1", "2"] {
        let fw = dir.join(format!("fw-{v}"));
        std::fs::write(&fw, format!("hitless card firmware {v}\nlink_schema=4\n"))
            .map_err(|e| e.to_string())?;
        let pkg = dir.join(format!("v{v}.pkg")).to_string_lossy().into_owned();
        let fw = format!("firmware:firmware:{}:cpu", fw.display());
        run(
            None,
            &[
                "image",
                "pack",
                "--key",
                &release,
                "--out",
                &pkg,
                "--version",
                v,
                &fw,
            ],
        )?;
    }
    let v = |n: &str| dir.join(n).to_string_lossy().into_owned();
    hitless(m, &["image", "install", &v("v1.pkg")])?;
    hitless(s, &["image", "install", &v("v1.pkg")])?;
    let pair = format!(
        "pair:vfio-user:{},vfio-user:{}",
        sockets[0].display(),
        sockets[1].display()
    );
    run(
        Some(("pair:card1.sock,card2.sock", &pair)),
        &["peer", "upgrade", &v("v2.pkg")],
    )?;
    let st = hitless(m, &["image", "status"])?;
    if !st.contains("version 2") {
        return Err(format!(
            "card {} does not run release 2 after the upgrade",
            m + 1
        ));
    }
    println!("\n# The sets are all on the new master (card {}).", m + 1);
    for (object, data, _) in &sets {
        let out = dir.join(format!("upgraded-{object}.bin"));
        let out_s = out.to_string_lossy().into_owned();
        hitless(
            m,
            &["restore", "--app", "9", "--object", object, "-o", &out_s],
        )?;
        if std::fs::read(&out).map_err(|e| e.to_string())? != *data {
            return Err(format!("set {object} differs after the rolling upgrade"));
        }
    }
    println!(
        "\nrolling upgrade: both cards run release 2, card {} is master, every set restores \
         ({:.1} s).",
        m + 1,
        upgraded.elapsed().as_secs_f64()
    );
    drop(procs);
    Ok(())
}

/// The gateware for the image demo: the ECP5 bitstream `cargo xtask
/// bitstreams` builds (bitstreams/out is not committed), else the
/// committed ULX3S (ECP5) board wrapper as a stand-in.
fn ecp5_gateware() -> (std::path::PathBuf, &'static str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    for (p, what) in [
        (
            "bitstreams/out/ulx3s/ulx3s.bit",
            "the ULX3S (ECP5-85F) bitstream",
        ),
        (
            "bitstreams/out/orangecrab/orangecrab.bit",
            "the OrangeCrab (ECP5-25F) bitstream",
        ),
    ] {
        let p = root.join(p);
        if p.is_file() {
            return (p, what);
        }
    }
    (
        root.join("bitstreams/boards/ulx3s/top.v"),
        "no ECP5 .bit is committed (bitstreams/out is built by `cargo xtask bitstreams ulx3s`): \
         the committed ULX3S (ECP5) board wrapper stands in for it",
    )
}

/// Part 1b: software images. The card's image manager (two simulated NVS
/// flash devices in the card's state directory) installs a signed package
/// holding the ECP5 bitstream, boots it on trial after a restart, is told
/// it is good; then a broken package rolls back by itself.
fn images() -> Result<(), String> {
    let here = std::env::current_exe().map_err(|e| e.to_string())?;
    let bindir = here.parent().ok_or("no binary directory")?;
    let (sim, cli) = (bindir.join("hitless-sim"), bindir.join("hitless"));
    let dir = std::env::temp_dir().join(format!("hitless-demo-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let d = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let exec = |args: &[&str], card: Option<&str>| -> Result<String, String> {
        println!("$ hitless {}", args.join(" "));
        let mut cmd = std::process::Command::new(&cli);
        if let Some(c) = card {
            cmd.env("HITLESS_CARD", c);
        }
        cmd.args(args);
        shown(cmd, &format!("hitless {}", args.join(" ")))
    };
    let (gw, what) = ecp5_gateware();
    println!("# gateware: {what}:\n#   {}", gw.display());
    let gw = gw.to_string_lossy().into_owned();
    let write =
        |name: &str, text: &str| std::fs::write(dir.join(name), text).map_err(|e| e.to_string());
    write("fw-1", "hitless card firmware 1\nselftest=pass\n")?;
    write("fw-2", "hitless card firmware 2\nselftest=pass\n")?;
    write("fw-3", "hitless card firmware 3 (broken)\nselftest=fail\n")?;
    write("card.cfg", "mtu=9000\n")?;
    let key = d("release.key");
    let steps = (|| -> Result<(), String> {
        exec(&["image", "keygen", &key], None)?;
        let pack = |v: &str, fw: &str, with_gw: bool| {
            let mut args = vec![
                "image".to_string(),
                "pack".into(),
                "--key".into(),
                key.clone(),
            ];
            args.extend([
                "--out".into(),
                d(&format!("v{v}.pkg")),
                "--version".into(),
                v.into(),
            ]);
            if with_gw {
                args.push(format!("gateware:gateware:{gw}:fpga"));
            }
            args.push(format!("firmware:firmware:{}:cpu", d(fw)));
            args.push(format!("config:configuration:{}:cpu", d("card.cfg")));
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            exec(&a, None)
        };
        pack("1", "fw-1", false)?;
        pack("2", "fw-2", true)?;
        pack("3", "fw-3", true)?;
        println!(
            "$ hitless-sim serve --socket {0}/card.sock --state-dir {0}/state --image-trust {1}.pub &",
            dir.display(),
            key
        );
        let pubkey = format!("{key}.pub");
        let spawn = || {
            hitless_sim::serve::spawn_card(
                &sim,
                &dir,
                &["--image-trust", &pubkey],
                std::time::Duration::from_secs(10),
            )
        };
        let p = spawn()?;
        let card = format!("vfio-user:{}", p.socket.display());
        let c = Some(card.as_str());
        println!("\n# A blank card (its NVS created on first start) takes a fresh install.");
        exec(&["image", "status"], c)?;
        exec(&["image", "install", &d("v1.pkg")], c)?;
        println!("\n# Version 2 carries the ECP5 bitstream: installed in the alternate area");
        println!("# of both NVS devices, activated, and booted on trial at the next card boot.");
        exec(&["image", "install", &d("v2.pkg")], c)?;
        exec(&["image", "activate"], c)?;
        println!("# (the card process restarts)");
        drop(p);
        let p = spawn()?;
        let st = exec(&["image", "status"], c)?;
        if !st.contains("ON TRIAL") {
            return Err("version 2 did not boot on trial".into());
        }
        exec(&["image", "mark-good"], c)?;
        println!("\n# Version 3's firmware fails its boot self-test: activated, the card");
        println!("# restarts, the trial fails and the card goes back to version 2 by itself.");
        exec(&["image", "install", &d("v3.pkg")], c)?;
        exec(&["image", "activate"], c)?;
        println!("# (the card process restarts)");
        drop(p);
        let p = spawn()?;
        let st = exec(&["image", "status"], c)?;
        if !st.contains("version 2 from area") || !st.contains("last rollback") {
            return Err("version 3 was not rolled back".into());
        }
        println!("\n# An older package is refused (anti-rollback), nothing written.");
        if exec(&["image", "install", &d("v1.pkg")], c).is_ok() {
            return Err("the older package was accepted".into());
        }
        drop(p);
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    steps
}

fn demo() -> Result<(), String> {
    let e = |e: SimError| e.to_string();
    println!("hitless demo\n\nPart 1: the card as a process, the hitless CLI over vfio-user\n");
    session()?;
    println!("\nPart 1b: software images on the card (signed packages, trial boot, rollback)\n");
    images()?;
    println!("\nPart 2: a replicated pair: a witness, two cards, the master killed\n");
    replication()?;
    println!(
        "\nPart 3: inside the card: the checkpoint controller RTL (Verilated), step by step\n"
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
    // `cargo xtask demo images`: the software-image part alone.
    let only_images = std::env::args().skip(1).any(|a| a == "images");
    let run = if only_images { images } else { demo };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("demo failed: {msg}");
            ExitCode::FAILURE
        }
    }
}
