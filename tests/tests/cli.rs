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
