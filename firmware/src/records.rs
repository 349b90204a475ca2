//! The record table: many applications' sets in one tier (seed 000,
//! claims 1-6, 11, 23). The region image is the table's index only; each
//! set's bytes live in the tier's data area (`NvGeometry::data_base`), in
//! space the committed index does not reference, so a store writes the
//! set's bytes and a new index: its cost follows the set and the number of
//! sets, not the bytes the tier holds.
//!
//! Region image layout (little endian):
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic `HTLSRT03` |
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
//! The table (index) is all the firmware keeps in memory; set data moves
//! host to NV (WRITE) and NV to host (READ), checked against its CRC.

use hitless_hdl::contract::crc32c;
use std::collections::BTreeMap;
use thiserror::Error;

pub const TABLE_MAGIC: [u8; 8] = *b"HTLSRT03";
pub const HEADER: usize = 32;
pub const ENTRY: usize = 48;

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

/// Why a table head could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("the region does not hold a record table")]
    NoTable,
    #[error("record table damaged: {0}")]
    Damaged(&'static str),
}

/// All sets of a region, by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub sets: BTreeMap<SetKey, Entry>,
}

pub fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Bytes of the head (header and entries, padded to 8) of a table of `n` sets.
pub fn head_len(n: usize) -> usize {
    align8(HEADER + ENTRY * n)
}

impl Table {
    /// Bytes of the region image: the index (header and entries).
    pub fn end(&self) -> usize {
        if self.sets.is_empty() {
            0
        } else {
            head_len(self.sets.len())
        }
    }

    /// Bytes of the data area the sets occupy.
    pub fn data_bytes(&self) -> u64 {
        self.sets
            .values()
            .map(|e| align8(e.len as usize) as u64)
            .sum()
    }

    /// The data-area extents in use, `(offset, 8-aligned length)`, by offset.
    fn extents(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .sets
            .iter()
            .filter(|(_, e)| e.len > 0)
            .map(|(_, e)| (e.offset as u64, align8(e.len as usize) as u64))
            .collect();
        v.sort_unstable();
        v
    }

    /// Where a set of `len` bytes can go in a data area of `size` bytes
    /// without touching any set of this table or any of the `extra`
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

    /// The data-area extents the sets use, `(offset, 8-aligned length)`.
    pub fn set_extents(&self) -> Vec<(u64, u64)> {
        self.extents()
    }

    /// The index bytes (header and entries) of this table.
    pub fn encode_head(&self) -> Vec<u8> {
        let mut img = vec![0u8; head_len(self.sets.len())];
        img[..8].copy_from_slice(&TABLE_MAGIC);
        img[8..12].copy_from_slice(&(self.sets.len() as u32).to_le_bytes());
        img[12..16].copy_from_slice(&(self.data_bytes().min(u32::MAX as u64) as u32).to_le_bytes());
        for (i, (k, e)) in self.sets.iter().enumerate() {
            let at = HEADER + i * ENTRY;
            let words = [
                k.app, k.object, e.endpoint, e.stage, e.flags, e.len, e.crc, e.offset,
            ];
            for (j, v) in words.into_iter().enumerate() {
                img[at + 4 * j..at + 4 * j + 4].copy_from_slice(&v.to_le_bytes());
            }
            img[at + 32..at + 40].copy_from_slice(&e.version.to_le_bytes());
        }
        let crc = crc32c(&img);
        img[16..20].copy_from_slice(&crc.to_le_bytes());
        img
    }

    /// The number of sets a head announces (from its first `HEADER` bytes),
    /// so the reader knows how much more to fetch.
    pub fn count(header: &[u8]) -> Result<usize, RecordError> {
        if header.len() < HEADER || header[..8] != TABLE_MAGIC {
            return Err(RecordError::NoTable);
        }
        Ok(u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize)
    }

    /// Parse an index (`head_len(count)` bytes at least) and check it: its
    /// CRC, key order, and that every set lies inside a data area of
    /// `data_size` bytes, 8-aligned, overlapping no other set.
    pub fn decode_head(img: &[u8], data_size: usize) -> Result<Self, RecordError> {
        let n = Self::count(img)?;
        if n > MAX_ENTRIES || img.len() < head_len(n) {
            return Err(RecordError::Damaged("entry count beyond the head"));
        }
        let head = &img[..head_len(n)];
        let u = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let mut zeroed = head.to_vec();
        zeroed[16..20].fill(0);
        if crc32c(&zeroed) != u(16) {
            return Err(RecordError::Damaged("head CRC"));
        }
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
            if !e.offset.is_multiple_of(8) || e.offset as usize + align8(e.len as usize) > data_size
            {
                return Err(RecordError::Damaged("set outside the data area"));
            }
            sets.insert(key, e);
        }
        let t = Self { sets };
        let ext = t.extents();
        if ext.windows(2).any(|w| w[0].0 + w[0].1 > w[1].0) {
            return Err(RecordError::Damaged("two sets share data-area bytes"));
        }
        Ok(t)
    }

    /// Sets to deliver at reboot stage `stage`, in key order.
    pub fn at_stage(&self, stage: u32) -> impl Iterator<Item = (&SetKey, &Entry)> {
        self.sets.iter().filter(move |(_, e)| e.stage == stage)
    }
}

/// The most entries an index may announce (a bound for a damaged count).
pub const MAX_ENTRIES: usize = 1 << 16;

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
        assert_eq!(Table::decode_head(&head, 4096).unwrap(), t);
        assert_eq!(Table::count(&head), Ok(2));
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
                let decoded = Table::decode_head(&table.encode_head(), SIZE as usize).unwrap();
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
            let _ = Table::count(&framed);
        }
    }

    fn off_range(e: &Entry) -> std::ops::Range<usize> {
        e.offset as usize..e.offset as usize + e.len as usize
    }
}
