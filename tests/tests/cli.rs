//! The `hitless` CLI against a real `hitless-sim` card process.
//! Both binaries are built by `cargo test --workspace` (as `cargo xtask
//! test` runs it) and found next to this test executable.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo test --workspace` (or `cargo xtask test`)",
        p.display()
    );
    p
}

struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sim(dir: &Path) -> (Sim, String) {
    let sock = dir.join("card.sock");
    let _ = std::fs::remove_file(&sock);
    let child = Command::new(bin("hitless-sim"))
        .args(["serve", "--socket"])
        .arg(&sock)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !sock.exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "card did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    (Sim(child), format!("vfio-user:{}", sock.display()))
}

fn hitless(card: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(bin("hitless"));
    cmd.args(["--card", card, "--timeout", "5"]).args(args);
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

#[test]
fn cli_checkpoint_restore_status_inspect() {
    let dir = std::env::temp_dir().join(format!("hitless-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (sim, card) = start_sim(&dir);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 256) as u8).collect();
    let file = dir.join("state.bin");
    std::fs::write(&file, &data).unwrap();
    let out = hitless(
        &card,
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = dir.join("back.bin");
    let out = hitless(
        &card,
        &[
            "restore",
            "--app",
            "12",
            "--cold",
            "-o",
            back.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&back).unwrap(), data);
    // Warm tier from stdin, restore to stdout.
    let out = hitless(
        &card,
        &["checkpoint", "--app", "5", "-"],
        Some(b"warm state"),
    );
    assert!(out.status.success());
    let out = hitless(&card, &["restore", "--app", "5"], None);
    assert_eq!(out.stdout, b"warm state");
    // Another application's set is refused with a clear message.
    let out = hitless(&card, &["restore", "--app", "13", "--cold"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds app 12"));
    // Machine-readable status and inspection.
    let out = hitless(&card, &["status", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cold"]["boot_result"], "Ok");
    assert_eq!(v["cold"]["seq"], 1);
    let out = hitless(&card, &["inspect", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sets"][1]["set"]["app"], 12);
    assert_eq!(v["sets"][1]["set"]["len"], 200_000);
    assert!(hitless(&card, &["validate"], None).status.success());
    // The card dies: the CLI fails within its timeout instead of hanging.
    drop(sim);
    let t = Instant::now();
    let out = hitless(&card, &["status"], None);
    assert!(!out.status.success());
    assert!(t.elapsed() < Duration::from_secs(10));
    // Bad card specs are clear errors.
    let out = hitless("floppy:/dev/fd0", &["status"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("vfio-user, vfio, uio or uart"));
}
