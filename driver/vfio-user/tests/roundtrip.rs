//! Client <-> server round trips over a real Unix socket, interrupts,
//! timeouts and the one-client-at-a-time rule.

mod common;

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use common::*;
use hitless_vfio_user::config::{CONFIG_SPACE_SIZE, MSIX_BAR_SIZE};
use hitless_vfio_user::proto::{
    self, cmd, device_flags, errno, irq_info_flags, region_flags, Header, RegionAccess, Version,
};
use hitless_vfio_user::{card, Client, DmaBuffer, Error, IrqEvent, DMA_PAGE_SIZE};

const T: Duration = Duration::from_secs(2);

fn remote(e: Error) -> u32 {
    match e {
        Error::Remote(n) => n as u32,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
fn handshake_and_device_description() {
    let srv = TestServer::start();
    let mut c = Client::connect(&srv.path, T).unwrap();
    let info = c.device_info();
    assert_eq!(info.flags, device_flags::PCI | device_flags::RESET);
    assert_eq!(info.num_regions, proto::pci::NUM_REGIONS);
    assert_eq!(info.num_irqs, proto::pci::NUM_IRQS);
    let caps = c.server_caps();
    assert_eq!(caps.max_data_xfer, 1 << 20);
    assert_eq!(caps.max_msg_fds, 8);

    let bar0 = c.get_region_info(card::BAR0).unwrap();
    assert_eq!(bar0.size, card::BAR0_SIZE);
    assert_eq!(bar0.flags, region_flags::READ | region_flags::WRITE);
    for absent in [2, 3, 4, 5, 6, 8] {
        assert_eq!(
            c.get_region_info(absent).unwrap().size,
            0,
            "region {absent}"
        );
    }
    let config = c.get_region_info(proto::pci::CONFIG_REGION_INDEX).unwrap();
    assert_eq!(config.size, CONFIG_SPACE_SIZE);
    assert_eq!(config.flags, region_flags::READ | region_flags::WRITE);
    let msix = c.get_region_info(card::MSIX_BAR).unwrap();
    assert_eq!(msix.size, MSIX_BAR_SIZE);
    assert_eq!(remote(c.get_region_info(9).unwrap_err()), errno::EINVAL);

    let irq = c.get_irq_info(card::IRQ_INDEX).unwrap();
    assert_eq!(irq.count, 1);
    assert_ne!(irq.flags & irq_info_flags::EVENTFD, 0);
    assert_eq!(c.get_irq_info(0).unwrap().count, 0);
    assert_eq!(remote(c.get_irq_info(5).unwrap_err()), errno::EINVAL);
}

fn cfg16(c: &mut Client, off: u64) -> u16 {
    let mut b = [0u8; 2];
    c.region_read(proto::pci::CONFIG_REGION_INDEX, off, &mut b)
        .unwrap();
    u16::from_le_bytes(b)
}

fn cfg32(c: &mut Client, off: u64) -> u32 {
    let mut b = [0u8; 4];
    c.region_read(proto::pci::CONFIG_REGION_INDEX, off, &mut b)
        .unwrap();
    u32::from_le_bytes(b)
}

fn cfg_write32(c: &mut Client, off: u64, v: u32) {
    c.region_write(proto::pci::CONFIG_REGION_INDEX, off, &v.to_le_bytes())
        .unwrap();
}

#[test]
fn pci_config_space() {
    let srv = TestServer::start();
    let mut c = Client::connect(&srv.path, T).unwrap();
    // Identity and class.
    assert_eq!(cfg16(&mut c, 0x00), card::PCI_VENDOR_ID);
    assert_eq!(cfg16(&mut c, 0x02), card::PCI_DEVICE_ID);
    assert_eq!(cfg32(&mut c, 0x08) >> 8, card::PCI_CLASS_CODE);
    assert_eq!(cfg32(&mut c, 0x08) >> 16, 0x0580);
    assert_eq!(cfg16(&mut c, 0x2c), card::PCI_VENDOR_ID);
    let mut hdr = [0u8; 1];
    c.region_read(proto::pci::CONFIG_REGION_INDEX, 0x0e, &mut hdr)
        .unwrap();
    assert_eq!(hdr[0], 0, "type-0 header");
    // Identity is read-only.
    cfg_write32(&mut c, 0x00, 0xffff_ffff);
    assert_eq!(cfg16(&mut c, 0x00), card::PCI_VENDOR_ID);

    // Command: memory space and bus master writable, nothing else.
    assert_eq!(cfg16(&mut c, 0x04), 0);
    c.region_write(
        proto::pci::CONFIG_REGION_INDEX,
        0x04,
        &0xffffu16.to_le_bytes(),
    )
    .unwrap();
    assert_eq!(cfg16(&mut c, 0x04), 0b110);
    assert_ne!(cfg16(&mut c, 0x06) & (1 << 4), 0, "capability list");

    // BAR0: 32-bit memory BAR; sizing reads back the size mask.
    assert_eq!(cfg32(&mut c, 0x10), 0);
    cfg_write32(&mut c, 0x10, 0xffff_ffff);
    let mask = cfg32(&mut c, 0x10);
    assert_eq!(mask, !(card::BAR0_SIZE as u32 - 1));
    assert_eq!(mask & 0xf, 0, "32-bit non-prefetchable memory");
    assert_eq!((!mask).wrapping_add(1) as u64, card::BAR0_SIZE);
    cfg_write32(&mut c, 0x10, 0xfebf_0123);
    assert_eq!(cfg32(&mut c, 0x10), 0xfebf_0000);
    // Absent BARs and the ROM read 0 whatever is written.
    for off in [0x18u64, 0x1c, 0x20, 0x24, 0x30] {
        cfg_write32(&mut c, off, 0xffff_ffff);
        assert_eq!(cfg32(&mut c, off), 0, "offset {off:#x}");
    }
    // BAR1 is the MSI-X BAR: 4 KiB.
    cfg_write32(&mut c, 0x14, 0xffff_ffff);
    assert_eq!(cfg32(&mut c, 0x14), !(MSIX_BAR_SIZE as u32 - 1));

    // The capability list: one MSI-X capability, one vector, table and PBA
    // in BAR1.
    let mut p = [0u8; 1];
    c.region_read(proto::pci::CONFIG_REGION_INDEX, 0x34, &mut p)
        .unwrap();
    let cap = u64::from(p[0]);
    assert_eq!(cap, 0x40);
    let cap0 = cfg32(&mut c, cap);
    assert_eq!(cap0 & 0xff, 0x11, "MSI-X");
    assert_eq!((cap0 >> 8) & 0xff, 0, "last capability");
    assert_eq!((cap0 >> 16) & 0x7ff, card::IRQ_VECTORS - 1, "table size");
    assert_eq!(cfg32(&mut c, cap + 4), card::MSIX_BAR, "table at BAR1 + 0");
    assert_eq!(
        cfg32(&mut c, cap + 8),
        0x800 | card::MSIX_BAR,
        "PBA at BAR1 + 0x800"
    );
    // Enable and function mask are writable, the table size is not.
    cfg_write32(&mut c, cap, 0xffff_ffff);
    assert_eq!(cfg32(&mut c, cap) >> 16, 0xc000 | (card::IRQ_VECTORS - 1));
    // The table entry is stored; only the mask bit of vector control.
    c.write32(card::MSIX_BAR, 0, 0xfee0_0000).unwrap();
    c.write32(card::MSIX_BAR, 8, 0x41).unwrap();
    assert_eq!(c.read32(card::MSIX_BAR, 12).unwrap(), 1, "starts masked");
    c.write32(card::MSIX_BAR, 12, 0xffff_fffe).unwrap();
    assert_eq!(c.read32(card::MSIX_BAR, 12).unwrap(), 0);
    assert_eq!(c.read32(card::MSIX_BAR, 0).unwrap(), 0xfee0_0000);
    c.write32(card::MSIX_BAR, 0x800, 0xffff_ffff).unwrap();
    assert_eq!(c.read32(card::MSIX_BAR, 0x800).unwrap(), 0, "PBA read-only");

    // A whole-space read agrees with the field reads.
    let mut all = vec![0u8; CONFIG_SPACE_SIZE as usize];
    c.region_read(proto::pci::CONFIG_REGION_INDEX, 0, &mut all)
        .unwrap();
    assert_eq!(&all[0..2], &card::PCI_VENDOR_ID.to_le_bytes());
    assert_eq!(&all[0x10..0x14], &0xfebf_0000u32.to_le_bytes());

    // Range checks as for every region.
    assert_eq!(
        remote(c.read32(proto::pci::CONFIG_REGION_INDEX, 0xfe).unwrap_err()),
        errno::EINVAL
    );
    assert_eq!(
        remote(
            c.read32(proto::pci::CONFIG_REGION_INDEX, 0x100)
                .unwrap_err()
        ),
        errno::EINVAL
    );

    // Reset returns config space to its power-on state.
    c.reset().unwrap();
    assert_eq!(cfg16(&mut c, 0x04), 0);
    assert_eq!(cfg32(&mut c, 0x10), 0);
    assert_eq!(c.read32(card::MSIX_BAR, 12).unwrap(), 1);
    // The device itself never saw any of it.
    assert!(srv.violations().is_empty(), "{:?}", srv.violations());
}

#[test]
fn register_round_trips_and_reset() {
    let srv = TestServer::start();
    let mut c = Client::connect(&srv.path, T).unwrap();
    for (i, off) in [0u64, 4, 0x100, 0xffc].into_iter().enumerate() {
        let v = 0x1234_5678u32.wrapping_mul(i as u32 + 1);
        c.write32(card::BAR0, off, v).unwrap();
        assert_eq!(c.read32(card::BAR0, off).unwrap(), v);
    }
    c.write64(card::BAR0, 0xff8, 0x0102_0304_0506_0708).unwrap();
    assert_eq!(c.read64(card::BAR0, 0xff8).unwrap(), 0x0102_0304_0506_0708);
    c.region_write(card::BAR0, 0x201, &[0xab]).unwrap();
    c.region_write(card::BAR0, 0x202, &[0xcd, 0xef]).unwrap();
    let mut b = [0u8; 4];
    c.region_read(card::BAR0, 0x200, &mut b).unwrap();
    assert_eq!(b, [0, 0xab, 0xcd, 0xef]);
    // A whole-BAR bulk read is one power-of-two access.
    let mut all = vec![0u8; card::BAR0_SIZE as usize];
    c.region_read(card::BAR0, 0, &mut all).unwrap();
    assert_eq!(&all[0x200..0x204], &[0, 0xab, 0xcd, 0xef]);

    // Refused by the server, never reaching the device.
    let mut three = [0u8; 3];
    assert_eq!(
        remote(c.region_read(card::BAR0, 0, &mut three).unwrap_err()),
        errno::EINVAL
    );
    assert_eq!(
        remote(c.read32(card::BAR0, card::BAR0_SIZE - 2).unwrap_err()),
        errno::EINVAL
    );
    assert_eq!(
        remote(c.read32(card::BAR0, card::BAR0_SIZE).unwrap_err()),
        errno::EINVAL
    );
    assert_eq!(remote(c.read32(card::BAR0, 2).unwrap_err()), errno::EINVAL);
    assert_eq!(
        remote(c.read32(card::BAR0, u64::MAX - 1).unwrap_err()),
        errno::EINVAL
    );
    assert_eq!(remote(c.read32(3, 0).unwrap_err()), errno::EINVAL);
    assert_eq!(remote(c.write32(8, 0, 1).unwrap_err()), errno::EINVAL);
    assert!(matches!(
        c.region_read(card::BAR0, 0, &mut []).unwrap_err(),
        Error::InvalidArgument(_)
    ));
    // The connection is still fine after error replies.
    assert_eq!(
        c.read32(card::BAR0, 4).unwrap(),
        0x1234_5678u32.wrapping_mul(2)
    );

    c.reset().unwrap();
    assert_eq!(c.read32(card::BAR0, 4).unwrap(), 0);
    assert_eq!(srv.card.state.lock().unwrap().resets, 1);
    assert!(srv.violations().is_empty(), "{:?}", srv.violations());
}

#[test]
fn dma_through_a_shared_memfd() {
    let srv = TestServer::start();
    let mut c = Client::connect(&srv.path, T).unwrap();
    let buf = DmaBuffer::new(2 * DMA_PAGE_SIZE as usize).unwrap();
    assert_eq!(buf.len(), 8192);
    let data: Vec<u8> = (0..buf.len()).map(|i| (i * 7) as u8).collect();
    assert!(buf.write(0, &data));
    let iova = 0x10_0000u64;
    c.dma_map(buf.fd(), iova, buf.len() as u64, 0).unwrap();

    // Device reads client memory.
    c.write64(card::BAR0, REG_DMA_ADDR, iova + 100).unwrap();
    c.write32(card::BAR0, REG_DMA_LEN, 5000).unwrap();
    c.write32(card::BAR0, REG_DOORBELL, CMD_SUM).unwrap();
    assert_eq!(c.read32(card::BAR0, REG_STATUS).unwrap(), 0);
    let want: u32 = data[100..5100].iter().map(|&b| u32::from(b)).sum();
    assert_eq!(c.read32(card::BAR0, REG_RESULT).unwrap(), want);

    // Device writes client memory.
    c.write64(card::BAR0, REG_DMA_ADDR, iova + 4096).unwrap();
    c.write32(card::BAR0, REG_DMA_LEN, 4096).unwrap();
    c.write32(card::BAR0, REG_DOORBELL, CMD_PATTERN).unwrap();
    assert_eq!(c.read32(card::BAR0, REG_STATUS).unwrap(), 0);
    let mut back = vec![0u8; 4096];
    assert!(buf.read(4096, &mut back));
    assert!(back.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    let mut first = vec![0u8; 4096];
    assert!(buf.read(0, &mut first));
    assert_eq!(first, data[..4096], "bytes outside the DMA are untouched");
    let mut b5 = [0u8; 1];
    assert!(buf.read(4096 + 5, &mut b5));
    assert_eq!(b5[0], pattern(5));
    assert!(buf.write(0, &[0xff]));
    assert!(!buf.write(buf.len() - 1, &[0, 0]), "past the end");
    let mut b0 = [0u8; 1];
    assert!(buf.read(0, &mut b0));
    assert_eq!(b0[0], 0xff);
    assert!(buf.write(0, &data[..1]));

    // An access past the mapping fails in the device, not in the server.
    c.write64(card::BAR0, REG_DMA_ADDR, iova + 8000).unwrap();
    c.write32(card::BAR0, REG_DMA_LEN, 500).unwrap();
    c.write32(card::BAR0, REG_DOORBELL, CMD_SUM).unwrap();
    assert_eq!(c.read32(card::BAR0, REG_STATUS).unwrap(), 1);

    // Overlap and bad sizes.
    assert_eq!(
        remote(c.dma_map(buf.fd(), iova + 4096, 4096, 0).unwrap_err()),
        errno::EEXIST
    );
    assert_eq!(
        remote(c.dma_map(buf.fd(), 0, 0, 0).unwrap_err()),
        errno::EINVAL
    );
    assert_eq!(
        remote(c.dma_map(buf.fd(), 0x20_0000, 3 * 4096, 0).unwrap_err()),
        errno::EINVAL,
        "larger than the memfd"
    );
    assert_eq!(
        remote(c.dma_map(buf.fd(), 0x20_0001, 4096, 0).unwrap_err()),
        errno::EINVAL
    );
    // A second, disjoint mapping of the same memfd (at an offset) is fine.
    c.dma_map(buf.fd(), 0x40_0000, 4096, 4096).unwrap();
    c.write64(card::BAR0, REG_DMA_ADDR, 0x40_0000).unwrap();
    c.write32(card::BAR0, REG_DMA_LEN, 16).unwrap();
    c.write32(card::BAR0, REG_DOORBELL, CMD_SUM).unwrap();
    let want16: u32 = (0..16).map(|i| u32::from(pattern(i))).sum();
    assert_eq!(c.read32(card::BAR0, REG_RESULT).unwrap(), want16);

    // Unmap: exact match only.
    assert_eq!(remote(c.dma_unmap(iova, 4096).unwrap_err()), errno::ENOENT);
    c.dma_unmap(iova, buf.len() as u64).unwrap();
    assert_eq!(
        remote(c.dma_unmap(iova, buf.len() as u64).unwrap_err()),
        errno::ENOENT
    );
    c.write64(card::BAR0, REG_DMA_ADDR, iova).unwrap();
    c.write32(card::BAR0, REG_DOORBELL, CMD_SUM).unwrap();
    assert_eq!(
        c.read32(card::BAR0, REG_STATUS).unwrap(),
        1,
        "unmapped memory is gone"
    );

    // Disconnect releases the remaining mapping.
    drop(c);
    srv.wait_released();
    assert!(srv.violations().is_empty(), "{:?}", srv.violations());
}

#[test]
fn interrupt_through_an_eventfd() {
    let srv = TestServer::start();
    let mut c = Client::connect(&srv.path, T).unwrap();
    let ev = IrqEvent::new().unwrap();
    c.set_irqs(card::IRQ_INDEX, 0, &[ev.as_fd()]).unwrap();
    assert_eq!(ev.try_take().unwrap(), None);

    c.write32(card::BAR0, REG_DOORBELL, CMD_IRQ).unwrap();
    assert_eq!(c.read32(card::BAR0, REG_STATUS).unwrap(), 0);
    assert_eq!(ev.wait(T).unwrap(), Some(1));
    c.write32(card::BAR0, REG_DOORBELL, CMD_IRQ).unwrap();
    c.write32(card::BAR0, REG_DOORBELL, CMD_IRQ).unwrap();
    assert_eq!(ev.wait(T).unwrap(), Some(2));
    assert_eq!(ev.wait(Duration::from_millis(20)).unwrap(), None);

    // Out-of-range requests are refused by the server.
    assert_eq!(
        remote(c.set_irqs(card::IRQ_INDEX, 1, &[ev.as_fd()]).unwrap_err()),
        errno::EINVAL
    );
    assert_eq!(
        remote(c.set_irqs(0, 0, &[ev.as_fd()]).unwrap_err()),
        errno::EINVAL
    );
    assert_eq!(
        remote(c.set_irqs(99, 0, &[ev.as_fd()]).unwrap_err()),
        errno::EINVAL
    );

    c.disable_irqs(card::IRQ_INDEX).unwrap();
    c.write32(card::BAR0, REG_DOORBELL, CMD_IRQ).unwrap();
    assert_eq!(
        c.read32(card::BAR0, REG_STATUS).unwrap(),
        2,
        "no IRQ fd after disable"
    );
    assert_eq!(ev.try_take().unwrap(), None);

    // Reassign, then disconnect: the server releases the descriptor.
    c.set_irqs(card::IRQ_INDEX, 0, &[ev.as_fd()]).unwrap();
    drop(c);
    srv.wait_released();
    assert!(srv.violations().is_empty(), "{:?}", srv.violations());
}

#[test]
fn second_client_is_refused_then_served() {
    let srv = TestServer::start();
    let mut a = Client::connect(&srv.path, T).unwrap();
    let t0 = Instant::now();
    match Client::connect(&srv.path, T) {
        Err(Error::Busy) => {}
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "refusal is immediate"
    );
    // The attached client is undisturbed.
    a.write32(card::BAR0, 0, 7).unwrap();
    assert_eq!(a.read32(card::BAR0, 0).unwrap(), 7);
    drop(a);
    let mut b = Client::connect(&srv.path, T).unwrap();
    assert_eq!(
        b.read32(card::BAR0, 0).unwrap(),
        7,
        "device state survives reconnects"
    );
}

#[test]
fn server_restart_on_same_path_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    // A stale socket file (no listener) is replaced.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = hitless_vfio_user::Server::bind(&path, test_limits()).unwrap();
    // A live one is not.
    assert!(matches!(
        hitless_vfio_user::Server::bind(&path, test_limits()),
        Err(hitless_vfio_user::Error::AddrInUse(_))
    ));
    let stop = server.stop_handle();
    let mut dev = FakeCard::new();
    let t = std::thread::spawn(move || {
        server.run(&mut dev).unwrap();
        drop(server);
    });
    let mut c = Client::connect(&path, T).unwrap();
    c.write32(card::BAR0, 0, 1).unwrap();
    let t0 = Instant::now();
    stop.stop();
    t.join().unwrap();
    assert!(t0.elapsed() < Duration::from_millis(1500));
    assert!(!path.exists(), "socket file removed on drop");
    // The attached client sees the server go away, without hanging.
    assert!(matches!(c.read32(card::BAR0, 0), Err(Error::Disconnected)));
}

/// A scripted fake server: answers VERSION and GET_INFO, then runs `rest`.
fn scripted_server<F>(
    rest: F,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::thread::JoinHandle<()>,
)
where
    F: FnOnce(UnixStream) + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let t = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        for _ in 0..2 {
            let (h, _) = read_message(&s, T).unwrap();
            let payload = match h.command {
                cmd::VERSION => Version {
                    major: proto::VERSION_MAJOR,
                    minor: 0,
                    json: None,
                }
                .encode(),
                cmd::DEVICE_GET_INFO => proto::DeviceInfo {
                    argsz: 16,
                    flags: 3,
                    num_regions: 9,
                    num_irqs: 5,
                }
                .encode(),
                other => panic!("unexpected command {other}"),
            };
            let mut m = Header::reply(h.msg_id, h.command, payload.len())
                .unwrap()
                .encode()
                .to_vec();
            m.extend_from_slice(&payload);
            (&s).write_all(&m).unwrap();
        }
        rest(s);
    });
    (dir, path, t)
}

#[test]
fn hung_server_times_out_at_connect() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hung.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let t = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        // Read the VERSION request, never answer, keep the socket open.
        let _ = read_message(&s, Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(800));
    });
    let t0 = Instant::now();
    let r = Client::connect(&path, Duration::from_millis(200));
    let took = t0.elapsed();
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    t.join().unwrap();
}

#[test]
fn listener_that_never_accepts_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noaccept.sock");
    let _listener = UnixListener::bind(&path).unwrap();
    let t0 = Instant::now();
    let r = Client::connect(&path, Duration::from_millis(200));
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    assert!(t0.elapsed() < Duration::from_millis(1500));
}

#[test]
fn hung_server_times_out_per_call_and_stale_replies_are_skipped() {
    let (_dir, path, t) = scripted_server(|s| {
        // First region read: answer late (after the client gave up).
        let (h1, p1) = read_message(&s, T).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let a1 = RegionAccess::decode(&p1).unwrap();
        let stale = a1.encode_with(&0xdead_beefu32.to_ne_bytes());
        let mut m = Header::reply(h1.msg_id, h1.command, stale.len())
            .unwrap()
            .encode()
            .to_vec();
        m.extend_from_slice(&stale);
        (&s).write_all(&m).unwrap();
        // Second: answer at once with a different value.
        let (h2, p2) = read_message(&s, T).unwrap();
        let a2 = RegionAccess::decode(&p2).unwrap();
        let fresh = a2.encode_with(&0x600du32.to_ne_bytes());
        let mut m = Header::reply(h2.msg_id, h2.command, fresh.len())
            .unwrap()
            .encode()
            .to_vec();
        m.extend_from_slice(&fresh);
        (&s).write_all(&m).unwrap();
        // Third: never answer.
        let _ = read_message(&s, T);
        std::thread::sleep(Duration::from_millis(500));
    });
    let mut c = Client::connect(&path, T).unwrap();
    c.set_timeout(Duration::from_millis(200));
    let t0 = Instant::now();
    assert!(matches!(c.read32(0, 0), Err(Error::Timeout(_))));
    assert!(t0.elapsed() < Duration::from_millis(1500));
    assert!(c.is_usable());
    std::thread::sleep(Duration::from_millis(300)); // the stale reply arrives
    c.set_timeout(T);
    assert_eq!(
        c.read32(0, 0).unwrap(),
        0x600d,
        "the stale reply was skipped"
    );
    c.set_timeout(Duration::from_millis(200));
    let t0 = Instant::now();
    assert!(matches!(c.reset(), Err(Error::Timeout(_))));
    assert!(t0.elapsed() < Duration::from_millis(1500));
    t.join().unwrap();
}

#[test]
fn dead_server_gives_disconnected() {
    let (_dir, path, t) = scripted_server(drop);
    let mut c = Client::connect(&path, T).unwrap();
    t.join().unwrap();
    let t0 = Instant::now();
    assert!(matches!(c.read32(0, 0), Err(Error::Disconnected)));
    assert!(matches!(c.reset(), Err(Error::Disconnected)));
    assert!(t0.elapsed() < Duration::from_millis(1000));
    // No server at all.
    drop(_dir);
    assert!(Client::connect(&path, Duration::from_millis(200)).is_err());
}

#[test]
fn server_error_reply_becomes_remote() {
    let (_dir, path, t) = scripted_server(|s| {
        let (h, _) = read_message(&s, T).unwrap();
        (&s).write_all(&Header::error_reply(h.msg_id, h.command, 5).encode())
            .unwrap();
        // A reply with a broken size ends the client's trust in the stream.
        let (h, _) = read_message(&s, T).unwrap();
        let mut bad = Header::reply(h.msg_id, h.command, 0).unwrap();
        bad.size = 3;
        (&s).write_all(&bad.encode()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    });
    let mut c = Client::connect(&path, T).unwrap();
    assert!(matches!(c.read32(0, 0), Err(Error::Remote(5))));
    assert!(matches!(c.read32(0, 0), Err(Error::Protocol(_))));
    assert!(!c.is_usable());
    assert!(matches!(c.read32(0, 0), Err(Error::Disconnected)));
    t.join().unwrap();
}
