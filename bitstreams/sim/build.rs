//! Generates the board top-level's Verilog from `hitless-hdl` (UART at
//! `DIVIDER` clocks per bit: a fast simulated line), verilates it and links
//! it through `csrc/board.cpp`. Kept cheap: C++ at -O1, two evaluations per
//! clock (no edge rewrite), no tracing.

use std::path::PathBuf;
use std::process::Command;

/// UART clocks per bit in the simulated board (exported to the crate).
const DIVIDER: u16 = 8;

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

fn main() {
    println!("cargo:rerun-if-changed=csrc/board.cpp");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let vfile = out.join("board.v");
    let verilog = hitless_hdl::rtl::generate_board_verilog(DIVIDER);
    let mdir = out.join("obj");
    let lib = mdir.join("Vboard__ALL.a");
    let unchanged = std::fs::read_to_string(&vfile).is_ok_and(|old| old == verilog);
    if !(unchanged && lib.exists()) {
        std::fs::write(&vfile, &verilog).expect("write verilog");
        let _ = std::fs::remove_dir_all(&mdir);
        run(
            Command::new("verilator")
                .arg("--cc")
                .arg(&vfile)
                .args(["--top-module", "top", "--prefix", "Vboard", "-O3"])
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
                .args(["-f", "Vboard.mk", "-j", &jobs])
                .args(["OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O1"])
                .args(["Vboard__ALL.a", "verilated.o", "verilated_threads.o"]),
            "make (verilated board)",
        );
    }
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
        .include(&mdir)
        .include(&inc)
        .include(inc.join("vltstd"))
        .flag_if_supported("-std=c++17")
        .flag_if_supported("-Wno-unused-parameter")
        .opt_level(1)
        .compile("hitless_board_shim");
    std::fs::copy(&lib, out.join("libhitless_vboard.a")).expect("copy model archive");
    let rt = out.join("libhitless_board_verilated.a");
    let _ = std::fs::remove_file(&rt);
    run(
        Command::new("ar")
            .arg("crs")
            .arg(&rt)
            .arg(mdir.join("verilated.o"))
            .arg(mdir.join("verilated_threads.o")),
        "ar (Verilator runtime)",
    );
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=hitless_vboard");
    println!("cargo:rustc-link-lib=static=hitless_board_verilated");
    println!("cargo:rustc-link-lib=stdc++");
    println!("cargo:rustc-link-lib=pthread");
    println!("cargo:rustc-env=HITLESS_BOARD_DIVIDER={DIVIDER}");
}
