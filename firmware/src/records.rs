//! The record table: many applications' sets in one tier (seed 000,
//! claims 1-6, 11, 23). The region image is the table's index only; each
//! set's bytes live in the tier's data area (`NvGeometry::data_base`), in
//! space the committed index does not reference, so a store writes the
//! set's bytes and the part of the index that changed: its cost follows
//! the set, not the bytes or the number of sets the tier holds.
//!
//! The index has two forms. A table of at most [`LEAF_SETS`] sets is
//! **inline**: the region image is the whole index (`HTLSRT03`). A larger
//! table is **paged**: the region image is a small root (`HTLSRT04`) that
//! references leaves of at most [`LEAF_SETS`] entries each, kept in the
//! data area in two copies, written copy-on-write like the sets (a store
//! rewrites the one leaf it changes, then commits the root).
//!
//! Inline image and leaf layout (little endian; a leaf has magic
//! `HTLSLF01` and lives in the data area):
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic `HTLSRT03` (leaf: `HTLSLF01`) |
//! | 8..12 | number of records `n` |
//! | 12..16 | bytes of the data area the sets occupy (8-aligned extents) |
//! | 16..20 | CRC-32C of the header (this field zero) and the entries |
//! | 20..32 | reserved, zero |
//! | 32.. | `n` entries of 48 bytes, sorted by (app, object) |
//!
//! Entry: app, object, endpoint, stage, flags, len, crc, offset (u32 each;
//! `offset` is the set's byte offset in the data area, 8-aligned), version
//! (u64: the store counter, so the newer of two copies of a set in
//! different tiers wins), 8 reserved bytes.
//!
//! Paged root layout:
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic `HTLSRT04` |
//! | 8..12 | number of leaves `m` |
//! | 12..16 | number of sets |
//! | 16..20 | CRC-32C of the header (this field zero) and the references |
//! | 20..24 | bytes of the data area the sets occupy |
//! | 24..32 | reserved, zero |
//! | 32.. | `m` leaf references of 32 bytes, by first key |
//!
//! Leaf reference: first key's app and object, number of sets, bytes of
//! one copy, CRC-32C of the leaf, data-area offsets of copy 0 and copy 1
//! (u32 each), 4 reserved bytes. Leaf `i` holds the keys from its first
//! key up to the next leaf's first key.
//!
//! The table (index) is all the firmware keeps in memory; set data moves
//! host to NV (WRITE) and NV to host (READ), checked against its CRC.

use hitless_hdl::contract::crc32c;
use std::collections::BTreeMap;
use thiserror::Error;

pub const TABLE_MAGIC: [u8; 8] = *b"HTLSRT03";
/// The root of a paged index.
pub const ROOT_MAGIC: [u8; 8] = *b"HTLSRT04";
/// A leaf of a paged index (in the data area).
pub const LEAF_MAGIC: [u8; 8] = *b"HTLSLF01";
pub const HEADER: usize = 32;
pub const ENTRY: usize = 48;
/// Bytes of one leaf reference in a paged root.
pub const LEAF_REF: usize = 32;
/// Most sets of an inline index, and of one leaf of a paged one. A store
/// into a paged index writes one leaf twice (2 × 1568 bytes at most) and a
/// root of 32 bytes a leaf: 32 keeps both small next to a 4 KiB set
/// (`store_4KiB_cost_ratio_1000_sets`, docs/firmware.md).
pub const LEAF_SETS: usize = 32;

/// A set's identity: one set per (application, object).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetKey {
    pub app: u32,
    pub object: u32,
}

/// What the table records of one set (its data is in the data area at `offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub endpoint: u32,
    /// Reboot stage at which the set is delivered.
    pub stage: u32,
    /// Request flags the set was stored with (`msg::flags`).
    pub flags: u32,
    pub len: u32,
    pub crc: u32,
    /// Byte offset of the data in the tier's data area (8-aligned;
    /// assigned by [`Table::allocate`]).
    pub offset: u32,
    /// Store counter at the time the set was stored.
    pub version: u64,
}

/// Where one leaf of a paged index is: two copies of the same bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafRef {
    /// The leaf's lowest key (its sets run up to the next leaf's).
    pub first: SetKey,
    pub count: u32,
    /// Bytes of one copy.
    pub len: u32,
    pub crc: u32,
    /// Data-area offsets of the two copies (8-aligned, disjoint).
    pub copies: [u32; 2],
}

/// Why a table head could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("the region does not hold a record table")]
    NoTable,
    #[error("record table damaged: {0}")]
    Damaged(&'static str),
}

/// All sets of a region, by key, and (for a paged index) where its leaves
/// are. `leaves` describes the committed layout of `sets`; after changing
/// `sets`, [`Table::relayout`] brings it up to date.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub sets: BTreeMap<SetKey, Entry>,
    /// Empty for an inline index.
    pub leaves: Vec<LeafRef>,
}

/// A region image, decoded: the whole index, or the root of a paged one
/// (its leaves still to be read, see [`Table::assemble`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Head {
    Inline(Table),
    Paged(Vec<LeafRef>),
}

pub fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Bytes of the head (header and entries, padded to 8) of a table of `n`
/// sets; also of a leaf of `n` sets.
pub fn head_len(n: usize) -> usize {
    align8(HEADER + ENTRY * n)
}

/// Bytes of a paged root of `m` leaves.
pub fn root_len(m: usize) -> usize {
    HEADER + LEAF_REF * m
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Header, entries and CRC of an inline index or a leaf.
fn encode_entries<'a>(
    magic: &[u8; 8],
    n: usize,
    sets: impl Iterator<Item = (&'a SetKey, &'a Entry)>,
) -> Vec<u8> {
    let mut img = vec![0u8; head_len(n)];
    img[..8].copy_from_slice(magic);
    img[8..12].copy_from_slice(&(n as u32).to_le_bytes());
    let mut data = 0u64;
    for (i, (k, e)) in sets.enumerate() {
        let at = HEADER + i * ENTRY;
        let words = [
            k.app, k.object, e.endpoint, e.stage, e.flags, e.len, e.crc, e.offset,
        ];
        for (j, v) in words.into_iter().enumerate() {
            img[at + 4 * j..at + 4 * j + 4].copy_from_slice(&v.to_le_bytes());
        }
        img[at + 32..at + 40].copy_from_slice(&e.version.to_le_bytes());
        data += align8(e.len as usize) as u64;
    }
    img[12..16].copy_from_slice(&(data.min(u32::MAX as u64) as u32).to_le_bytes());
    let crc = crc32c(&img);
    img[16..20].copy_from_slice(&crc.to_le_bytes());
    img
}

/// Check the CRC at 16..20 of `head` (computed with that field zero).
fn crc_ok(head: &[u8]) -> bool {
    let mut zeroed = head.to_vec();
    zeroed[16..20].fill(0);
    crc32c(&zeroed) == u32_at(head, 16)
}

/// Parse an inline index or a leaf with `magic`: its CRC, key order, and
/// that every set lies 8-aligned inside a data area of `data_size` bytes
/// (overlaps are checked on the whole table).
fn decode_entries(
    magic: &[u8; 8],
    img: &[u8],
    data_size: usize,
) -> Result<BTreeMap<SetKey, Entry>, RecordError> {
    if img.len() < HEADER || img[..8] != *magic {
        return Err(RecordError::NoTable);
    }
    let n = u32_at(img, 8) as usize;
    if n > MAX_ENTRIES || img.len() < head_len(n) {
        return Err(RecordError::Damaged("entry count beyond the head"));
    }
    let head = &img[..head_len(n)];
    if !crc_ok(head) {
        return Err(RecordError::Damaged("head CRC"));
    }
    let u = |i: usize| u32_at(head, i);
    let mut sets = BTreeMap::new();
    let mut last_key = None;
    for i in 0..n {
        let at = HEADER + i * ENTRY;
        let key = SetKey {
            app: u(at),
            object: u(at + 4),
        };
        if last_key.is_some_and(|k| k >= key) {
            return Err(RecordError::Damaged("entries out of order"));
        }
        last_key = Some(key);
        let mut v = [0u8; 8];
        v.copy_from_slice(&head[at + 32..at + 40]);
        let e = Entry {
            endpoint: u(at + 8),
            stage: u(at + 12),
            flags: u(at + 16),
            len: u(at + 20),
            crc: u(at + 24),
            offset: u(at + 28),
            version: u64::from_le_bytes(v),
        };
        if !e.offset.is_multiple_of(8) || e.offset as usize + align8(e.len as usize) > data_size {
            return Err(RecordError::Damaged("set outside the data area"));
        }
        sets.insert(key, e);
    }
    Ok(sets)
}

impl Table {
    /// Bytes of the region image: the inline index or the paged root.
    pub fn end(&self) -> usize {
        if !self.leaves.is_empty() {
            root_len(self.leaves.len())
        } else if self.sets.is_empty() {
            0
        } else {
            head_len(self.sets.len())
        }
    }

    /// Bytes of the data area the leaves of a paged index occupy (both
    /// copies).
    pub fn leaf_bytes(&self) -> u64 {
        self.leaves
            .iter()
            .map(|l| 2 * align8(l.len as usize) as u64)
            .sum()
    }

    /// Bytes of the data area the sets occupy.
    pub fn data_bytes(&self) -> u64 {
        self.sets
            .values()
            .map(|e| align8(e.len as usize) as u64)
            .sum()
    }

    /// The data-area extents the sets use, `(offset, 8-aligned length)`.
    fn set_only_extents(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.sets
            .values()
            .filter(|e| e.len > 0)
            .map(|e| (e.offset as u64, align8(e.len as usize) as u64))
    }

    /// The data-area extents in use by the sets and the leaves, `(offset,
    /// 8-aligned length)`, by offset.
    fn extents(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self.set_only_extents().collect();
        for l in &self.leaves {
            for c in l.copies {
                v.push((c as u64, align8(l.len as usize) as u64));
            }
        }
        v.sort_unstable();
        v
    }

    /// Where a set of `len` bytes can go in a data area of `size` bytes
    /// without touching any set or leaf of this table or any of the `extra`
    /// extents (the heap store's blocks: `heap::Used`), first fit. The set
    /// being replaced keeps its extent: its old bytes must stay intact
    /// until the new index is committed (a power cut before leaves the old
    /// set).
    pub fn allocate(&self, len: u32, size: u32, extra: &[(u64, u64)]) -> Option<u32> {
        let mut ext = self.extents();
        ext.extend_from_slice(extra);
        crate::heap::first_fit(len as u64, size as u64, &mut ext)
    }

    /// The largest set that [`Table::allocate`] could place now.
    pub fn largest_free(&self, size: u32, extra: &[(u64, u64)]) -> u64 {
        let mut ext = self.extents();
        ext.extend_from_slice(extra);
        crate::heap::largest_free(size as u64, &mut ext)
    }

    /// The data-area extents the table uses, `(offset, 8-aligned length)`:
    /// its sets and the leaves of its index.
    pub fn set_extents(&self) -> Vec<(u64, u64)> {
        self.extents()
    }

    /// The region image: the inline index, or the root of a paged one.
    pub fn encode_head(&self) -> Vec<u8> {
        if self.leaves.is_empty() {
            return encode_entries(&TABLE_MAGIC, self.sets.len(), self.sets.iter());
        }
        let mut img = vec![0u8; root_len(self.leaves.len())];
        img[..8].copy_from_slice(&ROOT_MAGIC);
        img[8..12].copy_from_slice(&(self.leaves.len() as u32).to_le_bytes());
        img[12..16].copy_from_slice(&(self.sets.len() as u32).to_le_bytes());
        img[20..24].copy_from_slice(&(self.data_bytes().min(u32::MAX as u64) as u32).to_le_bytes());
        for (i, l) in self.leaves.iter().enumerate() {
            let at = HEADER + i * LEAF_REF;
            let words = [
                l.first.app,
                l.first.object,
                l.count,
                l.len,
                l.crc,
                l.copies[0],
                l.copies[1],
            ];
            for (j, v) in words.into_iter().enumerate() {
                img[at + 4 * j..at + 4 * j + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        let crc = crc32c(&img);
        img[16..20].copy_from_slice(&crc.to_le_bytes());
        img
    }

    /// The bytes of the region image a head announces (from its first
    /// `HEADER` bytes), so the reader knows how much more to fetch.
    pub fn head_size(header: &[u8]) -> Result<usize, RecordError> {
        if header.len() < HEADER {
            return Err(RecordError::NoTable);
        }
        let n = u32_at(header, 8) as usize;
        if header[..8] == TABLE_MAGIC {
            if n > MAX_ENTRIES {
                return Err(RecordError::Damaged("entry count beyond the bound"));
            }
            Ok(head_len(n))
        } else if header[..8] == ROOT_MAGIC {
            if n == 0 || n > MAX_LEAVES {
                return Err(RecordError::Damaged("leaf count beyond the bound"));
            }
            Ok(root_len(n))
        } else {
            Err(RecordError::NoTable)
        }
    }

    /// Parse a region image (its [`Table::head_size`] bytes at least). An
    /// inline index is checked whole: its CRC, key order, and that every
    /// set lies inside a data area of `data_size` bytes, 8-aligned,
    /// overlapping no other set. A paged root is checked as far as it
    /// goes: its CRC, leaf keys in order, counts within a leaf, copies
    /// inside the data area.
    pub fn decode_head(img: &[u8], data_size: usize) -> Result<Head, RecordError> {
        let size = Self::head_size(img)?;
        if img.len() < size {
            return Err(RecordError::Damaged("entry count beyond the head"));
        }
        if img[..8] == TABLE_MAGIC {
            let t = Self {
                sets: decode_entries(&TABLE_MAGIC, img, data_size)?,
                leaves: Vec::new(),
            };
            t.check_disjoint()?;
            return Ok(Head::Inline(t));
        }
        let root = &img[..size];
        if !crc_ok(root) {
            return Err(RecordError::Damaged("root CRC"));
        }
        let m = u32_at(root, 8) as usize;
        let mut leaves: Vec<LeafRef> = Vec::with_capacity(m);
        let mut total = 0u64;
        for i in 0..m {
            let at = HEADER + i * LEAF_REF;
            let w = |j: usize| u32_at(root, at + 4 * j);
            let l = LeafRef {
                first: SetKey {
                    app: w(0),
                    object: w(1),
                },
                count: w(2),
                len: w(3),
                crc: w(4),
                copies: [w(5), w(6)],
            };
            if leaves.last().is_some_and(|p| p.first >= l.first) {
                return Err(RecordError::Damaged("leaves out of order"));
            }
            if l.count == 0
                || l.count as usize > LEAF_SETS
                || l.len as usize != head_len(l.count as usize)
            {
                return Err(RecordError::Damaged("a leaf's size"));
            }
            if l.copies
                .iter()
                .any(|&c| !c.is_multiple_of(8) || c as usize + align8(l.len as usize) > data_size)
            {
                return Err(RecordError::Damaged("leaf outside the data area"));
            }
            total += l.count as u64;
            leaves.push(l);
        }
        if total != u32_at(root, 12) as u64 {
            return Err(RecordError::Damaged("the leaves' counts and the root's"));
        }
        Ok(Head::Paged(leaves))
    }

    /// Whether `bytes` are the leaf `r` references (its length and CRC).
    pub fn leaf_ok(r: &LeafRef, bytes: &[u8]) -> bool {
        bytes.len() == r.len as usize && crc32c(bytes) == r.crc
    }

    /// The table a paged root (`refs`) and its leaves' bytes (one good
    /// copy each, in order) describe, checked whole: each leaf's CRC and
    /// entries, its keys from its first key up to the next leaf's, every
    /// set and leaf copy inside the data area and overlapping nothing.
    pub fn assemble(
        refs: &[LeafRef],
        leaves: &[Vec<u8>],
        data_size: usize,
    ) -> Result<Self, RecordError> {
        if refs.len() != leaves.len() {
            return Err(RecordError::Damaged("a leaf missing"));
        }
        let mut sets = BTreeMap::new();
        for (i, (r, bytes)) in refs.iter().zip(leaves).enumerate() {
            if !Self::leaf_ok(r, bytes) {
                return Err(RecordError::Damaged("leaf CRC"));
            }
            let part = decode_entries(&LEAF_MAGIC, bytes, data_size)?;
            let next = refs.get(i + 1).map(|n| n.first);
            if part.len() != r.count as usize
                || part.keys().next() != Some(&r.first)
                || next.is_some_and(|n| part.keys().next_back().is_some_and(|k| *k >= n))
            {
                return Err(RecordError::Damaged("a leaf's keys and its reference"));
            }
            sets.extend(part);
        }
        let t = Self {
            sets,
            leaves: refs.to_vec(),
        };
        t.check_disjoint()?;
        Ok(t)
    }

    fn check_disjoint(&self) -> Result<(), RecordError> {
        let ext = self.extents();
        if ext.windows(2).any(|w| w[0].0 + w[0].1 > w[1].0) {
            return Err(RecordError::Damaged("two sets share data-area bytes"));
        }
        Ok(())
    }

    /// Lay out the index of this table, whose sets changed from the
    /// committed `old`, in a data area of `size` bytes: inline up to
    /// [`LEAF_SETS`] sets, else paged, its leaves bounded by the old
    /// leaves' first keys so that a change touches the leaf holding it
    /// (a leaf beyond [`LEAF_SETS`] splits, an empty one goes, two small
    /// neighbours merge). A leaf whose entries did not change keeps its
    /// copies; a changed one gets two new copies, placed where neither
    /// `old` (sets and leaves), this table's sets, nor `extra` are.
    /// Returns what to write, `(offset, bytes)`: per changed leaf its two
    /// copies side by side in one extent; `None` when the data area has no
    /// room for them.
    pub fn relayout(
        &mut self,
        old: &Table,
        size: u32,
        extra: &[(u64, u64)],
    ) -> Option<Vec<(u32, Vec<u8>)>> {
        self.leaves.clear();
        if self.sets.len() <= LEAF_SETS {
            return Some(Vec::new());
        }
        let keys: Vec<SetKey> = self.sets.keys().copied().collect();
        // Partition by the old leaves' first keys (the first leaf also
        // takes any key below its own first).
        let mut cuts: Vec<usize> = old
            .leaves
            .iter()
            .skip(1)
            .map(|l| keys.partition_point(|k| *k < l.first))
            .collect();
        cuts.push(keys.len());
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut start = 0;
        for c in cuts {
            if c > start {
                // Two small neighbours become one: keeps the number of
                // leaves within 4 n / LEAF_SETS + 1 whatever was deleted.
                match groups.last_mut() {
                    Some(g) if (g.1 - g.0) + (c - start) <= LEAF_SETS / 2 => g.1 = c,
                    _ => groups.push((start, c)),
                }
                start = c;
            }
        }
        let mut used = old.extents();
        used.extend(self.set_only_extents());
        used.extend_from_slice(extra);
        let mut writes = Vec::new();
        for (s, e) in groups {
            let pieces = (e - s).div_ceil(LEAF_SETS);
            for p in 0..pieces {
                let (a, b) = (s + (e - s) * p / pieces, s + (e - s) * (p + 1) / pieces);
                let first = keys[a];
                let count = b - a;
                let same = old.leaves.iter().find(|l| {
                    l.first == first
                        && l.count as usize == count
                        && old
                            .sets
                            .range(first..)
                            .take(count)
                            .eq(self.sets.range(first..).take(count))
                });
                if let Some(l) = same {
                    self.leaves.push(*l);
                    continue;
                }
                let bytes =
                    encode_entries(&LEAF_MAGIC, count, self.sets.range(first..).take(count));
                // The two copies side by side, written by one WRITE: a
                // controller operation costs far more than a leaf's bytes
                // (docs/firmware.md, "Why a paged index").
                let both = [&bytes[..], &bytes[..]].concat();
                let at = crate::heap::first_fit(both.len() as u64, size as u64, &mut used)?;
                used.push((at as u64, both.len() as u64));
                self.leaves.push(LeafRef {
                    first,
                    count: count as u32,
                    len: bytes.len() as u32,
                    crc: crc32c(&bytes),
                    copies: [at, at + bytes.len() as u32],
                });
                writes.push((at, both));
            }
        }
        Some(writes)
    }

    /// Sets to deliver at reboot stage `stage`, in key order.
    pub fn at_stage(&self, stage: u32) -> impl Iterator<Item = (&SetKey, &Entry)> {
        self.sets.iter().filter(move |(_, e)| e.stage == stage)
    }
}

/// The most entries an index may announce (a bound for a damaged count).
pub const MAX_ENTRIES: usize = 1 << 16;
/// The most leaves a paged root may announce (a bound for a damaged
/// count; the firmware's `MAX_SETS` keeps real roots far below).
pub const MAX_LEAVES: usize = 1 << 13;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(stage: u32, data: &[u8], version: u64) -> Entry {
        Entry {
            endpoint: 0,
            stage,
            flags: 0,
            len: data.len() as u32,
            crc: crc32c(data),
            offset: 0,
            version,
        }
    }

    #[test]
    fn head_round_trip_and_damage_detected() {
        let mut t = Table::default();
        let mut a = entry(0, b"abc", 1);
        a.offset = t.allocate(a.len, 4096, &[]).unwrap();
        t.sets.insert(SetKey { app: 1, object: 0 }, a);
        let mut b = entry(1, &[9; 100], 2);
        b.offset = t.allocate(b.len, 4096, &[]).unwrap();
        assert_eq!(
            b.offset, 8,
            "first fit after the 3-byte set's 8-byte extent"
        );
        t.sets.insert(SetKey { app: 2, object: 5 }, b);
        let head = t.encode_head();
        assert_eq!(head.len(), head_len(2));
        assert_eq!(t.end(), head.len());
        assert_eq!(t.data_bytes(), 8 + 104);
        assert_eq!(
            Table::decode_head(&head, 4096).unwrap(),
            Head::Inline(t.clone())
        );
        assert_eq!(Table::head_size(&head), Ok(head_len(2)));
        assert_eq!(
            Table::decode_head(b"garbage garbage garbage garbage!", 4096),
            Err(RecordError::NoTable)
        );
        let mut bad = head.clone();
        bad[HEADER + 20] ^= 1;
        assert_eq!(
            Table::decode_head(&bad, 4096),
            Err(RecordError::Damaged("head CRC"))
        );
        let mut bad = head.clone();
        bad[8] = 200;
        assert!(matches!(
            Table::decode_head(&bad, 4096),
            Err(RecordError::Damaged(_))
        ));
        assert_eq!(
            Table::decode_head(&head, 100),
            Err(RecordError::Damaged("set outside the data area")),
            "a set beyond the data area is refused"
        );
        assert_eq!(t.at_stage(1).count(), 1);
    }

    #[test]
    fn overlapping_sets_are_refused() {
        let mut t = Table::default();
        t.sets
            .insert(SetKey { app: 1, object: 0 }, entry(0, &[1; 64], 1));
        let mut e = entry(0, &[2; 64], 2);
        e.offset = 56;
        t.sets.insert(SetKey { app: 1, object: 1 }, e);
        assert_eq!(
            Table::decode_head(&t.encode_head(), 4096),
            Err(RecordError::Damaged("two sets share data-area bytes"))
        );
    }

    #[test]
    fn allocation_fills_holes_and_reports_a_full_area() {
        let mut t = Table::default();
        for (object, len) in [(0u32, 100u32), (1, 200), (2, 300)] {
            let mut e = entry(0, &vec![0; len as usize], 1);
            e.offset = t.allocate(len, 1024, &[]).unwrap();
            t.sets.insert(SetKey { app: 1, object }, e);
        }
        // 104 + 200 + 304 = 608 used; 416 free at the end.
        assert_eq!(t.largest_free(1024, &[]), 416);
        assert_eq!(t.allocate(417, 1024, &[]), None);
        t.sets.remove(&SetKey { app: 1, object: 1 });
        assert_eq!(t.allocate(200, 1024, &[]), Some(104), "the hole is reused");
        assert_eq!(
            t.allocate(0, 1024, &[]),
            Some(0),
            "an empty set needs no bytes"
        );
    }

    proptest! {
        /// Random store / resize / delete sequences on a data area: every
        /// new set goes where no committed set is (the old copy of the set
        /// being replaced included), the index round-trips, and every set
        /// reads back the bytes last stored for it.
        #[test]
        fn stores_never_touch_committed_bytes(ops in proptest::collection::vec((0u32..5, 0u32..3, 0usize..600, any::<u8>(), any::<bool>()), 1..60)) {
            const SIZE: u32 = 4096;
            let mut table = Table::default();
            let mut model: BTreeMap<SetKey, Vec<u8>> = BTreeMap::new();
            let mut area = vec![0x55u8; SIZE as usize];
            for (n, (app, object, len, byte, delete)) in ops.into_iter().enumerate() {
                let key = SetKey { app, object };
                if delete {
                    table.sets.remove(&key);
                    model.remove(&key);
                } else {
                    let data = vec![byte; len];
                    let mut e = entry(app % 3, &data, n as u64);
                    match table.allocate(e.len, SIZE, &[]) {
                        None => {
                            prop_assert!(table.largest_free(SIZE, &[]) < align8(len) as u64);
                            continue;
                        }
                        Some(off) => e.offset = off,
                    }
                    area[off_range(&e)].copy_from_slice(&data);
                    // The old copy was intact until the index commit.
                    for (k, old) in &table.sets {
                        prop_assert_eq!(&area[off_range(old)], &model[k][..]);
                    }
                    table.sets.insert(key, e);
                    model.insert(key, data);
                }
                let Head::Inline(decoded) = Table::decode_head(&table.encode_head(), SIZE as usize).unwrap() else { panic!("an inline index") };
                prop_assert_eq!(&decoded, &table);
                for (k, e) in &decoded.sets {
                    prop_assert_eq!(&area[off_range(e)], &model[k][..]);
                }
            }
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), count in any::<u32>()) {
            let _ = Table::decode_head(&bytes, 1 << 20);
            let mut framed = TABLE_MAGIC.to_vec();
            framed.extend_from_slice(&count.to_le_bytes());
            framed.extend_from_slice(&bytes);
            let _ = Table::decode_head(&framed, 1 << 20);
            let _ = Table::head_size(&framed);
        }
    }

    /// A data area in memory: the committed table's region image and the
    /// bytes of its sets and leaves.
    struct Area {
        bytes: Vec<u8>,
        image: Vec<u8>,
    }

    impl Area {
        fn new(size: usize) -> Self {
            Self {
                bytes: vec![0x55; size],
                image: Vec::new(),
            }
        }

        /// Commit `new` (changed from `old`): lay it out, write its leaves,
        /// then its image. Returns the table as committed.
        fn commit(&mut self, old: &Table, new: &Table) -> Option<Table> {
            let mut t = new.clone();
            let writes = t.relayout(old, self.bytes.len() as u32, &[])?;
            for (off, b) in &writes {
                // Never over bytes the committed table references.
                for (o, l) in old.extents() {
                    let (a, e) = (*off as u64, *off as u64 + align8(b.len()) as u64);
                    assert!(e <= o || a >= o + l, "a leaf over committed bytes");
                }
                self.bytes[*off as usize..*off as usize + b.len()].copy_from_slice(b);
            }
            self.image = t.encode_head();
            Some(t)
        }

        /// Read the committed table back as the firmware does at start.
        fn load(&self) -> Result<Table, RecordError> {
            let size = self.bytes.len();
            if self.image.is_empty() {
                return Ok(Table::default());
            }
            match Table::decode_head(&self.image, size)? {
                Head::Inline(t) => Ok(t),
                Head::Paged(refs) => {
                    let mut leaves = Vec::new();
                    for r in &refs {
                        let copy = |c: usize| {
                            let b = self.bytes[r.copies[c] as usize..][..r.len as usize].to_vec();
                            Table::leaf_ok(r, &b).then_some(b)
                        };
                        leaves.push(
                            copy(0)
                                .or_else(|| copy(1))
                                .ok_or(RecordError::Damaged("both copies"))?,
                        );
                    }
                    Table::assemble(&refs, &leaves, size)
                }
            }
        }
    }

    fn keyed(app: u32, object: u32) -> SetKey {
        SetKey { app, object }
    }

    /// Store `data` under `key` in `t` (committed in `area`).
    fn store(area: &mut Area, t: &Table, key: SetKey, data: &[u8], v: u64) -> Table {
        let mut e = entry(0, data, v);
        e.offset = t.allocate(e.len, area.bytes.len() as u32, &[]).unwrap();
        area.bytes[off_range(&e)].copy_from_slice(data);
        let mut new = t.clone();
        new.sets.insert(key, e);
        area.commit(t, &new).unwrap()
    }

    #[test]
    fn paged_index_round_trip_split_and_a_store_rewrites_one_leaf() {
        let mut area = Area::new(1 << 20);
        let mut t = Table::default();
        for o in 0..LEAF_SETS as u32 {
            t = store(&mut area, &t, keyed(1, o * 2), &[o as u8; 40], o as u64);
        }
        assert!(t.leaves.is_empty(), "{LEAF_SETS} sets stay inline");
        assert_eq!(area.image[..8], TABLE_MAGIC);
        t = store(&mut area, &t, keyed(1, 1), b"one more", 100);
        assert_eq!(t.leaves.len(), 2, "the inline index splits in two leaves");
        assert_eq!(area.image[..8], ROOT_MAGIC);
        assert_eq!(area.image.len(), root_len(2));
        assert_eq!(area.load().unwrap(), t);
        for o in 100..400u32 {
            t = store(&mut area, &t, keyed(2, o), &[o as u8; 16], o as u64);
        }
        assert!(t
            .leaves
            .iter()
            .all(|l| l.count as usize <= LEAF_SETS && l.count as usize >= LEAF_SETS / 2));
        assert_eq!(area.load().unwrap(), t);
        // Replacing one set rewrites the one leaf holding it.
        let before = t.leaves.clone();
        let mut new = t.clone();
        let mut e = entry(0, b"new", 999);
        e.offset = t.allocate(e.len, 1 << 20, &[]).unwrap();
        area.bytes[off_range(&e)].copy_from_slice(b"new");
        new.sets.insert(keyed(2, 250), e);
        let writes = new.clone().relayout(&t, 1 << 20, &[]).unwrap();
        assert_eq!(writes.len(), 1, "one leaf");
        t = area.commit(&t, &new).unwrap();
        let changed: Vec<_> = t
            .leaves
            .iter()
            .zip(&before)
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(changed.len(), 1);
        assert_ne!(changed[0].0.copies[0], changed[0].0.copies[1]);
        // A key below the first leaf's goes to that leaf.
        t = store(&mut area, &t, keyed(0, 0), b"lowest", 1000);
        assert_eq!(t.leaves[0].first, keyed(0, 0));
        assert_eq!(area.load().unwrap(), t);
        // Deleting down to the bound goes back inline.
        let mut new = t.clone();
        while new.sets.len() > LEAF_SETS {
            let k = *new.sets.keys().nth(3).unwrap();
            new.sets.remove(&k);
        }
        t = area.commit(&t, &new).unwrap();
        assert!(t.leaves.is_empty());
        assert_eq!(area.load().unwrap(), t);
    }

    #[test]
    fn a_damaged_leaf_copy_is_survived_and_both_are_detected() {
        let mut area = Area::new(1 << 20);
        let mut t = Table::default();
        for o in 0..100u32 {
            t = store(&mut area, &t, keyed(3, o), &[o as u8; 24], o as u64);
        }
        let l = t.leaves[1];
        area.bytes[l.copies[0] as usize + 40] ^= 4;
        assert_eq!(area.load().unwrap(), t, "copy 1 serves");
        area.bytes[l.copies[1] as usize + HEADER + 3] ^= 1;
        assert!(
            area.load().is_err(),
            "both copies damaged is an error, not fewer sets"
        );
        // A leaf whose CRC matches but whose keys belong elsewhere.
        let mut refs = t.leaves.clone();
        refs.swap(0, 1);
        let leaves: Vec<Vec<u8>> = refs
            .iter()
            .map(|r| area.bytes[r.copies[0] as usize..][..r.len as usize].to_vec())
            .collect();
        assert!(Table::assemble(&refs, &leaves, 1 << 20).is_err());
        // A root whose leaf lies beyond the data area.
        assert_eq!(
            Table::decode_head(&t.encode_head(), 4096),
            Err(RecordError::Damaged("leaf outside the data area"))
        );
        let mut bad = t.encode_head();
        bad[HEADER + 9] ^= 1;
        assert_eq!(
            Table::decode_head(&bad, 1 << 20),
            Err(RecordError::Damaged("root CRC"))
        );
    }

    #[test]
    fn deletes_merge_small_leaves_and_keep_the_root_bounded() {
        let mut area = Area::new(1 << 22);
        let mut t = Table::default();
        for o in 0..2000u32 {
            let mut e = entry(0, &[], o as u64);
            e.offset = 0;
            t.sets.insert(keyed(4, o), e);
        }
        t = area.commit(&Table::default(), &t).unwrap();
        // Delete all but every 40th set, in steps.
        for step in 0..40u32 {
            let mut new = t.clone();
            new.sets
                .retain(|k, _| k.object % 40 == 0 || k.object % 40 > step);
            t = area.commit(&t, &new).unwrap();
            assert!(
                t.leaves.len() <= 4 * t.sets.len() / LEAF_SETS + 1,
                "{} leaves for {} sets",
                t.leaves.len(),
                t.sets.len()
            );
        }
        assert_eq!(t.sets.len(), 50);
        assert_eq!(area.load().unwrap(), t);
    }

    proptest! {
        /// Random store / delete sequences across the inline / paged
        /// boundary, against a model: every change commits, the committed
        /// index reads back as the table, every set's bytes are intact,
        /// leaves never exceed their bound, and a change rewrites at most
        /// a few leaves.
        #[test]
        fn paged_index_against_a_model(ops in proptest::collection::vec((0u32..3, 0u32..60, 0usize..64, any::<u8>(), 0u8..4), 1..150)) {
            const SIZE: usize = 1 << 18;
            let mut area = Area::new(SIZE);
            let mut t = Table::default();
            let mut model: BTreeMap<SetKey, Vec<u8>> = BTreeMap::new();
            for (n, (app, object, len, byte, what)) in ops.into_iter().enumerate() {
                let key = keyed(app, object);
                let before = t.leaves.clone();
                if what == 0 {
                    let mut new = t.clone();
                    new.sets.remove(&key);
                    model.remove(&key);
                    t = area.commit(&t, &new).unwrap();
                } else {
                    let data = vec![byte; len];
                    t = store(&mut area, &t, key, &data, n as u64);
                    model.insert(key, data);
                }
                let new_leaves = t.leaves.iter().filter(|l| !before.contains(l)).count();
                prop_assert!(new_leaves <= 3, "{} leaves rewritten", new_leaves);
                prop_assert!(t.leaves.iter().all(|l| l.count as usize <= LEAF_SETS));
                prop_assert_eq!(t.leaves.is_empty(), t.sets.len() <= LEAF_SETS);
                let loaded = area.load().unwrap();
                prop_assert_eq!(&loaded, &t);
                prop_assert_eq!(loaded.sets.keys().collect::<Vec<_>>(), model.keys().collect::<Vec<_>>());
                for (k, e) in &loaded.sets {
                    prop_assert_eq!(&area.bytes[off_range(e)], &model[k][..]);
                }
            }
        }

        #[test]
        fn decoding_garbage_roots_and_leaves_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), count in 0u32..40, sets in any::<u32>()) {
            let mut framed = ROOT_MAGIC.to_vec();
            framed.extend_from_slice(&count.to_le_bytes());
            framed.extend_from_slice(&sets.to_le_bytes());
            framed.extend_from_slice(&bytes);
            if let Ok(Head::Paged(refs)) = Table::decode_head(&framed, 1 << 20) {
                let leaves = vec![bytes.clone(); refs.len()];
                let _ = Table::assemble(&refs, &leaves, 1 << 20);
            }
            let refs = [LeafRef { first: keyed(0, 0), count: 1, len: bytes.len() as u32, crc: crc32c(&bytes), copies: [0, 8] }];
            let _ = Table::assemble(&refs, std::slice::from_ref(&bytes), 1 << 20);
            let mut leaf = LEAF_MAGIC.to_vec();
            leaf.extend_from_slice(&count.to_le_bytes());
            leaf.extend_from_slice(&bytes);
            let refs = [LeafRef { first: keyed(0, 0), count: 1, len: leaf.len() as u32, crc: crc32c(&leaf), copies: [0, 8] }];
            let _ = Table::assemble(&refs, &[leaf], 1 << 20);
        }
    }

    fn off_range(e: &Entry) -> std::ops::Range<usize> {
        e.offset as usize..e.offset as usize + e.len as usize
    }
}
