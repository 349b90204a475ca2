//! A client that follows the master (`pair:SPEC,SPEC`,
//! `hitless_driver::pair`): a witness and two card processes; an
//! application stores through one `PairClient` while the master is killed
//! with SIGKILL in the middle of its stores, then across a manual
//! switchover; every store is acknowledged and every acknowledged set
//! restores from the master of the moment. A `pair:` spec whose other card
//! is dead still serves through `open_firmware`; a log append refused by
//! a card that is no longer master is sent to the master (it never ran).
//! hitlessd with `--card pair:…` keeps serving an application across a
//! kill -9 of the master.

mod common;

use common::*;
use hitless_driver::firmware::OpenFlags;
use hitless_driver::pair::{PairClient, PairSpec};
use hitless_driver::{open_firmware, Error, Firmware};
use std::time::{Duration, Instant};

/// How long the client looks for a master (the takeover takes the silence
/// period and the rest of the old lease: about 2 s here).
const FOLLOW: Duration = Duration::from_secs(20);

fn store_all(
    c: &mut PairClient,
    s: &hitless_driver::firmware::Session,
    objects: std::ops::Range<u32>,
    acked: &mut Vec<(u32, Vec<u8>)>,
) {
    for object in objects {
        let data = pattern(object, [1usize, 777, 4096, 40_000][object as usize % 4]);
        let t = Instant::now();
        // Every store is acknowledged: a store is retried on the new master
        // when the old one died during it.
        c.store(s, object, 0, 0, object % 2 == 0, &data)
            .unwrap_or_else(|e| panic!("store {object}: {}", e.chain()));
        assert!(
            t.elapsed() < FOLLOW + TIMEOUT,
            "store {object} took {:?}",
            t.elapsed()
        );
        acked.push((object, data));
    }
}

/// hitlessd (built next to this test by `cargo test --workspace`) in front
/// of `card`; killed when dropped.
struct Daemon {
    _proc: Proc,
    socket: std::path::PathBuf,
}

impl Daemon {
    fn start(dir: &std::path::Path, card: &str) -> Daemon {
        let exe = std::env::current_exe().unwrap();
        let bin = exe
            .parent()
            .and_then(|p| p.parent())
            .unwrap()
            .join("hitlessd");
        assert!(
            bin.exists(),
            "{} not built: run `cargo build -p hitless-daemon` (cargo test --workspace builds it)",
            bin.display()
        );
        let socket = dir.join("hitlessd.sock");
        let p = Proc(
            std::process::Command::new(bin)
                .args(["--card", card, "--socket"])
                .arg(&socket)
                .arg("--state-dir")
                .arg(dir.join("hitlessd-state"))
                .args(["--answer-timeout", "60"])
                .env("HITLESS_LOG", "info")
                .stdout(std::process::Stdio::null())
                .stderr(log_file(dir, "hitlessd"))
                .spawn()
                .unwrap(),
        );
        wait_for(TIMEOUT, "hitlessd's socket", || {
            std::os::unix::net::UnixStream::connect(&socket)
                .ok()
                .map(|_| ())
        });
        Daemon { _proc: p, socket }
    }
}

fn check_all(
    c: &mut dyn Firmware,
    s: &hitless_driver::firmware::Session,
    acked: &[(u32, Vec<u8>)],
) {
    for (object, data) in acked {
        let (_, got) = c
            .restore(s, *object)
            .unwrap_or_else(|e| panic!("restore {object}: {}", e.chain()));
        assert!(got == *data, "set {object} differs on the master");
    }
}

#[test]
fn a_pair_client_keeps_storing_across_a_kill_and_a_switchover() {
    let (dir, _witness, cards) = witness_and_pair("follow");
    let mut procs = vec![Some(cards[0].start()), Some(cards[1].start())];
    let spec = format!(
        "vfio-user:{},vfio-user:{}",
        cards[0].socket.display(),
        cards[1].socket.display()
    );
    let pair = PairSpec::parse(&spec).unwrap();

    // The application registers through the pair: the client finds the
    // master (the witness's first grant) by itself.
    let mut c = PairClient::open(pair.clone(), FOLLOW).unwrap();
    let (s, secret) = c.open_app(APP, OpenFlags::all(), None).unwrap();
    let secret = secret.expect("the first open hands out the secret");
    let (mn, first) = c.master().unwrap();
    let m = cards.iter().position(|k| k.node == mn).unwrap();
    let other = 1 - m;
    eprintln!("master: node {mn} in epoch {first}");
    // Wait until the slave follows in the master's epoch and is in sync
    // (the client holds the master's card: ask the slave, and the master
    // through the client).
    cards[other].peer(TIMEOUT, |p| {
        p.role == 1 && p.master == Some(mn) && p.epoch == first
    });
    wait_for(TIMEOUT, "the slave in the master's in-sync set", || {
        let p = c.status().ok()?.peer?;
        (p.in_sync == 1).then_some(())
    });

    let mut acked = Vec::new();
    store_all(&mut c, &s, 100..106, &mut acked);

    // kill -9 the master while the application stores: it goes on
    // storing until four stores after the kill are acknowledged.
    let victim = procs[m].as_ref().map(|p| p.pid()).unwrap();
    let dead = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = dead.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let ok = std::process::Command::new("kill")
            .args(["-KILL", &victim.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        ok
    });
    let t = Instant::now();
    let mut after = 0;
    let mut next = 106;
    while after < 4 {
        assert!(next < 300, "the kill never came");
        let was_dead = dead.load(std::sync::atomic::Ordering::SeqCst);
        store_all(&mut c, &s, next..next + 1, &mut acked);
        next += 1;
        after += u32::from(was_dead);
    }
    assert!(killer.join().unwrap(), "kill -9 {victim}");
    procs[m] = None;
    let (now, second) = c.master().unwrap();
    eprintln!(
        "after the kill: master node {now} in epoch {second}; {} stores in {:?}",
        next - 106,
        t.elapsed()
    );
    assert_eq!(now, cards[other].node, "the client follows the new master");
    assert!(second > first, "epoch {second} after {first}");
    check_all(&mut c, &s, &acked);
    drop(c);

    // A pair spec whose other card is dead serves through open_firmware
    // (what the CLI, hitlessd and the C library use); the same secret.
    let mut fw = open_firmware(&format!("pair:{spec}"), FOLLOW).unwrap();
    let (s2, fresh) = fw.open_app(APP, OpenFlags::all(), Some(&secret)).unwrap();
    assert!(fresh.is_none());
    check_all(&mut *fw, &s2, &acked);
    drop(fw);

    // The old master returns as slave; a switchover through the client;
    // the client follows it (the next request is refused, NotMaster, and
    // sent to the new master).
    procs[m] = Some(cards[m].start());
    let on = cards[other].node;
    cards[m].peer(TIMEOUT, |p| {
        p.role == 1 && p.master == Some(on) && p.epoch == second
    });
    let mut c = PairClient::open(pair, FOLLOW).unwrap();
    let (s, _) = c.open_app(APP, OpenFlags::all(), Some(&secret)).unwrap();
    wait_for(Duration::from_secs(30), "the returned card in sync", || {
        let p = c.status().ok()?.peer?;
        (p.in_sync == 1).then_some(())
    });
    store_all(&mut c, &s, 120..124, &mut acked);
    let done = c.switchover(None).unwrap();
    eprintln!("switchover: {done:?}");
    assert_eq!(done.to, mn);
    store_all(&mut c, &s, 124..130, &mut acked);
    let (back, third) = c.master().unwrap();
    assert_eq!(back, mn, "the client follows the switchover");
    assert!(third > second, "epoch {third} after {second}");
    // A log append refused with NotMaster never ran: it is sent to the
    // master. Switch back and append at once.
    let done = c.switchover(None).unwrap();
    assert_eq!(done.to, on);
    let offset = c.log_append(&s, 1, true, false, b"after the switchover");
    assert!(offset.is_ok(), "{:?}", offset.map_err(|e| e.chain()));
    let log = c.log_read(&s, true).unwrap();
    let ours: Vec<&[u8]> = log
        .records
        .iter()
        .filter(|(i, _)| i.object == 1)
        .map(|(_, d)| d.as_slice())
        .collect();
    assert_eq!(ours, [&b"after the switchover"[..]], "appended once");
    assert_eq!(c.master().map(|m| m.0), Some(on));
    check_all(&mut c, &s, &acked);
    eprintln!("{} sets acknowledged, all restored", acked.len());
    drop(c);

    // hitlessd --card pair:…: an application storing through the daemon
    // goes on across a kill -9 of the master (node `on` now).
    let daemon = Daemon::start(&dir, &format!("pair:{spec}"));
    let mut d = open_firmware(&format!("daemon:{}", daemon.socket.display()), FOLLOW).unwrap();
    let (ds, _) = d.open_app(APP + 1, OpenFlags::all(), None).unwrap();
    let mut through = Vec::new();
    for object in 0..8u32 {
        if object == 3 {
            let i = cards.iter().position(|k| k.node == on).unwrap();
            procs[i] = None;
        }
        let data = pattern(1000 + object, 4096 + object as usize);
        d.store(&ds, object, 0, 0, true, &data)
            .unwrap_or_else(|e| panic!("store {object} through hitlessd: {}", e.chain()));
        through.push((object, data));
    }
    check_all(&mut *d, &ds, &through);
    let st = d.status().unwrap().peer.unwrap();
    assert_eq!(
        (st.node, st.role),
        (mn, 0),
        "hitlessd follows the new master"
    );
    drop(d);
    drop(daemon);
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_pair_with_no_card_answering_is_a_clear_error_in_time() {
    let dir = std::env::temp_dir().join(format!("hitless-follow-none-{}", std::process::id()));
    let spec = format!(
        "pair:vfio-user:{0}/a.sock,vfio-user:{0}/b.sock",
        dir.display()
    );
    let t = Instant::now();
    match open_firmware(&spec, Duration::from_secs(1)) {
        Err(e @ Error::NoMaster { .. }) => {
            let text = e.to_string();
            assert!(text.contains("a.sock") && text.contains("b.sock"), "{text}");
        }
        Err(e) => panic!("expected NoMaster, got {}", e.chain()),
        Ok(_) => panic!("a master among no cards"),
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let e = open_firmware("pair:nonsense", Duration::from_secs(1))
        .err()
        .unwrap();
    assert!(e.to_string().contains("pair:SPEC,SPEC"), "{e}");
}
