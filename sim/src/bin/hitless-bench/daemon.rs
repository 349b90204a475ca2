//! hitless-bench's daemon lines: the store rate through `hitlessd` with 1
//! and 16 application processes, the daemon's overhead on a 16-byte store
//! (daemon path minus direct path, same card process, same run), and a
//! 4 KiB store against the software alternative (write + fsync + rename +
//! fsync of the directory of a 4 KiB file, same machine, same run).

use super::{card_process, sibling};
use hitless_driver::daemon::DaemonClient;
use hitless_driver::firmware::{Client, Firmware, OpenFlags};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of `n` stores of `len` bytes.
fn store_times(fw: &mut dyn Firmware, app: u32, len: usize, n: usize) -> Option<Vec<f64>> {
    let (s, _) = fw.open_app(app, OpenFlags::all(), None).ok()?;
    let set = vec![0x5Au8; len];
    // Warm up: the set exists, the table is in its steady shape.
    fw.store(&s, 0, 0, 0, false, &set).ok()?;
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        fw.store(&s, 0, 0, 0, false, &set).ok()?;
        t.push(start.elapsed().as_secs_f64());
    }
    Some(t)
}

fn start_daemon(dir: &Path, card: &Path) -> Option<(Killed, std::path::PathBuf)> {
    let socket = dir.join("hitlessd.sock");
    let child = Command::new(sibling("hitlessd")?)
        .arg("--card")
        .arg(format!("vfio-user:{}", card.display()))
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.join("daemon-state"))
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let d = Killed(child);
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((d, socket))
}

/// Aggregate 4 KiB stores per second of `clients` hitless-load processes
/// (applications 500.., each `rounds` stores after an untimed one): all
/// stores over the longest client's time.
fn load(socket: &Path, clients: u32, rounds: u32) -> Option<f64> {
    let exe = sibling("hitless-load")?;
    let children: Vec<Child> = (0..clients)
        .map(|i| {
            Command::new(&exe)
                .arg("--socket")
                .arg(socket)
                .args(["--app", &(500 + i).to_string(), "--bench"])
                .args(["--rounds", &rounds.to_string(), "--max-len", "4096"])
                // One set per application: the record table keeps its size.
                .args(["--objects", "1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
        })
        .collect::<Result<_, _>>()
        .ok()?;
    let (mut stores, mut longest) = (0u64, 0f64);
    for c in children {
        let out = c.wait_with_output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            return None;
        }
        let field = |k: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse::<f64>().ok())
        };
        stores += field("stores=")? as u64;
        longest = longest.max(field("seconds=")?);
    }
    Some(stores as f64 / longest)
}

/// Median seconds of an atomic replace of a 4 KiB file: write a temporary
/// file, fsync it, rename it over the old one, fsync the directory.
fn atomic_file_replace_s(dir: &Path, n: usize) -> Option<f64> {
    let d = dir.join("files");
    std::fs::create_dir_all(&d).ok()?;
    let data = vec![0x5Au8; 4096];
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let tmp = d.join("state.tmp");
        let mut f = std::fs::File::create(&tmp).ok()?;
        f.write_all(&data).ok()?;
        f.sync_all().ok()?;
        std::fs::rename(&tmp, d.join("state")).ok()?;
        std::fs::File::open(&d).ok()?.sync_all().ok()?;
        t.push(start.elapsed().as_secs_f64());
    }
    Some(median(t))
}

pub fn lines() {
    let r = (|| {
        let (p, sock) = card_process()?;
        // The direct path first: the card serves one vfio-user client.
        let direct_16 = {
            let io = hitless_driver::open_card(
                &format!("vfio-user:{}", sock.display()),
                Duration::from_secs(30),
            )
            .ok()?;
            let mut fw = Client::open(io, Duration::from_secs(30)).ok()?;
            median(store_times(&mut fw, 1, 16, 60)?)
        };
        let (_daemon, socket) = start_daemon(&p.dir, &sock)?;
        let mut dc = DaemonClient::connect(&socket, Duration::from_secs(60)).ok()?;
        let daemon_16 = median(store_times(&mut dc, 2, 16, 60)?);
        let daemon_4k = median(store_times(&mut dc, 3, 4096, 30)?);
        drop(dc);
        // Untimed: the 16 applications registered with one set each, so
        // both measurements see the same record table (a store rewrites
        // the whole table image: its cost grows with the table).
        load(&socket, 16, 1)?;
        let one = load(&socket, 1, 24)?;
        let sixteen = load(&socket, 16, 3)?;
        let file = atomic_file_replace_s(&p.dir, 200)?;
        Some((direct_16, daemon_16, daemon_4k, one, sixteen, file))
    })();
    let nan = f64::NAN;
    let (direct_16, daemon_16, daemon_4k, one, sixteen, file) =
        r.unwrap_or((nan, nan, nan, nan, nan, nan));
    println!("daemon_store_4KiB_per_s_1_client = {one:.1}");
    println!("daemon_store_4KiB_per_s_16_clients = {sixteen:.1}");
    println!("daemon_store_4KiB_16_vs_1_clients = {:.3}", sixteen / one);
    println!("direct_store_16B_us = {:.1}", direct_16 * 1e6);
    println!("daemon_store_16B_us = {:.1}", daemon_16 * 1e6);
    println!("daemon_overhead_us = {:.1}", (daemon_16 - direct_16) * 1e6);
    println!("daemon_store_4KiB_us = {:.1}", daemon_4k * 1e6);
    println!("atomic_file_replace_4KiB_us = {:.1}", file * 1e6);
    println!(
        "store_4KiB_vs_atomic_file_replace = {:.3}",
        daemon_4k / file
    );
}
