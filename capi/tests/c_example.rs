//! The C example (examples/c/store_restore.c) compiled with `cc` against
//! include/hitless.h and libhitless.so, and run against a simulated card:
//! directly (`vfio-user:`) and through hitlessd (`daemon:`): sets, the log,
//! and a persistent heap (checkpoints, reopen, restart from a version).
//!
//! The binaries it needs (`hitless-sim`, `hitlessd`) are workspace
//! binaries: `cargo test --workspace` (as `cargo xtask test` runs it)
//! builds them next to this test's executable; `cargo test -p hitless-c`
//! alone does not (build them first: `cargo build -p hitless-sim -p
//! hitless-daemon --bins`, with the same profile).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// target/<profile>/, where cargo puts the workspace's binaries and the
/// cdylib (this executable is in target/<profile>/deps/).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn bin(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo test --workspace` (or `cargo xtask test`), or build it first \
         with `cargo build -p hitless-sim -p hitless-daemon --bins` in this profile",
        p.display()
    );
    p
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hitless-capi-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The directory of libhitless.so: cargo builds the cdylib with this
/// package's tests into target/<profile>/deps/ (this executable's
/// directory; `cargo build` also copies it up to target/<profile>/, where
/// it may be older).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    [deps.clone(), target_dir()]
        .into_iter()
        .find(|d| d.join("libhitless.so").exists())
        .unwrap_or_else(|| {
            panic!(
                "libhitless.so is neither in {} nor in {}",
                deps.display(),
                target_dir().display()
            )
        })
}

/// Compile the example; a missing C compiler is a failure, not a skip.
fn compile_example(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = lib_dir();
    let exe = dir.join("store_restore");
    let out = Command::new("cc")
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-O1",
        ])
        .arg("-I")
        .arg(root.join("../include"))
        .arg(root.join("examples/c/store_restore.c"))
        .arg("-L")
        .arg(&lib)
        .arg("-lhitless")
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cc (a C compiler is required for this test): {e}"));
    assert!(
        out.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

fn run_example(exe: &Path, card: &str, creds: &Path) -> Output {
    let out = Command::new(exe)
        .arg(card)
        .env("LD_LIBRARY_PATH", lib_dir())
        .env("HITLESS_CREDENTIALS", creds)
        .env_remove("HITLESS_CARD")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "store_restore {card} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for what in [
        "stored and restored 3 sets (16, 4096, 307200 bytes)",
        "listed 3 sets",
        "fetched 3 sets at stage 3",
        "log: appended 2 records, read them back, trimmed",
        "status: warm",
        "missing object: -4",
        "too small: -6",
        "needs 4096 bytes",
        "error paths checked",
        "deleted 3 sets",
        "heap: checkpointed versions",
        "heap: reopened, read back version",
        "heap: restarted from version",
        "all checks passed",
    ] {
        assert!(stdout.contains(what), "{what:?} missing from:\n{stdout}");
    }
    out
}

#[test]
fn c_example_runs_against_the_simulated_card() {
    let dir = scratch("direct");
    let exe = compile_example(&dir);
    let sim =
        hitless_sim::serve::spawn_card(&bin("hitless-sim"), &dir, &[], Duration::from_secs(10))
            .unwrap();
    let card = format!("vfio-user:{}", sim.socket.display());
    let creds = dir.join("creds");
    run_example(&exe, &card, &creds);
    // Directly on the card, the first open registered the application and
    // its secret went to the store; a second run uses it.
    assert!(creds.join("app-42.secret").exists());
    run_example(&exe, &card, &creds);
    drop(sim);
    let _ = std::fs::remove_dir_all(dir);
}

/// hitlessd, killed (and reaped) when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn c_example_runs_through_hitlessd() {
    let dir = scratch("daemon");
    let exe = compile_example(&dir);
    let hitlessd = bin("hitlessd");
    let sim =
        hitless_sim::serve::spawn_card(&bin("hitless-sim"), &dir, &[], Duration::from_secs(10))
            .unwrap();
    let socket = dir.join("hitlessd.sock");
    let mut daemon = Daemon(
        Command::new(&hitlessd)
            .arg("--card")
            .arg(format!("vfio-user:{}", sim.socket.display()))
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join("daemon-state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", hitlessd.display())),
    );
    let start = Instant::now();
    while !socket.exists() {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            panic!("hitlessd exited before serving ({status})");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "hitlessd did not create {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // No local secrets through the daemon: the store stays empty.
    let creds = dir.join("creds");
    let card = format!("daemon:{}", socket.display());
    run_example(&exe, &card, &creds);
    run_example(&exe, &card, &creds);
    assert!(!creds.join("app-42.secret").exists());
    drop(daemon);
    drop(sim);
    let _ = std::fs::remove_dir_all(dir);
}
