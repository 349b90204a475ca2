//! hitless-bench's heap lines (issue 20's bench targets): a heap on the
//! simulated card (`InProcessCard`, the firmware's heap store through the
//! driver's client), written whole once, then checkpointed with 1 % of its
//! pages dirty (spread evenly: every 100th page).
//!
//! - `heap_checkpoint_1pct_dirty_bytes_ratio`: bytes that crossed the DMA
//!   for the 1 % checkpoint (the dirty pages and the application state)
//!   ÷ heap size;
//! - `heap_checkpoint_1pct_dirty_cycles_ratio`: card cycles of the 1 %
//!   checkpoint (staging and commit: pages, leaves, root, index commit,
//!   mirror) ÷ card cycles of the checkpoint that wrote the whole heap.
//!
//! The heap is 64 MiB (`HITLESS_BENCH_HEAP_MIB` changes it), not 256 MiB:
//! a 256 MiB tier's data area cannot hold a 256 MiB heap and the copy-on-
//! write space of a second version, and the simulator needs minutes per
//! 256 MiB. The ratios depend on the dirty fraction, not on the size,
//! except for the fixed per-commit cost (index and mirror), which a larger
//! heap makes smaller still.

use hitless_driver::firmware::{Client, OpenFlags};
use hitless_sim::inproc::InProcessCard;
use hitless_sim::service::Control;
use std::time::Duration;

const PAGE: usize = 4096;

fn cycle(card: &InProcessCard) -> Result<u64, String> {
    card.control(Control::Status)
        .map(|s| s.cycle)
        .map_err(|e| e.to_string())
}

fn measure() -> Result<(f64, f64, u64), String> {
    let mib: u64 = std::env::var("HITLESS_BENCH_HEAP_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let pages = (mib << 20) as usize / PAGE;
    let dir = std::env::temp_dir().join(format!("hitless-bench-heap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let card = InProcessCard::start(&dir)?;
    let io = card.connect()?;
    let mut fw = Client::open(io, Duration::from_secs(60)).map_err(|e| e.to_string())?;
    let (s, _) = fw
        .open_app(1, OpenFlags::all(), None)
        .map_err(|e| e.to_string())?;
    fw.heap_open(&s, 0, pages as u32, 2, true)
        .map_err(|e| e.to_string())?;
    let state = vec![0x5A; 256];
    let page = |p: usize, v: u8| vec![(p as u8) ^ v; PAGE];
    // The whole heap, once.
    let c0 = cycle(&card)?;
    for chunk in (0..pages).collect::<Vec<_>>().chunks(256) {
        let data: Vec<(u32, Vec<u8>)> = chunk.iter().map(|p| (*p as u32, page(*p, 1))).collect();
        let refs: Vec<(u32, &[u8])> = data.iter().map(|(p, d)| (*p, &d[..])).collect();
        fw.heap_stage(&s, 0, &refs).map_err(|e| e.to_string())?;
    }
    fw.heap_commit(&s, 0, &state).map_err(|e| e.to_string())?;
    let full = cycle(&card)? - c0;
    // 1 % dirty.
    let dirty: Vec<usize> = (0..pages).step_by(100).collect();
    let c0 = cycle(&card)?;
    let data: Vec<(u32, Vec<u8>)> = dirty.iter().map(|p| (*p as u32, page(*p, 2))).collect();
    let refs: Vec<(u32, &[u8])> = data.iter().map(|(p, d)| (*p, &d[..])).collect();
    let sent = fw.heap_stage(&s, 0, &refs).map_err(|e| e.to_string())?;
    fw.heap_commit(&s, 0, &state).map_err(|e| e.to_string())?;
    let small = cycle(&card)? - c0;
    let heap_bytes = (pages * PAGE) as f64;
    Ok((
        (sent + state.len() as u64) as f64 / heap_bytes,
        small as f64 / full as f64,
        mib,
    ))
}

pub(super) fn lines() {
    match measure() {
        Ok((bytes, cycles, mib)) => {
            println!("# heap: {mib} MiB heap on the simulated card, 1 % of its pages dirty");
            println!("heap_checkpoint_1pct_dirty_bytes_ratio = {bytes:.4}");
            println!("heap_checkpoint_1pct_dirty_cycles_ratio = {cycles:.4}");
        }
        Err(e) => {
            eprintln!("heap bench: {e}");
            println!("heap_checkpoint_1pct_dirty_bytes_ratio = NaN");
            println!("heap_checkpoint_1pct_dirty_cycles_ratio = NaN");
        }
    }
}
