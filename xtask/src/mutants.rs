//! `cargo xtask mutants`: checking the checks. Each mutation below plants
//! one bug the tests claim to catch (docs/verification.md, "Checking the
//! checks"), builds the tests it names (the mutant must compile: a build
//! failure proves nothing), runs them and requires them to fail. The file
//! is restored afterwards whatever happens, also when a step errors.
//!
//! `cargo xtask mutants` runs them all; `cargo xtask mutants NAME...` some
//! (`--list` names them). `cargo xtask test` runs them all.

use crate::util;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One planted bug.
pub struct Mutant {
    pub name: &'static str,
    /// What the bug is, in the product's words.
    pub what: &'static str,
    /// File (from the workspace root), the text to replace (must occur
    /// exactly once) and its replacement.
    pub file: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    /// `cargo test --release` arguments of the tests that must fail.
    pub tests: &'static [&'static str],
}

/// The mutations, cheapest first.
pub const MUTANTS: &[Mutant] = &[
    Mutant {
        name: "ring-phase",
        what: "the ring engine takes a completion slot whatever its phase bit says",
        file: "driver/ring/src/lib.rs",
        from: "if Completion::from_words([0, u64::from_le_bytes(w)]).phase != expect {",
        to: "if false && Completion::from_words([0, u64::from_le_bytes(w)]).phase != expect {",
        tests: &["-p", "hitless-ring"],
    },
    Mutant {
        name: "firmware-all-warm",
        what: "the firmware stores every set in the warm tier (cold sets lost at a power cycle)",
        file: "firmware/src/manager/dispatch.rs",
        from: "self.store(TierSel::of_flags(f), key(object), e, (addr, s.key))?;",
        to: "self.store(TierSel::Warm, key(object), e, (addr, s.key))?;",
        tests: &["-p", "hitless-sim", "--test", "firmware"],
    },
    Mutant {
        name: "firmware-no-mirror",
        what: "the firmware skips the mirror copy after a store (no identical alternate to fall back to)",
        file: "firmware/src/manager/mod.rs",
        from: "        self.tiers[t as usize] = TierView::Ready(new);\n        self.mirror(t, end, crc)",
        to: "        self.tiers[t as usize] = TierView::Ready(new);\n        let _ = (end, crc);\n        Ok(())",
        tests: &["-p", "hitless-sim", "--test", "firmware"],
    },
    Mutant {
        name: "axi4-cross-4k",
        what: "the AXI4 adapter lets a burst run on past a 4 KiB page (an AXI protocol violation: the interconnect may route the rest elsewhere)",
        file: "hdl/src/rtl/axi4.rs",
        from: "& self.in_addr.q.val().get_bits::<9>(3).any();",
        to: "& !self.in_addr.q.val().get_bit(2);",
        tests: &[
            "-p",
            "hitless-hdl",
            "--features",
            "rtl",
            "--lib",
            "axi4_bursts_split_at_4k_and_max_len",
        ],
    },
    Mutant {
        name: "axi4-no-fence",
        what: "the AXI4 adapter issues a read before the earlier writes have their B (a read of a just-written address may see the old data)",
        file: "hdl/src/rtl/axi4.rs",
        from: "& !self.w_pend.q.val().any()",
        to: "& !self.w_pend.q.val().get_bit(4)",
        tests: &[
            "-p",
            "hitless-hdl",
            "--features",
            "rtl",
            "--lib",
            "axi4_write_then_read_same_address",
        ],
    },
    Mutant {
        name: "slice-skid",
        what: "the register slice's skid path forwards the live input instead of the held command",
        file: "hdl/src/rtl/slice.rs",
        from: "self.out_addr.d.next = self.tmp_addr.q.val();",
        to: "self.out_addr.d.next = self.up.cmd_addr.val();",
        tests: &[
            "-p",
            "hitless-hdl",
            "--features",
            "rtl",
            "--lib",
            "slice_block_matches_a_queue",
        ],
    },
    Mutant {
        name: "irq-no-pending-on-unmask",
        what: "the interrupt unit pulses irq only for newly set causes: one pending when it is unmasked is never sent",
        file: "hdl/src/rtl/irq.rs",
        from: "self.live.d.next = self.now.val();",
        to: "self.live.d.next = self.status_r.q.val();",
        // The full controller through the driver's eyes (the unit's own
        // bench catches it too: `irq-level` is the cheap one).
        tests: &["-p", "hitless-sim", "--test", "irq_pending"],
    },
    Mutant {
        name: "irq-level",
        what: "the interrupt unit holds irq high while a cause is deliverable (a level, not one message per cause)",
        file: "hdl/src/rtl/irq.rs",
        from: "self.pulse.d.next = (self.now.val() & !self.live.q.val()).any();",
        to: "self.pulse.d.next = self.now.val().any();",
        tests: &[
            "-p",
            "hitless-hdl",
            "--features",
            "rtl",
            "--lib",
            "rtl::irq::",
        ],
    },
    Mutant {
        name: "boot-scan-no-fallback-flip",
        what: "the boot scan reports FELL_BACK but keeps serving the failed region as active",
        file: "hdl/src/rtl/superblock.rs",
        from: "                    self.scan.d.next.active = !self.scan.q.val().active;\n",
        to: "",
        tests: &[
            "-p",
            "hitless-hdl",
            "--features",
            "rtl",
            "--lib",
            "rtl::superblock::tests::sb_scan",
        ],
    },
    Mutant {
        name: "commit-into-active",
        what: "a FLIP commit records the new image's length and CRC for the active region instead of the alternate",
        file: "hdl/src/rtl/superblock.rs",
        from: "            if self.cur.val().active {\n                self.nsb.d.next.len_a",
        to: "            if !self.cur.val().active {\n                self.nsb.d.next.len_a",
        tests: &[
            "-p",
            "hitless-hdl",
            "--features",
            "rtl",
            "--lib",
            "sb_commit_builds_the_models_superblock",
        ],
    },
    Mutant {
        name: "mover-early-done",
        what: "the mover reports done before its NV writes are acknowledged (the superblock can overtake data)",
        file: "hdl/src/rtl/mover.rs",
        from: "            & !self.wr_inflight.q.val().any()\n            & self.crc_unit.idle.val()",
        to: "            & self.crc_unit.idle.val()",
        // The mover's block test says it directly (a write acknowledged
        // after `busy` fell); the power-cut sweep of write-then-flip also
        // catches it, as a completed commit lost, at the cost of a
        // Verilator rebuild.
        tests: &[
            "-p",
            "hitless-hdl",
            "--features",
            "rtl",
            "--lib",
            "mover_block_matches_a_byte_copy",
        ],
    },
    Mutant {
        name: "board-csr-alias",
        what: "the UART bridge passes writes above the register file to it (MB_REQ_LO lands on CTRL)",
        file: "hdl/src/rtl/bridge.rs",
        from: "get_bits::<32>(0) & self.k_csr_hi.val()",
        to: "get_bits::<32>(0) & self.k_csr_hi.val() & !self.k_csr_hi.val()",
        tests: &[
            "-p",
            "hitless-board-sim",
            "--test",
            "csr_window",
            "the_full_board_refuses_addresses_it_does_not_have",
        ],
    },
];

/// Restores a mutated file when dropped.
struct Restore {
    path: PathBuf,
    original: String,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.path, &self.original) {
            eprintln!(
                "mutants: could not restore {}: {e} (git checkout it)",
                self.path.display()
            );
        }
    }
}

/// How long a mutant's tests may run: a mutant that makes them hang is
/// caught too (they did not pass), but must not hold the run.
const TEST_DEADLINE: Duration = Duration::from_secs(600);

/// How a mutant's test run ended.
enum Outcome {
    Passed,
    Failed,
    Hung,
}

fn cargo_test(args: &[&str], no_run: bool) -> Result<Outcome> {
    let mut cmd = util::cargo();
    cmd.args(["test", "--release"]);
    if no_run {
        cmd.arg("--no-run");
    } else {
        // The tests' own output is noise here: a caught mutant fails them.
        cmd.stdout(std::process::Stdio::null());
        cmd.stderr(std::process::Stdio::null());
    }
    cmd.args(args);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not run cargo test {args:?}"))?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(if status.success() {
                Outcome::Passed
            } else {
                Outcome::Failed
            });
        }
        if !no_run && start.elapsed() > TEST_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Outcome::Hung);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Plant one mutation, build, test; `Ok(true)` if the tests caught it.
fn check(m: &Mutant) -> Result<bool> {
    let path = util::root().join(m.file);
    let original = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let n = original.matches(m.from).count();
    if n != 1 {
        bail!(
            "{}: the text to mutate occurs {n} times in {} (the code changed: update the mutant)",
            m.name,
            m.file
        );
    }
    let _restore = Restore {
        path: path.clone(),
        original: original.clone(),
    };
    std::fs::write(&path, original.replacen(m.from, m.to, 1))
        .with_context(|| path.display().to_string())?;
    if !matches!(cargo_test(m.tests, true)?, Outcome::Passed) {
        bail!(
            "{}: the mutant does not build (a build failure catches nothing)",
            m.name
        );
    }
    Ok(match cargo_test(m.tests, false)? {
        Outcome::Passed => false,
        Outcome::Failed => true,
        Outcome::Hung => {
            println!(
                "mutants: {}: the tests hung; stopped after {TEST_DEADLINE:?}",
                m.name
            );
            true
        }
    })
}

/// Run the named mutants (all with none); fails unless every one is caught.
pub fn run(names: &[String]) -> Result<()> {
    let chosen: Vec<&Mutant> = if names.is_empty() {
        MUTANTS.iter().collect()
    } else {
        let mut v = Vec::new();
        for n in names {
            match MUTANTS.iter().find(|m| m.name == n) {
                Some(m) => v.push(m),
                None => bail!("no mutant {n:?}; `cargo xtask mutants --list` names them"),
            }
        }
        v
    };
    let mut survived = Vec::new();
    for m in &chosen {
        let start = Instant::now();
        println!("mutants: {}: {}", m.name, m.what);
        let caught = check(m)?;
        println!(
            "mutants: {}: {} ({:.0}s)",
            m.name,
            if caught { "caught" } else { "SURVIVED" },
            start.elapsed().as_secs_f64()
        );
        if !caught {
            survived.push(m.name);
        }
    }
    // The files are restored with a new mtime: the next build of any
    // later step rebuilds from the real code.
    if !survived.is_empty() {
        bail!("mutants not caught by the tests: {}", survived.join(", "));
    }
    println!("mutants: {} of {} caught", chosen.len(), chosen.len());
    Ok(())
}

/// Print the mutants.
pub fn list() {
    for m in MUTANTS {
        println!("{:20} {} ({})", m.name, m.what, m.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutant_applies_to_the_code_as_it_is() {
        for m in MUTANTS {
            let text = std::fs::read_to_string(util::root().join(m.file)).unwrap();
            assert_eq!(
                text.matches(m.from).count(),
                1,
                "{}: {} changed; update the mutant",
                m.name,
                m.file
            );
            assert_ne!(m.from, m.to);
            assert!(!m.tests.is_empty());
        }
    }
}
