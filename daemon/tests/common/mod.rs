//! What the daemon's integration tests share: the binaries, scratch
//! directories, and starting the simulated card and hitlessd.
#![allow(dead_code)] // each test file uses its part

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A binary: this package's from cargo; another package's (the card
/// process, the CLI) next to this test's executable, where `cargo test
/// --workspace` (as `cargo xtask test` runs it) builds them.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "hitlessd" => PathBuf::from(env!("CARGO_BIN_EXE_hitlessd")),
        "hitless-load" => PathBuf::from(env!("CARGO_BIN_EXE_hitless-load")),
        _ => {
            let exe = std::env::current_exe().unwrap();
            let p = exe.parent().and_then(Path::parent).unwrap().join(name);
            assert!(
                p.exists(),
                "{} not built: run `cargo test --workspace` (or `cargo xtask test`)",
                p.display()
            );
            p
        }
    }
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hitlessd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Other uids' processes reach the sockets in here.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (and reaped) when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// hitlessd as a child process; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// hitlessd in front of the card at `card_socket`, its log appended to
/// `dir/hitlessd.log`; returns once its socket accepts.
pub fn start_daemon(dir: &Path, card_socket: &Path, extra: &[&str]) -> Daemon {
    let socket = dir.join("hitlessd.sock");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("hitlessd.log"))
        .unwrap();
    let child = Command::new(bin("hitlessd"))
        .arg("--card")
        .arg(format!("vfio-user:{}", card_socket.display()))
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.join("daemon-state"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let d = Daemon { child, socket };
    let start = Instant::now();
    while UnixStream::connect(&d.socket).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "hitlessd did not start: {}",
            std::fs::read_to_string(dir.join("hitlessd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

/// The simulated card (`hitless-sim serve`) in `dir`.
pub fn start_card(dir: &Path) -> hitless_sim::serve::CardProcess {
    hitless_sim::serve::spawn_card(&bin("hitless-sim"), dir, &[], Duration::from_secs(20)).unwrap()
}
