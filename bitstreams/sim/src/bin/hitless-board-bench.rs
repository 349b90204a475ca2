//! Benchmarks of the lite board (`LiteBoardTop`, the iCEBreaker's reduced
//! controller) on the cycle-stepped model: every figure is counted in
//! simulated cycles in one run, deterministic (no wall time).
//!
//! - `lite_cycles_per_word`: cycles per 64-bit word of the datapath, the
//!   difference of two WRITE+COMMITs (1 and 4 KiB) each timed from its
//!   doorbell to the active-region LED (the commit durable);
//! - `lite_write_commit_4KiB_*`: the whole 4 KiB checkpoint, doorbell to
//!   durable: cycles, payload bytes per cycle, and that against the
//!   datapath word (8 bytes per cycle).

use hitless_board_sim::lite_checkpoint_board;
use hitless_hdl::contract;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(mut b) = lite_checkpoint_board(4096) else {
        eprintln!("hitless-board-bench: the lite board did not come up");
        return ExitCode::FAILURE;
    };
    let (Some(small), Some(big)) = (b.checkpoint_cycles(0, 1024), b.checkpoint_cycles(1, 4096))
    else {
        eprintln!("hitless-board-bench: a checkpoint did not commit");
        return ExitCode::FAILURE;
    };
    let per_word = (big - small) as f64 / ((4096 - 1024) / 8) as f64;
    println!("lite_cycles_per_word = {per_word:.2}");
    println!("lite_write_commit_4KiB_cycles = {big}");
    let bpc = 4096.0 / big as f64;
    println!("lite_write_commit_4KiB_bytes_per_cycle = {bpc:.3}");
    println!(
        "lite_write_commit_4KiB_vs_datapath_word = {:.3}",
        bpc / f64::from(contract::DATAPATH_BYTES)
    );
    ExitCode::SUCCESS
}
