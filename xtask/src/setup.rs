//! `cargo xtask setup`: make a fresh Debian machine ready to build and test.
//!
//! Checks the system tools on PATH and installs the missing ones with
//! `apt-get` (as root, or through `sudo`), apt's transcript going to
//! `target/setup-apt.log`: one line per installed tool, one line when
//! nothing is missing.

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
    // The C header check compiles with `cc`.
    ("cc", "gcc"),
    ("make", "make"),
    // Independent clients of the image manager's servers (its tests):
    // curl for HTTP and TFTP with options, tftp-hpa's and atftp's clients.
    ("curl", "curl"),
    ("tftp", "tftp-hpa"),
    ("atftp", "atftp"),
    // The independent AXI models (cocotbext-axi) run under Icarus.
    ("iverilog", "iverilog"),
    // The replicated pair's etcd arbiter: its test starts its own etcd
    // (sim/tests/peer_control.rs).
    ("etcd", "etcd-server"),
    // hitlessd's store browser is tested in headless Chromium
    // (daemon/tests/browser.rs).
    ("chromium", "chromium"),
];

/// PyPI packages of the cocotb tests (into `target/venv`): cocotb 2 (the
/// API the tests use) and the independent AXI models.
pub const COCOTB: &[&str] = &["cocotb>=2,<3", "cocotbext-axi"];

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
        println!(
            "setup: installing {} with apt-get (its output: {})",
            todo.join(" "),
            apt_log().display()
        );
        apt_install(&todo)?;
        let still = missing();
        if !still.is_empty() {
            bail!(
                "setup: still missing after apt-get install: {} (see {})",
                still.join(" "),
                apt_log().display()
            );
        }
        for (exe, pkg) in TOOLS.iter().filter(|(_, pkg)| todo.contains(pkg)) {
            println!("setup: installed {pkg}: {}", version_line(exe));
        }
    }
    println!("setup: all tools present");
    Ok(())
}

/// Where apt-get's transcript goes (not to the terminal: one line per
/// installed tool is what a user needs to see).
fn apt_log() -> PathBuf {
    util::root().join("target/setup-apt.log")
}

/// The first line a tool prints of its version.
fn version_line(exe: &str) -> String {
    let flag = match exe {
        "yosys" | "tftp" | "iverilog" => "-V",
        _ => "--version",
    };
    Command::new(exe)
        .arg(flag)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "on PATH".into())
}

/// Run an apt-get command with its output appended to [`apt_log`]; on
/// failure, the log's last lines are in the error.
fn run_logged(cmd: &mut Command) -> Result<()> {
    let path = apt_log();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| path.display().to_string())?;
    let status = cmd
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("could not run {cmd:?}"))?;
    if !status.success() {
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{cmd:?} failed ({status}); the end of {}:\n{}",
            path.display(),
            tail.join("\n")
        );
    }
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
        run_logged(apt()?.arg("update"))?;
    }
    run_logged(
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
