//! The lite controller against the reference model (`Model::lite`), the
//! Corundum way: seeded random descriptors (every opcode, valid and not,
//! flags, keys, windows, host addresses at any alignment, lengths,
//! expected CRCs right and wrong, ring overflows, warm resets that run the
//! boot scan over whatever the random raw writes left in the superblocks
//! and regions), each submitted to the Verilated lite board over the
//! simulated UART and to the model; the scoreboard compares every
//! completion, the bytes READ delivered, the registers after every
//! operation, the host window now and then and the whole tier at the end.

use hitless_board_sim::flash::SpiFlash;
use hitless_board_sim::{PtyBoard, Variant};
use hitless_driver::backend::uart::{UartIo, WINDOW_BYTES};
use hitless_driver::CardIo;
use hitless_hdl::contract::{
    board, ctrl, flags, perm, reg, Descriptor, NvGeometry, Opcode, CPL_BYTES, DESC_BYTES,
};
use hitless_hdl::model::{HostMemory, Model};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

const GEOMETRY: NvGeometry = board::GEOMETRY;
const DQ_BASE: u64 = 0x12_0000_0000; // high bits: the window ignores them
const DQ_LOG2: u32 = 2;
const CQ_BASE: u64 = 0x100;
const CQ_LOG2: u32 = 3;
const DATA: usize = 0x200;

/// The board's host window as the model sees it: 16 KiB, every address
/// modulo its size.
struct Window(Vec<u8>);

impl HostMemory for Window {
    fn read(&self, addr: u64, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.0[(addr as usize).wrapping_add(i) % WINDOW_BYTES];
        }
    }
    fn write(&mut self, addr: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.0[(addr as usize).wrapping_add(i) % WINDOW_BYTES] = *b;
        }
    }
}

struct Bench {
    io: UartIo,
    model: Model,
    host: Window,
}

impl Bench {
    fn write_reg(&mut self, r: u32, v: u32) {
        self.io.write32(r, v).expect("CSR write");
        self.model.write_reg(r, v);
    }

    fn write_host(&mut self, at: usize, data: &[u8]) {
        assert!(self.io.dma().write(at, data), "window write");
        self.host.write(at as u64, data);
    }

    fn read_window(&mut self, at: usize, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        assert!(self.io.dma().read(at, &mut b), "window read");
        b
    }

    /// Registers that must agree after every operation.
    fn compare_registers(&mut self, what: &str) {
        // Every register but the free-running cycle counter.
        for r in reg::REGISTERS.iter().filter(|r| r.offset != reg::CYCLES) {
            let r = r.offset;
            let hw = self.io.read32(r).expect("CSR read");
            assert_eq!(
                hw,
                self.model.read_reg(r),
                "{what}: register {r:#x} (board vs model)"
            );
        }
    }

    /// Wait until the board's CQ_HEAD reaches the model's.
    fn wait_completions(&mut self, what: &str) {
        let want = self.model.read_reg(reg::CQ_HEAD);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let head = self.io.read32(reg::CQ_HEAD).expect("CSR read");
            if head == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: CQ_HEAD {head}, the model is at {want}"
            );
        }
    }

    /// Rings, interrupts and the protection table after reset; the same
    /// random table in both.
    fn setup(&mut self, rng: &mut ChaCha8Rng) {
        self.write_reg(reg::DQ_BASE_LO, DQ_BASE as u32);
        self.write_reg(reg::DQ_BASE_HI, (DQ_BASE >> 32) as u32);
        self.write_reg(reg::DQ_SIZE_LOG2, DQ_LOG2);
        self.write_reg(reg::CQ_BASE_LO, CQ_BASE as u32);
        self.write_reg(reg::CQ_BASE_HI, 0);
        self.write_reg(reg::CQ_SIZE_LOG2, CQ_LOG2);
        self.write_reg(reg::IRQ_MASK, rng.gen_range(0..8));
        if rng.gen_bool(0.5) {
            self.write_reg(reg::SCRATCH, rng.gen());
        }
        self.write_reg(reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE);
        let total = GEOMETRY.total();
        for i in 0..8u32 {
            let kind = rng.gen_range(0..10);
            let (base, len, mut p) = match kind {
                // A whole-region window, all permissions.
                0..=3 => (0, GEOMETRY.region_size, perm::ALL),
                // Part of a region.
                4 | 5 => {
                    let base = rng.gen_range(0..8) * 256;
                    (base, rng.gen_range(0..=GEOMETRY.region_size), perm::ALL)
                }
                // Raw: somewhere in the tier (superblocks included).
                6..=8 => {
                    let base = rng.gen_range(0..total / 8) * 8;
                    (base, rng.gen_range(0..=total), perm::ALL & !perm::REGION)
                }
                // Anything.
                _ => (rng.gen(), rng.gen(), rng.gen::<u32>() & perm::ALL),
            };
            if rng.gen_bool(0.25) {
                p &= !(1 << rng.gen_range(1..8));
            }
            if rng.gen_bool(0.1) {
                p &= !perm::VALID;
            }
            self.write_reg(reg::PT_INDEX, i);
            self.write_reg(reg::PT_KEY_TAG, tag(i));
            self.write_reg(reg::PT_BASE, base);
            self.write_reg(reg::PT_LEN, len);
            self.write_reg(reg::PT_PERM, p);
            self.write_reg(reg::PT_COMMIT, 1);
        }
        // The corruptor's window: the whole tier, raw (entry 15; random
        // descriptors use 0-8).
        self.write_reg(reg::PT_INDEX, 15);
        self.write_reg(reg::PT_KEY_TAG, tag(15));
        self.write_reg(reg::PT_BASE, 0);
        self.write_reg(reg::PT_LEN, total);
        self.write_reg(reg::PT_PERM, perm::VALID | perm::WRITE | perm::WARM);
        self.write_reg(reg::PT_COMMIT, 1);
        self.write_reg(reg::PT_INDEX, rng.gen_range(0..16));
    }
}

fn tag(i: u32) -> u32 {
    (0x9e37_79b9u32.wrapping_mul(i + 1) << 4) | i
}

fn random_descriptor(rng: &mut ChaCha8Rng, n: u16) -> Descriptor {
    let opcode = match rng.gen_range(0..100) {
        0..=29 => Opcode::Write as u8,
        30..=49 => Opcode::Read as u8,
        50..=59 => Opcode::Validate as u8,
        60..=74 => Opcode::Flip as u8,
        75..=79 => Opcode::Nop as u8,
        80..=91 => [Opcode::Copy, Opcode::Append, Opcode::LogTrim][rng.gen_range(0..3)] as u8,
        _ => rng.gen_range(8..=255),
    };
    let mut f = 0u8;
    for (bit, p) in [
        (flags::COLD, 0.08),
        (flags::SRC_COLD, 0.04),
        (flags::CHECK, 0.4),
        (flags::ALT, 0.25),
        (flags::COMMIT, 0.35),
        (flags::IRQ, 0.3),
        (0x40, 0.02),
    ] {
        if rng.gen_bool(p) {
            f |= bit;
        }
    }
    let idx = rng.gen_range(0..9u32);
    let key = if rng.gen_bool(0.9) {
        tag(idx)
    } else {
        rng.gen()
    };
    let len = match rng.gen_range(0..100) {
        0..=4 => 0,
        5..=9 => rng.gen(),
        10..=13 => rng.gen_range(1..=4200),
        _ => rng.gen_range(1..=700),
    };
    let nv_offset = match rng.gen_range(0..10) {
        0..=4 => 0,
        5..=7 => rng.gen_range(0..600) * 8,
        8 => rng.gen_range(0..5000),
        _ => rng.gen(),
    };
    // Host buffers stay in the data area (the rings live below it).
    let span = (len as usize).min(2000);
    let host = rng.gen_range(DATA..WINDOW_BYTES - span) as u64;
    let host_addr = if rng.gen_bool(0.1) {
        host | (rng.gen::<u64>() << 14)
    } else {
        host
    };
    Descriptor {
        opcode,
        flags: f,
        tag: n,
        key,
        host_addr,
        nv_offset,
        len: if len as usize > 2000 && opcode != Opcode::Flip as u8 {
            // Longer host transfers would reach the rings: keep those
            // lengths for the range and length checks only.
            if rng.gen_bool(0.5) {
                len
            } else {
                2000
            }
        } else {
            len
        },
        aux: rng.gen(),
        crc: rng.gen(),
    }
}

#[test]
fn lite_controller_matches_the_model_on_random_descriptors() {
    let seed = std::env::var("HITLESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x11fe_u64);
    let ops: usize = std::env::var("HITLESS_LITE_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(240);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let board = PtyBoard::start_variant(
        Variant::Lite,
        Duration::from_secs(1200),
        SpiFlash::new(4096),
    )
    .expect("pty");
    let io = UartIo::open(board.path(), 115_200, Duration::from_secs(10)).expect("uart");
    let mut b = Bench {
        io,
        model: Model::lite(GEOMETRY),
        host: Window(vec![0; WINDOW_BYTES]),
    };
    b.model.boot_scan();
    // The board's SPRAM starts at zero in simulation, as the model's does.
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.io.read32(reg::STATUS).expect("CSR read") & 1 == 0 {
        assert!(Instant::now() < deadline, "boot scan");
    }
    b.setup(&mut rng);
    b.compare_registers("after setup");
    let mut resets = 0;
    let mut commits = 0;
    let mut reset_next = false;
    let mut corrupt_left = 0;
    // Boot results after the warm resets: blank, intact, fallen back, lost.
    let mut boots = [0usize; 4];
    let mut by_status = [0usize; 256];
    for n in 0..ops {
        let what = format!("seed {seed:#x} op {n}");
        if reset_next {
            reset_next = false;
            // Warm reset: registers and table cleared, the boot scan runs
            // over whatever the operations left in the tier.
            board.press_reset();
            b.model.reset();
            std::thread::sleep(Duration::from_millis(20));
            let deadline = Instant::now() + Duration::from_secs(30);
            while b.io.read32(reg::STATUS).expect("CSR read") & 1 == 0 {
                assert!(Instant::now() < deadline, "{what}: boot scan after reset");
            }
            b.compare_registers(&format!("{what}: after reset"));
            boots[(b.model.read_reg(reg::WARM_STATE) & 3) as usize] += 1;
            b.setup(&mut rng);
            resets += 1;
        }
        let mut d = random_descriptor(&mut rng, n as u16);
        if n > 0 && corrupt_left == 0 && rng.gen_range(0..20) == 0 {
            // A warm reset soon, after one or two operations that most
            // times damage what the boot scan will read.
            corrupt_left = if rng.gen_bool(0.3) { 2 } else { 1 };
        }
        if corrupt_left > 0 {
            corrupt_left -= 1;
            reset_next = corrupt_left == 0;
            if rng.gen_bool(0.85) {
                // A superblock slot, or the start of either region: a raw
                // WRITE of random bytes.
                let at = [0, 8, 56, 64, 72, 120, 4096, 4096 + 64, 8192, 8192 + 128];
                d = Descriptor {
                    opcode: Opcode::Write as u8,
                    tag: n as u16,
                    key: tag(15),
                    host_addr: DATA as u64 + rng.gen_range(0..64),
                    nv_offset: at[rng.gen_range(0..at.len())],
                    len: rng.gen_range(1..=16),
                    ..Default::default()
                };
            }
        }
        // Fresh data where a WRITE may take it from.
        let span = (d.len as usize).min(2000);
        let fresh: Vec<u8> = (0..span).map(|_| rng.gen()).collect();
        let at = (d.host_addr as usize) % WINDOW_BYTES;
        if !fresh.is_empty() && at + span <= WINDOW_BYTES {
            b.write_host(at, &fresh);
        }
        if d.flags & flags::CHECK != 0 && rng.gen_bool(0.6) {
            // The CRC the operation will compute: expected right.
            let mut probe = b.model.clone();
            let mut host = Window(b.host.0.clone());
            d.crc = probe.perform(&d, &mut host).crc;
        }
        let head = b.model.read_reg(reg::DQ_TAIL);
        let slot = (head & ((1 << DQ_LOG2) - 1)) as u64;
        let desc_at = ((DQ_BASE + slot * DESC_BYTES as u64) as usize) % WINDOW_BYTES;
        b.write_host(desc_at, &d.to_bytes());
        if rng.gen_range(0..25) == 0 {
            // A doorbell beyond the ring: refused, RING_OVERFLOW posted.
            b.write_reg(reg::DQ_TAIL, (head + 5 + rng.gen_range(0..100)) & 0xFFFF);
        }
        b.write_reg(reg::DQ_TAIL, (head + 1) & 0xFFFF);
        let done = b.model.process_rings(&mut b.host);
        if std::env::var("HITLESS_TRACE").is_ok() {
            eprintln!("{what}: {d:x?} -> {done:x?}");
        }
        b.wait_completions(&what);
        for c in &done {
            by_status[c.status as usize] += 1;
            let committing = c.opcode == Opcode::Flip as u8
                || (c.opcode == Opcode::Write as u8 && d.flags & flags::COMMIT != 0);
            if c.status == 0 && c.tag == d.tag && committing {
                commits += 1;
            }
        }
        // The completions the model wrote are in the board's window too.
        let cq_head = b.model.read_reg(reg::CQ_HEAD);
        for i in 0..done.len() as u32 {
            let s = (cq_head.wrapping_sub(1 + i) & ((1 << CQ_LOG2) - 1)) as usize;
            let at = CQ_BASE as usize + s * CPL_BYTES as usize;
            assert_eq!(
                b.read_window(at, CPL_BYTES as usize),
                b.host.0[at..at + CPL_BYTES as usize],
                "{what}: completion {:?} of {d:?}",
                done.last()
            );
        }
        if d.opcode == Opcode::Read as u8 && span > 0 && at + span <= WINDOW_BYTES {
            assert_eq!(
                b.read_window(at, span),
                b.host.0[at..at + span],
                "{what}: READ delivered {d:?} -> {done:?}"
            );
        }
        b.write_reg(reg::CQ_TAIL, cq_head);
        if std::env::var("HITLESS_TRACE").is_ok() {
            let w = b.read_window(0x180, 0x80);
            if w.iter().any(|&x| x != 0) {
                panic!("{what}: {w:x?}");
            }
        }
        b.compare_registers(&what);
        if n % 60 == 59 {
            let all = b.read_window(0, WINDOW_BYTES);
            let diff: Vec<usize> = (0..WINDOW_BYTES)
                .filter(|&i| all[i] != b.host.0[i])
                .collect();
            assert!(
                diff.is_empty(),
                "{what}: host window differs at {} bytes, first {:x?}",
                diff.len(),
                diff.iter()
                    .take(16)
                    .map(|&i| (i, all[i], b.host.0[i]))
                    .collect::<Vec<_>>()
            );
        }
    }
    // The whole tier, through a raw window, against the model's NV.
    b.write_reg(reg::PT_INDEX, 9);
    b.write_reg(reg::PT_KEY_TAG, tag(9));
    b.write_reg(reg::PT_BASE, 0);
    b.write_reg(reg::PT_LEN, GEOMETRY.total());
    b.write_reg(reg::PT_PERM, perm::VALID | perm::READ | perm::WARM);
    b.write_reg(reg::PT_COMMIT, 1);
    for chunk in 0..GEOMETRY.total() / 2048 {
        let d = Descriptor {
            opcode: Opcode::Read as u8,
            tag: 0xAAAA,
            key: tag(9),
            host_addr: 0x1000,
            nv_offset: chunk * 2048,
            len: 2048,
            ..Default::default()
        };
        let head = b.model.read_reg(reg::DQ_TAIL);
        let slot = (head & ((1 << DQ_LOG2) - 1)) as u64;
        let desc_at = ((DQ_BASE + slot * DESC_BYTES as u64) as usize) % WINDOW_BYTES;
        b.write_host(desc_at, &d.to_bytes());
        b.write_reg(reg::DQ_TAIL, (head + 1) & 0xFFFF);
        let done = b.model.process_rings(&mut b.host);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].status, 0, "tier read {chunk}");
        b.wait_completions("tier read");
        let got = b.read_window(0x1000, 2048);
        let off = (chunk * 2048) as usize;
        assert!(
            got == b.model.nv[0][off..off + 2048],
            "tier bytes {off:#x}..+2048 differ from the model's"
        );
        b.write_reg(reg::CQ_TAIL, b.model.read_reg(reg::CQ_HEAD));
    }
    // The random traffic reached every outcome the lite controller has.
    for (status, name) in [
        (0, "OK"),
        (1, "BAD_OPCODE"),
        (2, "BAD_LENGTH"),
        (3, "BAD_ALIGN"),
        (4, "OUT_OF_RANGE"),
        (5, "BAD_KEY"),
        (6, "PERMISSION"),
        (7, "CRC_MISMATCH"),
        (9, "RING_OVERFLOW"),
        (11, "BAD_COMMIT"),
    ] {
        assert!(
            by_status[status] > 0,
            "seed {seed:#x}: no {name} completion in {ops} operations: {by_status:?}"
        );
    }
    assert!(resets > 0, "no warm reset in {ops} operations");
    assert!(
        boots[1] > 0 && boots[0] + boots[2] + boots[3] > 0,
        "seed {seed:#x}: the boot scans saw {boots:?} (blank, ok, fell back, lost)"
    );
    eprintln!("seed {seed:#x}: {commits} commits, {resets} warm resets, boot results (blank, ok, fell back, lost) {boots:?}; statuses {by_status:?}");
    assert!(commits > 0, "nothing committed in {ops} operations");
    drop(b);
    board.stop();
}
