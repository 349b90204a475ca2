#![allow(dead_code)]

use hitless_heap::Tracking;

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
