//! What the replication process tests share: card and witness processes,
//! a TCP proxy the test can sever, black-hole or delay, and a checkpoint
//! load (one client thread per card) whose history is checked against
//! what the master restores. Every wait has a timeout.
#![allow(dead_code)] // each test file uses a part of it

use hitless_driver::backend::vfio_user::VfioUserIo;
use hitless_driver::firmware::{Client, OpenFlags, Secret, Session};
use hitless_driver::CardIo;
use hitless_proto::{Code, PeerReport};
use hitless_sim::inproc::InProcessCard;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(10);
pub const HEARTBEAT_MS: u64 = 200;
pub const LEASE_MS: u64 = 2000;
pub const APP: u32 = 7;
/// A client call's deadline (a sync store waits for the slave's ack).
pub const CALL: Duration = Duration::from_secs(4);

pub fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hitless-sim"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Poll `f` every 20 ms until it is `Some`, at most `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc(pub Child);
impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
    /// Send a signal by name (`STOP`, `CONT`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {}", self.pid());
    }
}
impl Drop for Proc {
    fn drop(&mut self) {
        // A stopped process still dies of SIGKILL.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn log_file(dir: &Path, name: &str) -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.log")))
            .expect("a log file in the test directory"),
    )
}

/// A fresh directory for one test's processes, with the pair key.
pub fn test_dir(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("hitless-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the test directory");
    let key = dir.join("pair.key");
    std::fs::write(&key, "5a".repeat(32)).expect("the pair key");
    (dir, key)
}

/// `hitless-sim witness`, optionally under a command prefix
/// (`ip netns exec NS`).
pub fn start_witness(dir: &Path, key: &Path, listen: &str, members: &str, wrap: &[String]) -> Proc {
    let mut cmd = match wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(exe());
            c
        }
        None => Command::new(exe()),
    };
    cmd.args(["witness", "--listen", listen, "--members", members])
        .args(["--lease-ms", &LEASE_MS.to_string(), "--skew-ms", "20"])
        .arg("--key")
        .arg(key)
        .env("HITLESS_LOG", "info")
        .stderr(log_file(dir, "witness"));
    Proc(cmd.spawn().expect("the witness process"))
}

/// A replicated card process's settings.
#[derive(Clone)]
pub struct Card {
    pub node: u32,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub args: Vec<String>,
    /// A command prefix (`ip netns exec NS`), empty for none.
    pub wrap: Vec<String>,
}

impl Card {
    /// Card `node` listening on `listen`, dialing/accepting `peers`
    /// (node, address), with the witness at `witness`, in sync mode.
    pub fn new(
        dir: &Path,
        key: &Path,
        node: u32,
        listen: &str,
        peers: &[(u32, String)],
        witness: &str,
    ) -> Card {
        let d = dir.join(format!("card{node}"));
        std::fs::create_dir_all(&d).expect("the card directory");
        let mut args: Vec<String> = vec![
            "--node".into(),
            node.to_string(),
            "--listen".into(),
            listen.into(),
        ];
        for (n, a) in peers {
            args.push("--peer".into());
            args.push(format!("{n}={a}"));
        }
        args.extend(
            [
                "--pair-key",
                &key.display().to_string(),
                "--witness",
                witness,
                "--mode",
                "sync",
                "--heartbeat-ms",
                &HEARTBEAT_MS.to_string(),
            ]
            .map(String::from),
        );
        Card {
            node,
            socket: d.join("card.sock"),
            dir: d,
            args,
            wrap: Vec::new(),
        }
    }

    pub fn start(&self) -> Proc {
        let _ = std::fs::remove_file(&self.socket);
        let ctl = self.dir.join("card.ctl");
        let _ = std::fs::remove_file(&ctl);
        let mut cmd = match self.wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(exe());
                c
            }
            None => Command::new(exe()),
        };
        cmd.args(["serve", "--socket"])
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--control")
            .arg(&ctl)
            .args(&self.args)
            .env("HITLESS_LOG", "info,hitless_firmware=debug")
            .stderr(log_file(&self.dir, "card"));
        let p = Proc(cmd.spawn().expect("the card process"));
        wait_for(TIMEOUT, &format!("card {} to start", self.node), || {
            (self.socket.exists() && ctl.exists()).then_some(())
        });
        p
    }

    pub fn client(&self, timeout: Duration) -> Result<Client<VfioUserIo>, String> {
        let io = VfioUserIo::connect(&self.socket, 4 << 20, timeout).map_err(|e| e.to_string())?;
        Client::open(io, timeout).map_err(|e| e.to_string())
    }

    /// The card's replication state now (STATUS's `PEER` field).
    pub fn peer_now(&self) -> Result<PeerReport, String> {
        let mut c = self.client(Duration::from_secs(2))?;
        let s = c.status().map_err(|e| e.to_string())?;
        s.peer
            .ok_or_else(|| format!("card {} reports no peer state", self.node))
    }

    /// Wait (within `limit`) until the card's replication state passes `want`.
    pub fn peer(&self, limit: Duration, want: impl Fn(&PeerReport) -> bool) -> PeerReport {
        let t = Instant::now();
        loop {
            let last = match self.peer_now() {
                Ok(p) if want(&p) => return p,
                other => other,
            };
            assert!(
                t.elapsed() < limit,
                "card {}: peer state {last:?} after {limit:?}",
                self.node
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Open the application; `Err` on a card that is not master.
    pub fn open(
        &self,
        secret: Option<&Secret>,
    ) -> Result<(Client<VfioUserIo>, Session, Option<Secret>), String> {
        let mut c = self.client(CALL)?;
        let (s, secret) = c
            .open_app(APP, OpenFlags::all(), secret)
            .map_err(|e| e.to_string())?;
        Ok((c, s, secret))
    }
}

/// A witness and two cards (nodes 1 and 2) on loopback ports, in a fresh
/// test directory: the directory, the witness, the cards (not started).
pub fn witness_and_pair(name: &str) -> (PathBuf, Proc, [Card; 2]) {
    let (dir, key) = test_dir(name);
    let (pw, p1, p2) = (free_port(), free_port(), free_port());
    let witness_addr = format!("127.0.0.1:{pw}");
    let witness = start_witness(&dir, &key, &witness_addr, "1,2", &[]);
    let (a1, a2) = (format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}"));
    let cards = [
        Card::new(&dir, &key, 1, &a1, &[(2, a2.clone())], &witness_addr),
        Card::new(&dir, &key, 2, &a2, &[(1, a1)], &witness_addr),
    ];
    (dir, witness, cards)
}

/// Wait (within `limit`) until `card` opens the application (it has
/// taken over as master): its client and session.
pub fn take_over(card: &Card, secret: &Secret, limit: Duration) -> (Client<VfioUserIo>, Session) {
    wait_for(limit, &format!("node {} to take over", card.node), || {
        card.open(Some(secret)).ok().map(|(c, s, _)| (c, s))
    })
}

/// Wait until one of `cards` opens the application (the master); returns
/// its index and the application's secret (handed out by the first open).
pub fn first_master(cards: &[Card], limit: Duration) -> (usize, Secret) {
    wait_for(limit, "a master", || {
        cards
            .iter()
            .enumerate()
            .find_map(|(i, c)| c.open(None).ok().and_then(|(_, _, s)| s.map(|s| (i, s))))
    })
}

// ---------------------------------------------------------------------------
// One card in this process (`InProcessCard`) and its firmware client.

/// A fresh directory `hitless-NAME-PID` under the temporary directory.
pub fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hitless-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("the test directory");
    d
}

/// A firmware client of an in-process card.
pub fn client(card: &InProcessCard) -> Client<Box<dyn CardIo>> {
    let io: Box<dyn CardIo> = Box::new(card.connect().expect("a connection to the card"));
    Client::open(io, Duration::from_secs(30)).expect("the card's firmware answers")
}

/// A firmware client of the card serving `socket`, retried while the card
/// still serves a client that was killed (one client at a time).
pub fn client_at(socket: &Path, limit: Duration) -> Client<VfioUserIo> {
    let t = Instant::now();
    loop {
        let c = VfioUserIo::connect(socket, 8 << 20, Duration::from_secs(10))
            .and_then(|io| Client::open(io, Duration::from_secs(30)));
        match c {
            Ok(c) => return c,
            Err(e) => assert!(
                t.elapsed() < limit,
                "no client of {} after {limit:?}: {e}",
                socket.display()
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait (at most 20 s) until the card has powered on `n` times: a power
/// cut set with `CutPowerAt` may come after the request it was aimed at.
pub fn await_power_ons(card: &InProcessCard, n: u64) {
    wait_for(Duration::from_secs(20), "the power cut", || {
        let on = card
            .control(hitless_sim::service::Control::Status)
            .expect("the card's status")
            .power_ons;
        (on >= n).then_some(())
    });
}

/// The code of a firmware refusal (anything else fails the test).
pub fn code(e: hitless_driver::Error) -> Code {
    match e {
        hitless_driver::Error::Firmware { code, .. } => code,
        other => panic!("expected a firmware refusal, got {other}"),
    }
}

pub fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) as u8)
        .collect()
}

// ---------------------------------------------------------------------------
// A TCP proxy the test controls.

const PASS: u8 = 0;
const SEVER: u8 = 1;
const BLACKHOLE: u8 = 2;

struct ProxyState {
    mode: AtomicU8,
    delay_ms: AtomicU64,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

/// A TCP relay from a loopback port to `target`: passes, severs (closes
/// every connection and refuses new ones), black-holes (connections stay
/// open, every byte is dropped) or delays (each chunk delivered `delay`
/// after it was read, both ways).
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<ProxyState>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("the proxy's port");
        let addr = listener.local_addr().expect("the proxy's address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let state = Arc::new(ProxyState {
            mode: AtomicU8::new(PASS),
            delay_ms: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            while !st.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => relay(&st, client, target),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Proxy {
            addr,
            state,
            thread: Some(thread),
        }
    }

    fn close_all(&self) {
        for c in lock(&self.state.conns).drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Close every connection and refuse new ones.
    pub fn sever(&self) {
        self.state.mode.store(SEVER, Ordering::SeqCst);
        self.close_all();
    }

    /// Drop every byte, keeping the connections open.
    pub fn blackhole(&self) {
        self.state.mode.store(BLACKHOLE, Ordering::SeqCst);
    }

    pub fn delay(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Pass again, without delay. Black-holed connections are closed (their
    /// streams lost bytes): the cards dial again.
    pub fn heal(&self) {
        if self.state.mode.swap(PASS, Ordering::SeqCst) == BLACKHOLE {
            self.close_all();
        }
        self.state.delay_ms.store(0, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.close_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay(st: &Arc<ProxyState>, client: TcpStream, target: SocketAddr) {
    if st.mode.load(Ordering::SeqCst) == SEVER {
        return; // dropped: closed at once
    }
    let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_millis(500)) else {
        return;
    };
    let _ = client.set_nonblocking(false);
    for s in [&client, &server] {
        let _ = s.set_nodelay(true);
    }
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    lock(&st.conns).extend([c3, s3]);
    pump(st.clone(), client, s2);
    pump(st.clone(), server, c2);
}

/// One direction: a reader thread stamps each chunk, a writer thread
/// delivers it when its delay has passed.
fn pump(st: Arc<ProxyState>, mut from: TcpStream, mut to: TcpStream) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let st2 = st.clone();
    let from2 = from.try_clone();
    std::thread::spawn(move || {
        let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if st.stop.load(Ordering::Relaxed) {
                break;
            }
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => match st.mode.load(Ordering::SeqCst) {
                    PASS => {
                        let due = Instant::now()
                            + Duration::from_millis(st.delay_ms.load(Ordering::SeqCst));
                        if tx.send((due, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                    BLACKHOLE => {}
                    _ => break,
                },
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        let _ = from.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        while let Ok((due, bytes)) = rx.recv() {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if st2.mode.load(Ordering::SeqCst) != PASS || to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        if let Ok(f) = from2 {
            let _ = f.shutdown(Shutdown::Both);
        }
    });
}

// ---------------------------------------------------------------------------
// The checkpoint load and its history.

/// One acknowledged store: who served it and in which epoch.
#[derive(Clone, Debug)]
pub struct Ack {
    pub node: u32,
    pub epoch: u64,
    pub object: u32,
    pub version: u32,
    pub at: Instant,
    /// The store's round trip (the slave's ack included, sync mode).
    pub took: Duration,
}

#[derive(Default, Debug)]
struct Object {
    /// The last acknowledged version.
    acked: Option<u32>,
    /// Versions sent since, not acknowledged (failed or unknown).
    pending: Vec<u32>,
    next: u32,
}

#[derive(Default)]
pub struct History {
    objects: BTreeMap<u32, Object>,
    pub acks: Vec<Ack>,
    pub failed: u64,
}

/// The set stored as `version` of `object` (its size varies with both).
pub fn set_data(object: u32, version: u32) -> Vec<u8> {
    let len = [1usize, 777, 4096, 16_000, 40_000][((object + version) % 5) as usize];
    pattern(object.wrapping_mul(65_537) ^ version, len)
}

pub fn cold(object: u32) -> bool {
    object.is_multiple_of(2)
}

struct Shared {
    pause: AtomicBool,
    stop: AtomicBool,
    parked: Vec<AtomicBool>,
    history: Mutex<History>,
    /// Each card's last replication state seen by its client.
    seen: Mutex<Vec<Option<(Instant, PeerReport)>>>,
}

/// One client thread per card, storing sets whenever its card is master.
pub struct Load {
    cards: Vec<Card>,
    secret: Secret,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Objects of the client of card `i`: its own range, so clients never
/// write the same object.
const OBJECTS_PER_CLIENT: u32 = 6;

impl Load {
    pub fn start(cards: &[Card], secret: Secret, seed: u64) -> Load {
        let shared = Arc::new(Shared {
            pause: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            parked: cards.iter().map(|_| AtomicBool::new(false)).collect(),
            history: Mutex::new(History::default()),
            seen: Mutex::new(vec![None; cards.len()]),
        });
        let threads = cards
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (c, sh) = (c.clone(), shared.clone());
                let rng = ChaCha8Rng::seed_from_u64(seed ^ ((i as u64 + 1) * 0x9E37));
                std::thread::spawn(move || client_loop(i, c, secret, sh, rng))
            })
            .collect();
        Load {
            cards: cards.to_vec(),
            secret,
            shared,
            threads,
        }
    }

    /// Each card's last replication state seen by its client, if recent.
    pub fn seen(&self, within: Duration) -> Vec<Option<PeerReport>> {
        lock(&self.shared.seen)
            .iter()
            .map(|s| {
                s.as_ref()
                    .filter(|(t, _)| t.elapsed() < within)
                    .map(|(_, p)| *p)
            })
            .collect()
    }

    pub fn acks(&self) -> usize {
        lock(&self.shared.history).acks.len()
    }

    /// Wait until `node` has acknowledged a store in an epoch ≥ `epoch`
    /// after `since`.
    pub fn wait_ack(&self, node: u32, epoch: u64, since: Instant, limit: Duration) -> Ack {
        wait_for(
            limit,
            &format!("a store acknowledged by node {node} in epoch >= {epoch}"),
            || {
                lock(&self.shared.history)
                    .acks
                    .iter()
                    .rev()
                    .find(|a| a.node == node && a.epoch >= epoch && a.at > since)
                    .cloned()
            },
        )
    }

    /// Stop the clients and wait until none holds a card (each call has
    /// its deadline, so this ends).
    pub fn pause(&self) {
        self.shared.pause.store(true, Ordering::SeqCst);
        wait_for(CALL * 4, "the clients to pause", || {
            self.shared
                .parked
                .iter()
                .all(|p| p.load(Ordering::SeqCst))
                .then_some(())
        });
    }

    pub fn resume(&self) {
        self.shared.pause.store(false, Ordering::SeqCst);
    }

    /// With the clients paused: every acknowledged set restores from card
    /// `master` byte for byte; a set whose last store was not acknowledged
    /// is its last acknowledged version or one of those sent since, never
    /// anything else. Returns the number of sets checked.
    pub fn verify(&self, master: usize) -> usize {
        assert!(
            self.shared.pause.load(Ordering::SeqCst),
            "verify while paused"
        );
        let card = &self.cards[master];
        let (mut c, s) = wait_for(TIMEOUT, "the master to open the application", || {
            card.open(Some(&self.secret)).ok().map(|(c, s, _)| (c, s))
        });
        let mut h = lock(&self.shared.history);
        let mut checked = 0;
        for (&object, o) in h.objects.iter_mut() {
            let mut allowed: Vec<u32> = o.pending.clone();
            allowed.extend(o.acked);
            if allowed.is_empty() {
                continue;
            }
            let found = match c.restore(&s, object) {
                Ok((_, data)) => match allowed.iter().find(|&&v| set_data(object, v) == data) {
                    Some(&v) => Some(v),
                    None => panic!(
                        "node {}: set {object} ({} bytes) is none of the versions \
                         acknowledged ({:?}) or sent since ({:?})",
                        card.node,
                        data.len(),
                        o.acked,
                        o.pending
                    ),
                },
                Err(hitless_driver::Error::Firmware {
                    code: Code::NotFound,
                    ..
                }) if o.acked.is_none() => None,
                Err(e) => panic!(
                    "node {}: set {object} (acknowledged {:?}, sent since {:?}) does not \
                     restore: {e}",
                    card.node, o.acked, o.pending
                ),
            };
            if let Some(v) = found {
                // What the master holds is now the set's state.
                o.pending.retain(|&p| p > v);
                o.acked = Some(v);
            }
            checked += 1;
        }
        checked
    }

    /// No two nodes acknowledged stores in one epoch. Returns the epochs
    /// seen with their node.
    pub fn check_epochs(&self) -> BTreeMap<u64, u32> {
        let h = lock(&self.shared.history);
        let mut by_epoch: BTreeMap<u64, u32> = BTreeMap::new();
        for a in &h.acks {
            let n = *by_epoch.entry(a.epoch).or_insert(a.node);
            assert_eq!(
                n, a.node,
                "split brain: nodes {n} and {} both acknowledged stores in epoch {}",
                a.node, a.epoch
            );
        }
        by_epoch
    }

    /// The stores acknowledged after `since`.
    pub fn acks_since(&self, since: Instant) -> Vec<Ack> {
        lock(&self.shared.history)
            .acks
            .iter()
            .filter(|a| a.at > since)
            .cloned()
            .collect()
    }

    pub fn failed(&self) -> u64 {
        lock(&self.shared.history).failed
    }

    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn client_loop(i: usize, card: Card, secret: Secret, sh: Arc<Shared>, mut rng: ChaCha8Rng) {
    let mut conn: Option<(Client<VfioUserIo>, Option<Session>)> = None;
    let base = 1000 * (i as u32 + 1);
    while !sh.stop.load(Ordering::SeqCst) {
        if sh.pause.load(Ordering::SeqCst) {
            conn = None;
            sh.parked[i].store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        sh.parked[i].store(false, Ordering::SeqCst);
        let (c, session) = match conn.as_mut() {
            Some(x) => x,
            None => match card.client(CALL) {
                Ok(c) => conn.insert((c, None)),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        let before = match c.status() {
            Ok(s) => s.peer,
            Err(_) => {
                conn = None;
                continue;
            }
        };
        let Some(before) = before else {
            conn = None;
            continue;
        };
        lock(&sh.seen)[i] = Some((Instant::now(), before));
        if before.role != 0 {
            *session = None;
            std::thread::sleep(Duration::from_millis(40));
            continue;
        }
        if session.is_none() {
            match c.open_app(APP, OpenFlags::all(), Some(&secret)) {
                Ok((s, _)) => *session = Some(s),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(40));
                    continue;
                }
            }
        }
        let Some(s) = session.as_ref() else { continue };
        // A checkpoint now and then, not back to back: a slave that fell
        // behind (a cut, a restart) applies what it missed only while it
        // is faster than the master writes (each apply is an NV commit, as
        // each store is), so a load without pauses could keep it out of
        // the in-sync set for a long while.
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..80)));
        let object = base + rng.gen_range(0..OBJECTS_PER_CLIENT);
        let version = {
            let mut h = lock(&sh.history);
            let o = h.objects.entry(object).or_default();
            o.next += 1;
            let v = o.next;
            o.pending.push(v);
            v
        };
        let t0 = Instant::now();
        let stored = c.store(s, object, 0, 0, cold(object), &set_data(object, version));
        let took = t0.elapsed();
        match stored {
            Ok(()) => {
                let after = c.status().ok().and_then(|s| s.peer);
                if let Some(a) = &after {
                    lock(&sh.seen)[i] = Some((Instant::now(), *a));
                    assert!(
                        a.epoch >= before.epoch,
                        "node {}: epoch went back from {} to {}",
                        card.node,
                        before.epoch,
                        a.epoch
                    );
                }
                let mut h = lock(&sh.history);
                let o = h.objects.entry(object).or_default();
                o.pending.retain(|&p| p > version);
                o.acked = Some(version);
                h.acks.push(Ack {
                    node: card.node,
                    epoch: before.epoch,
                    object,
                    version,
                    at: Instant::now(),
                    took,
                });
            }
            Err(e) => {
                lock(&sh.history).failed += 1;
                if !matches!(e, hitless_driver::Error::Firmware { .. }) {
                    conn = None; // a timeout or a dead card: connect again
                } else {
                    *session = None;
                }
            }
        }
    }
    sh.parked[i].store(true, Ordering::SeqCst);
}

/// The single master among `cards` now (by asking each), if there is one
/// whose slaves all follow it in its epoch and are in its in-sync set.
pub fn settled(cards: &[Card]) -> Option<(usize, PeerReport)> {
    let states: Vec<PeerReport> = cards
        .iter()
        .map(|c| c.peer_now().ok())
        .collect::<Option<_>>()?;
    settled_of(&states)
}

impl Load {
    /// The single master by its client's latest view (within `within`),
    /// whose slaves all follow it in its epoch and are in its in-sync set.
    pub fn settled(&self, within: Duration) -> Option<(usize, PeerReport)> {
        let states: Vec<PeerReport> = self.seen(within).into_iter().collect::<Option<_>>()?;
        settled_of(&states)
    }
}

fn settled_of(states: &[PeerReport]) -> Option<(usize, PeerReport)> {
    let masters: Vec<usize> = (0..states.len()).filter(|&i| states[i].role == 0).collect();
    let [m] = masters[..] else { return None };
    let mp = &states[m];
    let followers_ok = states
        .iter()
        .enumerate()
        .all(|(i, p)| i == m || (p.role == 1 && p.master == Some(mp.node) && p.epoch == mp.epoch));
    (followers_ok && mp.in_sync as usize == states.len() - 1).then_some((m, *mp))
}

/// Count by name, printed at the end.
#[derive(Default)]
pub struct Counts(pub BTreeMap<&'static str, u64>);
impl Counts {
    pub fn add(&mut self, what: &'static str) {
        *self.0.entry(what).or_default() += 1;
    }
    pub fn get(&self, what: &str) -> u64 {
        self.0.get(what).copied().unwrap_or(0)
    }
}

/// Each card's latest state from the load's clients, as `HashMap<node, _>`.
pub fn by_node(cards: &[Card], seen: &[Option<PeerReport>]) -> HashMap<u32, PeerReport> {
    cards
        .iter()
        .zip(seen)
        .filter_map(|(c, s)| s.map(|s| (c.node, s)))
        .collect()
}

// Test binaries that are also the processes their tests kill: see
// hitless-testkit.
#[allow(unused_imports)] // only the test files with roles use them
pub use hitless_testkit::{named, role_command, test_main};

// ---------------------------------------------------------------------------
// The backup reader tests' primary (backup_reader.rs, backup_replicated.rs):
// its records and the acknowledgements it prints.

/// What the primary printed as acknowledged: log records by number, and
/// each set's last acknowledged version; `done` once its output ended.
#[derive(Default)]
pub struct Acks {
    pub log: Vec<u64>,
    pub sets: BTreeMap<u32, u64>,
    pub done: bool,
}

/// Collect the primary's `ACK LOG i pos` / `ACK SET object version`
/// lines from its stdout until it ends.
pub fn collect_acks(out: std::process::ChildStdout) -> (Arc<Mutex<Acks>>, JoinHandle<()>) {
    let acks = Arc::new(Mutex::new(Acks::default()));
    let a2 = acks.clone();
    let t = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let w: Vec<&str> = line.split_whitespace().collect();
            let mut a = lock(&a2);
            match w.as_slice() {
                ["ACK", "LOG", i, _] => a.log.push(i.parse().expect("record number")),
                ["ACK", "SET", o, i] => {
                    a.sets
                        .insert(o.parse().expect("object"), i.parse().expect("version"));
                }
                _ => {}
            }
        }
        lock(&a2).done = true;
    });
    (acks, t)
}

/// A secret as the primary's environment carries it.
pub fn hex(s: &[u8]) -> String {
    s.iter().map(|b| format!("{b:02x}")).collect()
}

/// A secret from its hex form (as a card process prints it).
pub fn unhex(t: &str) -> Result<Secret, String> {
    let mut s = [0u8; 32];
    for (i, b) in s.iter_mut().enumerate() {
        let d = t.get(2 * i..2 * i + 2).ok_or("a short secret")?;
        *b = u8::from_str_radix(d, 16).map_err(|e| e.to_string())?;
    }
    Ok(s)
}

/// The number of a [`record`]; a payload that is not exactly a whole
/// record (torn, half-applied) fails the test.
pub fn record_number(payload: &[u8]) -> u64 {
    let n = std::str::from_utf8(payload.get(7..17).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a record: {:?}", String::from_utf8_lossy(payload)));
    assert_eq!(payload, record(n), "record {n} is not whole");
    n
}

/// Log record `i` of the primary (64 to 304 bytes).
pub fn record(i: u64) -> Vec<u8> {
    let mut r = format!("record {i:010}").into_bytes();
    r.resize(64 + (i % 7) as usize * 40, b'.');
    r
}
