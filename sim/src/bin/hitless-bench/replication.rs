//! hitless-bench's replication lines (`hitless-bench replication`, also
//! at the end of the whole run), all measured in the same run:
//! - `replication_throughput_ratio`: checkpoint bytes per second stored
//!   through a sync pair (a witness and two card processes on loopback,
//!   each store acknowledged once the slave has it) divided by raw TCP
//!   loopback bytes per second (a plain socket copy); both figures are
//!   lines of their own, with the same stores on an unreplicated card
//!   process as the baseline;
//! - `sync_ack_latency_us_p50` / `_p99`: a 4 KiB store acknowledged by
//!   the sync pair, client side; `unreplicated_store_latency_us_p50` /
//!   `_p99` the same stores on an unreplicated card;
//! - `fault_trials`, `acked_lost`: a bench-sized run (`FAULT_TRIALS`, at
//!   least 200, seeds from `FAULT_SEED`, default 1,000,000, so not the
//!   trials the test suite runs) of the firmware's randomized fault test
//!   (`fault_trials_sync_lose_no_acknowledged_write`, through cargo), its
//!   counts parsed from the line it prints.

use super::failover::{free_port, log, Killed};
use super::sibling;
use hitless_driver::backend::vfio_user::VfioUserIo;
use hitless_driver::firmware::{Client, OpenFlags, Session};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);
const HEARTBEAT_MS: u64 = 200;

fn open(socket: &Path, app: u32) -> Result<(Client<VfioUserIo>, Session), String> {
    let io = VfioUserIo::connect(socket, 4 << 20, TIMEOUT).map_err(|e| e.to_string())?;
    let mut c = Client::open(io, TIMEOUT).map_err(|e| e.to_string())?;
    let (s, _) = c
        .open_app(app, OpenFlags::all(), None)
        .map_err(|e| e.to_string())?;
    Ok((c, s))
}

/// Raw TCP loopback bytes per second: `total` bytes copied through one
/// connection in 64 KiB writes.
fn tcp_loopback_bytes_per_s(total: usize) -> Result<f64, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let reader = std::thread::spawn(move || -> Result<usize, String> {
        let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok(n),
                Ok(k) => n += k,
                Err(e) => return Err(e.to_string()),
            }
        }
    });
    let mut s = std::net::TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let chunk = vec![0x5Au8; 1 << 16];
    let t = Instant::now();
    let mut sent = 0;
    while sent < total {
        s.write_all(&chunk).map_err(|e| e.to_string())?;
        sent += chunk.len();
    }
    drop(s);
    let got = reader
        .join()
        .map_err(|_| "the reader panicked".to_string())??;
    let secs = t.elapsed().as_secs_f64();
    if got != sent {
        return Err(format!("{got} of {sent} bytes arrived"));
    }
    Ok(sent as f64 / secs)
}

/// Client-side seconds of `n` stores of `len` bytes (object `object`,
/// warm tier), after one untimed.
fn store_times(
    c: &mut Client<VfioUserIo>,
    s: &Session,
    object: u32,
    len: usize,
    n: usize,
) -> Result<Vec<f64>, String> {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
        .collect();
    c.store(s, object, 0, 0, false, &data)
        .map_err(|e| e.to_string())?;
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        c.store(s, object, 0, 0, false, &data)
            .map_err(|e| e.to_string())?;
        t.push(start.elapsed().as_secs_f64());
    }
    Ok(t)
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

/// A witness and two replicated cards (sync); the master's socket.
struct Pair {
    _procs: Vec<Killed>,
    master: PathBuf,
    dir: PathBuf,
}

impl Drop for Pair {
    fn drop(&mut self) {
        self._procs.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn role(socket: &Path) -> Option<u32> {
    let io = VfioUserIo::connect(socket, 4 << 20, Duration::from_secs(5)).ok()?;
    let mut c = Client::open(io, Duration::from_secs(5)).ok()?;
    c.status().ok()?.peer.map(|p| p.role)
}

fn start_pair() -> Result<Pair, String> {
    let exe = sibling("hitless-sim").ok_or("hitless-sim is not built")?;
    let dir = std::env::temp_dir().join(format!("hitless-repl-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let key = dir.join("pair.key");
    std::fs::write(&key, "4d".repeat(32)).map_err(|e| e.to_string())?;
    let (pw, p1, p2) = (free_port()?, free_port()?, free_port()?);
    let witness = format!("127.0.0.1:{pw}");
    let mut procs = vec![Killed(
        Command::new(&exe)
            .args(["witness", "--listen", &witness, "--members", "1,2"])
            .args(["--lease-ms", "2000", "--skew-ms", "20"])
            .arg("--key")
            .arg(&key)
            .stderr(log(&dir, "witness.log")?)
            .spawn()
            .map_err(|e| e.to_string())?,
    )];
    let mut sockets = Vec::new();
    for (node, me, peer, other) in [(1u32, p1, 2u32, p2), (2, p2, 1, p1)] {
        let d = dir.join(format!("card{node}"));
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        let socket = d.join("card.sock");
        procs.push(Killed(
            Command::new(&exe)
                .args(["serve", "--socket"])
                .arg(&socket)
                .arg("--state-dir")
                .arg(d.join("state"))
                .args(["--node", &node.to_string()])
                .args(["--listen", &format!("127.0.0.1:{me}")])
                .args(["--peer", &format!("{peer}=127.0.0.1:{other}")])
                .arg("--pair-key")
                .arg(&key)
                .args(["--witness", &witness, "--mode", "sync"])
                .args(["--heartbeat-ms", &HEARTBEAT_MS.to_string()])
                .env("HITLESS_LOG", "info")
                .stderr(log(&dir, &format!("card{node}.log"))?)
                .spawn()
                .map_err(|e| e.to_string())?,
        ));
        sockets.push(socket);
    }
    let t = Instant::now();
    loop {
        if sockets.iter().all(|s| s.exists()) {
            let roles: Vec<Option<u32>> = sockets.iter().map(|s| role(s)).collect();
            if let Some(m) = roles.iter().position(|r| *r == Some(0)) {
                if roles.iter().filter(|r| **r == Some(1)).count() == 1 {
                    let master = sockets[m].clone();
                    return Ok(Pair {
                        _procs: procs,
                        master,
                        dir,
                    });
                }
            }
        }
        if t.elapsed() > TIMEOUT {
            return Err(format!("no pair formed (logs in {})", dir.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (bytes per second of `n` stores of `len`, the 4 KiB store times).
fn card_figures(socket: &Path, app: u32) -> Result<(f64, Vec<f64>), String> {
    let (mut c, s) = open(socket, app)?;
    let (len, n) = (64usize << 10, 16usize);
    let t = store_times(&mut c, &s, 1, len, n)?;
    let bps = (len * n) as f64 / t.iter().sum::<f64>();
    let lat = store_times(&mut c, &s, 2, 4096, 100)?;
    Ok((bps, lat))
}

/// The firmware's fault test, bench-sized: (trials, acknowledged writes
/// lost), parsed from its report line.
fn fault_counts() -> Result<(u64, u64), String> {
    let trials = std::env::var("FAULT_TRIALS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(200)
        .max(200);
    let seed = std::env::var("FAULT_SEED").unwrap_or_else(|_| "1000000".into());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["test", "--release", "-q", "-p", "hitless-firmware", "--lib"])
        .arg("replication::tests::fault::fault_trials_sync_lose_no_acknowledged_write")
        .args(["--", "--exact", "--nocapture"])
        .env("FAULT_TRIALS", trials.to_string())
        .env("FAULT_SEED", &seed)
        .output()
        .map_err(|e| format!("cargo test: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "fault test (sync): 200 trials, ... checks, 0 lost; ..."
    let line = text
        .lines()
        .find(|l| l.starts_with("fault test (sync):"))
        .ok_or_else(|| {
            format!(
                "the fault test printed no report (exit {:?}): {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" | ")
            )
        })?;
    let before = |word: &str| {
        let w: Vec<&str> = line.split_whitespace().collect();
        w.windows(2)
            .find(|p| p[1].trim_end_matches([',', ';']) == word)
            .and_then(|p| p[0].parse::<u64>().ok())
    };
    let t = before("trials").ok_or("no trial count")?;
    let lost = before("lost").ok_or("no lost count")?;
    if !out.status.success() {
        eprintln!("hitless-bench: the fault test failed (seeds from {seed}): {line}");
    }
    Ok((t, lost))
}

pub fn lines() {
    let nan = f64::NAN;
    let tcp = tcp_loopback_bytes_per_s(1 << 30).unwrap_or_else(|e| {
        eprintln!("hitless-bench: TCP loopback: {e}");
        nan
    });
    let pair = start_pair().and_then(|p| {
        let r = card_figures(&p.master, 11);
        drop(p);
        r
    });
    let (repl_bps, sync_lat) = pair.unwrap_or_else(|e| {
        eprintln!("hitless-bench: replicated pair: {e}");
        (nan, vec![])
    });
    let plain = super::card_process()
        .ok_or_else(|| "no card process".to_string())
        .and_then(|(p, sock)| {
            let r = card_figures(&sock, 11);
            drop(p);
            r
        });
    let (plain_bps, plain_lat) = plain.unwrap_or_else(|e| {
        eprintln!("hitless-bench: unreplicated card: {e}");
        (nan, vec![])
    });
    println!("raw_tcp_loopback_bytes_per_s = {tcp:.0}");
    println!("replicated_store_64KiB_bytes_per_s = {repl_bps:.0}");
    println!("unreplicated_store_64KiB_bytes_per_s = {plain_bps:.0}");
    println!("replication_throughput_ratio = {:.6}", repl_bps / tcp);
    println!(
        "replicated_vs_unreplicated_store_throughput = {:.3}",
        repl_bps / plain_bps
    );
    println!(
        "sync_ack_latency_us_p50 = {:.0}",
        percentile(sync_lat.clone(), 0.5) * 1e6
    );
    println!(
        "sync_ack_latency_us_p99 = {:.0}",
        percentile(sync_lat, 0.99) * 1e6
    );
    println!(
        "unreplicated_store_latency_us_p50 = {:.0}",
        percentile(plain_lat.clone(), 0.5) * 1e6
    );
    println!(
        "unreplicated_store_latency_us_p99 = {:.0}",
        percentile(plain_lat, 0.99) * 1e6
    );
    match fault_counts() {
        Ok((trials, lost)) => {
            println!("fault_trials = {trials}");
            println!("acked_lost = {lost}");
        }
        Err(e) => eprintln!("hitless-bench: fault trials: {e}"),
    }
}
