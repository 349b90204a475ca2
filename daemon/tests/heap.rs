//! Persistent heaps through hitlessd: applications' `hitless_heap::Heap`s
//! over `CardStore<DaemonClient>`, on one simulated card behind one daemon;
//! one process at a time per heap; a process killed in the middle of a
//! checkpoint leaves the committed version byte for byte and the heap free
//! for the next opener. The killed process is this test binary started in
//! a role (`hitless_testkit`), so the role is not a test.

use hitless_driver::daemon::DaemonClient;
use hitless_driver::firmware::{Firmware, OpenFlags, Session};
use hitless_driver::Error;
use hitless_heap::{CardStore, Heap, HeapConfig, Tracking};
use hitless_proto::msg::Code;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{scratch, start_card, start_daemon, Killed};
use hitless_testkit::{named, role_command, test_main};

fn main() -> std::process::ExitCode {
    test_main(
        named![stager],
        named![
            two_applications_heaps_through_one_daemon_are_isolated,
            a_client_killed_mid_checkpoint_leaves_the_committed_version
        ],
    )
}

const PAGE: usize = 4096;
const PAGES: u64 = 48;

fn connect(socket: &Path) -> DaemonClient {
    DaemonClient::connect(socket, Duration::from_secs(30)).unwrap()
}

fn session(c: &mut DaemonClient, app: u32) -> Session {
    c.open_app(app, OpenFlags::all(), None).unwrap().0
}

/// The tracked mode this machine offers (the default where it can).
fn tracking() -> Tracking {
    if hitless_heap::uffd_wp_available() {
        Tracking::UffdWp
    } else {
        Tracking::Mprotect
    }
}

/// Application `app`'s heap 0 through the daemon (a connection of its own).
fn heap(socket: &Path, app: u32) -> Heap {
    let mut c = connect(socket);
    let s = session(&mut c, app);
    let store = CardStore::open(c, s, 0, PAGES, 3, true).unwrap();
    let cfg = HeapConfig {
        resident_pages: 8,
        tracking: tracking(),
        ..HeapConfig::default()
    };
    Heap::open(store, cfg).unwrap()
}

/// Write round `round`'s bytes of application `tag` into every third page
/// (through the mapped pointer: faults go through the daemon), in the
/// model too.
fn fill(h: &Heap, model: &mut [u8], tag: u8, round: u8) {
    for p in (round as usize % 3..PAGES as usize).step_by(3) {
        let at = p * PAGE + (round as usize * 131) % (PAGE - 32);
        let bytes = [tag ^ round ^ p as u8; 32];
        model[at..at + 32].copy_from_slice(&bytes);
        // SAFETY: within the heap (`at + 32` ≤ its length), which outlives
        // this call; the mode tracks direct writes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), h.as_ptr().add(at), 32) };
    }
}

fn whole(h: &Heap) -> Vec<u8> {
    let mut out = vec![0u8; PAGES as usize * PAGE];
    h.read(0, &mut out).unwrap();
    out
}

fn versions(h: &Heap) -> Vec<u64> {
    h.versions().unwrap().iter().map(|v| v.version).collect()
}

fn code(e: Error) -> Code {
    match e {
        Error::Firmware { code, .. } => code,
        other => panic!("not a refusal: {other}"),
    }
}

/// Open heap 0 once the daemon has freed it (a holder that just went away
/// is noticed when its connection's thread sees the socket close).
fn open_when_free(c: &mut DaemonClient, s: &Session, pages: u32) -> Vec<u64> {
    let t = Instant::now();
    loop {
        match c.heap_open(s, 0, pages, 3, true) {
            Ok(vs) => return vs.iter().map(|v| v.version).collect(),
            Err(e) if t.elapsed() < Duration::from_secs(10) => {
                assert_eq!(code(e), Code::Permission);
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the heap stayed held after its holder left: {e}"),
        }
    }
}

/// Two applications' heaps (the same heap id) through one hitlessd on one
/// card, checkpoints interleaved: each sees only its own bytes and
/// versions; a restart from an older version through the daemon; a second
/// process of an application cannot open a heap the first holds, and can
/// once the first is gone.
fn two_applications_heaps_through_one_daemon_are_isolated() {
    let dir = scratch("heaps");
    let card = start_card(&dir);
    let d = start_daemon(&dir, &card.socket, &[]);
    let (a, b) = (heap(&d.socket, 61), heap(&d.socket, 62));
    let n = PAGES as usize * PAGE;
    let (mut ma, mut mb) = (vec![0u8; n], vec![0u8; n]);
    let (mut models_a, mut models_b) = (Vec::new(), Vec::new());
    for round in 1..=4u8 {
        fill(&a, &mut ma, 0xA0, round);
        fill(&b, &mut mb, 0xB0, round);
        // Interleaved: one commits while the other has staged (evicted)
        // pages, in alternating order.
        let (va, vb) = if round % 2 == 0 {
            let vb = b.checkpoint(&[0xB0, round]).unwrap();
            (a.checkpoint(&[0xA0, round]).unwrap(), vb)
        } else {
            let va = a.checkpoint(&[0xA0, round]).unwrap();
            (va, b.checkpoint(&[0xB0, round]).unwrap())
        };
        assert_eq!((va.version, vb.version), (round as u64, round as u64));
        models_a.push(ma.clone());
        models_b.push(mb.clone());
    }
    assert_eq!(versions(&a), [2, 3, 4], "K = 3, a's own versions");
    assert_eq!(versions(&b), [2, 3, 4]);
    assert_eq!(whole(&a), models_a[3], "a sees its own bytes only");
    assert_eq!(whole(&b), models_b[3], "b sees its own bytes only");
    assert!(
        a.stats().unwrap().faults >= PAGES,
        "pages faulted in through the daemon"
    );

    // A restart from an older version, through the daemon.
    assert_eq!(a.restart_from(2).unwrap(), [0xA0, 2]);
    assert_eq!(whole(&a), models_a[1], "version 2's bytes");
    assert_eq!(whole(&b), models_b[3], "b untouched by a's restart");
    let mut m = models_a[1].clone();
    fill(&a, &mut m, 0xA0, 9);
    assert_eq!(a.checkpoint(b"after").unwrap().version, 5);

    // Another process of application 61 (another connection) cannot take
    // the heap a holds...
    let mut c = connect(&d.socket);
    let s = session(&mut c, 61);
    let e = c.heap_open(&s, 0, 0, 0, true).unwrap_err();
    assert_eq!(code(e), Code::Permission);
    // ...nor use it without opening it.
    assert_eq!(code(c.heap_versions(&s, 0).unwrap_err()), Code::NotFound);
    // Once a is gone (its connection closed), it can.
    drop(a);
    assert_eq!(open_when_free(&mut c, &s, 0), [3, 4, 5]);
    c.heap_close(&s, 0).unwrap();
    let a = heap(&d.socket, 61);
    assert_eq!(whole(&a), m, "version 5: version 2 plus what followed");
    assert_eq!(whole(&b), models_b[3]);
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The role `a_client_killed_mid_checkpoint_...` starts: stages pages of
/// application 63's heap through the daemon, says so, and waits to be
/// killed.
fn stager() {
    let socket = std::env::var("HITLESS_HEAP_CHILD_SOCKET")
        .expect("HITLESS_HEAP_CHILD_SOCKET names the daemon's socket");
    let mut c = connect(Path::new(&socket));
    let s = session(&mut c, 63);
    c.heap_open(&s, 0, PAGES as u32, 3, true).unwrap();
    let junk = vec![0xEEu8; PAGE];
    let pages: Vec<(u32, &[u8])> = (0..PAGES as u32).map(|p| (p, &junk[..])).collect();
    c.heap_stage(&s, 0, &pages).unwrap();
    println!("staged");
    std::thread::sleep(Duration::from_secs(60));
}

/// A client killed (SIGKILL) after staging pages, before its commit, and a
/// client whose connection just drops: the daemon aborts their staging, so
/// the next opener is not blocked, its commit does not carry their pages,
/// and the committed version reads back byte for byte.
fn a_client_killed_mid_checkpoint_leaves_the_committed_version() {
    let dir = scratch("heap-killed");
    let card = start_card(&dir);
    let d = start_daemon(&dir, &card.socket, &[]);
    let mut c = connect(&d.socket);
    let s = session(&mut c, 63);
    c.heap_open(&s, 0, PAGES as u32, 3, true).unwrap();
    let committed: Vec<Vec<u8>> = (0..PAGES as u8).map(|p| vec![p; PAGE]).collect();
    let pages: Vec<(u32, &[u8])> = committed
        .iter()
        .enumerate()
        .map(|(p, b)| (p as u32, &b[..]))
        .collect();
    c.heap_stage(&s, 0, &pages).unwrap();
    let v1 = c.heap_commit(&s, 0, b"one").unwrap();
    c.heap_close(&s, 0).unwrap();
    drop(c);

    let check = |c: &mut DaemonClient, s: &Session| {
        let got = c
            .heap_read(s, 0, &(0..PAGES as u32).collect::<Vec<_>>())
            .unwrap();
        for (p, g) in got.iter().enumerate() {
            assert_eq!(g.as_deref(), Some(&committed[p][..]), "page {p}");
        }
    };

    // A child process killed mid-checkpoint.
    let mut child = Killed(
        role_command("stager")
            .env("HITLESS_HEAP_CHILD_SOCKET", &d.socket)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("staged") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the child never staged its pages");
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    // A connection dropped mid-stage (no child: the socket just closes).
    {
        let mut c = connect(&d.socket);
        let s = session(&mut c, 63);
        assert_eq!(open_when_free(&mut c, &s, PAGES as u32), [v1.version]);
        let junk = vec![0xDDu8; PAGE];
        c.heap_stage(&s, 0, &[(1, &junk[..]), (7, &junk[..])])
            .unwrap();
    }

    // The next opener: not blocked (retried while the daemon notices the
    // closed connections), nothing staged, the committed bytes.
    let mut c = connect(&d.socket);
    let s = session(&mut c, 63);
    assert_eq!(open_when_free(&mut c, &s, PAGES as u32), [v1.version]);
    check(&mut c, &s);
    // A commit now carries none of the dead clients' pages.
    let v2 = c.heap_commit(&s, 0, b"two").unwrap();
    assert_eq!((v2.version, v2.pages), (2, 0), "nothing staged was left");
    check(&mut c, &s);
    assert_eq!(c.heap_checkout(&s, 0, 1).unwrap().1, b"one");
    let log = std::fs::read_to_string(dir.join("hitlessd.log")).unwrap_or_default();
    assert!(log.contains("staged pages aborted"), "{log}");
    drop(c);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
