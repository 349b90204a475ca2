//! hitless-bench's daemon lines: the store rate through `hitlessd` with 1
//! and 16 application processes, the daemon's overhead on a 16-byte store
//! (daemon path minus direct path, same card process, same run: as the
//! difference of the two paths' medians, and request by request as the
//! client's time minus the card worker's), and a
//! 4 KiB store against the software alternative (write + fsync + rename +
//! fsync of the directory of a 4 KiB file, same machine, same run).

use super::{card_process, sibling};
use hitless_driver::credentials::Credentials;
use hitless_driver::daemon::DaemonClient;
use hitless_driver::firmware::{Client, Firmware, OpenFlags, Secret};
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

/// Seconds of `n` stores of `len` bytes as application `app`, object 0.
/// `before` runs after the untimed warm-up store, just before the timed
/// ones (the daemon's card-time figures are read there).
fn store_times(
    fw: &mut dyn Firmware,
    app: u32,
    secret: Option<&Secret>,
    len: usize,
    n: usize,
    before: &mut dyn FnMut(),
) -> Option<Vec<f64>> {
    let (s, _) = fw.open_app(app, OpenFlags::all(), secret).ok()?;
    let set = vec![0x5Au8; len];
    // Warm up: the set exists, the table is in its steady shape.
    fw.store(&s, 0, 0, 0, false, &set).ok()?;
    before();
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        fw.store(&s, 0, 0, 0, false, &set).ok()?;
        t.push(start.elapsed().as_secs_f64());
    }
    Some(t)
}

fn start_daemon(dir: &Path, card: &Path, metrics: &str) -> Option<(Killed, std::path::PathBuf)> {
    let socket = dir.join("hitlessd.sock");
    let child = Command::new(sibling("hitlessd")?)
        .arg("--card")
        .arg(format!("vfio-user:{}", card.display()))
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.join("daemon-state"))
        .args(["--metrics", metrics])
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

/// 4 KiB stores of `clients` hitless-load processes (applications 500..,
/// each `rounds` stores after an untimed one, all started together at a
/// barrier): all stores, and the window from the first start to the last
/// end in seconds.
fn load(dir: &Path, socket: &Path, clients: u32, rounds: u32) -> Option<(f64, f64)> {
    let exe = sibling("hitless-load")?;
    let barrier = dir.join(format!("barrier-{clients}-{rounds}"));
    let _ = std::fs::remove_dir_all(&barrier);
    std::fs::create_dir_all(&barrier).ok()?;
    let children: Vec<Child> = (0..clients)
        .map(|i| {
            Command::new(&exe)
                .arg("--socket")
                .arg(socket)
                .args(["--app", &(500 + i).to_string(), "--bench"])
                .args(["--rounds", &rounds.to_string(), "--max-len", "4096"])
                // One set per application: the record table keeps its size.
                .args(["--objects", "1"])
                .arg("--barrier")
                .arg(&barrier)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
        })
        .collect::<Result<_, _>>()
        .ok()?;
    let start = Instant::now();
    loop {
        let ready = std::fs::read_dir(&barrier).ok()?.count();
        if ready >= clients as usize {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(barrier.join("go"), b"").ok()?;
    let (mut stores, mut first, mut last) = (0u64, f64::MAX, 0f64);
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
        first = first.min(field("t0=")?);
        last = last.max(field("t1=")?);
    }
    Some((stores as f64, last - first))
}

/// The card worker's total seconds and count of store requests, from the
/// daemon's metrics (a plain HTTP GET).
fn card_store_seconds(metrics: &str) -> Option<(f64, f64)> {
    Some((
        metric(metrics, "hitlessd_card_seconds_sum{kind=\"store\"}")?,
        metric(metrics, "hitlessd_card_seconds_count{kind=\"store\"}")?,
    ))
}

/// One value of the daemon's metrics (a plain HTTP GET).
fn metric(metrics: &str, name: &str) -> Option<f64> {
    use std::io::Read;
    let mut c = std::net::TcpStream::connect(metrics).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    c.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
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
        // The same application and set on both paths (a store's cost
        // grows with the record table): the daemon gets its secret.
        let direct_16 = {
            let spec = format!("vfio-user:{}", sock.display());
            let io = hitless_driver::open_card(&spec, Duration::from_secs(30)).ok()?;
            let mut fw = Client::open(io, Duration::from_secs(30)).ok()?;
            let (s, secret) = fw.open_app(1, OpenFlags::all(), None).ok()?;
            fw.close(&s).ok()?;
            let secret = secret?;
            Credentials::new(Some(p.dir.join("daemon-state/secrets")))
                .ok()?
                .save(1, &secret)
                .ok()?;
            median(store_times(&mut fw, 1, Some(&secret), 16, 60, &mut || ())?)
        };
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .to_string();
        let (_daemon, socket) = start_daemon(&p.dir, &sock, &metrics)?;
        let mut dc = DaemonClient::connect(&socket, Duration::from_secs(60)).ok()?;
        // The card's figures from after the warm-up store: the same stores
        // on both sides.
        let mut at_start = None;
        let times = store_times(&mut dc, 1, None, 16, 60, &mut || {
            at_start = card_store_seconds(&metrics);
        })?;
        let (sum0, n0) = at_start?;
        let (sum1, n1) = card_store_seconds(&metrics)?;
        // What the daemon adds to the card's own work (the direct path's
        // Client::store, timed inside the daemon), request by request:
        // the simulated card's time varies by milliseconds from run to
        // run, the daemon's share by microseconds.
        let card_mean = (sum1 - sum0) / (n1 - n0);
        let client_mean = times.iter().sum::<f64>() / times.len() as f64;
        let overhead = client_mean - card_mean;
        let daemon_16 = median(times);
        // The daemon's own round trip, without the card: a CLOSE of a
        // session this connection no longer has is answered by the
        // daemon alone (socket, framing, decode, answer). The median of
        // many: what the daemon adds to every request, without the
        // simulated card's millisecond noise in it.
        let own = {
            let (s, _) = dc.open_app(1, OpenFlags::all(), None).ok()?;
            dc.close(&s).ok()?;
            let mut t = Vec::with_capacity(500);
            for _ in 0..500 {
                let start = Instant::now();
                // Refused (no such session): the answer is the point.
                let _ = dc.close(&s);
                t.push(start.elapsed().as_secs_f64());
            }
            median(t)
        };
        let daemon_4k = median(store_times(&mut dc, 1, None, 4096, 30, &mut || ())?);
        drop(dc);
        // Untimed: the 16 applications registered with one set each, so
        // both measurements see the same record table (a store rewrites
        // the whole table image: its cost grows with the table).
        load(&p.dir, &socket, 16, 1)?;
        // One client and sixteen in turns, three times: the simulated
        // card's speed drifts with the machine's load over seconds, and
        // taking turns puts the same drift in both rates.
        let evicted0 = metric(&metrics, "hitlessd_card_session_evictions_total")?;
        let (mut one, mut sixteen) = ((0.0, 0.0), (0.0, 0.0));
        let mut sixteen_stores = 0.0;
        for _ in 0..3 {
            let (n, t) = load(&p.dir, &socket, 1, 8)?;
            one = (one.0 + n, one.1 + t);
            let (n, t) = load(&p.dir, &socket, 16, 2)?;
            sixteen = (sixteen.0 + n, sixteen.1 + t);
            // With the untimed store of each client.
            sixteen_stores += n + 16.0;
        }
        let evicted = metric(&metrics, "hitlessd_card_session_evictions_total")? - evicted0;
        let (one, sixteen) = (one.0 / one.1, sixteen.0 / sixteen.1);
        let evictions_per_store = evicted / sixteen_stores;
        let file = atomic_file_replace_s(&p.dir, 200)?;
        Some((
            direct_16,
            daemon_16,
            overhead,
            own,
            daemon_4k,
            one,
            sixteen,
            file,
            evictions_per_store,
        ))
    })();
    let nan = f64::NAN;
    let (direct_16, daemon_16, overhead, own, daemon_4k, one, sixteen, file, evictions) =
        r.unwrap_or((nan, nan, nan, nan, nan, nan, nan, nan, nan));
    println!("daemon_store_4KiB_per_s_1_client = {one:.1}");
    println!("daemon_store_4KiB_per_s_16_clients = {sixteen:.1}");
    println!("daemon_store_4KiB_16_vs_1_clients = {:.3}", sixteen / one);
    println!("daemon_card_session_evictions_per_store_16_clients = {evictions:.3}");
    println!("direct_store_16B_us = {:.1}", direct_16 * 1e6);
    println!("daemon_store_16B_us = {:.1}", daemon_16 * 1e6);
    println!(
        "daemon_minus_direct_store_16B_us = {:.1}",
        (daemon_16 - direct_16) * 1e6
    );
    println!("daemon_overhead_us = {:.1}", overhead * 1e6);
    println!("daemon_round_trip_us = {:.1}", own * 1e6);
    println!("daemon_store_4KiB_us = {:.1}", daemon_4k * 1e6);
    println!("atomic_file_replace_4KiB_us = {:.1}", file * 1e6);
    println!(
        "store_4KiB_vs_atomic_file_replace = {:.3}",
        daemon_4k / file
    );
}
