//! The record table: many applications' sets in one region image (seed
//! 000, claims 1-6, 11, 23), and the plan that builds a new image in the
//! alternate region with the controller's operations.
//!
//! Region image layout (little endian):
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic `HTLSRT02` |
//! | 8..12 | number of records `n` |
//! | 12..16 | end of the image (bytes used by header, entries and data) |
//! | 16..20 | CRC-32C of the header (this field zero) and the entries |
//! | 20..32 | reserved, zero |
//! | 32.. | `n` entries of 48 bytes, sorted by (app, object) |
//! | data | each set's bytes at its entry's `offset` (8-aligned), in entry order |
//!
//! Entry: app, object, endpoint, stage, flags, len, crc, offset (u32 each),
//! version (u64: the store counter, so the newer of two copies of a set in
//! different tiers wins), 8 reserved bytes.
//!
//! The table head (header + entries) is all the firmware keeps in memory;
//! set data stays in NV and moves NV to NV (COPY) or host to NV (WRITE).

use hitless_hdl::contract::crc32c;
use std::collections::BTreeMap;
use thiserror::Error;

pub const TABLE_MAGIC: [u8; 8] = *b"HTLSRT02";
pub const HEADER: usize = 32;
pub const ENTRY: usize = 48;

/// A set's identity: one set per (application, object).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetKey {
    pub app: u32,
    pub object: u32,
}

/// What the table records of one set (its data is in the region at `offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub endpoint: u32,
    /// Reboot stage at which the set is delivered.
    pub stage: u32,
    /// Request flags the set was stored with (`msg::flags`).
    pub flags: u32,
    pub len: u32,
    pub crc: u32,
    /// Byte offset of the data in the region image (assigned by the layout).
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
    /// Assign each set its data offset (key order, 8-aligned, after the
    /// head); returns the end of the image.
    pub fn relayout(&mut self) -> usize {
        let mut at = head_len(self.sets.len());
        for e in self.sets.values_mut() {
            e.offset = at as u32;
            at = align8(at + e.len as usize);
        }
        at
    }

    /// End of the image as laid out (0 for an empty table: an empty
    /// region is an empty table).
    pub fn end(&self) -> usize {
        match self.sets.values().last() {
            None => 0,
            Some(e) => align8(e.offset as usize + e.len as usize).max(head_len(self.sets.len())),
        }
    }

    /// The head bytes (header and entries) of this table, as laid out.
    pub fn encode_head(&self) -> Vec<u8> {
        let mut img = vec![0u8; head_len(self.sets.len())];
        img[..8].copy_from_slice(&TABLE_MAGIC);
        img[8..12].copy_from_slice(&(self.sets.len() as u32).to_le_bytes());
        img[12..16].copy_from_slice(&(self.end() as u32).to_le_bytes());
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

    /// Parse a head (`head_len(count)` bytes at least) and check it: its
    /// CRC, key order, and that every set lies inside the image after the
    /// head without overlapping the next.
    pub fn decode_head(img: &[u8], region_size: usize) -> Result<Self, RecordError> {
        let n = Self::count(img)?;
        if n > region_size / ENTRY || img.len() < head_len(n) {
            return Err(RecordError::Damaged("entry count beyond the head"));
        }
        let head = &img[..head_len(n)];
        let u = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let end = u(12) as usize;
        let mut zeroed = head.to_vec();
        zeroed[16..20].fill(0);
        if crc32c(&zeroed) != u(16) {
            return Err(RecordError::Damaged("head CRC"));
        }
        if end > region_size {
            return Err(RecordError::Damaged("image end beyond the region"));
        }
        let mut sets = BTreeMap::new();
        let mut next_free = head_len(n);
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
            let off = e.offset as usize;
            if off < next_free || !off.is_multiple_of(8) || off + e.len as usize > end {
                return Err(RecordError::Damaged("set outside its place in the image"));
            }
            next_free = align8(off + e.len as usize);
            sets.insert(key, e);
        }
        Ok(Self { sets })
    }

    /// Sets to deliver at reboot stage `stage`, in key order.
    pub fn at_stage(&self, stage: u32) -> impl Iterator<Item = (&SetKey, &Entry)> {
        self.sets.iter().filter(move |(_, e)| e.stage == stage)
    }
}

/// One step of building the new image in the alternate region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// WRITE the new head (header and entries) at offset 0.
    Head { bytes: Vec<u8> },
    /// COPY an unchanged set from the active region (maybe shifted):
    /// active[src..src+len] -> alternate[dst..dst+len], checked against `crc`.
    Copy {
        src: u32,
        dst: u32,
        len: u32,
        crc: u32,
    },
    /// WRITE the stored set's new data (from the host) at `dst`.
    Data { dst: u32, len: u32, crc: u32 },
}

/// The steps that build `new`'s image in the alternate region: the head is
/// written, the set `changed` (if any, and present in `new`) is written from
/// the request's data, and every other set is copied from the active region
/// (`old`'s image) at its new offset, so only what changed crosses the host
/// link (claims 11, 23: a resized set shifts what follows it). Both tables
/// must be laid out. Empty sets need no data step.
pub fn plan(old: &Table, new: &Table, changed: Option<SetKey>) -> Vec<Step> {
    let mut steps = vec![Step::Head {
        bytes: new.encode_head(),
    }];
    for (k, e) in &new.sets {
        if e.len == 0 {
            continue;
        }
        if Some(*k) == changed {
            steps.push(Step::Data {
                dst: e.offset,
                len: e.len,
                crc: e.crc,
            });
        } else if let Some(prev) = old.sets.get(k) {
            steps.push(Step::Copy {
                src: prev.offset,
                dst: e.offset,
                len: e.len,
                crc: e.crc,
            });
        }
    }
    steps
}

/// Apply a plan to byte images (what the controller does with COPY and
/// WRITE); `data` is the changed set's new bytes. For tests and models.
pub fn apply(active: &[u8], alternate: &mut Vec<u8>, steps: &[Step], data: &[u8]) {
    let mut put = |dst: usize, bytes: &[u8]| {
        if alternate.len() < dst + bytes.len() {
            alternate.resize(dst + bytes.len(), 0);
        }
        alternate[dst..dst + bytes.len()].copy_from_slice(bytes);
    };
    for s in steps {
        match s {
            Step::Head { bytes } => put(0, bytes),
            Step::Copy { src, dst, len, .. } => put(
                *dst as usize,
                &active[*src as usize..(*src + *len) as usize],
            ),
            Step::Data { dst, .. } => put(*dst as usize, data),
        }
    }
}

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
        t.sets
            .insert(SetKey { app: 1, object: 0 }, entry(0, b"abc", 1));
        t.sets
            .insert(SetKey { app: 2, object: 5 }, entry(1, &[9; 100], 2));
        let end = t.relayout();
        let head = t.encode_head();
        assert_eq!(head.len(), head_len(2));
        assert_eq!(t.end(), end);
        assert_eq!(Table::decode_head(&head, 1 << 20).unwrap(), t);
        assert_eq!(Table::count(&head), Ok(2));
        assert_eq!(
            Table::decode_head(b"garbage garbage garbage garbage!", 1 << 20),
            Err(RecordError::NoTable)
        );
        let mut bad = head.clone();
        bad[HEADER + 20] ^= 1;
        assert_eq!(
            Table::decode_head(&bad, 1 << 20),
            Err(RecordError::Damaged("head CRC"))
        );
        let mut bad = head.clone();
        bad[8] = 200;
        assert!(matches!(
            Table::decode_head(&bad, 1 << 20),
            Err(RecordError::Damaged(_))
        ));
        assert!(
            Table::decode_head(&head, 100).is_err(),
            "an image larger than the region is refused"
        );
        assert_eq!(t.at_stage(1).count(), 1);
    }

    #[test]
    fn a_resize_copies_what_follows_shifted() {
        let mut old = Table::default();
        let mut img_data = BTreeMap::new();
        for app in 1..=3 {
            let d = vec![app as u8; 1000];
            old.sets
                .insert(SetKey { app, object: 0 }, entry(0, &d, app as u64));
            img_data.insert(app, d);
        }
        old.relayout();
        let mut active = old.encode_head();
        for (k, e) in &old.sets {
            active.resize(e.offset as usize, 0);
            active.extend_from_slice(&img_data[&k.app]);
        }
        let mut new = old.clone();
        let bigger = vec![7u8; 3000];
        let k2 = SetKey { app: 2, object: 0 };
        new.sets.insert(k2, entry(0, &bigger, 9));
        new.relayout();
        let steps = plan(&old, &new, Some(k2));
        let copies: Vec<_> = steps
            .iter()
            .filter(|s| matches!(s, Step::Copy { .. }))
            .collect();
        assert_eq!(copies.len(), 2, "{steps:?}");
        assert!(
            matches!(copies[1], Step::Copy { src, dst, .. } if dst > src),
            "the set after the grown one moves: {steps:?}"
        );
        let mut alt = vec![0xEE; 10];
        apply(&active, &mut alt, &steps, &bigger);
        let t = Table::decode_head(&alt, 1 << 20).unwrap();
        assert_eq!(t, new);
        for (k, e) in &t.sets {
            let got = &alt[e.offset as usize..(e.offset + e.len) as usize];
            let want: &[u8] = if *k == k2 { &bigger } else { &img_data[&k.app] };
            assert_eq!(got, want);
        }
    }

    proptest! {
        /// Random store / resize / delete sequences: applying the plan to
        /// the active image gives an image whose head decodes to the new
        /// table and whose every set has the bytes last stored for it.
        #[test]
        fn plans_build_exactly_the_new_image(ops in proptest::collection::vec((0u32..5, 0u32..2, 0usize..300, any::<u8>(), any::<bool>()), 1..40)) {
            let mut table = Table::default();
            let mut model: BTreeMap<SetKey, Vec<u8>> = BTreeMap::new();
            let mut active: Vec<u8> = Vec::new();
            let mut alt: Vec<u8> = vec![0x55; 64];
            for (n, (app, object, len, byte, delete)) in ops.into_iter().enumerate() {
                let key = SetKey { app, object };
                let mut next = table.clone();
                let data = vec![byte; len];
                let changed = if delete {
                    next.sets.remove(&key);
                    model.remove(&key);
                    None
                } else {
                    next.sets.insert(key, entry(app % 3, &data, n as u64));
                    model.insert(key, data.clone());
                    Some(key)
                };
                next.relayout();
                let steps = plan(&table, &next, changed);
                apply(&active, &mut alt, &steps, &data);
                // The region is larger than what was written (an empty
                // last set ends past the last byte written).
                if alt.len() < next.end() {
                    alt.resize(next.end(), 0);
                }
                let decoded = Table::decode_head(&alt, 1 << 20).unwrap();
                prop_assert_eq!(&decoded, &next);
                for (k, e) in &decoded.sets {
                    let got = &alt[e.offset as usize..(e.offset + e.len) as usize];
                    prop_assert_eq!(got, &model[k][..]);
                    prop_assert_eq!(crc32c(got), e.crc);
                }
                // FLIP: the alternate becomes active; then the mirror copy.
                std::mem::swap(&mut active, &mut alt);
                alt = active.clone();
                table = next;
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
}
