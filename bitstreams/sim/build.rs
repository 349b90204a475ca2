//! Generates three Verilated models from `hitless-hdl` and links them through
//! `csrc/`: the board top-level (UART at `DIVIDER` clocks per bit: a fast
//! simulated line; `csrc/board.cpp`), the lite board top-level (the reduced
//! controller; `csrc/lite.cpp`) and the flash-backed cold tier on its own,
//! for its testbench (`csrc/flash.cpp`). Kept cheap: C++ at -O1, two
//! evaluations per clock (no edge rewrite), no tracing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// UART clocks per bit in the simulated board (exported to the crate).
const DIVIDER: u16 = 8;

/// The flash tier under test: `2^FLASH_WORDS_LOG2` words (the board's cold
/// tier size), at flash address `FLASH_BASE`, SCK = clock / 2, and a status
/// poll budget per erase or page program (exported to the crate).
const FLASH_WORDS_LOG2: usize = 11;
const FLASH_BASE: u32 = 0x1_0000;
const FLASH_HALF: u16 = 1;
const FLASH_POLLS: u32 = 4096;

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run ({e}); run `cargo xtask setup`"));
    if !out.status.success() {
        panic!(
            "{what} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Verilate `verilog` as `V<prefix>` under `out/<prefix>` (skipped when the
/// Verilog is unchanged) and return the object directory.
fn verilate(out: &Path, prefix: &str, verilog: &str) -> PathBuf {
    let vfile = out.join(format!("{prefix}.v"));
    let mdir = out.join(format!("obj_{prefix}"));
    let class = format!("V{prefix}");
    let lib = mdir.join(format!("{class}__ALL.a"));
    let unchanged = std::fs::read_to_string(&vfile).is_ok_and(|old| old == verilog);
    if !(unchanged && lib.exists()) {
        std::fs::write(&vfile, verilog).expect("write verilog");
        let _ = std::fs::remove_dir_all(&mdir);
        run(
            Command::new("verilator")
                .arg("--cc")
                .arg(&vfile)
                .args(["--top-module", "top", "--prefix", &class, "-O3"])
                .args(["--x-assign", "0", "--x-initial", "0", "--noassert"])
                .args(["-Wno-fatal", "-Wno-lint", "-Wno-style", "-Wno-UNOPTFLAT"])
                .arg("-Mdir")
                .arg(&mdir),
            "verilator",
        );
        let jobs = std::env::var("NUM_JOBS").unwrap_or_else(|_| "2".into());
        run(
            Command::new("make")
                .arg("-C")
                .arg(&mdir)
                .args(["-f", &format!("{class}.mk"), "-j", &jobs])
                .args(["OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O1"])
                .args([
                    &format!("{class}__ALL.a"),
                    "verilated.o",
                    "verilated_threads.o",
                ]),
            "make (verilated model)",
        );
    }
    std::fs::copy(&lib, out.join(format!("libhitless_v{prefix}.a"))).expect("copy model archive");
    println!("cargo:rustc-link-lib=static=hitless_v{prefix}");
    mdir
}

fn main() {
    println!("cargo:rerun-if-changed=csrc/board.cpp");
    println!("cargo:rerun-if-changed=csrc/flash.cpp");
    println!("cargo:rerun-if-changed=csrc/lite.cpp");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rustc-link-search=native={}", out.display());
    // The board's cold tier on the same simulated flash geometry as the
    // tier's own testbench.
    let cold = hitless_hdl::rtl::board::ColdTier::Flash {
        base: FLASH_BASE,
        half: FLASH_HALF,
    };
    let board = verilate(
        &out,
        "board",
        &hitless_hdl::rtl::generate_board_verilog(DIVIDER, cold),
    );
    let lite = verilate(
        &out,
        "lite",
        &hitless_hdl::rtl::generate_lite_board_verilog(DIVIDER),
    );
    let flash = verilate(
        &out,
        "flash",
        &hitless_hdl::rtl::generate_flash_tier_verilog::<FLASH_WORDS_LOG2>(
            FLASH_BASE,
            FLASH_HALF,
            FLASH_POLLS,
        ),
    );
    let root = {
        let o = Command::new("verilator")
            .args(["--getenv", "VERILATOR_ROOT"])
            .output()
            .expect("verilator not found: run `cargo xtask setup`");
        PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let inc = root.join("include");
    cc::Build::new()
        .cpp(true)
        .file("csrc/board.cpp")
        .file("csrc/flash.cpp")
        .file("csrc/lite.cpp")
        .include(&board)
        .include(&lite)
        .include(&flash)
        .include(&inc)
        .include(inc.join("vltstd"))
        .flag_if_supported("-std=c++17")
        .flag_if_supported("-Wno-unused-parameter")
        .opt_level(1)
        .compile("hitless_board_shim");
    // One Verilator runtime for both models (the same Verilator built both).
    let rt = out.join("libhitless_board_verilated.a");
    let _ = std::fs::remove_file(&rt);
    run(
        Command::new("ar")
            .arg("crs")
            .arg(&rt)
            .arg(board.join("verilated.o"))
            .arg(board.join("verilated_threads.o")),
        "ar (Verilator runtime)",
    );
    println!("cargo:rustc-link-lib=static=hitless_board_verilated");
    println!("cargo:rustc-link-lib=stdc++");
    println!("cargo:rustc-link-lib=pthread");
    println!("cargo:rustc-env=HITLESS_BOARD_DIVIDER={DIVIDER}");
    println!("cargo:rustc-env=HITLESS_FLASH_WORDS_LOG2={FLASH_WORDS_LOG2}");
    println!("cargo:rustc-env=HITLESS_FLASH_BASE={FLASH_BASE}");
    println!("cargo:rustc-env=HITLESS_FLASH_POLLS={FLASH_POLLS}");
}
