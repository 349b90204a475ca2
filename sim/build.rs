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

use hitless_hdl::verilate::{link_runtime, shim_build, Model};
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HITLESS_TRACE_BUILD");
    let trace = std::env::var("HITLESS_TRACE_BUILD").is_ok_and(|v| v == "1");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let verilog = one_eval_per_edge(&hitless_hdl::rtl::generate_verilog(
        &hitless_hdl::contract::DEFAULT_GEOMETRY,
    ));
    let model = Model {
        class: "Vtop".into(),
        vfile: out.join("hitless.v"),
        mdir: out.join("obj"),
        x: "fast",
        make_opts: &["OPT_FAST=-O3 -fno-stack-protector", "OPT_SLOW=-O1"],
        trace,
    };
    model.build(&verilog);
    let mut b = shim_build(&[&model.mdir]);
    b.file("csrc/shim.cpp").opt_level(2);
    if trace {
        b.define("HITLESS_TRACE", None);
    }
    b.compile("hitless_shim");
    // Static libraries (not link args) so crates that depend on this one
    // link the model too. Order matters: the shim (emitted by `compile`
    // above) needs the model, the model needs the Verilator runtime.
    model.link_as(&out, "hitless_vtop");
    link_runtime(&out, "hitless_verilated", &model.runtime());
    println!("cargo:rustc-env=HITLESS_VERILOG={}", model.vfile.display());
}

/// See the module comment.
fn one_eval_per_edge(v: &str) -> String {
    assert!(
        !v.contains("negedge"),
        "the design has falling-edge logic: the one-eval-per-edge rewrite would be wrong"
    );
    v.replace("always @(posedge ", "always @(")
}
