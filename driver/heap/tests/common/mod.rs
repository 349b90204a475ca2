#![allow(dead_code)]

use hitless_heap::{Heap, HeapConfig, Tracking};
use std::path::PathBuf;
use std::time::Duration;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub const PS: usize = 4096;

/// The tracking modes this machine offers: UffdWp where the kernel has
/// userfaultfd write-protect, Mprotect and Explicit always.
pub fn modes() -> Vec<Tracking> {
    let mut m = Vec::new();
    if hitless_heap::uffd_wp_available() {
        m.push(Tracking::UffdWp);
    } else {
        eprintln!("userfaultfd write-protect unavailable: UffdWp not tested here");
    }
    if hitless_heap::uffd_wp_async_available() {
        m.push(Tracking::UffdWpAsync);
    } else {
        eprintln!("async userfaultfd write-protect unavailable: UffdWpAsync not tested here");
    }
    m.push(Tracking::Mprotect);
    m.push(Tracking::Explicit);
    m
}

/// Modes in which direct access through `as_ptr` is tracked.
pub fn tracked(mode: Tracking) -> bool {
    mode != Tracking::Explicit
}

pub fn pattern(page: u64, i: usize, tag: u8) -> u8 {
    (page as u8).wrapping_mul(31) ^ (i as u8).wrapping_mul(7) ^ tag
}

pub fn cfg(mode: Tracking, resident: usize) -> HeapConfig {
    HeapConfig {
        resident_pages: resident,
        tracking: mode,
        lock_timeout: Duration::from_secs(5),
        ..HeapConfig::default()
    }
}

pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hitless-heap-t-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub fn fill_and_verify(heap: &Heap, pages: u64, tag: u8, direct: bool) -> TestResult {
    let mut page = vec![0u8; PS];
    for p in 0..pages {
        for (i, b) in page.iter_mut().enumerate() {
            *b = pattern(p, i, tag);
        }
        if direct {
            // SAFETY: page p lies inside the heap; access is tracked.
            unsafe {
                std::ptr::copy_nonoverlapping(page.as_ptr(), heap.as_ptr().add(p as usize * PS), PS)
            };
        } else {
            heap.write(p * PS as u64, &page)?;
        }
    }
    Ok(())
}

pub fn check_pattern(heap: &Heap, pages: u64, tag: u8) -> TestResult {
    let mut page = vec![0u8; PS];
    for p in 0..pages {
        heap.read(p * PS as u64, &mut page)?;
        for (i, b) in page.iter().enumerate() {
            if *b != pattern(p, i, tag) {
                return Err(format!("page {p} byte {i}: {b} != {}", pattern(p, i, tag)).into());
            }
        }
    }
    Ok(())
}
