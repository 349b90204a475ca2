//! The record table: many applications' sets in one region image (seed
//! 000, claims 1-6, 11, 23), and the plan that turns an old image into a
//! new one with the controller's operations.
//!
//! Region image layout (little endian):
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic `HTLSRT01` |
//! | 8..12 | number of records `n` |
//! | 12..16 | end of the data area (bytes used by the whole image) |
//! | 16..32 | reserved, zero |
//! | 32.. | `n` entries of 32 bytes: app, object, endpoint, stage, flags, len, crc, offset |
//! | data | each set's bytes at its `offset` (8-aligned), in entry order |
//!
//! Entries are sorted by (app, object), so one set per (app, object).
//! Storing a set whose size changed splices it: what precedes it is copied
//! unchanged, the new set is written, what follows is copied shifted.

use hitless_hdl::contract::crc32c;
use std::collections::BTreeMap;
use thiserror::Error;

pub const TABLE_MAGIC: [u8; 8] = *b"HTLSRT01";
pub const HEADER: usize = 32;
pub const ENTRY: usize = 32;

/// A set's identity and delivery attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetKey {
    pub app: u32,
    pub object: u32,
}

/// One stored set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub endpoint: u32,
    pub stage: u32,
    pub flags: u32,
    pub data: Vec<u8>,
}

/// Why an image could not be parsed or built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("no record table in the image")]
    NoTable,
    #[error("record table damaged: {0}")]
    Damaged(&'static str),
    #[error("set {app}/{object} failed its CRC")]
    Crc { app: u32, object: u32 },
}

/// All sets of a region, by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub sets: BTreeMap<SetKey, Record>,
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Where each set's data lands in the image of `table` (in entry order).
fn layout(table: &Table) -> (Vec<(SetKey, usize)>, usize) {
    let mut at = align8(HEADER + ENTRY * table.sets.len());
    let mut out = Vec::with_capacity(table.sets.len());
    for (k, r) in &table.sets {
        out.push((*k, at));
        at = align8(at + r.data.len());
    }
    (out, at)
}

impl Table {
    /// The region image of this table.
    pub fn encode(&self) -> Vec<u8> {
        let (offsets, end) = layout(self);
        let mut img = vec![0u8; end];
        img[..8].copy_from_slice(&TABLE_MAGIC);
        img[8..12].copy_from_slice(&(self.sets.len() as u32).to_le_bytes());
        img[12..16].copy_from_slice(&(end as u32).to_le_bytes());
        for (i, ((k, r), (_, off))) in self.sets.iter().zip(&offsets).enumerate() {
            let e = HEADER + i * ENTRY;
            for (j, v) in [
                k.app,
                k.object,
                r.endpoint,
                r.stage,
                r.flags,
                r.data.len() as u32,
                crc32c(&r.data),
                *off as u32,
            ]
            .into_iter()
            .enumerate()
            {
                img[e + 4 * j..e + 4 * j + 4].copy_from_slice(&v.to_le_bytes());
            }
            img[*off..*off + r.data.len()].copy_from_slice(&r.data);
        }
        img
    }

    /// Parse an image; every set's CRC is checked. An empty image (a blank
    /// region) is an empty table.
    pub fn decode(img: &[u8]) -> Result<Self, RecordError> {
        if img.is_empty() {
            return Ok(Self::default());
        }
        if img.len() < HEADER || img[..8] != TABLE_MAGIC {
            return Err(RecordError::NoTable);
        }
        let u =
            |i: usize| u32::from_le_bytes([img[i], img[i + 1], img[i + 2], img[i + 3]]) as usize;
        let n = u(8);
        let end = u(12);
        if end > img.len() || n > (img.len() - HEADER) / ENTRY {
            return Err(RecordError::Damaged("count or end beyond the image"));
        }
        let mut sets = BTreeMap::new();
        for i in 0..n {
            let e = HEADER + i * ENTRY;
            let key = SetKey {
                app: u(e) as u32,
                object: u(e + 4) as u32,
            };
            let (len, crc, off) = (u(e + 20), u(e + 24) as u32, u(e + 28));
            let data = off
                .checked_add(len)
                .filter(|&x| x <= end)
                .and_then(|x| img.get(off..x))
                .ok_or(RecordError::Damaged("set beyond the data area"))?;
            if crc32c(data) != crc {
                return Err(RecordError::Crc {
                    app: key.app,
                    object: key.object,
                });
            }
            let rec = Record {
                endpoint: u(e + 8) as u32,
                stage: u(e + 12) as u32,
                flags: u(e + 16) as u32,
                data: data.to_vec(),
            };
            if sets.insert(key, rec).is_some() {
                return Err(RecordError::Damaged("a set appears twice"));
            }
        }
        Ok(Self { sets })
    }

    /// Sets to deliver at reboot stage `stage`, in key order.
    pub fn at_stage(&self, stage: u32) -> impl Iterator<Item = (&SetKey, &Record)> {
        self.sets.iter().filter(move |(_, r)| r.stage == stage)
    }
}

/// One step of turning the active image into the alternate one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// COPY active[src..src+len] -> alternate[dst..dst+len] (unchanged set, maybe shifted).
    Copy { src: usize, dst: usize, len: usize },
    /// WRITE these bytes to alternate[dst..] (new or changed data, header, entries).
    Write { dst: usize, bytes: Vec<u8> },
}

/// The steps that build `new`'s image in the alternate region, copying the
/// sets that did not change from the active region (`old`'s image) instead
/// of sending them again, then writing what did change. The result is
/// followed by a FLIP of `new.encode().len()` bytes.
pub fn plan(old: &Table, new: &Table) -> Vec<Step> {
    let img = new.encode();
    let (old_offsets, _) = layout(old);
    let old_at: BTreeMap<SetKey, usize> = old_offsets.into_iter().collect();
    let (new_offsets, end) = layout(new);
    let mut steps = Vec::new();
    // Header and entries: always written (counts and offsets change).
    let first = new_offsets.first().map_or(end, |&(_, o)| o);
    steps.push(Step::Write {
        dst: 0,
        bytes: img[..first].to_vec(),
    });
    for (i, (k, off)) in new_offsets.iter().enumerate() {
        let rec = &new.sets[k];
        let next = new_offsets.get(i + 1).map_or(end, |&(_, o)| o);
        let len = rec.data.len();
        match (old.sets.get(k), old_at.get(k)) {
            (Some(prev), Some(&src)) if prev.data == rec.data && len > 0 => {
                steps.push(Step::Copy {
                    src,
                    dst: *off,
                    len: align8(len),
                });
                if *off + align8(len) < next {
                    steps.push(Step::Write {
                        dst: *off + align8(len),
                        bytes: img[*off + align8(len)..next].to_vec(),
                    });
                }
            }
            _ => steps.push(Step::Write {
                dst: *off,
                bytes: img[*off..next].to_vec(),
            }),
        }
    }
    // Adjacent copies of a contiguous run become one (fewer operations).
    let mut merged: Vec<Step> = Vec::with_capacity(steps.len());
    for s in steps {
        if let (
            Some(Step::Copy { src, dst, len }),
            Step::Copy {
                src: s2,
                dst: d2,
                len: l2,
            },
        ) = (merged.last_mut(), &s)
        {
            if *src + *len == *s2 && *dst + *len == *d2 {
                *len += l2;
                continue;
            }
        }
        merged.push(s);
    }
    merged
}

/// Apply a plan to byte images (what the controller does with COPY and WRITE).
pub fn apply(active: &[u8], alternate: &mut Vec<u8>, steps: &[Step]) {
    for s in steps {
        match s {
            Step::Copy { src, dst, len } => {
                if alternate.len() < dst + len {
                    alternate.resize(dst + len, 0);
                }
                alternate[*dst..dst + len].copy_from_slice(&active[*src..src + len]);
            }
            Step::Write { dst, bytes } => {
                if alternate.len() < dst + bytes.len() {
                    alternate.resize(dst + bytes.len(), 0);
                }
                alternate[*dst..dst + bytes.len()].copy_from_slice(bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(stage: u32, data: Vec<u8>) -> Record {
        Record {
            endpoint: 0,
            stage,
            flags: 0,
            data,
        }
    }

    #[test]
    fn round_trip_and_damage_detected() {
        let mut t = Table::default();
        t.sets
            .insert(SetKey { app: 1, object: 0 }, rec(0, b"abc".to_vec()));
        t.sets
            .insert(SetKey { app: 2, object: 5 }, rec(1, vec![9; 100]));
        let img = t.encode();
        assert_eq!(Table::decode(&img).unwrap(), t);
        assert_eq!(Table::decode(&[]).unwrap(), Table::default());
        assert_eq!(
            Table::decode(b"garbage garbage garbage garbage!"),
            Err(RecordError::NoTable)
        );
        let mut bad = img.clone();
        let last = bad.len() - 5;
        bad[last] ^= 1;
        assert!(matches!(Table::decode(&bad), Err(RecordError::Crc { .. })));
        let mut bad = img.clone();
        bad[8] = 200;
        assert!(matches!(Table::decode(&bad), Err(RecordError::Damaged(_))));
        assert_eq!(t.at_stage(1).count(), 1);
    }

    #[test]
    fn a_resize_copies_what_follows_shifted() {
        let mut old = Table::default();
        for app in 1..=3 {
            old.sets
                .insert(SetKey { app, object: 0 }, rec(0, vec![app as u8; 1000]));
        }
        let mut new = old.clone();
        new.sets
            .get_mut(&SetKey { app: 2, object: 0 })
            .unwrap()
            .data = vec![7; 3000];
        let steps = plan(&old, &new);
        let copies: Vec<_> = steps
            .iter()
            .filter(|s| matches!(s, Step::Copy { .. }))
            .collect();
        assert_eq!(copies.len(), 2, "{steps:?}");
        let written: usize = steps
            .iter()
            .map(|s| {
                if let Step::Write { bytes, .. } = s {
                    bytes.len()
                } else {
                    0
                }
            })
            .sum();
        assert!(
            written < 3000 + 200,
            "only the changed set and the table are sent: {written}"
        );
        let mut alt = vec![0xEE; 10];
        apply(&old.encode(), &mut alt, &steps);
        assert_eq!(&alt[..new.encode().len()], &new.encode()[..]);
    }

    proptest! {
        /// Random store / resize / delete sequences: applying the plan to
        /// the active image always gives exactly the new table's image, and
        /// that image decodes to the new table.
        #[test]
        fn plans_build_exactly_the_new_image(ops in proptest::collection::vec((0u32..5, 0u32..2, 0usize..300, any::<u8>(), any::<bool>()), 1..40)) {
            let mut active = Table::default();
            let mut alt_img: Vec<u8> = Vec::new();
            for (app, object, len, byte, delete) in ops {
                let mut next = active.clone();
                let key = SetKey { app, object };
                if delete {
                    next.sets.remove(&key);
                } else {
                    next.sets.insert(key, rec(app % 3, vec![byte; len]));
                }
                let steps = plan(&active, &next);
                apply(&active.encode(), &mut alt_img, &steps);
                let want = next.encode();
                prop_assert_eq!(&alt_img[..want.len()], &want[..]);
                prop_assert_eq!(Table::decode(&alt_img[..want.len()]).unwrap(), next.clone());
                // Flip: the alternate becomes active; the next image is built in the other region.
                alt_img = active.encode();
                active = next;
            }
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), count in any::<u32>()) {
            let _ = Table::decode(&bytes);
            let mut framed = TABLE_MAGIC.to_vec();
            framed.extend_from_slice(&count.to_le_bytes());
            framed.extend_from_slice(&bytes);
            let _ = Table::decode(&framed);
        }
    }
}
