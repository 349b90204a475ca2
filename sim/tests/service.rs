//! The card service (what `hitless-sim serve` runs) without a socket: DMA
//! through a mapped file, registers and control through the channel.

use hitless_hdl::contract::{
    ctrl, flags, perm, reg, BootResult, Completion, Descriptor, Opcode, CPL_BYTES,
};
use hitless_sim::service::{self, Control, RegionSel};
use hitless_sim::CardTiming;
use std::fs::File;
use std::time::{Duration, Instant};

const IOVA: u64 = 0x4000_0000;
const DQ: u64 = 0;
const CQ: u64 = 4096;
const DATA: u64 = 8192;

struct Host {
    map: memmap2::MmapMut,
    file: File,
    tail: u16,
    cq_tail: u16,
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hitless-svc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn host(dir: &std::path::Path) -> Host {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("dma"))
        .unwrap();
    file.set_len(1 << 20).unwrap();
    // SAFETY (test): the card service maps the same file; both sides only
    // touch it in the ring protocol's order.
    let map = unsafe { memmap2::MmapMut::map_mut(&file).unwrap() };
    Host {
        map,
        file,
        tail: 0,
        cq_tail: 0,
    }
}

fn setup(svc: &service::CardService, h: &mut Host) -> u32 {
    let start = Instant::now();
    while svc.read32(reg::STATUS).unwrap() & 1 == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "boot");
    }
    if svc.control(Control::Status).unwrap().dma_mappings == 0 {
        svc.dma_map(IOVA, 1 << 20, h.file.try_clone().unwrap(), 0, true)
            .unwrap();
    }
    h.map[CQ as usize..CQ as usize + 16 * CPL_BYTES as usize].fill(0);
    h.tail = svc.read32(reg::DQ_HEAD).unwrap() as u16;
    h.cq_tail = svc.read32(reg::CQ_HEAD).unwrap() as u16;
    let st = svc.control(Control::Status).unwrap();
    assert_eq!((h.tail, h.cq_tail), (0, 0), "{st:?}");
    for (r, v) in [
        (reg::DQ_BASE_LO, (IOVA + DQ) as u32),
        (reg::DQ_BASE_HI, ((IOVA + DQ) >> 32) as u32),
        (reg::DQ_SIZE_LOG2, 4),
        (reg::CQ_BASE_LO, (IOVA + CQ) as u32),
        (reg::CQ_BASE_HI, ((IOVA + CQ) >> 32) as u32),
        (reg::CQ_SIZE_LOG2, 4),
        (reg::CTRL, ctrl::ENABLE),
    ] {
        svc.write32(r, v).unwrap();
    }
    hitless_hdl::contract::program_protection_entry(
        |r, v| svc.write32(r, v),
        1,
        0x42,
        0,
        1 << 21,
        perm::FULL_REGION_WINDOW,
    )
    .unwrap()
}

fn exec(svc: &service::CardService, h: &mut Host, d: Descriptor) -> Completion {
    let at = (DQ + (h.tail as u64 & 15) * 32) as usize;
    h.map[at..at + 32].copy_from_slice(&d.to_bytes());
    h.tail = h.tail.wrapping_add(1);
    svc.write32(reg::DQ_TAIL, h.tail as u32).unwrap();
    let at = (CQ + (h.cq_tail as u64 & 15) * 16) as usize;
    let start = Instant::now();
    loop {
        let w =
            |i: usize| u64::from_le_bytes(h.map[at + i * 8..at + i * 8 + 8].try_into().unwrap());
        let c = Completion::from_words([w(0), w(1)]);
        if c.phase == ((h.cq_tail >> 4) & 1 == 0) {
            h.cq_tail = h.cq_tail.wrapping_add(1);
            svc.write32(reg::CQ_TAIL, h.cq_tail as u32).unwrap();
            return c;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no completion");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn service_runs_checkpoints_and_survives_power_cycles_and_restarts() {
    let dir = temp("run");
    let (svc, thread) = service::start(
        &dir.join("state"),
        CardTiming::default(),
        Duration::from_secs(10),
    )
    .unwrap();
    let mut h = host(&dir);
    let key = setup(&svc, &mut h);
    // Host memory survives the card's power cycles; mapping it twice is refused.
    assert!(svc
        .dma_map(IOVA, 4096, h.file.try_clone().unwrap(), 0, true)
        .is_err());
    let data: Vec<u8> = (0..30_000u32).map(|i| (i * 7) as u8).collect();
    h.map[DATA as usize..DATA as usize + data.len()].copy_from_slice(&data);
    let w = Descriptor {
        opcode: Opcode::Write as u8,
        flags: flags::COMMIT | flags::COLD,
        key,
        host_addr: IOVA + DATA,
        len: data.len() as u32,
        ..Default::default()
    };
    assert_eq!(exec(&svc, &mut h, w).status, 0);
    // Power cycle: cold survives.
    let st = svc.control(Control::PowerCycle).unwrap();
    assert_eq!(st.power_ons, 2);
    let key = setup(&svc, &mut h);
    let st = svc.control(Control::Status).unwrap();
    assert_eq!(st.cold_result, Some(BootResult::Ok));
    assert_eq!(st.warm_result, Some(BootResult::Empty));
    // Damage the active region: the next power-on falls back to the
    // alternate, which holds the state before the first commit (empty).
    svc.control(Control::FlipBits {
        cold: true,
        region: RegionSel::Active,
        count: 3,
        seed: 1,
    })
    .unwrap();
    svc.control(Control::PowerCycle).unwrap();
    setup(&svc, &mut h);
    assert_eq!(
        svc.control(Control::Status).unwrap().cold_result,
        Some(BootResult::FellBack)
    );
    // Commit twice, then a scheduled power cut in the middle of a third.
    let key2 = setup(&svc, &mut h);
    assert_eq!(key, key2);
    assert_eq!(exec(&svc, &mut h, w).status, 0);
    assert_eq!(exec(&svc, &mut h, w).status, 0);
    let big = Descriptor { len: 500_000, ..w };
    let at = (DQ + (h.tail as u64 & 15) * 32) as usize;
    h.map[at..at + 32].copy_from_slice(&big.to_bytes());
    h.tail = h.tail.wrapping_add(1);
    svc.write32(reg::DQ_TAIL, h.tail as u32).unwrap();
    // 500 KB take about 64k cycles: a cut 2000 cycles from now is mid-transfer.
    let now = svc.control(Control::Status).unwrap().cycle;
    svc.control(Control::CutPowerAt(now + 2_000)).unwrap();
    let start = Instant::now();
    while svc.control(Control::Status).unwrap().power_ons < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "scheduled cut did not happen"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    setup(&svc, &mut h);
    assert_eq!(
        svc.control(Control::Status).unwrap().cold_result,
        Some(BootResult::Ok)
    );
    svc.shutdown();
    thread.join().unwrap();
    // A restart of the service (a new process) finds the committed image.
    let (svc, thread) = service::start(
        &dir.join("state"),
        CardTiming::default(),
        Duration::from_secs(10),
    )
    .unwrap();
    let mut h = host(&dir);
    setup(&svc, &mut h);
    let st = svc.control(Control::Status).unwrap();
    assert_eq!(st.cold_result, Some(BootResult::Ok));
    assert_eq!(st.dma_faults, 0);
    assert_eq!(
        svc.read32(reg::COLD_A_LEN)
            .unwrap()
            .max(svc.read32(reg::COLD_B_LEN).unwrap()),
        30_000
    );
    svc.shutdown();
    thread.join().unwrap();
}
