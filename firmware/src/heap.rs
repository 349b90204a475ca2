//! The heap store's data structures (issue 20, items 2-5; seed 003,
//! figures 5, 6, 11): pure code, no controller.
//!
//! A heap of `heap_pages` pages of [`PAGE`] bytes belongs to one
//! (application, heap id). Each committed version is a copy-on-write
//! two-level tree in the tier's data area:
//!
//! - a **page block** ([`PAGE`] bytes) per written page;
//! - a **leaf** ([`LEAF_BYTES`]) per [`LEAF_ENTRIES`] consecutive pages:
//!   `(data-area offset, CRC-32C)` of each page, [`NONE`] for a page
//!   never written;
//! - a **root** ([`Root`]): the heap's parameters, the version number, the
//!   application's non-heap state (an extent) and `(offset, CRC)` of every
//!   leaf. The root is a record-table set under a reserved object id
//!   ([`root_object`]), so a version appears with the hardware's atomic
//!   index commit.
//!
//! A checkpoint writes its dirty pages, the leaves they touch and a root:
//! its cost follows the pages that changed. Versions share everything
//! they did not change; [`Used`] counts references so a block is free
//! only when no root, leaf or staged page references it.

use hitless_hdl::contract::crc32c;
use std::collections::BTreeMap;
use thiserror::Error;

/// Bytes of a heap page.
pub const PAGE: usize = hitless_proto::msg::HEAP_PAGE_BYTES;
/// Pages one leaf maps.
pub const LEAF_ENTRIES: usize = 64;
/// Bytes of a leaf: `(offset, crc)` per page.
pub const LEAF_BYTES: usize = LEAF_ENTRIES * 8;
/// A page or leaf that does not exist.
pub const NONE: u32 = u32::MAX;
pub const ROOT_MAGIC: [u8; 8] = *b"HTLSHR01";
pub const ROOT_HEADER: usize = 64;
/// Object ids `0xFFFF_0000..=0xFFFF_FFFF` are the heap roots': ordinary
/// STOREs and DELETEs of them are refused.
pub const RESERVED_OBJECTS: u32 = hitless_proto::msg::HEAP_ROOT_OBJECTS;
/// Heap ids are 0..MAX_HEAPS (8 bits of the root's object id).
pub const MAX_HEAPS: u32 = 256;
/// Most versions a heap keeps (`K`).
pub const MAX_KEEP: u32 = 64;
/// K when the opener does not say.
pub const DEFAULT_KEEP: u32 = 4;
/// Most pages a heap has (a root of at most 128 KiB: fits a transfer).
pub const MAX_HEAP_PAGES: u32 = 1 << 20;
/// Most pages one STAGE or READ request names.
pub const MAX_REQUEST_PAGES: usize = hitless_proto::msg::HEAP_REQUEST_PAGES;

/// Whether an object id belongs to the heap store.
pub fn is_reserved(object: u32) -> bool {
    object & RESERVED_OBJECTS == RESERVED_OBJECTS
}

/// The object id of heap `heap`'s root in `slot` (the version modulo 256:
/// with K <= 64 a new version's slot never holds a kept one).
pub fn root_object(heap: u32, version: u64) -> u32 {
    RESERVED_OBJECTS | ((heap & 0xFF) << 8) | (version & 0xFF) as u32
}

/// The heap id a root object id belongs to.
pub use hitless_proto::msg::heap_of_object;

/// Leaves of a heap of `pages` pages.
pub fn leaves_for(pages: u32) -> usize {
    (pages as usize).div_ceil(LEAF_ENTRIES)
}

/// Where something is in the data area and the CRC-32C of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ptr {
    pub offset: u32,
    pub crc: u32,
}

/// Why a root or leaf could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HeapError {
    #[error("not a heap root")]
    NotRoot,
    #[error("heap root damaged: {0}")]
    Damaged(&'static str),
    #[error("heap leaf damaged: {0}")]
    Leaf(&'static str),
}

/// A leaf: the pages of one [`LEAF_ENTRIES`] range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf(pub [Option<Ptr>; LEAF_ENTRIES]);

impl Default for Leaf {
    fn default() -> Self {
        Leaf([None; LEAF_ENTRIES])
    }
}

impl Leaf {
    pub fn encode(&self) -> [u8; LEAF_BYTES] {
        let mut b = [0u8; LEAF_BYTES];
        for (i, p) in self.0.iter().enumerate() {
            let (o, c) = p.map_or((NONE, 0), |p| (p.offset, p.crc));
            b[8 * i..8 * i + 4].copy_from_slice(&o.to_le_bytes());
            b[8 * i + 4..8 * i + 8].copy_from_slice(&c.to_le_bytes());
        }
        b
    }

    /// Parse a leaf whose pages must lie in a data area of `data_size` bytes.
    pub fn decode(b: &[u8], data_size: u32) -> Result<Self, HeapError> {
        if b.len() != LEAF_BYTES {
            return Err(HeapError::Leaf("length"));
        }
        let mut l = Leaf::default();
        for i in 0..LEAF_ENTRIES {
            let o = u32::from_le_bytes([b[8 * i], b[8 * i + 1], b[8 * i + 2], b[8 * i + 3]]);
            let c = u32::from_le_bytes([b[8 * i + 4], b[8 * i + 5], b[8 * i + 6], b[8 * i + 7]]);
            if o == NONE {
                continue;
            }
            if !o.is_multiple_of(8) || o as u64 + PAGE as u64 > data_size as u64 {
                return Err(HeapError::Leaf("page outside the data area"));
            }
            l.0[i] = Some(Ptr { offset: o, crc: c });
        }
        Ok(l)
    }
}

/// One committed version of a heap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root {
    pub heap: u32,
    pub heap_pages: u32,
    pub keep: u32,
    pub version: u64,
    /// Pages staged into this version (written since its base).
    pub written: u32,
    /// The application's non-heap state: where, its CRC, its length.
    pub state: Option<(Ptr, u32)>,
    /// Each leaf's place and CRC (`None`: no page of it was ever written).
    pub leaves: Vec<Option<Ptr>>,
}

impl Root {
    /// The empty heap (version 0: nothing committed).
    pub fn empty(heap: u32, heap_pages: u32, keep: u32) -> Self {
        Self {
            heap,
            heap_pages,
            keep,
            version: 0,
            written: 0,
            state: None,
            leaves: vec![None; leaves_for(heap_pages)],
        }
    }

    pub fn encoded_len(&self) -> usize {
        ROOT_HEADER + 8 * self.leaves.len()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.encoded_len()];
        b[..8].copy_from_slice(&ROOT_MAGIC);
        let (sp, sl) = self.state.unwrap_or((
            Ptr {
                offset: NONE,
                crc: 0,
            },
            0,
        ));
        let words = [
            self.heap,
            self.heap_pages,
            self.keep,
            self.written,
            (self.version & 0xFFFF_FFFF) as u32,
            (self.version >> 32) as u32,
            sp.offset,
            sl,
            sp.crc,
            self.leaves.len() as u32,
        ];
        for (i, w) in words.into_iter().enumerate() {
            b[8 + 4 * i..12 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        for (i, l) in self.leaves.iter().enumerate() {
            let (o, c) = l.map_or((NONE, 0), |p| (p.offset, p.crc));
            let at = ROOT_HEADER + 8 * i;
            b[at..at + 4].copy_from_slice(&o.to_le_bytes());
            b[at + 4..at + 8].copy_from_slice(&c.to_le_bytes());
        }
        let crc = crc32c(&b);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parse and check a root (its CRC, sizes, every extent inside a data
    /// area of `data_size` bytes).
    pub fn decode(b: &[u8], data_size: u32) -> Result<Self, HeapError> {
        if b.len() < ROOT_HEADER || b[..8] != ROOT_MAGIC {
            return Err(HeapError::NotRoot);
        }
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let w = |i: usize| u(8 + 4 * i);
        let (heap, heap_pages, keep) = (w(0), w(1), w(2));
        let version = w(4) as u64 | (w(5) as u64) << 32;
        let n = w(9) as usize;
        if heap_pages == 0 || heap_pages > MAX_HEAP_PAGES || n != leaves_for(heap_pages) {
            return Err(HeapError::Damaged("page count"));
        }
        if b.len() != ROOT_HEADER + 8 * n {
            return Err(HeapError::Damaged("length"));
        }
        let mut z = b.to_vec();
        z[48..52].fill(0);
        if crc32c(&z) != u(48) {
            return Err(HeapError::Damaged("CRC"));
        }
        if keep == 0 || keep > MAX_KEEP || heap >= MAX_HEAPS {
            return Err(HeapError::Damaged("parameters"));
        }
        let inside = |o: u32, len: u64| o.is_multiple_of(8) && o as u64 + len <= data_size as u64;
        let state = match w(6) {
            NONE => None,
            o if inside(o, crate::records::align8(w(7) as usize) as u64) => Some((
                Ptr {
                    offset: o,
                    crc: w(8),
                },
                w(7),
            )),
            _ => return Err(HeapError::Damaged("state outside the data area")),
        };
        let mut leaves = Vec::with_capacity(n);
        for i in 0..n {
            let at = ROOT_HEADER + 8 * i;
            leaves.push(match u(at) {
                NONE => None,
                o if inside(o, LEAF_BYTES as u64) => Some(Ptr {
                    offset: o,
                    crc: u(at + 4),
                }),
                _ => return Err(HeapError::Damaged("leaf outside the data area")),
            });
        }
        Ok(Self {
            heap,
            heap_pages,
            keep,
            version,
            written: w(3),
            state,
            leaves,
        })
    }
}

/// Blocks of one tier's data area the heap store uses, with reference
/// counts: a page block is referenced by each leaf that maps it (and by
/// the staging map while staged), a leaf and a state extent by each root
/// that lists it. The record table's allocator avoids them; the heap's
/// allocator avoids them and the table's sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Used {
    /// offset -> (8-aligned length, references)
    pub blocks: BTreeMap<u32, (u32, u32)>,
}

impl Used {
    /// One more reference to the extent at `off` (a new extent when absent).
    pub fn add(&mut self, off: u32, len: u32) {
        let e = self
            .blocks
            .entry(off)
            .or_insert((crate::records::align8(len as usize) as u32, 0));
        e.1 += 1;
    }

    /// One reference fewer; true when the extent is now free.
    pub fn release(&mut self, off: u32) -> bool {
        match self.blocks.get_mut(&off) {
            Some(e) if e.1 > 1 => {
                e.1 -= 1;
                false
            }
            Some(_) => {
                self.blocks.remove(&off);
                true
            }
            None => false,
        }
    }

    pub fn refs(&self, off: u32) -> u32 {
        self.blocks.get(&off).map_or(0, |e| e.1)
    }

    /// The extents in use, `(offset, length)`, by offset.
    pub fn extents(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.blocks.iter().map(|(o, (l, _))| (*o as u64, *l as u64))
    }

    pub fn bytes(&self) -> u64 {
        self.blocks.values().map(|(l, _)| *l as u64).sum()
    }
}

/// First fit of `len` bytes (8-aligned) in a data area of `size` bytes
/// avoiding `used` extents (any order; they may overlap each other).
pub fn first_fit(len: u64, size: u64, used: &mut [(u64, u64)]) -> Option<u32> {
    let need = len.div_ceil(8) * 8;
    if need == 0 {
        return Some(0);
    }
    used.sort_unstable();
    let mut at = 0u64;
    for &(off, l) in used.iter() {
        if l == 0 {
            continue;
        }
        if off >= at + need {
            break;
        }
        at = at.max(off + l);
    }
    (at + need <= size).then_some(at as u32)
}

/// The largest piece [`first_fit`] could place.
pub fn largest_free(size: u64, used: &mut [(u64, u64)]) -> u64 {
    used.sort_unstable();
    let mut at = 0u64;
    let mut best = 0u64;
    for &(off, l) in used.iter() {
        if l == 0 {
            continue;
        }
        best = best.max(off.saturating_sub(at));
        at = at.max(off + l);
    }
    best.max(size.saturating_sub(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Entry, SetKey, Table};
    use proptest::prelude::*;

    #[test]
    fn root_and_leaf_round_trip_and_damage_is_detected() {
        let mut r = Root::empty(3, 200, 4);
        assert_eq!(r.leaves.len(), 4);
        r.version = (7u64 << 32) | 9;
        r.written = 11;
        r.state = Some((Ptr { offset: 64, crc: 5 }, 10));
        r.leaves[1] = Some(Ptr {
            offset: 4096,
            crc: 77,
        });
        let b = r.encode();
        assert_eq!(Root::decode(&b, 1 << 20), Ok(r.clone()));
        let mut bad = b.clone();
        bad[ROOT_HEADER + 9] ^= 1;
        assert_eq!(Root::decode(&bad, 1 << 20), Err(HeapError::Damaged("CRC")));
        assert_eq!(
            Root::decode(&b, 4096),
            Err(HeapError::Damaged("leaf outside the data area"))
        );
        assert_eq!(Root::decode(b"HTLSRT03", 1 << 20), Err(HeapError::NotRoot));
        let mut l = Leaf::default();
        l.0[3] = Some(Ptr {
            offset: 8192,
            crc: 1,
        });
        assert_eq!(Leaf::decode(&l.encode(), 1 << 20), Ok(l.clone()));
        assert!(Leaf::decode(&l.encode(), 8192).is_err());
        assert!(Leaf::decode(&[0; 3], 8192).is_err());
    }

    #[test]
    fn reserved_ids() {
        assert!(is_reserved(root_object(5, 300)));
        assert_eq!(heap_of_object(root_object(5, 300)), Some(5));
        assert_eq!(root_object(5, 300) & 0xFF, 300 & 0xFF);
        assert!(!is_reserved(0xFFFE_FFFF));
        assert_eq!(heap_of_object(12), None);
    }

    #[test]
    fn references_free_only_at_zero() {
        let mut u = Used::default();
        u.add(0, 4096);
        u.add(0, 4096);
        assert!(!u.release(0));
        assert_eq!(u.refs(0), 1);
        assert!(u.release(0));
        assert!(!u.release(0));
        assert_eq!(u.bytes(), 0);
    }

    proptest! {
        /// Random record stores, heap checkpoints (page blocks, leaves,
        /// roots as sets) and version drops over one data area: nothing
        /// allocated ever overlaps a live set, page, leaf or state extent,
        /// and a replaced thing's old copy is intact until its commit.
        #[test]
        fn allocation_never_overlaps_anything_live(ops in proptest::collection::vec((0u8..4, 0u32..6, 1usize..700, any::<u8>()), 1..80)) {
            const SIZE: u64 = 64 * 1024;
            let mut table = Table::default();
            let mut used = Used::default();
            let mut area = vec![0x55u8; SIZE as usize];
            // Live things and the bytes they must hold.
            let mut live_sets: BTreeMap<SetKey, Vec<u8>> = BTreeMap::new();
            let mut live_blocks: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
            let mut versions: Vec<Vec<u32>> = Vec::new();
            let check = |area: &[u8], sets: &BTreeMap<SetKey, Vec<u8>>, table: &Table, blocks: &BTreeMap<u32, Vec<u8>>| -> Result<(), TestCaseError> {
                for (k, d) in sets {
                    let e = table.sets[k];
                    prop_assert_eq!(&area[e.offset as usize..e.offset as usize + d.len()], &d[..]);
                }
                for (o, d) in blocks {
                    prop_assert_eq!(&area[*o as usize..*o as usize + d.len()], &d[..]);
                }
                Ok(())
            };
            for (n, (op, object, len, byte)) in ops.into_iter().enumerate() {
                match op {
                    // An ordinary set store.
                    0 => {
                        let data = vec![byte; len];
                        let extra: Vec<(u64, u64)> = used.extents().collect();
                        let Some(off) = table.allocate(len as u32, SIZE as u32, &extra) else {
                            prop_assert!(table.largest_free(SIZE as u32, &extra) < len as u64);
                            continue;
                        };
                        area[off as usize..off as usize + len].copy_from_slice(&data);
                        check(&area, &live_sets, &table, &live_blocks)?;
                        let key = SetKey { app: 1, object };
                        table.sets.insert(key, Entry { endpoint: 0, stage: 0, flags: 0, len: len as u32, crc: crc32c(&data), offset: off, version: n as u64 });
                        live_sets.insert(key, data);
                    }
                    // A checkpoint: `object` pages and a leaf, each a block.
                    1 | 2 => {
                        let mut mine = Vec::new();
                        let mut ok = true;
                        for i in 0..=object {
                            let l = if i == 0 { LEAF_BYTES } else { PAGE } as u64;
                            let mut ext: Vec<(u64, u64)> = table.sets.values().map(|e| (e.offset as u64, crate::records::align8(e.len as usize) as u64)).chain(used.extents()).collect();
                            let Some(off) = first_fit(l, SIZE, &mut ext) else { ok = false; break };
                            let data = vec![byte.wrapping_add(i as u8); l as usize];
                            area[off as usize..off as usize + l as usize].copy_from_slice(&data);
                            check(&area, &live_sets, &table, &live_blocks)?;
                            used.add(off, l as u32);
                            live_blocks.insert(off, data);
                            mine.push(off);
                        }
                        if !ok {
                            for o in mine {
                                if used.release(o) { live_blocks.remove(&o); }
                            }
                            continue;
                        }
                        // Share the previous version's first block (an unchanged page).
                        if let Some(prev) = versions.last().and_then(|v| v.first().copied()) {
                            used.add(prev, PAGE as u32);
                            mine.push(prev);
                        }
                        versions.push(mine);
                    }
                    // Drop the oldest version.
                    _ => {
                        if !versions.is_empty() {
                            for o in versions.remove(0) {
                                if used.release(o) { live_blocks.remove(&o); }
                            }
                        }
                    }
                }
                check(&area, &live_sets, &table, &live_blocks)?;
            }
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = Leaf::decode(&bytes, 1 << 20);
            let mut framed = ROOT_MAGIC.to_vec();
            framed.extend_from_slice(&bytes);
            let _ = Root::decode(&framed, 1 << 20);
            let _ = Root::decode(&bytes, 1 << 20);
        }
    }
}
