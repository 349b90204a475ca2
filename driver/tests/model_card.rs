//! The driver core against the in-process reference model.

use hitless_driver::backend::model::{ModelIo, VecWindow};
use hitless_driver::{Card, CardIo, DmaWindow, Error, Options, Tier};
use hitless_hdl::contract::{self, perm, reg, Descriptor, Status, DEFAULT_GEOMETRY};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

const REGION: u32 = perm::FULL_REGION_WINDOW;

fn open() -> (Card<ModelIo>, u32) {
    let mut card = Card::open(ModelIo::new(DEFAULT_GEOMETRY, 8 << 20), Options::default()).unwrap();
    let key = card
        .program_entry(1, 0xABCDE, 0, DEFAULT_GEOMETRY.region_size, REGION)
        .unwrap();
    (card, key)
}

#[test]
fn checkpoint_and_restore_random_sizes_both_tiers() {
    let (mut card, key) = open();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for i in 0..24 {
        let len = match i % 4 {
            0 => rng.gen_range(1..64),
            1 => rng.gen_range(64..100_000),
            2 => rng.gen_range(100_000..=contract::MAX_TRANSFER as usize),
            _ => rng.gen_range(
                contract::MAX_TRANSFER as usize + 1..=DEFAULT_GEOMETRY.region_size as usize,
            ),
        };
        let tier = if i % 2 == 0 { Tier::Warm } else { Tier::Cold };
        let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let c = card.checkpoint(key, tier, &data).unwrap();
        assert_eq!(c.crc, contract::crc32c(&data));
        assert_eq!(
            card.restore(key, tier).unwrap(),
            data,
            "round {i}, {len} bytes"
        );
    }
    assert_eq!(card.io().dma_faults(), 0);
    let st = card.status().unwrap();
    assert_eq!(st.ops_failed, 0);
    assert_eq!(st.warm.seq, 12);
    assert_eq!(st.cold.seq, 12);
}

#[test]
fn rings_wrap_many_times() {
    let (mut card, _) = open();
    let nop = Descriptor::default();
    for round in 0..4000u32 {
        let batch = 1 + (round as usize % 40);
        let idx = card.submit(&vec![nop; batch]).unwrap();
        for i in idx {
            let c = card.wait(i, Duration::from_secs(1)).unwrap();
            assert_eq!(c.desc_index, i);
        }
    }
    // 16-bit indices wrapped (more than 65536 descriptors went through).
    assert!(card.status().unwrap().ops_ok > 65_536);
}

#[test]
fn a_second_driver_takes_over_cleanly() {
    let (mut card, key) = open();
    let data = vec![7u8; 5000];
    card.checkpoint(key, Tier::Cold, &data).unwrap();
    // Leave work queued and unreaped, then hand the card to a new driver.
    card.submit(&[Descriptor::default(); 5]).unwrap();
    let io = std::mem::replace(card.io(), ModelIo::new(DEFAULT_GEOMETRY, 4096));
    drop(card);
    let mut card = Card::open(
        io,
        Options {
            dq_log2: 3,
            cq_log2: 4,
            ..Default::default()
        },
    )
    .unwrap();
    let key = card
        .program_entry(1, 0xABCDE, 0, DEFAULT_GEOMETRY.region_size, REGION)
        .unwrap();
    assert_eq!(card.restore(key, Tier::Cold).unwrap(), data);
    for _ in 0..100 {
        card.checkpoint(key, Tier::Warm, &[1, 2, 3]).unwrap();
    }
}

#[test]
fn device_errors_are_typed() {
    let (mut card, key) = open();
    let bad_key = key ^ 0x100;
    match card.write(bad_key, Tier::Warm, 0, &[1; 8], false) {
        Err(Error::Device {
            status: Status::BadKey,
        }) => {}
        other => panic!("{other:?}"),
    }
    match card.write(key, Tier::Warm, 8, &[1; 8], true) {
        Err(Error::Device {
            status: Status::BadCommit,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        card.write(key, Tier::Warm, 0, &[], false),
        Err(Error::InvalidArgument(_))
    ));
    card.write(key, Tier::Warm, 0, &[9; 64], false).unwrap();
    match card.validate(key, Tier::Warm, 0, 64, Some(0)) {
        Err(Error::Device {
            status: Status::CrcMismatch,
        }) => {}
        other => panic!("{other:?}"),
    }
    let too_big = vec![0u8; DEFAULT_GEOMETRY.region_size as usize + 1];
    assert!(matches!(
        card.checkpoint(key, Tier::Warm, &too_big),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn append_and_trim() {
    let (mut card, _) = open();
    let g = DEFAULT_GEOMETRY;
    let log = card
        .program_entry(
            2,
            0x10,
            g.log_base(),
            g.log_size,
            perm::VALID | perm::READ | perm::LOG | perm::COLD,
        )
        .unwrap();
    let mut offsets = Vec::new();
    for i in 0..10u8 {
        offsets.push(
            card.append(log, Tier::Cold, &vec![i; 100 + i as usize])
                .unwrap(),
        );
    }
    let st = card.tier_status(Tier::Cold).unwrap();
    assert_eq!(st.log_tail, 0);
    assert_eq!(offsets[0], 0);
    card.trim(log, Tier::Cold, offsets[5]).unwrap();
    assert_eq!(card.tier_status(Tier::Cold).unwrap().log_tail, offsets[5]);
    assert!(matches!(
        card.trim(log, Tier::Cold, st.log_head + 8),
        Err(Error::Device {
            status: Status::BadTrim
        })
    ));
}

/// A transport whose registers answer but whose ID is wrong / version is
/// wrong / which never completes anything.
struct Fake {
    id: u32,
    version: u32,
    window: VecWindow,
}

impl CardIo for Fake {
    fn read32(&mut self, offset: u32) -> hitless_driver::Result<u32> {
        Ok(match offset {
            reg::ID => self.id,
            reg::VERSION => self.version,
            reg::STATUS => contract::status::BOOT_DONE,
            reg::NV_REGION_SIZE => DEFAULT_GEOMETRY.region_size,
            reg::NV_LOG_SIZE => DEFAULT_GEOMETRY.log_size,
            _ => 0,
        })
    }
    fn write32(&mut self, _: u32, _: u32) -> hitless_driver::Result<()> {
        Ok(())
    }
    fn dma(&mut self) -> &mut dyn DmaWindow {
        &mut self.window
    }
    fn wait_irq(&mut self, timeout: Duration) -> hitless_driver::Result<bool> {
        std::thread::sleep(timeout.min(Duration::from_millis(1)));
        Ok(false)
    }
    fn describe(&self) -> String {
        "fake".into()
    }
}

fn fake(id: u32, version: u32) -> Fake {
    Fake {
        id,
        version,
        window: VecWindow {
            iova: 0x1000,
            bytes: vec![0; 1 << 16],
        },
    }
}

#[test]
fn refuses_what_is_not_a_compatible_hitless_card() {
    assert!(matches!(
        Card::open(fake(0xFFFF_FFFF, 0), Options::default()),
        Err(Error::NotHitless { .. })
    ));
    assert!(matches!(
        Card::open(
            fake(contract::CONTROLLER_ID, 0x0002_0000),
            Options::default()
        ),
        Err(Error::Version { .. })
    ));
}

#[test]
fn a_dead_card_times_out_instead_of_hanging() {
    let opts = Options {
        op_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let mut card = Card::open(
        fake(contract::CONTROLLER_ID, contract::CONTRACT_VERSION),
        opts,
    )
    .unwrap();
    let t = Instant::now();
    match card.write(0, Tier::Warm, 0, &[1; 8], false) {
        Err(Error::Timeout { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn progress_is_reported_up_to_the_total() {
    let (mut card, key) = open();
    let data = vec![3u8; contract::MAX_TRANSFER as usize + 500_000];
    let mut seen = Vec::new();
    card.checkpoint_with_progress(key, Tier::Warm, &data, &mut |d, t| seen.push((d, t)))
        .unwrap();
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(seen.last(), Some(&(data.len() as u64, data.len() as u64)));
    let mut seen = Vec::new();
    let back = card
        .restore_with_progress(key, Tier::Warm, &mut |d, t| seen.push((d, t)))
        .unwrap();
    assert_eq!(back, data);
    assert_eq!(seen.last(), Some(&(data.len() as u64, data.len() as u64)));
}

/// A transport whose DMA window reads like a byte-by-byte bus racing the
/// card's writes (the UART bridge): the first read after the card ran sees
/// every word the card wrote half-written, its new top byte (read last)
/// above older bytes; the card's writes are done by the next read. The
/// completion's phase bit is in the top byte of its second word.
struct Tearing {
    io: ModelIo,
    view: TearingWindow,
}

struct TearingWindow {
    iova: u64,
    now: Vec<u8>,
    before: Vec<u8>,
    racing: std::cell::Cell<bool>,
    tears: std::cell::Cell<u64>,
}

impl DmaWindow for TearingWindow {
    fn iova(&self) -> u64 {
        self.iova
    }
    fn len(&self) -> usize {
        self.now.len()
    }
    fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        let Some(end) = offset
            .checked_add(buf.len())
            .filter(|&e| e <= self.now.len())
        else {
            return false;
        };
        let racing = self.racing.replace(false);
        for (i, a) in (offset..end).enumerate() {
            let word = a & !7;
            let changed = self.now[word..word + 8] != self.before[word..word + 8];
            buf[i] = self.now[a];
            if racing && changed && a % 8 != 7 {
                buf[i] = self.before[a];
                self.tears.set(self.tears.get() + 1);
            }
        }
        true
    }
    fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        let Some(end) = offset
            .checked_add(data.len())
            .filter(|&e| e <= self.now.len())
        else {
            return false;
        };
        self.now[offset..end].copy_from_slice(data);
        self.before[offset..end].copy_from_slice(data);
        true
    }
}

impl CardIo for Tearing {
    fn read32(&mut self, offset: u32) -> hitless_driver::Result<u32> {
        self.io.read32(offset)
    }
    fn write32(&mut self, offset: u32, value: u32) -> hitless_driver::Result<()> {
        // The model runs on register writes: hand it the window, let it
        // run, and remember what the window held before.
        let len = self.view.now.len();
        self.io.dma().write(0, &self.view.now);
        self.io.write32(offset, value)?;
        self.view.before = self.view.now.clone();
        self.io.dma().read(0, &mut self.view.now[..len]);
        self.view.racing.set(true);
        Ok(())
    }
    fn dma(&mut self) -> &mut dyn DmaWindow {
        &mut self.view
    }
    fn wait_irq(&mut self, timeout: Duration) -> hitless_driver::Result<bool> {
        self.io.wait_irq(timeout)
    }
    fn describe(&self) -> String {
        "tearing".into()
    }
}

#[test]
fn a_completion_read_racing_its_write_is_not_taken_half_written() {
    let mut io = ModelIo::new(DEFAULT_GEOMETRY, 1 << 20);
    let iova = io.dma().iova();
    let len = io.dma().len();
    let io = Tearing {
        io,
        view: TearingWindow {
            iova,
            now: vec![0; len],
            before: vec![0; len],
            racing: Default::default(),
            tears: Default::default(),
        },
    };
    let mut card = Card::open(io, Options::default()).unwrap();
    let key = card
        .program_entry(1, 0xABCDE, 0, DEFAULT_GEOMETRY.region_size, REGION)
        .unwrap();
    for i in 0..6u8 {
        let data = vec![i; 1000 + usize::from(i) * 300];
        let tier = if i % 2 == 0 { Tier::Warm } else { Tier::Cold };
        card.checkpoint(key, tier, &data).unwrap();
        assert_eq!(card.restore(key, tier).unwrap(), data);
    }
    assert!(card.io().view.tears.get() > 0, "no read was torn");
}

/// A reduced controller (`Model::lite`, as `rtl::lite`): the driver reads
/// its LIMITS, refuses what it lacks before submitting anything (a clear
/// error, no BAD_OPCODE round trip, nothing queued), and the rest works.
#[test]
fn a_reduced_controller_is_refused_what_it_lacks() {
    use hitless_hdl::model::Model;
    let mut model = Model::lite(DEFAULT_GEOMETRY);
    model.boot_scan();
    let mut card = Card::open(ModelIo::with_model(model, 8 << 20), Options::default()).unwrap();
    assert_eq!(card.limits(), contract::LITE_LIMITS);
    assert_eq!(card.status().unwrap().limits, contract::LITE_LIMITS);
    let key = card
        .program_entry(
            3,
            0x77,
            0,
            DEFAULT_GEOMETRY.region_size,
            perm::FULL_REGION_WINDOW | perm::LOG,
        )
        .unwrap();
    for (what, r) in [
        (
            "the cold tier",
            card.checkpoint(key, Tier::Cold, b"image").map(|_| ()),
        ),
        (
            "the append log",
            card.append(key, Tier::Warm, b"record").map(|_| ()),
        ),
        ("the append log", card.trim(key, Tier::Warm, 0)),
    ] {
        match r {
            Err(Error::Unsupported { what: w, limits }) => {
                assert_eq!((w, limits), (what, contract::LITE_LIMITS));
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    assert_eq!(
        card.io().read32(reg::OPS_FAILED).unwrap(),
        0,
        "nothing was submitted"
    );
    let c = card.checkpoint(key, Tier::Warm, b"image").unwrap();
    assert_eq!(c.seq, 1);
    assert_eq!(card.restore(key, Tier::Warm).unwrap(), b"image");
}

#[test]
fn validate_image_checks_every_byte_of_an_image_longer_than_a_transfer() {
    let (mut card, key) = open();
    let len = contract::MAX_TRANSFER as usize * 3 / 2; // two VALIDATE transfers
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    let c = card.checkpoint(key, Tier::Warm, &data).unwrap();
    assert_eq!(
        card.validate_image(key, Tier::Warm).unwrap(),
        (len as u32, c.crc)
    );
    // A flipped bit past the first transfer: the old check (the first
    // MiB only, no CRC past it) called this image valid.
    let st = card.tier_status(Tier::Warm).unwrap();
    let base = if st.active == 0 {
        DEFAULT_GEOMETRY.region_a_base()
    } else {
        DEFAULT_GEOMETRY.region_b_base()
    } as usize;
    card.io().model().nv[0][base + len - 5] ^= 0x10;
    assert!(matches!(
        card.validate_image(key, Tier::Warm),
        Err(Error::Device {
            status: Status::CrcMismatch
        })
    ));
    // An empty tier is a valid empty image.
    assert_eq!(card.validate_image(key, Tier::Cold).unwrap(), (0, 0));
}

#[test]
fn validate_image_reports_a_dead_card_as_a_timeout() {
    let opts = Options {
        op_timeout: Duration::from_millis(200),
        ..Options::default()
    };
    let mut card = Card::open(ModelIo::new(DEFAULT_GEOMETRY, 8 << 20), opts).unwrap();
    let key = card
        .program_entry(1, 0xABCDE, 0, DEFAULT_GEOMETRY.region_size, REGION)
        .unwrap();
    card.checkpoint(key, Tier::Warm, &[1u8; 64]).unwrap();
    // The controller stops taking descriptors: no completion comes.
    card.io().write32(reg::CTRL, 0).unwrap();
    match card.validate_image(key, Tier::Warm) {
        Err(Error::Timeout { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
}
