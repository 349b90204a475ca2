//! The page store contract ([`PageStore`]) and the in-memory store ([`MemStore`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::StoreError;

/// One kept checkpoint of a heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionInfo {
    /// The version number (increasing; never reused by one store).
    pub version: u64,
    /// Pages written in it (staged since the previous commit).
    pub pages: u64,
    /// Length of the application's non-heap state committed with it.
    pub state_len: u64,
}

/// Where a heap's pages persist: the card (`CardStore`, feature `card`), a directory, or memory (tests).
///
/// See `docs/heap.md`, "The PageStore contract", for what an implementation
/// must guarantee; in short: staged pages are visible to `read_page` at once
/// but belong to no version until `commit`, and `commit` is all or nothing.
pub trait PageStore: Send {
    /// Page size in bytes (a power of two, at least 4096).
    fn page_size(&self) -> usize;
    /// How many pages the heap may address.
    fn heap_pages(&self) -> u64;
    /// Page `page` as the open transaction sees it (its staged copy if any, else the
    /// base version's); Ok(false) and `buf` zeroed if the page was never written.
    fn read_page(&mut self, page: u64, buf: &mut [u8]) -> Result<bool, StoreError>;
    /// Stage pages into the open transaction (pre-flush / eviction of a dirty page):
    /// durable, readable by read_page, but part of no version until commit.
    fn stage_pages(&mut self, pages: &[(u64, &[u8])]) -> Result<(), StoreError>;
    /// Commit everything staged plus the application's non-heap state as one new
    /// version, atomically (all or nothing after a crash or power cut). Returns it.
    fn commit(&mut self, app_state: &[u8]) -> Result<VersionInfo, StoreError>;
    /// Drop everything staged.
    fn abort(&mut self) -> Result<(), StoreError>;
    /// The kept versions, oldest first (at most K; older ones are dropped at commit).
    fn versions(&mut self) -> Result<Vec<VersionInfo>, StoreError>;
    /// Make `version` the base of the open transaction (restart from it), dropping
    /// anything staged; returns its application state.
    fn checkout(&mut self, version: u64) -> Result<Vec<u8>, StoreError>;
}

impl<S: PageStore + ?Sized> PageStore for Box<S> {
    fn page_size(&self) -> usize {
        (**self).page_size()
    }
    fn heap_pages(&self) -> u64 {
        (**self).heap_pages()
    }
    fn read_page(&mut self, page: u64, buf: &mut [u8]) -> Result<bool, StoreError> {
        (**self).read_page(page, buf)
    }
    fn stage_pages(&mut self, pages: &[(u64, &[u8])]) -> Result<(), StoreError> {
        (**self).stage_pages(pages)
    }
    fn commit(&mut self, app_state: &[u8]) -> Result<VersionInfo, StoreError> {
        (**self).commit(app_state)
    }
    fn abort(&mut self) -> Result<(), StoreError> {
        (**self).abort()
    }
    fn versions(&mut self) -> Result<Vec<VersionInfo>, StoreError> {
        (**self).versions()
    }
    fn checkout(&mut self, version: u64) -> Result<Vec<u8>, StoreError> {
        (**self).checkout(version)
    }
}

/// Check a store's geometry: page size a power of two ≥ 4096, at least one page,
/// and `heap_pages * page_size` addressable.
pub(crate) fn check_geometry(page_size: usize, heap_pages: u64) -> Result<(), StoreError> {
    if page_size < 4096 || !page_size.is_power_of_two() {
        return Err(StoreError::Config(format!(
            "page size {page_size} is not a power of two >= 4096"
        )));
    }
    if heap_pages == 0 {
        return Err(StoreError::Config("a heap needs at least one page".into()));
    }
    let bytes = heap_pages.checked_mul(page_size as u64);
    match bytes {
        Some(b) if b <= (1u64 << 46) => Ok(()),
        _ => Err(StoreError::Config(format!(
            "{heap_pages} pages of {page_size} bytes is more than 64 TiB"
        ))),
    }
}

pub(crate) fn check_page(
    page: u64,
    heap_pages: u64,
    len: usize,
    page_size: usize,
) -> Result<(), StoreError> {
    if page >= heap_pages || len != page_size {
        Err(StoreError::OutOfRange { page, heap_pages })
    } else {
        Ok(())
    }
}

#[derive(Debug)]
struct MemVersion {
    info: VersionInfo,
    pages: BTreeMap<u64, Arc<[u8]>>,
    state: Vec<u8>,
}

#[derive(Debug)]
struct MemInner {
    page_size: usize,
    heap_pages: u64,
    keep: usize,
    versions: VecDeque<Arc<MemVersion>>,
    base: Option<Arc<MemVersion>>,
    staged: BTreeMap<u64, Box<[u8]>>,
    next_version: u64,
    fail_stage: u32,
    fail_commit: u32,
    fail_read: u32,
}

/// A page store in memory, keeping `K` versions.
///
/// Clones share the same store (so a test can keep a handle after giving one
/// to a [`Heap`](crate::Heap)). [`MemStore::crash`] simulates a crash or power
/// cut: everything staged is lost, committed versions are kept, and the open
/// transaction restarts from the newest version.
#[derive(Debug, Clone)]
pub struct MemStore {
    inner: Arc<Mutex<MemInner>>,
    page_size: usize,
    heap_pages: u64,
}

/// Which store operation [`MemStore::fail_next`] makes fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOp {
    /// `read_page`
    Read,
    /// `stage_pages`
    Stage,
    /// `commit`
    Commit,
}

impl MemStore {
    /// A new empty store of `heap_pages` pages of `page_size` bytes keeping
    /// the newest `keep` versions (`keep >= 1`).
    pub fn new(page_size: usize, heap_pages: u64, keep: usize) -> Result<Self, StoreError> {
        check_geometry(page_size, heap_pages)?;
        if keep == 0 {
            return Err(StoreError::Config("keep at least one version".into()));
        }
        Ok(MemStore {
            inner: Arc::new(Mutex::new(MemInner {
                page_size,
                heap_pages,
                keep,
                versions: VecDeque::new(),
                base: None,
                staged: BTreeMap::new(),
                next_version: 1,
                fail_stage: 0,
                fail_commit: 0,
                fail_read: 0,
            })),
            page_size,
            heap_pages,
        })
    }

    fn lock(&self) -> MutexGuard<'_, MemInner> {
        // A panic elsewhere while holding this lock leaves plain data behind;
        // every operation below keeps it consistent at each step.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Simulate a crash: staged pages are lost, the committed versions are
    /// kept, and the open transaction's base becomes the newest version.
    pub fn crash(&self) {
        let mut s = self.lock();
        s.staged.clear();
        s.base = s.versions.back().cloned();
        s.fail_stage = 0;
        s.fail_commit = 0;
        s.fail_read = 0;
    }

    /// Make the next `n` calls of `op` fail with [`StoreError::Injected`].
    pub fn fail_next(&self, op: FailOp, n: u32) {
        let mut s = self.lock();
        match op {
            FailOp::Read => s.fail_read = n,
            FailOp::Stage => s.fail_stage = n,
            FailOp::Commit => s.fail_commit = n,
        }
    }

    /// Pages currently staged (not yet committed).
    pub fn staged_pages(&self) -> Vec<u64> {
        self.lock().staged.keys().copied().collect()
    }

    /// The contents of `page` in committed version `version` (None if the
    /// version is not kept); a never-written page reads as zeros.
    pub fn committed_page(&self, version: u64, page: u64) -> Option<Vec<u8>> {
        let s = self.lock();
        let v = s.versions.iter().find(|v| v.info.version == version)?;
        Some(match v.pages.get(&page) {
            Some(p) => p.to_vec(),
            None => vec![0; s.page_size],
        })
    }
}

impl PageStore for MemStore {
    fn page_size(&self) -> usize {
        self.page_size
    }

    fn heap_pages(&self) -> u64 {
        self.heap_pages
    }

    fn read_page(&mut self, page: u64, buf: &mut [u8]) -> Result<bool, StoreError> {
        let mut s = self.lock();
        check_page(page, s.heap_pages, buf.len(), s.page_size)?;
        if s.fail_read > 0 {
            s.fail_read -= 1;
            return Err(StoreError::Injected("read_page"));
        }
        if let Some(p) = s.staged.get(&page) {
            buf.copy_from_slice(p);
            return Ok(true);
        }
        if let Some(p) = s.base.as_ref().and_then(|b| b.pages.get(&page)) {
            buf.copy_from_slice(p);
            return Ok(true);
        }
        buf.fill(0);
        Ok(false)
    }

    fn stage_pages(&mut self, pages: &[(u64, &[u8])]) -> Result<(), StoreError> {
        let mut s = self.lock();
        for (page, data) in pages {
            check_page(*page, s.heap_pages, data.len(), s.page_size)?;
        }
        if s.fail_stage > 0 {
            s.fail_stage -= 1;
            return Err(StoreError::Injected("stage_pages"));
        }
        for (page, data) in pages {
            s.staged.insert(*page, (*data).into());
        }
        Ok(())
    }

    fn commit(&mut self, app_state: &[u8]) -> Result<VersionInfo, StoreError> {
        let mut s = self.lock();
        if s.fail_commit > 0 {
            s.fail_commit -= 1;
            return Err(StoreError::Injected("commit"));
        }
        let mut pages = s.base.as_ref().map(|b| b.pages.clone()).unwrap_or_default();
        let staged = std::mem::take(&mut s.staged);
        let written = staged.len() as u64;
        for (page, data) in staged {
            pages.insert(page, Arc::from(data));
        }
        let info = VersionInfo {
            version: s.next_version,
            pages: written,
            state_len: app_state.len() as u64,
        };
        s.next_version += 1;
        let v = Arc::new(MemVersion {
            info,
            pages,
            state: app_state.to_vec(),
        });
        s.versions.push_back(v.clone());
        while s.versions.len() > s.keep {
            s.versions.pop_front();
        }
        s.base = Some(v);
        Ok(info)
    }

    fn abort(&mut self) -> Result<(), StoreError> {
        self.lock().staged.clear();
        Ok(())
    }

    fn versions(&mut self) -> Result<Vec<VersionInfo>, StoreError> {
        Ok(self.lock().versions.iter().map(|v| v.info).collect())
    }

    fn checkout(&mut self, version: u64) -> Result<Vec<u8>, StoreError> {
        let mut s = self.lock();
        let v = s
            .versions
            .iter()
            .find(|v| v.info.version == version)
            .cloned()
            .ok_or(StoreError::NoSuchVersion(version))?;
        s.staged.clear();
        let state = v.state.clone();
        s.base = Some(v);
        Ok(state)
    }
}
