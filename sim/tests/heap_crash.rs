//! Crashes during heap checkpoints and heap migrations (issue 20, item
//! 7): kill -9 of a real process, and power cuts of a migration's source
//! card. The cards are served by this test process (`InProcessCard`) and
//! outlive the child: this test binary started in a role (`checkpointer`
//! or `migrator`, see `common::test_main`), which reaches the cards over
//! their vfio-user sockets and is killed with SIGKILL, after a seeded
//! random delay or at a chosen step of a checkpoint (where it stopped
//! itself). After each crash a restart must find exactly one committed
//! version, byte for byte the one the child committed last or was
//! committing, and nothing staged left behind.
//!
//! Every version's content is a function of its number (`image`), which
//! the version's application state carries, so the checker knows the
//! expected bytes whatever the child got done.

use hitless_driver::backend::vfio_user::VfioUserIo;
use hitless_driver::firmware::{heap_migrate, Client, OpenFlags, Secret, Session};
use hitless_driver::CardIo;
use hitless_heap::{CardStore, Heap, HeapConfig, PageStore, StoreError, Tracking, VersionInfo};
use hitless_proto::msg::Code;
use hitless_sim::inproc::InProcessCard;
use hitless_sim::service::Control;
use rand::{Rng, SeedableRng};
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

mod common;
use common::{client_at, code, named, role_command, test_main};

fn main() -> ExitCode {
    test_main(
        named![checkpointer, migrator],
        named![
            kill_9_during_heap_checkpoints_leaves_one_committed_version,
            kill_9_at_each_step_of_a_heap_checkpoint_leaves_the_version_that_step_implies,
            kill_9_during_full_heap_migrations_commits_on_both_or_neither,
            kill_9_during_shared_base_heap_migrations_commits_on_both_or_neither,
            source_power_cuts_during_heap_migrations_commit_on_both_or_neither,
        ],
    )
}

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
    /// Wait until the child has stopped itself (SIGSTOP: state `T` in
    /// /proc), then SIGKILL it there.
    fn kill_stopped(self) -> Vec<String> {
        let stat = format!("/proc/{}/stat", self.child.id());
        let t = Instant::now();
        loop {
            // The state follows the command's closing parenthesis.
            let state = std::fs::read_to_string(&stat)
                .ok()
                .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()));
            if state.as_deref().is_some_and(|r| r.starts_with('T')) {
                break;
            }
            assert!(t.elapsed() < CHILD, "the child never stopped: {state:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
        self.kill()
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

/// Start this test binary in `role` with `vars` set.
fn spawn(role: &str, vars: &[(String, String)]) -> Running {
    let mut cmd = role_command(role);
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the child process");
    let out = child.stdout.take().expect("the child's stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(l) = l.strip_prefix(PREFIX) {
                if tx.send(l.to_string()).is_err() {
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

/// A `Heap` over the card at `socket`, its `CardStore` wrapped by `wrap`.
fn heap_over<S: PageStore + 'static>(
    socket: &Path,
    secret: &Secret,
    resident: usize,
    wrap: impl FnOnce(CardStore<Client<VfioUserIo>>) -> S,
) -> Heap {
    let (c, s) = open(socket, secret);
    let store = CardStore::open(c, s, HEAP, PAGES as u64, 3, true).expect("the heap opens");
    let cfg = HeapConfig {
        resident_pages: resident,
        tracking: Tracking::Explicit,
        ..HeapConfig::default()
    };
    Heap::open(wrap(store), cfg).expect("the heap maps")
}

/// A step of a checkpoint where the checkpointing child stops itself
/// (`HEAP_CRASH_STOP`), for the parent to kill it exactly there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Before the checkpoint stages its dirty pages (evictions during the
    /// writes staged others already).
    Stage,
    /// Every page staged; the commit request not sent.
    Commit,
    /// The commit answered; the application not yet told.
    Committed,
    /// No stop: the child says it sends the commit request and the parent
    /// kills it on that line, while the card works on the request.
    InFlight,
}

impl Step {
    const ALL: [Step; 4] = [Step::Stage, Step::Commit, Step::Committed, Step::InFlight];

    fn name(self) -> &'static str {
        match self {
            Step::Stage => "stage",
            Step::Commit => "commit",
            Step::Committed => "committed",
            Step::InFlight => "in-flight",
        }
    }

    fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// The checkpointing child's store: the card's, with a stop at `step` of
/// the checkpoint once `armed`.
struct Stepping {
    inner: CardStore<Client<VfioUserIo>>,
    step: Option<Step>,
    /// Set when the checkpoint starts: evictions before it stage too.
    armed: Arc<AtomicBool>,
}

impl Stepping {
    fn at(&self, step: Step) -> bool {
        self.step == Some(step) && self.armed.load(Ordering::SeqCst)
    }
}

/// Say where, then stop (SIGSTOP): the parent kills the stopped process.
fn halt(step: Step) {
    say(&format!("stopped {}", step.name()));
    signal_hook::low_level::raise(signal_hook::consts::SIGSTOP).expect("SIGSTOP");
}

impl PageStore for Stepping {
    fn page_size(&self) -> usize {
        self.inner.page_size()
    }
    fn heap_pages(&self) -> u64 {
        self.inner.heap_pages()
    }
    fn read_page(&mut self, page: u64, buf: &mut [u8]) -> Result<bool, StoreError> {
        self.inner.read_page(page, buf)
    }
    fn stage_pages(&mut self, pages: &[(u64, &[u8])]) -> Result<(), StoreError> {
        if self.at(Step::Stage) {
            halt(Step::Stage);
        }
        self.inner.stage_pages(pages)
    }
    fn commit(&mut self, app_state: &[u8]) -> Result<VersionInfo, StoreError> {
        if self.at(Step::Commit) {
            halt(Step::Commit);
        }
        if self.at(Step::InFlight) {
            say("sending commit");
        }
        let t = Instant::now();
        let r = self.inner.commit(app_state);
        say(&format!("commit took {}", t.elapsed().as_micros()));
        if r.is_ok() && self.at(Step::Committed) {
            halt(Step::Committed);
        }
        r
    }
    fn abort(&mut self) -> Result<(), StoreError> {
        self.inner.abort()
    }
    fn versions(&mut self) -> Result<Vec<VersionInfo>, StoreError> {
        self.inner.versions()
    }
    fn checkout(&mut self, version: u64) -> Result<Vec<u8>, StoreError> {
        self.inner.checkout(version)
    }
}

/// The checkpointing child: from the newest version on, write and
/// checkpoint the next versions until killed (or `HEAP_CRASH_UNTIL`),
/// stopping at `HEAP_CRASH_STOP` in the first checkpoint if set.
fn checkpointer() {
    let socket = env("HEAP_CRASH_CARD");
    let secret = unhex(&env("HEAP_CRASH_CARD_SECRET"));
    let until: u32 = std::env::var("HEAP_CRASH_UNTIL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX);
    let step = std::env::var("HEAP_CRASH_STOP")
        .ok()
        .map(|s| Step::parse(&s).unwrap_or_else(|| panic!("no step {s:?}")));
    let armed = Arc::new(AtomicBool::new(false));
    let heap = heap_over(Path::new(&socket), &secret, RESIDENT, |inner| Stepping {
        inner,
        step,
        armed: armed.clone(),
    });
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
        armed.store(step.is_some(), Ordering::SeqCst);
        heap.checkpoint(&state(v)).unwrap();
        say(&format!("committed {v}"));
    }
}

/// The migrating child: move the heap from one card to the other, from
/// the version pair `HEAP_CRASH_SINCE` ("SRC DST") if set, else all of it.
fn migrator() {
    let (mut src, ss) = open(
        Path::new(&env("HEAP_CRASH_SRC")),
        &unhex(&env("HEAP_CRASH_SRC_SECRET")),
    );
    let (mut dst, ds) = open(
        Path::new(&env("HEAP_CRASH_DST")),
        &unhex(&env("HEAP_CRASH_DST_SECRET")),
    );
    let since = std::env::var("HEAP_CRASH_SINCE").ok().map(|s| {
        let mut n = s.split(' ').map(|x| x.parse::<u64>().expect("a version"));
        (n.next().expect("SRC"), n.next().expect("DST"))
    });
    src.heap_open(&ss, HEAP, PAGES, 3, true).unwrap();
    dst.heap_open(&ds, HEAP, PAGES, 3, true).unwrap();
    say("go");
    if std::env::var("HEAP_CRASH_COPY_ONLY").is_ok() {
        // The crash between the two commits, made sure of: the
        // destination's commit done, the source's delete never sent.
        heap_migrate(&mut src, &ss, &mut dst, &ds, HEAP, since, false).unwrap();
        say("copied");
        std::thread::sleep(CHILD);
        return;
    }
    let m = heap_migrate(&mut src, &ss, &mut dst, &ds, HEAP, since, true).unwrap();
    say(&format!("done {} {}", m.dst_version, m.pages));
}

fn parse_line(l: &str, what: &str) -> Option<u32> {
    l.strip_prefix(what)
        .and_then(|r| r.trim().split(' ').next())
        .and_then(|n| n.parse().ok())
}

// ---- kill -9 during checkpoints ---------------------------------------------

/// The newest versions a killed checkpointing child said it committed and
/// was committing (`last`, the newest before it ran, where it said none).
fn reported(lines: &[String], last: u32) -> (u32, u32) {
    let newest = |what| {
        lines
            .iter()
            .filter_map(|l| parse_line(l, what))
            .max()
            .unwrap_or(last)
    };
    (newest("committed"), newest("committing"))
}

/// The heap on the card at `socket` as a restart sees it: read whole from
/// a fresh open (any page left staged would show), then its newest
/// version's number from its state. A checkpoint of the next version
/// then works.
fn restart_and_check(socket: &Path, secret: &Secret, round: u32) -> u32 {
    let heap = heap_over(socket, secret, PAGES as usize, |s| s);
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

/// The application on one card (served by the test), opened by the test
/// between children.
struct AppCard {
    card: InProcessCard,
    secret: Secret,
}

impl AppCard {
    fn start(name: &str) -> AppCard {
        let card = InProcessCard::start(&common::temp(name)).unwrap();
        let secret = first_open(&card);
        AppCard { card, secret }
    }
    fn open(&self) -> (Client<VfioUserIo>, Session) {
        open(&self.card.socket, &self.secret)
    }
    /// A child's variables for this card: `HEAP_CRASH_{which}` (the
    /// socket) and `HEAP_CRASH_{which}_SECRET`.
    fn vars(&self, which: &str) -> Vec<(String, String)> {
        vec![
            (
                format!("HEAP_CRASH_{which}"),
                self.card.socket.display().to_string(),
            ),
            (format!("HEAP_CRASH_{which}_SECRET"), hex(&self.secret)),
        ]
    }
    /// A child checkpoints versions up to `until`, unkilled; how long one
    /// checkpoint took, and the longest commit request.
    fn checkpoint_until(&self, until: u32) -> (Duration, Duration) {
        let mut vars = self.vars("CARD");
        vars.push(("HEAP_CRASH_UNTIL".into(), until.to_string()));
        let child = spawn("checkpointer", &vars);
        let go = child.next(CHILD).expect("the child started");
        let from = parse_line(&go, "go").expect("go VERSION");
        let t = Instant::now();
        let lines = child.finish();
        let span = t.elapsed() / (until - from).max(1);
        assert!(
            lines.iter().any(|l| *l == format!("committed {until}")),
            "{lines:?}"
        );
        assert_eq!(self.restart(0), until);
        let commit = lines
            .iter()
            .filter_map(|l| l.strip_prefix("commit took ")?.parse().ok())
            .max()
            .expect("the child's commits");
        (span, Duration::from_micros(commit))
    }
    fn restart(&self, round: u32) -> u32 {
        restart_and_check(&self.card.socket, &self.secret, round)
    }
}

fn kill_9_during_heap_checkpoints_leaves_one_committed_version() {
    let card = AppCard::start("heap-crash-ckpt");
    // Two versions unkilled: how long one checkpoint takes.
    let (span, _) = card.checkpoint_until(2);
    eprintln!("one checkpoint of {} pages: {span:?}", PAGES / 5);

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x9C0D);
    let (mut was_committing, mut had_committed) = (0, 0);
    let mut last = 2;
    for round in 1..=8u32 {
        let child = spawn("checkpointer", &card.vars("CARD"));
        let go = child.next(CHILD).expect("the child started");
        assert_eq!(parse_line(&go, "go"), Some(last), "round {round}: {go}");
        // Anywhere in the next three checkpoints (writes, evictions that
        // stage, the stage and commit of the checkpoint).
        let at = rng.gen_range(Duration::ZERO..3 * span);
        std::thread::sleep(at);
        let lines = child.kill();
        let (committed, committing) = reported(&lines, last);
        let got = card.restart(round);
        eprintln!(
            "random kill, round {round}: killed after {at:?}: committed {committed}, committing \
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

/// The kill made sure to land inside a checkpoint: the child stops itself
/// at each step in turn (three times) and is killed there. Before the
/// commit is sent the restart finds the previous version; once it was
/// answered, the new one; with the request in flight (killed at a random
/// time within the longest commit measured) either, never a mix.
fn kill_9_at_each_step_of_a_heap_checkpoint_leaves_the_version_that_step_implies() {
    let card = AppCard::start("heap-crash-steps");
    let (_, commit) = card.checkpoint_until(2);
    eprintln!("one commit request: {commit:?}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x57E9);
    let mut last = 2;
    // Restarts at the previous version and at the new one, by step.
    let mut seen = [[0u32; 2]; Step::ALL.len()];
    for (round, (i, step)) in (1u32..).zip(Step::ALL.into_iter().enumerate().cycle().take(12)) {
        let mut vars = card.vars("CARD");
        vars.push(("HEAP_CRASH_STOP".into(), step.name().into()));
        let child = spawn("checkpointer", &vars);
        let go = child.next(CHILD).expect("the child started");
        assert_eq!(parse_line(&go, "go"), Some(last), "round {round}: {go}");
        let v = last + 1;
        let said = child.next(CHILD);
        assert_eq!(said, Some(format!("committing {v}")), "round {round}");
        // Where it is (the commit's timing line aside).
        let at = std::iter::from_fn(|| child.next(CHILD)).find(|l| !l.starts_with("commit took"));
        let lines = if step == Step::InFlight {
            assert_eq!(at.as_deref(), Some("sending commit"), "round {round}");
            std::thread::sleep(rng.gen_range(Duration::ZERO..commit));
            child.kill()
        } else {
            assert_eq!(
                at,
                Some(format!("stopped {}", step.name())),
                "round {round}"
            );
            child.kill_stopped()
        };
        let lines: Vec<String> = said.into_iter().chain(lines).collect();
        let (committed, committing) = reported(&lines, last);
        if step != Step::InFlight {
            assert_eq!(
                (committed, committing),
                (last, v),
                "round {round}: the child went on past {}: {lines:?}",
                step.name()
            );
        }
        let got = card.restart(round);
        let allowed: &[u32] = match step {
            Step::Stage | Step::Commit => &[last],
            Step::Committed => &[v],
            // The kill may come after the child was told (the delay is
            // random): then that version.
            Step::InFlight if committing > committed => &[committed, committing],
            Step::InFlight => &[committed],
        };
        assert!(
            allowed.contains(&got),
            "round {round}: killed at {}, restarted at version {got}, not {allowed:?}",
            step.name()
        );
        eprintln!(
            "step kill, round {round}: killed at {} of version {v}'s checkpoint (it had said \
             committed {committed}): restarted at {got}",
            step.name()
        );
        seen[i][usize::from(got > last)] += 1;
        last = got;
    }
    let report: Vec<String> = Step::ALL
        .iter()
        .zip(seen)
        .map(|(s, [old, new])| format!("{}: {old} previous, {new} new", s.name()))
        .collect();
    eprintln!("kills by step: {}", report.join("; "));
}

// ---- migrations: kill -9 and power cuts -----------------------------------------

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

/// How a migration round starts: the destination without the heap (every
/// written page crosses) or holding the version before the one moved (a
/// shared base: only the pages the new version changed cross).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Base {
    None,
    Shared,
}

impl Base {
    fn name(self) -> &'static str {
        match self {
            Base::None => "full",
            Base::Shared => "shared-base",
        }
    }
}

/// What a crashed migration left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The destination as before (no version, or the base), the source as
    /// it was.
    Neither,
    /// The new version on both cards, identical (the source's delete not
    /// done).
    Both,
    /// The new version on the destination only.
    Moved,
}

/// How many of `outcomes` are neither, both, moved; printed after `what`.
fn tally(what: &str, outcomes: &[Outcome]) -> [usize; 3] {
    let n = [Outcome::Neither, Outcome::Both, Outcome::Moved]
        .map(|o| outcomes.iter().filter(|x| **x == o).count());
    eprintln!(
        "{what}: {} committed on neither, {} on both, {} moved",
        n[0], n[1], n[2]
    );
    n
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Neither => "committed on neither",
            Outcome::Both => "committed on both",
            Outcome::Moved => "moved",
        }
    }
}

/// Two cards, version 1 of the heap on the first (`sides[0]`); each round
/// commits the next version where the heap is and moves it to the other
/// card, with the destination made to hold the previous version first for
/// `Base::Shared`.
struct Pair {
    sides: [AppCard; 2],
    holder: usize,
    /// The newest version.
    v: u32,
}

impl Pair {
    fn start(name: &str) -> Pair {
        let sides = [
            AppCard::start(&format!("{name}-a")),
            AppCard::start(&format!("{name}-b")),
        ];
        let (mut c, s) = sides[0].open();
        c.heap_open(&s, HEAP, PAGES, 3, true).unwrap();
        commit_next(&mut c, &s, 1);
        Pair {
            sides,
            holder: 0,
            v: 1,
        }
    }

    /// (source, destination) of the next move.
    fn ends(&self) -> (&AppCard, &AppCard) {
        (&self.sides[self.holder], &self.sides[1 - self.holder])
    }

    /// The next version on the holder, ready to move: for `Base::Shared`
    /// the destination first gets the holder's newest (a copy), and the
    /// pair of version numbers the two cards then share is returned.
    fn next(&mut self, base: Base, round: u32) -> Option<(u64, u64)> {
        self.v += 1;
        let v = self.v;
        let (from, to) = self.ends();
        let (mut fc, fs) = from.open();
        assert_eq!(
            holds(&mut fc, &fs, "the holder").map(|x| x.1),
            Some(v - 1),
            "round {round}"
        );
        let since = (base == Base::Shared).then(|| {
            let (mut tc, ts) = to.open();
            tc.heap_open(&ts, HEAP, PAGES, 3, true).unwrap();
            let m = heap_migrate(&mut fc, &fs, &mut tc, &ts, HEAP, None, false).unwrap();
            (m.src_version, m.dst_version)
        });
        commit_next(&mut fc, &fs, v);
        since
    }

    /// Check what a crash of the move from `since` left (`done`: the
    /// migration reported success), finish the move by running it again
    /// where needed, and check the heap is then on the destination only.
    fn settle(&mut self, since: Option<(u64, u64)>, done: bool, round: u32) -> Outcome {
        let v = self.v;
        let (from, to) = self.ends();
        let (mut fc, fs) = from.open();
        let (mut tc, ts) = to.open();
        let src = holds(&mut fc, &fs, "the source");
        let dst = holds(&mut tc, &ts, "the destination");
        // What the destination held before the move.
        let before = since.map(|_| v - 1);
        let outcome = match (src, dst) {
            (Some((_, sv)), d) if d.map(|x| x.1) == before => {
                assert_eq!(sv, v, "round {round}: the source changed");
                assert!(!done, "round {round}: a migration reported done is lost");
                if since.is_none() {
                    tc.heap_open(&ts, HEAP, PAGES, 3, true).unwrap();
                }
                let m = heap_migrate(&mut fc, &fs, &mut tc, &ts, HEAP, since, true).unwrap();
                // Incremental: only the pages changed since the base cross.
                let changed = (0..PAGES)
                    .filter(|p| match since {
                        Some(_) => written_in(v, *p),
                        None => (1..=v).any(|w| written_in(w, *p)),
                    })
                    .count();
                assert_eq!(m.pages, changed, "round {round}: pages sent by the rerun");
                Outcome::Neither
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
                Outcome::Both
            }
            (None, Some((_, dv))) => {
                assert_eq!(
                    dv, v,
                    "round {round}: the destination holds another version"
                );
                Outcome::Moved
            }
            (src, dst) => panic!(
                "round {round}: version {v} moved from {before:?}: the source holds \
                 {src:?}, the destination {dst:?}"
            ),
        };
        // After the rerun: moved, the source's heap gone.
        assert_eq!(holds(&mut tc, &ts, "the destination").map(|x| x.1), Some(v));
        assert_eq!(holds(&mut fc, &fs, "the source"), None, "round {round}");
        assert_eq!(
            code(fc.heap_versions(&fs, HEAP).unwrap_err()),
            Code::NotFound
        );
        self.holder = 1 - self.holder;
        outcome
    }
}

/// Moves back and forth between two cards, the migrating child killed
/// at a random point of each (the first runs to the end: how long a move
/// takes), every fourth right after the destination's commit.
fn migrations_killed(base: Base, name: &str, seed: u64) {
    let mut pair = Pair::start(name);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut span = None;
    let mut outcomes = Vec::new();
    for round in 0..=8u32 {
        let since = pair.next(base, round);
        let (from, to) = pair.ends();
        let mut vars = from.vars("SRC");
        vars.extend(to.vars("DST"));
        if let Some((s, d)) = since {
            vars.push(("HEAP_CRASH_SINCE".into(), format!("{s} {d}")));
        }
        // Every fourth round the child dies right after the destination's
        // commit (random kills seldom land in that one request's window).
        let between = round % 4 == 3;
        if between {
            vars.push(("HEAP_CRASH_COPY_ONLY".into(), "1".into()));
        }
        let child = spawn("migrator", &vars);
        assert_eq!(child.next(CHILD).as_deref(), Some("go"), "round {round}");
        let t = Instant::now();
        let lines = match span {
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
                eprintln!("one {} migration: {:?}", base.name(), t.elapsed());
                l
            }
            Some(span) => {
                std::thread::sleep(rng.gen_range(Duration::ZERO..span + span / 4));
                child.kill()
            }
        };
        let done = lines.iter().any(|l| l.starts_with("done"));
        let outcome = pair.settle(since, done, round);
        eprintln!("{} move, round {round}: {}", base.name(), outcome.name());
        outcomes.push(outcome);
    }
    let [neither, both, _] = tally(&format!("{} migrations killed", base.name()), &outcomes);
    assert!(neither > 0, "no kill came before the destination's commit");
    assert!(both > 0, "no round left the heap on both cards");
}

fn kill_9_during_full_heap_migrations_commits_on_both_or_neither() {
    migrations_killed(Base::None, "heap-crash-mig", 0x3161);
}

/// The destination already holds the base version: after the kill it
/// holds the base or the new version, never a mix of the two.
fn kill_9_during_shared_base_heap_migrations_commits_on_both_or_neither() {
    migrations_killed(Base::Shared, "heap-crash-mig-base", 0x5BA5);
}

/// The source card's power cut at a random cycle of its part of a move,
/// full and shared-base moves in turn: anywhere in the move (reads, then
/// the delete), or in the delete of the source's heap after the
/// destination's commit (random cuts seldom land there: the delete is a
/// small part of the source's cycles). After power-on both cards are
/// consistent: the outcomes of a kill. The first move of each kind runs
/// uncut: how many source cycles it takes.
fn source_power_cuts_during_heap_migrations_commit_on_both_or_neither() {
    let mut pair = Pair::start("heap-crash-cut");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xC07);
    let kinds = [
        (Base::None, false),
        (Base::Shared, false),
        (Base::None, true),
        (Base::Shared, true),
    ];
    let mut spans: [Option<u64>; 4] = [None; 4];
    let mut outcomes = Vec::new();
    for round in 0..12u32 {
        let kind = round as usize % kinds.len();
        let (base, at_delete) = kinds[kind];
        let what = format!(
            "{} move, {}",
            base.name(),
            if at_delete { "the delete" } else { "anywhere" }
        );
        let since = pair.next(base, round);
        let (from, to) = pair.ends();
        let status = || from.card.control(Control::Status).unwrap();
        let (mut fc, fs) = from.open();
        let (mut tc, ts) = to.open();
        fc.heap_open(&fs, HEAP, PAGES, 3, true).unwrap();
        tc.heap_open(&ts, HEAP, PAGES, 3, true).unwrap();
        if at_delete {
            // The destination's commit; the cut then falls in the delete.
            heap_migrate(&mut fc, &fs, &mut tc, &ts, HEAP, since, false).unwrap();
        }
        let mut step = || match at_delete {
            true => fc.heap_delete(&fs, HEAP).map(|_| ()),
            false => heap_migrate(&mut fc, &fs, &mut tc, &ts, HEAP, since, true).map(|_| ()),
        };
        let before = status();
        let (done, cut) = match spans[kind] {
            None => {
                step().unwrap();
                let span = status().cycle - before.cycle;
                spans[kind] = Some(span);
                eprintln!("source cut, round {round} ({what}): {span} source cycles, uncut");
                (true, false)
            }
            Some(span) => {
                let at = rng.gen_range(0..span + span / 4);
                from.card
                    .control(Control::CutPowerAt(before.cycle + at))
                    .unwrap();
                let r = step();
                eprintln!(
                    "source cut, round {round} ({what}): cut at cycle {at} of {span}: {}",
                    match &r {
                        Ok(()) => "reported done".to_string(),
                        Err(e) => format!("failed: {e}"),
                    }
                );
                (r.is_ok(), true)
            }
        };
        // The cards serve one client at a time.
        drop((fc, tc));
        if cut {
            common::await_power_ons(&from.card, before.power_ons + 1);
        }
        let outcome = pair.settle(since, done, round);
        if cut {
            eprintln!("source cut, round {round}: {}", outcome.name());
            outcomes.push(outcome);
        }
    }
    let [neither, _, _] = tally("source power cuts during migrations", &outcomes);
    assert!(neither > 0, "no cut came before the destination's commit");
}
