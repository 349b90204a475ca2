//! The store browser (`hitlessd --http`): its JSON API over plain HTTP
//! (the token, bad input, the actions changing what it shows), and the
//! page in headless Chromium from Debian's packages driven over the
//! DevTools protocol (a pipe: `--remote-debugging-pipe`), with screenshots
//! saved in the test's scratch directory and their paths printed.

use hitless_driver::daemon::DaemonClient;
use hitless_driver::firmware::{Firmware, OpenFlags, Session};
use hitless_driver::Error;
use hitless_hdl::contract::crc32c;
use hitless_proto::msg::Code;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{bin, free_port, scratch, start_card, start_daemon, Daemon, Killed};

/// A simulated card, hitlessd in front of it with the store browser.
struct Rig {
    dir: PathBuf,
    socket: PathBuf,
    /// `127.0.0.1:PORT`
    http: String,
    token: String,
    _daemon: Daemon,
    _card: hitless_sim::serve::CardProcess,
}

impl Rig {
    fn start(name: &str) -> Rig {
        let dir = scratch(name);
        let card = start_card(&dir);
        let state = dir.join("daemon-state");
        let http = format!("127.0.0.1:{}", free_port());
        let daemon = start_daemon(&dir, &card.socket, &["--http", &http]);
        let socket = daemon.socket.clone();
        let start = Instant::now();
        let token_file = state.join("http-token");
        while TcpStream::connect(&http).is_err() || !token_file.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "hitlessd did not start: {}",
                std::fs::read_to_string(dir.join("hitlessd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let token = std::fs::read_to_string(&token_file)
            .unwrap()
            .trim()
            .to_string();
        Rig {
            dir,
            socket,
            http,
            token,
            _daemon: daemon,
            _card: card,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}?token={}", self.http, self.token)
    }

    fn client(&self) -> DaemonClient {
        DaemonClient::connect(&self.socket, Duration::from_secs(20)).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("hitlessd.log")).unwrap_or_default()
    }

    /// An authenticated request (token in the header); status and JSON.
    fn api(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let (status, text) = http(
            &self.http,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nX-Hitless-Token: {}\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                self.http,
                self.token,
                body.len()
            ),
        );
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    fn get(&self, path: &str) -> Value {
        let (s, v) = self.api("GET", path, "");
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    fn post(&self, path: &str) -> Value {
        let (s, v) = self.api("POST", path, "");
        assert_eq!(s, 200, "POST {path}: {v}");
        v
    }
}

/// One raw HTTP exchange: the status and the body.
fn http(addr: &str, raw: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The sets a daemon client sees of `app`: (set, tier, len, crc).
fn card_sets(c: &mut DaemonClient, s: &Session) -> Vec<(u32, String, u32, String)> {
    let mut v: Vec<_> = c
        .list(s)
        .unwrap()
        .iter()
        .map(|i| {
            (
                i.object,
                if i.tier == hitless_proto::msg::TierSel::Cold {
                    "cold".to_string()
                } else {
                    "warm".to_string()
                },
                i.len,
                format!("{:08x}", i.crc),
            )
        })
        .collect();
    v.sort();
    v
}

fn page_sets(v: &Value) -> Vec<(u32, String, u32, String)> {
    let mut out: Vec<_> = v["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["set"].as_u64().unwrap() as u32,
                s["tier"].as_str().unwrap().to_string(),
                s["len"].as_u64().unwrap() as u32,
                s["crc"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn assert_suspended_refusal(r: hitless_driver::Result<()>) {
    match r {
        Err(Error::Firmware {
            code: Code::Permission,
            detail,
            ..
        }) if detail.contains("suspended") => {}
        other => panic!("a store of a suspended application answered {other:?}"),
    }
}

#[test]
fn store_browser_api_needs_the_token_refuses_bad_input_and_its_actions_show() {
    let rig = Rig::start("browser-api");
    // The token file: the daemon's only, and what it logged.
    let meta = std::fs::metadata(rig.dir.join("daemon-state/http-token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    assert!(rig.log().contains(&rig.url("/")), "{}", rig.log());

    // Sets stored through the daemon, two applications.
    let mut c = rig.client();
    let (s7, _) = c.open_app(7, OpenFlags::all(), None).unwrap();
    let (s8, _) = c.open_app(8, OpenFlags::all(), None).unwrap();
    c.store(&s7, 1, 0, 0, false, b"seven one").unwrap();
    c.store(&s7, 2, 0, 1, true, b"seven two, cold").unwrap();
    c.store(&s8, 1, 0, 0, false, b"eight").unwrap();
    c.log_append(&s7, 1, false, false, b"log record of seven")
        .unwrap();

    // No token, a wrong one, a cookie alone on a POST, another Host, a
    // foreign Origin: refused.
    let host = &rig.http;
    let plain = |raw: String| http(host, &raw);
    let (st, body) = plain(format!("GET /api/status HTTP/1.1\r\nHost: {host}\r\n\r\n"));
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("token"), "{body}");
    let (st, _) = plain(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"));
    assert_eq!(st, 401);
    let (st, _) = plain(format!(
        "GET /api/status?token=00{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
        &rig.token[2..]
    ));
    assert_eq!(st, 401);
    let (st, _) = plain(format!(
        "GET /api/status HTTP/1.1\r\nHost: {host}\r\nCookie: hitless_token=nope\r\n\r\n"
    ));
    assert_eq!(st, 401);
    let (st, _) = plain(format!(
        "GET /api/status HTTP/1.1\r\nHost: {host}\r\nCookie: hitless_token={}\r\n\r\n",
        rig.token
    ));
    assert_eq!(st, 200, "the cookie is a token");
    let (st, body) = plain(format!(
        "POST /api/apps/7/suspend HTTP/1.1\r\nHost: {host}\r\nCookie: hitless_token={}\r\n\r\n",
        rig.token
    ));
    assert_eq!(st, 403, "a POST with the cookie alone: {body}");
    let (st, body) = plain(format!(
        "GET /api/status?token={} HTTP/1.1\r\nHost: evil.example:80\r\n\r\n",
        rig.token
    ));
    assert_eq!(st, 421, "a rebound host name: {body}");
    let (st, _) = plain(format!(
        "GET /api/status?token={} HTTP/1.1\r\n\r\n",
        rig.token
    ));
    assert_eq!(st, 421, "no Host");
    let (st, body) = plain(format!(
        "POST /api/apps/7/suspend HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\n\
         X-Hitless-Token: {}\r\n\r\n",
        rig.token
    ));
    assert_eq!(st, 403, "a foreign origin: {body}");
    // The page, with the token, sets the cookie.
    let (st, page) = plain(format!(
        "GET /?token={} HTTP/1.1\r\nHost: {host}\r\n\r\n",
        rig.token
    ));
    assert_eq!(st, 200);
    assert!(page.contains("hitlessd store browser"));

    // What the views show is what was stored.
    let apps = rig.get("/api/apps");
    let ids: Vec<u64> = apps["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["app"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [7, 8], "{apps}");
    for a in apps["apps"].as_array().unwrap() {
        assert_eq!(a["suspended"], json!(false));
        let app = a["app"].as_u64().unwrap();
        assert_eq!(
            rig.get(&format!("/api/apps/{app}/heaps"))["heaps"],
            json!([]),
            "no heaps yet"
        );
    }
    let sets = rig.get("/api/apps/7/sets");
    assert_eq!(
        page_sets(&sets),
        [
            (1, "warm".into(), 9, format!("{:08x}", crc32c(b"seven one"))),
            (
                2,
                "cold".into(),
                15,
                format!("{:08x}", crc32c(b"seven two, cold"))
            ),
        ],
        "{sets}"
    );
    assert_eq!(page_sets(&sets), card_sets(&mut c, &s7));
    assert_eq!(sets["sets"][0]["stage"], json!(0));
    assert_eq!(sets["sets"][1]["stage"], json!(1));
    assert_eq!(sets["sets"][1]["endpoint"], json!(0));
    let status = rig.get("/api/status");
    let warm = &status["tiers"][0];
    assert_eq!(warm["tier"], json!("warm"), "{status}");
    assert!(warm["sets"].as_u64().unwrap() >= 2, "{status}");
    assert!(warm["image_bytes"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(status["tiers"][1]["boot_result"], json!("ok"), "{status}");
    let log = rig.get("/api/log?app=7");
    assert_eq!(log["records_total"], json!(1), "{log}");
    assert_eq!(log["records"][0]["text"], json!("log record of seven"));
    assert_eq!(
        rig.get("/api/log?app=7&tier=cold")["records_total"],
        json!(0)
    );
    let peer = rig.get("/api/peer");
    assert_eq!(peer["configured"], json!(false), "{peer}");
    assert!(peer["detail"]
        .as_str()
        .unwrap()
        .starts_with("not configured"));
    let image = rig.get("/api/image");
    assert_eq!(image["configured"], json!(false), "{image}");
    assert!(image["detail"]
        .as_str()
        .unwrap()
        .starts_with("not configured"));

    // Bad input: 4xx with a message, the daemon goes on.
    for (method, path, body, want) in [
        ("GET", "/api/apps/abc/sets", "", 400),
        ("GET", "/api/apps/-7/sets", "", 400),
        ("GET", "/api/apps/99999999999/sets", "", 400),
        ("GET", "/api/apps/4294967296/sets", "", 400),
        ("GET", "/api/apps/9/sets", "", 404),
        ("GET", "/api/log", "", 400),
        ("GET", "/api/log?app=7&tier=hot", "", 400),
        ("GET", "/api/log?app=7&limit=0", "", 400),
        ("GET", "/api/log?app=7&limit=1000000", "", 400),
        ("GET", "/api/nothing", "", 404),
        ("PUT", "/api/apps/7/suspend", "", 405),
        ("POST", "/api/apps/7/sets/x/remove", "", 400),
        ("POST", "/api/apps/7/sets/77/remove", "", 404),
        ("POST", "/api/apps/9/sets/1/remove", "", 404),
        ("POST", "/api/apps/9/suspend", "", 404),
        ("POST", "/api/apps/7/explode", "", 404),
        ("POST", "/api/apps/7/restart", "not json", 400),
        ("POST", "/api/apps/7/restart", r#"{"version": "x"}"#, 400),
        ("POST", "/api/apps/7/restart", "", 400),
        (
            "POST",
            "/api/apps/7/restart",
            r#"{"heap": -1, "version": 1}"#,
            400,
        ),
        ("GET", "/api/apps/9/heaps", "", 404),
    ] {
        let (st, v) = rig.api(method, path, body);
        assert_eq!(st, want, "{method} {path}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {v}"
        );
    }
    let (st, v) = rig.api("POST", "/api/apps/7/restart", r#"{"version": 3}"#);
    assert_eq!(st, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("no versions"), "{v}");
    let big = "x".repeat(5000);
    let (st, _) = rig.api("POST", "/api/apps/7/restart", &big);
    assert_eq!(st, 413);
    let (st, _) = plain(format!(
        "GET /{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
        "a".repeat(20000)
    ));
    assert_eq!(st, 431);
    let (st, _) = plain("garbage\r\n\r\n".into());
    assert_eq!(st, 400);
    // A client that sends half a request and waits is cut off.
    let mut slow = TcpStream::connect(host).unwrap();
    slow.write_all(b"GET /api/status HTTP/1.1\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let t = Instant::now();
    let mut out = String::new();
    let _ = slow.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(15));

    // Remove: gone from the view and from the card.
    let r = rig.post("/api/apps/7/sets/1/remove");
    assert_eq!(r["removed"], json!({"app": 7, "set": 1}));
    let sets = rig.get("/api/apps/7/sets");
    assert_eq!(page_sets(&sets).len(), 1, "{sets}");
    assert_eq!(page_sets(&sets), card_sets(&mut c, &s7));
    assert!(card_sets(&mut c, &s7).iter().all(|s| s.0 != 1));

    // Suspend: shown, the application's stores refused with a clear
    // message, its reads and the other application go on.
    rig.post("/api/apps/7/suspend");
    let a7 = rig.get("/api/apps/7");
    assert_eq!(a7["suspended"], json!(true), "{a7}");
    assert_eq!(rig.get("/api/apps/7/sets")["suspended"], json!(true));
    assert_eq!(rig.get("/api/status")["suspended"], json!([7]));
    assert_suspended_refusal(c.store(&s7, 3, 0, 0, false, b"refused"));
    assert_suspended_refusal(c.delete(&s7, 2));
    assert_suspended_refusal(c.log_append(&s7, 1, false, false, b"refused").map(|_| ()));
    assert_eq!(c.restore(&s7, 2).unwrap().1, b"seven two, cold");
    c.store(&s8, 2, 0, 0, false, b"eight goes on").unwrap();
    assert_eq!(
        std::fs::read_to_string(rig.dir.join("daemon-state/suspended")).unwrap(),
        "7\n"
    );
    // Resume: stores again.
    rig.post("/api/apps/7/resume");
    assert_eq!(rig.get("/api/apps/7")["suspended"], json!(false));
    c.store(&s7, 3, 0, 0, false, b"back").unwrap();
    assert_eq!(
        page_sets(&rig.get("/api/apps/7/sets")),
        card_sets(&mut c, &s7)
    );

    // Heaps: application 8's heap 2, three versions, listed with the
    // newest current; a restart is refused while the application holds
    // the heap, and once it let go makes a new current version with the
    // chosen version's pages and state.
    let v = |n: u8| vec![n; 4096];
    c.heap_open(&s8, 2, 16, 4, true).unwrap();
    for n in 1..=3u8 {
        let page = v(n);
        c.heap_stage(&s8, 2, &[(0, &page[..]), (n as u32, &page[..])])
            .unwrap();
        c.heap_commit(&s8, 2, &[n; 3]).unwrap();
    }
    let heaps = rig.get("/api/apps/8/heaps");
    assert_eq!(heaps["heaps"][0]["heap"], json!(2), "{heaps}");
    assert_eq!(heaps["heaps"][0]["open"], json!(true), "{heaps}");
    assert_eq!(heaps["heaps"][0]["current"], json!(3), "{heaps}");
    let (st, r) = rig.api(
        "POST",
        "/api/apps/8/restart",
        r#"{"heap": 2, "version": 1}"#,
    );
    assert_eq!(st, 409, "held by the application: {r}");
    assert!(
        r["error"].as_str().unwrap().contains("running process"),
        "{r}"
    );
    c.heap_close(&s8, 2).unwrap();
    let heaps = rig.get("/api/apps/8/heaps");
    let h = &heaps["heaps"][0];
    assert_eq!(h["open"], json!(false), "{heaps}");
    let listed: Vec<(u64, bool)> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [(1, false), (2, false), (3, true)], "{heaps}");
    let (st, r) = rig.api(
        "POST",
        "/api/apps/8/restart",
        r#"{"heap": 2, "version": 9}"#,
    );
    assert_eq!(st, 404, "{r}");
    let (st, r) = rig.api(
        "POST",
        "/api/apps/8/restart",
        r#"{"heap": 7, "version": 1}"#,
    );
    assert!(st == 400 || st == 404, "no heap 7: {st} {r}");
    let r = rig.api("POST", "/api/apps/8/restart", r#"{"version": 1}"#);
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["version"], json!(4), "{}", r.1);
    let heaps = rig.get("/api/apps/8/heaps");
    let h = &heaps["heaps"][0];
    assert_eq!(h["current"], json!(4), "{heaps}");
    assert_eq!(h["versions"][3]["restarted_from"], json!(1), "{heaps}");
    // The application's next open starts from it: version 1's bytes.
    let vs = c.heap_open(&s8, 2, 0, 0, true).unwrap();
    assert_eq!(vs.last().unwrap().version, 4);
    let got = c.heap_read(&s8, 2, &[0, 1, 2, 3]).unwrap();
    assert_eq!(got, [Some(v(1)), Some(v(1)), None, None]);
    assert_eq!(c.heap_checkout(&s8, 2, 4).unwrap().1, [1u8; 3]);
    c.heap_close(&s8, 2).unwrap();
    let dir = rig.dir.clone();
    drop(rig);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hitlessd_refuses_a_non_loopback_http_address_without_allow_remote() {
    let dir = scratch("browser-remote");
    let out = Command::new(bin("hitlessd"))
        .args(["--card", "vfio-user:/nonexistent/card.sock"])
        .arg("--socket")
        .arg(dir.join("d.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--http", "0.0.0.0:0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("not a loopback address"), "{text}");
    assert!(text.contains("--http-allow-remote"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------
// Headless Chromium over the DevTools protocol (a pipe, no npm, no
// WebSocket: `--remote-debugging-pipe` reads commands on fd 3 and writes
// answers on fd 4, NUL-separated JSON).

fn chromium() -> PathBuf {
    let p = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        p.exists(),
        "{} not found: the store browser test needs Chromium from Debian's packages: \
         `apt-get install -y chromium` (or `cargo xtask setup`), or set CHROMIUM=/path",
        p.display()
    );
    p
}

struct Cdp {
    _browser: Killed,
    to: std::fs::File,
    from: std::sync::mpsc::Receiver<Value>,
    next: u64,
    session: Option<String>,
    /// Where a failed wait saves its screenshot.
    failed_shot: PathBuf,
}

impl Cdp {
    fn launch(profile: &Path) -> Cdp {
        use command_fds::{CommandFdExt, FdMapping};
        let (cmd_r, cmd_w) = std::io::pipe().unwrap();
        let (out_r, out_w) = std::io::pipe().unwrap();
        let mut cmd = Command::new(chromium());
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--window-size=1200,1400",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd.fd_mappings(vec![
            FdMapping {
                parent_fd: std::os::fd::OwnedFd::from(cmd_r),
                child_fd: 3,
            },
            FdMapping {
                parent_fd: std::os::fd::OwnedFd::from(out_w),
                child_fd: 4,
            },
        ])
        .unwrap();
        let child = Killed(cmd.spawn().expect("starting chromium"));
        // The child has its ends; only ours stay open here.
        drop(cmd);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(out_r);
            loop {
                let mut buf = Vec::new();
                match std::io::BufRead::read_until(&mut r, 0, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if buf.last() == Some(&0) {
                            buf.pop();
                        }
                        if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                            if tx.send(v).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        Cdp {
            _browser: child,
            to: std::fs::File::from(std::os::fd::OwnedFd::from(cmd_w)),
            from: rx,
            next: 1,
            session: None,
            failed_shot: profile.with_file_name("browser-failed.png"),
        }
    }

    /// A command (to the page's session once attached); its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).expect("writing to chromium");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("chromium did not answer {method}: {e}"));
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn open(&mut self, url: &str) {
        let t = self.call("Target.createTarget", json!({ "url": url }));
        let target = t["targetId"].as_str().expect("targetId").to_string();
        let a = self.call(
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        self.session = Some(a["sessionId"].as_str().expect("sessionId").to_string());
    }

    /// Evaluate `js` in the page (promises awaited); its value.
    fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": js, "awaitPromise": true, "returnByValue": true }),
        );
        assert!(
            r.get("exceptionDetails").is_none(),
            "the page threw on {js}: {r}"
        );
        r["result"]["value"].clone()
    }

    /// Wait until `js` is true in the page; `what` says what the page
    /// failed to show.
    fn wait_for(&mut self, js: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.eval(js) == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                let body = self.eval("document.body.innerText");
                let shot = self.failed_shot.clone();
                self.screenshot(&shot);
                panic!(
                    "the page does not show {what} ({js}); it shows (screenshot {}):\n{}",
                    shot.display(),
                    body.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64(r["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap();
        println!("screenshot: {}", path.display());
    }

    fn generation(&mut self) -> u64 {
        self.eval("Number(document.body.dataset.generation)")
            .as_u64()
            .unwrap_or(0)
    }

    /// Click what `selector` names and wait for the page's refresh after it.
    fn click(&mut self, selector: &str) {
        let before = self.generation();
        let clicked = self.eval(&format!(
            "(() => {{ window.confirm = () => true; const b = document.querySelector({}); \
             if (!b) return false; b.click(); return true; }})()",
            json!(selector)
        ));
        assert_eq!(clicked, json!(true), "nothing to click at {selector}");
        self.wait_for(
            &format!("Number(document.body.dataset.generation) > {before}"),
            &format!("a refresh after clicking {selector}"),
        );
    }
}

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The rows of the sets table the page shows: (app, set, tier, len, crc).
const PAGE_SETS: &str = "JSON.stringify([...document.querySelectorAll('tr.set')].map(r => \
    [Number(r.dataset.app), Number(r.dataset.set), r.cells[1].textContent, \
     Number(r.cells[4].textContent), r.cells[5].textContent]))";

#[test]
fn store_browser_in_headless_chromium_shows_removes_and_suspends() {
    let chromium = chromium();
    let rig = Rig::start("browser-chromium");
    let mut c = rig.client();
    let (s7, _) = c.open_app(7, OpenFlags::all(), None).unwrap();
    let (s8, _) = c.open_app(8, OpenFlags::all(), None).unwrap();
    c.store(&s7, 1, 0, 0, false, b"seven one").unwrap();
    c.store(&s7, 2, 0, 2, true, b"seven two").unwrap();
    c.store(&s8, 5, 0, 0, false, b"eight five").unwrap();
    c.log_append(&s7, 1, false, false, b"hello from seven")
        .unwrap();
    // Application 7's heap 0: three versions, page 0 holding the number.
    c.heap_open(&s7, 0, 8, 4, true).unwrap();
    for n in 1..=3u8 {
        c.heap_stage(&s7, 0, &[(0, &[n; 4096][..])]).unwrap();
        c.heap_commit(&s7, 0, &[n]).unwrap();
    }
    c.heap_close(&s7, 0).unwrap();

    // A read-only look first, as an operator's script would:
    // --dump-dom of the page after its scripts ran.
    let out = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            rig.dir.join("chromium-dump").display()
        ))
        .arg("--dump-dom")
        .arg(rig.url("/"))
        .stderr(Stdio::null())
        .output()
        .expect("chromium --dump-dom");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("hitlessd store browser") && dom.contains("application 7"),
        "--dump-dom: {dom}"
    );

    let mut b = Cdp::launch(&rig.dir.join("chromium-profile"));
    b.open(&rig.url("/"));
    b.wait_for(
        "Number(document.body.dataset.generation) >= 1",
        "its first load",
    );
    let shot = |b: &mut Cdp, name: &str| b.screenshot(&rig.dir.join(name));
    shot(&mut b, "browser-1-loaded.png");

    // The page shows what was stored through the daemon.
    let shown: Value = serde_json::from_str(b.eval(PAGE_SETS).as_str().unwrap()).unwrap();
    let crc = |d: &[u8]| format!("{:08x}", crc32c(d));
    assert_eq!(
        shown,
        json!([
            [7, 1, "warm", 9, crc(b"seven one")],
            [7, 2, "cold", 9, crc(b"seven two")],
            [8, 5, "warm", 10, crc(b"eight five")],
        ]),
        "{}",
        b.eval("document.body.innerText")
    );
    let status = rig.get("/api/status");
    let tier_sets = b
        .eval("[...document.querySelectorAll('tr.tier')].map(r => Number(r.cells[3].textContent))");
    assert_eq!(
        tier_sets,
        json!([status["tiers"][0]["sets"], status["tiers"][1]["sets"]])
    );
    assert_eq!(
        b.eval("[...document.querySelectorAll('tr.log-record')].map(r => r.cells[5].textContent)"),
        json!(["hello from seven"])
    );
    assert_eq!(
        b.eval("[...document.querySelectorAll('.not-configured')].length"),
        json!(2),
        "peer and images: not configured"
    );

    // Remove set 1 of application 7: gone from the page and the card.
    b.click("button[data-action=remove][data-app='7'][data-set='1']");
    b.wait_for(
        "document.querySelector(\"tr.set[data-app='7'][data-set='1']\") === null",
        "set 1 of application 7 removed",
    );
    b.wait_for(
        "document.querySelector(\"tr.set[data-app='7'][data-set='2']\") !== null",
        "set 2 of application 7 still there",
    );
    shot(&mut b, "browser-2-removed.png");
    assert!(
        card_sets(&mut c, &s7).iter().all(|s| s.0 != 1),
        "the card still has set 1"
    );

    // Suspend application 7: the page says so, its store is refused.
    b.click("button[data-action=suspend][data-app='7']");
    b.wait_for(
        "document.querySelector(\"section.app[data-app='7'] .app-state\").textContent === 'suspended'",
        "application 7 suspended",
    );
    b.wait_for(
        "document.querySelector(\"section.app[data-app='8'] .app-state\").textContent === 'active'",
        "application 8 active",
    );
    shot(&mut b, "browser-3-suspended.png");
    assert_suspended_refusal(c.store(&s7, 3, 0, 0, false, b"while suspended"));

    // Restart heap 0 from version 1 (an operator's action, allowed while
    // the application is suspended): the page shows a new current version
    // made from it, and the application reads version 1's bytes.
    let current = "JSON.stringify([...document.querySelectorAll(\"tr.heap-version[data-app='7'][data-current='true']\")]\
        .map(r => [Number(r.dataset.heap), Number(r.dataset.version), r.cells[4].textContent]))";
    assert_eq!(
        b.eval(current),
        json!(json!([[0, 3, "current"]]).to_string()),
        "{}",
        b.eval("document.body.innerText")
    );
    b.click("button[data-action=restart][data-app='7'][data-heap='0'][data-version='1']");
    b.wait_for(
        "document.querySelector(\"tr.heap-version[data-app='7'][data-current='true']\")?.dataset.version === '4'",
        "version 4 current after the restart",
    );
    assert_eq!(
        b.eval(current),
        json!(json!([[0, 4, "current (restarted from version 1)"]]).to_string())
    );
    shot(&mut b, "browser-3b-restarted.png");
    c.heap_open(&s7, 0, 0, 0, true).unwrap();
    assert_eq!(
        c.heap_read(&s7, 0, &[0]).unwrap(),
        [Some(vec![1u8; 4096])],
        "the heap's bytes are version 1's"
    );
    c.heap_close(&s7, 0).unwrap();

    // Resume: the page shows it active, stores go through again.
    b.click("button[data-action=resume][data-app='7']");
    b.wait_for(
        "document.querySelector(\"section.app[data-app='7'] .app-state\").textContent === 'active'",
        "application 7 resumed",
    );
    c.store(&s7, 3, 0, 0, false, b"after resume").unwrap();
    b.click("#refresh");
    b.wait_for(
        "document.querySelector(\"tr.set[data-app='7'][data-set='3']\") !== null",
        "the set stored after resuming",
    );
    shot(&mut b, "browser-4-resumed.png");
    println!(
        "store browser pages and hitlessd log in {}",
        rig.dir.display()
    );
}
