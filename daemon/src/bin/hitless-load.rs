//! `hitless-load`: one application storing and restoring random sets
//! through hitlessd, checking every restore against what the daemon
//! acknowledged. The daemon's soak test runs 16 of these while the card is
//! reset and the daemon restarted; `--bench` measures the store rate.
//!
//! A request that fails (the daemon restarting, the card resetting) is
//! retried on a new connection; its set is then "maybe stored": a later
//! restore may show it or the last acknowledged one, nothing else. The
//! last line is `ok stores=N restores=N retries=N seconds=F` or an error
//! (exit status 1).
#![forbid(unsafe_code)]

use clap::Parser;
use hitless_driver::daemon::DaemonClient;
use hitless_driver::firmware::{Firmware, OpenFlags, Session};
use hitless_hdl::contract::crc32c;
use rand::{Rng, RngCore, SeedableRng};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "hitless-load",
    about = "Store and restore random sets through hitlessd"
)]
struct Args {
    /// hitlessd's socket.
    #[arg(long)]
    socket: PathBuf,
    /// The application id.
    #[arg(long)]
    app: u32,
    /// Objects to spread the stores over.
    #[arg(long, default_value_t = 4)]
    objects: u32,
    /// Store/restore rounds.
    #[arg(long, default_value_t = 20)]
    rounds: u32,
    /// Largest set in bytes (sizes are random from 1).
    #[arg(long, default_value_t = 8192)]
    max_len: usize,
    /// Seed of the sizes and contents.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep storing after `--rounds` until this file exists (a soak that
    /// must outlast the disruptions its test makes, however fast stores
    /// are); at most `--retry-for` seconds longer.
    #[arg(long)]
    until: Option<PathBuf>,
    /// Seconds a failing request is retried before giving up.
    #[arg(long, default_value_t = 60)]
    retry_for: u64,
    /// Measure instead: `--rounds` stores of exactly `--max-len` bytes,
    /// no restores; prints `stores_per_s=F`.
    #[arg(long)]
    bench: bool,
    /// With `--bench`: after the untimed store, create `DIR/ready-APP` and
    /// wait (at most `--retry-for`) for `DIR/go`, so that many clients
    /// measure the same window.
    #[arg(long)]
    barrier: Option<PathBuf>,
}

struct Conn {
    fw: DaemonClient,
    s: Session,
}

fn connect(a: &Args) -> Result<Conn, hitless_driver::Error> {
    let mut fw = DaemonClient::connect(&a.socket, Duration::from_secs(30))?;
    let (s, _) = fw.open_app(a.app, OpenFlags::all(), None)?;
    Ok(Conn { fw, s })
}

/// What a restore of an object may show.
#[derive(Default, Clone)]
struct Expect {
    acked: Option<u32>,
    /// CRCs of stores whose answer was lost after the last acknowledged one.
    maybe: Vec<u32>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error app {}: {e}", a.app);
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> Result<String, String> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed ^ (u64::from(a.app) << 32));
    let mut conn: Option<Conn> = None;
    let mut retries = 0u32;
    let mut expect: HashMap<u32, Expect> = HashMap::new();
    let (mut stores, mut restores) = (0u32, 0u32);
    // One request with retries on new connections.
    let mut with_retry = |conn: &mut Option<Conn>,
                          retries: &mut u32,
                          f: &mut dyn FnMut(&mut Conn) -> Result<(), hitless_driver::Error>|
     -> Result<bool, String> {
        let give_up = Instant::now() + Duration::from_secs(a.retry_for);
        let mut first = true;
        loop {
            let r = match conn {
                Some(c) => f(c),
                None => connect(a).and_then(|mut c| {
                    let r = f(&mut c);
                    *conn = Some(c);
                    r
                }),
            };
            match r {
                Ok(()) => return Ok(first),
                Err(e @ hitless_driver::Error::Firmware { .. }) if !is_transient(&e) => {
                    return Err(e.chain())
                }
                Err(e) => {
                    if Instant::now() > give_up {
                        return Err(format!("gave up after {}s: {}", a.retry_for, e.chain()));
                    }
                    *conn = None;
                    *retries += 1;
                    first = false;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    };
    if a.bench {
        // Untimed: connect, open (the first open registers the
        // application: a store of its secret), one store.
        let data = vec![0u8; a.max_len];
        with_retry(&mut conn, &mut retries, &mut |c| {
            c.fw.store(&c.s, 0, 0, 1, false, &data)
        })?;
        if let Some(dir) = &a.barrier {
            std::fs::write(dir.join(format!("ready-{}", a.app)), b"")
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            let give_up = Instant::now() + Duration::from_secs(a.retry_for);
            while !dir.join("go").exists() {
                if Instant::now() > give_up {
                    return Err("no go at the barrier".into());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    let epoch = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    let t0 = epoch(std::time::SystemTime::now());
    let start = Instant::now();
    let mut round = 0u32;
    loop {
        let more = match &a.until {
            Some(stop) => !stop.exists() && start.elapsed() < Duration::from_secs(a.retry_for),
            None => false,
        };
        if round >= a.rounds && !more {
            break;
        }
        round += 1;
        let object = rng.gen_range(0..a.objects.max(1));
        let len = if a.bench {
            a.max_len
        } else {
            rng.gen_range(1..=a.max_len.max(1))
        };
        let mut data = vec![0u8; len];
        rng.fill_bytes(&mut data);
        let crc = crc32c(&data);
        // The soak mixes the tiers; the benchmark keeps every store in the
        // warm tier (a store into the other tier than the set's also
        // deletes it there: two table rewrites, a cost the rate would then
        // carry at random).
        let cold = !a.bench && rng.gen_bool(0.5);
        let e = expect.entry(object).or_default();
        // Until it is acknowledged, the store may or may not have landed.
        e.maybe.push(crc);
        let clean = with_retry(&mut conn, &mut retries, &mut |c| {
            c.fw.store(&c.s, object, 0, 1, cold, &data)
        })?;
        stores += 1;
        let e = expect.entry(object).or_default();
        e.acked = Some(crc);
        e.maybe.clear();
        let _ = clean;
        if a.bench {
            continue;
        }
        let probe = rng.gen_range(0..a.objects.max(1));
        if let Some(want) = expect.get(&probe).cloned() {
            check(&mut conn, &mut retries, &mut with_retry, probe, &want)?;
            restores += 1;
        }
    }
    if !a.bench {
        // Every acknowledged set restores.
        let mut objs: Vec<_> = expect.keys().copied().collect();
        objs.sort_unstable();
        for o in objs {
            let want = expect[&o].clone();
            check(&mut conn, &mut retries, &mut with_retry, o, &want)?;
            restores += 1;
        }
    }
    if let Some(mut c) = conn {
        let _ = c.fw.close(&c.s);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(if a.bench {
        format!(
            "ok stores={stores} seconds={secs:.3} stores_per_s={:.1} t0={t0:.6} t1={:.6}",
            f64::from(stores) / secs,
            epoch(std::time::SystemTime::now())
        )
    } else {
        format!("ok stores={stores} restores={restores} retries={retries} seconds={secs:.3}")
    })
}

type Retry<'a> = dyn FnMut(
        &mut Option<Conn>,
        &mut u32,
        &mut dyn FnMut(&mut Conn) -> Result<(), hitless_driver::Error>,
    ) -> Result<bool, String>
    + 'a;

fn check(
    conn: &mut Option<Conn>,
    retries: &mut u32,
    with_retry: &mut Retry<'_>,
    object: u32,
    want: &Expect,
) -> Result<(), String> {
    let mut got: Option<u32> = None;
    let mut missing = false;
    with_retry(conn, retries, &mut |c| match c.fw.restore(&c.s, object) {
        Ok((_, bytes)) => {
            got = Some(crc32c(&bytes));
            Ok(())
        }
        Err(hitless_driver::Error::Firmware {
            code: hitless_proto::Code::NotFound,
            ..
        }) => {
            missing = true;
            Ok(())
        }
        Err(e) => Err(e),
    })?;
    let ok = match got {
        Some(crc) => want.acked == Some(crc) || want.maybe.contains(&crc),
        // Absent is right only if nothing was ever acknowledged.
        None => want.acked.is_none(),
    };
    if !ok {
        return Err(format!(
            "object {object}: restored crc {got:?} (missing: {missing}), acknowledged {:?}, maybe {:?}",
            want.acked, want.maybe
        ));
    }
    Ok(())
}

/// Refusals that a reset or restart explains (the card's firmware was
/// restarting, the worker lost the card): retried.
fn is_transient(e: &hitless_driver::Error) -> bool {
    matches!(
        e,
        hitless_driver::Error::Firmware {
            code: hitless_proto::Code::Device | hitless_proto::Code::AuthFailed,
            ..
        }
    )
}
