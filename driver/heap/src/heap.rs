//! The persistent heap: a reserved virtual range whose pages are copied in
//! from a [`PageStore`] on reference, tracked clean or dirty, evicted LRU, and
//! checkpointed atomically.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, error, warn};

use crate::error::{HeapError, Result};
use crate::store::{check_geometry, PageStore, VersionInfo};
use crate::sys::{self, Fault, PageBuf, Pagemap, Region, Uffd};
use crate::table::{PageState, PageTable};

/// How writes to the heap are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tracking {
    /// userfaultfd with MISSING + WP registration and a handler thread:
    /// pages fault in on any reference, the first write to a clean page
    /// marks it dirty. Direct access through [`Heap::as_ptr`] is fully
    /// tracked.
    UffdWp,
    /// userfaultfd with MISSING + asynchronous WP (UFFD_FEATURE_WP_ASYNC):
    /// the kernel resolves a write to a clean page by itself (no message, no
    /// handler round trip) and the heap learns which pages were written with
    /// PAGEMAP_SCAN before a checkpoint, a pre-flush, an eviction or a
    /// page-state query. Much cheaper writes, but nothing blocks a writer:
    /// a page written by another thread while it is being staged or evicted
    /// can lose that write. Use it only when one thread at a time touches
    /// the heap (the heap's own calls included).
    UffdWpAsync,
    /// PROT_NONE / PROT_READ / PROT_READ|WRITE transitions and a SIGSEGV
    /// handler that hands faults to a handler thread. Direct access through
    /// [`Heap::as_ptr`] is fully tracked.
    Mprotect,
    /// No fault handling: the application calls [`Heap::fault_in`] before
    /// reading a range directly and [`Heap::mark_dirty`] before writing it
    /// (or uses [`Heap::read`] / [`Heap::write`]). A direct access to a page
    /// not made accessible that way crashes (SIGSEGV) rather than going
    /// untracked: non-resident pages are PROT_NONE, clean ones PROT_READ.
    Explicit,
}

impl Tracking {
    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            Tracking::UffdWp => "UffdWp",
            Tracking::UffdWpAsync => "UffdWpAsync",
            Tracking::Mprotect => "Mprotect",
            Tracking::Explicit => "Explicit",
        }
    }
}

/// How a [`Heap`] is set up.
#[derive(Debug, Clone)]
pub struct HeapConfig {
    /// At most this many pages are resident (at least 2: one instruction may
    /// touch two pages).
    pub resident_pages: usize,
    /// The dirty-tracking mode.
    pub tracking: Tracking,
    /// How long one wait for the heap's lock may take before a call gives
    /// up with `HeapError::Timeout`.
    pub lock_timeout: Duration,
    /// How long a thread faulting on the heap may wait in all (for a
    /// checkpoint holding the heap, for a failing store) before it is sent
    /// SIGBUS: more than the longest checkpoint the application makes.
    pub fault_timeout: Duration,
    /// Pages handed to the store per `stage_pages` call.
    pub stage_batch: usize,
}

impl Default for HeapConfig {
    fn default() -> Self {
        HeapConfig {
            resident_pages: 256,
            tracking: Tracking::UffdWp,
            lock_timeout: Duration::from_secs(10),
            fault_timeout: Duration::from_secs(120),
            stage_batch: 64,
        }
    }
}

/// Counters of a heap's activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Pages copied in from the store (claim 1).
    pub faults: u64,
    /// Clean pages made dirty by a write (fault or explicit).
    pub dirtied: u64,
    /// Pages evicted (claim 3).
    pub evictions: u64,
    /// Of those, dirty pages staged into the store first (claim 2).
    pub dirty_evictions: u64,
    /// Pages staged into the store (eviction, pre-flush, checkpoint).
    pub pages_staged: u64,
    /// Checkpoints committed.
    pub checkpoints: u64,
}

pub(crate) struct Inner {
    store: Box<dyn PageStore>,
    pub(crate) table: PageTable,
    resident_cap: usize,
    buf: PageBuf,
    stats: Stats,
    stage_batch: usize,
}

pub(crate) struct Shared {
    pub(crate) region: Region,
    pub(crate) page_size: usize,
    heap_pages: u64,
    tracking: Tracking,
    uffd: Option<Uffd>,
    pagemap: Option<sys::Pagemap>,
    pub(crate) inner: Mutex<Inner>,
    stop: AtomicBool,
    pub(crate) poisoned: AtomicBool,
    lock_timeout: Duration,
    pub(crate) fault_timeout: Duration,
}

/// A persistent heap over a [`PageStore`].
///
/// The heap is `heap_pages * page_size` bytes of virtual memory at
/// [`Heap::as_ptr`]; at most `resident_pages` of them are in memory at once.
/// The memory must not be used after the heap is dropped.
pub struct Heap {
    shared: Arc<Shared>,
    handler: Option<JoinHandle<()>>,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    sig_slot: Option<crate::sig::Slot>,
}

impl std::fmt::Debug for Heap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heap")
            .field("base", &format_args!("{:#x}", self.shared.region.base))
            .field("len", &self.shared.region.len)
            .field("page_size", &self.shared.page_size)
            .field("tracking", &self.shared.tracking)
            .finish()
    }
}

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

impl Shared {
    pub(crate) fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn off(&self, page: usize) -> usize {
        page * self.page_size
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            match self.inner.try_lock() {
                Ok(g) => return Ok(g),
                // Every change under the lock leaves the table consistent
                // with the mapping at each step, so a panic elsewhere while
                // holding it leaves usable state.
                Err(TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
            if start.elapsed() > self.lock_timeout {
                return Err(HeapError::Timeout);
            }
            if spins < 100 {
                spins += 1;
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    /// The page's bytes, for staging. Only called on resident pages that are
    /// write-protected (Flushing), so no one writes them while borrowed.
    fn page_bytes(&self, page: usize) -> &[u8] {
        // SAFETY: the page lies inside the mapping, is resident (so readable
        // without a fault) and write-protected for as long as the caller
        // holds the heap lock, so the bytes do not change while borrowed.
        unsafe {
            std::slice::from_raw_parts(
                (self.region.base + self.off(page)) as *const u8,
                self.page_size,
            )
        }
    }

    /// Put the contents of `inner.buf` at `page`, write-protected unless
    /// `writable`, atomically as seen by other threads.
    fn install(&self, inner: &mut Inner, page: usize, writable: bool) -> Result<()> {
        let ps = self.page_size;
        let dst = self.region.base + self.off(page);
        match &self.uffd {
            Some(uffd) => {
                if !uffd.copy(dst, inner.buf.addr(), ps, writable)? {
                    // Populated although the table says not resident: drop
                    // whatever is there and install again.
                    warn!(page, "page present though not resident; replacing it");
                    self.region.dontneed(self.off(page), ps)?;
                    if !uffd.copy(dst, inner.buf.addr(), ps, writable)? {
                        return Err(HeapError::Sys {
                            call: "UFFDIO_COPY",
                            source: std::io::Error::from_raw_os_error(libc::EEXIST),
                        });
                    }
                }
                Ok(())
            }
            None => {
                // Move the filled buffer's page over the target with mremap:
                // other threads see either PROT_NONE or the whole page, never
                // a partly copied one.
                let fresh = PageBuf::new(ps)?;
                let old = std::mem::replace(&mut inner.buf, fresh);
                old.move_to(dst, if writable { RW } else { libc::PROT_READ })
            }
        }
    }

    fn protect(&self, page: usize) -> Result<()> {
        match &self.uffd {
            Some(u) => u.writeprotect(self.region.base + self.off(page), self.page_size, true),
            None => self
                .region
                .mprotect(self.off(page), self.page_size, libc::PROT_READ),
        }
    }

    fn unprotect(&self, page: usize) -> Result<()> {
        match &self.uffd {
            Some(u) => u.writeprotect(self.region.base + self.off(page), self.page_size, false),
            None => self.region.mprotect(self.off(page), self.page_size, RW),
        }
    }

    fn drop_page(&self, page: usize) -> Result<()> {
        if self.uffd.is_none() {
            self.region
                .mprotect(self.off(page), self.page_size, libc::PROT_NONE)?;
        }
        self.region.dontneed(self.off(page), self.page_size)
    }

    fn wake(&self, page: usize) -> Result<()> {
        match &self.uffd {
            Some(u) => u.wake(self.region.base + self.off(page), self.page_size),
            None => Ok(()),
        }
    }

    /// Make `page` resident (copying it in from the store, evicting the LRU
    /// page first if the cache is full), and dirty and writable if `write`.
    /// Returns whether threads waiting on the page were woken.
    pub(crate) fn fault_in(&self, inner: &mut Inner, page: usize, write: bool) -> Result<bool> {
        match inner.table.state(page) {
            PageState::NotResident => {
                while inner.table.resident() >= inner.resident_cap {
                    match inner.table.victim(Some(page)) {
                        Some(v) => self.evict(inner, v)?,
                        None => break,
                    }
                }
                let Inner { store, buf, .. } = inner;
                store.read_page(page as u64, buf.as_mut_slice())?;
                self.install(inner, page, write)?;
                inner.table.set(
                    page,
                    if write {
                        PageState::Dirty
                    } else {
                        PageState::Clean
                    },
                );
                inner.stats.faults += 1;
                if write {
                    inner.stats.dirtied += 1;
                }
                Ok(true)
            }
            PageState::Clean | PageState::Flushing if write => {
                self.unprotect(page)?;
                inner.table.set(page, PageState::Dirty);
                inner.table.touch(page);
                inner.stats.dirtied += 1;
                Ok(true)
            }
            _ => {
                inner.table.touch(page);
                Ok(false)
            }
        }
    }

    /// UffdWpAsync: mark Dirty the clean pages of `pages` written since
    /// they were write-protected (the kernel let those writes through).
    pub(crate) fn sync_written(&self, inner: &mut Inner, pages: Range<usize>) -> Result<()> {
        let Some(pm) = &self.pagemap else {
            return Ok(());
        };
        let ps = self.page_size;
        let mut written = Vec::new();
        pm.written(
            self.region.base + pages.start * ps,
            self.region.base + pages.end * ps,
            &mut written,
        )?;
        for (start, end) in written {
            let first = (start as usize - self.region.base) / ps;
            let last = (end as usize - self.region.base).div_ceil(ps);
            for p in first..last {
                if inner.table.state(p) == PageState::Clean {
                    inner.table.set(p, PageState::Dirty);
                    inner.stats.dirtied += 1;
                }
            }
        }
        Ok(())
    }

    fn sync_all(&self, inner: &mut Inner) -> Result<()> {
        if self.pagemap.is_some() {
            self.sync_written(inner, 0..inner.table.len())?;
        }
        Ok(())
    }

    /// Evict `page`: a dirty page is staged into the store first.
    pub(crate) fn evict(&self, inner: &mut Inner, page: usize) -> Result<()> {
        if self.pagemap.is_some() && inner.table.state(page) == PageState::Clean {
            self.sync_written(inner, page..page + 1)?;
        }
        match inner.table.state(page) {
            PageState::NotResident => return Ok(()),
            PageState::Dirty => {
                self.flush(inner, &[page])?;
                inner.stats.dirty_evictions += 1;
            }
            _ => {}
        }
        self.drop_page(page)?;
        inner.table.set(page, PageState::NotResident);
        inner.stats.evictions += 1;
        debug!(page, "evicted");
        Ok(())
    }

    /// Stage dirty `pages` into the store: each is write-protected (Flushing),
    /// staged, then Clean. On failure the pages are Dirty (and writable) again.
    fn flush(&self, inner: &mut Inner, pages: &[usize]) -> Result<()> {
        let batch = inner.stage_batch.max(1);
        for chunk in pages.chunks(batch) {
            let mut protected = Vec::with_capacity(chunk.len());
            let mut res = Ok(());
            for &p in chunk {
                if let Err(e) = self.protect(p) {
                    res = Err(e);
                    break;
                }
                inner.table.set(p, PageState::Flushing);
                protected.push(p);
            }
            if res.is_ok() {
                let bufs: Vec<(u64, &[u8])> = protected
                    .iter()
                    .map(|&p| (p as u64, self.page_bytes(p)))
                    .collect();
                res = inner.store.stage_pages(&bufs).map_err(HeapError::from);
            }
            match res {
                Ok(()) => {
                    for &p in &protected {
                        inner.table.set(p, PageState::Clean);
                    }
                    inner.stats.pages_staged += protected.len() as u64;
                }
                Err(e) => {
                    for &p in &protected {
                        // Dirty pages are writable: keep that invariant.
                        self.unprotect(p)?;
                        inner.table.set(p, PageState::Dirty);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Resolve one fault reported by the userfaultfd or the signal handler,
    /// retrying against a failing store until `lock_timeout`; a fault that
    /// cannot be resolved poisons the heap and, for userfaultfd, raises
    /// SIGBUS in the faulting thread (as an I/O error on a mapped file does).
    pub(crate) fn resolve(&self, addr: u64, write: bool, tid: Option<u32>) -> bool {
        let off = (addr as usize).wrapping_sub(self.region.base);
        if off >= self.region.len {
            warn!(addr, "fault outside the heap");
            return false;
        }
        let page = off / self.page_size;
        let deadline = Instant::now() + self.fault_timeout;
        let mut backoff = Duration::from_millis(1);
        loop {
            let r = (|| {
                if self.poisoned.load(Ordering::Acquire) {
                    return Err(HeapError::Poisoned);
                }
                let mut inner = self.lock()?;
                if !self.fault_in(&mut inner, page, write)? {
                    self.wake(page)?;
                }
                Ok(())
            })();
            match r {
                Ok(()) => return true,
                Err(e) if Instant::now() < deadline && !matches!(e, HeapError::Poisoned) => {
                    warn!(page, error = %e, "fault not resolved yet; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                Err(e) => {
                    error!(page, error = %e, "fault cannot be resolved; heap poisoned");
                    self.poisoned.store(true, Ordering::Release);
                    if let Some(tid) = tid {
                        sys::sigbus_thread(tid);
                    }
                    return false;
                }
            }
        }
    }
}

fn uffd_handler(shared: Arc<Shared>) {
    let Some(uffd) = shared.uffd.as_ref() else {
        return;
    };
    let mut faults: Vec<Fault> = Vec::with_capacity(16);
    while !shared.stop.load(Ordering::Acquire) {
        faults.clear();
        if let Err(e) = uffd.poll_faults(Duration::from_millis(50), &mut faults) {
            error!(error = %e, "userfaultfd read failed");
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        for f in &faults {
            shared.resolve(f.addr, f.write || f.wp, Some(f.tid));
        }
    }
}

impl Heap {
    /// Open a heap over `store`: reserve `heap_pages * page_size` bytes of
    /// virtual memory (nothing resident yet) and set up the tracking.
    pub fn open<S: PageStore + 'static>(store: S, config: HeapConfig) -> Result<Heap> {
        let page_size = store.page_size();
        let heap_pages = store.heap_pages();
        check_geometry(page_size, heap_pages)?;
        // SAFETY: sysconf has no preconditions.
        let sys_page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if sys_page <= 0 || !page_size.is_multiple_of(sys_page as usize) {
            return Err(HeapError::Config(format!(
                "page size {page_size} is not a multiple of the system page size {sys_page}"
            )));
        }
        if config.resident_pages < 2 {
            return Err(HeapError::Config(
                "resident_pages must be at least 2 (one instruction may touch two pages)".into(),
            ));
        }
        let len = usize::try_from(heap_pages * page_size as u64)
            .map_err(|_| HeapError::Config("heap larger than the address space".into()))?;
        let pages =
            usize::try_from(heap_pages).map_err(|_| HeapError::Config("too many pages".into()))?;

        let (region, uffd, pagemap) = match config.tracking {
            Tracking::UffdWp | Tracking::UffdWpAsync => {
                let wp_async = config.tracking == Tracking::UffdWpAsync;
                let uffd = Uffd::open(wp_async)?;
                let pagemap = if wp_async {
                    Some(Pagemap::open()?)
                } else {
                    None
                };
                let region = Region::new(len, RW)?;
                uffd.register(region.base, len)?;
                (region, Some(uffd), pagemap)
            }
            Tracking::Mprotect | Tracking::Explicit => {
                (Region::new(len, libc::PROT_NONE)?, None, None)
            }
        };
        let inner = Inner {
            store: Box::new(store),
            table: PageTable::new(pages),
            resident_cap: config.resident_pages,
            buf: PageBuf::new(page_size)?,
            stats: Stats::default(),
            stage_batch: config.stage_batch,
        };
        let shared = Arc::new(Shared {
            region,
            page_size,
            heap_pages,
            tracking: config.tracking,
            uffd,
            pagemap,
            inner: Mutex::new(inner),
            stop: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            lock_timeout: config.lock_timeout,
            fault_timeout: config.fault_timeout,
        });
        let mut heap = Heap {
            shared: shared.clone(),
            handler: None,
            sig_slot: None,
        };
        match config.tracking {
            Tracking::UffdWp | Tracking::UffdWpAsync => {
                let s = shared.clone();
                let h = std::thread::Builder::new()
                    .name("heap-uffd".into())
                    .spawn(move || uffd_handler(s))
                    .map_err(|e| HeapError::Sys {
                        call: "spawn handler thread",
                        source: e,
                    })?;
                heap.handler = Some(h);
            }
            Tracking::Mprotect => {
                let (slot, handle) = crate::sig::register(shared.clone())?;
                heap.sig_slot = Some(slot);
                heap.handler = Some(handle);
            }
            Tracking::Explicit => {}
        }
        Ok(heap)
    }

    /// The heap's first byte. Reading or writing through it is tracked in
    /// the UffdWp and Mprotect modes; in Explicit mode see [`Tracking::Explicit`].
    pub fn as_ptr(&self) -> *mut u8 {
        self.shared.region.base as *mut u8
    }

    /// The heap's length in bytes.
    pub fn len(&self) -> usize {
        self.shared.region.len
    }

    /// Never true (a heap has at least one page).
    pub fn is_empty(&self) -> bool {
        self.shared.region.len == 0
    }

    /// The page size in bytes.
    pub fn page_size(&self) -> usize {
        self.shared.page_size
    }

    /// How many pages the heap has.
    pub fn heap_pages(&self) -> u64 {
        self.shared.heap_pages
    }

    /// The tracking mode.
    pub fn tracking(&self) -> Tracking {
        self.shared.tracking
    }

    fn check(&self, offset: u64, len: u64) -> Result<(usize, usize)> {
        let heap_len = self.shared.region.len as u64;
        match offset.checked_add(len) {
            Some(end) if end <= heap_len => Ok((offset as usize, len as usize)),
            _ => Err(HeapError::OutOfRange {
                offset,
                len,
                heap_len,
            }),
        }
    }

    fn guard(&self) -> Result<MutexGuard<'_, Inner>> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(HeapError::Poisoned);
        }
        self.shared.lock()
    }

    /// Run `f(page, offset in page, range in the caller's buffer)` for each
    /// page of `[offset, offset+len)`, with the page faulted in (for write if
    /// `write`) and the lock held.
    fn each_page(
        &self,
        offset: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(usize, usize, Range<usize>),
    ) -> Result<()> {
        let (start, len) = self.check(offset, len as u64)?;
        let ps = self.shared.page_size;
        let mut pos = 0;
        while pos < len {
            let at = start + pos;
            let page = at / ps;
            let in_page = at % ps;
            let n = (ps - in_page).min(len - pos);
            let mut inner = self.guard()?;
            self.shared.fault_in(&mut inner, page, write)?;
            f(page, in_page, pos..pos + n);
            drop(inner);
            pos += n;
        }
        Ok(())
    }

    /// Copy `buf.len()` bytes at `offset` out of the heap.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let base = self.shared.region.base;
        let ps = self.shared.page_size;
        self.each_page(offset, buf.len(), false, |page, in_page, r| {
            // SAFETY: the page is resident and readable (fault_in under the
            // lock we hold, which also keeps it from being evicted), the
            // source range lies within it and `buf[r]` is our own buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    (base + page * ps + in_page) as *const u8,
                    buf[r.clone()].as_mut_ptr(),
                    r.len(),
                )
            }
        })
    }

    /// Copy `data` into the heap at `offset`; the pages written become Dirty.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        let base = self.shared.region.base;
        let ps = self.shared.page_size;
        self.each_page(offset, data.len(), true, |page, in_page, r| {
            // SAFETY: the page is resident, Dirty and writable (fault_in for
            // write under the lock we hold), so this copy neither faults nor
            // races with eviction or staging; `data[r]` is the caller's.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    data[r.clone()].as_ptr(),
                    (base + page * ps + in_page) as *mut u8,
                    r.len(),
                )
            }
        })
    }

    /// In Explicit mode a range made accessible must fit in the cache, or
    /// its first pages would be evicted again before the application uses
    /// them (and a direct write to them would fault).
    fn check_fits(&self, range: &Range<u64>) -> Result<()> {
        if self.shared.tracking != Tracking::Explicit || range.end <= range.start {
            return Ok(());
        }
        let ps = self.shared.page_size as u64;
        let pages = range.end.div_ceil(ps) - range.start / ps;
        let cap = self.shared.lock()?.resident_cap as u64;
        if pages > cap {
            return Err(HeapError::Config(format!(
                "range of {pages} pages is larger than the {cap} resident pages (Explicit mode)"
            )));
        }
        Ok(())
    }

    /// Mark the pages of a byte range dirty (faulting them in first) and
    /// make them writable. Needed before direct writes in Explicit mode
    /// (where the range must fit in `resident_pages`); harmless in the others.
    pub fn mark_dirty(&self, range: Range<u64>) -> Result<()> {
        let len = range.end.saturating_sub(range.start);
        self.check(range.start, len)?;
        self.check_fits(&range)?;
        self.each_page(range.start, len as usize, true, |_, _, _| {})
    }

    /// Fault the pages of a byte range in (readable). In Explicit mode this
    /// is needed before reading them directly (the range must fit in
    /// `resident_pages`); the pages may be evicted again by later faults
    /// once more than `resident_pages` pages are referenced.
    pub fn fault_in(&self, range: Range<u64>) -> Result<()> {
        let len = range.end.saturating_sub(range.start);
        self.check(range.start, len)?;
        self.check_fits(&range)?;
        self.each_page(range.start, len as usize, false, |_, _, _| {})
    }

    /// Evict one page now (staging it first if dirty).
    pub fn evict(&self, page: u64) -> Result<()> {
        let p = self.page_index(page)?;
        let mut inner = self.guard()?;
        self.shared.evict(&mut inner, p)
    }

    /// Stage up to `max_pages` dirty pages (least recently used first) into
    /// the store without committing: they become Clean, so the next
    /// checkpoint has less to write. Returns how many were staged.
    pub fn preflush(&self, max_pages: usize) -> Result<usize> {
        let mut inner = self.guard()?;
        self.shared.sync_all(&mut inner)?;
        let mut dirty = inner.table.pages_in(PageState::Dirty);
        dirty.truncate(max_pages);
        self.shared.flush(&mut inner, &dirty)?;
        Ok(dirty.len())
    }

    /// Write all dirty pages plus `app_state` as one new version, atomically;
    /// the pages become Clean (and write-protected) again.
    pub fn checkpoint(&self, app_state: &[u8]) -> Result<VersionInfo> {
        let mut inner = self.guard()?;
        self.shared.sync_all(&mut inner)?;
        let dirty = inner.table.pages_in(PageState::Dirty);
        self.shared.flush(&mut inner, &dirty)?;
        let info = inner.store.commit(app_state)?;
        inner.stats.checkpoints += 1;
        debug!(version = info.version, pages = info.pages, "checkpoint");
        Ok(info)
    }

    /// The kept versions, oldest first.
    pub fn versions(&self) -> Result<Vec<VersionInfo>> {
        let mut inner = self.guard()?;
        Ok(inner.store.versions()?)
    }

    /// Restart from `version`: drop every resident page (dirty ones are
    /// discarded) and everything staged; pages fault in again from that
    /// version. Returns its application state. The application must not
    /// touch the heap from other threads meanwhile.
    pub fn restart_from(&self, version: u64) -> Result<Vec<u8>> {
        let mut inner = self.guard()?;
        let state = inner.store.checkout(version)?;
        for p in inner.table.resident_pages() {
            self.shared.drop_page(p)?;
            inner.table.set(p, PageState::NotResident);
        }
        Ok(state)
    }

    /// Activity counters.
    pub fn stats(&self) -> Result<Stats> {
        Ok(self.shared.lock()?.stats)
    }

    fn page_index(&self, page: u64) -> Result<usize> {
        if page >= self.shared.heap_pages {
            return Err(HeapError::OutOfRange {
                offset: page.saturating_mul(self.shared.page_size as u64),
                len: self.shared.page_size as u64,
                heap_len: self.shared.region.len as u64,
            });
        }
        Ok(page as usize)
    }

    /// One page's state.
    pub fn page_state(&self, page: u64) -> Result<PageState> {
        let p = self.page_index(page)?;
        let mut inner = self.shared.lock()?;
        self.shared.sync_written(&mut inner, p..p + 1)?;
        Ok(inner.table.state(p))
    }

    /// Every page's state, page 0 first.
    pub fn page_states(&self) -> Result<Vec<PageState>> {
        let mut inner = self.shared.lock()?;
        self.shared.sync_all(&mut inner)?;
        Ok((0..inner.table.len())
            .map(|p| inner.table.state(p))
            .collect())
    }

    /// How many pages are resident.
    pub fn resident_count(&self) -> Result<usize> {
        Ok(self.shared.lock()?.table.resident())
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(slot) = self.sig_slot.take() {
            crate::sig::unregister(slot);
        }
        if let Some(h) = self.handler.take() {
            // The handler polls with a 50 ms timeout and checks `stop`.
            if h.join().is_err() {
                error!("heap handler thread panicked");
            }
        }
    }
}
