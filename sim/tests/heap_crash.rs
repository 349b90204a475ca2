//! Crashes (kill -9) of a real process during heap checkpoints and heap
//! migrations (issue 20, item 7). The cards are served by this test
//! process (`InProcessCard`) and outlive the child: the test binary
//! re-executed with `HEAP_CRASH_CHILD` set, which reaches the cards over
//! their vfio-user sockets and is killed with SIGKILL after a seeded
//! random delay. After each kill a restart must find exactly one
//! committed version, byte for byte the one the child committed last or
//! was committing, and nothing staged left behind.
//!
//! Every version's content is a function of its number (`image`), which
//! the version's application state carries, so the checker knows the
//! expected bytes whatever the child got done.

use hitless_driver::backend::vfio_user::VfioUserIo;
use hitless_driver::firmware::{heap_migrate, Client, OpenFlags, Secret, Session};
use hitless_driver::CardIo;
use hitless_heap::{CardStore, Heap, HeapConfig, Tracking};
use hitless_proto::msg::Code;
use hitless_sim::inproc::InProcessCard;
use rand::{Rng, SeedableRng};
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::{client_at, code};

const PAGE: usize = 4096;
const APP: u32 = 12;
const HEAP: u32 = 3;
/// Pages of the heap (five leaves of the card's page tree).
const PAGES: u32 = 320;
/// Resident pages of the checkpointing child's heap: its writes evict
/// (stage) dirty pages before the checkpoint, so a kill leaves staged
/// pages behind on the card.
const RESIDENT: usize = 24;
const CONNECT: Duration = Duration::from_secs(20);
/// How long a child may take to say it started, or a round to end.
const CHILD: Duration = Duration::from_secs(60);
const PREFIX: &str = "heap-crash: ";

/// Version `v` rewrites page `p` (a fifth of the pages per version).
fn written_in(v: u32, p: u32) -> bool {
    (p * 7 + v * 3).is_multiple_of(5)
}

/// Page `p` as version `v` writes it.
fn content(v: u32, p: u32) -> Vec<u8> {
    (0..PAGE as u32)
        .map(|i| {
            (i.wrapping_mul(2_654_435_761) ^ p.wrapping_mul(40_503) ^ v.wrapping_mul(131)) as u8
        })
        .collect()
}

/// The heap's bytes at version `v` (version 0: never written, zeros).
fn image(v: u32) -> Vec<Vec<u8>> {
    (0..PAGES)
        .map(|p| match (1..=v).rev().find(|w| written_in(*w, p)) {
            Some(w) => content(w, p),
            None => vec![0; PAGE],
        })
        .collect()
}

fn state(v: u32) -> Vec<u8> {
    format!("version {v}").into_bytes()
}

fn parse_state(s: &[u8]) -> u32 {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.strip_prefix("version "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a version's state: {s:?}"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Secret {
    let mut out = Secret::default();
    for (i, o) in out.iter_mut().enumerate() {
        *o = s
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .expect("a secret in hex");
    }
    out
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// Open the application on the card at `socket` with its secret.
fn open(socket: &Path, secret: &Secret) -> (Client<VfioUserIo>, Session) {
    let mut c = client_at(socket, CONNECT);
    let (s, _) = c
        .open_app(APP, OpenFlags::all(), Some(secret))
        .expect("the application opens with its secret");
    (c, s)
}

/// Make the application on `card` (its first open: the secret).
fn first_open(card: &InProcessCard) -> Secret {
    let mut c = client_at(&card.socket, CONNECT);
    let (_, secret) = c.open_app(APP, OpenFlags::all(), None).unwrap();
    secret.expect("the first open hands out the secret")
}

// ---- the child ------------------------------------------------------------

/// A child process started by [`spawn`]; its stdout lines (ours only) come
/// through `lines`.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn next(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }
    /// Every line still to come: the reader ends at the pipe's end, once
    /// the child is gone.
    fn rest(&self) -> Vec<String> {
        let t = Instant::now();
        let mut out = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => out.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => return out,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    assert!(t.elapsed() < CHILD, "the child's output never ended")
                }
            }
        }
    }
    /// SIGKILL, reaped; the lines it printed before.
    fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.rest()
    }
    /// Wait for its exit (it must succeed); its remaining lines.
    fn finish(mut self) -> Vec<String> {
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("the child's status") {
                assert!(s.success(), "the child failed: {s:?}");
                break;
            }
            assert!(t.elapsed() < CHILD, "the child did not finish");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.rest()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that fails leaves no child running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run this test binary's `child` test with `vars` set.
fn spawn(child: &str, vars: &[(&str, String)]) -> Running {
    let exe = std::env::current_exe().expect("the test binary");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", child, "--nocapture", "--test-threads=1"])
        .env("HEAP_CRASH_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the child process");
    let out = child.stdout.take().expect("the child's stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            // libtest's "test NAME ... " may start the first line.
            if let Some(at) = l.find(PREFIX) {
                if tx.send(l[at + PREFIX.len()..].to_string()).is_err() {
                    break;
                }
            }
        }
    });
    Running { child, lines }
}

fn say(what: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{PREFIX}{what}");
    let _ = o.flush();
}

fn heap_over(socket: &Path, secret: &Secret, resident: usize) -> Heap {
    let (c, s) = open(socket, secret);
    let store = CardStore::open(c, s, HEAP, PAGES as u64, 3, true).expect("the heap opens");
    let cfg = HeapConfig {
        resident_pages: resident,
        tracking: Tracking::Explicit,
        ..HeapConfig::default()
    };
    Heap::open(store, cfg).expect("the heap maps")
}

/// The checkpointing child: from the newest version on, write and
/// checkpoint the next versions until killed (or `HEAP_CRASH_UNTIL`).
#[test]
fn checkpoint_child() {
    if std::env::var("HEAP_CRASH_CHILD").is_err() {
        return;
    }
    let socket = env("HEAP_CRASH_SOCKET");
    let secret = unhex(&env("HEAP_CRASH_SECRET"));
    let until: u32 = std::env::var("HEAP_CRASH_UNTIL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX);
    let heap = heap_over(Path::new(&socket), &secret, RESIDENT);
    let mut v = match heap.versions().unwrap().last() {
        Some(newest) => parse_state(&heap.restart_from(newest.version).unwrap()),
        None => 0,
    };
    say(&format!("go {v}"));
    while v < until {
        v += 1;
        for p in (0..PAGES).filter(|p| written_in(v, *p)) {
            heap.write(p as u64 * PAGE as u64, &content(v, p)).unwrap();
        }
        say(&format!("committing {v}"));
        heap.checkpoint(&state(v)).unwrap();
        say(&format!("committed {v}"));
    }
}

/// The migrating child: move the heap from one card to the other.
#[test]
fn migration_child() {
    if std::env::var("HEAP_CRASH_CHILD").is_err() {
        return;
    }
    let (mut src, ss) = open(
        Path::new(&env("HEAP_CRASH_SRC")),
        &unhex(&env("HEAP_CRASH_SRC_SECRET")),
    );
    let (mut dst, ds) = open(
        Path::new(&env("HEAP_CRASH_DST")),
        &unhex(&env("HEAP_CRASH_DST_SECRET")),
    );
    src.heap_open(&ss, HEAP, PAGES, 3, true).unwrap();
    dst.heap_open(&ds, HEAP, PAGES, 3, true).unwrap();
    say("go");
    if std::env::var("HEAP_CRASH_COPY_ONLY").is_ok() {
        // The crash between the two commits, made sure of: the
        // destination's commit done, the source's delete never sent.
        heap_migrate(&mut src, &ss, &mut dst, &ds, HEAP, None, false).unwrap();
        say("copied");
        std::thread::sleep(CHILD);
        return;
    }
    let m = heap_migrate(&mut src, &ss, &mut dst, &ds, HEAP, None, true).unwrap();
    say(&format!("done {} {}", m.dst_version, m.pages));
}

fn parse_line(l: &str, what: &str) -> Option<u32> {
    l.strip_prefix(what)
        .and_then(|r| r.trim().split(' ').next())
        .and_then(|n| n.parse().ok())
}

// ---- kill -9 during checkpoints ---------------------------------------------

/// The heap on the card at `socket` as a restart sees it: read whole from
/// a fresh open (any page left staged would show), then its newest
/// version's number from its state. A checkpoint of the next version
/// then works.
fn restart_and_check(socket: &Path, secret: &Secret, round: u32) -> u32 {
    let heap = heap_over(socket, secret, PAGES as usize);
    let vs = heap.versions().unwrap();
    assert!(!vs.is_empty(), "round {round}: no committed version");
    let mut whole = vec![0u8; PAGES as usize * PAGE];
    heap.read(0, &mut whole).unwrap();
    let newest = vs.last().unwrap().version;
    let v = parse_state(&heap.restart_from(newest).unwrap());
    for (p, want) in image(v).iter().enumerate() {
        assert!(
            whole[p * PAGE..(p + 1) * PAGE] == want[..],
            "round {round}: page {p} is not version {v}'s"
        );
    }
    v
}

#[test]
fn kill_9_during_heap_checkpoints_leaves_one_committed_version() {
    let dir = common::temp("heap-crash-ckpt");
    let card = InProcessCard::start(&dir).unwrap();
    let secret = first_open(&card);
    let vars = || {
        vec![
            ("HEAP_CRASH_SOCKET", card.socket.display().to_string()),
            ("HEAP_CRASH_SECRET", hex(&secret)),
        ]
    };
    // Two versions unkilled: how long one checkpoint takes.
    let mut v1 = vars();
    v1.push(("HEAP_CRASH_UNTIL", "2".into()));
    let child = spawn("checkpoint_child", &v1);
    child.next(CHILD).expect("the child started");
    let t = Instant::now();
    let lines = child.finish();
    let span = t.elapsed() / 2;
    assert!(lines.iter().any(|l| l == "committed 2"), "{lines:?}");
    assert_eq!(restart_and_check(&card.socket, &secret, 0), 2);
    eprintln!("one checkpoint of {} pages: {span:?}", PAGES / 5);

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x9C0D);
    let (mut was_committing, mut had_committed) = (0, 0);
    let mut last = 2;
    for round in 1..=8u32 {
        let child = spawn("checkpoint_child", &vars());
        let go = child.next(CHILD).expect("the child started");
        assert_eq!(parse_line(&go, "go"), Some(last), "round {round}: {go}");
        // Anywhere in the next three checkpoints (writes, evictions that
        // stage, the stage and commit of the checkpoint).
        let at = rng.gen_range(Duration::ZERO..3 * span);
        std::thread::sleep(at);
        let lines = child.kill();
        let committed = lines
            .iter()
            .filter_map(|l| parse_line(l, "committed"))
            .max()
            .unwrap_or(last);
        let committing = lines
            .iter()
            .filter_map(|l| parse_line(l, "committing"))
            .max()
            .unwrap_or(last);
        let got = restart_and_check(&card.socket, &secret, round);
        eprintln!(
            "round {round}: killed after {at:?}: committed {committed}, committing \
             {committing}, restarted at {got}"
        );
        assert!(
            got == committed || (got == committing && committing == committed + 1),
            "round {round}: version {got} after the child committed {committed} \
             and was committing {committing}"
        );
        if got > committed {
            was_committing += 1;
        } else {
            had_committed += 1;
        }
        last = got;
    }
    eprintln!(
        "kills: {had_committed} restarted at the last reported commit, \
         {was_committing} at the commit in flight"
    );
    assert!(
        last > 2,
        "the killed children committed nothing in 8 rounds"
    );
}

// ---- kill -9 during migrations ------------------------------------------------

/// The application on one card, opened by the test between children.
struct Side<'a> {
    card: &'a InProcessCard,
    secret: Secret,
}

impl Side<'_> {
    fn open(&self) -> (Client<VfioUserIo>, Session) {
        open(&self.card.socket, &self.secret)
    }
    fn vars(&self, which: &str) -> [(String, String); 2] {
        [
            (
                format!("HEAP_CRASH_{which}"),
                self.card.socket.display().to_string(),
            ),
            (format!("HEAP_CRASH_{which}_SECRET"), hex(&self.secret)),
        ]
    }
}

/// The heap's newest version on this card (reading every page first, from
/// a fresh open: nothing staged may show), or `None` with every page
/// absent when the card has no version of it.
fn holds<T: CardIo>(c: &mut Client<T>, s: &Session, what: &str) -> Option<(u64, u32)> {
    let vs = c.heap_open(s, HEAP, PAGES, 3, true).unwrap();
    let all: Vec<u32> = (0..PAGES).collect();
    let got = c.heap_read(s, HEAP, &all).unwrap();
    let Some(newest) = vs.last().map(|v| v.version) else {
        for (p, g) in got.iter().enumerate() {
            assert!(g.is_none(), "{what}: no version, yet page {p} has bytes");
        }
        c.heap_close(s, HEAP).unwrap();
        return None;
    };
    let (_, st) = c.heap_checkout(s, HEAP, newest).unwrap();
    let v = parse_state(&st);
    let zeros = vec![0u8; PAGE];
    for (p, (g, want)) in got.iter().zip(image(v)).enumerate() {
        let g = g.as_deref().unwrap_or(&zeros);
        assert!(g == &want[..], "{what}: page {p} is not version {v}'s");
    }
    Some((newest, v))
}

/// Commit version `v` on a card holding `v - 1`: its pages and state.
fn commit_next<T: CardIo>(c: &mut Client<T>, s: &Session, v: u32) {
    let data: Vec<(u32, Vec<u8>)> = (0..PAGES)
        .filter(|p| written_in(v, *p))
        .map(|p| (p, content(v, p)))
        .collect();
    let refs: Vec<(u32, &[u8])> = data.iter().map(|(p, d)| (*p, &d[..])).collect();
    c.heap_stage(s, HEAP, &refs).unwrap();
    c.heap_commit(s, HEAP, &state(v)).unwrap();
}

#[test]
fn kill_9_during_heap_migrations_commits_on_both_or_neither() {
    let (da, db) = (
        common::temp("heap-crash-mig-a"),
        common::temp("heap-crash-mig-b"),
    );
    let (a, b) = (
        InProcessCard::start(&da).unwrap(),
        InProcessCard::start(&db).unwrap(),
    );
    let sides = [
        Side {
            card: &a,
            secret: first_open(&a),
        },
        Side {
            card: &b,
            secret: first_open(&b),
        },
    ];
    // Version 1 on card A.
    {
        let (mut c, s) = sides[0].open();
        c.heap_open(&s, HEAP, PAGES, 3, true).unwrap();
        commit_next(&mut c, &s, 1);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x3161);
    let mut holder = 0usize;
    let mut v = 1u32;
    let mut span = None;
    let mut outcomes = [0u32; 3];
    for round in 0..=8u32 {
        // The application goes on: the next version where the heap is.
        v += 1;
        {
            let (mut c, s) = sides[holder].open();
            assert_eq!(
                holds(&mut c, &s, "the holder").map(|x| x.1),
                Some(v - 1),
                "round {round}"
            );
            commit_next(&mut c, &s, v);
        }
        let (from, to) = (&sides[holder], &sides[1 - holder]);
        let mut vars: Vec<(String, String)> = from.vars("SRC").into();
        vars.extend(to.vars("DST"));
        // Every fourth round the child dies right after the destination's
        // commit (random kills seldom land in that one request's window).
        let between = round % 4 == 3;
        if between {
            vars.push(("HEAP_CRASH_COPY_ONLY".into(), "1".into()));
        }
        let refs: Vec<(&str, String)> = vars.iter().map(|(k, x)| (k.as_str(), x.clone())).collect();
        let child = spawn("migration_child", &refs);
        assert_eq!(child.next(CHILD).as_deref(), Some("go"), "round {round}");
        let t = Instant::now();
        let measured = span;
        let lines = match measured {
            _ if between => {
                assert_eq!(
                    child.next(CHILD).as_deref(),
                    Some("copied"),
                    "round {round}"
                );
                child.kill()
            }
            // Round 0 runs to the end: how long a migration takes.
            None => {
                let l = child.finish();
                span = Some(t.elapsed());
                eprintln!("one migration of {PAGES} pages: {:?}", t.elapsed());
                l
            }
            Some(span) => {
                std::thread::sleep(rng.gen_range(Duration::ZERO..span + span / 4));
                child.kill()
            }
        };
        let done = lines.iter().any(|l| l.starts_with("done"));
        // What the kill left: on the destination the new version or none
        // (never a part of it, never staged pages), on the source the
        // heap as it was or (after the destination's commit) deleted.
        let (mut fc, fs) = from.open();
        let (mut tc, ts) = to.open();
        let src = holds(&mut fc, &fs, "the source");
        let dst = holds(&mut tc, &ts, "the destination");
        let outcome = match (src, dst) {
            (Some((_, sv)), None) => {
                assert_eq!(sv, v, "round {round}: the source changed");
                assert!(!done, "round {round}: a migration reported done is lost");
                tc.heap_open(&ts, HEAP, PAGES, 3, true).unwrap();
                heap_migrate(&mut fc, &fs, &mut tc, &ts, HEAP, None, true).unwrap();
                0
            }
            (Some((sn, sv)), Some((dn, dv))) => {
                // Between the two commits: both hold it, identical; the
                // rerun finds nothing changed and deletes the source.
                assert_eq!(
                    (sv, dv),
                    (v, v),
                    "round {round}: both hold different versions"
                );
                let m =
                    heap_migrate(&mut fc, &fs, &mut tc, &ts, HEAP, Some((sn, dn)), true).unwrap();
                assert_eq!(m.pages, 0, "round {round}: the rerun sent pages");
                1
            }
            (None, Some((_, dv))) => {
                assert_eq!(
                    dv, v,
                    "round {round}: the destination holds another version"
                );
                2
            }
            (None, None) => panic!("round {round}: the heap is on neither card"),
        };
        outcomes[outcome] += 1;
        eprintln!(
            "round {round}: {}",
            ["committed on neither", "committed on both", "moved"][outcome]
        );
        // After the rerun: moved, the source's heap gone.
        assert_eq!(holds(&mut tc, &ts, "the destination").map(|x| x.1), Some(v));
        assert_eq!(holds(&mut fc, &fs, "the source"), None, "round {round}");
        assert_eq!(
            code(fc.heap_versions(&fs, HEAP).unwrap_err()),
            Code::NotFound
        );
        holder = 1 - holder;
    }
    eprintln!(
        "migrations killed: {} committed on neither, {} on both, {} moved",
        outcomes[0], outcomes[1], outcomes[2]
    );
    assert!(
        outcomes[0] > 0,
        "no kill came before the destination's commit"
    );
    assert!(outcomes[1] > 0, "no round left the heap on both cards");
}
