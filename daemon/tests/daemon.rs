//! hitlessd end to end (an integration test of this package, so that
//! `cargo test --workspace` builds hitlessd for every test that runs it): a simulated card process, the daemon in front of
//! it, applications as separate processes (under their own uids when the
//! test runs as root), the card reset and the daemon restarted under load.

use hitless_driver::daemon::{wire, DaemonClient};
use hitless_driver::firmware::{Firmware, OpenFlags};
use hitless_driver::Error;
use hitless_proto::daemon::{Header, FLAG_FD, HEADER_BYTES};
use hitless_proto::message::Request;
use hitless_proto::msg::{kind, tag, Code};
use hitless_proto::tlv::{Builder, Message};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{bin, free_port, scratch, start_card, start_daemon, Daemon};

fn am_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap()
}

/// `hitless` through the daemon, as `uid` when the test is root.
fn cli_as(uid: Option<u32>, daemon: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(bin("hitless"));
    cmd.arg("--card")
        .arg(format!("daemon:{}", daemon.display()))
        .args(args)
        .env_remove("HITLESS_CREDENTIALS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(u) = uid {
        cmd.uid(u).gid(u);
    }
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn sixteen_applications_share_the_card_through_resets_and_daemon_restarts() {
    let dir = scratch("soak");
    let card = start_card(&dir);
    let mut daemon = start_daemon(&dir, &card.socket, &[]);
    let root = am_root();
    let clients: Vec<Child> = (0..16u32)
        .map(|i| {
            let mut cmd = Command::new(bin("hitless-load"));
            cmd.arg("--socket")
                .arg(&daemon.socket)
                .args(["--app", &(300 + i).to_string()])
                .args(["--rounds", "12", "--objects", "3", "--max-len", "6000"])
                .args(["--seed", &i.to_string(), "--retry-for", "120"])
                .arg("--until")
                .arg(dir.join("stop"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if root {
                // Each application its own user, as on a real host.
                cmd.uid(20000 + i).gid(20000 + i);
            }
            cmd.spawn().unwrap()
        })
        .collect();
    // Under load: two warm resets of the card, one restart of the daemon.
    for step in 0..3 {
        std::thread::sleep(Duration::from_secs(4));
        if step == 1 {
            drop(daemon);
            daemon = start_daemon(&dir, &card.socket, &[]);
        } else {
            hitless_sim::serve::control_request(
                &card.control,
                "warm-reset",
                Duration::from_secs(30),
            )
            .unwrap();
        }
    }
    // The clients keep storing until the disruptions are over.
    std::fs::write(dir.join("stop"), b"").unwrap();
    let mut failures = Vec::new();
    let mut retries = 0u32;
    for (i, c) in clients.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let t = text(&out);
        if !out.status.success() {
            failures.push(format!("client {i}: {t}"));
        }
        if let Some(r) = t
            .split_whitespace()
            .find_map(|w| w.strip_prefix("retries="))
        {
            retries += r.parse::<u32>().unwrap_or(0);
        }
    }
    let log = std::fs::read_to_string(dir.join("hitlessd.log")).unwrap_or_default();
    assert!(failures.is_empty(), "{failures:#?}\nhitlessd log:\n{log}");
    // The daemon restart cut every connection that was open: the clients
    // must have reconnected (the test is not vacuous).
    assert!(retries > 0, "no client saw the daemon restart");
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_application_cannot_use_another_uids_application() {
    let dir = scratch("policy");
    let card = start_card(&dir);
    // Application 40 belongs to another uid (as if it had registered it);
    // the policy gives 50-59 to yet another uid.
    let (me, other) = if am_root() {
        (Some(21001), 21002)
    } else {
        (None, my_uid() + 1)
    };
    let state = dir.join("daemon-state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("owners"), format!("40 {other}\n")).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!("[[rule]]\napps = \"50-59\"\nuids = [{other}]\n"),
    )
    .unwrap();
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let d = start_daemon(
        &dir,
        &card.socket,
        &["--policy", policy.to_str().unwrap(), "--metrics", &metrics],
    );
    for app in ["40", "55"] {
        for args in [
            vec!["checkpoint", "--app", app, "-"],
            vec!["restore", "--app", app],
            vec!["list", "--app", app],
            vec!["delete", "--app", app],
        ] {
            let out = cli_as(me, &d.socket, &args, b"not mine");
            assert!(!out.status.success(), "{args:?} succeeded: {}", text(&out));
            assert!(
                text(&out).contains("may not use application"),
                "{args:?}: {}",
                text(&out)
            );
        }
    }
    // An application nobody owns yet becomes ours, and then works.
    let out = cli_as(me, &d.socket, &["checkpoint", "--app", "41", "-"], b"mine");
    assert!(out.status.success(), "{}", text(&out));
    let out = cli_as(me, &d.socket, &["restore", "--app", "41"], b"");
    assert_eq!(out.stdout, b"mine", "{}", text(&out));
    let owners = std::fs::read_to_string(state.join("owners")).unwrap();
    let mine = me.unwrap_or_else(my_uid);
    assert!(owners.contains(&format!("41 {mine}")), "{owners}");
    // Handles are the connection's: another connection guessing (here:
    // knowing) one gets nothing.
    let mut a = DaemonClient::connect(&d.socket, Duration::from_secs(20)).unwrap();
    let (s, _) = a.open_app(41, OpenFlags::all(), None).unwrap();
    let mut b = DaemonClient::connect(&d.socket, Duration::from_secs(20)).unwrap();
    match b.list(&s) {
        Err(Error::Firmware {
            code: Code::AuthFailed,
            ..
        }) => {}
        other => panic!("a handle of another connection answered {other:?}"),
    }
    match b.restore(&s, 0) {
        Err(Error::Firmware {
            code: Code::AuthFailed,
            ..
        }) => {}
        other => panic!("a handle of another connection answered {other:?}"),
    }
    // A read-only session cannot store.
    let (ro, _) = b.open_app(41, OpenFlags::read_only(), None).unwrap();
    match b.store(&ro, 1, 0, 0, false, b"x") {
        Err(Error::Firmware {
            code: Code::Permission,
            ..
        }) => {}
        other => panic!("a read-only session stored: {other:?}"),
    }
    assert_eq!(a.restore(&s, 0).unwrap().1, b"mine");
    // The refusals are counted, the card's state is there (curl: a client
    // this project did not write).
    let out = Command::new("curl")
        .args(["-sf", &format!("http://{metrics}/metrics")])
        .output()
        .expect("curl");
    let m = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "curl failed: {}", text(&out));
    let value = |name: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{m}"))
    };
    assert!(value("hitlessd_policy_refusals_total") >= 8.0, "{m}");
    assert!(
        value("hitlessd_requests_total{kind=\"store\"}") >= 1.0,
        "{m}"
    );
    assert!(
        value("hitlessd_errors_total{code=\"Permission\"}") >= 8.0,
        "{m}"
    );
    // The cold tier holds the applications' secrets: committed, boot OK.
    assert_eq!(value("hitlessd_boot_result{tier=\"cold\"}"), 1.0, "{m}");
    assert!(
        value("hitlessd_tier_image_bytes{tier=\"warm\"}") > 0.0,
        "{m}"
    );
    assert!(m.contains("hitlessd_request_seconds_bucket"), "{m}");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Send raw bytes, then read what the daemon answers (if anything).
fn poke(socket: &Path, bytes: &[u8]) -> Option<wire::Frame> {
    let s = UnixStream::connect(socket).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = (&s).write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    wire::recv(&s, Duration::from_secs(15), Duration::from_secs(15))
        .ok()
        .flatten()
}

fn code_of(f: &wire::Frame) -> Code {
    let m = Message::decode(&f.msg).expect("the daemon's answer is a TLV message");
    hitless_proto::msg::result_of(&m).unwrap().0
}

#[test]
fn bad_and_truncated_frames_get_an_error_and_never_crash_the_daemon() {
    let dir = scratch("frames");
    let card = start_card(&dir);
    let mut d = start_daemon(&dir, &card.socket, &["--idle-timeout", "5"]);
    let frame = |msg: &[u8], data: &[u8], flags: u16| {
        let mut h = Header::new(msg.len(), data.len(), false).unwrap();
        h.flags = flags;
        let mut b = h.encode().to_vec();
        b.extend_from_slice(msg);
        b.extend_from_slice(data);
        b
    };
    // Not a frame at all.
    let f = poke(&d.socket, &[0xAB; 64]).expect("an answer to garbage");
    assert_eq!(code_of(&f), Code::BadMessage);
    // A header that promises more than the limits.
    let mut big = Header::new(0, 0, false).unwrap().encode();
    big[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(code_of(&poke(&d.socket, &big).unwrap()), Code::BadMessage);
    // Truncated header, truncated message, truncated data: the peer goes
    // away; the daemon answers what it can and carries on.
    let good = Request::Status.encode().finish();
    let full = frame(good.as_slice(), &[], 0);
    for cut in [1, HEADER_BYTES - 1, HEADER_BYTES + 1, full.len() - 1] {
        if let Some(f) = poke(&d.socket, &full[..cut]) {
            assert_eq!(code_of(&f), Code::BadMessage, "cut at {cut}");
        }
    }
    // A well-framed message that is not TLV, an unknown kind, the fd flag
    // with no fd: an error each.
    assert_eq!(
        code_of(&poke(&d.socket, &frame(&[1, 2, 3], &[], 0)).unwrap()),
        Code::BadMessage
    );
    let unknown = Builder::new(0x3F).finish();
    assert_eq!(
        code_of(&poke(&d.socket, &frame(unknown.as_slice(), &[], 0)).unwrap()),
        Code::UnknownRequest
    );
    assert_eq!(
        code_of(&poke(&d.socket, &frame(good.as_slice(), &[], FLAG_FD)).unwrap()),
        Code::BadMessage
    );
    // A store whose data is not what it says.
    let store = Request::Store {
        object: 1,
        endpoint: 0,
        stage: 0,
        flags: 0,
        addr: 0,
        len: 5,
        crc: 0,
    }
    .encode()
    .u32(tag::HANDLE, 1)
    .finish();
    assert_eq!(
        code_of(&poke(&d.socket, &frame(store.as_slice(), b"12345", 0)).unwrap()),
        Code::AuthFailed,
        "no session 1 on a new connection"
    );
    // Seeded random frames: valid headers around random bodies.
    use rand::{Rng, RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    for _ in 0..150 {
        let mut body = vec![0u8; rng.gen_range(0..200)];
        rng.fill_bytes(&mut body);
        if !body.is_empty() {
            body[0] = [kind::STORE, kind::OPEN, kind::RESTORE, kind::LOG_READ][rng.gen_range(0..4)];
        }
        let f = poke(&d.socket, &frame(&body, &[], 0)).expect("an answer to every frame");
        assert_ne!(code_of(&f), Code::Ok, "random body {body:?}");
    }
    // A silent client is dropped after the idle timeout.
    let idle = UnixStream::connect(&d.socket).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut &idle, &mut buf).unwrap_or(0), 0);
    assert!(t.elapsed() < Duration::from_secs(15));
    // The daemon is alive and serves.
    assert!(d.child.try_wait().unwrap().is_none(), "hitlessd exited");
    let mut c = DaemonClient::connect(&d.socket, Duration::from_secs(20)).unwrap();
    let (s, _) = c.open_app(9, OpenFlags::all(), None).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    c.store(&s, 3, 0, 0, true, &big).unwrap();
    assert_eq!(c.restore(&s, 3).unwrap().1, big);
    match c.restore(&s, 99) {
        Err(Error::Firmware {
            code: Code::NotFound,
            ..
        }) => {}
        other => panic!("restore of a missing set: {other:?}"),
    }
    // The endpoint reaches the card: this one has no peer, so endpoint 2
    // names no card (never a silent restore from this card).
    match c.restore_from(&s, 3, 2) {
        Err(Error::Firmware {
            code: Code::Invalid,
            detail,
            ..
        }) => assert!(detail.contains("names no card"), "{detail}"),
        other => panic!("restore from endpoint 2: {:?}", other.map(|r| r.0)),
    }
    assert_eq!(c.restore_from(&s, 3, 0).unwrap().1, big);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hitlessd_serves_the_socket_systemd_passes() {
    use command_fds::{CommandFdExt, FdMapping};
    let dir = scratch("activation");
    let card = start_card(&dir);
    let path = dir.join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut cmd = Command::new(bin("hitlessd"));
    cmd.arg("--card")
        .arg(format!("vfio-user:{}", card.socket.display()))
        // Not this one: the passed socket wins.
        .arg("--socket")
        .arg(dir.join("unused.sock"))
        .arg("--state-dir")
        .arg(dir.join("daemon-state"))
        .env("LISTEN_FDS", "1")
        .env_remove("LISTEN_PID")
        .stderr(Stdio::null());
    cmd.fd_mappings(vec![FdMapping {
        parent_fd: std::os::fd::OwnedFd::from(listener),
        child_fd: 3,
    }])
    .unwrap();
    let _d = Daemon {
        child: cmd.spawn().unwrap(),
        socket: path.clone(),
    };
    let mut c = DaemonClient::connect(&path, Duration::from_secs(20)).unwrap();
    let (s, _) = c.open_app(12, OpenFlags::all(), None).unwrap();
    c.store(&s, 1, 0, 0, false, b"activated").unwrap();
    assert_eq!(c.restore(&s, 1).unwrap().1, b"activated");
    assert!(
        !dir.join("unused.sock").exists(),
        "hitlessd bound --socket too"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_logs_are_one_object_per_line_with_the_event_fields() {
    let dir = scratch("json-log");
    let card = start_card(&dir);
    let d = start_daemon(&dir, &card.socket, &["--log-format", "json"]);
    let mut c = DaemonClient::connect(&d.socket, Duration::from_secs(20)).unwrap();
    let (s, _) = c.open_app(21, OpenFlags::all(), None).unwrap();
    c.store(&s, 1, 0, 0, false, b"logged").unwrap();
    drop(c);
    drop(d);
    let log = std::fs::read_to_string(dir.join("hitlessd.log")).unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(events.len() >= 2, "{log}");
    for e in &events {
        assert!(
            e["timestamp"].is_string() && e["level"].is_string() && e["fields"].is_object(),
            "an event without timestamp, level or fields: {e}"
        );
    }
    // Events carry their subjects as fields, not only in the message text:
    // the card and the application the card registered.
    let event = |message: &str| {
        events
            .iter()
            .find(|e| e["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} event in {log}"))
    };
    let registered = event("application registered on the card");
    assert_eq!(registered["level"], "INFO");
    assert_eq!(registered["fields"]["app"], 21);
    let opened = event("card opened");
    assert_eq!(
        opened["fields"]["card"],
        format!("vfio-user:{}", card.socket.display())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_client_killed_mid_request_loses_nothing_and_leaks_nothing() {
    let dir = scratch("killed");
    let card = start_card(&dir);
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let d = start_daemon(&dir, &card.socket, &["--metrics", &metrics]);
    let mut c = DaemonClient::connect(&d.socket, Duration::from_secs(30)).unwrap();
    let (s, _) = c.open_app(60, OpenFlags::all(), None).unwrap();
    c.store(&s, 1, 0, 0, true, b"acknowledged").unwrap();
    // Clients that die with a 1 MiB store in flight: killed at once, and
    // killed while the daemon works on it.
    for pause_ms in [0u64, 30, 200] {
        let mut child = Command::new(bin("hitless"))
            .arg("--card")
            .arg(format!("daemon:{}", d.socket.display()))
            .args(["checkpoint", "--app", "60", "--object", "2", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&vec![7u8; 1 << 20])
            .unwrap();
        std::thread::sleep(Duration::from_millis(pause_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    // The acknowledged set is there; object 2 is whole if it is there.
    assert_eq!(c.restore(&s, 1).unwrap().1, b"acknowledged");
    match c.restore(&s, 2) {
        Ok((_, bytes)) => assert_eq!(bytes, vec![7u8; 1 << 20]),
        Err(Error::Firmware {
            code: Code::NotFound,
            ..
        }) => {}
        Err(e) => panic!("restore after the killed clients: {e}"),
    }
    drop(c);
    // Nothing left behind: every connection closed (the worker finished
    // what it had started; the daemon holds no session of theirs).
    let start = Instant::now();
    loop {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://{metrics}/metrics")])
            .output()
            .expect("curl");
        let m = String::from_utf8_lossy(&out.stdout).to_string();
        if m.lines().any(|l| l == "hitlessd_connections 0") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "connections still open:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_restarted_daemon_frees_the_entries_its_killed_predecessor_held() {
    let dir = scratch("entries");
    let card = start_card(&dir);
    let d = start_daemon(&dir, &card.socket, &[]);
    // As many applications as the daemon pools sessions for: every free
    // protection entry of the card is the first daemon's.
    let mut c = DaemonClient::connect(&d.socket, Duration::from_secs(30)).unwrap();
    for app in 70..84u32 {
        let (s, _) = c.open_app(app, OpenFlags::all(), None).unwrap();
        c.store(&s, 1, 0, 0, false, &app.to_le_bytes()).unwrap();
    }
    drop(c);
    // SIGKILL: no CLOSE reaches the card.
    drop(d);
    let d = start_daemon(&dir, &card.socket, &[]);
    let mut c = DaemonClient::connect(&d.socket, Duration::from_secs(30)).unwrap();
    let (s, _) = c
        .open_app(90, OpenFlags::all(), None)
        .expect("a new application after the daemon was killed");
    c.store(&s, 1, 0, 0, false, b"new").unwrap();
    for app in 70..84u32 {
        let (s, _) = c.open_app(app, OpenFlags::all(), None).unwrap();
        assert_eq!(c.restore(&s, 1).unwrap().1, app.to_le_bytes());
    }
    let log = std::fs::read_to_string(dir.join("hitlessd.log")).unwrap_or_default();
    assert!(log.contains("freed the protection entry"), "{log}");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
