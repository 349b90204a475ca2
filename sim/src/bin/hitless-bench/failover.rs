//! hitless-bench's failover lines: a witness and two replicated card
//! processes on loopback (`hitless-sim witness`, `hitless-sim serve
//! --node …`), no load; the master is killed with SIGKILL and, from the
//! slave's log, `failover_detect_ms` is the kill to the slave's
//! `MasterSilent`, `takeover_ms` its `MasterSilent` to its `BecameMaster`
//! (which includes waiting for the rest of the old master's lease at the
//! witness: the lease is 8 heartbeats). At 10 ms and 1 ms heartbeats.

use super::sibling;
use hitless_driver::backend::vfio_user::VfioUserIo;
use hitless_driver::firmware::Client;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Killed(pub(super) Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

pub(super) fn log(dir: &Path, name: &str) -> Result<Stdio, String> {
    std::fs::File::create(dir.join(name))
        .map(Stdio::from)
        .map_err(|e| e.to_string())
}

/// Seconds since midnight UTC of a log line's timestamp
/// (`2026-12-07T02:49:20.532408Z ...`).
fn line_time(line: &str) -> Option<f64> {
    let t = line.get(11..26)?;
    let h: f64 = t.get(0..2)?.parse().ok()?;
    let m: f64 = t.get(3..5)?.parse().ok()?;
    let s: f64 = t.get(6..)?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

fn now_of_day() -> f64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() % 86_400) as f64 + f64::from(d.subsec_micros()) / 1e6
}

/// The card's replication role (0 master, 1 slave), through STATUS.
fn role(socket: &Path) -> Option<u32> {
    let io = VfioUserIo::connect(socket, 4 << 20, TIMEOUT).ok()?;
    let mut c = Client::open(io, TIMEOUT).ok()?;
    c.status().ok()?.peer.map(|p| p.role)
}

/// `(failover_detect_ms, takeover_ms)` at `hb` ms heartbeats.
fn measure(hb: u64) -> Result<(f64, f64), String> {
    let exe = sibling("hitless-sim").ok_or("hitless-sim is not built")?;
    let dir = std::env::temp_dir().join(format!("hitless-failover-{}-{hb}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let key = dir.join("pair.key");
    std::fs::write(&key, "3c".repeat(32)).map_err(|e| e.to_string())?;
    let (pw, p1, p2) = (free_port()?, free_port()?, free_port()?);
    let witness = format!("127.0.0.1:{pw}");
    let _w = Killed(
        Command::new(&exe)
            .args(["witness", "--listen", &witness, "--members", "1,2"])
            .args(["--lease-ms", &(8 * hb).to_string(), "--skew-ms", "1"])
            .arg("--key")
            .arg(&key)
            .stderr(log(&dir, "witness.log")?)
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    let card = |node: u32, me: u16, peer: u32, other: u16| -> Result<(Killed, PathBuf), String> {
        let d = dir.join(format!("card{node}"));
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        let socket = d.join("card.sock");
        let child = Command::new(&exe)
            .args(["serve", "--socket"])
            .arg(&socket)
            .arg("--state-dir")
            .arg(d.join("state"))
            .args(["--node", &node.to_string()])
            .args(["--listen", &format!("127.0.0.1:{me}")])
            .args(["--peer", &format!("{peer}=127.0.0.1:{other}")])
            .arg("--pair-key")
            .arg(&key)
            .args(["--witness", &witness, "--heartbeat-ms", &hb.to_string()])
            .env("HITLESS_LOG", "info")
            .stderr(log(&dir, &format!("card{node}.log"))?)
            .spawn()
            .map_err(|e| e.to_string())?;
        Ok((Killed(child), socket))
    };
    let mut cards = [Some(card(1, p1, 2, p2)?), Some(card(2, p2, 1, p1)?)];
    let sockets: Vec<PathBuf> = cards.iter().flatten().map(|c| c.1.clone()).collect();
    let t = Instant::now();
    let master = loop {
        let roles: Vec<Option<u32>> = sockets.iter().map(|s| role(s)).collect();
        match roles[..] {
            [Some(0), Some(1)] => break 0,
            [Some(1), Some(0)] => break 1,
            _ if t.elapsed() > Duration::from_secs(30) => return Err("no pair formed".into()),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let slave = 1 - master;
    // Settled: a few leases of steady heartbeats.
    std::thread::sleep(Duration::from_millis(40 * hb).max(Duration::from_millis(200)));
    let killed_at = now_of_day();
    cards[master] = None;
    let slave_log = dir.join(format!("card{}.log", slave + 1));
    let t = Instant::now();
    let (detect, became) = loop {
        let text = std::fs::read_to_string(&slave_log).unwrap_or_default();
        let after = |what: &str| {
            text.lines()
                .filter(|l| l.contains(what))
                .filter_map(line_time)
                .find(|t| *t >= killed_at)
        };
        if let (Some(d), Some(b)) = (after("MasterSilent"), after("event=BecameMaster")) {
            break (d, b);
        }
        if t.elapsed() > TIMEOUT {
            return Err(format!("no takeover (logs in {})", dir.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(cards);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(((detect - killed_at) * 1e3, (became - detect) * 1e3))
}

pub fn lines() {
    for hb in [10u64, 1] {
        match measure(hb) {
            Ok((detect, takeover)) => {
                println!("failover_detect_ms_hb{hb} = {detect:.1}");
                println!("takeover_ms_hb{hb} = {takeover:.1}");
            }
            Err(e) => eprintln!("hitless-bench: failover at {hb} ms heartbeats: {e}"),
        }
    }
}
