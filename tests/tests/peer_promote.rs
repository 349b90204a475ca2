//! `hitless peer promote` on a replicated pair without an arbiter (two
//! `hitless-sim serve --node` processes, no witness, no etcd, sync mode),
//! all through the CLI: no master at start (stores refused), one card
//! promoted, sets stored, that card killed, the other promoted: every
//! acknowledged set is there; the old card returns as its slave. Then
//! both cards power-cycled while holding a warm set: neither is master,
//! a promotion is refused saying the warm tier was lost and how to
//! accept it, accepted with `--accept-lost-warm` (which says one warm set
//! is gone), the cold sets are intact and the warm one gone; the other
//! card follows it again. Both binaries are found next to this test.

use hitless_sim::serve::{control_request, spawn_card, CardProcess};
use hitless_tests::bin;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

struct Pair {
    dir: PathBuf,
    key: PathBuf,
    addrs: [String; 2],
}

impl Pair {
    fn card_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("card{}", i + 1))
    }
    fn start(&self, i: usize) -> CardProcess {
        let (node, peer) = (i + 1, 2 - i);
        let peer_arg = format!("{peer}={}", self.addrs[1 - i]);
        let key = self.key.display().to_string();
        let d = self.card_dir(i);
        std::fs::create_dir_all(&d).unwrap();
        spawn_card(
            &bin("hitless-sim"),
            &d,
            &[
                "--node",
                &node.to_string(),
                "--listen",
                &self.addrs[i],
                "--peer",
                &peer_arg,
                "--pair-key",
                &key,
                "--mode",
                "sync",
                "--heartbeat-ms",
                "200",
            ],
            Duration::from_secs(10),
        )
        .expect("a card process")
    }
    fn cli(&self, i: usize, args: &[&str]) -> Output {
        let card = format!("vfio-user:{}", self.card_dir(i).join("card.sock").display());
        Command::new(bin("hitless"))
            .args(["--card", &card, "--timeout", "8", "--credentials"])
            .arg(self.dir.join("creds"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("the hitless CLI")
    }
    fn json(&self, i: usize, args: &[&str]) -> serde_json::Value {
        let out = self.cli(i, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON from the CLI")
    }
    fn role(&self, i: usize) -> Option<String> {
        let out = self.cli(i, &["peer", "status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["role"].as_str().map(String::from)
    }
    /// Wait until card `i` reports `role` (and, for a slave, follows
    /// `master`).
    fn wait_role(&self, i: usize, role: &str, master: Option<u64>) {
        let t = Instant::now();
        loop {
            let out = self.cli(i, &["peer", "status", "--json"]);
            let v: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            if v["role"] == role && master.is_none_or(|m| v["master"] == m) {
                return;
            }
            assert!(t.elapsed() < LIMIT, "card {}: {v} is not {role}", i + 1);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    fn checkpoint(&self, i: usize, object: u32, cold: bool, data: &[u8]) -> Output {
        let f = self.dir.join(format!("set-{object}"));
        std::fs::write(&f, data).unwrap();
        let o = object.to_string();
        let f = f.display().to_string();
        let mut args = vec!["checkpoint", "--app", "9", "--object", &o];
        if cold {
            args.push("--cold");
        }
        args.push(&f);
        self.cli(i, &args)
    }
    fn restore(&self, i: usize, object: u32) -> Output {
        self.cli(
            i,
            &["restore", "--app", "9", "--object", &object.to_string()],
        )
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn data(object: u32) -> Vec<u8> {
    (0..4000 + object * 1000)
        .map(|i| (i.wrapping_mul(31) ^ object) as u8)
        .collect()
}

fn power_cycle(dir: &Path) {
    let r = control_request(&dir.join("card.ctl"), "power-cycle", LIMIT);
    assert!(r.is_ok(), "power cycle: {r:?}");
}

#[test]
fn an_operator_promotes_a_card_of_a_pair_without_an_arbiter() {
    let dir = std::env::temp_dir().join(format!("hitless-promote-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("creds")).unwrap();
    let key = dir.join("pair.key");
    std::fs::write(&key, "6b".repeat(32)).unwrap();
    let pair = Pair {
        addrs: [
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{}", free_port()),
        ],
        dir: dir.clone(),
        key,
    };
    let mut cards = [Some(pair.start(0)), Some(pair.start(1))];

    // Without an arbiter nobody becomes master by itself.
    std::thread::sleep(Duration::from_millis(1200));
    for i in 0..2 {
        assert_ne!(pair.role(i).as_deref(), Some("master"), "card {}", i + 1);
    }
    let out = pair.checkpoint(0, 1, true, &data(1));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not the master"),
        "{}",
        text(&out.stderr)
    );

    // The operator promotes card 1: a new epoch; card 2 follows it.
    let v = pair.json(0, &["peer", "promote", "--json"]);
    assert_eq!(v["master"], 1, "{v}");
    assert!(v["epoch"].as_u64() > v["from_epoch"].as_u64(), "{v}");
    assert!(v.get("lost_warm").is_none(), "{v}");
    pair.wait_role(1, "slave", Some(1));
    // Promoting the master again changes nothing.
    let again = pair.json(0, &["peer", "promote", "--json"]);
    assert_eq!(again["epoch"], v["epoch"], "{again}");

    // Sets acknowledged in sync mode (the slave has them durable).
    let sets = [(1, true), (2, false), (3, true)];
    for (object, cold) in sets {
        let out = pair.checkpoint(0, object, cold, &data(object));
        assert!(out.status.success(), "set {object}: {}", text(&out.stderr));
    }

    // Card 1 dies; the operator promotes card 2: every set is there.
    cards[0] = None;
    let out = pair.cli(1, &["peer", "promote"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("node 2") && said.contains("is master in epoch"),
        "{said}"
    );
    for (object, _) in sets {
        let out = pair.restore(1, object);
        assert!(out.status.success(), "set {object}: {}", text(&out.stderr));
        assert!(
            out.stdout == data(object),
            "set {object} differs after the promotion"
        );
    }
    // Card 1 returns: fenced by the newer epoch, it follows card 2.
    cards[0] = Some(pair.start(0));
    pair.wait_role(0, "slave", Some(2));

    // Both cards power-cycled while holding a warm set: neither is whole,
    // so neither is master.
    let t = Instant::now();
    loop {
        let s = pair.json(1, &["peer", "status", "--json"]);
        if s["in_sync_slaves"] == 1 {
            break;
        }
        assert!(t.elapsed() < LIMIT, "card 1 never in sync: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    power_cycle(&pair.card_dir(0));
    power_cycle(&pair.card_dir(1));
    pair.wait_role(1, "standby", None);
    std::thread::sleep(Duration::from_millis(800));
    for i in 0..2 {
        assert_ne!(pair.role(i).as_deref(), Some("master"), "card {}", i + 1);
    }
    let out = pair.cli(1, &["peer", "promote"]);
    assert!(!out.status.success(), "promoted without accepting the loss");
    let err = text(&out.stderr);
    assert!(
        err.contains("lost the warm tier") && err.contains("--accept-lost-warm"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let v = pair.json(1, &["peer", "promote", "--accept-lost-warm", "--json"]);
    assert_eq!(v["master"], 2, "{v}");
    assert_eq!(v["lost_warm"]["sets"], 1, "{v}");
    // The cold sets are intact, the warm one is gone.
    for (object, cold) in sets {
        let out = pair.restore(1, object);
        if cold {
            assert!(
                out.stdout == data(object),
                "cold set {object}: {}",
                text(&out.stderr)
            );
        } else {
            assert!(!out.status.success(), "the lost warm set {object} restored");
        }
    }
    // Card 1 gets a snapshot from the new master and follows it.
    pair.wait_role(0, "slave", Some(2));
    let out = pair.checkpoint(1, 4, false, &data(4));
    assert!(out.status.success(), "{}", text(&out.stderr));
    drop(cards);
    let _ = std::fs::remove_dir_all(&dir);
}
