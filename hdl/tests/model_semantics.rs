//! Unit tests of the reference model against ARCHITECTURE.md "Operation semantics".

use hitless_hdl::contract::{
    self, crc32c, ctrl, flags, irq, log_header_word, log_pad_word, log_trailer_word, perm, reg,
    status, BootResult, Completion, Descriptor, NvGeometry, Opcode, Status, Superblock, CAPS_VALUE,
    CONTRACT_VERSION, CONTROLLER_ID, DEFAULT_GEOMETRY, MAX_TRANSFER, RING_MAX_LOG2, TAG_CONTROLLER,
};
use hitless_hdl::model::{
    parse_log, region_base, scan_tier, tier_bytes, HostMemory, LogError, Model, PagedMemory,
    PtEntry,
};

const G: NvGeometry = NvGeometry {
    region_size: 8192,
    log_size: 1024,
    data_size: 0,
};
const TAG: u32 = 0x0ABC_DEF1;
const ALL_REGION: u32 = perm::VALID
    | perm::READ
    | perm::WRITE
    | perm::COMMIT
    | perm::LOG
    | perm::WARM
    | perm::COLD
    | perm::REGION;
const ALL_RAW: u32 = ALL_REGION & !perm::REGION;
const HOST: u64 = 0x10_0000;

fn booted() -> Model {
    let mut m = Model::new(G);
    m.reset();
    m
}

/// Model with entry 1 = region-relative, everything; entry 2 = raw tier window, everything.
fn setup() -> (Model, PagedMemory, u32, u32) {
    let mut m = booted();
    let kr = m.program_pt(1, TAG, 0, G.region_size, ALL_REGION);
    let kw = m.program_pt(2, TAG + 1, 0, tier_bytes(&G) as u32, ALL_RAW);
    (m, PagedMemory::new(), kr, kw)
}

fn d(op: Opcode, fl: u8, key: u32, off: u32, len: u32) -> Descriptor {
    Descriptor {
        opcode: op as u8,
        flags: fl,
        tag: 0x55,
        key,
        host_addr: HOST,
        nv_offset: off,
        len,
        aux: 0,
        crc: 0,
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn st(c: &Completion) -> Status {
    c.status().expect("valid status")
}

fn reboot(m: &Model) -> Model {
    let mut n = Model::with_nv(m.geometry, m.nv[0].clone(), m.nv[1].clone());
    n.reset();
    n
}

/// Write `data` to region alternate of tier 0 through entry `key` and commit.
fn write_commit(m: &mut Model, host: &mut PagedMemory, key: u32, data: &[u8]) -> Completion {
    host.write(HOST, data);
    m.execute(
        &d(Opcode::Write, flags::COMMIT, key, 0, data.len() as u32),
        host,
    )
}

// ---------------------------------------------------------------------------
// Registers
// ---------------------------------------------------------------------------

#[test]
fn register_reset_values() {
    let m = booted();
    // The contract's reset column, after the boot scan of blank tiers.
    for r in reg::REGISTERS {
        if let Some(expect) = r.reset.after_boot(&G, false) {
            assert_eq!(m.read_reg(r.offset), expect, "{}", r.name);
        }
    }
    assert_eq!(m.read_reg(reg::NV_REGION_SIZE), G.region_size);
    assert_eq!(m.read_reg(reg::NV_LOG_BASE), G.log_base());
    assert_eq!(m.read_reg(reg::STATUS), status::BOOT_DONE);
    assert_eq!(m.read_reg(reg::IRQ_STATUS), irq::BOOT_DONE);
    let mut lite = Model::lite(G);
    lite.reset();
    for r in reg::REGISTERS {
        if let Some(expect) = r.reset.after_boot(&G, true) {
            assert_eq!(lite.read_reg(r.offset), expect, "lite: {}", r.name);
        }
    }
    assert_eq!(m.read_reg(reg::ID), CONTROLLER_ID);
    assert_eq!(m.read_reg(reg::VERSION), CONTRACT_VERSION);
    assert_eq!(m.read_reg(reg::CAPS), CAPS_VALUE);
    // Not booted: BOOT_DONE clear.
    let n = Model::new(G);
    assert_eq!(n.read_reg(reg::STATUS), 0);
    assert_eq!(n.read_reg(reg::IRQ_STATUS), 0);
    assert!(!n.boot_done());
}

#[test]
fn register_access_types() {
    let mut m = booted();
    m.write_reg(reg::SCRATCH, 0xDEAD_BEEF);
    assert_eq!(m.read_reg(reg::SCRATCH), 0xDEAD_BEEF);
    m.write_reg(reg::CTRL, 0xFFFF_FFFF);
    assert_eq!(m.read_reg(reg::CTRL), ctrl::ENABLE | ctrl::IRQ_ENABLE);
    m.write_reg(reg::IRQ_MASK, 0xFFFF_FFFF);
    assert_eq!(m.read_reg(reg::IRQ_MASK), 7);
    // Read-only registers ignore writes.
    for off in [
        reg::ID,
        reg::STATUS,
        reg::WARM_SEQ,
        reg::DQ_HEAD,
        reg::CQ_HEAD,
        reg::OPS_OK,
        reg::NV_LOG_SIZE,
    ] {
        let before = m.read_reg(off);
        m.write_reg(off, 0x1234_5678);
        assert_eq!(m.read_reg(off), before, "{off:#x}");
    }
    // Unknown and unaligned offsets read 0, writes are ignored.
    for off in [0x078, 0x0FC, 0x200, 0xFFC, 0x011, u32::MAX] {
        m.write_reg(off, 0xFFFF_FFFF);
        assert_eq!(m.read_reg(off), 0, "{off:#x}");
    }
    // 64-bit bases.
    m.write_reg(reg::DQ_BASE_LO, 0x1111_2220);
    m.write_reg(reg::DQ_BASE_HI, 0x3333_4444);
    assert_eq!(m.read_reg(reg::DQ_BASE_LO), 0x1111_2220);
    assert_eq!(m.read_reg(reg::DQ_BASE_HI), 0x3333_4444);
    // Ring size: 4 bits stored.
    m.write_reg(reg::DQ_SIZE_LOG2, 0x1F);
    assert_eq!(m.read_reg(reg::DQ_SIZE_LOG2), 0xF);
    m.write_reg(reg::CQ_TAIL, 0x1_2345);
    assert_eq!(m.read_reg(reg::CQ_TAIL), 0x2345);
    // W1C.
    assert_eq!(m.read_reg(reg::IRQ_STATUS), irq::BOOT_DONE);
    m.write_reg(reg::IRQ_STATUS, irq::COMPLETION);
    assert_eq!(m.read_reg(reg::IRQ_STATUS), irq::BOOT_DONE);
    m.write_reg(reg::IRQ_STATUS, irq::BOOT_DONE);
    assert_eq!(m.read_reg(reg::IRQ_STATUS), 0);
    // Reset restores everything.
    m.reset();
    assert_eq!(m.read_reg(reg::SCRATCH), 0);
    assert_eq!(m.read_reg(reg::CTRL), 0);
    assert_eq!(m.read_reg(reg::DQ_BASE_HI), 0);
    assert_eq!(m.read_reg(reg::DQ_SIZE_LOG2), 0);
}

#[test]
fn protection_table_programming() {
    let mut m = booted();
    m.write_reg(reg::PT_INDEX, 5);
    // The tag is taken from bits 31:4 in place (the driver writes the key).
    m.write_reg(reg::PT_KEY_TAG, 0xFFFF_FFF3);
    m.write_reg(reg::PT_BASE, 0x100);
    m.write_reg(reg::PT_LEN, 0x200);
    m.write_reg(reg::PT_PERM, 0xFFFF_FFFF);
    // Staging is not visible before PT_COMMIT.
    assert_eq!(m.read_reg(reg::PT_BASE), 0);
    assert_eq!(m.read_reg(reg::PT_PERM), 0);
    m.write_reg(reg::PT_COMMIT, 0);
    assert_eq!(m.read_reg(reg::PT_INDEX), 5);
    assert_eq!(m.read_reg(reg::PT_KEY_TAG), 0);
    assert_eq!(m.read_reg(reg::PT_COMMIT), 0);
    assert_eq!(m.read_reg(reg::PT_BASE), 0x100);
    assert_eq!(m.read_reg(reg::PT_LEN), 0x200);
    assert_eq!(m.read_reg(reg::PT_PERM), perm::ALL);
    assert_eq!(
        m.pt_entry(5),
        PtEntry {
            tag: 0x0FFF_FFFF,
            base: 0x100,
            len: 0x200,
            perm: perm::ALL
        }
    );
    // Another index reads its own (empty) entry.
    m.write_reg(reg::PT_INDEX, 0x13);
    assert_eq!(m.read_reg(reg::PT_INDEX), 3);
    assert_eq!(m.read_reg(reg::PT_BASE), 0);
    // Staging persists: committing to index 3 copies it.
    m.write_reg(reg::PT_COMMIT, 0);
    assert_eq!(m.pt_entry(3), m.pt_entry(5));
    m.write_reg(reg::PT_KEY_TAG, contract::make_key(9, 0x123));
    m.write_reg(reg::PT_COMMIT, 0);
    assert_eq!(m.pt_entry(3).tag, 0x123);
    m.reset();
    assert_eq!(m.pt_entry(5), PtEntry::default());
}

// ---------------------------------------------------------------------------
// Every status code
// ---------------------------------------------------------------------------

#[test]
fn nop_and_bad_opcode() {
    let (mut m, mut h, _, _) = setup();
    let c = m.execute(&d(Opcode::Nop, 0, 0, 0, 0), &mut h);
    assert_eq!(
        (st(&c), c.crc, c.info, c.tag, c.opcode),
        (Status::Ok, 0, 0, 0x55, 0)
    );
    for op in [8u8, 0x80, 0xFF] {
        let mut x = d(Opcode::Nop, 0, 0, 0, 0);
        x.opcode = op;
        let c = m.execute(&x, &mut h);
        assert_eq!(st(&c), Status::BadOpcode);
        assert_eq!(c.opcode, op, "opcode echoed");
    }
    for f in [0x40u8, 0x80] {
        assert_eq!(
            st(&m.execute(&d(Opcode::Nop, f, 0, 0, 0), &mut h)),
            Status::BadOpcode
        );
    }
    assert_eq!(m.read_reg(reg::OPS_OK), 1);
    assert_eq!(m.read_reg(reg::OPS_FAILED), 5);
}

#[test]
fn bad_key() {
    let (mut m, mut h, kr, _) = setup();
    // Entry 0 invalid.
    let c = m.execute(&d(Opcode::Read, 0, contract::make_key(0, 0), 0, 8), &mut h);
    assert_eq!(st(&c), Status::BadKey);
    // Wrong tag.
    let c = m.execute(&d(Opcode::Read, 0, kr ^ 0x10, 0, 8), &mut h);
    assert_eq!(st(&c), Status::BadKey);
    // Entry with tag but without VALID.
    m.program_pt(3, 7, 0, 64, ALL_REGION & !perm::VALID);
    let c = m.execute(&d(Opcode::Read, 0, contract::make_key(3, 7), 0, 8), &mut h);
    assert_eq!(st(&c), Status::BadKey);
    assert_eq!((c.crc, c.info), (0, 0));
}

#[test]
fn permission_per_operation_and_tier() {
    let (mut m, mut h, _, _) = setup();
    let cases: &[(Opcode, u8, u32)] = &[
        (Opcode::Write, 0, perm::WRITE),
        (Opcode::Write, flags::COMMIT, perm::COMMIT),
        (Opcode::Read, 0, perm::READ),
        (Opcode::Validate, 0, perm::READ),
        (Opcode::Copy, 0, perm::READ),
        (Opcode::Copy, 0, perm::WRITE),
        (Opcode::Flip, 0, perm::COMMIT),
        (Opcode::Append, 0, perm::LOG),
        (Opcode::LogTrim, 0, perm::LOG),
        (Opcode::Read, 0, perm::WARM),
        (Opcode::Read, flags::COLD, perm::COLD),
        (Opcode::Copy, flags::SRC_COLD, perm::COLD),
        (Opcode::Copy, flags::COLD, perm::COLD),
    ];
    for (i, &(op, fl, missing)) in cases.iter().enumerate() {
        let key = m.program_pt(4, 99, 0, G.region_size, ALL_REGION & !missing);
        let c = m.execute(&d(op, fl, key, 0, 8), &mut h);
        assert_eq!(st(&c), Status::Permission, "case {i}: {op:?}");
        // With the permission it passes the check.
        let key = m.program_pt(4, 99, 0, G.region_size, ALL_REGION);
        let c = m.execute(&d(op, fl, key, 0, 8), &mut h);
        assert_ne!(st(&c), Status::Permission, "case {i}: {op:?}");
    }
}

#[test]
fn bad_commit() {
    let (mut m, mut h, _, kw) = setup();
    // Without REGION.
    let c = m.execute(&d(Opcode::Write, flags::COMMIT, kw, 4096, 8), &mut h);
    assert_eq!(st(&c), Status::BadCommit);
    // REGION with base + offset != 0.
    let k = m.program_pt(5, 5, 8, 4096, ALL_REGION);
    let c = m.execute(&d(Opcode::Write, flags::COMMIT, k, 0, 8), &mut h);
    assert_eq!(st(&c), Status::BadCommit);
    let k = m.program_pt(5, 5, 0, 4096, ALL_REGION);
    let c = m.execute(&d(Opcode::Write, flags::COMMIT, k, 8, 8), &mut h);
    assert_eq!(st(&c), Status::BadCommit);
    assert_eq!(m.tier_state(0).1.seq, 0);
    let c = m.execute(&d(Opcode::Write, flags::COMMIT, k, 0, 8), &mut h);
    assert_eq!(st(&c), Status::Ok);
}

#[test]
fn bad_length() {
    let (mut m, mut h, kr, _) = setup();
    for op in [
        Opcode::Write,
        Opcode::Read,
        Opcode::Validate,
        Opcode::Copy,
        Opcode::Append,
    ] {
        for len in [0, MAX_TRANSFER + 1, u32::MAX] {
            let c = m.execute(&d(op, 0, kr, 0, len), &mut h);
            assert_eq!(st(&c), Status::BadLength, "{op:?} {len}");
        }
    }
    let c = m.execute(&d(Opcode::Flip, 0, kr, 0, G.region_size + 1), &mut h);
    assert_eq!(st(&c), Status::BadLength);
    // FLIP of an empty image is fine (and commits), as is the full region.
    let c = m.execute(&d(Opcode::Flip, 0, kr, 0, 0), &mut h);
    assert_eq!((st(&c), c.crc, c.info), (Status::Ok, 0, 1));
    let c = m.execute(&d(Opcode::Flip, 0, kr, 0, G.region_size), &mut h);
    assert_eq!((st(&c), c.info), (Status::Ok, 2));
    // LOG_TRIM ignores len.
    let c = m.execute(&d(Opcode::LogTrim, 0, kr, 0, u32::MAX), &mut h);
    assert_eq!(st(&c), Status::Ok);
}

#[test]
fn bad_align() {
    let (mut m, mut h, kr, _) = setup();
    for op in [Opcode::Write, Opcode::Read, Opcode::Validate, Opcode::Copy] {
        for off in [1, 4, 7] {
            assert_eq!(
                st(&m.execute(&d(op, 0, kr, off, 8), &mut h)),
                Status::BadAlign,
                "{op:?}"
            );
        }
    }
    let mut x = d(Opcode::Copy, 0, kr, 0, 8);
    x.aux = 12;
    assert_eq!(st(&m.execute(&x, &mut h)), Status::BadAlign);
    // APPEND and host addresses have no alignment requirement.
    let mut x = d(Opcode::Append, 0, kr, 3, 5);
    x.host_addr = HOST + 3;
    assert_eq!(st(&m.execute(&x, &mut h)), Status::Ok);
}

#[test]
fn out_of_range() {
    let (mut m, mut h, kr, kw) = setup();
    let total = tier_bytes(&G) as u32;
    // Window: off + len > entry.len.
    let k = m.program_pt(6, 6, 0, 64, ALL_REGION);
    assert_eq!(
        st(&m.execute(&d(Opcode::Read, 0, k, 56, 16), &mut h)),
        Status::OutOfRange
    );
    assert_eq!(
        st(&m.execute(&d(Opcode::Read, 0, k, 56, 8), &mut h)),
        Status::Ok
    );
    // Region: base + off + len > region_size even though the window is huge.
    let k = m.program_pt(6, 6, G.region_size - 8, u32::MAX, ALL_REGION);
    assert_eq!(
        st(&m.execute(&d(Opcode::Read, 0, k, 0, 16), &mut h)),
        Status::OutOfRange
    );
    assert_eq!(
        st(&m.execute(&d(Opcode::Read, 0, k, 0, 8), &mut h)),
        Status::Ok
    );
    // Raw: phys + len > tier.
    assert_eq!(
        st(&m.execute(&d(Opcode::Read, 0, kw, total - 8, 16), &mut h)),
        Status::OutOfRange
    );
    assert_eq!(
        st(&m.execute(&d(Opcode::Read, 0, kw, total - 8, 8), &mut h)),
        Status::Ok
    );
    // No wrapping anywhere.
    let k = m.program_pt(7, 7, u32::MAX - 7, u32::MAX, ALL_RAW);
    assert_eq!(
        st(&m.execute(&d(Opcode::Read, 0, k, 16, 8), &mut h)),
        Status::OutOfRange
    );
    let k = m.program_pt(7, 7, 0, u32::MAX, ALL_RAW);
    assert_eq!(
        st(&m.execute(&d(Opcode::Read, 0, k, u32::MAX - 7, 1024), &mut h)),
        Status::OutOfRange
    );
    // COPY: aux + len outside the window.
    let k = m.program_pt(6, 6, 0, 64, ALL_REGION);
    let mut x = d(Opcode::Copy, 0, k, 0, 16);
    x.aux = 56;
    assert_eq!(st(&m.execute(&x, &mut h)), Status::OutOfRange);
    // COPY within one tier with overlapping physical ranges.
    let mut x = d(Opcode::Copy, 0, kw, 4096, 64);
    x.aux = 4096 + 56;
    assert_eq!(st(&m.execute(&x, &mut h)), Status::OutOfRange);
    x.aux = 4096;
    assert_eq!(st(&m.execute(&x, &mut h)), Status::OutOfRange);
    x.aux = 4096 + 64;
    assert_eq!(st(&m.execute(&x, &mut h)), Status::Ok);
    // Same ranges in different tiers are fine.
    let mut x = d(Opcode::Copy, flags::SRC_COLD, kw, 4096, 64);
    x.aux = 4096;
    assert_eq!(st(&m.execute(&x, &mut h)), Status::Ok);
    // Region COPY within one tier: active -> alternate never overlaps.
    let x = d(Opcode::Copy, 0, kr, 0, 64);
    assert_eq!(st(&m.execute(&x, &mut h)), Status::Ok);
}

#[test]
fn check_order_first_failure_wins_and_touches_nothing() {
    let (mut m, mut h, kr, _) = setup();
    let nv0 = m.nv.clone();
    let k_noperm = m.program_pt(8, 8, 8, 64, perm::VALID | perm::WARM);
    let k_nocommit = m.program_pt(9, 9, 8, 64, ALL_REGION & !perm::COMMIT);
    let k_base8 = m.program_pt(10, 10, 8, 64, ALL_REGION);
    let cases: Vec<(Descriptor, Status)> = vec![
        // bad opcode + bad key
        (
            Descriptor {
                opcode: 9,
                key: 0,
                ..d(Opcode::Nop, 0, 0, 1, 0)
            },
            Status::BadOpcode,
        ),
        // reserved flag + bad key
        (d(Opcode::Write, 0x80, 0, 1, 0), Status::BadOpcode),
        // bad key + permission + length
        (
            d(Opcode::Write, flags::COLD, kr ^ 0x20, 1, 0),
            Status::BadKey,
        ),
        // permission + bad commit + length + align
        (
            d(Opcode::Write, flags::COMMIT, k_nocommit, 1, 0),
            Status::Permission,
        ),
        (d(Opcode::Read, 0, k_noperm, 1, 0), Status::Permission),
        // bad commit + length + align
        (
            d(Opcode::Write, flags::COMMIT, k_base8, 1, 0),
            Status::BadCommit,
        ),
        // length + align + range
        (d(Opcode::Write, 0, kr, 1, 0), Status::BadLength),
        // align + range
        (d(Opcode::Write, 0, kr, 1, 1 << 20), Status::BadAlign),
        (
            d(Opcode::Write, 0, kr, 1 << 30, 1 << 20),
            Status::OutOfRange,
        ),
    ];
    h.write(HOST, &[0xAB; 64]);
    for (i, (x, s)) in cases.iter().enumerate() {
        let c = m.execute(x, &mut h);
        assert_eq!(st(&c), *s, "case {i}");
        assert_eq!((c.crc, c.info), (0, 0), "case {i}");
    }
    assert_eq!(m.nv, nv0, "failed checks wrote NV");
    assert_eq!(m.tier_state(0).1.seq, 0);
}

// ---------------------------------------------------------------------------
// Data operations
// ---------------------------------------------------------------------------

#[test]
fn write_commit_read_and_registers() {
    let (mut m, mut h, kr, _) = setup();
    let b = region_base(&G, 1) as usize;
    m.nv[0][b..b + 200].fill(0xAA);
    let data = pattern(100, 1);
    let c = write_commit(&mut m, &mut h, kr, &data);
    assert_eq!((st(&c), c.info, c.crc), (Status::Ok, 100, crc32c(&data)));
    assert_eq!(&m.nv[0][b..b + 100], &data[..]);
    assert_eq!(
        &m.nv[0][b + 100..b + 104],
        &[0xAA; 4],
        "bytes after payload"
    );
    let (r, sb) = m.tier_state(0);
    assert_eq!(r, BootResult::Ok);
    assert_eq!(sb.seq, 1);
    assert_eq!(sb.active, 1);
    assert_eq!(sb.region_len, [0, 100]);
    assert_eq!(sb.region_crc, [0, crc32c(&data)]);
    assert_eq!(Superblock::from_bytes(&m.nv[0][64..128]), Some(sb));
    assert_eq!(
        Superblock::from_bytes(&m.nv[0][0..64]),
        None,
        "slot 0 untouched"
    );
    assert_eq!(m.read_reg(reg::WARM_STATE), 1 | 1 << 4);
    assert_eq!(m.read_reg(reg::WARM_SEQ), 1);
    assert_eq!(m.read_reg(reg::WARM_B_LEN), 100);
    assert_eq!(m.read_reg(reg::WARM_B_CRC), crc32c(&data));
    assert_eq!(m.read_reg(reg::WARM_A_LEN), 0);
    assert_eq!(m.read_reg(reg::COLD_STATE), 0);

    // READ through the region entry reads the active region (B).
    let mut x = d(Opcode::Read, flags::CHECK, kr, 0, 100);
    x.host_addr = 0x20_0000 + 3;
    x.crc = crc32c(&data);
    let c = m.execute(&x, &mut h);
    assert_eq!((st(&c), c.info, c.crc), (Status::Ok, 100, crc32c(&data)));
    let mut back = vec![0; 100];
    h.read(0x20_0000 + 3, &mut back);
    assert_eq!(back, data);
    // READ with ALT reads region A (zeros).
    let c = m.execute(&d(Opcode::Read, flags::ALT, kr, 0, 16), &mut h);
    assert_eq!(c.crc, crc32c(&[0; 16]));
    // VALIDATE.
    let c = m.execute(&d(Opcode::Validate, 0, kr, 0, 100), &mut h);
    assert_eq!((st(&c), c.crc, c.info), (Status::Ok, crc32c(&data), 100));

    // A plain WRITE goes to the alternate (A) without commit.
    let d2 = pattern(64, 9);
    h.write(HOST, &d2);
    let c = m.execute(&d(Opcode::Write, 0, kr, 8, 64), &mut h);
    assert_eq!(st(&c), Status::Ok);
    let a = region_base(&G, 0) as usize;
    assert_eq!(&m.nv[0][a + 8..a + 72], &d2[..]);
    assert_eq!(m.tier_state(0).1.seq, 1);

    // Reboot: same state.
    let n = reboot(&m);
    assert_eq!(n.tier_state(0), m.tier_state(0));
    assert_eq!(n.tier_state(1), (BootResult::Empty, Superblock::blank()));
}

#[test]
fn crc_mismatch_semantics() {
    let (mut m, mut h, kr, _) = setup();
    let data = pattern(40, 3);
    let good = crc32c(&data);
    h.write(HOST, &data);
    // WRITE+COMMIT+CHECK with the wrong crc: data written, no commit.
    let mut x = d(Opcode::Write, flags::COMMIT | flags::CHECK, kr, 0, 40);
    x.crc = good ^ 1;
    let c = m.execute(&x, &mut h);
    assert_eq!((st(&c), c.crc, c.info), (Status::CrcMismatch, good, 40));
    let b = region_base(&G, 1) as usize;
    assert_eq!(&m.nv[0][b..b + 40], &data[..]);
    assert_eq!(m.tier_state(0).1.seq, 0);
    // With the right crc: commit.
    x.crc = good;
    assert_eq!(st(&m.execute(&x, &mut h)), Status::Ok);
    assert_eq!(m.tier_state(0).1.seq, 1);
    // READ mismatch still delivers.
    let mut x = d(Opcode::Read, flags::CHECK, kr, 0, 40);
    x.host_addr = 0x30_0000;
    x.crc = 0;
    let c = m.execute(&x, &mut h);
    assert_eq!((st(&c), c.crc, c.info), (Status::CrcMismatch, good, 40));
    let mut back = vec![0; 40];
    h.read(0x30_0000, &mut back);
    assert_eq!(back, data);
    // VALIDATE mismatch.
    let c = m.execute(&d(Opcode::Validate, flags::CHECK, kr, 0, 40), &mut h);
    assert_eq!(st(&c), Status::CrcMismatch);
    // FLIP mismatch: no commit, info 0.
    let c = m.execute(&d(Opcode::Flip, flags::CHECK, kr, 0, 40), &mut h);
    assert_eq!(
        (st(&c), c.crc, c.info),
        (Status::CrcMismatch, crc32c(&[0; 40]), 0)
    );
    assert_eq!(m.tier_state(0).1.seq, 1);
    assert_eq!(m.read_reg(reg::OPS_FAILED), 4);
    assert_eq!(m.read_reg(reg::OPS_OK), 1);
}

#[test]
fn flip_commits_alternate() {
    let (mut m, mut h, kr, _) = setup();
    let data = pattern(256, 7);
    h.write(HOST, &data);
    // Stage into the alternate (B) in two writes, then FLIP with CHECK.
    assert_eq!(
        st(&m.execute(&d(Opcode::Write, 0, kr, 0, 128), &mut h)),
        Status::Ok
    );
    let mut x = d(Opcode::Write, 0, kr, 128, 128);
    x.host_addr = HOST + 128;
    assert_eq!(st(&m.execute(&x, &mut h)), Status::Ok);
    let mut f = d(Opcode::Flip, flags::CHECK, kr, 0, 256);
    f.crc = crc32c(&data);
    let c = m.execute(&f, &mut h);
    assert_eq!((st(&c), c.crc, c.info), (Status::Ok, crc32c(&data), 1));
    let (r, sb) = m.tier_state(0);
    assert_eq!((r, sb.active, sb.region_len[1]), (BootResult::Ok, 1, 256));
    // A second flip makes A (empty, len 0) active again: seq 2 in slot 0.
    let c = m.execute(&d(Opcode::Flip, 0, kr, 0, 0), &mut h);
    assert_eq!((st(&c), c.info), (Status::Ok, 2));
    let sb = m.tier_state(0).1;
    assert_eq!((sb.active, sb.region_len, sb.seq), (0, [0, 256], 2));
    assert_eq!(Superblock::from_bytes(&m.nv[0][0..64]), Some(sb));
    // Cold tier is independent.
    let c = m.execute(&d(Opcode::Flip, flags::COLD, kr, 0, 0), &mut h);
    assert_eq!((st(&c), c.info), (Status::Ok, 1));
    assert_eq!(m.read_reg(reg::COLD_SEQ), 1);
    assert_eq!(m.read_reg(reg::COLD_STATE), 1 | 1 << 4);
}

#[test]
fn copy_between_tiers() {
    let (mut m, mut h, kr, kw) = setup();
    let data = pattern(512, 5);
    write_commit(&mut m, &mut h, kr, &data); // warm B active
                                             // Region COPY warm(active B) -> cold(alternate B), then FLIP cold.
    let mut x = d(Opcode::Copy, flags::COLD | flags::CHECK, kr, 0, 512);
    x.crc = crc32c(&data);
    let c = m.execute(&x, &mut h);
    assert_eq!((st(&c), c.info, c.crc), (Status::Ok, 512, crc32c(&data)));
    let b = region_base(&G, 1) as usize;
    assert_eq!(&m.nv[1][b..b + 512], &data[..]);
    assert_eq!(
        st(&m.execute(
            &d(Opcode::Flip, flags::COLD | flags::CHECK, kr, 0, 512),
            &mut h
        )),
        Status::CrcMismatch
    );
    let mut f = d(Opcode::Flip, flags::COLD | flags::CHECK, kr, 0, 512);
    f.crc = crc32c(&data);
    assert_eq!(st(&m.execute(&f, &mut h)), Status::Ok);
    assert_eq!(m.tier_state(1).1.region_crc[1], crc32c(&data));
    // Raw COPY cold -> warm (tier-absolute addresses), with aux as source.
    let mut x = d(Opcode::Copy, flags::SRC_COLD, kw, 4096, 512);
    x.aux = b as u32;
    assert_eq!(st(&m.execute(&x, &mut h)), Status::Ok);
    assert_eq!(&m.nv[0][4096..4096 + 512], &data[..]);
}

// ---------------------------------------------------------------------------
// Boot scan
// ---------------------------------------------------------------------------

#[test]
fn boot_empty_ok_fallback_lost() {
    let (mut m, mut h, kr, _) = setup();
    assert_eq!(m.tier_state(0), (BootResult::Empty, Superblock::blank()));
    let d1 = pattern(300, 1);
    let d2 = pattern(200, 2);
    write_commit(&mut m, &mut h, kr, &d1); // B: seq 1
    write_commit(&mut m, &mut h, kr, &d2); // A: seq 2
    let sb = m.tier_state(0).1;
    assert_eq!((sb.seq, sb.active), (2, 0));
    assert_eq!(reboot(&m).tier_state(0), (BootResult::Ok, sb));

    // Corrupt the active region (A): fall back to B.
    let a = region_base(&G, 0) as usize;
    m.nv[0][a + 17] ^= 0x40;
    let mut n = reboot(&m);
    let (r, s) = n.tier_state(0);
    assert_eq!(r, BootResult::FellBack);
    assert_eq!(s, Superblock { active: 1, ..sb });
    assert_eq!(n.read_reg(reg::WARM_STATE), 2 | 1 << 4);
    // Reads through the region entry now serve B.
    let kr2 = n.program_pt(1, TAG, 0, G.region_size, ALL_REGION);
    let c = n.execute(&d(Opcode::Validate, 0, kr2, 0, 300), &mut h);
    assert_eq!(c.crc, crc32c(&d1));
    // The superblock on NV is unchanged until the next commit, which writes
    // to A (the alternate of the served B) and records the fallback.
    assert_eq!(Superblock::from_bytes(&n.nv[0][0..64]), Some(sb));
    let d3 = pattern(64, 3);
    let c = write_commit(&mut n, &mut h, kr2, &d3);
    assert_eq!(st(&c), Status::Ok);
    let (r, s) = n.tier_state(0);
    assert_eq!(
        (r, s.seq, s.active, s.region_len),
        (BootResult::Ok, 3, 0, [64, 300])
    );
    assert_eq!(reboot(&n).tier_state(0), (BootResult::Ok, s));

    // Corrupt both: LOST.
    let b = region_base(&G, 1) as usize;
    m.nv[0][b] ^= 1;
    let n = reboot(&m);
    assert_eq!(n.tier_state(0), (BootResult::Lost, sb));
    assert_eq!(n.read_reg(reg::WARM_STATE), 3);
    // Cold tier never written: empty.
    assert_eq!(n.tier_state(1).0, BootResult::Empty);
}

#[test]
fn boot_torn_and_garbage_superblocks() {
    let (mut m, mut h, kr, _) = setup();
    write_commit(&mut m, &mut h, kr, &pattern(10, 1)); // seq 1 slot 1
    let sb1 = m.tier_state(0).1;
    write_commit(&mut m, &mut h, kr, &pattern(20, 2)); // seq 2 slot 0
                                                       // Torn newest slot: the older wins.
    let mut nv = m.nv[0].clone();
    nv[40] ^= 0xFF;
    assert_eq!(scan_tier(&nv, &G).sb, sb1);
    // Bad magic / version.
    let mut nv = m.nv[0].clone();
    nv[0] = b'X';
    assert_eq!(scan_tier(&nv, &G).sb, sb1);
    // Both torn: empty.
    nv[64] ^= 1;
    assert_eq!(scan_tier(&nv, &G).result, BootResult::Empty);
    assert_eq!(scan_tier(&nv, &G).sb, Superblock::blank());

    // Equal sequence numbers: slot 0 wins.
    let mut nv = vec![0u8; tier_bytes(&G) as usize];
    let s0 = Superblock {
        seq: 5,
        log_head: 64,
        ..Superblock::blank()
    };
    let s1 = Superblock {
        seq: 5,
        log_head: 128,
        ..Superblock::blank()
    };
    nv[0..64].copy_from_slice(&s0.to_bytes());
    nv[64..128].copy_from_slice(&s1.to_bytes());
    assert_eq!(scan_tier(&nv, &G).sb, s0);
    // Higher seq wins regardless of slot parity.
    let s1 = Superblock { seq: 6, ..s1 };
    nv[64..128].copy_from_slice(&s1.to_bytes());
    assert_eq!(scan_tier(&nv, &G).sb, s1);
    let s0 = Superblock { seq: 9, ..s0 };
    nv[0..64].copy_from_slice(&s0.to_bytes());
    assert_eq!(scan_tier(&nv, &G), {
        let t = scan_tier(&nv, &G);
        assert_eq!(t.result, BootResult::Ok);
        t
    });
    assert_eq!(scan_tier(&nv, &G).sb, s0);

    // region_len > region_size fails the integrity test even with a "matching" crc.
    let bad = Superblock {
        seq: 20,
        active: 1,
        region_len: [0, G.region_size + 8],
        region_crc: [0, 0],
        ..Superblock::blank()
    };
    nv[0..64].copy_from_slice(&bad.to_bytes());
    let t = scan_tier(&nv, &G);
    assert_eq!(t.result, BootResult::FellBack);
    assert_eq!(t.sb.active, 0);
    let bad = Superblock {
        region_len: [u32::MAX, u32::MAX],
        ..bad
    };
    nv[0..64].copy_from_slice(&bad.to_bytes());
    assert_eq!(scan_tier(&nv, &G).result, BootResult::Lost);
    // A seq of u64::MAX does not panic on commit (wraps to 0).
    let maxed = Superblock {
        seq: u64::MAX,
        ..Superblock::blank()
    };
    let mut nv = vec![0u8; tier_bytes(&G) as usize];
    nv[64..128].copy_from_slice(&maxed.to_bytes());
    let mut m = Model::with_nv(G, nv, Vec::new());
    m.reset();
    let kr = m.program_pt(1, TAG, 0, G.region_size, ALL_REGION);
    let c = m.execute(&d(Opcode::Flip, 0, kr, 0, 0), &mut h);
    assert_eq!((st(&c), c.info), (Status::Ok, 0));
}

#[test]
fn with_nv_resizes_and_default_geometry_works() {
    let m = Model::with_nv(G, vec![1; 10], vec![2; 1 << 20]);
    assert_eq!(m.nv[0].len(), tier_bytes(&G) as usize);
    assert_eq!(m.nv[1].len(), tier_bytes(&G) as usize);
    let mut m = Model::new(DEFAULT_GEOMETRY);
    m.reset();
    assert_eq!(m.nv[0].len(), DEFAULT_GEOMETRY.total() as usize);
    let k = m.program_pt(0, 1, 0, u32::MAX, ALL_REGION);
    let mut h = PagedMemory::new();
    let data = pattern(MAX_TRANSFER as usize, 4);
    h.write(HOST, &data);
    let c = m.execute(&d(Opcode::Write, flags::COMMIT, k, 0, MAX_TRANSFER), &mut h);
    assert_eq!((st(&c), c.crc), (Status::Ok, crc32c(&data)));
    assert_eq!(reboot(&m).tier_state(0), m.tier_state(0));
}

// ---------------------------------------------------------------------------
// Append log
// ---------------------------------------------------------------------------

fn word(nv: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(nv[at..at + 8].try_into().unwrap())
}

#[test]
fn append_wrap_pad_full_and_trim() {
    let (mut m, mut h, kr, _) = setup();
    let lb = G.log_base() as usize;
    m.nv[0][lb..lb + G.log_size as usize].fill(0xEE);
    let mut payloads = Vec::new();
    // Four records of 200 bytes (224 in the ring each): 896 bytes.
    for i in 0..4u32 {
        let p = pattern(200, i as u8);
        h.write(HOST, &p);
        let c = m.execute(&d(Opcode::Append, 0, kr, 0, 200), &mut h);
        assert_eq!((st(&c), c.info, c.crc), (Status::Ok, i * 224, crc32c(&p)));
        payloads.push(p);
    }
    let sb = m.tier_state(0).1;
    assert_eq!(
        (sb.log_head, sb.log_tail, sb.log_seq, sb.seq),
        (896, 0, 4, 4)
    );
    assert_eq!(m.read_reg(reg::WARM_LOG_HEAD), 896);
    // Record layout.
    let r1 = lb + 224;
    assert_eq!(word(&m.nv[0], r1), log_header_word(200));
    assert_eq!(word(&m.nv[0], r1 + 8), 1);
    assert_eq!(&m.nv[0][r1 + 16..r1 + 216], &payloads[1][..]);
    assert_eq!(
        word(&m.nv[0], r1 + 216),
        log_trailer_word(crc32c(&payloads[1]))
    );
    // Fifth needs a pad of 128 and 224: 896 + 128 + 224 > 1024: LOG_FULL, nothing written.
    let nv = m.nv.clone();
    let c = m.execute(&d(Opcode::Append, 0, kr, 0, 200), &mut h);
    assert_eq!((st(&c), c.crc, c.info), (Status::LogFull, 0, 0));
    assert_eq!(m.nv, nv);
    assert_eq!(m.tier_state(0).1, sb);
    // BAD_TRIM beyond head / behind tail.
    let mut t = d(Opcode::LogTrim, 0, kr, 0, 0);
    t.aux = 904;
    let c = m.execute(&t, &mut h);
    assert_eq!((st(&c), c.info), (Status::BadTrim, 0));
    t.aux = u32::MAX - 7;
    assert_eq!(st(&m.execute(&t, &mut h)), Status::BadTrim);
    // Trim two records.
    t.aux = 448;
    let c = m.execute(&t, &mut h);
    assert_eq!((st(&c), c.info, c.crc), (Status::Ok, 448, 0));
    assert_eq!(m.read_reg(reg::WARM_LOG_TAIL), 448);
    // Now it fits: pad at 896 (128 bytes), record at 1024 (ring offset 0).
    let p = pattern(200, 9);
    h.write(HOST, &p);
    let c = m.execute(&d(Opcode::Append, 0, kr, 0, 200), &mut h);
    assert_eq!((st(&c), c.info), (Status::Ok, 1024));
    assert_eq!(word(&m.nv[0], lb + 896), log_pad_word(128));
    assert_eq!(word(&m.nv[0], lb), log_header_word(200));
    assert_eq!(word(&m.nv[0], lb + 8), 4);
    let sb = m.tier_state(0).1;
    assert_eq!((sb.log_head, sb.log_tail, sb.log_seq), (1248, 448, 5));
    // The reader sees records 2, 3 and the new one.
    let recs = m.read_log(0).unwrap();
    let got: Vec<_> = recs.iter().map(|r| (r.offset, r.seq, r.crc_ok)).collect();
    assert_eq!(got, vec![(448, 2, true), (672, 3, true), (1024, 4, true)]);
    assert_eq!(recs[2].data, p);
    assert_eq!(recs[0].data, payloads[2]);
    // Trim to head: empty.
    t.aux = 1248;
    assert_eq!(st(&m.execute(&t, &mut h)), Status::Ok);
    assert!(m.read_log(0).unwrap().is_empty());
    // State survives reboot.
    assert_eq!(reboot(&m).tier_state(0), m.tier_state(0));
}

#[test]
fn append_payload_tail_bytes_untouched_and_exact_fit() {
    let (mut m, mut h, kr, _) = setup();
    let lb = G.log_base() as usize;
    m.nv[0][lb..lb + G.log_size as usize].fill(0xEE);
    h.write(HOST, b"hello");
    let c = m.execute(&d(Opcode::Append, 0, kr, 0, 5), &mut h);
    assert_eq!((st(&c), c.info), (Status::Ok, 0));
    assert_eq!(&m.nv[0][lb + 16..lb + 21], b"hello");
    assert_eq!(&m.nv[0][lb + 21..lb + 24], &[0xEE; 3]);
    assert_eq!(word(&m.nv[0], lb + 24), log_trailer_word(crc32c(b"hello")));
    // Fill the ring exactly: 32 + 992 = 1024.
    let c = m.execute(&d(Opcode::Append, 0, kr, 0, 968), &mut h);
    assert_eq!((st(&c), c.info), (Status::Ok, 32));
    assert_eq!(m.tier_state(0).1.log_head, 1024);
    let c = m.execute(&d(Opcode::Append, 0, kr, 0, 1), &mut h);
    assert_eq!(st(&c), Status::LogFull);
    // A record larger than the ring never fits.
    let mut t = d(Opcode::LogTrim, 0, kr, 0, 0);
    t.aux = 1024;
    assert_eq!(st(&m.execute(&t, &mut h)), Status::Ok);
    let c = m.execute(&d(Opcode::Append, 0, kr, 0, 1001), &mut h);
    assert_eq!(st(&c), Status::LogFull);
    let c = m.execute(&d(Opcode::Append, 0, kr, 0, 1000), &mut h);
    assert_eq!((st(&c), c.info), (Status::Ok, 1024));
    // Cold tier log is independent.
    let c = m.execute(&d(Opcode::Append, flags::COLD, kr, 0, 8), &mut h);
    assert_eq!((st(&c), c.info), (Status::Ok, 0));
    assert_eq!(m.read_reg(reg::COLD_LOG_HEAD), 32);
}

#[test]
fn log_counters_wrap_at_2_pow_32() {
    // A valid superblock with the log counters just below 2^32.
    let sb = Superblock {
        seq: 1,
        log_head: u32::MAX - 63,
        log_tail: u32::MAX - 63,
        log_seq: 77,
        ..Superblock::blank()
    };
    let mut nv = vec![0u8; tier_bytes(&G) as usize];
    nv[64..128].copy_from_slice(&sb.to_bytes());
    let mut m = Model::with_nv(G, nv, Vec::new());
    m.reset();
    let kr = m.program_pt(1, TAG, 0, G.region_size, ALL_REGION);
    let mut h = PagedMemory::new();
    let mut offs = Vec::new();
    for _ in 0..4 {
        let c = m.execute(&d(Opcode::Append, 0, kr, 0, 24), &mut h); // 48 bytes
        assert_eq!(st(&c), Status::Ok);
        offs.push(c.info);
    }
    // Ring position 960: the first fits (to 1008); the second needs a pad of
    // 16 and lands at ring offset 0, free-running offset 2^32 = 0.
    assert_eq!(offs, vec![u32::MAX - 63, 0, 48, 96]);
    let lb = G.log_base() as usize;
    assert_eq!(word(&m.nv[0], lb + 1008), log_pad_word(16));
    let recs = m.read_log(0).unwrap();
    assert_eq!(
        recs.iter().map(|r| (r.offset, r.seq)).collect::<Vec<_>>(),
        vec![(u32::MAX - 63, 77), (0, 78), (48, 79), (96, 80)]
    );
    let mut t = d(Opcode::LogTrim, 0, kr, 0, 0);
    t.aux = 48;
    assert_eq!(st(&m.execute(&t, &mut h)), Status::Ok);
    assert_eq!(m.read_log(0).unwrap().len(), 2);
}

#[test]
fn parse_log_reports_damage() {
    let (mut m, mut h, kr, _) = setup();
    h.write(HOST, &pattern(40, 1));
    m.execute(&d(Opcode::Append, 0, kr, 0, 40), &mut h);
    m.execute(&d(Opcode::Append, 0, kr, 0, 40), &mut h);
    let lb = G.log_base() as usize;
    let sb = m.tier_state(0).1;
    // Payload flip: crc_ok false.
    let mut nv = m.nv[0].clone();
    nv[lb + 20] ^= 1;
    let recs = parse_log(&nv, &G, sb.log_head, sb.log_tail).unwrap();
    assert!(!recs[0].crc_ok && recs[1].crc_ok);
    // Magic destroyed.
    let mut nv = m.nv[0].clone();
    nv[lb + 64] ^= 1;
    assert!(matches!(
        parse_log(&nv, &G, sb.log_head, sb.log_tail),
        Err(LogError::BadMagic { offset: 64, .. })
    ));
    // Head inside a record.
    assert!(matches!(
        parse_log(&m.nv[0], &G, 72, 0),
        Err(LogError::Truncated { offset: 64 })
    ));
    // Head too far ahead.
    assert!(matches!(
        parse_log(&m.nv[0], &G, 2048, 0),
        Err(LogError::Overfull { .. })
    ));
    assert_eq!(parse_log(&[], &G, 0, 0), Err(LogError::Geometry));
}

// ---------------------------------------------------------------------------
// Rings and interrupts
// ---------------------------------------------------------------------------

const DQ: u64 = 0x1_0000_1000;
const CQ: u64 = 0x2000;

fn ring_setup(dq_log2: u32, cq_log2: u32) -> (Model, PagedMemory, u32) {
    let (mut m, h, kr, _) = setup();
    m.write_reg(reg::DQ_BASE_LO, DQ as u32);
    m.write_reg(reg::DQ_BASE_HI, (DQ >> 32) as u32);
    m.write_reg(reg::DQ_SIZE_LOG2, dq_log2);
    m.write_reg(reg::CQ_BASE_LO, CQ as u32);
    m.write_reg(reg::CQ_SIZE_LOG2, cq_log2);
    m.write_reg(reg::CTRL, ctrl::ENABLE);
    (m, h, kr)
}

fn put_desc(h: &mut PagedMemory, log2: u32, i: u16, x: &Descriptor) {
    let slot = (i as u64) & ((1 << log2) - 1);
    h.write(DQ + slot * 32, &x.to_bytes());
}

fn cq_entry(h: &PagedMemory, log2: u32, i: u16) -> Completion {
    let slot = (i as u64) & ((1 << log2) - 1);
    Completion::from_words([h.read_u64(CQ + slot * 16), h.read_u64(CQ + slot * 16 + 8)])
}

#[test]
fn rings_phase_full_and_index() {
    let (mut m, mut h, _) = ring_setup(2, 1);
    for i in 0..3u16 {
        let mut x = d(Opcode::Nop, 0, 0, 0, 0);
        x.tag = 100 + i;
        put_desc(&mut h, 2, i, &x);
    }
    // Disabled: nothing happens.
    m.write_reg(reg::CTRL, 0);
    m.write_reg(reg::DQ_TAIL, 3);
    assert!(m.process_rings(&mut h).is_empty());
    m.write_reg(reg::CTRL, ctrl::ENABLE);
    // CQ holds 2.
    let out = m.process_rings(&mut h);
    assert_eq!(out.len(), 2);
    assert_eq!(m.read_reg(reg::DQ_HEAD), 2);
    assert_eq!(m.read_reg(reg::CQ_HEAD), 2);
    for (i, c) in out.iter().enumerate() {
        assert_eq!(*c, cq_entry(&h, 1, i as u16));
        assert_eq!(
            (c.tag, c.desc_index, c.phase),
            (100 + i as u16, i as u16, true)
        );
    }
    assert!(m.process_rings(&mut h).is_empty(), "CQ full");
    m.write_reg(reg::CQ_TAIL, 1);
    let out = m.process_rings(&mut h);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].tag, out[0].desc_index, out[0].phase),
        (102, 2, false)
    );
    assert_eq!(out[0], cq_entry(&h, 1, 2));
    assert_eq!(m.read_reg(reg::OPS_OK), 3);
    // Not booted: nothing processed.
    let mut n = Model::new(G);
    n.write_reg(reg::CTRL, ctrl::ENABLE);
    n.write_reg(reg::DQ_SIZE_LOG2, 2);
    n.write_reg(reg::CQ_SIZE_LOG2, 2);
    n.write_reg(reg::DQ_TAIL, 1);
    assert!(n.process_rings(&mut h).is_empty());
    n.boot_scan();
    assert_eq!(n.process_rings(&mut h).len(), 1);
}

#[test]
fn ring_indices_wrap_at_16_bits() {
    let (mut m, mut h, _) = ring_setup(3, 3);
    put_desc(&mut h, 3, 0, &d(Opcode::Nop, 0, 0, 0, 0));
    let mut total = 0u32;
    for round in 0..(65536 / 8 + 3) {
        let tail = m.read_reg(reg::DQ_HEAD) as u16;
        for i in 0..8u16 {
            put_desc(&mut h, 3, tail.wrapping_add(i), &d(Opcode::Nop, 0, 0, 0, 0));
        }
        m.write_reg(reg::DQ_TAIL, tail.wrapping_add(8) as u32);
        assert_eq!(
            m.read_reg(reg::DQ_TAIL),
            tail.wrapping_add(8) as u32,
            "round {round}"
        );
        let out = m.process_rings(&mut h);
        assert_eq!(out.len(), 8);
        for (k, c) in out.iter().enumerate() {
            let idx = tail.wrapping_add(k as u16);
            assert_eq!(c.desc_index, idx);
            assert_eq!(c.phase, (idx >> 3) & 1 == 0);
        }
        m.write_reg(reg::CQ_TAIL, m.read_reg(reg::CQ_HEAD));
        total += 8;
    }
    assert_eq!(m.read_reg(reg::OPS_OK), total);
    assert!(m.read_reg(reg::DQ_HEAD) < 64);
}

#[test]
fn doorbell_overflow() {
    let (mut m, mut h, _) = ring_setup(2, 4);
    // Ring of 4: tail = head + 4 is allowed, + 5 refused.
    m.write_reg(reg::DQ_TAIL, 5);
    assert_eq!(m.read_reg(reg::DQ_TAIL), 0);
    assert_eq!(
        m.read_reg(reg::STATUS) & status::RING_ERROR,
        status::RING_ERROR
    );
    assert_eq!(m.pending_overflow(), Some(5));
    // A second refused doorbell replaces the pending value, posts nothing more.
    m.write_reg(reg::DQ_TAIL, 0xFFFF);
    assert_eq!(m.pending_overflow(), Some(0xFFFF));
    m.write_reg(reg::DQ_TAIL, 4);
    assert_eq!(m.read_reg(reg::DQ_TAIL), 4);
    for i in 0..4 {
        put_desc(&mut h, 2, i, &d(Opcode::Nop, 0, 0, 0, 0));
    }
    let out = m.process_rings(&mut h);
    assert_eq!(out.len(), 5);
    assert_eq!(
        out[0],
        Completion {
            tag: TAG_CONTROLLER,
            status: Status::RingOverflow as u8,
            opcode: 0,
            crc: 0,
            info: 0,
            desc_index: 0xFFFF,
            phase: true,
        }
    );
    assert_eq!(out[1].desc_index, 0);
    assert_eq!(out[0], cq_entry(&h, 4, 0));
    assert_eq!(m.read_reg(reg::OPS_FAILED), 1);
    assert_eq!(m.read_reg(reg::OPS_OK), 4);
    assert_eq!(m.read_reg(reg::IRQ_STATUS) & irq::ERROR, irq::ERROR);
    // RING_ERROR is sticky until reset.
    assert_ne!(m.read_reg(reg::STATUS) & status::RING_ERROR, 0);
    // The overflow completion does not need CTRL.ENABLE (but needs a CQ slot).
    m.write_reg(reg::CTRL, 0);
    m.write_reg(reg::DQ_TAIL, 100);
    assert_eq!(m.read_reg(reg::DQ_TAIL), 4);
    let out = m.process_rings(&mut h);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (st(&out[0]), out[0].desc_index),
        (Status::RingOverflow, 100)
    );
    assert_eq!(m.read_reg(reg::OPS_FAILED), 2);
    m.write_reg(reg::CQ_SIZE_LOG2, 0);
    m.write_reg(reg::DQ_TAIL, 200);
    assert!(m.process_rings(&mut h).is_empty(), "CQ full");
    assert_eq!(m.pending_overflow(), Some(200));
    m.reset();
    assert_eq!(m.read_reg(reg::STATUS), status::BOOT_DONE);
}

#[test]
fn ring_size_clamps_to_max() {
    let (mut m, _, _) = ring_setup(15, 15);
    assert_eq!(m.read_reg(reg::DQ_SIZE_LOG2), 15);
    m.write_reg(reg::DQ_TAIL, 1 << RING_MAX_LOG2);
    assert_eq!(m.read_reg(reg::DQ_TAIL), 1 << RING_MAX_LOG2);
    m.write_reg(reg::DQ_TAIL, (1 << RING_MAX_LOG2) + 1);
    assert_eq!(m.read_reg(reg::DQ_TAIL), 1 << RING_MAX_LOG2);
    assert!(m.pending_overflow().is_some());
    // Size 0 (one entry).
    let (mut m, mut h, _) = ring_setup(0, 0);
    m.write_reg(reg::DQ_TAIL, 2);
    assert_eq!(m.read_reg(reg::DQ_TAIL), 0);
    m.write_reg(reg::DQ_TAIL, 1);
    put_desc(&mut h, 0, 0, &d(Opcode::Nop, 0, 0, 0, 0));
    let out = m.process_rings(&mut h);
    // Overflow first; the CQ (one slot) is then full.
    assert_eq!(out.len(), 1);
    assert_eq!(st(&out[0]), Status::RingOverflow);
    m.write_reg(reg::CQ_TAIL, 1);
    let out = m.process_rings(&mut h);
    assert_eq!((out.len(), out[0].phase, out[0].desc_index), (1, false, 0));
}

#[test]
fn interrupts() {
    let (mut m, mut h, kr, _) = setup();
    let nop_irq = d(Opcode::Nop, flags::IRQ, 0, 0, 0);
    // Masked: status set, no message.
    m.execute(&nop_irq, &mut h);
    assert_eq!(
        m.read_reg(reg::IRQ_STATUS),
        irq::BOOT_DONE | irq::COMPLETION
    );
    assert_eq!(m.irq_pulses(), 0);
    m.write_reg(reg::IRQ_STATUS, 7);
    // Enabled in the mask but not in CTRL: no message.
    m.write_reg(reg::IRQ_MASK, irq::COMPLETION | irq::ERROR);
    m.execute(&nop_irq, &mut h);
    assert_eq!(m.irq_pulses(), 0);
    // Enabling with COMPLETION already pending delivers it (MSI-X sends a
    // pending vector on unmask); writing the same mask again does not.
    m.write_reg(reg::CTRL, ctrl::IRQ_ENABLE);
    assert_eq!(m.irq_pulses(), 1, "pending COMPLETION on enable");
    m.write_reg(reg::IRQ_MASK, irq::COMPLETION | irq::ERROR);
    assert_eq!(m.irq_pulses(), 1, "already deliverable");
    m.execute(&nop_irq, &mut h);
    assert_eq!(m.irq_pulses(), 1, "bit already set");
    m.write_reg(reg::IRQ_STATUS, irq::COMPLETION);
    m.execute(&nop_irq, &mut h);
    assert_eq!(m.irq_pulses(), 2);
    // NOP without IRQ flag: nothing.
    m.write_reg(reg::IRQ_STATUS, 7);
    m.execute(&d(Opcode::Nop, 0, 0, 0, 0), &mut h);
    assert_eq!(m.read_reg(reg::IRQ_STATUS), 0);
    assert_eq!(m.irq_pulses(), 2);
    // Error without IRQ flag raises ERROR.
    m.execute(&d(Opcode::Read, 0, 0, 0, 8), &mut h);
    assert_eq!(m.read_reg(reg::IRQ_STATUS), irq::ERROR);
    assert_eq!(m.irq_pulses(), 3);
    // Error with IRQ flag: both bits, one message (COMPLETION newly set).
    m.execute(&d(Opcode::Read, flags::IRQ, 0, 0, 8), &mut h);
    assert_eq!(m.read_reg(reg::IRQ_STATUS), irq::ERROR | irq::COMPLETION);
    assert_eq!(m.irq_pulses(), 4);
    m.write_reg(reg::IRQ_STATUS, 7);
    m.execute(&d(Opcode::Read, flags::IRQ, 0, 0, 8), &mut h);
    assert_eq!(m.irq_pulses(), 5, "two bits at once are one message");
    // Only ERROR masked: a good op with IRQ sets COMPLETION silently.
    m.write_reg(reg::IRQ_STATUS, 7);
    m.write_reg(reg::IRQ_MASK, irq::ERROR);
    let c = m.execute(&d(Opcode::Validate, flags::IRQ, kr, 0, 8), &mut h);
    assert_eq!(st(&c), Status::Ok);
    assert_eq!(m.irq_pulses(), 5);
    assert_eq!(m.read_reg(reg::IRQ_STATUS), irq::COMPLETION);
    // BOOT_DONE: a boot scan with the bit enabled raises a message; reset clears the mask.
    m.write_reg(reg::IRQ_MASK, irq::BOOT_DONE);
    assert_eq!(m.irq_pulses(), 5, "BOOT_DONE is not pending");
    m.boot_scan();
    assert_eq!(m.irq_pulses(), 6);
    m.reset();
    assert_eq!(m.irq_pulses(), 6);
    assert_eq!(m.read_reg(reg::IRQ_STATUS), irq::BOOT_DONE);
}

/// A cause already pending when the host unmasks it is delivered: one
/// message per bit that becomes deliverable, whichever of `IRQ_MASK` and
/// `CTRL.IRQ_ENABLE` comes last.
#[test]
fn pending_interrupts_are_delivered_on_unmask() {
    // A driver that enables interrupts after reset sees BOOT_DONE, in
    // either order of mask and enable.
    for mask_first in [true, false] {
        let mut m = booted();
        assert_eq!(m.read_reg(reg::IRQ_STATUS), irq::BOOT_DONE);
        assert_eq!(m.irq_pulses(), 0, "masked at boot");
        if mask_first {
            m.write_reg(reg::IRQ_MASK, 7);
            assert_eq!(m.irq_pulses(), 0, "IRQ_ENABLE still off");
            m.write_reg(reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE);
        } else {
            m.write_reg(reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE);
            assert_eq!(m.irq_pulses(), 0, "IRQ_MASK still 0");
            m.write_reg(reg::IRQ_MASK, 7);
        }
        assert_eq!(m.irq_pulses(), 1, "BOOT_DONE pending on unmask");
        // Rewriting what is already enabled sends nothing.
        m.write_reg(reg::IRQ_MASK, 7);
        m.write_reg(reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE);
        assert_eq!(m.irq_pulses(), 1);
        // Masked and unmasked again while still pending: sent again.
        m.write_reg(reg::IRQ_MASK, 0);
        m.write_reg(reg::IRQ_MASK, irq::BOOT_DONE);
        assert_eq!(m.irq_pulses(), 2);
        // Acknowledged: unmasking finds nothing pending.
        m.write_reg(reg::IRQ_STATUS, irq::BOOT_DONE);
        m.write_reg(reg::IRQ_MASK, 0);
        m.write_reg(reg::IRQ_MASK, 7);
        assert_eq!(m.irq_pulses(), 2);
    }
    // ERROR and COMPLETION pending while masked, unmasked one at a time.
    let (mut m, mut h, _, _) = setup();
    m.write_reg(reg::IRQ_STATUS, 7);
    m.write_reg(reg::CTRL, ctrl::IRQ_ENABLE);
    m.execute(&d(Opcode::Read, flags::IRQ, 0, 0, 8), &mut h);
    assert_eq!(m.read_reg(reg::IRQ_STATUS), irq::ERROR | irq::COMPLETION);
    assert_eq!(m.irq_pulses(), 0, "masked");
    m.write_reg(reg::IRQ_MASK, irq::ERROR);
    assert_eq!(m.irq_pulses(), 1, "pending ERROR on unmask");
    m.write_reg(reg::IRQ_MASK, irq::ERROR | irq::COMPLETION);
    assert_eq!(m.irq_pulses(), 2, "pending COMPLETION on unmask");
    // With IRQ_ENABLE off the mask alone delivers nothing; enabling then
    // sends one message for both.
    m.write_reg(reg::CTRL, 0);
    m.write_reg(reg::IRQ_MASK, 0);
    m.write_reg(reg::IRQ_MASK, 7);
    assert_eq!(m.irq_pulses(), 2);
    m.write_reg(reg::CTRL, ctrl::IRQ_ENABLE);
    assert_eq!(m.irq_pulses(), 3, "one message for the pending bits");
}

#[test]
fn process_rings_executes_real_operations() {
    let (mut m, mut h, kr) = ring_setup(3, 3);
    m.write_reg(reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE);
    m.write_reg(reg::IRQ_MASK, irq::COMPLETION);
    let data = pattern(1000, 8);
    h.write(HOST, &data);
    let mut w = d(Opcode::Write, flags::COMMIT | flags::IRQ, kr, 0, 1000);
    w.tag = 1;
    let mut r = d(Opcode::Read, flags::CHECK, kr, 0, 1000);
    r.tag = 2;
    r.host_addr = 0x50_0000;
    r.crc = crc32c(&data);
    let mut bad = d(Opcode::Read, 0, kr ^ 0x10, 0, 1000);
    bad.tag = 3;
    put_desc(&mut h, 3, 0, &w);
    put_desc(&mut h, 3, 1, &r);
    put_desc(&mut h, 3, 2, &bad);
    m.write_reg(reg::DQ_TAIL, 3);
    let out = m.process_rings(&mut h);
    let got: Vec<_> = out.iter().map(|c| (c.tag, st(c), c.info)).collect();
    assert_eq!(
        got,
        vec![
            (1, Status::Ok, 1000),
            (2, Status::Ok, 1000),
            (3, Status::BadKey, 0)
        ]
    );
    let mut back = vec![0; 1000];
    h.read(0x50_0000, &mut back);
    assert_eq!(back, data);
    assert_eq!(m.irq_pulses(), 1);
    assert_eq!(
        (m.read_reg(reg::OPS_OK), m.read_reg(reg::OPS_FAILED)),
        (2, 1)
    );
}

// ---------------------------------------------------------------------------
// Host memory
// ---------------------------------------------------------------------------

#[test]
fn paged_memory() {
    let mut h = PagedMemory::new();
    let mut b = [0xFFu8; 16];
    h.read(0x1234_5678, &mut b);
    assert_eq!(b, [0; 16]);
    assert_eq!(h.page_count(), 0);
    // Cross-page.
    let data = pattern(10_000, 1);
    h.write(4090, &data);
    let mut back = vec![0; 10_000];
    h.read(4090, &mut back);
    assert_eq!(back, data);
    assert_eq!(h.page_count(), 4);
    // Words.
    h.write_u64(0x8000, 0x0102_0304_0506_0708);
    assert_eq!(h.read_u64(0x8000), 0x0102_0304_0506_0708);
    h.write_u64_masked(0x8000, 0xAAAA_AAAA_AAAA_AAAA, 0b1000_0001);
    assert_eq!(h.read_u64(0x8000), 0xAA02_0304_0506_07AA);
    let pages = h.page_count();
    h.write_u64_masked(0x10_0000, u64::MAX, 0);
    assert_eq!(h.page_count(), pages, "zero strobe allocates nothing");
    assert_eq!(h.read_u64(0x10_0000), 0);
    // Unaligned word across a page boundary.
    h.write_u64_masked(0x8FFC, 0x1122_3344_5566_7788, 0xFF);
    assert_eq!(h.read_u64(0x8FFC), 0x1122_3344_5566_7788);
    // Wrap at the top of the address space.
    h.write(u64::MAX - 1, &[1, 2, 3, 4]);
    let mut b = [0u8; 4];
    h.read(u64::MAX - 1, &mut b);
    assert_eq!(b, [1, 2, 3, 4]);
    assert_eq!(h.read_u64(0) & 0xFFFF, 0x0403);
}

#[test]
fn host_address_wraps_without_panic() {
    let (mut m, mut h, kr, _) = setup();
    let mut x = d(Opcode::Write, 0, kr, 0, 64);
    x.host_addr = u64::MAX - 8;
    assert_eq!(st(&m.execute(&x, &mut h)), Status::Ok);
    let mut x = d(Opcode::Read, 0, kr, 0, 64);
    x.host_addr = u64::MAX - 8;
    assert_eq!(st(&m.execute(&x, &mut h)), Status::Ok);
    // Ring bases at the top of the address space.
    m.write_reg(reg::DQ_BASE_LO, u32::MAX);
    m.write_reg(reg::DQ_BASE_HI, u32::MAX);
    m.write_reg(reg::CQ_BASE_LO, u32::MAX - 3);
    m.write_reg(reg::CQ_BASE_HI, u32::MAX);
    m.write_reg(reg::DQ_SIZE_LOG2, 12);
    m.write_reg(reg::CQ_SIZE_LOG2, 12);
    m.write_reg(reg::CTRL, 1);
    m.write_reg(reg::DQ_TAIL, 4095);
    m.write_reg(reg::DQ_TAIL, 4096);
    assert_eq!(m.process_rings(&mut h).len(), 4096);
}
