//! Our server against a client we did not write: rust-vmm's `vfio_user`
//! crate (0.1.7), which proposes version 0.1 with JSON capabilities, reads
//! the device info and every region's info at connect, and speaks raw
//! structures from there on.
//!
//! That client does not look at error replies (it reads a reply of the size
//! it expects, so an error reply to a region read would leave it waiting
//! forever) and has no timeouts. Every session with it therefore runs on a
//! thread that the test waits for with a deadline; the assertions check
//! the device's side (the fake card) as well as what the client returns.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use hitless_vfio_user::config::{CONFIG_SPACE_SIZE, MSIX_BAR_SIZE};
use hitless_vfio_user::proto::{irq_set_flags, pci, region_flags};
use hitless_vfio_user::{card, IrqEvent};

/// Run `f` on a thread; fail the test if it does not finish within 10 s.
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the vfio_user client hung or panicked")
}

fn read32(c: &mut vfio_user::Client, region: u32, off: u64) -> u32 {
    let mut b = [0u8; 4];
    c.region_read(region, off, &mut b).unwrap();
    u32::from_le_bytes(b)
}

fn write32(c: &mut vfio_user::Client, region: u32, off: u64, v: u32) {
    c.region_write(region, off, &v.to_le_bytes()).unwrap();
}

#[test]
fn rust_vmm_client_negotiates_and_reads_the_device() {
    let srv = TestServer::start();
    let path = srv.path.clone();
    let regions = within(move || {
        // Connecting negotiates VERSION (it proposes 0.1; we answer 0.0
        // with a subset of its capabilities, which it must parse), then
        // DEVICE_GET_INFO (it refuses non-PCI devices) and
        // DEVICE_GET_REGION_INFO for every region.
        let c = vfio_user::Client::new(&path).expect("connect and negotiate");
        let regions: Vec<(u32, u64, u32)> = (0..pci::NUM_REGIONS)
            .map(|i| {
                let r = c.region(i).expect("region listed");
                (r.index, r.size, r.flags)
            })
            .collect();
        c.shutdown().unwrap();
        regions
    });
    let rw = region_flags::READ | region_flags::WRITE;
    assert_eq!(regions.len(), 9);
    assert_eq!(regions[0], (0, card::BAR0_SIZE, rw));
    assert_eq!(regions[1], (1, MSIX_BAR_SIZE, rw));
    assert_eq!(regions[7], (7, CONFIG_SPACE_SIZE, rw));
    for i in [2usize, 3, 4, 5, 6, 8] {
        assert_eq!(regions[i].1, 0, "region {i} is absent");
    }
    assert!(srv.violations().is_empty(), "{:?}", srv.violations());
}

#[test]
fn rust_vmm_client_registers_config_space_dma_and_interrupts() {
    let srv = TestServer::start();
    let path = srv.path.clone();
    // A plain, unsealed memfd, as QEMU passes guest memory.
    let mem = unsealed_memfd(8192);
    let data: Vec<u8> = (0..8192).map(|i| (i * 3) as u8).collect();
    std::os::unix::fs::FileExt::write_all_at(
        &std::fs::File::from(mem.try_clone().unwrap()),
        &data,
        0,
    )
    .unwrap();
    let irq = IrqEvent::new().unwrap();
    let irq_fd: OwnedFd = std::os::fd::AsFd::as_fd(&irq).try_clone_to_owned().unwrap();
    let want_sum: u32 = data[..4096].iter().map(|&b| u32::from(b)).sum();

    let (result, sum, status, irq_info, cfg) = within(move || {
        let mut c = vfio_user::Client::new(&path).unwrap();
        // BAR0 registers.
        write32(&mut c, card::BAR0, 0x40, 0xC0DE_CAFE);
        let result = read32(&mut c, card::BAR0, 0x40);

        // Config space: ids, class, BAR0 sizing.
        let cfg = (
            read32(&mut c, pci::CONFIG_REGION_INDEX, 0x00),
            read32(&mut c, pci::CONFIG_REGION_INDEX, 0x08),
            {
                write32(&mut c, pci::CONFIG_REGION_INDEX, 0x10, 0xffff_ffff);
                read32(&mut c, pci::CONFIG_REGION_INDEX, 0x10)
            },
        );

        // DMA from the unsealed memfd: the card sums the first page.
        c.dma_map(0, 0x10_0000, 8192, mem.as_raw_fd()).unwrap();
        c.region_write(card::BAR0, REG_DMA_ADDR, &0x10_0000u64.to_le_bytes())
            .unwrap();
        write32(&mut c, card::BAR0, REG_DMA_LEN, 4096);
        write32(&mut c, card::BAR0, REG_DOORBELL, CMD_SUM);
        let status = read32(&mut c, card::BAR0, REG_STATUS);
        let sum = read32(&mut c, card::BAR0, REG_RESULT);

        // The interrupt, through an eventfd.
        let irq_info = c.get_irq_info(card::IRQ_INDEX).unwrap();
        c.set_irqs(
            card::IRQ_INDEX,
            irq_set_flags::DATA_EVENTFD | irq_set_flags::ACTION_TRIGGER,
            0,
            1,
            &[irq_fd.as_raw_fd()],
        )
        .unwrap();
        write32(&mut c, card::BAR0, REG_DOORBELL, CMD_IRQ);
        let irq_status = read32(&mut c, card::BAR0, REG_STATUS);
        assert_eq!(irq_status, 0, "the card had an IRQ descriptor");

        c.dma_unmap(0x10_0000, 8192).unwrap();
        c.shutdown().unwrap();
        (result, sum, status, (irq_info.count, irq_info.flags), cfg)
    });
    assert_eq!(result, 0xC0DE_CAFE);
    assert_eq!(status, 0, "DMA succeeded");
    assert_eq!(sum, want_sum, "the card read the client's memory");
    assert_eq!(irq_info.0, card::IRQ_VECTORS);
    assert_ne!(
        irq_info.1 & hitless_vfio_user::proto::irq_info_flags::EVENTFD,
        0
    );
    assert_eq!(
        irq.wait(Duration::from_secs(2)).unwrap(),
        Some(1),
        "interrupt delivered"
    );
    assert_eq!(
        cfg.0,
        u32::from(card::PCI_DEVICE_ID) << 16 | u32::from(card::PCI_VENDOR_ID)
    );
    assert_eq!(cfg.1 >> 8, card::PCI_CLASS_CODE);
    assert_eq!(cfg.2, !(card::BAR0_SIZE as u32 - 1));
    srv.wait_released();
    assert!(srv.violations().is_empty(), "{:?}", srv.violations());
}

/// Run the specification-written Python client (`tests/spec_client.py`,
/// standard library only) against our server, with a deadline.
#[test]
fn spec_written_python_client() {
    let srv = TestServer::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spec_client.py");
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .arg(&srv.path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed to run the spec-written client");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the spec client did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success(),
        "spec client failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok "), "{stdout}");
    srv.wait_released();
    assert!(srv.violations().is_empty(), "{:?}", srv.violations());
}
