//! Reading the append-log ring (the backup reader's side): the log record
//! format of the contract, parsed. Used by the reference model and by the
//! card firmware, which must not depend on the model.

use crate::contract::{
    crc32c, log_record_bytes, log_trailer_word, NvGeometry, LOG_HEADER_BYTES, LOG_PAD_MAGIC,
    LOG_RECORD_MAGIC, MAX_TRANSFER,
};

/// One data record of the log ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Free-running log offset of the record header (APPEND's `info`).
    pub offset: u32,
    /// The record's log sequence number (header word 1).
    pub seq: u64,
    /// The payload.
    pub data: Vec<u8>,
    /// The trailer holds the payload's CRC-32C and its complement.
    pub crc_ok: bool,
}

/// Why the unread part of a log could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("log ring does not fit in the NV image or has size 0")]
    Geometry,
    #[error("head {head:#x} is more than the ring size ahead of tail {tail:#x}")]
    Overfull { head: u32, tail: u32 },
    #[error("no record or pad magic at log offset {offset:#x} (word {word:#018x})")]
    BadMagic { offset: u32, word: u64 },
    #[error("pad record at log offset {offset:#x} has length {pad:#x}, expected {expected:#x}")]
    BadPad {
        offset: u32,
        pad: u32,
        expected: u32,
    },
    #[error("record at log offset {offset:#x} has invalid length {len:#x}")]
    BadLength { offset: u32, len: u32 },
    #[error("record at log offset {offset:#x} runs past the head or the end of the ring")]
    Truncated { offset: u32 },
}

fn word(b: &[u8], at: usize) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(le)
}

/// Parse the unread records between `tail` and `head` (free-running byte
/// counters) of the log ring in `nv_tier` (a whole tier image), skipping pad
/// records. Records with a bad trailer are returned with `crc_ok == false`;
/// structural damage (bad magic, impossible lengths) is an error.
pub fn parse_log(
    nv_tier: &[u8],
    geometry: &NvGeometry,
    head: u32,
    tail: u32,
) -> Result<Vec<LogRecord>, LogError> {
    let size = geometry.log_size as u64;
    let base = geometry.log_base() as u64;
    if size == 0 || base + size > nv_tier.len() as u64 {
        return Err(LogError::Geometry);
    }
    let ring = &nv_tier[base as usize..(base + size) as usize];
    if head.wrapping_sub(tail) as u64 > size {
        return Err(LogError::Overfull { head, tail });
    }
    let mut out = Vec::new();
    let mut pos = tail;
    while pos != head {
        let left = head.wrapping_sub(pos) as u64;
        let p = (pos as u64 % size) as usize;
        if p as u64 + 8 > size || left < 8 {
            return Err(LogError::Truncated { offset: pos });
        }
        let w0 = word(ring, p);
        let magic = w0 as u16;
        let field = (w0 >> 32) as u32;
        if magic == LOG_PAD_MAGIC {
            let expected = (size - p as u64) as u32;
            if field != expected {
                return Err(LogError::BadPad {
                    offset: pos,
                    pad: field,
                    expected,
                });
            }
            if (field as u64) > left {
                return Err(LogError::Truncated { offset: pos });
            }
            pos = pos.wrapping_add(field);
        } else if magic == LOG_RECORD_MAGIC {
            let len = field;
            if len == 0 || len > MAX_TRANSFER {
                return Err(LogError::BadLength { offset: pos, len });
            }
            let rec = log_record_bytes(len) as u64;
            if p as u64 + rec > size || rec > left {
                return Err(LogError::Truncated { offset: pos });
            }
            let seq = word(ring, p + 8);
            let d0 = p + LOG_HEADER_BYTES as usize;
            let data = ring[d0..d0 + len as usize].to_vec();
            let trailer = word(ring, d0 + (len as usize).div_ceil(8) * 8);
            let crc_ok = trailer == log_trailer_word(crc32c(&data));
            out.push(LogRecord {
                offset: pos,
                seq,
                data,
                crc_ok,
            });
            pos = pos.wrapping_add(rec as u32);
        } else {
            return Err(LogError::BadMagic {
                offset: pos,
                word: w0,
            });
        }
    }
    Ok(out)
}
