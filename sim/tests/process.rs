//! The card as its own process (`hitless-sim serve`) and the driver over
//! vfio-user: what a host application sees, including a card process that
//! dies.

use hitless_driver::backend::vfio_user::VfioUserIo;
use hitless_driver::{Card, Error, Options, Tier};
use hitless_hdl::contract::{perm, BootResult, DEFAULT_GEOMETRY};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const REGION: u32 = perm::FULL_REGION_WINDOW;
const TIMEOUT: Duration = Duration::from_secs(10);

use hitless_sim::serve::CardProcess as Proc;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hitless-proc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn start(dir: &Path) -> Proc {
    hitless_sim::serve::spawn_card(
        Path::new(env!("CARGO_BIN_EXE_hitless-sim")),
        dir,
        &[],
        TIMEOUT,
    )
    .unwrap()
}

fn open(p: &Proc) -> (Card<VfioUserIo>, u32) {
    let io = VfioUserIo::connect(&p.socket, 4 << 20, TIMEOUT).unwrap();
    let mut card = Card::open(io, Options::default()).unwrap();
    let key = card
        .program_entry(1, 0x99, 0, DEFAULT_GEOMETRY.region_size, REGION)
        .unwrap();
    (card, key)
}

fn ctl(p: &Proc, cmd: &str) -> String {
    hitless_sim::serve::control_request(&p.control, cmd, TIMEOUT).unwrap()
}

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as u8)
        .collect()
}

#[test]
fn checkpoint_restore_and_power_cycle_over_vfio_user() {
    let d = dir("rt");
    let p = start(&d);
    let (mut card, key) = open(&p);
    for (i, len) in [1usize, 4093, 65_536, 777_777].into_iter().enumerate() {
        let data = pattern(i as u32, len);
        let tier = if i % 2 == 0 { Tier::Cold } else { Tier::Warm };
        card.checkpoint(key, tier, &data).unwrap();
        assert_eq!(card.restore(key, tier).unwrap(), data, "{len} bytes");
    }
    // One client at a time: a second is refused clearly.
    match VfioUserIo::connect(&p.socket, 1 << 20, TIMEOUT) {
        Err(e @ Error::Transport { .. }) => {
            let m = e.chain();
            assert!(m.contains("already has a client"), "{m}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("second client accepted"),
    }
    let cold = pattern(7, 123_456);
    card.checkpoint(key, Tier::Cold, &cold).unwrap();
    drop(card);
    let reply = ctl(&p, "power-cycle");
    assert!(reply.contains("power_ons=2"), "{reply}");
    let (mut card, key) = open(&p);
    let st = card.status().unwrap();
    assert_eq!(st.warm.result, BootResult::Empty);
    assert_eq!(card.restore(key, Tier::Cold).unwrap(), cold);
}

#[test]
fn kill_9_mid_checkpoint_then_restart_restores_the_previous_set() {
    let d = dir("kill");
    let old = pattern(1, 300_000);
    {
        let mut p = start(&d);
        let (mut card, key) = open(&p);
        card.checkpoint(key, Tier::Cold, &old).unwrap();
        // Start a large checkpoint and kill the card process while it runs.
        let new = pattern(2, 1 << 20);
        let t = std::thread::spawn(move || card.checkpoint(key, Tier::Cold, &new).map(|_| ()));
        std::thread::sleep(Duration::from_millis(30));
        p.child.kill().unwrap(); // SIGKILL
        let _ = p.child.wait();
        // The client's card died: an error, within its timeout, no hang.
        let started = Instant::now();
        assert!(
            t.join().unwrap().is_err(),
            "checkpoint reported success on a killed card"
        );
        assert!(started.elapsed() < TIMEOUT + Duration::from_secs(5));
    }
    let p = start(&d);
    let (mut card, key) = open(&p);
    let got = card.restore(key, Tier::Cold).unwrap();
    assert!(got == old || got == pattern(2, 1 << 20), "restored a mix");
    assert_eq!(card.status().unwrap().cold.result, BootResult::Ok);
}

#[test]
fn a_dead_card_is_an_error_within_the_timeout() {
    let d = dir("dead");
    let mut p = start(&d);
    let (mut card, _) = open(&p);
    p.child.kill().unwrap();
    let _ = p.child.wait();
    let t = Instant::now();
    assert!(card.status().is_err());
    assert!(t.elapsed() < TIMEOUT, "took {:?}", t.elapsed());
}

#[test]
fn garbage_on_the_socket_does_not_hurt_the_card() {
    let d = dir("garbage");
    let p = start(&d);
    let mut seed = 0x1234_5678u64;
    for round in 0..20 {
        let mut s = UnixStream::connect(&p.socket).unwrap();
        let len = 1 + round * 37;
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) as u8
            })
            .collect();
        let _ = s.write_all(&junk);
        drop(s);
    }
    // Still serving, and still a working card.
    std::thread::sleep(Duration::from_millis(100));
    let (mut card, key) = open(&p);
    let data = pattern(3, 5000);
    card.checkpoint(key, Tier::Warm, &data).unwrap();
    assert_eq!(card.restore(key, Tier::Warm).unwrap(), data);
    assert!(ctl(&p, "status").contains("dma_faults=0"));
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let d = dir("term");
    let mut p = start(&d);
    let (mut card, key) = open(&p);
    card.checkpoint(key, Tier::Cold, &pattern(9, 1000)).unwrap();
    drop(card);
    let status = Command::new("kill")
        .arg(p.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let t = Instant::now();
    loop {
        if let Some(st) = p.child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st}");
            break;
        }
        assert!(t.elapsed() < TIMEOUT, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !p.socket.exists() && !p.control.exists(),
        "sockets left behind"
    );
}
