//! Generates the controller's Verilog from `hitless-hdl`, verilates it at
//! `-O3` and links the model through `csrc/shim.cpp`.
//!
//! Simulation-only rewrite: every `always @(posedge c)` becomes
//! `always @(c)`, and the shim toggles the clock once per step, so one
//! Verilator eval is one clock edge instead of two evals (clock low, clock
//! high) per cycle. This is exact because the design only has rising-edge
//! flops and all its outputs are registered (nothing is sampled between
//! edges). Lint and synthesis see the unmodified Verilog.
//!
//! Set `HITLESS_TRACE_BUILD=1` at build time to compile VCD tracing in
//! (then `HITLESS_VCD=path` at run time writes a waveform).

use std::path::PathBuf;
use std::process::Command;

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

fn verilator_root() -> PathBuf {
    if let Ok(r) = std::env::var("VERILATOR_ROOT") {
        return PathBuf::from(r);
    }
    let out = Command::new("verilator")
        .arg("--getenv")
        .arg("VERILATOR_ROOT")
        .output()
        .expect("verilator not found: run `cargo xtask setup`");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HITLESS_TRACE_BUILD");
    let trace = std::env::var("HITLESS_TRACE_BUILD").is_ok_and(|v| v == "1");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let vfile = out.join("hitless.v");
    let verilog = one_eval_per_edge(&hitless_hdl::rtl::generate_verilog(
        &hitless_hdl::contract::DEFAULT_GEOMETRY,
    ));
    let unchanged = std::fs::read_to_string(&vfile).is_ok_and(|old| old == verilog);
    let mdir = out.join("obj");
    let lib = mdir.join("Vtop__ALL.a");
    // Everything besides the Verilog that decides the model's objects.
    const OPT_FAST: &str = "OPT_FAST=-O3 -fno-stack-protector";
    const OPT_SLOW: &str = "OPT_SLOW=-O1";
    let config = format!("trace={trace} {OPT_FAST} {OPT_SLOW}");
    let stamp = mdir.join("build.stamp");
    let same_config = std::fs::read_to_string(&stamp).is_ok_and(|s| s == config);
    if !(unchanged && lib.exists() && same_config) {
        std::fs::write(&vfile, &verilog).expect("write verilog");
        let _ = std::fs::remove_dir_all(&mdir);
        let mut v = Command::new("verilator");
        v.arg("--cc")
            .arg(&vfile)
            .args(["--top-module", "top", "--prefix", "Vtop", "-O3"])
            .args(["--x-assign", "fast", "--x-initial", "fast", "--noassert"])
            .args(["-Wno-fatal", "-Wno-lint", "-Wno-style", "-Wno-UNOPTFLAT"])
            .arg("-Mdir")
            .arg(&mdir);
        if trace {
            v.arg("--trace");
        }
        run(&mut v, "verilator");
        let mut objs = vec!["Vtop__ALL.a", "verilated.o", "verilated_threads.o"];
        if trace {
            objs.push("verilated_vcd_c.o");
        }
        let jobs = std::env::var("NUM_JOBS").unwrap_or_else(|_| "2".into());
        run(
            Command::new("make")
                .arg("-C")
                .arg(&mdir)
                .args(["-f", "Vtop.mk", "-j", &jobs])
                .arg(OPT_FAST)
                .arg(OPT_SLOW)
                .args(&objs),
            "make (verilated model)",
        );
        std::fs::write(&stamp, &config).expect("stamp");
    }
    let root = verilator_root();
    let inc = root.join("include");
    let mut b = cc::Build::new();
    b.cpp(true)
        .file("csrc/shim.cpp")
        .include(&mdir)
        .include(&inc)
        .include(inc.join("vltstd"))
        .flag_if_supported("-std=c++17")
        .flag_if_supported("-Wno-unused-parameter")
        .opt_level(2);
    if trace {
        b.define("HITLESS_TRACE", None);
    }
    b.compile("hitless_shim");
    // Static libraries (not link args) so crates that depend on this one
    // link the model too. Order matters: the shim (emitted by `compile`
    // above) needs the model, the model needs the Verilator runtime.
    std::fs::copy(mdir.join("Vtop__ALL.a"), out.join("libhitless_vtop.a"))
        .expect("copy model archive");
    let mut runtime = vec![mdir.join("verilated.o"), mdir.join("verilated_threads.o")];
    if trace {
        runtime.push(mdir.join("verilated_vcd_c.o"));
    }
    let lib = out.join("libhitless_verilated.a");
    let _ = std::fs::remove_file(&lib);
    run(
        Command::new("ar").arg("crs").arg(&lib).args(&runtime),
        "ar (Verilator runtime)",
    );
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=hitless_vtop");
    println!("cargo:rustc-link-lib=static=hitless_verilated");
    println!("cargo:rustc-link-lib=stdc++");
    println!("cargo:rustc-link-lib=pthread");
    println!("cargo:rustc-env=HITLESS_VERILOG={}", vfile.display());
}

/// See the module comment.
fn one_eval_per_edge(v: &str) -> String {
    assert!(
        !v.contains("negedge"),
        "the design has falling-edge logic: the one-eval-per-edge rewrite would be wrong"
    );
    v.replace("always @(posedge ", "always @(")
}
