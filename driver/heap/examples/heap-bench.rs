//! heap-bench: the persistent heap's bench lines.
//!
//! `cargo run -p hitless-heap --release --example heap-bench [-- MODE]`
//! with MODE `uffd-async`, `uffd`, `mprotect` or `explicit`; without one,
//! every mode available, the first (UffdWpAsync where the kernel has it,
//! else UffdWp) giving the headline lines, each mode its `_<mode>` lines.
//!
//! Lines (one value each):
//! - `heap_dirty_tracking_overhead <ratio>`: a write-heavy loop (every 8-byte
//!   word of every page of a resident 16 MiB heap, `PASSES` passes between
//!   two checkpoints, `INTERVALS` checkpoint intervals) with tracking, divided
//!   by the same loop over a plain anonymous mapping, same run. Only the
//!   write passes are timed (the checkpoints' own staging is not tracking).
//! - `heap_dirty_tracking_overhead_rearm_each_pass <ratio>`: the same with a
//!   checkpoint after every pass (every page faults once per pass: the worst
//!   case).
//! - `heap_fault_in_us <median>`: first reference (a load) of a page that is
//!   not resident, copied in from a MemStore holding data.
//! - `heap_wp_fault_us <median>`: first store to a clean resident page.

use std::time::{Duration, Instant};

use hitless_heap::{Heap, HeapConfig, MemStore, PageStore, Tracking};

const PS: usize = 4096;
const PAGES: usize = 4096; // 16 MiB
const PASSES: usize = 16;
const INTERVALS: usize = 4;
const REARM_PASSES: usize = 8;

type R<T> = Result<T, Box<dyn std::error::Error>>;

/// One pass of 8-byte stores over every word of `pages` pages at `base`.
fn write_pass(base: *mut u8, pages: usize, v: u64) {
    for p in 0..pages {
        let page = base.wrapping_add(p * PS) as *mut u64;
        for w in 0..PS / 8 {
            // SAFETY: inside the mapping of `pages` pages at `base` (the
            // heap or the plain mapping), which outlives the loop.
            unsafe { page.add(w).write_volatile(v ^ w as u64) };
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

struct Plain {
    base: *mut u8,
    len: usize,
}

impl Plain {
    fn new(len: usize) -> R<Plain> {
        // SAFETY: a fresh anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(Plain {
            base: p as *mut u8,
            len,
        })
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        // SAFETY: our mapping.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// Time the write loop: `intervals` x (timed: `pre()` and `passes` passes;
/// untimed: `between()`).
fn timed(
    base: *mut u8,
    passes: usize,
    intervals: usize,
    mut pre: impl FnMut() -> R<()>,
    mut between: impl FnMut() -> R<()>,
) -> R<Duration> {
    let mut total = Duration::ZERO;
    for i in 0..intervals {
        let t = Instant::now();
        pre()?;
        for pass in 0..passes {
            write_pass(base, PAGES, (i * passes + pass) as u64);
        }
        total += t.elapsed();
        between()?;
    }
    Ok(total)
}

fn overhead(mode: Tracking, passes: usize, intervals: usize) -> R<f64> {
    let store = MemStore::new(PS, PAGES as u64, 2)?;
    let cfg = HeapConfig {
        resident_pages: PAGES,
        tracking: mode,
        ..HeapConfig::default()
    };
    let heap = Heap::open(store, cfg)?;
    let plain = Plain::new(PAGES * PS)?;
    // Make everything resident (and, for the heap, clean) first.
    write_pass(plain.base, PAGES, 0);
    if mode == Tracking::Explicit {
        heap.mark_dirty(0..heap.len() as u64)?;
    } else {
        write_pass(heap.as_ptr(), PAGES, 0);
    }
    heap.checkpoint(b"")?;
    // Alternate the two so that machine noise hits both alike.
    let mut tracked = Duration::ZERO;
    let mut untracked = Duration::ZERO;
    for _ in 0..2 {
        untracked += timed(plain.base, passes, intervals, || Ok(()), || Ok(()))?;
        tracked += timed(
            heap.as_ptr(),
            passes,
            intervals,
            || {
                if mode == Tracking::Explicit {
                    // Explicit: the application marks what it will write
                    // (timed: that is its tracking cost).
                    heap.mark_dirty(0..heap.len() as u64)?;
                }
                Ok(())
            },
            || {
                heap.checkpoint(b"")?;
                Ok(())
            },
        )?;
    }
    Ok(tracked.as_secs_f64() / untracked.as_secs_f64())
}

fn fault_in_us(mode: Tracking) -> R<(f64, f64)> {
    const N: usize = 1024;
    let mut store = MemStore::new(PS, N as u64, 2)?;
    let data = vec![0x5au8; PS];
    let pages: Vec<(u64, &[u8])> = (0..N as u64).map(|p| (p, &data[..])).collect();
    store.stage_pages(&pages)?;
    store.commit(b"")?;
    let heap = Heap::open(
        store,
        HeapConfig {
            resident_pages: N,
            tracking: mode,
            ..HeapConfig::default()
        },
    )?;
    let base = heap.as_ptr();
    let mut faults = Vec::with_capacity(N);
    let mut wps = Vec::with_capacity(N);
    for p in 0..N {
        let t = Instant::now();
        if mode == Tracking::Explicit {
            heap.fault_in((p * PS) as u64..(p * PS + 1) as u64)?;
        }
        // SAFETY: inside the heap; resident after the fault (or fault_in).
        let v = unsafe { base.add(p * PS).read_volatile() };
        faults.push(t.elapsed().as_secs_f64() * 1e6);
        if v != 0x5a {
            return Err(format!("page {p} read {v:#x}").into());
        }
        let t = Instant::now();
        if mode == Tracking::Explicit {
            heap.mark_dirty((p * PS) as u64..(p * PS + 1) as u64)?;
        }
        // SAFETY: as above; the first store to a clean page.
        unsafe { base.add(p * PS).write_volatile(1) };
        wps.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok((median(faults), median(wps)))
}

fn slug(mode: Tracking) -> &'static str {
    match mode {
        Tracking::UffdWp => "uffd_wp",
        Tracking::UffdWpAsync => "uffd_wp_async",
        Tracking::Mprotect => "mprotect",
        Tracking::Explicit => "explicit",
    }
}

fn main() -> R<()> {
    let arg = std::env::args().nth(1);
    let modes = match arg.as_deref() {
        Some("uffd") => vec![Tracking::UffdWp],
        Some("uffd-async") => vec![Tracking::UffdWpAsync],
        Some("mprotect") => vec![Tracking::Mprotect],
        Some("explicit") => vec![Tracking::Explicit],
        Some(other) => return Err(format!("unknown mode {other}").into()),
        None => {
            let mut m = Vec::new();
            if hitless_heap::uffd_wp_async_available() {
                m.push(Tracking::UffdWpAsync);
            }
            if hitless_heap::uffd_wp_available() {
                m.push(Tracking::UffdWp);
            }
            m.extend([Tracking::Mprotect, Tracking::Explicit]);
            m
        }
    };
    println!(
        "# {} pages of {} bytes resident; {} passes x {} checkpoint intervals; headline = first mode: {}",
        PAGES,
        PS,
        PASSES,
        INTERVALS,
        modes.first().map(|m| m.name()).unwrap_or("-")
    );
    for (i, &mode) in modes.iter().enumerate() {
        let ratio = overhead(mode, PASSES, INTERVALS)?;
        let worst = overhead(mode, 1, REARM_PASSES)?;
        let (fault, wp) = fault_in_us(mode)?;
        if i == 0 {
            println!("heap_dirty_tracking_overhead = {ratio:.3}");
            println!("heap_fault_in_us = {fault:.2}");
        }
        let m = slug(mode);
        println!("heap_dirty_tracking_overhead_{m} = {ratio:.3}");
        println!("heap_dirty_tracking_overhead_rearm_each_pass_{m} = {worst:.3}");
        println!("heap_fault_in_us_{m} = {fault:.2}");
        println!("heap_wp_fault_us_{m} = {wp:.2}");
    }
    Ok(())
}
