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

/// A simulated card in `dir` and hitlessd in front of it: the card
/// process, the daemon, and its socket.
fn card_and_daemon(dir: &Path) -> (hitless_sim::serve::CardProcess, Daemon, PathBuf) {
    let hitlessd = bin("hitlessd");
    let sim =
        hitless_sim::serve::spawn_card(&bin("hitless-sim"), dir, &[], Duration::from_secs(10))
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
    (sim, daemon, socket)
}

#[test]
fn c_example_runs_through_hitlessd() {
    let dir = scratch("daemon");
    let exe = compile_example(&dir);
    let (sim, daemon, socket) = card_and_daemon(&dir);
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

/// `hitless_heap_migrate` through the C ABI (the library's entry points,
/// called as a C program calls them) between two cards, each behind its
/// own hitlessd: a full copy, then a move sending the one changed page
/// from the base found by itself; bad arguments refused.
#[test]
fn heap_migrate_through_the_c_abi() {
    use hitless::*;
    use std::ffi::CString;
    let (da, db) = (scratch("migrate-a"), scratch("migrate-b"));
    let (sim_a, daemon_a, sock_a) = card_and_daemon(&da);
    let (sim_b, daemon_b, sock_b) = card_and_daemon(&db);
    let spec_a = CString::new(format!("daemon:{}", sock_a.display())).unwrap();
    let spec_b = CString::new(format!("daemon:{}", sock_b.display())).unwrap();
    let app = 43;
    let page = |tag: u8| vec![tag; HITLESS_HEAP_PAGE_BYTES];
    // Checkpoint `tag` into pages `pages` of heap 1 on A.
    let checkpoint = |pages: &[u64], tag: u8| -> u64 {
        // SAFETY: a NUL-terminated spec; the handle is used and closed
        // here; the buffers outlive the calls.
        unsafe {
            let h = hitless_heap_open(spec_a.as_ptr(), 20_000, app, 1, 16, 4, 1, 0, 0);
            assert!(!h.is_null());
            for &p in pages {
                let d = page(tag);
                let at = p * HITLESS_HEAP_PAGE_BYTES as u64;
                assert_eq!(hitless_heap_write(h, at, d.as_ptr(), d.len()), HITLESS_OK);
            }
            let mut v = 0;
            assert_eq!(
                hitless_heap_checkpoint(h, [tag].as_ptr(), 1, &mut v),
                HITLESS_OK
            );
            assert_eq!(hitless_heap_close(h), HITLESS_OK);
            v
        }
    };
    // The first byte of each of heap 1's 16 pages on B.
    let on_b = || -> Vec<u8> {
        // SAFETY: as above.
        unsafe {
            let h = hitless_heap_open(spec_b.as_ptr(), 20_000, app, 1, 16, 4, 1, 0, 0);
            assert!(!h.is_null());
            let mut all = vec![0u8; 16 * HITLESS_HEAP_PAGE_BYTES];
            assert_eq!(
                hitless_heap_read(h, 0, all.as_mut_ptr(), all.len()),
                HITLESS_OK
            );
            assert_eq!(hitless_heap_close(h), HITLESS_OK);
            all.chunks(HITLESS_HEAP_PAGE_BYTES).map(|c| c[0]).collect()
        }
    };
    assert_eq!(checkpoint(&[0, 1, 2, 3, 4], 0x51), 1);
    // SAFETY: NUL-terminated specs; handles used and closed here; `out`
    // and `since` outlive the calls.
    unsafe {
        let (ca, cb) = (
            hitless_open(spec_a.as_ptr(), 20_000),
            hitless_open(spec_b.as_ptr(), 20_000),
        );
        assert!(!ca.is_null() && !cb.is_null());
        let (sa, sb) = (
            hitless_session_open(ca, app, HITLESS_ALL),
            hitless_session_open(cb, app, HITLESS_ALL),
        );
        assert!(!sa.is_null() && !sb.is_null());
        let mut out = hitless_heap_migrated::default();
        // Refused: bad flags, one card twice, a NULL session.
        assert_eq!(
            hitless_heap_migrate(sa, sb, 1, std::ptr::null(), 8, &mut out),
            HITLESS_E_INVALID_ARGUMENT
        );
        assert_eq!(
            hitless_heap_migrate(sa, sa, 1, std::ptr::null(), 0, &mut out),
            HITLESS_E_INVALID_ARGUMENT
        );
        assert_eq!(
            hitless_heap_migrate(std::ptr::null_mut(), sb, 1, std::ptr::null(), 0, &mut out),
            HITLESS_E_INVALID_ARGUMENT
        );
        let since = [9u64, 1];
        assert_eq!(
            hitless_heap_migrate(sa, sb, 1, since.as_ptr(), 0, &mut out),
            HITLESS_E_NOT_FOUND
        );
        // The copy: every written page.
        assert_eq!(
            hitless_heap_migrate(
                sa,
                sb,
                1,
                std::ptr::null(),
                HITLESS_MIGRATE_KEEP_SOURCE,
                &mut out
            ),
            HITLESS_OK
        );
        assert_eq!(
            (out.pages, out.base_source, out.base_destination),
            (5, 0, 0),
            "{out:?}"
        );
        hitless_session_close(sa);
        hitless_session_close(sb);
        hitless_close(ca);
        hitless_close(cb);
    }
    assert_eq!(on_b()[..6], [0x51, 0x51, 0x51, 0x51, 0x51, 0]);
    assert_eq!(checkpoint(&[2], 0x52), 2);
    // SAFETY: as above.
    unsafe {
        let (ca, cb) = (
            hitless_open(spec_a.as_ptr(), 20_000),
            hitless_open(spec_b.as_ptr(), 20_000),
        );
        let (sa, sb) = (
            hitless_session_open(ca, app, HITLESS_ALL),
            hitless_session_open(cb, app, HITLESS_ALL),
        );
        let mut out = hitless_heap_migrated::default();
        assert_eq!(
            hitless_heap_migrate(sa, sb, 1, std::ptr::null(), 0, &mut out),
            HITLESS_OK
        );
        assert_eq!(
            (out.pages, out.base_source, out.source_version),
            (1, 1, 2),
            "{out:?}"
        );
        // Moved: the source has nothing left to move.
        assert_ne!(
            hitless_heap_migrate(sa, sb, 1, std::ptr::null(), 0, &mut out),
            HITLESS_OK
        );
        hitless_session_close(sa);
        hitless_session_close(sb);
        hitless_close(ca);
        hitless_close(cb);
    }
    assert_eq!(on_b()[..6], [0x51, 0x51, 0x52, 0x51, 0x51, 0]);
    drop((daemon_a, daemon_b, sim_a, sim_b));
    let _ = std::fs::remove_dir_all(da);
    let _ = std::fs::remove_dir_all(db);
}
