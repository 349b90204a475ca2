//! `cargo xtask verilog`: generate the controller's Verilog, lint it with
//! Verilator and synthesize it with yosys for ECP5 and Xilinx 7-series.

use crate::util::{self, display};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Where the Verilog and the synthesis reports go, relative to the workspace root.
const OUT_DIR: &str = "target/verilog";

/// THE call into the RTL generator: hdl's `hitless-verilog` binary (behind
/// hdl's `rtl` feature). xtask runs it rather than linking the RTL so that
/// workspace builds do not unify `rtl` into every crate, and so that xtask
/// still runs (setup, regs) when the RTL does not compile.
fn generate_verilog(out: &Path) -> Result<()> {
    run_generator(&[], out)
}

/// `hitless-verilog ARGS OUT` (the board flows pass `--board DIVIDER`).
pub(crate) fn run_generator(args: &[&str], out: &Path) -> Result<()> {
    let mut cmd = util::cargo();
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "hitless-hdl",
        "--features",
        "rtl",
        "--bin",
        "hitless-verilog",
        "--",
    ])
    .args(args)
    .arg(out);
    util::run(&mut cmd)
}

/// Write `target/verilog/hitless.v` for the default geometry; returns its
/// path relative to the workspace root.
pub fn generate() -> Result<PathBuf> {
    let rel = Path::new(OUT_DIR).join("hitless.v");
    let dir = util::root().join(OUT_DIR);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    generate_verilog(&util::root().join(&rel))?;
    let text = fs::read_to_string(util::root().join(&rel))
        .with_context(|| format!("reading {}", rel.display()))?;
    println!(
        "verilog: wrote {} ({} lines)",
        rel.display(),
        text.lines().count()
    );
    Ok(rel)
}

/// `verilator --lint-only -Wall`. DECLFILENAME is waived: the generator puts
/// every module in one file, so module names cannot match file names. The
/// other waivers are in `hdl/lint.vlt`, each with its reason.
pub fn lint(path: &Path) -> Result<()> {
    let mut cmd = util::command("verilator");
    cmd.args([
        "--lint-only",
        "-Wall",
        "-Wno-DECLFILENAME",
        "--top-module",
        "top",
        "hdl/lint.vlt",
    ])
    .arg(path);
    util::run(&mut cmd)?;
    println!("verilog: lint clean ({})", display(&cmd));
    Ok(())
}

/// The yosys synthesis targets: (name, synth command).
const TARGETS: &[(&str, &str)] = &[
    ("ecp5", "synth_ecp5 -top top"),
    ("xc7", "synth_xilinx -family xc7 -top top"),
];

/// Run before every target's synth command: flatten, as the board flow does
/// (`bitstreams::fsm_prep`). rust-hdl makes every register a module, and
/// `synth_xilinx` keeps the hierarchy unless told, which doubles its LUT
/// count and makes it incomparable with REPORT.md.
const FLATTEN: &str = "hierarchy -top top; proc; flatten";

/// Synthesize for every target and print the resource counts. The full
/// `stat` report is kept in `target/verilog/synth_<target>.txt`.
pub fn synth(path: &Path) -> Result<()> {
    synth_for(path, &[])
}

/// `synth` for the named targets only (all when `only` is empty).
pub fn synth_for(path: &Path, only: &[&str]) -> Result<()> {
    for (name, synth) in TARGETS {
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        let report = Path::new(OUT_DIR).join(format!("synth_{name}.txt"));
        // `-q` silences the log, `stat` included, so `tee` it to a file.
        let script = format!(
            "read_verilog {}; {FLATTEN}; {synth}; tee -q -o {} stat",
            path.display(),
            report.display()
        );
        let _ = fs::remove_file(util::root().join(&report)); // never parse a stale one
        util::run(util::command("yosys").args(["-q", "-p", &script]))?;
        let text = fs::read_to_string(util::root().join(&report))
            .with_context(|| format!("reading {}", report.display()))?;
        let cells = parse_stat(&text);
        if cells.is_empty() {
            bail!(
                "no cells in {}: did synthesis produce an empty design?",
                report.display()
            );
        }
        println!("synth {name}: {}", summary(&cells));
    }
    Ok(())
}

/// Cell counts from a yosys `stat` report: the design-hierarchy totals if
/// present, else the last (after flattening: the only) module.
pub(crate) fn parse_stat(text: &str) -> BTreeMap<String, u64> {
    let sections = parse_stat_sections(text);
    let pick = sections
        .iter()
        .position(|(t, _)| t == "design hierarchy")
        .unwrap_or(sections.len().saturating_sub(1));
    sections
        .into_iter()
        .nth(pick)
        .map(|(_, c)| c)
        .unwrap_or_default()
}

/// Every section of a yosys `stat` report: (module, cell counts), the
/// submodules of a hierarchical design among the cells under their names.
pub(crate) fn parse_stat_sections(text: &str) -> Vec<(String, BTreeMap<String, u64>)> {
    let mut sections: Vec<(String, BTreeMap<String, u64>)> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(title) = t.strip_prefix("=== ").and_then(|t| t.strip_suffix(" ===")) {
            sections.push((title.to_string(), BTreeMap::new()));
            continue;
        }
        let Some((_, cells)) = sections.last_mut() else {
            continue;
        };
        // Cell lines are indented ("CELL COUNT" or "COUNT CELL"; in the
        // newer format a count of 10,000 or more eats into the indent, so
        // only "indented" is required). Header lines ("Number of cells:
        // N", "N wire bits") have more than two words; "N wires" and
        // "N cells" pass as cells of those names, which no resource class
        // matches.
        if !line.starts_with(' ') {
            continue;
        }
        let mut it = t.split_whitespace();
        // "CELL COUNT" (yosys 0.23) or "COUNT CELL" (newer yosys).
        if let (Some(a), Some(b), None) = (it.next(), it.next(), it.next()) {
            if let Ok(n) = b.parse() {
                cells.insert(a.to_string(), n);
            } else if let Ok(n) = a.parse() {
                cells.insert(b.to_string(), n);
            }
        }
    }
    sections
}

/// Resource classes by cell-name prefix (ECP5 and Xilinx 7-series primitives).
const CLASSES: &[(&str, &[&str])] = &[
    ("LUT", &["LUT"]),
    ("FF", &["TRELLIS_FF", "FD"]),
    ("carry", &["CCU2", "CARRY"]),
    (
        "LUTRAM",
        &["TRELLIS_DPR", "RAM32", "RAM64", "RAM128", "RAM256", "SRL"],
    ),
    ("BRAM", &["DP16KD", "PDPW16KD", "RAMB"]),
    ("DSP", &["MULT18X18", "ALU54", "DSP48"]),
];

/// "1234 LUT, 567 FF, ..." (LUT and FF always, the others when present).
fn summary(cells: &BTreeMap<String, u64>) -> String {
    let mut parts = Vec::new();
    for (class, prefixes) in CLASSES {
        let n: u64 = cells
            .iter()
            .filter(|(c, _)| prefixes.iter().any(|p| c.starts_with(p)))
            .map(|(_, n)| n)
            .sum();
        if n > 0 || matches!(*class, "LUT" | "FF") {
            parts.push(format!("{n} {class}"));
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const XC7: &str = "
3. Printing statistics.

=== top ===

   Number of wires:                 26
   Number of cells:                 52
     BUFG                            1
     CARRY4                          2
     FDRE                            8
     FDSE                            1
     LUT2                           16
     LUT6                            3
     RAMB36E1                        1
";

    #[test]
    fn parses_a_flat_report() {
        let cells = parse_stat(XC7);
        assert_eq!(cells["FDRE"], 8);
        assert!(!cells.contains_key("Number"));
        assert_eq!(summary(&cells), "19 LUT, 9 FF, 2 carry, 1 BRAM");
    }

    #[test]
    fn parses_the_newer_count_first_format() {
        let text = "=== top ===\n\n        +----------Local Count\n    10931 wires\n      993   CCU2C\n       26   DP16KD\n     7684   LUT4\n     4434   TRELLIS_FF\n";
        assert_eq!(
            summary(&parse_stat(text)),
            "7684 LUT, 4434 FF, 993 carry, 26 BRAM"
        );
    }

    #[test]
    fn counts_of_ten_thousand_or_more_are_read() {
        let text = "=== board_top ===\n\n        +----------Local Count, excluding submodules.\n        | \n    12439 wires\n    33117 wire bits\n    21769 cells\n     2037   SB_CARRY\n     2492   SB_DFF\n    10847   SB_LUT4\n      117   SB_RAM40_4K\n";
        let cells = parse_stat(text);
        assert_eq!(cells.get("SB_LUT4"), Some(&10847));
        assert_eq!(cells.get("SB_DFF"), Some(&2492));
    }

    #[test]
    fn prefers_the_hierarchy_totals() {
        let text = "=== sub ===\n     LUT4   5\n=== top ===\n     LUT4   1\n\
                    === design hierarchy ===\n   top 1\n     LUT4   6\n     TRELLIS_FF   2\n";
        assert_eq!(summary(&parse_stat(text)), "6 LUT, 2 FF");
    }
}
