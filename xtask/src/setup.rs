//! `cargo xtask setup`: make a fresh Debian machine ready to build and test.
//!
//! Checks the system tools on PATH and installs the missing ones with
//! `apt-get` (as root, or through `sudo`). Quiet when nothing is missing.

use crate::util::{self, on_path};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// (executable, Debian package) the build needs: Verilator and a C++
/// toolchain for the simulator, yosys for the synthesis checks.
const TOOLS: &[(&str, &str)] = &[
    ("verilator", "verilator"),
    ("yosys", "yosys"),
    ("g++", "g++"),
    ("make", "make"),
];

/// Install the missing tools; prints one line when all are present.
pub fn tools() -> Result<()> {
    let missing = || -> Vec<&str> {
        TOOLS
            .iter()
            .filter(|(exe, _)| !on_path(exe))
            .map(|(_, pkg)| *pkg)
            .collect()
    };
    let todo = missing();
    if !todo.is_empty() {
        println!("setup: installing {}", todo.join(" "));
        apt_install(&todo)?;
        let still = missing();
        if !still.is_empty() {
            bail!(
                "setup: still missing after apt-get install: {}",
                still.join(" ")
            );
        }
    }
    println!("setup: all tools present");
    Ok(())
}

/// The Python venv for tools from PyPI (the bitstream flows, issue 5):
/// creates `target/venv` if needed, installs `packages` into it (pip skips
/// those already present) and returns the venv directory.
pub fn python_venv(packages: &[&str]) -> Result<PathBuf> {
    let dir = util::root().join("target/venv");
    let python = dir.join("bin/python");
    if !python.exists() {
        if !on_path("python3") {
            apt_install(&["python3", "python3-venv"])?;
        }
        let create = || util::run(util::command("python3").args(["-m", "venv"]).arg(&dir));
        if create().is_err() {
            // Debian ships venv's ensurepip separately.
            apt_install(&["python3-venv"])?;
            create()?;
        }
    }
    if !packages.is_empty() {
        util::run(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet"])
                .args(packages),
        )?;
    }
    Ok(dir)
}

/// `apt-get install` non-interactively, after one `apt-get update` per run.
fn apt_install(packages: &[&str]) -> Result<()> {
    static UPDATED: AtomicBool = AtomicBool::new(false);
    if !on_path("apt-get") {
        bail!(
            "no apt-get on this machine: install {} with its package manager",
            packages.join(" ")
        );
    }
    if !UPDATED.swap(true, Ordering::SeqCst) {
        util::run(apt()?.arg("update"))?;
    }
    util::run(
        apt()?
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages),
    )
}

/// `apt-get` with DEBIAN_FRONTEND=noninteractive, through sudo unless root.
fn apt() -> Result<Command> {
    if is_root()? {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        Ok(cmd)
    } else if on_path("sudo") {
        // `env` inside sudo: sudo's env_reset would drop the variable.
        let mut cmd = Command::new("sudo");
        cmd.args(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        Ok(cmd)
    } else {
        bail!("not root and no sudo: cannot run apt-get")
    }
}

fn is_root() -> Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("could not run `id -u`")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}
