//! Generates three Verilated models from `hitless-hdl` and links them through
//! `csrc/`: the board top-level (UART at `DIVIDER` clocks per bit: a fast
//! simulated line; `csrc/board.cpp`), the lite board top-level (the reduced
//! controller; `csrc/lite.cpp`) and the flash-backed cold tier on its own,
//! for its testbench (`csrc/flash.cpp`). Kept cheap: C++ at -O1, two
//! evaluations per clock (no edge rewrite), no tracing.

use hitless_hdl::verilate::{link_runtime, shim_build, Model};
use std::path::{Path, PathBuf};

/// UART clocks per bit in the simulated board (exported to the crate).
const DIVIDER: u16 = 8;

/// The flash tier under test: `2^FLASH_WORDS_LOG2` words (the board's cold
/// tier size), at flash address `FLASH_BASE`, SCK = clock / 2, and a status
/// poll budget per erase or page program (exported to the crate).
const FLASH_WORDS_LOG2: usize = 11;
const FLASH_BASE: u32 = 0x1_0000;
const FLASH_HALF: u16 = 1;
const FLASH_POLLS: u32 = 4096;

/// Verilate `verilog` as `V<prefix>` under `out/obj_<prefix>` (skipped
/// when it is unchanged), link its archive, and return the model.
fn verilate(out: &Path, prefix: &str, verilog: &str) -> Model<'static> {
    let model = Model {
        class: format!("V{prefix}"),
        vfile: out.join(format!("{prefix}.v")),
        mdir: out.join(format!("obj_{prefix}")),
        x: "0",
        make_opts: &["OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O1"],
        trace: false,
    };
    model.build(verilog);
    model.link_as(out, &format!("hitless_v{prefix}"));
    model
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
    shim_build(&[&board.mdir, &lite.mdir, &flash.mdir])
        .file("csrc/board.cpp")
        .file("csrc/flash.cpp")
        .file("csrc/lite.cpp")
        .opt_level(1)
        .compile("hitless_board_shim");
    // One Verilator runtime for all models (the same Verilator built them).
    link_runtime(&out, "hitless_board_verilated", &board.runtime());
    println!("cargo:rustc-env=HITLESS_BOARD_DIVIDER={DIVIDER}");
    println!("cargo:rustc-env=HITLESS_FLASH_WORDS_LOG2={FLASH_WORDS_LOG2}");
    println!("cargo:rustc-env=HITLESS_FLASH_BASE={FLASH_BASE}");
    println!("cargo:rustc-env=HITLESS_FLASH_POLLS={FLASH_POLLS}");
}
