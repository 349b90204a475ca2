//! `cargo xtask`: the project's developer commands (README.md lists them).
//!
//! Errors are `anyhow` errors: this is a developer tool, and the message with
//! its context chain is what the user needs.
#![forbid(unsafe_code)]

mod area;
mod bitstreams;
mod ci;
mod fuzz;
mod mutants;
mod regs;
mod setup;
mod util;
mod verilog;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "hitless developer tasks",
    version
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build needs (verilator, yosys, g++, make) if missing.
    Setup {
        /// Also create the Python venv under target/venv (for the bitstream flows).
        #[arg(long)]
        venv: bool,
    },
    /// Run the demo on the simulated card (`hitless-demo`; extra args go to it).
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every check: setup, fmt, clippy, tests, regs --check, Verilog lint and synthesis.
    ///
    /// Extra args go to `cargo test --workspace --release`, e.g.
    /// `cargo xtask test -- contract` or `cargo xtask test -- -- --nocapture`.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the benchmarks on the simulated card (`hitless-bench`; extra args
    /// go to it), then the lite board's (`hitless-board-bench`: the
    /// iCEBreaker's reduced controller, counted in cycles), then the image
    /// manager's (simulated NOR flash: install rate, partial-upgrade bytes,
    /// power-cut points).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Generate docs/registers.md and include/hitless_regs.h from hdl::contract.
    Regs {
        /// Fail if the committed files differ from what would be generated.
        #[arg(long)]
        check: bool,
    },
    /// Generate target/verilog/hitless.v, lint it and synthesize it (ECP5, Xilinx 7).
    ///
    /// With neither --lint nor --synth, does both.
    Verilog {
        /// Lint with `verilator --lint-only -Wall`.
        #[arg(long)]
        lint: bool,
        /// Synthesize with yosys for ECP5 and Xilinx 7-series; print LUT/FF counts.
        #[arg(long)]
        synth: bool,
    },
    /// Plant each bug the tests claim to catch and check they fail
    /// (all mutants, or the named ones).
    Mutants {
        names: Vec<String>,
        /// Name the mutants and what each plants.
        #[arg(long)]
        list: bool,
    },
    /// Fuzz the firmware's decoders (libFuzzer) for SECONDS each: the TLV
    /// messages (`tlv_decode`), the card-to-card link (`link_decode`) and
    /// the backup reader's frames (`backup_decode`).
    Fuzz {
        #[arg(default_value_t = 60)]
        seconds: u32,
        /// Only these targets (default: all).
        #[arg(long = "target")]
        targets: Vec<String>,
    },
    /// Build the FPGA bitstreams and bitstreams/REPORT.md (all boards, or the named ones).
    ///
    /// Boards: ulx3s orangecrab icebreaker tangnano20k arty_a7_35 pynq_z2. REPORT.md is
    /// rewritten by every run (failed boards and boards not built are listed).
    Bitstreams {
        boards: Vec<String>,
        /// Place-and-route each ECP5 board with nextpnr seeds 1..=SEEDS and
        /// keep the best Fmax (results vary by several percent between
        /// seeds). Default: the board's own count (3 for the ULX3S, whose
        /// 100 MHz clock is within a few percent of its Fmax; else 1).
        #[arg(long)]
        seeds: Option<u32>,
        /// Synthesis only, each block kept as a module (its registers
        /// flattened into it): print where each board's area goes, block by
        /// block (also in
        /// `bitstreams/out/<board>/blocks.md`). No place-and-route;
        /// REPORT.md and the saved results are left as they are.
        #[arg(long, conflicts_with = "seeds")]
        blocks: bool,
        /// Rewrite `bitstreams/REPORT.md` from the saved results in
        /// `bitstreams/results/` without building anything (after a change
        /// of the report's format).
        #[arg(long, conflicts_with_all = ["seeds", "blocks", "gate"])]
        report_only: bool,
        /// Only the CI gate: the OrangeCrab (ECP5-25F) flow, failing if the
        /// design misses the board's clock (what `cargo xtask test` runs).
        #[arg(long, conflicts_with_all = ["seeds", "blocks"])]
        gate: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Setup { venv } => {
            setup::tools()?;
            if venv {
                let dir = setup::python_venv(&[])?;
                println!("setup: Python venv at {}", dir.display());
            }
        }
        Cmd::Demo { args } => return sim_bin("hitless-demo", &args),
        Cmd::Bench { args } => {
            let code = sim_bin("hitless-bench", &args)?;
            if code != ExitCode::SUCCESS {
                return Ok(code);
            }
            util::run(util::cargo().args([
                "run",
                "--release",
                "-p",
                "hitless-board-sim",
                "--bin",
                "hitless-board-bench",
            ]))?;
            // The image manager's lines (simulated NOR flash, no card).
            util::run(util::cargo().args([
                "run",
                "--release",
                "-p",
                "hitless-image",
                "--example",
                "image_bench",
            ]))?;
            // The host heap's lines (dirty tracking, fault-in; no card).
            util::run(util::cargo().args([
                "run",
                "--release",
                "-p",
                "hitless-heap",
                "--example",
                "heap-bench",
            ]))?;
        }
        Cmd::Test { args } => return ci::run(&args),
        Cmd::Regs { check } => regs::run(check)?,
        Cmd::Fuzz { seconds, targets } => {
            let targets: Vec<&str> = if targets.is_empty() {
                fuzz::TARGETS.to_vec()
            } else {
                targets.iter().map(String::as_str).collect()
            };
            fuzz::run(seconds, &targets)?
        }
        Cmd::Mutants { list: true, .. } => mutants::list(),
        Cmd::Mutants { names, .. } => {
            setup::tools()?;
            mutants::run(&names)?
        }
        Cmd::Verilog { lint, synth } => {
            let (lint, synth) = if lint || synth {
                (lint, synth)
            } else {
                (true, true)
            };
            setup::tools()?;
            let path = verilog::generate()?;
            if lint {
                verilog::lint(&path)?;
            }
            if synth {
                verilog::synth(&path)?;
            }
        }
        Cmd::Bitstreams {
            report_only: true, ..
        } => bitstreams::write_report(&[])?,
        Cmd::Bitstreams { gate: true, .. } => bitstreams::ci_gate()?,
        Cmd::Bitstreams {
            boards,
            blocks: true,
            ..
        } => bitstreams::blocks(&boards)?,
        Cmd::Bitstreams { boards, seeds, .. } => bitstreams::run(&boards, seeds)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `cargo run --release -p hitless-sim --bin NAME -- ARGS`, after setup; the
/// binary's exit code becomes ours.
fn sim_bin(name: &str, args: &[String]) -> Result<ExitCode> {
    setup::tools()?;
    // The benchmark and the demo drive the card process and the CLI too.
    util::run(util::cargo().args([
        "build",
        "--release",
        "-p",
        "hitless-sim",
        "-p",
        "hitless-cli",
        "-p",
        "hitless-daemon",
        "--bins",
    ]))?;
    let mut cmd = util::cargo();
    cmd.args(["run", "--release", "-p", "hitless-sim", "--bin", name, "--"]);
    cmd.args(args);
    let status = util::status(&mut cmd)?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE, // killed by a signal
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_args(argv: &[&str]) -> Vec<String> {
        match Cli::try_parse_from(argv).unwrap().cmd {
            Cmd::Test { args } => args,
            _ => panic!("not the test command"),
        }
    }

    #[test]
    fn test_passes_extra_args_through() {
        assert!(test_args(&["xtask", "test"]).is_empty());
        assert_eq!(test_args(&["xtask", "test", "contract"]), ["contract"]);
        assert_eq!(
            test_args(&["xtask", "test", "--", "--", "--nocapture"]),
            ["--", "--nocapture"]
        );
        assert_eq!(
            test_args(&["xtask", "test", "-p", "hitless-hdl"]),
            ["-p", "hitless-hdl"]
        );
    }
}
