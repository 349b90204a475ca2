//! Independent verification of the bus blocks with cocotb and cocotbext-axi
//! under Icarus Verilog (`hdl/tests/cocotb`): the AXI4 DMA adapter
//! (`PmpToAxi4`) against cocotbext's `AxiRam`, the AXI4-Lite CSR target
//! (`AxiLiteCsr`) against its `AxiLiteMaster`, both with random pauses on
//! every channel. The Verilog is generated here, each block in a small
//! wrapper with plain port names.
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
/// with the runner's output unless every test passed.
fn cocotb(name: &str, verilog: &str, toplevel: &str, module: &str) {
    check_tools();
    let dir = std::env::temp_dir().join(format!("hitless-cocotb-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{toplevel}.v"));
    std::fs::write(&file, verilog).unwrap();
    let script = root().join("hdl/tests/cocotb/run.py");
    let t0 = std::time::Instant::now();
    let out = Command::new(python())
        .arg(&script)
        .arg(&file)
        .arg(toplevel)
        .arg(module)
        .arg(dir.join("build"))
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
    cocotb("axi4", &v, "axi4_tb", "test_axi4");
}

#[test]
fn cocotb_axil_csr_against_axilitemaster() {
    let v = hitless_hdl::rtl::generate_axil_tb_verilog();
    cocotb("axil", &v, "axil_tb", "test_axil");
}
