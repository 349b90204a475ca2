//! The `hitless` binary as a user first meets it: help, bad arguments and
//! a card that is not there get clear answers and a failing exit code,
//! never a panic or a hang. (The commands against a running simulated
//! card are in the workspace's `tests/tests/cli.rs`.)

use std::process::Command;
use std::time::{Duration, Instant};

fn hitless(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hitless"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = cmd.output().expect("hitless runs");
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "hitless {args:?} hung"
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_names_every_command_and_transport() {
    let (ok, out, _) = hitless(&["--help"], &[]);
    assert!(ok);
    for word in [
        "status",
        "checkpoint",
        "restore",
        "stage",
        "log",
        "heap",
        "raw",
        "vfio-user:",
        "uart:",
        "pair:",
    ] {
        assert!(out.contains(word), "--help lacks {word}:\n{out}");
    }
}

#[test]
fn a_card_that_is_not_there_is_a_clear_error() {
    let (ok, _, err) = hitless(
        &[
            "--card",
            "vfio-user:/nonexistent/card.sock",
            "--timeout",
            "2",
            "status",
        ],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("/nonexistent/card.sock"), "{err}");
    let (ok, _, err) = hitless(&["--card", "floppy:/dev/fd0", "status"], &[]);
    assert!(!ok);
    assert!(
        err.contains("vfio-user, vfio, uio, uart, daemon, backup or pair"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // A pair spec that names one card, or garbage, says what it expects.
    for bad in ["pair:vfio-user:/a/card.sock", "pair:garbage,more"] {
        let (ok, _, err) = hitless(&["--card", bad, "peer", "status"], &[]);
        assert!(!ok);
        assert!(err.contains("pair:SPEC,SPEC"), "{bad}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn secrets_are_never_put_in_a_shared_directory() {
    // No HOME, no XDG_STATE_HOME, no --credentials: the CLI refuses to
    // pick a place (it used to fall back to /tmp) before it opens any card.
    let (ok, _, err) = hitless(
        &[
            "--card",
            "vfio-user:/nonexistent/card.sock",
            "--timeout",
            "2",
            "open",
            "--app",
            "5",
        ],
        &[
            ("HOME", ""),
            ("XDG_STATE_HOME", ""),
            ("HITLESS_CREDENTIALS", ""),
        ],
    );
    assert!(!ok);
    assert!(err.contains("no state directory"), "{err}");
}
