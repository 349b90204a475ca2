//! A replicated pair as real processes on loopback: a witness
//! (`hitless-sim witness`) and two cards (`hitless-sim serve --node …`),
//! an application storing sets on the master in sync mode through the
//! driver over vfio-user; the master killed with SIGKILL; the slave takes
//! over (granted by the witness) and every acknowledged set restores from
//! it byte for byte; the old master restarted comes back as slave (fenced
//! by the newer epoch). Every wait has a timeout.

use hitless_driver::backend::vfio_user::VfioUserIo;
use hitless_driver::firmware::{Client, OpenFlags, Secret, Session};
use hitless_driver::state;
use hitless_proto::PeerReport;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);
const HEARTBEAT_MS: u64 = 200;
const LEASE_MS: u64 = 2000;
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

struct Card {
    node: u32,
    dir: PathBuf,
    socket: PathBuf,
    args: Vec<String>,
}

impl Card {
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

    /// The card's replication state (STATUS's `PEER` field), within a
    /// deadline: `(role, epoch, master)`; role 0 master, 1 slave, 2 standby.
    fn peer(&self, want: impl Fn(&PeerReport) -> bool) -> PeerReport {
        let t = Instant::now();
        loop {
            let p = self
                .client()
                .and_then(|mut c| c.status().map_err(|e| e.to_string()))
                .map(|s| s.peer.expect("a replicated card reports its peer state"));
            match p {
                Ok(p) if want(&p) => return p,
                other => assert!(
                    t.elapsed() < TIMEOUT,
                    "card {}: peer state {other:?}",
                    self.node
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Open the application; `Err` on a card that is not master.
    fn open(
        &self,
        secret: Option<&Secret>,
    ) -> Result<(Client<VfioUserIo>, Session, Option<Secret>), String> {
        let mut c = self.client()?;
        let (s, secret) = c
            .open_app(APP, OpenFlags::all(), secret)
            .map_err(|e| e.to_string())?;
        Ok((c, s, secret))
    }
}

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) as u8)
        .collect()
}

#[test]
fn master_killed_the_slave_takes_over_with_every_acknowledged_set() {
    let dir = std::env::temp_dir().join(format!("hitless-repl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("pair.key");
    std::fs::write(&key, "5a".repeat(32)).unwrap();
    let (pw, p1, p2) = (free_port(), free_port(), free_port());
    let witness_addr = format!("127.0.0.1:{pw}");
    let _witness = Proc(
        Command::new(exe())
            .args(["witness", "--listen", &witness_addr, "--members", "1,2"])
            .args(["--lease-ms", &LEASE_MS.to_string(), "--skew-ms", "20"])
            .arg("--key")
            .arg(&key)
            .env("HITLESS_LOG", "info,hitless_firmware=debug")
            .stderr(log_file(&dir, "witness"))
            .spawn()
            .unwrap(),
    );
    let card = |node: u32, me: u16, peer: u32, other: u16| {
        let d = dir.join(format!("card{node}"));
        std::fs::create_dir_all(&d).unwrap();
        Card {
            node,
            socket: d.join("card.sock"),
            dir: d,
            args: vec![
                "--node".into(),
                node.to_string(),
                "--listen".into(),
                format!("127.0.0.1:{me}"),
                "--peer".into(),
                format!("{peer}=127.0.0.1:{other}"),
                "--pair-key".into(),
                key.display().to_string(),
                "--witness".into(),
                witness_addr.clone(),
                "--mode".into(),
                "sync".into(),
                "--heartbeat-ms".into(),
                HEARTBEAT_MS.to_string(),
            ],
        }
    };
    let cards = [card(1, p1, 2, p2), card(2, p2, 1, p1)];
    let mut procs = vec![Some(cards[0].start()), Some(cards[1].start())];

    // One of them becomes master (the witness's first grant).
    let t = Instant::now();
    let (m, client, _, secret) = loop {
        let found = cards
            .iter()
            .enumerate()
            .find_map(|(i, c)| c.open(None).ok().map(|(cl, s, sec)| (i, cl, s, sec)));
        if let Some(f) = found {
            break f;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no master");
        std::thread::sleep(Duration::from_millis(50));
    };
    let secret = secret.expect("the first open hands out the secret");
    let s = 1 - m;
    eprintln!("master: node {} after {:?}", cards[m].node, t.elapsed());
    drop(client);
    // The slave follows the master and is in its in-sync set.
    let mn = cards[m].node;
    let first = cards[m].peer(|p| p.role == 0 && p.in_sync == 1);
    cards[s].peer(|p| p.role == 1 && p.master == Some(mn) && p.epoch == first.epoch);
    let (mut client, session, _) = cards[m].open(Some(&secret)).unwrap();

    let mut acked = Vec::new();
    for i in 0..24u32 {
        let data = pattern(i, [1usize, 777, 4096, 40_000][i as usize % 4]);
        let t = Instant::now();
        let r = client.store(&session, 100 + i, 0, 0, i % 2 == 0, &data);
        match r {
            Ok(()) => acked.push((100 + i, data)),
            Err(e) => eprintln!("store {i} not acknowledged: {e}"),
        }
        assert!(t.elapsed() < TIMEOUT);
    }
    assert!(
        acked.len() >= 20,
        "only {} stores acknowledged",
        acked.len()
    );
    // The application's own state (seed 004 claim 1): two brackets ended,
    // a third begun and never ended when the master dies.
    let at = state::StateSet {
        object: 900,
        cold: true,
    };
    let mut b = state::begin(&mut client, &session, at).unwrap();
    b.put(1, b"routes: 10.0.0.0/8 via 2").unwrap();
    b.put(2, b"neighbours: 3").unwrap();
    b.end().unwrap();
    let mut b = state::begin(&mut client, &session, at).unwrap();
    b.put(2, b"neighbours: 4").unwrap();
    let ended = b.end().unwrap();
    let mut open = state::begin(&mut client, &session, at).unwrap();
    open.put(1, b"never ended").unwrap();
    // Nothing of it reaches the card before its end.
    drop(open);
    drop(client);

    // kill -9 the master.
    let killed = Instant::now();
    procs[m] = None;
    let (mut client, session) = loop {
        if let Ok((c, sess, _)) = cards[s].open(Some(&secret)) {
            break (c, sess);
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "the slave did not take over"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "takeover by node {}: serving {:?} after the kill",
        cards[s].node,
        killed.elapsed()
    );
    let second = client.status().unwrap().peer.unwrap();
    assert_eq!(second.role, 0, "{second:?}");
    assert!(second.epoch > first.epoch, "{second:?} after {first:?}");
    for (object, data) in &acked {
        let (_, got) = client.restore(&session, *object).unwrap();
        assert!(got == *data, "set {object} differs after the takeover");
    }
    // The standby application reads the state of the last ended bracket.
    assert_eq!(state::read(&mut client, &session, at).unwrap(), ended);
    client.store(&session, 500, 0, 0, true, b"after").unwrap();
    drop(client);

    // The old master returns: a slave (fenced), the new master goes on.
    procs[m] = Some(cards[m].start());
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        cards[m].open(Some(&secret)).is_err(),
        "the returning old master served a host"
    );
    let sn = cards[s].node;
    cards[m].peer(|p| p.role == 1 && p.master == Some(sn) && p.epoch == second.epoch);
    let (mut client, session, _) = cards[s].open(Some(&secret)).unwrap();
    client
        .store(&session, 501, 0, 0, true, b"still master")
        .unwrap();
    assert_eq!(client.restore(&session, 500).unwrap().1, b"after");
    drop(client);
    assert!(t.elapsed() < Duration::from_secs(20));
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}
