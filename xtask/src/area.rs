//! Per-block area: a board design synthesized with each block kept as a
//! module (`cargo xtask bitstreams --blocks`), each module's cells
//! attributed to the block it belongs to.
//!
//! rust-hdl emits one Verilog module per block instance and one per
//! register or memory (`top$ctrl$mover`, `top$ctrl$mover$head0`), so a
//! module of registers or memory alone is folded into its parent, and the rest are
//! grouped by their path down to a depth (3: `ctrl.mover.crc_unit`).
//! Constants do not cross block boundaries, so the totals exceed a
//! flattened build's (REPORT.md) by a few percent (iCEBreaker, 2026-12-01:
//! 11,395 LUT4 against 10,762). The table says where the area goes, and
//! what a configuration for a smaller device has to cut.

use std::collections::BTreeMap;

/// (LUTs, flip-flops, block RAMs) of a set of cells.
pub(crate) type Resources = (u64, u64, u64);

/// One block's area.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Block {
    /// Path below the top module, dot-separated (`ctrl.mover`); `(top)` for
    /// the top module's own cells.
    pub name: String,
    pub luts: u64,
    pub ffs: u64,
    pub bram: u64,
}

/// The modules of rust-hdl Verilog to keep as blocks: every module but the
/// top and the registers (`module NAME(d,q,clock);`). Synthesis flattens
/// the registers into their blocks first, so that a register's enable and
/// reset fold into its flip-flop as they do in a flattened build, instead
/// of costing a LUT per bit at the module boundary.
pub(crate) fn block_modules(verilog: &str) -> Vec<&str> {
    verilog
        .lines()
        .filter_map(|l| l.strip_prefix("module "))
        .filter_map(|l| l.split_once('('))
        .filter(|(name, ports)| {
            *name != "top" && !ports.trim_end().trim_end_matches(';').eq("d,q,clock)")
        })
        .map(|(name, _)| name)
        .collect()
}

/// Blocks of a hierarchical yosys `stat` (one section per module, its
/// submodules listed as cells named after them; `top` is the top module),
/// largest first (LUTs, then flip-flops). `resources` classifies cells.
pub(crate) fn blocks(
    sections: &[(String, BTreeMap<String, u64>)],
    depth: usize,
    resources: impl Fn(&BTreeMap<String, u64>) -> Resources,
) -> Vec<Block> {
    let modules: BTreeMap<&str, &BTreeMap<String, u64>> = sections
        .iter()
        .filter(|(name, _)| name != "design hierarchy")
        .map(|(name, cells)| (name.as_str(), cells))
        .collect();
    let mut sums: BTreeMap<String, Block> = BTreeMap::new();
    for (name, cells) in &modules {
        let own: BTreeMap<String, u64> = cells
            .iter()
            .filter(|(c, _)| !modules.contains_key(c.as_str()))
            .map(|(c, n)| (c.clone(), *n))
            .collect();
        let has_sub = own.len() < cells.len();
        let (luts, ffs, bram) = resources(&own);
        // A register or a memory belongs to the block that declares it; a
        // leaf of logic alone (the port router) is a block of its own.
        let owner = if !has_sub && (luts == 0 || bram > 0) {
            name.rsplit_once('$').map_or(*name, |(parent, _)| parent)
        } else {
            name
        };
        let path: Vec<&str> = owner.split('$').skip(1).take(depth).collect();
        let key = if path.is_empty() {
            "(top)".to_string()
        } else {
            path.join(".")
        };
        let b = sums.entry(key.clone()).or_insert_with(|| Block {
            name: key,
            ..Block::default()
        });
        b.luts += luts;
        b.ffs += ffs;
        b.bram += bram;
    }
    let mut v: Vec<Block> = sums
        .into_values()
        .filter(|b| b.luts + b.ffs + b.bram > 0)
        .collect();
    v.sort_by(|a, b| (b.luts, b.ffs, &a.name).cmp(&(a.luts, a.ffs, &b.name)));
    v
}

/// The blocks as a Markdown table with each block's share of the total.
pub(crate) fn table(title: &str, blocks: &[Block]) -> String {
    let zero = Block {
        name: "total".into(),
        ..Block::default()
    };
    let total = blocks.iter().fold(zero, |t, b| Block {
        name: t.name,
        luts: t.luts + b.luts,
        ffs: t.ffs + b.ffs,
        bram: t.bram + b.bram,
    });
    let pct = |n: u64, of: u64| {
        if of == 0 {
            0.0
        } else {
            100.0 * n as f64 / of as f64
        }
    };
    let mut s = format!(
        "# Per-block area: {title}\n\n\
         Each block synthesized as a module of its own, its registers\n\
         flattened into it (`cargo xtask bitstreams --blocks`). Nothing is\n\
         optimized across blocks, so the totals exceed the flattened build in\n\
         REPORT.md by a few percent.\n\n\
         | block | LUT | % | FF | % | BRAM |\n|---|---:|---:|---:|---:|---:|\n"
    );
    for b in blocks.iter().chain(std::iter::once(&total)) {
        s += &format!(
            "| {} | {} | {:.1} | {} | {:.1} | {} |\n",
            b.name,
            b.luts,
            pct(b.luts, total.luts),
            b.ffs,
            pct(b.ffs, total.ffs),
            b.bram
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(cells: &BTreeMap<String, u64>) -> Resources {
        let get = |k: &str| cells.get(k).copied().unwrap_or(0);
        (get("LUT4"), get("DFF"), get("RAM"))
    }

    fn section(name: &str, cells: &[(&str, u64)]) -> (String, BTreeMap<String, u64>) {
        (
            name.to_string(),
            cells.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
        )
    }

    #[test]
    fn registers_fold_into_their_block_and_paths_stop_at_depth() {
        let stat = vec![
            section("top", &[("LUT4", 3), ("top$ctrl", 1), ("top$beat", 1)]),
            section("top$beat", &[("DFF", 27)]),
            section(
                "top$ctrl",
                &[
                    ("LUT4", 100),
                    ("top$ctrl$phase", 1),
                    ("top$ctrl$mover", 1),
                    ("top$ctrl$pt", 1),
                    ("top$ctrl$router", 1),
                ],
            ),
            section("top$ctrl$phase", &[("DFF", 6)]),
            section(
                "top$ctrl$mover",
                &[
                    ("LUT4", 40),
                    ("top$ctrl$mover$crc", 1),
                    ("top$ctrl$mover$q", 1),
                ],
            ),
            section("top$ctrl$mover$q", &[("DFF", 64)]),
            // Logic below the depth counts toward its ancestor at the depth.
            section(
                "top$ctrl$mover$crc",
                &[("LUT4", 30), ("top$ctrl$mover$crc$state", 1)],
            ),
            section("top$ctrl$mover$crc$state", &[("DFF", 32)]),
            // A memory belongs to its block; combinational logic does not.
            section("top$ctrl$pt", &[("LUT4", 1), ("RAM", 1)]),
            section("top$ctrl$router", &[("LUT4", 20)]),
            section("design hierarchy", &[("LUT4", 194), ("DFF", 129)]),
        ];
        let got = blocks(&stat, 2, res);
        let want = vec![
            Block {
                name: "ctrl".into(),
                luts: 101,
                ffs: 6,
                bram: 1,
            },
            Block {
                name: "ctrl.mover".into(),
                luts: 70,
                ffs: 96,
                bram: 0,
            },
            Block {
                name: "ctrl.router".into(),
                luts: 20,
                ffs: 0,
                bram: 0,
            },
            Block {
                name: "(top)".into(),
                luts: 3,
                ffs: 27,
                bram: 0,
            },
        ];
        assert_eq!(got, want);
        let t = table("board", &got);
        assert!(t.contains("| ctrl | 101 | 52.1 | 6 | 4.7 | 1 |"), "{t}");
        assert!(
            t.contains("| total | 194 | 100.0 | 129 | 100.0 | 1 |"),
            "{t}"
        );
    }

    #[test]
    fn blocks_are_the_modules_that_are_not_registers() {
        let v = "module top(clock,leds);\nendmodule\n\
                 module top$beat(d,q,clock);\n\
                 module top$ctrl(clock,reset,csr$awvalid);\n\
                 module top$ctrl$phase(d,q,clock);\n\
                 module top$ctrl$mover$crc_unit(clock,data);\n\
                 // module top$x(d,q,clock);\n";
        assert_eq!(block_modules(v), ["top$ctrl", "top$ctrl$mover$crc_unit"]);
    }

    #[test]
    fn an_empty_stat_gives_no_blocks() {
        assert!(blocks(&[], 2, res).is_empty());
        assert!(table("x", &[]).contains("| total | 0 | 0.0 | 0 | 0.0 | 0 |"));
    }
}
