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

/// What QEMU does: DMA memory in an ordinary shared file, not sealed. The
/// card process takes it (it used to answer EPERM), moves a descriptor and
/// a completion through it, and survives the client shrinking the file.
#[test]
fn an_unsealed_shared_file_serves_as_dma_memory() {
    use hitless_hdl::contract::{ctrl, reg, Completion, Descriptor, CPL_BYTES};
    use hitless_vfio_user::Client;
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileExt;
    let d = dir("unsealed");
    let p = start(&d);
    let path = d.join("dma.bin");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.set_len(1 << 16).unwrap();
    const IOVA: u64 = 0x8000_0000;
    let mut c = Client::connect(&p.socket, TIMEOUT).unwrap();
    c.dma_map(f.as_fd(), IOVA, 1 << 16, 0).unwrap();
    let start = Instant::now();
    while c.read32(0, u64::from(reg::STATUS)).unwrap() & hitless_hdl::contract::status::BOOT_DONE
        == 0
    {
        assert!(start.elapsed() < TIMEOUT, "boot scan");
        std::thread::sleep(Duration::from_millis(5));
    }
    // One NOP through rings in the file: DQ at 0, CQ at 0x1000.
    for (r, v) in [
        (reg::CTRL, 0),
        (reg::DQ_BASE_LO, IOVA as u32),
        (reg::DQ_BASE_HI, 0),
        (reg::DQ_SIZE_LOG2, 2),
        (reg::CQ_BASE_LO, (IOVA + 0x1000) as u32),
        (reg::CQ_BASE_HI, 0),
        (reg::CQ_SIZE_LOG2, 2),
    ] {
        c.write32(0, u64::from(r), v).unwrap();
    }
    let head = c.read32(0, u64::from(reg::DQ_HEAD)).unwrap();
    let cq_head = c.read32(0, u64::from(reg::CQ_HEAD)).unwrap();
    c.write32(0, u64::from(reg::DQ_TAIL), head).unwrap();
    c.write32(0, u64::from(reg::CQ_TAIL), cq_head).unwrap();
    c.write32(0, u64::from(reg::CTRL), ctrl::ENABLE).unwrap();
    let nop = Descriptor {
        tag: 0x77,
        ..Default::default()
    };
    f.write_all_at(&nop.to_bytes(), u64::from(head % 4) * 32)
        .unwrap();
    c.write32(0, u64::from(reg::DQ_TAIL), (head + 1) & 0xFFFF)
        .unwrap();
    let slot = 0x1000 + u64::from(cq_head % 4) * u64::from(CPL_BYTES);
    let start = Instant::now();
    let done = loop {
        let mut b = [0u8; 16];
        f.read_exact_at(&mut b, slot).unwrap();
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        let cpl = Completion::from_words([w(0), w(1)]);
        if cpl.tag == 0x77 {
            break cpl;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "no completion in the shared file"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(done.status, 0);
    // The client shrinks the file under the card: the next DMA faults
    // (counted), the card process keeps serving.
    f.set_len(0).unwrap();
    c.write32(0, u64::from(reg::DQ_TAIL), (head + 2) & 0xFFFF)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let st = ctl(&p, "status");
    assert!(
        !st.contains("dma_faults=0 "),
        "the DMA into the shrunken file: {st}"
    );
    assert_eq!(
        c.read32(0, u64::from(reg::ID)).unwrap(),
        hitless_hdl::contract::CONTROLLER_ID
    );
}
