//! The heap store (issue 20; `crate::heap` has the data structures):
//! HEAP_OPEN/CLOSE/STAGE/COMMIT/ABORT/READ/VERSIONS/CHECKOUT/DELETE.
//!
//! - STAGE writes pages to free data-area space (one WRITE per request
//!   when the space is contiguous, checked against the pages' CRCs); the
//!   staging map lives in firmware memory only: a reset frees it.
//! - COMMIT writes the leaves the staged pages touch and the application
//!   state to free space, then the root as a record-table set under a
//!   reserved object id, in the same index commit that drops the versions
//!   beyond K. Before that commit the previous versions are intact (nothing
//!   they reference was written); after it the new version is complete
//!   (every byte it references was written and acknowledged first).
//! - At start every committed root and its leaves are read (CRC-checked)
//!   to rebuild the reference counts of the blocks ([`Used`]); the record
//!   allocator and the heap allocator both avoid those blocks and the
//!   table's sets.

use super::*;
use crate::heap::{
    self as hp, heap_of_object, leaves_for, root_object, Leaf, Ptr, Root, Used, LEAF_BYTES,
    LEAF_ENTRIES, PAGE,
};
use hitless_proto::msg::HeapVersion;
use hitless_proto::Response;

/// One heap as the firmware holds it.
#[derive(Clone, Debug)]
pub(super) struct HeapState {
    tier: TierSel,
    heap_pages: u32,
    keep: u32,
    /// Committed versions, oldest first.
    versions: BTreeMap<u64, Root>,
    /// The version the next commit and reads start from (`None`: the newest).
    base: Option<u64>,
    /// Staged pages (in no committed root; lost at a reset).
    staged: BTreeMap<u32, Ptr>,
    open: bool,
}

/// The heaps of every application, and the blocks they use per tier.
#[derive(Clone, Debug, Default)]
pub(super) struct HeapStore {
    heaps: BTreeMap<(u32, u32), HeapState>,
    used: [Used; 2],
    /// Leaves of committed roots, by tier and offset (shared by versions).
    leaves: [BTreeMap<u32, Leaf>; 2],
}

impl HeapStore {
    /// The data-area extents the heap store uses in tier `t`.
    pub(super) fn extents(&self, t: TierSel) -> Vec<(u64, u64)> {
        self.used[t as usize].extents().collect()
    }
}

fn heap_key(app: u32, heap: u32) -> R<(u32, u32)> {
    if heap >= hp::MAX_HEAPS {
        return fail(
            Code::Invalid,
            format!("heap id {heap}: heap ids are 0..{}", hp::MAX_HEAPS),
        );
    }
    Ok((app, heap))
}

/// CRC-32C of a concatenation, from its pieces' CRCs.
fn combine(crcs: impl IntoIterator<Item = (u32, u64)>) -> u32 {
    crcs.into_iter()
        .fold(crc32c(&[]), |out, (c, len)| crc32c_combine(out, c, len))
}

impl<C: Controller> MemoryManager<C> {
    /// Rebuild the heap store of both tiers from the committed roots.
    pub(super) fn heap_rebuild(&mut self) {
        let staged: Vec<((u32, u32), HeapState)> =
            std::mem::take(&mut self.heaps.heaps).into_iter().collect();
        self.heaps = HeapStore::default();
        for t in [TierSel::Warm, TierSel::Cold] {
            let TierView::Ready(tab) = self.tiers[t as usize].clone() else {
                continue;
            };
            for (k, e) in &tab.sets {
                let Some(heap) = heap_of_object(k.object) else {
                    continue;
                };
                match self.load_root(t, e) {
                    Ok(root) if root.heap == heap => {
                        self.heap_take_root(t, k.app, root);
                    }
                    Ok(_) => tracing::warn!(app = k.app, heap, "a heap root under another id"),
                    Err(f) => {
                        tracing::warn!(app = k.app, heap, "heap root unreadable: {}", f.detail)
                    }
                }
            }
        }
        // Heaps open before (a restart without a reset) stay open; their
        // staged pages are gone.
        for (k, h) in staged {
            if h.open {
                let e = self.heaps.heaps.entry(k).or_insert(HeapState {
                    versions: BTreeMap::new(),
                    staged: BTreeMap::new(),
                    base: None,
                    ..h
                });
                e.open = true;
            }
        }
        tracing::info!(
            heaps = self.heaps.heaps.len(),
            warm_bytes = self.heaps.used[0].bytes(),
            cold_bytes = self.heaps.used[1].bytes(),
            "heap store rebuilt"
        );
    }

    /// Read a root and every leaf it lists (CRC-checked) into the cache.
    fn load_root(&mut self, t: TierSel, e: &Entry) -> R<Root> {
        let bytes = self.read_set(t, e)?;
        let root = Root::decode(&bytes, self.geometry.data_size)
            .map_err(|err| Failure::new(Code::Lost, err.to_string()))?;
        for p in root.leaves.iter().flatten() {
            if self.heaps.leaves[t as usize].contains_key(&p.offset) {
                continue;
            }
            let b = self.read_set(t, &extent(p.offset, LEAF_BYTES as u32, p.crc))?;
            let leaf = Leaf::decode(&b, self.geometry.data_size)
                .map_err(|err| Failure::new(Code::Lost, err.to_string()))?;
            self.heaps.leaves[t as usize].insert(p.offset, leaf);
        }
        Ok(root)
    }

    /// Count a committed root's references (its leaves, their pages the
    /// first time a leaf is referenced, its state) and record the version.
    fn heap_take_root(&mut self, t: TierSel, app: u32, root: Root) {
        let ti = t as usize;
        for p in root.leaves.iter().flatten() {
            if self.heaps.used[ti].refs(p.offset) == 0 {
                if let Some(leaf) = self.heaps.leaves[ti].get(&p.offset) {
                    for pg in leaf.0.iter().flatten() {
                        self.heaps.used[ti].add(pg.offset, PAGE as u32);
                    }
                }
            }
            self.heaps.used[ti].add(p.offset, LEAF_BYTES as u32);
        }
        if let Some((p, len)) = root.state {
            if len > 0 {
                self.heaps.used[ti].add(p.offset, len);
            }
        }
        let h = self
            .heaps
            .heaps
            .entry((app, root.heap))
            .or_insert_with(|| HeapState {
                tier: t,
                heap_pages: root.heap_pages,
                keep: root.keep,
                versions: BTreeMap::new(),
                base: None,
                staged: BTreeMap::new(),
                open: false,
            });
        if h.tier != t {
            tracing::warn!(
                app,
                heap = root.heap,
                "heap roots in both tiers: the {} tier's are ignored",
                t.name()
            );
            return;
        }
        h.keep = root.keep;
        h.versions.insert(root.version, root);
    }

    /// Drop one reference of a root (a dropped version).
    fn heap_release_root(&mut self, t: TierSel, root: &Root) {
        let ti = t as usize;
        for p in root.leaves.iter().flatten() {
            if self.heaps.used[ti].release(p.offset) {
                if let Some(leaf) = self.heaps.leaves[ti].remove(&p.offset) {
                    for pg in leaf.0.iter().flatten() {
                        self.heaps.used[ti].release(pg.offset);
                    }
                }
            }
        }
        if let Some((p, len)) = root.state {
            if len > 0 {
                self.heaps.used[ti].release(p.offset);
            }
        }
    }

    fn heap_table(&self, t: TierSel) -> R<Table> {
        match &self.tiers[t as usize] {
            TierView::Ready(tab) => Ok(tab.clone()),
            TierView::Lost => Ok(Table::default()),
            TierView::Foreign(d) => fail(
                Code::Foreign,
                format!(
                    "the {} tier holds a foreign image ({d}); FORMAT it first",
                    t.name()
                ),
            ),
        }
    }

    /// Free space for `len` bytes in tier `t`, avoiding the table's sets,
    /// the heap store's blocks and `pending` extents.
    fn heap_alloc(&self, t: TierSel, tab: &Table, len: u64, pending: &[(u64, u64)]) -> R<u32> {
        let mut ext = tab.set_extents();
        ext.extend(self.heaps.used[t as usize].extents());
        ext.extend_from_slice(pending);
        let size = self.geometry.data_size as u64;
        match hp::first_fit(len, size, &mut ext) {
            Some(o) => Ok(o),
            None => fail(
                Code::NoSpace,
                format!(
                    "the {} tier's data area has {} bytes free in one piece, the heap needs {len}",
                    t.name(),
                    hp::largest_free(size, &mut ext)
                ),
            ),
        }
    }

    fn heap_mut(&mut self, app: u32, heap: u32) -> R<&mut HeapState> {
        let k = heap_key(app, heap)?;
        match self.heaps.heaps.get_mut(&k) {
            Some(h) if h.open => Ok(h),
            _ => fail(
                Code::NotFound,
                format!("heap {heap} of application {app} is not open (HEAP_OPEN first)"),
            ),
        }
    }

    fn versions_of(&self, h: &HeapState) -> Vec<HeapVersion> {
        h.versions
            .values()
            .map(|r| HeapVersion {
                version: r.version,
                state_len: r.state.map_or(0, |s| s.1),
                state_crc: r.state.map_or(crc32c(&[]), |s| s.0.crc),
                pages: r.written,
            })
            .collect()
    }

    pub(super) fn heap_open(
        &mut self,
        app: u32,
        heap: u32,
        heap_pages: u32,
        keep: u32,
        f: u32,
    ) -> R<Response> {
        let k = heap_key(app, heap)?;
        if keep > hp::MAX_KEEP {
            return fail(
                Code::Invalid,
                format!(
                    "keep {keep}: a heap keeps at most {} versions",
                    hp::MAX_KEEP
                ),
            );
        }
        let h = match self.heaps.heaps.get_mut(&k) {
            Some(h) => {
                if heap_pages != 0 && heap_pages != h.heap_pages {
                    return fail(
                        Code::Invalid,
                        format!(
                            "heap {heap} has {} pages, not {heap_pages} (delete it to resize)",
                            h.heap_pages
                        ),
                    );
                }
                if keep != 0 {
                    h.keep = keep;
                }
                // An open starts a new transaction from the newest version:
                // what an earlier opener staged and never committed (a
                // client killed mid-checkpoint) is no version's, and must
                // neither show through reads nor ride into the next commit.
                let staged = std::mem::take(&mut h.staged);
                if !staged.is_empty() {
                    tracing::info!(
                        app,
                        heap,
                        pages = staged.len(),
                        "heap reopened: staged pages dropped"
                    );
                }
                for p in staged.values() {
                    self.heaps.used[h.tier as usize].release(p.offset);
                }
                h.base = None;
                h.open = true;
                h.clone()
            }
            None => {
                if heap_pages == 0 || heap_pages > hp::MAX_HEAP_PAGES {
                    return fail(
                        Code::Invalid,
                        format!(
                            "a new heap needs 1..={} pages, not {heap_pages}",
                            hp::MAX_HEAP_PAGES
                        ),
                    );
                }
                let t = TierSel::of_flags(f);
                self.heap_table(t)?;
                let h = HeapState {
                    tier: t,
                    heap_pages,
                    keep: if keep == 0 { hp::DEFAULT_KEEP } else { keep },
                    versions: BTreeMap::new(),
                    base: None,
                    staged: BTreeMap::new(),
                    open: true,
                };
                self.heaps.heaps.insert(k, h.clone());
                h
            }
        };
        Ok(Response::HeapVersions {
            versions: self.versions_of(&h),
        })
    }

    pub(super) fn heap_close(&mut self, app: u32, heap: u32) -> R<Response> {
        self.heap_abort(app, heap)?;
        let k = heap_key(app, heap)?;
        if let Some(h) = self.heaps.heaps.get_mut(&k) {
            h.open = false;
            h.base = None;
            if h.versions.is_empty() {
                self.heaps.heaps.remove(&k);
            }
        }
        Ok(Response::Done)
    }

    pub(super) fn heap_abort(&mut self, app: u32, heap: u32) -> R<Response> {
        let h = self.heap_mut(app, heap)?;
        let t = h.tier as usize;
        let staged = std::mem::take(&mut h.staged);
        for p in staged.values() {
            self.heaps.used[t].release(p.offset);
        }
        Ok(Response::Done)
    }

    fn check_pages(h: &HeapState, pages: &[u32]) -> R<()> {
        if pages.is_empty() || pages.len() > hp::MAX_REQUEST_PAGES {
            return fail(
                Code::Invalid,
                format!(
                    "{} pages: a request names 1..={} pages",
                    pages.len(),
                    hp::MAX_REQUEST_PAGES
                ),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for &p in pages {
            if p >= h.heap_pages {
                return fail(
                    Code::Invalid,
                    format!("page {p}: the heap has {} pages", h.heap_pages),
                );
            }
            if !seen.insert(p) {
                return fail(Code::Invalid, format!("page {p} named twice"));
            }
        }
        Ok(())
    }

    pub(super) fn heap_stage(
        &mut self,
        app: u32,
        heap: u32,
        pages: &[u32],
        crcs: &[u32],
        addr: u64,
    ) -> R<Response> {
        let h = self.heap_mut(app, heap)?;
        Self::check_pages(h, pages)?;
        if crcs.len() != pages.len() {
            return fail(
                Code::Invalid,
                format!("{} pages but {} CRCs", pages.len(), crcs.len()),
            );
        }
        let t = h.tier;
        let tab = self.heap_table(t)?;
        let n = pages.len() as u64;
        // One extent for the request's pages when there is one (one WRITE,
        // checked against the pages' combined CRC), else page by page.
        let offsets: Vec<u32> = match self.heap_alloc(t, &tab, n * PAGE as u64, &[]) {
            Ok(o) => {
                let all = combine(crcs.iter().map(|c| (*c, PAGE as u64)));
                self.write_data(t, &extent(o, (n * PAGE as u64) as u32, all), addr)?;
                (0..n as u32).map(|i| o + i * PAGE as u32).collect()
            }
            Err(_) => {
                let mut pending = Vec::new();
                for (i, c) in crcs.iter().enumerate() {
                    let o = self.heap_alloc(t, &tab, PAGE as u64, &pending)?;
                    self.write_data(t, &extent(o, PAGE as u32, *c), addr + (i * PAGE) as u64)?;
                    pending.push((o as u64, PAGE as u64));
                }
                pending.into_iter().map(|(o, _)| o as u32).collect()
            }
        };
        let ti = t as usize;
        for ((p, c), o) in pages.iter().zip(crcs).zip(offsets) {
            self.heaps.used[ti].add(o, PAGE as u32);
            let h = self.heap_mut(app, heap)?;
            if let Some(old) = h.staged.insert(*p, Ptr { offset: o, crc: *c }) {
                self.heaps.used[ti].release(old.offset);
            }
        }
        Ok(Response::Done)
    }

    fn base_root(h: &HeapState, heap: u32) -> Root {
        let v = h.base.or_else(|| h.versions.keys().next_back().copied());
        v.and_then(|v| h.versions.get(&v))
            .cloned()
            .unwrap_or_else(|| Root::empty(heap, h.heap_pages, h.keep))
    }

    pub(super) fn heap_commit(
        &mut self,
        app: u32,
        heap: u32,
        addr: u64,
        len: u32,
        crc: u32,
    ) -> R<Response> {
        let h = self.heap_mut(app, heap)?.clone();
        if len == 0 && crc != crc32c(&[]) {
            return fail(Code::Invalid, "an empty state has CRC 0");
        }
        if len > MAX_SET_STATE {
            return fail(
                Code::Invalid,
                format!("{len} bytes of state: at most {MAX_SET_STATE}"),
            );
        }
        let t = h.tier;
        let ti = t as usize;
        let old = self.heap_table(t)?;
        let base = Self::base_root(&h, heap);
        let version = h.versions.keys().next_back().map_or(1, |v| v + 1);
        // The leaves the staged pages touch: the base's, changed.
        let mut touched: BTreeMap<usize, Leaf> = BTreeMap::new();
        for (p, ptr) in &h.staged {
            let li = *p as usize / LEAF_ENTRIES;
            let leaf = touched.entry(li).or_insert_with(|| {
                base.leaves
                    .get(li)
                    .copied()
                    .flatten()
                    .and_then(|lp| self.heaps.leaves[ti].get(&lp.offset).cloned())
                    .unwrap_or_default()
            });
            leaf.0[*p as usize % LEAF_ENTRIES] = Some(*ptr);
        }
        let mut pending: Vec<(u64, u64)> = Vec::new();
        let mut new_root = Root {
            heap,
            heap_pages: h.heap_pages,
            keep: h.keep,
            version,
            written: h.staged.len() as u32,
            state: None,
            leaves: base.leaves.clone(),
        };
        new_root.leaves.resize(leaves_for(h.heap_pages), None);
        // Leaves: one extent, written through scratch in transfers.
        if !touched.is_empty() {
            let bytes: Vec<u8> = touched.values().flat_map(|l| l.encode()).collect();
            let at = self.heap_alloc(t, &old, bytes.len() as u64, &pending)?;
            let (sbase, _) = self.ctl.scratch();
            for (i, piece) in bytes.chunks(MAX_TRANSFER as usize).enumerate() {
                self.ctl.scratch_write(STAGING, piece).map_err(ctl)?;
                let off = at + (i * MAX_TRANSFER as usize) as u32;
                self.write_data(
                    t,
                    &extent(off, piece.len() as u32, crc32c(piece)),
                    sbase + STAGING as u64,
                )?;
            }
            pending.push((at as u64, bytes.len() as u64));
            for (i, (li, leaf)) in touched.iter().enumerate() {
                new_root.leaves[*li] = Some(Ptr {
                    offset: at + (i * LEAF_BYTES) as u32,
                    crc: crc32c(&leaf.encode()),
                });
            }
        }
        // The application's state.
        if len > 0 {
            let at = self.heap_alloc(t, &old, len as u64, &pending)?;
            self.write_data(t, &extent(at, len, crc), addr)?;
            pending.push((at as u64, align8(len as usize) as u64));
            new_root.state = Some((Ptr { offset: at, crc }, len));
        }
        // The root, and the index commit that adds it and drops the
        // versions beyond K.
        let root_bytes = new_root.encode();
        let key = SetKey {
            app,
            object: root_object(heap, version),
        };
        if old.sets.contains_key(&key) {
            return fail(
                Code::Device,
                format!(
                    "heap {heap}: the root slot of version {version} is taken (a stale root); \
                     delete the heap"
                ),
            );
        }
        let mut extra = self.heaps.extents(t);
        extra.extend_from_slice(&pending);
        let root_crc = crc32c(&root_bytes);
        let Some(root_off) = old.allocate(root_bytes.len() as u32, self.geometry.data_size, &extra)
        else {
            return fail(Code::NoSpace, "no room for the heap's root");
        };
        self.version += 1;
        let entry = Entry {
            endpoint: 0,
            stage: NEVER,
            flags: if t == TierSel::Cold {
                hitless_proto::msg::flags::COLD
            } else {
                0
            },
            len: root_bytes.len() as u32,
            crc: root_crc,
            offset: root_off,
            version: self.version,
        };
        let mut new = old.clone();
        new.sets.insert(key, entry);
        let keep = h.keep.max(1) as usize;
        let mut all: Vec<u64> = h.versions.keys().copied().collect();
        all.push(version);
        let dropped: Vec<u64> = all[..all.len().saturating_sub(keep)].to_vec();
        for v in &dropped {
            new.sets.remove(&SetKey {
                app,
                object: root_object(heap, *v),
            });
        }
        if new.sets.len() > MAX_SETS {
            return fail(
                Code::NoSpace,
                format!("a tier holds at most {MAX_SETS} sets"),
            );
        }
        self.ctl.scratch_write(STAGING, &root_bytes).map_err(ctl)?;
        let (sbase, _) = self.ctl.scratch();
        let result = self.commit(
            t,
            &old,
            &new,
            Some(key),
            (sbase + STAGING as u64, 0),
            &pending,
        );
        let committed = matches!(&self.tiers[ti], TierView::Ready(tab)
            if tab.sets.get(&key).is_some_and(|e| e.crc == root_crc && e.offset == root_off));
        if !committed {
            // Nothing committed: the previous versions are intact, the
            // staged pages stay staged, the leaves and state were written
            // to space nothing references.
            return result.map(|_| Response::Done);
        }
        if let Err(f) = result {
            tracing::warn!(
                "heap commit: the index is committed, its mirror failed: {}",
                f.detail
            );
        }
        // The new version references its leaves (their pages counted once
        // per leaf by `heap_take_root`) and its state; a staged page's
        // staging reference then passes to its leaf.
        for (li, leaf) in &touched {
            if let Some(p) = new_root.leaves[*li] {
                self.heaps.leaves[ti].insert(p.offset, leaf.clone());
            }
        }
        self.heap_take_root(t, app, new_root.clone());
        for p in h.staged.values() {
            self.heaps.used[ti].release(p.offset);
        }
        let mut dropped_roots = Vec::new();
        if let Some(hs) = self.heaps.heaps.get_mut(&(app, heap)) {
            hs.staged.clear();
            hs.base = None;
            for v in &dropped {
                if let Some(r) = hs.versions.remove(v) {
                    dropped_roots.push(r);
                }
            }
        }
        for r in &dropped_roots {
            self.heap_release_root(t, r);
        }
        tracing::debug!(
            app,
            heap,
            version,
            pages = h.staged.len(),
            leaves = touched.len(),
            dropped = dropped.len(),
            "heap version committed"
        );
        Ok(Response::HeapVersion(HeapVersion {
            version,
            state_len: len,
            state_crc: if len > 0 { crc } else { crc32c(&[]) },
            pages: new_root.written,
        }))
    }

    pub(super) fn heap_read(
        &mut self,
        app: u32,
        heap: u32,
        pages: &[u32],
        addr: u64,
        cap: u32,
    ) -> R<Response> {
        let h = self.heap_mut(app, heap)?.clone();
        Self::check_pages(&h, pages)?;
        let need = (pages.len() * PAGE) as u64;
        if need > cap as u64 {
            return Err(Failure::too_small(need));
        }
        let ti = h.tier as usize;
        let base = Self::base_root(&h, heap);
        let mut absent = Vec::new();
        for (i, p) in pages.iter().enumerate() {
            let ptr = h.staged.get(p).copied().or_else(|| {
                let li = *p as usize / LEAF_ENTRIES;
                let lp = base.leaves.get(li).copied().flatten()?;
                self.heaps.leaves[ti].get(&lp.offset)?.0[*p as usize % LEAF_ENTRIES]
            });
            match ptr {
                Some(ptr) => self.deliver(
                    h.tier,
                    &extent(ptr.offset, PAGE as u32, ptr.crc),
                    addr + (i * PAGE) as u64,
                )?,
                None => absent.push(*p),
            }
        }
        Ok(Response::HeapPages { absent })
    }

    /// The pages of the base version that differ from version `since`
    /// (0: every written page), from page `first` on: compared leaf by
    /// leaf, a leaf both versions share is skipped whole.
    pub(super) fn heap_changed(
        &mut self,
        app: u32,
        heap: u32,
        since: u64,
        first: u32,
    ) -> R<Response> {
        let h = self.heap_mut(app, heap)?.clone();
        let base = Self::base_root(&h, heap);
        let old = if since == 0 {
            Root::empty(heap, h.heap_pages, h.keep)
        } else {
            match h.versions.get(&since) {
                Some(r) => r.clone(),
                None => {
                    return fail(
                        Code::NotFound,
                        format!("heap {heap} has no version {since}"),
                    )
                }
            }
        };
        let ti = h.tier as usize;
        let leaf = |p: Option<Ptr>| {
            p.and_then(|p| self.heaps.leaves[ti].get(&p.offset).cloned())
                .unwrap_or_default()
        };
        let mut pages = Vec::new();
        for li in first as usize / LEAF_ENTRIES..base.leaves.len() {
            let (a, b) = (old.leaves.get(li).copied().flatten(), base.leaves[li]);
            if a == b {
                continue;
            }
            let (la, lb) = (leaf(a), leaf(b));
            for slot in 0..LEAF_ENTRIES {
                let page = (li * LEAF_ENTRIES + slot) as u32;
                if page < first || lb.0[slot].is_none() || lb.0[slot] == la.0[slot] {
                    continue;
                }
                pages.push(page);
                if pages.len() == hitless_proto::msg::HEAP_CHANGED_MAX {
                    return Ok(Response::HeapChanged { pages });
                }
            }
        }
        Ok(Response::HeapChanged { pages })
    }

    pub(super) fn heap_versions(&mut self, app: u32, heap: u32) -> R<Response> {
        let h = self.heap_mut(app, heap)?.clone();
        Ok(Response::HeapVersions {
            versions: self.versions_of(&h),
        })
    }

    /// Make `version` the base (staged pages are dropped) and deliver its
    /// application state.
    pub(super) fn heap_checkout(
        &mut self,
        app: u32,
        heap: u32,
        version: u64,
        addr: u64,
        cap: u32,
    ) -> R<Response> {
        let h = self.heap_mut(app, heap)?.clone();
        let Some(root) = h.versions.get(&version).cloned() else {
            return fail(
                Code::NotFound,
                format!(
                    "heap {heap} has no version {version} (it keeps {:?})",
                    h.versions.keys().collect::<Vec<_>>()
                ),
            );
        };
        let (p, len) = root.state.unwrap_or((
            Ptr {
                offset: 0,
                crc: crc32c(&[]),
            },
            0,
        ));
        if len > cap {
            return Err(Failure::too_small(len.into()));
        }
        if len > 0 {
            self.deliver(h.tier, &extent(p.offset, len, p.crc), addr)?;
        }
        self.heap_abort(app, heap)?;
        let hs = self.heap_mut(app, heap)?;
        hs.base = Some(version);
        let v = self
            .versions_of(&h)
            .into_iter()
            .find(|v| v.version == version);
        v.map(Response::HeapVersion)
            .ok_or_else(|| Failure::new(Code::NotFound, "version vanished"))
    }

    /// Delete every version of the heap in one index commit.
    pub(super) fn heap_delete(&mut self, app: u32, heap: u32) -> R<Response> {
        let k = heap_key(app, heap)?;
        let Some(h) = self.heaps.heaps.get(&k).cloned() else {
            return fail(
                Code::NotFound,
                format!("application {app} has no heap {heap}"),
            );
        };
        if h.open {
            self.heap_abort(app, heap)?;
        }
        let t = h.tier;
        let old = self.heap_table(t)?;
        let mut new = old.clone();
        new.sets
            .retain(|kk, _| !(kk.app == app && heap_of_object(kk.object) == Some(heap)));
        if new.sets.len() != old.sets.len() {
            self.commit(t, &old, &new, None, (0, 0), &[])?;
        }
        for r in h.versions.values() {
            self.heap_release_root(t, r);
        }
        self.heaps.heaps.remove(&k);
        Ok(Response::Done)
    }
}

/// Most bytes of application state a version carries.
pub const MAX_SET_STATE: u32 = 48 << 20;
