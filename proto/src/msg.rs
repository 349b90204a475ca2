//! The mailbox messages: requests a host application sends to the card's
//! memory manager, and the card's responses, in the versioned TLV format of
//! [`crate::tlv`]. Set data never travels inside a message: a request names
//! a host buffer (`DATA_ADDR`, `DATA_LEN` / `DATA_CAP`) and the controller
//! moves the bytes by DMA.
//!
//! Authenticated requests carry `HANDLE` (the session's protection entry)
//! and, as their last field, `MAC` = HMAC-SHA256(application secret,
//! challenge || the message without its MAC field), where the challenge is
//! the `MB_NONCE` value the card published before the request. See
//! [`crate::auth`].

use crate::tlv::{Builder, Message, TlvError};

/// Request kinds (the TLV message kind); a response has kind `0x80 | request`.
pub mod kind {
    /// Firmware and tier state; no authentication.
    pub const STATUS: u8 = 1;
    /// Open a session for an application: allocates a protection entry.
    pub const OPEN: u8 = 2;
    /// Close a session (frees its protection entry).
    pub const CLOSE: u8 = 3;
    /// Store a set (host buffer -> alternate region, flip, mirror).
    pub const STORE: u8 = 4;
    /// Delete a set.
    pub const DELETE: u8 = 5;
    /// Read one set back into a host buffer.
    pub const RESTORE: u8 = 6;
    /// The session's sets (metadata only).
    pub const LIST: u8 = 7;
    /// The host announces a reboot stage; no authentication.
    pub const STAGE: u8 = 8;
    /// Deliver the session's sets of an announced reboot stage.
    pub const FETCH: u8 = 9;
    /// Append a checkpoint set to the append log.
    pub const LOG_APPEND: u8 = 10;
    /// Read the unread part of the append log (the session's records).
    pub const LOG_READ: u8 = 11;
    /// Clear the log up to an offset (the reader has consumed it).
    pub const LOG_TRIM: u8 = 12;
    /// Erase a tier's record table (start over after a foreign image).
    pub const FORMAT: u8 = 13;
    /// The card's software images (seed 002): running version, trial
    /// state, both NVS devices' health; no authentication.
    pub const IMAGE_STATUS: u8 = 14;
    /// One chunk of a signed package (host buffer, by DMA); the last one
    /// makes the card verify and install it (see `message::Request`).
    pub const IMAGE_INSTALL: u8 = 15;
    /// Set the alternate boot flag: the next card boot is a trial boot of
    /// the installed image.
    pub const IMAGE_ACTIVATE: u8 = 16;
    /// The trial image works: make it current.
    pub const IMAGE_MARK_GOOD: u8 = 17;
    /// Abandon a trial, or go back to the previous image.
    pub const IMAGE_ROLLBACK: u8 = 18;
    /// Serve the running image's components over HTTP and TFTP (or stop).
    pub const IMAGE_SERVE: u8 = 19;
    /// Reboot the card (its software: the image boots again, an activated
    /// one on trial); answered before the card goes down.
    pub const IMAGE_REBOOT: u8 = 20;
    /// Replicated card: hand the master role to a slave (claim 44), no
    /// acknowledged store lost; no authentication (an operator's request,
    /// like `STAGE`). Replication control kinds start at 40.
    pub const SWITCHOVER: u8 = 40;
    /// Replicated card: the operator's promotion of this card to master
    /// in a new epoch (fences the old one); no authentication, like
    /// `SWITCHOVER`. `FLAGS` bit `ACCEPT_LOST_WARM`: promote a card whose
    /// power cycle lost warm sets.
    pub const PROMOTE: u8 = 41;
    // The heap store (issue 20; seed 003, figure 11) starts at 48: a heap
    // of pages per (application, heap id), K committed versions.
    /// Open a heap (create it with `HEAP_PAGES` and `KEEP` if new): its versions.
    pub const HEAP_OPEN: u8 = 48;
    /// Forget the heap's staged pages and close it.
    pub const HEAP_CLOSE: u8 = 49;
    /// Write pages (`PAGES`, their `CRCS`) from one host buffer to free
    /// space; they are in no version until HEAP_COMMIT.
    pub const HEAP_STAGE: u8 = 50;
    /// Commit the staged pages and the application's state (host buffer)
    /// as a new version; the oldest beyond K goes in the same commit.
    pub const HEAP_COMMIT: u8 = 51;
    /// Drop the staged pages.
    pub const HEAP_ABORT: u8 = 52;
    /// Read pages (staged copy, else the base version's) into a host buffer.
    pub const HEAP_READ: u8 = 53;
    /// The heap's committed versions.
    pub const HEAP_VERSIONS: u8 = 54;
    /// Make a version the base and deliver its application state.
    pub const HEAP_CHECKOUT: u8 = 55;
    /// Delete the heap: every version, one commit.
    pub const HEAP_DELETE: u8 = 56;
    /// The pages the base version wrote since version `VERSION` (0: every
    /// written page), from page `OFFSET` on, at most `HEAP_CHANGED_MAX`
    /// per answer (migration sends only these).
    pub const HEAP_CHANGED: u8 = 57;
    /// Response bit.
    pub const RESPONSE: u8 = 0x80;
}

/// Field tags.
pub mod tag {
    pub const APP: u16 = 1;
    pub const OBJECT: u16 = 2;
    pub const ENDPOINT: u16 = 3;
    pub const STAGE: u16 = 4;
    pub const FLAGS: u16 = 5;
    /// Host address of the data buffer (u64).
    pub const DATA_ADDR: u16 = 6;
    /// Bytes of data in the buffer (STORE, LOG_APPEND) or returned (responses).
    pub const DATA_LEN: u16 = 7;
    /// CRC-32C of the data (STORE: checked by the controller in the datapath).
    pub const DATA_CRC: u16 = 8;
    pub const HANDLE: u16 = 9;
    /// The controller key of the session's protection entry (OPEN response).
    pub const KEY: u16 = 10;
    /// The application secret (OPEN response, first open only).
    pub const SECRET: u16 = 11;
    pub const MAC: u16 = 12;
    /// Result code (`Code`), every response.
    pub const RESULT: u16 = 13;
    /// Human-readable detail of a failure.
    pub const ERROR: u16 = 14;
    /// Packed `SetInfo` records (LIST, FETCH, STAGE, RESTORE responses).
    pub const SETS: u16 = 15;
    pub const LOG_HEAD: u16 = 16;
    pub const LOG_TAIL: u16 = 17;
    /// LOG_TRIM: the new tail.
    pub const TO: u16 = 18;
    /// Capacity of the host data buffer (RESTORE, FETCH, LOG_READ).
    pub const DATA_CAP: u16 = 19;
    /// Packed `LogInfo` records (LOG_READ response).
    pub const RECORDS: u16 = 20;
    /// STATUS response: packed tier states, counters.
    pub const TIERS: u16 = 21;
    pub const COUNTERS: u16 = 22;
    /// Announced reboot stage (STATUS response; absent: none yet).
    pub const ANNOUNCED: u16 = 23;
    /// Bytes the data buffer would need (a TOO_SMALL answer).
    pub const NEEDED: u16 = 24;
    /// STATUS response of a replicated card: its replication state, packed
    /// words (see `message::PeerReport`); absent on a card without a peer.
    pub const PEER: u16 = 25;
    /// IMAGE_INSTALL: the package's whole length (u64).
    pub const TOTAL: u16 = 26;
    /// IMAGE_INSTALL: where this chunk starts in the package (u64); in
    /// the response, the bytes the card holds.
    pub const OFFSET: u16 = 27;
    /// Image responses: the card's image state, packed words (see
    /// `image::ImageReport`).
    pub const IMAGE_STATE: u16 = 28;
    /// Image responses: each NVS device's copy of each context area,
    /// packed words.
    pub const IMAGE_HEALTH: u16 = 29;
    /// Image responses: the running image's manifest (the SGC, JSON).
    pub const MANIFEST: u16 = 30;
    /// Image responses: notes for the operator, one per line (UTF-8).
    pub const NOTES: u16 = 31;
    /// IMAGE_SERVE: the HTTP server's address (`host:port`, UTF-8).
    pub const HTTP_ADDR: u16 = 32;
    /// IMAGE_SERVE: the TFTP server's address (`host:port`, UTF-8).
    pub const TFTP_ADDR: u16 = 33;
    /// IMAGE_INSTALL response: the installed version (u64).
    pub const VERSION: u16 = 34;
    /// IMAGE_INSTALL response: what the install did, packed words.
    pub const INSTALL: u16 = 35;
    /// IMAGE_INSTALL response: components written from the package.
    pub const WRITTEN: u16 = 36;
    /// IMAGE_INSTALL response: unchanged components copied on the card.
    pub const COPIED: u16 = 37;
    // Replication control fields start at 40.
    /// A node id: the master (a `NotMaster` answer, the SWITCHOVER
    /// response) or the node to hand over to (SWITCHOVER request).
    pub const MASTER: u16 = 40;
    /// The master's epoch (u64: a `NotMaster` answer, the SWITCHOVER
    /// response).
    pub const EPOCH: u16 = 41;
    /// SWITCHOVER response: the old master's epoch (u64).
    pub const FROM_EPOCH: u16 = 42;
    /// SWITCHOVER response: the last bracket handed over (u64).
    pub const BRACKET: u16 = 43;
    /// STATUS of a replicated card: why its takeover was not hitless
    /// (claim 18), absent after a hitless one.
    pub const CAUSE: u16 = 44;
    /// STATUS: the node that took over from this card and said why
    /// (`CAUSE_HEARD`).
    pub const CAUSE_FROM: u16 = 45;
    pub const CAUSE_HEARD: u16 = 46;
    /// STATUS of a master: bytes not yet acknowledged by every slave (u64).
    pub const LAG_BYTES: u16 = 47;
    // Heap store fields start at 48.
    /// The heap id (0..=255) of the application's heap.
    pub const HEAP: u16 = 48;
    /// HEAP_OPEN: the heap's size in pages of 4096 bytes.
    pub const HEAP_PAGES: u16 = 49;
    /// HEAP_OPEN: versions to keep (K).
    pub const KEEP: u16 = 50;
    /// HEAP_STAGE / HEAP_READ: page numbers (packed u32).
    pub const PAGES: u16 = 51;
    /// HEAP_STAGE: each page's CRC-32C (packed u32, same order).
    pub const CRCS: u16 = 52;
    /// Heap responses: packed `HeapVersion` records.
    pub const VERSIONS: u16 = 53;
    /// HEAP_READ response: the requested pages never written (packed u32;
    /// their bytes in the host buffer are untouched).
    pub const ABSENT: u16 = 54;
    /// STATUS of a replicated card: the link schema it speaks, which its
    /// booted image decides (a rolling upgrade changes it).
    pub const LINK_SCHEMA: u16 = 55;
    /// PROMOTE response: what the operator accepted to lose (u64: bit 63
    /// a count of warm sets in the low 32 bits, bit 62 warm log records;
    /// 0: warm sets, how many unknown). Absent: nothing lost.
    pub const LOST_WARM: u16 = 56;
}

/// Request flags (`FLAGS`).
pub mod flags {
    /// STORE / LOG_*: the cold tier (survives a power cycle), else warm.
    pub const COLD: u32 = 1 << 0;
    /// LOG_APPEND: overwrite mode, keep only this record (claim 13).
    pub const OVERWRITE: u32 = 1 << 1;
    /// OPEN: the session may read its sets.
    pub const READ: u32 = 1 << 2;
    /// OPEN: the session may store and delete sets.
    pub const WRITE: u32 = 1 << 3;
    /// OPEN: the session may use the append log.
    pub const LOG: u32 = 1 << 4;
    pub const ALL: u32 = 0x1F;
    /// IMAGE_INSTALL only: install a version lower than the running one
    /// (anti-rollback override).
    pub const FORCE: u32 = 1 << 5;
    /// PROMOTE only: promote a card whose power cycle lost warm sets
    /// (its cold tier is whole to its mark).
    pub const ACCEPT_LOST_WARM: u32 = 1 << 6;
}

/// Result codes (`RESULT` field and the `MB_RESULT` register).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Code {
    Ok = 0,
    /// The request is not a well-formed message (TLV error, wrong field size).
    BadMessage = 1,
    /// Unknown request kind.
    UnknownRequest = 2,
    /// Wrong, missing or replayed credentials (counted in `MB_AUTH_FAILS`).
    AuthFailed = 3,
    /// No such set / session.
    NotFound = 4,
    /// The region cannot hold the new image.
    NoSpace = 5,
    /// The host buffer is too small (`NEEDED` says how large it must be).
    TooSmall = 6,
    /// FETCH of a reboot stage the host has not announced yet.
    NotYet = 7,
    /// The append log has no room: the reader must trim first.
    LogFull = 8,
    /// The log range holds another application's records, or the tier
    /// holds an image that is not a record table.
    Foreign = 9,
    /// The controller refused an operation (detail in `ERROR`).
    Device = 10,
    /// The tier's both regions failed their integrity test.
    Lost = 11,
    /// No free protection entry for a new session.
    NoSession = 12,
    /// A host buffer could not be read or written by DMA.
    HostMemory = 13,
    /// The session lacks the permission.
    Permission = 14,
    /// An argument is out of range.
    Invalid = 15,
    /// A replicated card that is not its pair's master (a slave, or a
    /// master whose lease ran out): the answer names the master it knows
    /// (`MASTER`) and its epoch (`EPOCH`).
    NotMaster = 16,
}

impl Code {
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::BadMessage,
        Code::UnknownRequest,
        Code::AuthFailed,
        Code::NotFound,
        Code::NoSpace,
        Code::TooSmall,
        Code::NotYet,
        Code::LogFull,
        Code::Foreign,
        Code::Device,
        Code::Lost,
        Code::NoSession,
        Code::HostMemory,
        Code::Permission,
        Code::Invalid,
        Code::NotMaster,
    ];
    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }
    pub fn describe(self) -> &'static str {
        match self {
            Code::Ok => "done",
            Code::BadMessage => "malformed request message",
            Code::UnknownRequest => "unknown request kind",
            Code::AuthFailed => "wrong or missing credentials",
            Code::NotFound => "no such set or session",
            Code::NoSpace => "the region has no room for the new image",
            Code::TooSmall => "the host buffer is too small",
            Code::NotYet => "that reboot stage has not been announced",
            Code::LogFull => "the append log is full (the reader must trim)",
            Code::Foreign => "belongs to another application or is not a record table",
            Code::Device => "the controller refused an operation",
            Code::Lost => "both regions of the tier failed their integrity test",
            Code::NoSession => "no free protection entry",
            Code::HostMemory => "host buffer not reachable by DMA",
            Code::Permission => "the session lacks the permission",
            Code::Invalid => "argument out of range",
            Code::NotMaster => "this card is not the master of its pair",
        }
    }
}

/// Which tier a set lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TierSel {
    Warm = 0,
    Cold = 1,
}

impl TierSel {
    pub fn of_flags(f: u32) -> Self {
        if f & flags::COLD != 0 {
            TierSel::Cold
        } else {
            TierSel::Warm
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            TierSel::Warm => "warm",
            TierSel::Cold => "cold",
        }
    }
}

/// One set as responses describe it (32 bytes packed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetInfo {
    pub app: u32,
    pub object: u32,
    pub endpoint: u32,
    pub stage: u32,
    pub tier: TierSel,
    pub len: u32,
    pub crc: u32,
    /// Where its bytes are in the host data buffer (FETCH, RESTORE).
    pub data_offset: u32,
}

impl SetInfo {
    pub const BYTES: usize = 32;
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        let w = [
            self.app,
            self.object,
            self.endpoint,
            self.stage,
            self.tier as u32,
            self.len,
            self.crc,
            self.data_offset,
        ];
        for (i, v) in w.into_iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != Self::BYTES {
            return None;
        }
        let u = |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        Some(Self {
            app: u(0),
            object: u(1),
            endpoint: u(2),
            stage: u(3),
            tier: if u(4) & 1 == 1 {
                TierSel::Cold
            } else {
                TierSel::Warm
            },
            len: u(5),
            crc: u(6),
            data_offset: u(7),
        })
    }
}

/// One append-log record as LOG_READ describes it (24 bytes packed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogInfo {
    pub object: u32,
    /// Free-running log offset of the record.
    pub offset: u32,
    /// Log sequence number.
    pub seq: u64,
    pub len: u32,
    /// Where its payload is in the host data buffer.
    pub data_offset: u32,
}

impl LogInfo {
    pub const BYTES: usize = 24;
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0..4].copy_from_slice(&self.object.to_le_bytes());
        b[4..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..20].copy_from_slice(&self.len.to_le_bytes());
        b[20..24].copy_from_slice(&self.data_offset.to_le_bytes());
        b
    }
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != Self::BYTES {
            return None;
        }
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[8..16]);
        Some(Self {
            object: u(0),
            offset: u(4),
            seq: u64::from_le_bytes(s),
            len: u(16),
            data_offset: u(20),
        })
    }
}

/// Bytes of a heap page (HEAP_STAGE / HEAP_READ move whole pages).
pub const HEAP_PAGE_BYTES: usize = 4096;
/// Most pages one HEAP_STAGE or HEAP_READ names (1 MiB of data).
pub const HEAP_REQUEST_PAGES: usize = 256;
/// Most page numbers one HEAP_CHANGED answer lists.
pub const HEAP_CHANGED_MAX: usize = 16384;
/// Object ids `0xFFFF_0000..=0xFFFF_FFFF` are the heap store's roots
/// (`0xFFFF_0000 | heap << 8 | version mod 256`): LIST shows them, STORE
/// and DELETE of them are refused.
pub const HEAP_ROOT_OBJECTS: u32 = 0xFFFF_0000;

/// The heap whose root an object id is, if it is one.
pub fn heap_of_object(object: u32) -> Option<u32> {
    (object & HEAP_ROOT_OBJECTS == HEAP_ROOT_OBJECTS).then_some((object >> 8) & 0xFF)
}

/// One committed version of a heap (20 bytes packed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapVersion {
    pub version: u64,
    /// The application state's length and CRC.
    pub state_len: u32,
    pub state_crc: u32,
    /// Pages staged into this version (written since its base).
    pub pages: u32,
}

impl HeapVersion {
    pub const BYTES: usize = 20;
    pub fn to_bytes(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[0..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.state_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.state_crc.to_le_bytes());
        b[16..20].copy_from_slice(&self.pages.to_le_bytes());
        b
    }
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != Self::BYTES {
            return None;
        }
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[0..8]);
        Some(Self {
            version: u64::from_le_bytes(v),
            state_len: u(8),
            state_crc: u(12),
            pages: u(16),
        })
    }
}

/// Pack u32 words (page numbers, CRCs) into a field.
pub fn pack_u32(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Split a packed list field into fixed-size records.
pub fn unpack<T>(
    bytes: &[u8],
    size: usize,
    f: impl Fn(&[u8]) -> Option<T>,
    tag: u16,
) -> Result<Vec<T>, TlvError> {
    if !bytes.len().is_multiple_of(size) {
        return Err(TlvError::FieldSize {
            tag,
            len: bytes.len(),
            expected: size,
        });
    }
    Ok(bytes.chunks(size).filter_map(f).collect())
}

/// A response under construction: kind, result, then fields.
pub fn response(request_kind: u8, code: Code) -> Builder {
    Builder::new(kind::RESPONSE | request_kind).u32(tag::RESULT, code as u32)
}

/// A decoded response's result code and detail.
pub fn result_of(m: &Message<'_>) -> Result<(Code, String), TlvError> {
    let code = m.u32_or(tag::RESULT, Code::BadMessage as u32)?;
    let code = Code::from_u32(code).unwrap_or(Code::BadMessage);
    let detail = String::from_utf8_lossy(m.bytes_or_empty(tag::ERROR)).into_owned();
    Ok((code, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_records_round_trip() {
        let s = SetInfo {
            app: 1,
            object: 2,
            endpoint: 3,
            stage: 4,
            tier: TierSel::Cold,
            len: 5,
            crc: 6,
            data_offset: 7,
        };
        assert_eq!(SetInfo::from_bytes(&s.to_bytes()), Some(s));
        let l = LogInfo {
            object: 1,
            offset: 2,
            seq: 3,
            len: 4,
            data_offset: 5,
        };
        assert_eq!(LogInfo::from_bytes(&l.to_bytes()), Some(l));
        assert!(unpack(&[0u8; 33], 32, SetInfo::from_bytes, tag::SETS).is_err());
        assert_eq!(
            unpack(
                &[s.to_bytes(), s.to_bytes()].concat(),
                32,
                SetInfo::from_bytes,
                tag::SETS
            )
            .unwrap(),
            vec![s, s]
        );
        for c in Code::ALL {
            assert_eq!(Code::from_u32(c as u32), Some(c));
            assert!(!c.describe().is_empty());
        }
        assert_eq!(Code::from_u32(99), None);
    }

    /// docs/firmware.md's result-code table lists exactly `Code::ALL`, by
    /// number and name, in order.
    #[test]
    fn the_code_table_in_docs_is_the_enums() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/firmware.md"))
                .unwrap();
        let start = doc
            .find("| code | name | meaning |")
            .expect("the code table");
        let rows: Vec<(u32, String)> = doc[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let c: Vec<&str> = l.split('|').map(str::trim).collect();
                (c[1].parse().unwrap(), c[2].to_string())
            })
            .collect();
        let screaming = |s: &str| {
            let mut out = String::new();
            for (i, ch) in s.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        };
        let want: Vec<(u32, String)> = Code::ALL
            .iter()
            .map(|c| (*c as u32, screaming(&format!("{c:?}"))))
            .collect();
        assert_eq!(rows, want);
    }
}
