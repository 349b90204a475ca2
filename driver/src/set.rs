//! The on-card image of a checkpoint set, until the card firmware keeps a
//! record table of many sets (issue 4): one set per tier, a 32-byte header
//! then the data.
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `HTLSSET1` |
//! | 8..12 | application id |
//! | 12..16 | object id |
//! | 16..20 | reboot stage |
//! | 20..24 | data length |
//! | 24..28 | CRC-32C of the data |
//! | 28..32 | zero |

use crate::error::{Error, Result};
use hitless_hdl::contract::crc32c;

pub const SET_MAGIC: [u8; 8] = *b"HTLSSET1";
pub const SET_HEADER: usize = 32;

/// Who a set belongs to and when it is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetId {
    pub app: u32,
    pub object: u32,
    pub stage: u32,
}

/// Build the region image of a set.
pub fn encode(id: SetId, data: &[u8]) -> Vec<u8> {
    let mut img = Vec::with_capacity(SET_HEADER + data.len());
    img.extend_from_slice(&SET_MAGIC);
    for v in [
        id.app,
        id.object,
        id.stage,
        data.len() as u32,
        crc32c(data),
        0,
    ] {
        img.extend_from_slice(&v.to_le_bytes());
    }
    img.extend_from_slice(data);
    img
}

/// Parse a region image; the data's own CRC is checked too.
pub fn decode(img: &[u8]) -> Result<(SetId, &[u8])> {
    let bad = |why: &str| Error::BadCompletion(format!("stored set: {why}"));
    if img.len() < SET_HEADER || img[..8] != SET_MAGIC {
        return Err(bad("no set header (nothing checkpointed here yet?)"));
    }
    let u = |i: usize| u32::from_le_bytes([img[i], img[i + 1], img[i + 2], img[i + 3]]);
    let id = SetId {
        app: u(8),
        object: u(12),
        stage: u(16),
    };
    let len = u(20) as usize;
    let data = img
        .get(SET_HEADER..SET_HEADER.saturating_add(len))
        .ok_or_else(|| bad("length beyond the image"))?;
    if crc32c(data) != u(24) {
        return Err(bad("data CRC mismatch"));
    }
    Ok((id, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let id = SetId {
            app: 7,
            object: 2,
            stage: 1,
        };
        let img = encode(id, b"hello");
        assert_eq!(decode(&img).unwrap(), (id, &b"hello"[..]));
        assert!(decode(&img[..20]).is_err());
        let mut bad = img.clone();
        bad[SET_HEADER] ^= 1;
        assert!(decode(&bad).is_err());
        let mut long = img.clone();
        long[20] = 200;
        assert!(decode(&long).is_err());
        assert!(decode(&[]).is_err());
    }
}
