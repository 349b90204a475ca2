//! `cargo xtask test`: every check, in order, each step timed. The last line
//! is "xtask test: N passed, N failed" (CI reads it). A failed step does not
//! stop the later ones, except setup: without the tools nothing else can run.

use crate::{bitstreams, fuzz, mutants, regs, setup, util, verilog};
use anyhow::{anyhow, bail, Result};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// One check: runs, and says what went wrong.
type Step = Box<dyn FnOnce() -> Result<()> + Send>;

pub fn run(test_args: &[String]) -> Result<ExitCode> {
    let mut cargo_test = util::cargo();
    cargo_test
        .args(["test", "--workspace", "--release"])
        .args(test_args);

    let steps: Vec<(&str, Step)> = vec![
        ("setup", Box::new(setup::tools)),
        ("fmt", cargo_step(&["fmt", "--all", "--", "--check"])),
        (
            "clippy",
            cargo_step(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        (
            "clippy (rtl)",
            cargo_step(&[
                "clippy",
                "-p",
                "hitless-hdl",
                "--features",
                "rtl",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        ("test", command_step(cargo_test)),
        (
            "test (rtl blocks)",
            command_step(rtl_test(&["--lib", "rtl::"])),
        ),
        (
            "cocotb (AXI4, AXI4-Lite and the Zynq top against cocotbext-axi)",
            Box::new(|| {
                setup::python_venv(setup::COCOTB)?;
                util::run(&mut rtl_test(&["--test", "cocotb"]))
            }),
        ),
        (
            "mutants (every planted bug caught)",
            Box::new(|| mutants::run(&[])),
        ),
        (
            "fuzz (TLV, link and backup-reader decoders, 12 s each)",
            Box::new(|| fuzz::run(12, fuzz::TARGETS)),
        ),
        ("regs --check", Box::new(|| regs::run(true))),
        (
            "verilog lint",
            Box::new(|| verilog::lint(&verilog::generate()?)),
        ),
        // xc7 only: the ECP5 bitstream gate synthesizes the same RTL for
        // ECP5 (the board top), so a second ECP5 run would add minutes and
        // no coverage. Yosys and nextpnr each use one core: the two run
        // side by side (two minutes off the run on the 2-core CI machine).
        (
            "verilog synth (xc7) and bitstream (ECP5-25F, Fmax gate), side by side",
            concurrently(
                (
                    "verilog synth (xc7)",
                    Box::new(|| verilog::synth_for(&verilog::generate()?, &["xc7"])),
                ),
                (
                    "bitstream (ECP5-25F, Fmax gate)",
                    Box::new(bitstreams::ci_gate),
                ),
            ),
        ),
    ];

    let total = steps.len();
    let (mut passed, mut failed) = (0, Vec::new());
    for (i, (name, step)) in steps.into_iter().enumerate() {
        println!("\n=== xtask test [{}/{total}]: {name}", i + 1);
        let start = Instant::now();
        let result = step();
        let secs = start.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                println!("=== {name}: ok ({secs:.1}s)");
                passed += 1;
            }
            Err(e) => {
                println!("=== {name}: FAILED ({secs:.1}s): {e:#}");
                failed.push(name);
                if name == "setup" {
                    break;
                }
            }
        }
    }

    println!();
    let skipped = total - passed - failed.len();
    if !failed.is_empty() {
        println!("xtask test: failed step(s): {}", failed.join(", "));
    }
    let skipped = if skipped > 0 {
        format!(", {skipped} skipped")
    } else {
        String::new()
    };
    println!(
        "xtask test: {passed} passed, {} failed{skipped}",
        failed.len()
    );
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One step of two run at the same time, both to the end; it fails with
/// the error of each that failed, under its name.
fn concurrently(a: (&'static str, Step), b: (&'static str, Step)) -> Step {
    Box::new(move || {
        let ((name_a, step_a), (name_b, step_b)) = (a, b);
        let (res_a, res_b) = std::thread::scope(|s| {
            let handle = s.spawn(step_a);
            let res_b = step_b();
            let res_a = handle
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the step panicked")));
            (res_a, res_b)
        });
        match (res_a, res_b) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), Ok(())) => Err(e.context(name_a)),
            (Ok(()), Err(e)) => Err(e.context(name_b)),
            (Err(x), Err(y)) => bail!("{name_a}: {x:#}; {name_b}: {y:#}"),
        }
    })
}

/// `cargo test --release -p hitless-hdl --features rtl ARGS`.
fn rtl_test(args: &[&str]) -> Command {
    let mut cmd = util::cargo();
    cmd.args([
        "test",
        "--release",
        "-p",
        "hitless-hdl",
        "--features",
        "rtl",
    ])
    .args(args);
    cmd
}

/// A step that runs `cargo ARGS` in the workspace root.
fn cargo_step(args: &[&str]) -> Step {
    let mut cmd = util::cargo();
    cmd.args(args);
    command_step(cmd)
}

/// A step that runs `cmd`, echoing it first.
fn command_step(mut cmd: Command) -> Step {
    Box::new(move || {
        println!("$ {}", util::display(&cmd));
        util::run(&mut cmd)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn ok() -> Step {
        Box::new(|| Ok(()))
    }
    fn fails(why: &'static str) -> Step {
        Box::new(move || bail!(why))
    }

    #[test]
    fn side_by_side_steps_both_run_and_both_errors_are_named() {
        assert!(concurrently(("a", ok()), ("b", ok()))().is_ok());
        let e = concurrently(("a", fails("broke")), ("b", ok()))().unwrap_err();
        assert_eq!(format!("{e:#}"), "a: broke");
        let e = concurrently(("a", ok()), ("b", fails("broke")))().unwrap_err();
        assert_eq!(format!("{e:#}"), "b: broke");
        let e = concurrently(("a", fails("x")), ("b", fails("y")))().unwrap_err();
        assert_eq!(format!("{e:#}"), "a: x; b: y");
        // A failure of one does not stop the other.
        let ran = Arc::new(AtomicBool::new(false));
        let seen = ran.clone();
        let slow: Step = Box::new(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            seen.store(true, Ordering::SeqCst);
            Ok(())
        });
        assert!(concurrently(("a", slow), ("b", fails("early")))().is_err());
        assert!(ran.load(Ordering::SeqCst));
        let panics: Step = Box::new(|| panic!("boom"));
        let e = concurrently(("a", panics), ("b", ok()))().unwrap_err();
        assert_eq!(format!("{e:#}"), "a: the step panicked");
    }
}
