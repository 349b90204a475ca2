//! The crate's two error types: one for page stores, one for the heap's API.

use std::io;

/// An error from a [`PageStore`](crate::PageStore).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A page number at or past `heap_pages`, or a buffer of the wrong size.
    #[error("page {page} out of range (heap has {heap_pages} pages) or wrong buffer size")]
    OutOfRange { page: u64, heap_pages: u64 },
    /// The version asked for is not (or no longer) kept.
    #[error("no such version: {0}")]
    NoSuchVersion(u64),
    /// Stored data failed its check (bad magic, checksum, length).
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// The store was configured with impossible parameters.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// An I/O error of a file-backed store.
    #[error("store I/O: {0}")]
    Io(#[from] io::Error),
    /// A failure injected by a test store (see `MemStore::fail_next`).
    #[error("injected failure: {0}")]
    Injected(&'static str),
    /// Any other backend's error (the card store: `CardStoreError`).
    #[error("store backend: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

/// An error from the [`Heap`](crate::Heap) API.
#[derive(Debug, thiserror::Error)]
pub enum HeapError {
    /// The page store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An offset or range outside the heap.
    #[error("range {offset}+{len} outside the heap of {heap_len} bytes")]
    OutOfRange {
        offset: u64,
        len: u64,
        heap_len: u64,
    },
    /// Bad configuration (page size, resident page count, heap size).
    #[error("invalid heap configuration: {0}")]
    Config(String),
    /// The requested tracking mode is not available on this kernel / process.
    #[error("tracking mode {mode} unavailable: {reason}")]
    Unsupported { mode: &'static str, reason: String },
    /// A system call failed.
    #[error("{call}: {source}")]
    Sys {
        call: &'static str,
        #[source]
        source: io::Error,
    },
    /// The heap's lock could not be taken in time (a fault handler stuck on the store).
    #[error("timed out waiting for the heap lock")]
    Timeout,
    /// A fault could not be resolved (the store failed while a thread was
    /// faulting); the heap refuses further use.
    #[error("heap poisoned: a page fault could not be resolved")]
    Poisoned,
}

impl HeapError {
    pub(crate) fn sys(call: &'static str) -> Self {
        HeapError::Sys {
            call,
            source: io::Error::last_os_error(),
        }
    }
}

/// Result of the heap's API.
pub type Result<T, E = HeapError> = std::result::Result<T, E>;
