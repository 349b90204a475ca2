//! Jepsen-style fault test of a replicated pair as real processes: a
//! witness and two cards (`hitless-sim serve --node …`) on loopback, the
//! card-to-card link and each card's witness connection through a proxy
//! the test controls. One client per card stores sets in sync mode
//! whenever its card is master (continuous checkpoint load); at random
//! points (seeded: `HITLESS_FAULT_SEED`, printed) the master is killed
//! (SIGKILL), hung (SIGSTOP, later SIGCONT), isolated (link and witness
//! cut), cut from its slave only (severed or black-holed), or its links
//! delayed. After each fault, on the serving master: every acknowledged
//! set restores byte for byte, a set whose last store was not acknowledged
//! is that version or the last acknowledged one (never a mix); at the end:
//! no two nodes acknowledged stores in one epoch (each store's epoch is
//! the serving card's, from STATUS's `PEER` field). Trials:
//! `HITLESS_FAULT_TRIALS` (default 5: each kind once, about 40 s).

mod common;

use common::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// kill -9 the master, restart it later.
    Kill,
    /// SIGSTOP the master, SIGCONT later.
    Stop,
    /// Cut the master from its slave and from the witness.
    Isolate,
    /// Cut the master from its slave only (severed or black-holed).
    Cut,
    /// Delay the master's link and witness connection.
    Delay,
}

const KINDS: [Fault; 5] = [
    Fault::Kill,
    Fault::Stop,
    Fault::Isolate,
    Fault::Cut,
    Fault::Delay,
];

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// How long a takeover may take: silence, the rest of the lease, the
/// witness's skew, the clients' next store (generous for a loaded machine).
const TAKEOVER: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_secs(40);

#[test]
fn random_faults_lose_no_acknowledged_store_and_never_split_brain() {
    let seed = env_u64("HITLESS_FAULT_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let trials = env_u64("HITLESS_FAULT_TRIALS").unwrap_or(5) as usize;
    println!(
        "process fault test: seed {seed} (HITLESS_FAULT_SEED={seed} replays it), {trials} trials"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let started = Instant::now();

    let (dir, key) = test_dir("faults");
    println!("logs in {} (kept with HITLESS_KEEP_LOGS=1)", dir.display());
    let (pw, l1, l2) = (free_port(), free_port(), free_port());
    let witness_addr: SocketAddr = format!("127.0.0.1:{pw}").parse().expect("an address");
    let _witness = start_witness(&dir, &key, &witness_addr.to_string(), "1,2", &[]);
    // Card 2 dials card 1 (the smaller id) through the link proxy.
    let link = Proxy::start(format!("127.0.0.1:{l1}").parse().expect("an address"));
    let wproxy = [Proxy::start(witness_addr), Proxy::start(witness_addr)];
    let cards = [
        Card::new(
            &dir,
            &key,
            1,
            &format!("127.0.0.1:{l1}"),
            &[(2, format!("127.0.0.1:{l2}"))],
            &wproxy[0].addr.to_string(),
        ),
        Card::new(
            &dir,
            &key,
            2,
            &format!("127.0.0.1:{l2}"),
            &[(1, link.addr.to_string())],
            &wproxy[1].addr.to_string(),
        ),
    ];
    let mut procs: Vec<Option<Proc>> = cards.iter().map(|c| Some(c.start())).collect();
    let (_, secret) = first_master(&cards, Duration::from_secs(30));
    let (m0, p0) = wait_for(SETTLE, "the pair to settle", || settled(&cards));
    println!(
        "node {} master in epoch {} after {:?}",
        cards[m0].node,
        p0.epoch,
        started.elapsed()
    );

    let load = Load::start(&cards, secret, seed);
    let mut counts = Counts::default();
    let mut order: Vec<Fault> = Vec::new();
    for trial in 0..trials {
        if order.is_empty() {
            order = KINDS.to_vec();
            order.shuffle(&mut rng);
        }
        let fault = order.pop().expect("a fault kind");
        // The load runs a random while: the fault falls anywhere in a store.
        std::thread::sleep(Duration::from_millis(rng.gen_range(200..1200)));
        let (m, before) = wait_for(SETTLE, "a settled master", || {
            load.settled(Duration::from_millis(600))
        });
        let (old, e0) = (cards[m].node, before.epoch);
        let at = Instant::now();
        let detail = match fault {
            Fault::Kill => {
                procs[m] = None; // SIGKILL
                String::new()
            }
            Fault::Stop => {
                procs[m].as_ref().expect("the master runs").signal("STOP");
                String::new()
            }
            Fault::Isolate => {
                wproxy[m].sever();
                if rng.gen_bool(0.5) {
                    link.sever();
                    "link severed".into()
                } else {
                    link.blackhole();
                    "link black-holed".into()
                }
            }
            Fault::Cut => {
                if rng.gen_bool(0.5) {
                    link.sever();
                    "severed".into()
                } else {
                    link.blackhole();
                    "black-holed".into()
                }
            }
            Fault::Delay => {
                let d = Duration::from_millis(rng.gen_range(50..400));
                link.delay(d);
                wproxy[m].delay(d / 2);
                format!("{d:?}")
            }
        };
        counts.add(match fault {
            Fault::Kill => "kill -9",
            Fault::Stop => "SIGSTOP",
            Fault::Isolate => "isolate",
            Fault::Cut => "link cut",
            Fault::Delay => "delay",
        });
        let serving = match fault {
            Fault::Kill | Fault::Stop | Fault::Isolate => {
                // The other card takes over in a newer epoch and serves.
                let (n, e) = wait_for(TAKEOVER, "a takeover", || {
                    load.seen(Duration::from_millis(600))
                        .iter()
                        .enumerate()
                        .find_map(|(i, s)| {
                            s.as_ref()
                                .filter(|p| i != m && p.role == 0 && p.epoch > e0)
                                .map(|p| (i, p.epoch))
                        })
                });
                let ack = load.wait_ack(cards[n].node, e, at, TAKEOVER);
                counts.add("takeovers");
                println!(
                    "trial {trial}: {fault:?} {detail} of node {old} (epoch {e0}): node {} serves in epoch {} {:?} later",
                    cards[n].node,
                    ack.epoch,
                    ack.at - at
                );
                n
            }
            Fault::Cut => {
                // The arbiter keeps the master: it drops its slave from the
                // in-sync set and goes on; the slave is refused the takeover.
                let hold = Duration::from_millis(HEARTBEAT_MS * 3 + LEASE_MS + 1000);
                while at.elapsed() < hold {
                    for (i, s) in load.seen(Duration::from_secs(5)).iter().enumerate() {
                        if let Some(p) = s {
                            assert!(
                                i == m || p.role != 0,
                                "trial {trial}: node {} became master ({p:?}) while only the link was cut",
                                cards[i].node
                            );
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let ack = load.wait_ack(old, e0, at + hold / 2, TAKEOVER);
                assert_eq!(ack.epoch, e0, "the master kept its epoch");
                println!(
                    "trial {trial}: link {detail}: node {old} stays master in epoch {e0}, serving without its slave"
                );
                m
            }
            Fault::Delay => {
                std::thread::sleep(Duration::from_millis(2000));
                let (n, p) = wait_for(TAKEOVER, "a master under delay", || {
                    load.seen(Duration::from_millis(800))
                        .iter()
                        .enumerate()
                        .filter_map(|(i, s)| s.as_ref().filter(|p| p.role == 0).map(|p| (i, *p)))
                        .max_by_key(|(_, p)| p.epoch)
                });
                load.wait_ack(cards[n].node, p.epoch, at, TAKEOVER);
                if n != m {
                    counts.add("takeovers");
                }
                println!(
                    "trial {trial}: links of node {old} delayed {detail}: node {} serves in epoch {}",
                    cards[n].node, p.epoch
                );
                n
            }
        };
        // Every acknowledged store is on the card now serving.
        load.pause();
        let checked = load.verify(serving);
        load.resume();
        counts
            .0
            .insert("sets checked", counts.get("sets checked") + checked as u64);
        // Repair, and wait until the pair is whole again.
        match fault {
            Fault::Kill => procs[m] = Some(cards[m].start()),
            Fault::Stop => procs[m].as_ref().expect("the stopped card").signal("CONT"),
            _ => {
                link.heal();
                for w in &wproxy {
                    w.heal();
                }
            }
        }
        let healed = Instant::now();
        let (m2, p2) = wait_for(SETTLE, "the pair to settle after the repair", || {
            load.settled(Duration::from_millis(600))
        });
        load.wait_ack(cards[m2].node, p2.epoch, healed, TAKEOVER);
        println!(
            "  repaired: node {} master in epoch {}, node {} its slave again, {:?} after the repair",
            cards[m2].node,
            p2.epoch,
            cards[1 - m2].node,
            healed.elapsed()
        );
    }
    load.pause();
    let (m, last) = wait_for(SETTLE, "a settled pair at the end", || settled(&cards));
    let checked = load.verify(m);
    counts
        .0
        .insert("sets checked", counts.get("sets checked") + checked as u64);
    let epochs = load.check_epochs();
    let (acks, failed) = (load.acks(), load.failed());
    load.stop();
    assert!(last.epoch >= p0.epoch);
    for (k, v) in &counts.0 {
        println!("  {k}: {v}");
    }
    println!(
        "process fault test: {trials} trials, {} faults, {} takeovers, {acks} stores acknowledged, \
         {failed} not acknowledged, epochs {:?} (epoch: node), 0 lost, {:?}",
        counts.get("kill -9")
            + counts.get("SIGSTOP")
            + counts.get("isolate")
            + counts.get("link cut")
            + counts.get("delay"),
        counts.get("takeovers"),
        epochs,
        started.elapsed()
    );
    assert!(acks > trials, "the load acknowledged only {acks} stores");
    drop(procs);
    if std::env::var_os("HITLESS_KEEP_LOGS").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
