//! Build-script support for the crates that link a Verilated model of the
//! generated Verilog (`sim`, `bitstreams/sim`): verilate, build the model
//! archive and the Verilator runtime objects from the generated makefile
//! (Debian's Verilator 5.006 ships no `libverilated.a`), archive the
//! runtime, and tell cargo what to link. One description of those steps
//! for both build scripts.
//!
//! Build scripts panic on failure (cargo shows the message); every panic
//! here names the tool and its output.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Run a build tool; panics with its output if it fails.
pub fn run(cmd: &mut Command, what: &str) {
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

/// `$VERILATOR_ROOT`, or where `verilator` says it is.
pub fn verilator_root() -> PathBuf {
    if let Ok(r) = std::env::var("VERILATOR_ROOT") {
        return PathBuf::from(r);
    }
    let out = Command::new("verilator")
        .args(["--getenv", "VERILATOR_ROOT"])
        .output()
        .expect("verilator not found: run `cargo xtask setup`");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// One Verilated model.
pub struct Model<'a> {
    /// The C++ class (`--prefix`), e.g. `Vtop`.
    pub class: String,
    /// Where the Verilog is written.
    pub vfile: PathBuf,
    /// Verilator's object directory.
    pub mdir: PathBuf,
    /// `--x-assign` / `--x-initial` value (`fast`, `0`).
    pub x: &'a str,
    /// Compiler settings for the generated makefile (`OPT_FAST=...`).
    pub make_opts: &'a [&'a str],
    /// VCD tracing compiled in.
    pub trace: bool,
}

impl Model<'_> {
    /// The archive of the model's own objects.
    pub fn archive(&self) -> PathBuf {
        self.mdir.join(format!("{}__ALL.a", self.class))
    }

    /// The Verilator runtime objects this model needs.
    pub fn runtime(&self) -> Vec<PathBuf> {
        let mut v = vec![
            self.mdir.join("verilated.o"),
            self.mdir.join("verilated_threads.o"),
        ];
        if self.trace {
            v.push(self.mdir.join("verilated_vcd_c.o"));
        }
        v
    }

    /// Verilate `verilog` and build the model archive and the runtime
    /// objects, unless the same Verilog was already built with the same
    /// settings.
    pub fn build(&self, verilog: &str) {
        let config = format!(
            "x={} {} trace={}",
            self.x,
            self.make_opts.join(" "),
            self.trace
        );
        let stamp = self.mdir.join("build.stamp");
        let unchanged = std::fs::read_to_string(&self.vfile).is_ok_and(|old| old == verilog);
        let same_config = std::fs::read_to_string(&stamp).is_ok_and(|s| s == config);
        if unchanged && same_config && self.archive().exists() {
            return;
        }
        std::fs::write(&self.vfile, verilog).expect("write verilog");
        let _ = std::fs::remove_dir_all(&self.mdir);
        let mut v = Command::new("verilator");
        v.arg("--cc")
            .arg(&self.vfile)
            .args(["--top-module", "top", "--prefix", &self.class, "-O3"])
            .args(["--x-assign", self.x, "--x-initial", self.x, "--noassert"])
            .args(["-Wno-fatal", "-Wno-lint", "-Wno-style", "-Wno-UNOPTFLAT"])
            .arg("-Mdir")
            .arg(&self.mdir);
        if self.trace {
            v.arg("--trace");
        }
        run(&mut v, "verilator");
        let archive = format!("{}__ALL.a", self.class);
        let mut objs = vec![archive.as_str(), "verilated.o", "verilated_threads.o"];
        if self.trace {
            objs.push("verilated_vcd_c.o");
        }
        let jobs = std::env::var("NUM_JOBS").unwrap_or_else(|_| "2".into());
        run(
            Command::new("make")
                .arg("-C")
                .arg(&self.mdir)
                .args(["-f", &format!("{}.mk", self.class), "-j", &jobs])
                .args(self.make_opts)
                .args(&objs),
            "make (verilated model)",
        );
        std::fs::write(&stamp, &config).expect("stamp");
    }

    /// Copy the model archive to `out/lib<name>.a` and have cargo link it.
    pub fn link_as(&self, out: &Path, name: &str) {
        std::fs::copy(self.archive(), out.join(format!("lib{name}.a")))
            .expect("copy model archive");
        println!("cargo:rustc-link-lib=static={name}");
    }
}

/// Archive the Verilator runtime objects as `out/lib<name>.a`, and link
/// it with the C++ runtime. Call after the shims and models are linked
/// (the order of static libraries matters: shim, model, runtime).
pub fn link_runtime(out: &Path, name: &str, objects: &[PathBuf]) {
    let lib = out.join(format!("lib{name}.a"));
    let _ = std::fs::remove_file(&lib);
    run(
        Command::new("ar").arg("crs").arg(&lib).args(objects),
        "ar (Verilator runtime)",
    );
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static={name}");
    println!("cargo:rustc-link-lib=stdc++");
    println!("cargo:rustc-link-lib=pthread");
}

/// A `cc` build of shim sources against the models' headers and the
/// Verilator includes.
pub fn shim_build(models: &[&Path]) -> cc::Build {
    let inc = verilator_root().join("include");
    let mut b = cc::Build::new();
    b.cpp(true);
    for m in models {
        b.include(m);
    }
    b.include(&inc)
        .include(inc.join("vltstd"))
        .flag_if_supported("-std=c++17")
        .flag_if_supported("-Wno-unused-parameter");
    b
}
