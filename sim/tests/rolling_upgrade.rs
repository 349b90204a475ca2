//! The hitless rolling upgrade of a replicated pair (issue 18 item 9; seed
//! 004 claims 19–33, version tolerance 8–12): a witness and two card
//! processes, each with its image manager (`--image-trust`), an
//! application storing sets in sync mode through a `pair:` client the
//! whole time. The standby installs the new package, activates it, is
//! restarted into it (a trial boot), rejoins speaking the new link schema
//! and receives the state from the master on the old one, is marked good
//! and takes over by a switchover; then the old master is upgraded the
//! same way. Then back down (an older package forced past anti-rollback),
//! a broken package on the standby (rolled back by its self-test in the
//! same boot) and one never marked good (rolled back at the boot limit):
//! the master serves throughout, in the same epoch. At the end every
//! acknowledged set restores byte for byte from the master.

mod common;

use common::*;
use hitless_driver::firmware::{Client, ImageReport, OpenFlags, Switched};
use hitless_driver::pair::{PairClient, PairSpec};
use hitless_driver::Firmware;
use hitless_image::package::generate_key;
use hitless_image::{ComponentKind, PackageBuilder};
use hitless_proto::image::cause;
use hitless_proto::link::SCHEMA;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const EXPIRES: u64 = 4_000_000_000;
/// How long the client looks for a master.
const FOLLOW: Duration = Duration::from_secs(20);
/// The schema of the "old" release; the new one speaks the newest.
const OLD: u32 = SCHEMA - 1;

/// A release: its firmware names the link schema it speaks.
fn package(key: &ed25519_dalek::SigningKey, version: u64, firmware: &str) -> Vec<u8> {
    let gateware: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) ^ version as u32) as u8)
        .collect();
    PackageBuilder::new(version, EXPIRES)
        .component(
            "gateware",
            ComponentKind::Gateware,
            &version.to_string(),
            &["fpga"],
            gateware,
        )
        .component(
            "firmware",
            ComponentKind::Firmware,
            &version.to_string(),
            &["cpu"],
            firmware.as_bytes().to_vec(),
        )
        .build_signed(key)
}

/// What the checkpointing application is asked between two stores.
enum Cmd {
    Switchover(u32, mpsc::Sender<Result<Switched, String>>),
}

/// Per object: the last acknowledged version and those sent since.
#[derive(Default)]
struct Sets {
    acked: BTreeMap<u32, u32>,
    pending: BTreeMap<u32, Vec<u32>>,
    acks: Vec<(Instant, u32)>,
    failed: u32,
}

/// The application: stores versions of 8 objects through a `pair:`
/// client until stopped; switchovers are asked through it (it holds the
/// master's card).
fn checkpointer(
    spec: PairSpec,
    sets: Arc<Mutex<Sets>>,
    stop: Arc<AtomicBool>,
    cmds: mpsc::Receiver<Cmd>,
    ready: mpsc::Sender<hitless_driver::firmware::Secret>,
) {
    let mut c = PairClient::open(spec, FOLLOW).expect("a master");
    let (s, secret) = c
        .open_app(APP, OpenFlags::all(), None)
        .expect("the application registers");
    ready
        .send(secret.expect("the first open hands out the secret"))
        .expect("the test waits");
    let mut version = 0u32;
    while !stop.load(Ordering::SeqCst) {
        while let Ok(cmd) = cmds.try_recv() {
            match cmd {
                Cmd::Switchover(to, reply) => {
                    let r = c.switchover(Some(to)).map_err(|e| e.chain());
                    let _ = reply.send(r);
                }
            }
        }
        version += 1;
        let object = version % 8;
        let data = set_data(object, version);
        let r = c.store(&s, object, 0, 0, cold(object), &data);
        let mut h = lock(&sets);
        match r {
            Ok(_) => {
                h.acked.insert(object, version);
                h.pending.remove(&object);
                h.acks.push((Instant::now(), c.master().map_or(0, |m| m.0)));
            }
            Err(e) => {
                eprintln!("store {object} v{version}: {}", e.chain());
                h.pending.entry(object).or_default().push(version);
                h.failed += 1;
            }
        }
        drop(h);
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn image(card: &Card) -> Client<hitless_driver::backend::vfio_user::VfioUserIo> {
    wait_for(TIMEOUT, &format!("card {}'s mailbox", card.node), || {
        card.client(Duration::from_secs(10)).ok()
    })
}

fn install(card: &Card, pkg: &[u8], force: bool) -> Result<u64, String> {
    let mut c = image(card);
    c.image_install(&mut &pkg[..], pkg.len() as u64, force, &mut |_, _| {})
        .map(|i| i.version)
        .map_err(|e| e.chain())
}

/// The card's link schema and its replication state.
fn schema(card: &Card) -> Option<u32> {
    let s = card.client(Duration::from_secs(2)).ok()?.status().ok()?;
    s.peer_notes.link_schema
}

/// The card's reboot (`IMAGE_REBOOT`: the card process starts itself
/// again, same pid): its image state once the rebooted card answers.
fn reboot(card: &Card) -> ImageReport {
    let mut c = image(card);
    c.image_reboot().expect("the card reboots");
    // It ends this connection when it goes down.
    wait_for(TIMEOUT, &format!("node {} going down", card.node), || {
        c.image_status().is_err().then_some(())
    });
    drop(c);
    wait_for(TIMEOUT * 2, &format!("node {} back", card.node), || {
        card.client(Duration::from_secs(5))
            .ok()?
            .image_status()
            .ok()
    })
}

/// Upgrade (or downgrade) the slave `s` of master `m` to `pkg`: install,
/// activate, restart into the trial, rejoin as slave speaking `want`,
/// mark good. Returns the image state after mark-good.
fn upgrade_standby(
    cards: &[Card; 2],
    s: usize,
    m: usize,
    pkg: &[u8],
    force: bool,
    want: u32,
) -> ImageReport {
    let (sn, mn) = (cards[s].node, cards[m].node);
    let v = install(&cards[s], pkg, force).unwrap_or_else(|e| panic!("install on {sn}: {e}"));
    let r = image(&cards[s]).image_activate().unwrap();
    assert!(r.alt_boot, "{r:?}");
    let r = reboot(&cards[s]);
    assert!(r.trial && r.version == v, "node {sn} booted {r:?}");
    // Healthy: it follows the master again, speaking the new schema.
    cards[s].peer(FOLLOW, |p| p.role == 1 && p.master == Some(mn));
    assert_eq!(schema(&cards[s]), Some(want), "node {sn}'s link schema");
    let r = image(&cards[s]).image_mark_good().unwrap();
    assert!(!r.trial && r.version == v, "{r:?}");
    r
}

/// `hitless ARGS PKG` (the CLI built next to this test by `cargo test
/// --workspace`): whether it succeeded, and what it printed.
fn hitless(args: &[&str], pkg: &std::path::Path) -> (bool, String) {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .join("hitless");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p hitless-cli` (cargo test --workspace builds it)",
        bin.display()
    );
    let out = std::process::Command::new(bin)
        .args(args)
        .arg(pkg)
        .output()
        .expect("the hitless CLI runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("$ hitless {} {}\n{text}", args.join(" "), pkg.display());
    (out.status.success(), text)
}

fn switch(cmds: &mpsc::Sender<Cmd>, to: u32) -> Switched {
    // The target must have acknowledged every bracket first: retried while
    // it is still catching up.
    wait_for(FOLLOW, &format!("a switchover to node {to}"), || {
        let (tx, rx) = mpsc::channel();
        cmds.send(Cmd::Switchover(to, tx)).ok()?;
        match rx.recv_timeout(FOLLOW) {
            Ok(Ok(done)) => Some(done),
            Ok(Err(e)) => {
                eprintln!("switchover to {to}: {e}");
                std::thread::sleep(Duration::from_millis(200));
                None
            }
            Err(_) => None,
        }
    })
}

#[test]
fn a_pair_upgrades_and_downgrades_without_losing_an_acknowledged_set() {
    let (dir, _witness, mut cards) = witness_and_pair("rolling");
    let key = generate_key(&mut rand::rngs::StdRng::seed_from_u64(33));
    let keyfile = dir.join("trusted.pub");
    std::fs::write(&keyfile, hex(key.verifying_key().as_bytes())).unwrap();
    for c in cards.iter_mut() {
        c.args.extend(
            [
                "--image-trust",
                &keyfile.display().to_string(),
                "--image-flash-mib",
                "1",
                "--image-boot-limit",
                "1",
            ]
            .map(String::from),
        );
    }
    let old = format!("hitless firmware 1\nlink_schema={OLD}\n");
    let new = format!("hitless firmware 2\nlink_schema={SCHEMA}\n");
    let v1 = package(&key, 1, &old);
    let v2 = package(&key, 2, &new);
    let broken = package(&key, 3, "hitless firmware 3\nselftest=fail\n");
    let unhealthy = package(&key, 4, &format!("hitless firmware 4\nlink_schema={OLD}\n"));

    // Both cards provisioned with release 1 (a blank card's first package
    // is current at once) and restarted: both speak the old schema.
    let procs = [cards[0].start(), cards[1].start()];
    for c in &cards {
        assert_eq!(schema(c), Some(SCHEMA), "a blank card speaks the newest");
        assert_eq!(install(c, &v1, false), Ok(1));
        assert_eq!(reboot(c).version, 1);
    }
    for c in &cards {
        wait_for(TIMEOUT, "the old schema", || {
            (schema(c) == Some(OLD)).then_some(())
        });
    }

    let spec = PairSpec::parse(&format!(
        "vfio-user:{},vfio-user:{}",
        cards[0].socket.display(),
        cards[1].socket.display()
    ))
    .unwrap();
    let sets = Arc::new(Mutex::new(Sets::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (cmd_tx, cmd_rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let app = {
        let (sets, stop) = (sets.clone(), stop.clone());
        std::thread::spawn(move || checkpointer(spec, sets, stop, cmd_rx, ready_tx))
    };
    let secret = ready_rx.recv_timeout(FOLLOW * 2).expect("the application");
    // The master, as its slave names it (the application holds the
    // master's card: one client at a time).
    let mn = wait_for(FOLLOW, "a slave naming its master", || {
        cards.iter().find_map(|c| {
            c.peer_now()
                .ok()
                .filter(|p| p.role == 1)
                .and_then(|p| p.master)
        })
    });
    let m = cards.iter().position(|c| c.node == mn).unwrap();
    let s = 1 - m;
    let (mn, sn) = (cards[m].node, cards[s].node);
    cards[s].peer(FOLLOW, |p| p.role == 1 && p.master == Some(mn));
    let acked = |n: usize| {
        wait_for(FOLLOW, "stores acknowledged", || {
            (lock(&sets).acks.len() >= n).then_some(())
        })
    };
    acked(10);

    // Upgrade: the standby first (schema OLD master → SCHEMA slave), then
    // it takes over, then the old master.
    let t = Instant::now();
    upgrade_standby(&cards, s, m, &v2, false, SCHEMA);
    let done = switch(&cmd_tx, sn);
    assert_eq!(done.to, sn);
    let n = lock(&sets).acks.len();
    acked(n + 5);
    upgrade_standby(&cards, m, s, &v2, false, SCHEMA);
    eprintln!("upgrade of the pair: {:?}", t.elapsed());
    let n = lock(&sets).acks.len();
    acked(n + 5);

    // Downgrade: release 1 is older than the running 2: refused unless
    // forced (nothing written), then forced, the standby (node m) first.
    let e = install(&cards[m], &v1, false).unwrap_err();
    assert!(e.contains("version"), "{e}");
    let t = Instant::now();
    upgrade_standby(&cards, m, s, &v1, true, OLD);
    switch(&cmd_tx, mn);
    let n = lock(&sets).acks.len();
    acked(n + 5);
    upgrade_standby(&cards, s, m, &v1, true, OLD);
    eprintln!("downgrade of the pair: {:?}", t.elapsed());

    // A broken release on the standby (node s): its self-test fails in
    // the trial boot and it runs release 1 again; the master (node m)
    // serves throughout in the same epoch.
    let epoch = cards[s].peer_now().map(|p| p.epoch).unwrap();
    let n = lock(&sets).acks.len();
    assert_eq!(install(&cards[s], &broken, false), Ok(3));
    image(&cards[s]).image_activate().unwrap();
    let r = reboot(&cards[s]);
    assert_eq!(r.version, 1, "{r:?}");
    assert_eq!(
        r.last_rollback.map(|l| l.0),
        Some(cause::SELF_TEST),
        "{r:?}"
    );
    cards[s].peer(FOLLOW, |p| p.role == 1 && p.master == Some(mn));
    // A release that boots but is never marked good (its health is not
    // proven): at the next boot the limit (1 trial) rolls it back.
    assert_eq!(install(&cards[s], &unhealthy, false), Ok(4));
    image(&cards[s]).image_activate().unwrap();
    let r = reboot(&cards[s]);
    assert!(r.trial && r.version == 4, "{r:?}");
    let r = reboot(&cards[s]);
    assert_eq!(r.version, 1, "{r:?}");
    assert_eq!(
        r.last_rollback.map(|l| l.0),
        Some(cause::BOOT_LIMIT),
        "{r:?}"
    );
    cards[s].peer(FOLLOW, |p| p.role == 1 && p.master == Some(mn));
    acked(n + 5);
    let p = cards[s].peer_now().unwrap();
    assert_eq!(p.epoch, epoch, "the master kept its epoch: {p:?}");
    {
        let h = lock(&sets);
        assert!(
            h.acks[n..].iter().all(|(_, node)| *node == mn),
            "every store during the failed upgrades acknowledged by node {mn}"
        );
    }

    // The one-command upgrade (`hitless peer upgrade`), with the
    // application stopped (it held the master's card, which the command
    // needs for the switchover): release 2 on both, the master last.
    stop.store(true, Ordering::SeqCst);
    app.join().expect("the application thread");
    let pair_spec = format!(
        "pair:vfio-user:{},vfio-user:{}",
        cards[0].socket.display(),
        cards[1].socket.display()
    );
    let v2_file = dir.join("v2.pkg");
    std::fs::write(&v2_file, &v2).unwrap();
    let out = hitless(&["--card", &pair_spec, "peer", "upgrade"], &v2_file);
    assert!(out.0, "peer upgrade failed:\n{}", out.1);
    for c in &cards {
        let r = image(c).image_status().unwrap();
        assert!(r.version == 2 && !r.trial, "node {}: {r:?}", c.node);
        assert_eq!(schema(c), Some(SCHEMA));
    }
    let m = cards
        .iter()
        .position(|c| c.peer_now().is_ok_and(|p| p.role == 0))
        .expect("a master after the upgrade");
    assert_eq!(cards[m].node, sn, "the old slave took over:\n{}", out.1);
    // A broken release: the first card rolls back at its boot, the
    // command stops there, the master is untouched.
    let broken_file = dir.join("broken.pkg");
    std::fs::write(&broken_file, &broken).unwrap();
    let out = hitless(&["--card", &pair_spec, "peer", "upgrade"], &broken_file);
    assert!(!out.0, "a broken release went through:\n{}", out.1);
    assert!(out.1.contains("came back running version 2"), "{}", out.1);
    assert!(cards[m].peer_now().is_ok_and(|p| p.role == 0));

    // The end: every acknowledged set restores byte for byte from the
    // master (or a later version sent whose answer was lost).
    let h = lock(&sets);
    let (mut c, sess) = wait_for(TIMEOUT, "the master opens the application", || {
        cards[m].open(Some(&secret)).ok().map(|(c, s, _)| (c, s))
    });
    for (&object, &v) in &h.acked {
        let (_, got) = c
            .restore(&sess, object)
            .unwrap_or_else(|e| panic!("restore {object}: {e}"));
        let later = h.pending.get(&object).cloned().unwrap_or_default();
        assert!(
            got == set_data(object, v) || later.iter().any(|&l| got == set_data(object, l)),
            "set {object}: acknowledged version {v} does not restore"
        );
    }
    eprintln!(
        "{} stores acknowledged, {} failed, {} sets restored",
        h.acks.len(),
        h.failed,
        h.acked.len()
    );
    drop(c);
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}
