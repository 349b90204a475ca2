//! Operating a replicated pair as real processes on loopback
//! (`hitless-sim serve --node …`), through the driver over vfio-user:
//! - the `NotMaster` refusal names the master and its epoch;
//! - a manual switchover (claim 44) hands the role to the slave in a newer
//!   epoch, the old master follows it, nothing acknowledged is lost;
//! - the etcd arbiter (`--etcd`): the test starts its own etcd
//!   (`/usr/bin/etcd`, `cargo xtask setup` installs it; without it the
//!   test fails and says so), one card becomes master, it is killed, the
//!   other takes over in a newer epoch with every acknowledged set, and
//!   records the takeover's cause, which the old master hears when it
//!   returns (claim 18).
//!
//! Every wait has a timeout; the processes' logs are in the test's
//! temporary directory.

use hitless_driver::backend::vfio_user::VfioUserIo;
use hitless_driver::firmware::{Client, OpenFlags, Secret, Session};
use hitless_driver::Error;
use hitless_proto::{PeerReport, StatusReport};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);
const HEARTBEAT_MS: u64 = 200;
const APP: u32 = 7;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hitless-sim"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed and reaped when dropped.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.log")))
            .unwrap(),
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hitless-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Card {
    node: u32,
    dir: PathBuf,
    socket: PathBuf,
    args: Vec<String>,
}

impl Card {
    /// Card `node` listening on `me`, its peer `peer` on `other`, with the
    /// arbiter arguments `arbiter`.
    fn new(
        dir: &Path,
        key: &Path,
        node: u32,
        me: u16,
        peer: u32,
        other: u16,
        arbiter: &[String],
    ) -> Self {
        let d = dir.join(format!("card{node}"));
        std::fs::create_dir_all(&d).unwrap();
        let mut args: Vec<String> = vec![
            "--node".into(),
            node.to_string(),
            "--listen".into(),
            format!("127.0.0.1:{me}"),
            "--peer".into(),
            format!("{peer}=127.0.0.1:{other}"),
            "--pair-key".into(),
            key.display().to_string(),
            "--mode".into(),
            "sync".into(),
            "--heartbeat-ms".into(),
            HEARTBEAT_MS.to_string(),
        ];
        args.extend_from_slice(arbiter);
        Card {
            node,
            socket: d.join("card.sock"),
            dir: d,
            args,
        }
    }

    fn start(&self) -> Proc {
        let _ = std::fs::remove_file(&self.socket);
        let ctl = self.dir.join("card.ctl");
        let _ = std::fs::remove_file(&ctl);
        let child = Command::new(exe())
            .args(["serve", "--socket"])
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--control")
            .arg(&ctl)
            .args(&self.args)
            .env("HITLESS_LOG", "info,hitless_firmware=debug")
            .stderr(log_file(&self.dir, "card"))
            .spawn()
            .unwrap();
        let p = Proc(child);
        let t = Instant::now();
        while !(self.socket.exists() && ctl.exists()) {
            assert!(t.elapsed() < TIMEOUT, "card {} did not start", self.node);
            std::thread::sleep(Duration::from_millis(10));
        }
        p
    }

    fn client(&self) -> Result<Client<VfioUserIo>, String> {
        let io = VfioUserIo::connect(&self.socket, 4 << 20, TIMEOUT).map_err(|e| e.to_string())?;
        Client::open(io, TIMEOUT).map_err(|e| e.to_string())
    }

    /// The card's STATUS once `want` holds of it, within a deadline.
    fn status(
        &self,
        want: impl Fn(&PeerReport, &StatusReport) -> bool,
    ) -> (PeerReport, StatusReport) {
        let t = Instant::now();
        loop {
            let s = self
                .client()
                .and_then(|mut c| c.status().map_err(|e| e.to_string()));
            match s {
                Ok(s) => {
                    let p = s.peer.expect("a replicated card reports its peer state");
                    if want(&p, &s) {
                        return (p, s);
                    }
                    assert!(
                        t.elapsed() < TIMEOUT,
                        "card {}: {p:?} {:?}",
                        self.node,
                        s.peer_notes
                    );
                }
                Err(e) => assert!(t.elapsed() < TIMEOUT, "card {}: {e}", self.node),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn open(
        &self,
        secret: Option<&Secret>,
    ) -> Result<(Client<VfioUserIo>, Session, Option<Secret>), Error> {
        let mut c = self.client().map_err(Error::transport_msg)?;
        let (s, secret) = c.open_app(APP, OpenFlags::all(), secret)?;
        Ok((c, s, secret))
    }
}

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) as u8)
        .collect()
}

/// The first card that opens the application (the master): its index,
/// the application's secret.
fn find_master(cards: &[Card]) -> (usize, Secret) {
    let t = Instant::now();
    loop {
        for (i, c) in cards.iter().enumerate() {
            if let Ok((_, _, secret)) = c.open(None) {
                return (i, secret.expect("the first open hands out the secret"));
            }
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no master");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Store `n` sets on `card` from object `first`; the acknowledged ones.
fn store_sets(card: &Card, secret: &Secret, first: u32, n: u32) -> Vec<(u32, Vec<u8>)> {
    let (mut client, session, _) = card.open(Some(secret)).unwrap();
    let mut acked = Vec::new();
    for i in 0..n {
        let data = pattern(first + i, [1usize, 777, 4096, 40_000][i as usize % 4]);
        let t = Instant::now();
        match client.store(&session, first + i, 0, 0, i % 2 == 0, &data) {
            Ok(()) => acked.push((first + i, data)),
            Err(e) => eprintln!("store {} not acknowledged: {e}", first + i),
        }
        assert!(t.elapsed() < TIMEOUT);
    }
    assert!(
        acked.len() * 5 >= n as usize * 4,
        "only {} of {n} stores acknowledged",
        acked.len()
    );
    acked
}

/// Every acknowledged set restores from `card` byte for byte.
fn check_sets(card: &Card, secret: &Secret, acked: &[(u32, Vec<u8>)]) {
    let (mut client, session, _) = card.open(Some(secret)).unwrap();
    for (object, data) in acked {
        let (_, got) = client.restore(&session, *object).unwrap();
        assert!(got == *data, "set {object} differs on node {}", card.node);
    }
}

#[test]
fn not_master_names_the_master_and_a_switchover_loses_nothing() {
    let dir = temp_dir("switchover");
    let key = dir.join("pair.key");
    std::fs::write(&key, "6b".repeat(32)).unwrap();
    let (pw, p1, p2) = (free_port(), free_port(), free_port());
    let witness_addr = format!("127.0.0.1:{pw}");
    let _witness = Proc(
        Command::new(exe())
            .args(["witness", "--listen", &witness_addr, "--members", "1,2"])
            .args(["--lease-ms", "2000", "--skew-ms", "20"])
            .arg("--key")
            .arg(&key)
            .env("HITLESS_LOG", "info")
            .stderr(log_file(&dir, "witness"))
            .spawn()
            .unwrap(),
    );
    let arb = ["--witness".to_string(), witness_addr.clone()];
    let cards = [
        Card::new(&dir, &key, 1, p1, 2, p2, &arb),
        Card::new(&dir, &key, 2, p2, 1, p1, &arb),
    ];
    let _procs = [cards[0].start(), cards[1].start()];
    let (m, secret) = find_master(&cards);
    let s = 1 - m;
    let (mn, sn) = (cards[m].node, cards[s].node);
    let (first, _) = cards[m].status(|p, _| p.role == 0 && p.in_sync == 1);
    cards[s].status(|p, _| p.role == 1 && p.master == Some(mn) && p.epoch == first.epoch);

    // The slave refuses a host with NotMaster, naming the master.
    match cards[s].open(Some(&secret)) {
        Err(Error::NotMaster { master, epoch, .. }) => {
            assert_eq!(master, Some(mn));
            assert_eq!(epoch, Some(first.epoch));
        }
        Err(e) => panic!("the slave refused with {e}, not NotMaster"),
        Ok(_) => panic!("the slave served a host"),
    }
    // A switchover asked of the slave is refused the same way.
    let mut c = cards[s].client().unwrap();
    assert!(matches!(c.switchover(None), Err(Error::NotMaster { master: Some(x), .. }) if x == mn));
    drop(c);
    // Handing over to a node that is not a peer is refused; nothing moves.
    let mut c = cards[m].client().unwrap();
    assert!(c.switchover(Some(9)).is_err());
    drop(c);

    let acked = store_sets(&cards[m], &secret, 100, 12);
    let (before, notes) = cards[m].status(|p, _| p.role == 0);
    assert_eq!(
        notes.peer_notes.lag_bytes,
        Some(0),
        "sync mode: nothing unacknowledged"
    );

    // Switch over (to the only slave in sync).
    let t = Instant::now();
    let done = cards[m].client().unwrap().switchover(None).unwrap();
    eprintln!("switchover: {done:?} in {:?}", t.elapsed());
    assert_eq!(done.to, sn);
    assert_eq!(done.from_epoch, before.epoch);
    assert!(done.bracket >= before.mark_bracket, "{done:?} {before:?}");
    let epoch = done.epoch.expect("the old master heard the new epoch");
    assert!(epoch > before.epoch);
    // The new master serves in the newer epoch, hitless (no cause); the
    // old one is its slave and refuses hosts naming it.
    let (after, st) = cards[s].status(|p, _| p.role == 0 && p.epoch == epoch);
    assert_eq!(st.peer_notes.cause, None, "a switchover is hitless");
    assert_eq!(after.node, sn);
    cards[m].status(|p, _| p.role == 1 && p.master == Some(sn) && p.epoch == epoch);
    match cards[m].open(Some(&secret)) {
        Err(Error::NotMaster { master, .. }) => assert_eq!(master, Some(sn)),
        Err(e) => panic!("the old master refused with {e}, not NotMaster"),
        Ok(_) => panic!("the old master served a host after the switchover"),
    }
    check_sets(&cards[s], &secret, &acked);
    let more = store_sets(&cards[s], &secret, 200, 4);
    // And back: the old master has every set, the ones stored after too.
    cards[s].status(|p, _| p.role == 0 && p.in_sync == 1);
    let back = cards[s].client().unwrap().switchover(Some(mn)).unwrap();
    assert_eq!(back.to, mn);
    assert!(back.epoch.is_some_and(|e| e > epoch), "{back:?}");
    check_sets(&cards[m], &secret, &acked);
    check_sets(&cards[m], &secret, &more);
    let _ = std::fs::remove_dir_all(&dir);
}

/// etcd on free ports with a data directory in `dir`, stopped when
/// dropped; fails (with the reason) when it cannot run.
fn start_etcd(dir: &Path) -> (Proc, String) {
    let etcd = Path::new("/usr/bin/etcd");
    assert!(
        etcd.exists(),
        "/usr/bin/etcd is missing: the etcd arbiter's test needs it (`cargo xtask setup` installs etcd-server)"
    );
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new(etcd)
        .args(["--name", "hitless-test", "--data-dir"])
        .arg(dir.join("etcd.data"))
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("hitless-test={peer_url}")])
        .stdout(log_file(dir, "etcd"))
        .stderr(log_file(dir, "etcd"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start /usr/bin/etcd: {e}"));
    let mut p = Proc(child);
    let t = Instant::now();
    loop {
        let ok = ureq::get(&format!("{url}/health"))
            .timeout(Duration::from_millis(500))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .is_some_and(|b| b.contains("true"));
        if ok {
            return (p, url);
        }
        if let Ok(Some(status)) = p.0.try_wait() {
            panic!(
                "etcd exited ({status}); see {}",
                dir.join("etcd.log").display()
            );
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "etcd not healthy after 20 s; see {}",
            dir.join("etcd.log").display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn etcd_arbiter_one_master_then_takeover_in_a_newer_epoch() {
    let dir = temp_dir("etcd");
    let (etcd, url) = start_etcd(&dir);
    let key = dir.join("pair.key");
    std::fs::write(&key, "7c".repeat(32)).unwrap();
    let (p1, p2) = (free_port(), free_port());
    let arb = [
        "--etcd".to_string(),
        url.clone(),
        "--etcd-ttl-s".into(),
        "2".into(),
    ];
    let cards = [
        Card::new(&dir, &key, 1, p1, 2, p2, &arb),
        Card::new(&dir, &key, 2, p2, 1, p1, &arb),
    ];
    let mut procs = [Some(cards[0].start()), Some(cards[1].start())];
    let (m, secret) = find_master(&cards);
    let s = 1 - m;
    let (mn, sn) = (cards[m].node, cards[s].node);
    eprintln!("etcd: master node {mn}");
    let (first, _) = cards[m].status(|p, _| p.role == 0 && p.in_sync == 1);
    cards[s].status(|p, _| p.role == 1 && p.master == Some(mn) && p.epoch == first.epoch);
    // Exactly one master: the other refuses hosts.
    assert!(matches!(
        cards[s].open(Some(&secret)),
        Err(Error::NotMaster { .. })
    ));
    // The epoch etcd holds is the master's.
    let range = ureq::post(&format!("{url}/v3/kv/range"))
        .timeout(Duration::from_secs(2))
        .send_json(serde_json::json!({ "key": base64_of("/hitless/pair/1-2/epoch") }))
        .unwrap()
        .into_json::<serde_json::Value>()
        .unwrap();
    let stored = range["kvs"][0]["value"]
        .as_str()
        .map(unbase64)
        .unwrap_or_default();
    assert_eq!(stored, first.epoch.to_string(), "{range}");

    let acked = store_sets(&cards[m], &secret, 100, 16);
    let killed = Instant::now();
    procs[m] = None;
    let t = Instant::now();
    let (second, st) = loop {
        let (p, st) = cards[s].status(|_, _| true);
        if p.role == 0 {
            break (p, st);
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no takeover: {p:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "etcd: node {sn} master in epoch {} {:?} after the kill",
        second.epoch,
        killed.elapsed()
    );
    assert!(second.epoch > first.epoch, "{second:?} after {first:?}");
    let cause = st
        .peer_notes
        .cause
        .clone()
        .expect("a takeover after a crash records its cause");
    eprintln!("cause: {cause}");
    check_sets(&cards[s], &secret, &acked);
    let more = store_sets(&cards[s], &secret, 300, 2);

    // The old master returns as slave of the new one and hears the cause.
    procs[m] = Some(cards[m].start());
    let (_, old) = cards[m].status(|p, st| {
        p.role == 1
            && p.master == Some(sn)
            && p.epoch == second.epoch
            && st.peer_notes.cause_heard.is_some()
    });
    let (from, heard) = old.peer_notes.cause_heard.unwrap();
    assert_eq!(from, sn);
    assert!(!heard.is_empty());
    check_sets(&cards[s], &secret, &more);
    drop(procs);
    drop(etcd);
    let _ = std::fs::remove_dir_all(&dir);
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unbase64(s: &str) -> String {
    use base64::Engine;
    String::from_utf8_lossy(
        &base64::engine::general_purpose::STANDARD
            .decode(s)
            .unwrap_or_default(),
    )
    .into_owned()
}
