//! hitless-heap: a host-side persistent heap backed by a versioned page store.
//!
//! A [`Heap`] is a range of virtual memory larger than the pages it keeps
//! resident: a page is copied in from its [`PageStore`] when first
//! referenced, written pages are tracked dirty, the least recently used page
//! is evicted when the cache is full (a dirty one staged into the store
//! first), and [`Heap::checkpoint`] commits every dirty page plus the
//! application's own state as one atomic version. The store keeps K
//! versions; [`Heap::restart_from`] goes back to any of them.
//!
//! See `docs/heap.md` for the page states, the tracking modes and the
//! store contract.

#![cfg(target_os = "linux")]

#[cfg(feature = "card")]
mod cardstore;
mod dirstore;
mod error;
mod heap;
mod sig;
mod store;
mod sys;
mod table;

#[cfg(feature = "card")]
pub use cardstore::{CardStore, CardStoreError};
pub use dirstore::DirStore;
pub use error::{HeapError, Result, StoreError};
pub use heap::{Heap, HeapConfig, Stats, Tracking};
pub use store::{FailOp, MemStore, PageStore, VersionInfo};
pub use table::PageState;

/// Whether userfaultfd write-protect tracking works in this process
/// (the kernel has it and we may open a userfaultfd).
pub fn uffd_wp_available() -> bool {
    uffd_probe(false)
}

/// Whether asynchronous userfaultfd write-protect (UFFD_FEATURE_WP_ASYNC)
/// and PAGEMAP_SCAN work in this process.
pub fn uffd_wp_async_available() -> bool {
    uffd_probe(true) && sys::Pagemap::open().is_ok()
}

fn uffd_probe(wp_async: bool) -> bool {
    match sys::Uffd::open(wp_async) {
        Ok(u) => {
            // Registering is what fails on kernels without anonymous WP.
            match sys::Region::new(4096, libc::PROT_READ | libc::PROT_WRITE) {
                Ok(r) => u.register(r.base, r.len).is_ok(),
                Err(_) => false,
            }
        }
        Err(_) => false,
    }
}
