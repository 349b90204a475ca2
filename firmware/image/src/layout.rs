//! The NVS layout of one device and the block-level primitives the image
//! manager writes it with (seed 002, claims 8, 16, 25–27).
//!
//! Every device of a card carries the same layout, in erase blocks:
//!
//! ```text
//! block              what
//! 0                  metadata slot A
//! 1                  metadata slot B
//! 2 .. 2+c           configuration area            (c = config_blocks)
//! 2+c .. 2+2c        configuration backup area
//! 2+2c .. 2+2c+a     context area 0                (a = (blocks-2-2c)/2)
//! 2+2c+a .. 2+2c+2a  context area 1
//! ```
//!
//! The two metadata slots each hold one record (`magic | len | JSON |
//! SHA-256`); a record is written to the slot that does not hold the
//! device's newest valid one, so a torn write leaves the other slot valid
//! (the newer valid sequence number wins). Which context area is the
//! *current* one and which device is the *primary* are fields of that
//! record, not properties of a block or a device (claim 26): context areas
//! are numbered 0 and 1 physically and get their roles from the metadata.
//!
//! A context area starts with a header (`"HTLSCTX1" | manifest length |
//! manifest JSON`, padded to whole blocks); each component follows,
//! starting on a block boundary, in manifest order. Block alignment means a
//! component that did not change between two images often already sits in
//! place, and the writer skips blocks whose contents already match.

use crate::flash::{Geometry, Nvs};
use crate::manifest::{Manifest, Sha};
use crate::ImageError;
use sha2::{Digest, Sha256};

/// Magic of a metadata record.
pub const META_MAGIC: &[u8; 8] = b"HTLSMETA";
/// Magic of a context area's header.
pub const CTX_MAGIC: &[u8; 8] = b"HTLSCTX1";
/// Magic of a configuration record; the last byte is the format.
pub const CFG_MAGIC: &[u8; 8] = b"HTLSCFG1";
/// Bytes of a record's framing: magic, length, SHA-256.
pub const RECORD_OVERHEAD: usize = 8 + 4 + 32;

/// A run of erase blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Region {
    /// First erase block.
    pub first_block: u32,
    /// Number of erase blocks.
    pub blocks: u32,
}

impl Region {
    /// Byte offset of the region on the device.
    pub fn offset(&self, g: &Geometry) -> u64 {
        u64::from(self.first_block) * u64::from(g.block_size)
    }
    /// Size in bytes.
    pub fn len(&self, g: &Geometry) -> u64 {
        u64::from(self.blocks) * u64::from(g.block_size)
    }
}

/// Where everything lives on one device (both devices share it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Layout {
    pub geometry: Geometry,
    /// The two metadata slots (one block each).
    pub meta: [Region; 2],
    /// The configuration area (claims 23, 53).
    pub config: Region,
    /// Its automatically kept backup (claim 55).
    pub config_backup: Region,
    /// Context areas 0 and 1; current/alternate roles come from the metadata.
    pub areas: [Region; 2],
}

impl Layout {
    /// The layout of a device of geometry `g` with `config_blocks` blocks
    /// for the configuration and as many for its backup.
    pub fn new(g: Geometry, config_blocks: u32) -> Result<Self, ImageError> {
        if config_blocks == 0 {
            return Err(ImageError::BadGeometry("the configuration needs a block"));
        }
        let fixed = config_blocks
            .checked_mul(2)
            .and_then(|x| x.checked_add(2))
            .ok_or(ImageError::BadGeometry("configuration too large"))?;
        let rest = g
            .blocks
            .checked_sub(fixed)
            .ok_or(ImageError::BadGeometry("device too small for the layout"))?;
        let a = rest / 2;
        if a < 2 {
            return Err(ImageError::BadGeometry(
                "context areas need at least two blocks each",
            ));
        }
        let r = |first_block, blocks| Region {
            first_block,
            blocks,
        };
        Ok(Layout {
            geometry: g,
            meta: [r(0, 1), r(1, 1)],
            config: r(2, config_blocks),
            config_backup: r(2 + config_blocks, config_blocks),
            areas: [r(fixed, a), r(fixed + a, a)],
        })
    }

    /// Bytes one context area can hold (header included).
    pub fn area_bytes(&self) -> u64 {
        self.areas[0].len(&self.geometry)
    }

    fn bs(&self) -> u64 {
        u64::from(self.geometry.block_size)
    }

    /// Blocks the header of a manifest of `manifest_len` bytes takes.
    pub fn header_blocks(&self, manifest_len: usize) -> u64 {
        (12 + manifest_len as u64).div_ceil(self.bs())
    }

    /// Offsets (within the area) of each component of `m`, and the number
    /// of blocks the whole image takes; refuses an image that does not fit.
    pub fn placements(
        &self,
        m: &Manifest,
        manifest_len: usize,
    ) -> Result<(Vec<u64>, u64), ImageError> {
        let bs = self.bs();
        let mut block = self.header_blocks(manifest_len);
        let mut offs = Vec::with_capacity(m.components.len());
        let too_large = |block: u64| ImageError::TooLarge {
            what: "image in a context area",
            size: block.saturating_mul(bs),
            limit: self.area_bytes(),
        };
        let cap = u64::from(self.areas[0].blocks);
        for c in &m.components {
            // Sizes come from a manifest read from flash or a package:
            // bounded before any multiplication can overflow.
            if block > cap {
                return Err(too_large(block));
            }
            offs.push(block * bs);
            block = block.saturating_add(c.size.div_ceil(bs));
        }
        if block > cap {
            return Err(too_large(block));
        }
        Ok((offs, block))
    }
}

/// Counts of what a write did to flash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlashStats {
    /// Block erases.
    pub erases: u64,
    /// Page programs.
    pub programs: u64,
    /// Bytes programmed.
    pub bytes_programmed: u64,
    /// Blocks left alone because they already held the wanted bytes.
    pub blocks_skipped: u64,
}

impl FlashStats {
    /// Add `o` into `self`.
    pub fn add(&mut self, o: &FlashStats) {
        self.erases += o.erases;
        self.programs += o.programs;
        self.bytes_programmed += o.bytes_programmed;
        self.blocks_skipped += o.blocks_skipped;
    }
}

/// Make block `block` hold `data` (one block's bytes): skip it if it
/// already does, erase only if a bit must go from 0 to 1, program only the
/// pages that differ. The result is checked by read-back hashing later,
/// never assumed.
pub fn write_block<D: Nvs>(
    dev: &mut D,
    block: u32,
    data: &[u8],
    stats: &mut FlashStats,
) -> Result<(), ImageError> {
    let g = dev.geometry();
    let bs = g.block_size as usize;
    if data.len() != bs {
        return Err(ImageError::BadGeometry("write_block needs a whole block"));
    }
    let base = u64::from(block) * bs as u64;
    let mut old = vec![0u8; bs];
    dev.read(base, &mut old)?;
    if old == data {
        stats.blocks_skipped += 1;
        return Ok(());
    }
    if old.iter().zip(data).any(|(o, n)| n & !o != 0) {
        dev.erase(block)?;
        stats.erases += 1;
        old.fill(0xFF);
    }
    let ps = g.page_size as usize;
    for (i, (new, was)) in data.chunks(ps).zip(old.chunks(ps)).enumerate() {
        if new != was {
            dev.program(base + (i * ps) as u64, new)?;
            stats.programs += 1;
            stats.bytes_programmed += new.len() as u64;
        }
    }
    Ok(())
}

/// Streams bytes into a region block by block (one block buffered). It
/// does not hold the device, so a caller can read another area of the
/// same device between pushes (copying an unchanged component).
pub struct BlockWriter {
    next_block: u32,
    end_block: u32,
    block_size: usize,
    buf: Vec<u8>,
}

impl BlockWriter {
    /// A writer at the start of `region` of a device of geometry `g`.
    pub fn new(g: &Geometry, region: Region) -> Self {
        BlockWriter {
            next_block: region.first_block,
            end_block: region.first_block + region.blocks,
            block_size: g.block_size as usize,
            buf: Vec::with_capacity(g.block_size as usize),
        }
    }

    /// Append bytes.
    pub fn push<D: Nvs>(
        &mut self,
        dev: &mut D,
        stats: &mut FlashStats,
        mut data: &[u8],
    ) -> Result<(), ImageError> {
        while !data.is_empty() {
            let n = (self.block_size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == self.block_size {
                self.flush(dev, stats)?;
            }
        }
        Ok(())
    }

    /// Pad with `0xFF` to the next block boundary.
    pub fn align<D: Nvs>(&mut self, dev: &mut D, stats: &mut FlashStats) -> Result<(), ImageError> {
        if !self.buf.is_empty() {
            self.buf.resize(self.block_size, 0xFF);
            self.flush(dev, stats)?;
        }
        Ok(())
    }

    fn flush<D: Nvs>(&mut self, dev: &mut D, stats: &mut FlashStats) -> Result<(), ImageError> {
        if self.next_block >= self.end_block {
            return Err(ImageError::TooLarge {
                what: "write into a region",
                size: u64::from(self.next_block + 1) * self.block_size as u64,
                limit: u64::from(self.end_block) * self.block_size as u64,
            });
        }
        write_block(dev, self.next_block, &self.buf, stats)?;
        self.buf.clear();
        self.next_block += 1;
        Ok(())
    }
}

/// `magic | len | body | SHA-256(magic | len | body)`.
pub fn encode_record(magic: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    let d: [u8; 32] = Sha256::digest(&out).into();
    out.extend_from_slice(&d);
    out
}

/// What reading a record found.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    /// A record whose checksum holds.
    Valid(Vec<u8>),
    /// The region is erased (never written).
    Blank,
    /// Right family, but a format this firmware does not support.
    Unsupported(u8),
    /// Torn or corrupted.
    Corrupt,
}

/// Read the record at the start of `region`; `magic`'s last byte is the
/// supported format, the first seven the family.
pub fn read_record<D: Nvs>(
    dev: &mut D,
    region: Region,
    magic: &[u8; 8],
) -> Result<Record, ImageError> {
    let g = dev.geometry();
    let base = region.offset(&g);
    let mut head = [0u8; 12];
    dev.read(base, &mut head)?;
    if head.iter().all(|b| *b == 0xFF) {
        return Ok(Record::Blank);
    }
    if head[..7] != magic[..7] {
        return Ok(Record::Corrupt);
    }
    let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as u64;
    if len + RECORD_OVERHEAD as u64 > region.len(&g) {
        return Ok(Record::Corrupt);
    }
    let mut all = vec![0u8; RECORD_OVERHEAD + len as usize];
    dev.read(base, &mut all)?;
    let (msg, sum) = all.split_at(12 + len as usize);
    let d: [u8; 32] = Sha256::digest(msg).into();
    if d[..] != *sum {
        return Ok(Record::Corrupt);
    }
    if head[7] != magic[7] {
        return Ok(Record::Unsupported(head[7]));
    }
    Ok(Record::Valid(msg[12..].to_vec()))
}

/// Write a record at the start of `region`, padding the rest of the
/// blocks it touches with `0xFF`.
pub fn write_record<D: Nvs>(
    dev: &mut D,
    region: Region,
    magic: &[u8; 8],
    body: &[u8],
    stats: &mut FlashStats,
) -> Result<(), ImageError> {
    let rec = encode_record(magic, body);
    let g = dev.geometry();
    if rec.len() as u64 > region.len(&g) {
        return Err(ImageError::TooLarge {
            what: "record",
            size: rec.len() as u64,
            limit: region.len(&g),
        });
    }
    let mut w = BlockWriter::new(&g, region);
    w.push(dev, stats, &rec)?;
    w.align(dev, stats)
}

/// Hash `len` bytes at `offset` in chunks of a block.
pub fn hash_range<D: Nvs>(dev: &mut D, offset: u64, len: u64) -> Result<Sha, ImageError> {
    let bs = u64::from(dev.geometry().block_size);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; bs as usize];
    let mut done = 0;
    while done < len {
        let n = bs.min(len - done) as usize;
        dev.read(offset + done, &mut buf[..n])?;
        h.update(&buf[..n]);
        done += n as u64;
    }
    Ok(Sha::from_bytes(h.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::{PowerRail, SimFlash};

    const G: Geometry = Geometry {
        block_size: 4096,
        page_size: 256,
        blocks: 16,
    };

    #[test]
    fn layout_partitions_the_device() {
        let l = Layout::new(G, 1).unwrap();
        assert_eq!(l.config.first_block, 2);
        assert_eq!(l.config_backup.first_block, 3);
        assert_eq!(
            l.areas[0],
            Region {
                first_block: 4,
                blocks: 6
            }
        );
        assert_eq!(
            l.areas[1],
            Region {
                first_block: 10,
                blocks: 6
            }
        );
        let small = Geometry { blocks: 7, ..G };
        assert!(Layout::new(small, 1).is_err());
    }

    #[test]
    fn record_round_trip_and_corruption() {
        let mut f = SimFlash::memory(G, PowerRail::new()).unwrap();
        let r = Region {
            first_block: 0,
            blocks: 1,
        };
        assert_eq!(read_record(&mut f, r, META_MAGIC).unwrap(), Record::Blank);
        let mut st = FlashStats::default();
        write_record(&mut f, r, META_MAGIC, b"hello", &mut st).unwrap();
        assert_eq!(
            read_record(&mut f, r, META_MAGIC).unwrap(),
            Record::Valid(b"hello".to_vec())
        );
        // same bytes again: nothing touched
        let before = f.ops();
        write_record(&mut f, r, META_MAGIC, b"hello", &mut st).unwrap();
        assert_eq!(f.ops(), before);
        assert_eq!(st.blocks_skipped, 1);
        f.flip_bit(14, 3).unwrap();
        assert_eq!(read_record(&mut f, r, META_MAGIC).unwrap(), Record::Corrupt);
        let mut other = *CFG_MAGIC;
        other[7] = b'9';
        write_record(&mut f, r, &other, b"x", &mut st).unwrap();
        assert_eq!(
            read_record(&mut f, r, CFG_MAGIC).unwrap(),
            Record::Unsupported(b'9')
        );
    }
}
