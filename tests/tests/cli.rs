//! The `hitless` CLI against a real `hitless-sim` card process.
//! Both binaries are built by `cargo test --workspace` (as `cargo xtask
//! test` runs it) and found next to this test executable.

use hitless_tests::bin;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn start_sim(dir: &Path) -> (hitless_sim::serve::CardProcess, String) {
    let p = hitless_sim::serve::spawn_card(&bin("hitless-sim"), dir, &[], Duration::from_secs(10))
        .unwrap();
    let card = format!("vfio-user:{}", p.socket.display());
    (p, card)
}

fn hitless(card: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    hitless_with(card, None, args, stdin)
}

fn hitless_with(card: &str, creds: Option<&Path>, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(bin("hitless"));
    cmd.args(["--card", card, "--timeout", "5"]);
    if let Some(c) = creds {
        cmd.arg("--credentials").arg(c);
    }
    cmd.args(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cli_records_stages_log_and_status() {
    let dir = std::env::temp_dir().join(format!("hitless-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (sim, card) = start_sim(&dir);
    let creds = dir.join("creds");
    let run = |args: &[&str], stdin: Option<&[u8]>| hitless_with(&card, Some(&creds), args, stdin);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 256) as u8).collect();
    let file = dir.join("state.bin");
    std::fs::write(&file, &data).unwrap();
    let out = run(
        &[
            "checkpoint",
            "--app",
            "12",
            "--object",
            "3",
            "--stage",
            "1",
            "--cold",
            file.to_str().unwrap(),
        ],
        None,
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("registered"));
    assert!(creds.join("app-12.secret").exists());
    let back = dir.join("back.bin");
    ok(&run(
        &[
            "restore",
            "--app",
            "12",
            "--object",
            "3",
            "-o",
            back.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(std::fs::read(&back).unwrap(), data);
    // Warm tier from stdin, restore to stdout.
    ok(&run(
        &["checkpoint", "--app", "5", "-"],
        Some(b"warm state"),
    ));
    let out = run(&["restore", "--app", "5"], None);
    assert_eq!(out.stdout, b"warm state");
    // Endpoints: 0 is this card; this card has no peer, so another
    // endpoint names no card (a replicated card's peer: its memory).
    let out = run(
        &[
            "checkpoint",
            "--app",
            "5",
            "--object",
            "4",
            "--endpoint",
            "2",
            "-",
        ],
        Some(b"nowhere"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("endpoint 2 names no card"), "{err}");
    let out = run(&["restore", "--app", "5", "--endpoint", "2"], None);
    assert!(!out.status.success());
    let out = run(&["restore", "--app", "5", "--endpoint", "0"], None);
    assert_eq!(out.stdout, b"warm state");
    // A set that does not exist, and credentials that are wrong.
    let out = run(&["restore", "--app", "12", "--object", "9"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no set 12/9"));
    let other = dir.join("other-creds");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("app-12.secret"), "00".repeat(32)).unwrap();
    let out = hitless_with(&card, Some(&other), &["list", "--app", "12"], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused application 12's credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Listing, and delivery at the set's reboot stage.
    let out = run(&["list", "--app", "12", "--json"], None);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["len"], 200_000);
    assert_eq!(v[0]["tier"], "cold");
    let outdir = dir.join("delivered");
    let out = run(
        &[
            "stage",
            "1",
            "--app",
            "12",
            "--dir",
            outdir.to_str().unwrap(),
        ],
        None,
    );
    ok(&out);
    assert_eq!(
        std::fs::read(outdir.join("app-12-object-3.bin")).unwrap(),
        data
    );
    // The append log: two records, read and cleared, then nothing unread.
    ok(&run(&["log", "append", "--app", "12", "-"], Some(b"one")));
    ok(&run(&["log", "append", "--app", "12", "-"], Some(b"two")));
    let out = run(&["log", "read", "--app", "12", "--json", "--trim"], None);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"][1]["text"], "two");
    let out = run(&["log", "read", "--app", "12", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"].as_array().map(Vec::len), Some(0));
    // Machine-readable status and inspection.
    let out = hitless(&card, &["status", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cold"]["boot_result"], "Ok");
    assert_eq!(v["firmware"]["cold"]["state"], "ready");
    assert!(v["firmware"]["auth_failures"].as_u64().unwrap() >= 1);
    let out = hitless(&card, &["inspect", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["record_tables"]["warm"]["sets"], 1);
    // The controller directly (raw), then the firmware again: it takes
    // the controller back and still serves the set.
    ok(&hitless(&card, &["raw", "validate"], None));
    let out = run(&["restore", "--app", "5"], None);
    assert_eq!(out.stdout, b"warm state");
    // The card dies: the CLI fails within its timeout instead of hanging.
    drop(sim);
    let t = Instant::now();
    let out = hitless(&card, &["status"], None);
    assert!(!out.status.success());
    assert!(t.elapsed() < Duration::from_secs(10));
    // Bad card specs are clear errors.
    let out = hitless("floppy:/dev/fd0", &["status"], None);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("vfio-user, vfio, uio, uart, daemon, backup or pair"));
}

#[test]
fn cli_on_a_card_without_firmware() {
    let dir = std::env::temp_dir().join(format!("hitless-cli-raw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = hitless_sim::serve::spawn_card(
        &bin("hitless-sim"),
        &dir,
        &["--no-firmware"],
        Duration::from_secs(10),
    )
    .unwrap();
    let card = format!("vfio-user:{}", p.socket.display());
    let creds = dir.join("creds");
    let out = hitless_with(&card, Some(&creds), &["list", "--app", "1"], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no card firmware"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The controller alone: one image per tier.
    ok(&hitless(
        &card,
        &["raw", "checkpoint", "--cold", "-"],
        Some(b"whole image"),
    ));
    let out = hitless(&card, &["raw", "restore", "--cold"], None);
    assert_eq!(out.stdout, b"whole image");
    ok(&hitless(&card, &["raw", "validate"], None));
    let out = hitless(&card, &["status", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["firmware"].is_null());
    assert_eq!(v["cold"]["region_len"][1], 11);
}

/// A session of `app` on `card` with the secret in `creds` (registered
/// there at the first call).
fn heap_session(
    card: &str,
    creds: &Path,
    app: u32,
) -> (
    Box<dyn hitless_driver::firmware::Firmware>,
    hitless_driver::firmware::Session,
) {
    let creds = hitless_driver::credentials::Credentials::new(Some(creds.to_path_buf())).unwrap();
    let mut fw = hitless_driver::open_firmware(card, Duration::from_secs(10)).unwrap();
    let secret = creds.load(app).unwrap();
    let (s, fresh) = fw
        .open_app(
            app,
            hitless_driver::firmware::OpenFlags::all(),
            secret.as_ref(),
        )
        .unwrap();
    if let Some(n) = fresh {
        creds.save(app, &n).unwrap();
    }
    (fw, s)
}

/// Commit `pages` (each filled with `tag ^ page`) and `state` as a new
/// version of heap 0 of `app` on `card`; returns the version.
fn heap_checkpoint(
    card: &str,
    creds: &Path,
    app: u32,
    tag: u8,
    pages: &[u32],
    state: &[u8],
) -> u64 {
    let (mut fw, s) = heap_session(card, creds, app);
    fw.heap_open(&s, 0, 32, 4, true).unwrap();
    let data: Vec<(u32, Vec<u8>)> = pages
        .iter()
        .map(|&p| (p, vec![tag ^ p as u8; 4096]))
        .collect();
    let refs: Vec<(u32, &[u8])> = data.iter().map(|(p, d)| (*p, &d[..])).collect();
    fw.heap_stage(&s, 0, &refs).unwrap();
    let v = fw.heap_commit(&s, 0, state).unwrap();
    fw.heap_close(&s, 0).unwrap();
    fw.close(&s).unwrap();
    v.version
}

/// Heap 0 of `app` on `card`: the newest version's state and first byte
/// of each of its 32 pages (`None`: never written).
fn heap_contents(card: &str, creds: &Path, app: u32) -> (Vec<u8>, Vec<Option<u8>>) {
    let (mut fw, s) = heap_session(card, creds, app);
    let vs = fw.heap_open(&s, 0, 0, 0, true).unwrap();
    let (_, state) = fw.heap_checkout(&s, 0, vs.last().unwrap().version).unwrap();
    let all: Vec<u32> = (0..32).collect();
    let pages = fw.heap_read(&s, 0, &all).unwrap();
    fw.heap_close(&s, 0).unwrap();
    fw.close(&s).unwrap();
    (
        state,
        pages.iter().map(|p| p.as_ref().map(|d| d[0])).collect(),
    )
}

#[test]
fn cli_heap_versions_restart_and_migration() {
    let dir = std::env::temp_dir().join(format!("hitless-cli-heap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (da, db) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let (_sim_a, card_a) = start_sim(&da);
    let (_sim_b, card_b) = start_sim(&db);
    let (creds_a, creds_b) = (dir.join("creds-a"), dir.join("creds-b"));
    let run = |args: &[&str]| hitless_with(&card_a, Some(&creds_a), args, None);
    let fails = |args: &[&str], says: &str| {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    let json = |args: &[&str]| -> serde_json::Value {
        let out = run(args);
        ok(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let app = 40;
    let first: Vec<u32> = (0..10).collect();
    assert_eq!(
        heap_checkpoint(&card_a, &creds_a, app, 0x10, &first, b"one"),
        1
    );
    assert_eq!(
        heap_checkpoint(&card_a, &creds_a, app, 0x20, &[3, 4], b"two"),
        2
    );

    // Listing.
    let v = json(&["heap", "list", "40", "--json"]);
    assert_eq!(v["heaps"][0]["heap"], 0, "{v}");
    assert_eq!(v["heaps"][0]["current"], 2, "{v}");
    assert_eq!(v["heaps"][0]["versions"][0]["pages"], 10, "{v}");
    let out = run(&["heap", "versions", "40", "0"]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("version 2 (current)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Restart from version 1: version 3 has its pages and state.
    let v = json(&["heap", "restart", "40", "0", "1", "--json"]);
    assert_eq!(v["restarted_from"], 1, "{v}");
    assert_eq!(v["version"], 3, "{v}");
    let (state, pages) = heap_contents(&card_a, &creds_a, app);
    assert_eq!(state, b"one");
    assert_eq!(
        pages[3],
        Some(0x10 ^ 3),
        "version 1's page, not version 2's"
    );

    // Bad input: clear errors, failing exit, nothing changed.
    fails(&["heap", "versions", "40", "7"], "no heap 7");
    fails(&["heap", "restart", "40", "0", "99"], "no version 99");
    fails(&["heap", "versions", "40", "300"], "not a heap id");
    let to_b = [
        "--to",
        card_b.as_str(),
        "--to-credentials",
        creds_b.to_str().unwrap(),
    ];
    let nowhere = format!("vfio-user:{}", dir.join("nowhere.sock").display());
    fails(
        &[
            "heap",
            "migrate",
            "40",
            "0",
            "--to",
            &nowhere,
            "--to-credentials",
            creds_b.to_str().unwrap(),
        ],
        "nowhere.sock",
    );
    fails(
        &["heap", "migrate", "40", "0", "--to", &card_b],
        "--to-credentials",
    );
    let mut since = vec!["heap", "migrate", "40", "0", "--since", "99:1"];
    since.extend(to_b);
    fails(&since, "no version 99");
    let v = json(&["heap", "list", "40", "--json"]);
    let kept: Vec<u64> = v["heaps"][0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["version"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [1, 2, 3], "{v}");

    // A full copy to B (the application registered there, its secret in
    // creds-b), then a move of a newer version: one page crosses.
    let mut copy = vec!["heap", "migrate", "40", "0", "--keep-source", "--json"];
    copy.extend(to_b);
    let v = json(&copy);
    assert!(v["base"].is_null(), "{v}");
    assert_eq!(v["pages"], 10, "{v}");
    assert!(creds_b.join("app-40.secret").exists());
    assert_eq!(
        heap_contents(&card_b, &creds_b, app),
        heap_contents(&card_a, &creds_a, app)
    );
    assert_eq!(
        heap_checkpoint(&card_a, &creds_a, app, 0x30, &[7], b"four"),
        4
    );
    let mut mv = vec!["heap", "migrate", "40", "0", "--json"];
    mv.extend(to_b);
    let v = json(&mv);
    assert_eq!(v["base"]["source"], 3, "{v}");
    assert_eq!(v["pages"], 1, "{v}");
    assert_eq!(v["source_removed"], true, "{v}");
    let (state, pages) = heap_contents(&card_b, &creds_b, app);
    assert_eq!(state, b"four");
    assert_eq!(pages[7], Some(0x30 ^ 7));
    assert_eq!(pages[3], Some(0x10 ^ 3));
    let v = json(&["heap", "list", "40", "--json"]);
    assert_eq!(v["heaps"].as_array().map(Vec::len), Some(0), "{v}");
}
