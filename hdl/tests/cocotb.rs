//! Independent verification of the bus blocks with cocotb and cocotbext-axi
//! under Icarus Verilog (`hdl/tests/cocotb`): the AXI4 DMA adapter
//! (`PmpToAxi4`) against cocotbext's `AxiRam`, the AXI4-Lite CSR target
//! (`AxiLiteCsr`) against its `AxiLiteMaster`, both with random pauses on
//! every channel. The Verilog is generated here, each block in a small
//! wrapper with plain port names. And the Zynq top-level (`ZynqTop`)
//! whole: cocotbext's `AxiMaster` on its GP0 slave port (AXI3, IDs),
//! `AxiRam` as the PS DDR on its HP0 master port, a checkpoint through
//! descriptors in that memory, its completions and read-back predicted by
//! the reference model (`hitless_hdl::model`) here and checked there.
//!
//! Needs `iverilog` on PATH and a Python with cocotb and cocotbext-axi:
//! `$HITLESS_COCOTB_PYTHON`, else `target/venv/bin/python3` of this
//! checkout (`cargo xtask setup`). Missing tools FAIL the test with what to
//! install: a skipped check would read as a passing one. With
//! `HITLESS_COCOTB_LOG` set, the runner's whole output is printed.
#![cfg(feature = "rtl")]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn python() -> PathBuf {
    match std::env::var_os("HITLESS_COCOTB_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => root().join("target/venv/bin/python3"),
    }
}

const SETUP: &str = "run `cargo xtask setup` (apt: iverilog; pip into target/venv: \
                     cocotb cocotbext-axi), or point HITLESS_COCOTB_PYTHON at a Python that has them";

fn check_tools() {
    let iverilog = Command::new("iverilog").arg("-V").output();
    assert!(
        iverilog.is_ok_and(|o| o.status.success() || !o.stdout.is_empty()),
        "iverilog not found on PATH: {SETUP}"
    );
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", "import cocotb, cocotb_tools.runner, cocotbext.axi"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "{} cannot import cocotb/cocotbext-axi: {}\n{SETUP}",
            py.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("{}: {e}\n{SETUP}", py.display()),
    }
}

/// Write `verilog`, build it with Icarus and run the cocotb module; panics
/// with the runner's output unless every test passed. `plan`: a JSON file
/// for the module, named to it in `HITLESS_COCOTB_PLAN`.
fn cocotb(name: &str, verilog: &str, toplevel: &str, module: &str, plan: Option<&str>) {
    check_tools();
    let dir = std::env::temp_dir().join(format!("hitless-cocotb-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{toplevel}.v"));
    std::fs::write(&file, verilog).unwrap();
    let plan_file = dir.join("plan.json");
    if let Some(p) = plan {
        std::fs::write(&plan_file, p).unwrap();
    }
    let script = root().join("hdl/tests/cocotb/run.py");
    let t0 = std::time::Instant::now();
    let out = Command::new(python())
        .arg(&script)
        .arg(&file)
        .arg(toplevel)
        .arg(module)
        .arg(dir.join("build"))
        .env("HITLESS_COCOTB_PLAN", &plan_file)
        .output()
        .expect("run the cocotb runner");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "cocotb {module} failed ({}):\n{log}",
        out.status
    );
    // The runner prints "cocotb MODULE: N tests, 0 failed"; insist on it,
    // so a runner that passed without running anything cannot pass here.
    let summary = log
        .lines()
        .find(|l| l.starts_with(&format!("cocotb {module}:")))
        .unwrap_or_else(|| panic!("no summary line from the runner:\n{log}"));
    assert!(summary.ends_with(", 0 failed"), "{summary}\n{log}");
    if std::env::var_os("HITLESS_COCOTB_LOG").is_some() {
        eprintln!("{log}");
    }
    eprintln!("{summary} in {:.1} s", t0.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cocotb_axi4_adapter_against_axiram() {
    let v = hitless_hdl::rtl::generate_axi4_tb_verilog(16, 4);
    cocotb("axi4", &v, "axi4_tb", "test_axi4", None);
}

#[test]
fn cocotb_axil_csr_against_axilitemaster() {
    let v = hitless_hdl::rtl::generate_axil_tb_verilog();
    cocotb("axil", &v, "axil_tb", "test_axil", None);
}

/// Byte strings as JSON hex.
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The Zynq checkpoint plan (`test_zynq.py` runs it): the register writes
/// that set up a protection window and the rings, the host memory to load
/// (three descriptors, the image), the doorbell, and what the reference
/// model says must follow: completions and read-back in host memory,
/// register values, interrupt messages. WRITE of a 3000-byte image from a
/// host buffer across a 4 KiB page, FLIP with its CRC checked, READ of the
/// committed image to an unaligned buffer across another page, with an
/// interrupt.
fn zynq_plan() -> String {
    use hitless_hdl::contract::{
        self, crc32c, ctrl, flags, irq, perm, reg, Descriptor, Opcode, CPL_BYTES, DESC_BYTES,
    };
    use hitless_hdl::model::{HostMemory, Model, PagedMemory};
    use hitless_hdl::rtl::board::BOARD_GEOMETRY;

    const DQ: u64 = 0x8000;
    const CQ: u64 = 0x9000;
    const IMAGE: u64 = 0x1_0F40;
    const BACK: u64 = 0x1_3005;
    const LEN: u32 = 3000;
    let image: Vec<u8> = (0..LEN)
        .map(|i| (i.wrapping_mul(151) ^ (i >> 5)) as u8)
        .collect();

    let mut setup: Vec<(u32, u32)> = Vec::new();
    let key = contract::program_protection_entry(
        |r, v| {
            setup.push((r, v));
            Ok::<(), ()>(())
        },
        0,
        0x5A5A5A,
        0,
        BOARD_GEOMETRY.region_size,
        perm::FULL_REGION_WINDOW,
    )
    .unwrap();
    setup.extend([
        (reg::DQ_BASE_LO, DQ as u32),
        (reg::DQ_BASE_HI, 0),
        (reg::DQ_SIZE_LOG2, 2),
        (reg::CQ_BASE_LO, CQ as u32),
        (reg::CQ_BASE_HI, 0),
        (reg::CQ_SIZE_LOG2, 2),
        (reg::IRQ_MASK, irq::COMPLETION),
        (reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE),
    ]);
    let descs = [
        Descriptor {
            opcode: Opcode::Write as u8,
            tag: 1,
            key,
            host_addr: IMAGE,
            len: LEN,
            ..Default::default()
        },
        Descriptor {
            opcode: Opcode::Flip as u8,
            flags: flags::CHECK,
            tag: 2,
            key,
            len: LEN,
            crc: crc32c(&image),
            ..Default::default()
        },
        Descriptor {
            opcode: Opcode::Read as u8,
            flags: flags::IRQ,
            tag: 3,
            key,
            host_addr: BACK,
            len: LEN,
            ..Default::default()
        },
    ];
    let ring: Vec<u8> = descs.iter().flat_map(|d| d.to_bytes()).collect();

    let mut model = Model::new(BOARD_GEOMETRY);
    model.boot_scan();
    let mut host = PagedMemory::new();
    for &(r, v) in &setup {
        model.write_reg(r, v);
    }
    host.write(DQ, &ring);
    host.write(IMAGE, &image);
    model.write_reg(reg::DQ_TAIL, descs.len() as u32);
    let done = model.process_rings(&mut host);
    assert_eq!(
        done.len(),
        descs.len(),
        "the model completes every descriptor"
    );
    let mut cq = vec![0u8; descs.len() * CPL_BYTES as usize];
    host.read(CQ, &mut cq);
    let mut back = vec![0u8; LEN as usize];
    host.read(BACK, &mut back);
    assert_eq!(back, image, "the model reads the image back");
    assert_eq!(DESC_BYTES as usize * descs.len(), ring.len());

    let pairs = |v: &[(u32, u32)]| -> String {
        v.iter()
            .map(|(r, x)| format!("[{r}, {x}]"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let expect_regs: Vec<(u32, u32)> = [
        reg::DQ_HEAD,
        reg::CQ_HEAD,
        reg::WARM_STATE,
        reg::WARM_SEQ,
        reg::WARM_B_LEN,
        reg::WARM_B_CRC,
        reg::OPS_OK,
        reg::OPS_FAILED,
        reg::IRQ_STATUS,
    ]
    .iter()
    .map(|&r| (r, model.read_reg(r)))
    .collect();
    format!(
        concat!(
            "{{\"status\": {status}, \"boot_done\": {boot}, \"id_reg\": {id}, ",
            "\"id_value\": {idv}, \"scratch\": {scratch}, \"cq_head\": {cqh}, ",
            "\"dq_tail\": {dqt}, \"count\": {n},\n",
            "\"setup\": [{setup}],\n",
            "\"host\": [[{dq}, \"{ring}\"], [{img}, \"{image}\"]],\n",
            "\"expect_host\": [[{cq}, \"{cpl}\"], [{back_at}, \"{back}\"]],\n",
            "\"expect_regs\": [{regs}],\n",
            "\"irq_messages\": {irqs}}}\n"
        ),
        status = reg::STATUS,
        boot = contract::status::BOOT_DONE,
        id = reg::ID,
        idv = contract::CONTROLLER_ID,
        scratch = reg::SCRATCH,
        cqh = reg::CQ_HEAD,
        dqt = reg::DQ_TAIL,
        n = descs.len(),
        setup = pairs(&setup),
        dq = DQ,
        ring = hex(&ring),
        img = IMAGE,
        image = hex(&image),
        cq = CQ,
        cpl = hex(&cq),
        back_at = BACK,
        back = hex(&back),
        regs = pairs(&expect_regs),
        irqs = model.irq_pulses(),
    )
}

#[test]
fn cocotb_zynq_top_checkpoint_through_gp_and_hp() {
    let v = hitless_hdl::rtl::generate_zynq_tb_verilog();
    cocotb("zynq", &v, "zynq_tb", "test_zynq", Some(&zynq_plan()));
}
