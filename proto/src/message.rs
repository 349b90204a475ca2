//! Typed requests and responses: what the fields of [`crate::msg`] mean
//! for each request kind, written once for both sides. The card decodes a
//! [`Request`] and encodes a [`Response`]; the host does the reverse.
//!
//! Version tolerance is the TLV format's (seed 004, claims 8-12): fields a
//! side does not know are skipped, fields it knows but did not receive
//! take the defaults written here (the same defaults on both sides).

use crate::image::{ImageReport, InstallProgress};
use crate::msg::{flags, kind, pack_u32, tag, unpack, Code, HeapVersion, LogInfo, SetInfo};
use crate::tlv::{Builder, Message, TlvError};
use hitless_hdl::contract::crc32c;

/// A request body: the kind and its fields. Authenticated requests
/// (every kind but `Status`, `Stage` and `Open`'s first use) travel with
/// the session's `HANDLE` and are signed ([`crate::auth`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Firmware and tier state.
    Status,
    /// Open a session for `app` with the [`flags`] `READ`/`WRITE`/`LOG`.
    Open { app: u32, flags: u32 },
    /// Close the session.
    Close,
    /// Store `len` bytes at host `addr` (CRC-32C `crc`) as the set `object`.
    Store {
        object: u32,
        endpoint: u32,
        stage: u32,
        /// Request flags; `COLD` picks the tier.
        flags: u32,
        addr: u64,
        len: u32,
        crc: u32,
    },
    /// Delete the set `object`; `endpoint` names the card that holds it
    /// (0: this card; a replicated card's peer: deleted there over the
    /// link).
    Delete { object: u32, endpoint: u32 },
    /// Read the set `object` into the host buffer `addr` of `cap` bytes;
    /// `endpoint` names the card that holds it (0: this card; a
    /// replicated card's peer: fetched from it over the link).
    Restore {
        object: u32,
        endpoint: u32,
        addr: u64,
        cap: u32,
    },
    /// The session's sets on the card `endpoint` names (0: this card; a
    /// replicated card's peer: the sets it holds for this application).
    List { endpoint: u32 },
    /// Announce a reboot stage.
    Stage { stage: u32 },
    /// The session's sets of an announced stage, into the host buffer.
    Fetch { stage: u32, addr: u64, cap: u32 },
    /// Append `len` bytes at host `addr` to the log of the tier `flags` names.
    LogAppend {
        object: u32,
        flags: u32,
        addr: u64,
        len: u32,
    },
    /// The session's unread log records, into the host buffer.
    LogRead { flags: u32, addr: u64, cap: u32 },
    /// Clear the log up to `to` (absent: up to the head).
    LogTrim { flags: u32, to: Option<u32> },
    /// Erase the tier's record table (the firmware's own records stay).
    Format { flags: u32 },
    /// The card's software images: running version, trial, NVS health.
    ImageStatus,
    /// A chunk of a signed package: `len` bytes at host `addr` are the
    /// package's bytes `[offset, offset + len)` of `total`. A chunk at
    /// offset 0 starts a new upload; each next one must start where the
    /// card's copy ends (the response says where). The chunk that
    /// completes the package makes the card verify it whole (signature,
    /// key, expiry, checksums, anti-rollback unless `force`) before it
    /// writes anything, then install and mirror it.
    ImageInstall {
        total: u64,
        offset: u64,
        addr: u64,
        len: u32,
        force: bool,
    },
    /// Set the alternate boot flag: the next boot is a trial boot.
    ImageActivate,
    /// The trial image works: make it current.
    ImageMarkGood,
    /// Abandon a trial, or make the previous image current again.
    ImageRollback,
    /// Reboot the card: answered (the image state before), then the card
    /// goes down and boots again (an activated image on trial).
    ImageReboot,
    /// Serve the running image's components on these addresses
    /// (`host:port`); neither: stop serving.
    ImageServe {
        http: Option<String>,
        tftp: Option<String>,
    },
    /// Replicated card: hand the master role to node `to` (absent: the
    /// only slave in sync), hitless (claim 44).
    Switchover { to: Option<u32> },
    /// Replicated card: the operator's promotion of this card to master
    /// (a new epoch fencing the old master). `accept_lost_warm`: also a
    /// card whose power cycle lost warm sets.
    Promote { accept_lost_warm: bool },
    /// Open heap `heap` (created with `heap_pages` pages and `keep`
    /// versions if it has none; an existing heap must have `heap_pages`;
    /// `keep` applies from the next commit). `flags`: `COLD` picks the tier.
    HeapOpen {
        heap: u32,
        heap_pages: u32,
        keep: u32,
        flags: u32,
    },
    /// Drop the heap's staged pages and close it.
    HeapClose { heap: u32 },
    /// Write `pages` (CRC-32C `crcs`, same order) from the host buffer
    /// `addr` (page `pages[i]` at `addr + 4096 i`) to free space.
    HeapStage {
        heap: u32,
        pages: Vec<u32>,
        crcs: Vec<u32>,
        addr: u64,
    },
    /// Commit the staged pages and `len` bytes of application state at
    /// `addr` (CRC `crc`) as a new version.
    HeapCommit {
        heap: u32,
        addr: u64,
        len: u32,
        crc: u32,
    },
    /// Drop the staged pages.
    HeapAbort { heap: u32 },
    /// Read `pages` into the host buffer `addr` of `cap` bytes.
    HeapRead {
        heap: u32,
        pages: Vec<u32>,
        addr: u64,
        cap: u32,
    },
    /// The heap's committed versions.
    HeapVersions { heap: u32 },
    /// Make `version` the base; its state goes to the host buffer.
    HeapCheckout {
        heap: u32,
        version: u64,
        addr: u64,
        cap: u32,
    },
    /// Delete every version of the heap.
    HeapDelete { heap: u32 },
    /// Pages of the base version that differ from version `since` (0:
    /// every written page), from page `first` on.
    HeapChanged { heap: u32, since: u64, first: u32 },
}

/// Why a message is not a request this side can decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// Not a well-formed TLV message, or a field of the wrong size.
    #[error(transparent)]
    Tlv(#[from] TlvError),
    /// A request kind this side does not know.
    #[error("request kind {0}")]
    UnknownKind(u8),
}

impl RequestError {
    /// The result code the card answers with.
    pub fn code(&self) -> Code {
        match self {
            RequestError::Tlv(_) => Code::BadMessage,
            RequestError::UnknownKind(_) => Code::UnknownRequest,
        }
    }
}

impl Request {
    /// The message kind.
    pub fn kind(&self) -> u8 {
        match self {
            Request::Status => kind::STATUS,
            Request::Open { .. } => kind::OPEN,
            Request::Close => kind::CLOSE,
            Request::Store { .. } => kind::STORE,
            Request::Delete { .. } => kind::DELETE,
            Request::Restore { .. } => kind::RESTORE,
            Request::List { .. } => kind::LIST,
            Request::Stage { .. } => kind::STAGE,
            Request::Fetch { .. } => kind::FETCH,
            Request::LogAppend { .. } => kind::LOG_APPEND,
            Request::LogRead { .. } => kind::LOG_READ,
            Request::LogTrim { .. } => kind::LOG_TRIM,
            Request::Format { .. } => kind::FORMAT,
            Request::ImageStatus => kind::IMAGE_STATUS,
            Request::ImageInstall { .. } => kind::IMAGE_INSTALL,
            Request::ImageActivate => kind::IMAGE_ACTIVATE,
            Request::ImageMarkGood => kind::IMAGE_MARK_GOOD,
            Request::ImageRollback => kind::IMAGE_ROLLBACK,
            Request::ImageReboot => kind::IMAGE_REBOOT,
            Request::ImageServe { .. } => kind::IMAGE_SERVE,
            Request::Switchover { .. } => kind::SWITCHOVER,
            Request::Promote { .. } => kind::PROMOTE,
            Request::HeapOpen { .. } => kind::HEAP_OPEN,
            Request::HeapClose { .. } => kind::HEAP_CLOSE,
            Request::HeapStage { .. } => kind::HEAP_STAGE,
            Request::HeapCommit { .. } => kind::HEAP_COMMIT,
            Request::HeapAbort { .. } => kind::HEAP_ABORT,
            Request::HeapRead { .. } => kind::HEAP_READ,
            Request::HeapVersions { .. } => kind::HEAP_VERSIONS,
            Request::HeapCheckout { .. } => kind::HEAP_CHECKOUT,
            Request::HeapDelete { .. } => kind::HEAP_DELETE,
            Request::HeapChanged { .. } => kind::HEAP_CHANGED,
        }
    }

    /// Whether the request needs a session (a `HANDLE` and a MAC). The
    /// image requests need none: they are the card operator's, who reaches
    /// the mailbox only by owning the card's device (`hitlessd` refuses
    /// them), and a package is authenticated by its own signature.
    pub fn needs_session(kind: u8) -> bool {
        !matches!(
            kind,
            kind::STATUS | kind::STAGE | kind::OPEN | kind::SWITCHOVER | kind::PROMOTE
        ) && !Self::is_image(kind)
    }

    /// Whether the kind is one of the image manager's (`IMAGE_*`).
    pub fn is_image(kind: u8) -> bool {
        (kind::IMAGE_STATUS..=kind::IMAGE_REBOOT).contains(&kind)
    }

    /// The session permission the request needs ([`flags`] `READ`,
    /// `WRITE` or `LOG`) and what it is for, as the card checks it.
    pub fn permission(&self) -> Option<(u32, &'static str)> {
        match self {
            Request::Store { .. }
            | Request::Delete { .. }
            | Request::Format { .. }
            | Request::HeapStage { .. }
            | Request::HeapCommit { .. }
            | Request::HeapAbort { .. }
            | Request::HeapDelete { .. } => Some((flags::WRITE, "writing")),
            Request::List { .. }
            | Request::Restore { .. }
            | Request::Fetch { .. }
            | Request::HeapOpen { .. }
            | Request::HeapRead { .. }
            | Request::HeapVersions { .. }
            | Request::HeapCheckout { .. }
            | Request::HeapChanged { .. } => Some((flags::READ, "reading")),
            Request::LogAppend { .. } | Request::LogRead { .. } | Request::LogTrim { .. } => {
                Some((flags::LOG, "the append log"))
            }
            Request::Status
            | Request::Open { .. }
            | Request::Close
            | Request::Stage { .. }
            | Request::ImageStatus
            | Request::ImageInstall { .. }
            | Request::ImageActivate
            | Request::ImageMarkGood
            | Request::ImageRollback
            | Request::ImageReboot
            | Request::ImageServe { .. }
            | Request::Switchover { .. }
            | Request::Promote { .. }
            | Request::HeapClose { .. } => None,
        }
    }

    /// The message without handle or MAC.
    pub fn encode(&self) -> Builder {
        let b = Builder::new(self.kind());
        match *self {
            Request::Status
            | Request::Close
            | Request::ImageStatus
            | Request::ImageActivate
            | Request::ImageMarkGood
            | Request::ImageRollback
            | Request::ImageReboot => b,
            Request::ImageInstall {
                total,
                offset,
                addr,
                len,
                force,
            } => b
                .u64(tag::TOTAL, total)
                .u64(tag::OFFSET, offset)
                .u64(tag::DATA_ADDR, addr)
                .u32(tag::DATA_LEN, len)
                .u32(tag::FLAGS, if force { flags::FORCE } else { 0 }),
            Request::ImageServe { ref http, ref tftp } => {
                let b = match http {
                    Some(h) => b.bytes(tag::HTTP_ADDR, h.as_bytes()),
                    None => b,
                };
                match tftp {
                    Some(t) => b.bytes(tag::TFTP_ADDR, t.as_bytes()),
                    None => b,
                }
            }
            Request::Open { app, flags } => b.u32(tag::APP, app).u32(tag::FLAGS, flags),
            Request::Store {
                object,
                endpoint,
                stage,
                flags,
                addr,
                len,
                crc,
            } => b
                .u32(tag::OBJECT, object)
                .u32(tag::ENDPOINT, endpoint)
                .u32(tag::STAGE, stage)
                .u32(tag::FLAGS, flags)
                .u64(tag::DATA_ADDR, addr)
                .u32(tag::DATA_LEN, len)
                .u32(tag::DATA_CRC, crc),
            Request::Delete { object, endpoint } => {
                endpoint_unless_here(b.u32(tag::OBJECT, object), endpoint)
            }
            Request::List { endpoint } => endpoint_unless_here(b, endpoint),
            Request::Restore {
                object,
                endpoint,
                addr,
                cap,
            } => {
                let b = b
                    .u32(tag::OBJECT, object)
                    .u64(tag::DATA_ADDR, addr)
                    .u32(tag::DATA_CAP, cap);
                endpoint_unless_here(b, endpoint)
            }
            Request::Stage { stage } => b.u32(tag::STAGE, stage),
            Request::Fetch { stage, addr, cap } => b
                .u32(tag::STAGE, stage)
                .u64(tag::DATA_ADDR, addr)
                .u32(tag::DATA_CAP, cap),
            Request::LogAppend {
                object,
                flags,
                addr,
                len,
            } => b
                .u32(tag::OBJECT, object)
                .u32(tag::FLAGS, flags)
                .u64(tag::DATA_ADDR, addr)
                .u32(tag::DATA_LEN, len),
            Request::LogRead { flags, addr, cap } => b
                .u32(tag::FLAGS, flags)
                .u64(tag::DATA_ADDR, addr)
                .u32(tag::DATA_CAP, cap),
            Request::LogTrim { flags, to } => {
                let b = b.u32(tag::FLAGS, flags);
                match to {
                    Some(to) => b.u32(tag::TO, to),
                    None => b,
                }
            }
            Request::Format { flags } => b.u32(tag::FLAGS, flags),
            Request::HeapOpen {
                heap,
                heap_pages,
                keep,
                flags,
            } => b
                .u32(tag::HEAP, heap)
                .u32(tag::HEAP_PAGES, heap_pages)
                .u32(tag::KEEP, keep)
                .u32(tag::FLAGS, flags),
            Request::HeapClose { heap }
            | Request::HeapAbort { heap }
            | Request::HeapVersions { heap }
            | Request::HeapDelete { heap } => b.u32(tag::HEAP, heap),
            Request::HeapStage {
                heap,
                ref pages,
                ref crcs,
                addr,
            } => b
                .u32(tag::HEAP, heap)
                .bytes(tag::PAGES, &pack_u32(pages))
                .bytes(tag::CRCS, &pack_u32(crcs))
                .u64(tag::DATA_ADDR, addr),
            Request::HeapCommit {
                heap,
                addr,
                len,
                crc,
            } => b
                .u32(tag::HEAP, heap)
                .u64(tag::DATA_ADDR, addr)
                .u32(tag::DATA_LEN, len)
                .u32(tag::DATA_CRC, crc),
            Request::HeapRead {
                heap,
                ref pages,
                addr,
                cap,
            } => b
                .u32(tag::HEAP, heap)
                .bytes(tag::PAGES, &pack_u32(pages))
                .u64(tag::DATA_ADDR, addr)
                .u32(tag::DATA_CAP, cap),
            Request::HeapChanged { heap, since, first } => b
                .u32(tag::HEAP, heap)
                .u64(tag::VERSION, since)
                .u64(tag::OFFSET, first as u64),
            Request::HeapCheckout {
                heap,
                version,
                addr,
                cap,
            } => b
                .u32(tag::HEAP, heap)
                .u64(tag::VERSION, version)
                .u64(tag::DATA_ADDR, addr)
                .u32(tag::DATA_CAP, cap),
            Request::Switchover { to } => match to {
                Some(to) => b.u32(tag::MASTER, to),
                None => b,
            },
            Request::Promote { accept_lost_warm } => b.u32(
                tag::FLAGS,
                if accept_lost_warm {
                    flags::ACCEPT_LOST_WARM
                } else {
                    0
                },
            ),
        }
    }

    /// Decode a request; missing fields take their defaults.
    pub fn decode(m: &Message<'_>) -> Result<Self, RequestError> {
        let u = |t: u16, d: u32| m.u32_or(t, d);
        let object = || u(tag::OBJECT, 0);
        let fl = || u(tag::FLAGS, 0);
        let addr = || m.u64_or(tag::DATA_ADDR, 0);
        let cap = || u(tag::DATA_CAP, 0);
        let heap = || u(tag::HEAP, 0);
        let words = |t: u16| unpack_u32(m.bytes_or_empty(t), t);
        Ok(match m.kind {
            kind::STATUS => Request::Status,
            kind::OPEN => Request::Open {
                app: u(tag::APP, 0)?,
                flags: u(tag::FLAGS, flags::READ | flags::WRITE | flags::LOG)?,
            },
            kind::CLOSE => Request::Close,
            kind::STORE => Request::Store {
                object: object()?,
                endpoint: u(tag::ENDPOINT, 0)?,
                stage: u(tag::STAGE, 0)?,
                flags: fl()?,
                addr: addr()?,
                len: u(tag::DATA_LEN, 0)?,
                crc: u(tag::DATA_CRC, crc32c(&[]))?,
            },
            kind::DELETE => Request::Delete {
                object: object()?,
                endpoint: u(tag::ENDPOINT, 0)?,
            },
            kind::RESTORE => Request::Restore {
                object: object()?,
                endpoint: u(tag::ENDPOINT, 0)?,
                addr: addr()?,
                cap: cap()?,
            },
            kind::LIST => Request::List {
                endpoint: u(tag::ENDPOINT, 0)?,
            },
            kind::STAGE => Request::Stage {
                stage: u(tag::STAGE, 0)?,
            },
            kind::FETCH => Request::Fetch {
                stage: u(tag::STAGE, 0)?,
                addr: addr()?,
                cap: cap()?,
            },
            kind::LOG_APPEND => Request::LogAppend {
                object: object()?,
                flags: fl()?,
                addr: addr()?,
                len: u(tag::DATA_LEN, 0)?,
            },
            kind::LOG_READ => Request::LogRead {
                flags: fl()?,
                addr: addr()?,
                cap: cap()?,
            },
            kind::LOG_TRIM => Request::LogTrim {
                flags: fl()?,
                to: if m.has(tag::TO) {
                    Some(u(tag::TO, 0)?)
                } else {
                    None
                },
            },
            kind::FORMAT => Request::Format { flags: fl()? },
            kind::IMAGE_STATUS => Request::ImageStatus,
            kind::IMAGE_INSTALL => Request::ImageInstall {
                total: m.u64_or(tag::TOTAL, 0)?,
                offset: m.u64_or(tag::OFFSET, 0)?,
                addr: addr()?,
                len: u(tag::DATA_LEN, 0)?,
                force: fl()? & flags::FORCE != 0,
            },
            kind::IMAGE_ACTIVATE => Request::ImageActivate,
            kind::IMAGE_MARK_GOOD => Request::ImageMarkGood,
            kind::IMAGE_ROLLBACK => Request::ImageRollback,
            kind::IMAGE_REBOOT => Request::ImageReboot,
            kind::IMAGE_SERVE => {
                let text = |t: u16| m.field(t).map(|b| String::from_utf8_lossy(b).into_owned());
                Request::ImageServe {
                    http: text(tag::HTTP_ADDR),
                    tftp: text(tag::TFTP_ADDR),
                }
            }
            kind::SWITCHOVER => Request::Switchover {
                to: if m.has(tag::MASTER) {
                    Some(u(tag::MASTER, 0)?)
                } else {
                    None
                },
            },
            kind::PROMOTE => Request::Promote {
                accept_lost_warm: u(tag::FLAGS, 0)? & flags::ACCEPT_LOST_WARM != 0,
            },
            kind::HEAP_OPEN => Request::HeapOpen {
                heap: heap()?,
                heap_pages: u(tag::HEAP_PAGES, 0)?,
                keep: u(tag::KEEP, 0)?,
                flags: fl()?,
            },
            kind::HEAP_CLOSE => Request::HeapClose { heap: heap()? },
            kind::HEAP_STAGE => Request::HeapStage {
                heap: heap()?,
                pages: words(tag::PAGES)?,
                crcs: words(tag::CRCS)?,
                addr: addr()?,
            },
            kind::HEAP_COMMIT => Request::HeapCommit {
                heap: heap()?,
                addr: addr()?,
                len: u(tag::DATA_LEN, 0)?,
                crc: u(tag::DATA_CRC, crc32c(&[]))?,
            },
            kind::HEAP_ABORT => Request::HeapAbort { heap: heap()? },
            kind::HEAP_READ => Request::HeapRead {
                heap: heap()?,
                pages: words(tag::PAGES)?,
                addr: addr()?,
                cap: cap()?,
            },
            kind::HEAP_VERSIONS => Request::HeapVersions { heap: heap()? },
            kind::HEAP_CHECKOUT => Request::HeapCheckout {
                heap: heap()?,
                version: m.u64_or(tag::VERSION, 0)?,
                addr: addr()?,
                cap: cap()?,
            },
            kind::HEAP_DELETE => Request::HeapDelete { heap: heap()? },
            kind::HEAP_CHANGED => Request::HeapChanged {
                heap: heap()?,
                since: m.u64_or(tag::VERSION, 0)?,
                first: u32::try_from(m.u64_or(tag::OFFSET, 0)?).unwrap_or(u32::MAX),
            },
            other => return Err(RequestError::UnknownKind(other)),
        })
    }
}

/// A packed list of u32 words (page numbers, CRCs).
/// A request's `ENDPOINT`, left out for this card (0): the request is
/// then the same bytes as before endpoints had a meaning.
fn endpoint_unless_here(b: Builder, endpoint: u32) -> Builder {
    if endpoint == 0 {
        b
    } else {
        b.u32(tag::ENDPOINT, endpoint)
    }
}

fn unpack_u32(b: &[u8], tag: u16) -> Result<Vec<u32>, TlvError> {
    unpack(
        b,
        4,
        |c| Some(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        tag,
    )
}

/// One tier as the firmware's STATUS reports it (24 bytes packed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierReport {
    /// [`TierReport::READY`], [`TierReport::LOST`] or [`TierReport::FOREIGN`].
    pub state: u32,
    /// The controller's boot result for the tier (`BootResult` as u32).
    pub boot_result: u32,
    pub sets: u32,
    pub image_bytes: u32,
    pub log_head: u32,
    pub log_tail: u32,
}

impl TierReport {
    pub const READY: u32 = 0;
    pub const LOST: u32 = 1;
    pub const FOREIGN: u32 = 2;
    pub const BYTES: usize = 24;

    pub fn state_name(&self) -> &'static str {
        match self.state {
            Self::READY => "ready",
            Self::LOST => "lost",
            _ => "foreign image",
        }
    }

    fn words(&self) -> [u32; 6] {
        [
            self.state,
            self.boot_result,
            self.sets,
            self.image_bytes,
            self.log_head,
            self.log_tail,
        ]
    }

    fn from_words(w: &[u32]) -> Self {
        Self {
            state: w[0],
            boot_result: w[1],
            sets: w[2],
            image_bytes: w[3],
            log_head: w[4],
            log_tail: w[5],
        }
    }
}

/// A replicated card's replication state (STATUS, `PEER` field): what
/// `hitless peer status` shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerReport {
    /// This card's node id.
    pub node: u32,
    /// [`crate::link::Role`] as its number: 0 master, 1 slave, 2 standby.
    pub role: u32,
    /// The newest epoch the card knows.
    pub epoch: u64,
    /// The master it follows (a slave), if known.
    pub master: Option<u32>,
    /// Slaves in the in-sync set (a master), besides itself.
    pub in_sync: u32,
    /// Brackets not yet acknowledged by every slave (a master).
    pub lag_brackets: u32,
    /// The last bracket applied or closed, and its epoch.
    pub mark_epoch: u64,
    pub mark_bracket: u64,
}

impl PeerReport {
    const WORDS: usize = 11;

    pub fn role_name(&self) -> &'static str {
        match self.role {
            0 => "master",
            1 => "slave",
            2 => "standby",
            _ => "unknown",
        }
    }

    fn words(&self) -> [u32; Self::WORDS] {
        let lo = |v: u64| v as u32;
        let hi = |v: u64| (v >> 32) as u32;
        [
            self.node,
            self.role,
            lo(self.epoch),
            hi(self.epoch),
            self.master.unwrap_or(u32::MAX),
            self.in_sync,
            self.lag_brackets,
            lo(self.mark_epoch),
            hi(self.mark_epoch),
            lo(self.mark_bracket),
            hi(self.mark_bracket),
        ]
    }

    fn from_words(w: &[u32]) -> Self {
        let u = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
        Self {
            node: w[0],
            role: w[1],
            epoch: u(w[2], w[3]),
            master: Some(w[4]).filter(|m| *m != u32::MAX),
            in_sync: w[5],
            lag_brackets: w[6],
            mark_epoch: u(w[7], w[8]),
            mark_bracket: u(w[9], w[10]),
        }
    }
}

/// What a replicated card's STATUS adds beside [`PeerReport`] (fields of
/// their own, so an older reader skips them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerNotes {
    /// A master: bytes not yet acknowledged by every slave.
    pub lag_bytes: Option<u64>,
    /// Why this card's takeover was not hitless (claim 18); `None` after a
    /// hitless one (a switchover) or on a card that never took over.
    pub cause: Option<String>,
    /// The node that took over from this card, and the cause it sent
    /// (claim 18: the new master tells the old one).
    pub cause_heard: Option<(u32, String)>,
    /// The link schema this card speaks (its booted image's; an older
    /// card does not say).
    pub link_schema: Option<u32>,
}

/// The firmware's STATUS answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusReport {
    pub warm: TierReport,
    pub cold: TierReport,
    pub requests: u32,
    pub auth_fails: u32,
    pub stores: u32,
    pub sessions_opened: u32,
    /// The announced reboot stage (none yet: `None`).
    pub announced: Option<u32>,
    /// A replicated card's replication state (none: no peer).
    pub peer: Option<PeerReport>,
    /// A replicated card's lag in bytes and takeover causes.
    pub peer_notes: PeerNotes,
}

/// What a promotion accepted to lose (a power cycle lost the warm tier).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LostWarm {
    /// How many warm sets (`None`: the card's mark did not count them).
    pub sets: Option<u32>,
    /// Warm log records were lost too.
    pub log: bool,
}

impl LostWarm {
    const COUNTED: u64 = 1 << 63;
    const LOG: u64 = 1 << 62;
    /// The `LOST_WARM` field.
    pub fn word(&self) -> u64 {
        match self.sets {
            Some(n) => Self::COUNTED | if self.log { Self::LOG } else { 0 } | u64::from(n),
            None => 0,
        }
    }
    pub fn from_word(w: u64) -> Self {
        if w & Self::COUNTED == 0 {
            return Self {
                sets: None,
                log: false,
            };
        }
        Self {
            sets: Some(w as u32),
            log: w & Self::LOG != 0,
        }
    }
}

impl std::fmt::Display for LostWarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.sets {
            Some(n) => write!(f, "{n} warm sets")?,
            None => f.write_str("warm sets (how many unknown)")?,
        }
        if self.log {
            f.write_str(" and warm log records")?;
        }
        Ok(())
    }
}

/// A successful response body. Which variant answers which request is
/// fixed (see [`Response::decode`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// STATUS.
    Status(StatusReport),
    /// OPEN: the session; the secret only on the application's first open.
    Opened {
        handle: u32,
        key: u32,
        app: u32,
        secret: Option<Vec<u8>>,
    },
    /// CLOSE, DELETE, FORMAT.
    Done,
    /// STORE: what was stored.
    Stored { len: u32, crc: u32 },
    /// LIST, STAGE, RESTORE (one set), FETCH (`data_len`: bytes written
    /// to the host buffer, FETCH only).
    Sets {
        sets: Vec<SetInfo>,
        data_len: Option<u32>,
    },
    /// LOG_APPEND: the record's log offset.
    Appended { offset: u32 },
    /// SWITCHOVER: node `to` holds the master role now; `epoch` is its
    /// epoch once this card heard it (`None`: handed over, not heard yet),
    /// `from_epoch` the old master's, `bracket` the last one handed over.
    Switched {
        to: u32,
        from_epoch: u64,
        epoch: Option<u64>,
        bracket: u64,
    },
    /// PROMOTE: this card (node `node`) is master in `epoch` (newer than
    /// `from_epoch`, the newest it knew; equal: it was master already);
    /// `lost_warm`: what the operator accepted to lose.
    Promoted {
        node: u32,
        epoch: u64,
        from_epoch: u64,
        lost_warm: Option<LostWarm>,
    },
    /// LOG_READ: the records (payloads in the host buffer) and the log
    /// pointers; LOG_TRIM: the pointers alone.
    Log {
        records: Vec<LogInfo>,
        head: u32,
        tail: u32,
    },
    /// IMAGE_STATUS, IMAGE_ACTIVATE, IMAGE_MARK_GOOD, IMAGE_ROLLBACK,
    /// IMAGE_SERVE: the image state after the request.
    Image(Box<ImageReport>),
    /// IMAGE_INSTALL.
    ImageInstall(Box<InstallProgress>),
    /// HEAP_OPEN, HEAP_VERSIONS: the committed versions, oldest first.
    HeapVersions { versions: Vec<HeapVersion> },
    /// HEAP_COMMIT (the new version), HEAP_CHECKOUT (the version now the
    /// base; its state is in the host buffer).
    HeapVersion(HeapVersion),
    /// HEAP_READ: the requested pages never written (their part of the
    /// host buffer is untouched).
    HeapPages { absent: Vec<u32> },
    /// HEAP_CHANGED: page numbers, ascending.
    HeapChanged { pages: Vec<u32> },
}

/// A failed request as the card answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: Code,
    /// Human-readable detail.
    pub detail: String,
    /// With `TooSmall`: bytes the host buffer must have.
    pub needed: Option<u32>,
    /// With `NotMaster`: the master the card knows, and its epoch.
    pub master: Option<u32>,
    pub epoch: Option<u64>,
}

impl Failure {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            needed: None,
            master: None,
            epoch: None,
        }
    }

    /// A `NotMaster` answer: the master this card knows (if any) and the
    /// newest epoch it knows.
    pub fn not_master(master: Option<u32>, epoch: u64, detail: impl Into<String>) -> Self {
        Self {
            master,
            epoch: Some(epoch),
            ..Self::new(Code::NotMaster, detail)
        }
    }

    /// A `TooSmall` answer: the buffer must hold `needed` bytes.
    pub fn too_small(needed: u64) -> Self {
        Self {
            code: Code::TooSmall,
            detail: format!("{needed} bytes needed"),
            needed: Some(u32::try_from(needed).unwrap_or(u32::MAX)),
            master: None,
            epoch: None,
        }
    }

    /// The response message to a request of `request_kind`.
    pub fn encode(&self, request_kind: u8) -> Builder {
        let b = crate::msg::response(request_kind, self.code);
        let b = match self.needed {
            Some(n) => b.u32(tag::NEEDED, n),
            None => b,
        };
        let b = match self.master {
            Some(n) => b.u32(tag::MASTER, n),
            None => b,
        };
        let b = match self.epoch {
            Some(e) => b.u64(tag::EPOCH, e),
            None => b,
        };
        b.bytes(tag::ERROR, self.detail.as_bytes())
    }
}

/// Why a response could not be taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResponseError {
    #[error(transparent)]
    Tlv(#[from] TlvError),
    #[error("response kind {found:#x} to request kind {request}")]
    Kind { found: u8, request: u8 },
    #[error("response lacks field {0}")]
    Missing(u16),
    #[error("field {tag} has {len} bytes")]
    Size { tag: u16, len: usize },
}

fn pack(words: impl IntoIterator<Item = u32>) -> Vec<u8> {
    words.into_iter().flat_map(u32::to_le_bytes).collect()
}

fn unpack_words(b: &[u8], tag: u16, n: usize) -> Result<Vec<u32>, ResponseError> {
    if b.len() != 4 * n {
        return Err(ResponseError::Size { tag, len: b.len() });
    }
    Ok(b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

impl Response {
    /// The response message (result `OK`) to a request of `request_kind`.
    pub fn encode(&self, request_kind: u8) -> Builder {
        let b = crate::msg::response(request_kind, Code::Ok);
        match self {
            Response::Status(s) => {
                let tiers = pack(s.warm.words().into_iter().chain(s.cold.words()));
                let counters = pack([s.requests, s.auth_fails, s.stores, s.sessions_opened]);
                let b = b.bytes(tag::TIERS, &tiers).bytes(tag::COUNTERS, &counters);
                let b = match s.announced {
                    Some(a) => b.u32(tag::ANNOUNCED, a),
                    None => b,
                };
                let b = match &s.peer {
                    Some(p) => b.bytes(tag::PEER, &pack(p.words())),
                    None => b,
                };
                let n = &s.peer_notes;
                let b = match n.lag_bytes {
                    Some(l) => b.u64(tag::LAG_BYTES, l),
                    None => b,
                };
                let b = match n.link_schema {
                    Some(v) => b.u32(tag::LINK_SCHEMA, v),
                    None => b,
                };
                let b = match &n.cause {
                    Some(c) => b.bytes(tag::CAUSE, c.as_bytes()),
                    None => b,
                };
                match &n.cause_heard {
                    Some((from, c)) => b
                        .u32(tag::CAUSE_FROM, *from)
                        .bytes(tag::CAUSE_HEARD, c.as_bytes()),
                    None => b,
                }
            }
            Response::Opened {
                handle,
                key,
                app,
                secret,
            } => {
                let b = b
                    .u32(tag::HANDLE, *handle)
                    .u32(tag::KEY, *key)
                    .u32(tag::APP, *app);
                match secret {
                    Some(s) => b.bytes(tag::SECRET, s),
                    None => b,
                }
            }
            Response::Done => b,
            Response::Stored { len, crc } => b.u32(tag::DATA_LEN, *len).u32(tag::DATA_CRC, *crc),
            Response::Sets { sets, data_len } => {
                let packed: Vec<u8> = sets.iter().flat_map(|s| s.to_bytes()).collect();
                let b = b.bytes(tag::SETS, &packed);
                match data_len {
                    Some(n) => b.u32(tag::DATA_LEN, *n),
                    None => b,
                }
            }
            Response::Appended { offset } => b.u32(tag::TO, *offset),
            Response::Switched {
                to,
                from_epoch,
                epoch,
                bracket,
            } => {
                let b = b
                    .u32(tag::MASTER, *to)
                    .u64(tag::FROM_EPOCH, *from_epoch)
                    .u64(tag::BRACKET, *bracket);
                match epoch {
                    Some(e) => b.u64(tag::EPOCH, *e),
                    None => b,
                }
            }
            Response::Promoted {
                node,
                epoch,
                from_epoch,
                lost_warm,
            } => {
                let b = b
                    .u32(tag::MASTER, *node)
                    .u64(tag::EPOCH, *epoch)
                    .u64(tag::FROM_EPOCH, *from_epoch);
                match lost_warm {
                    Some(l) => b.u64(tag::LOST_WARM, l.word()),
                    None => b,
                }
            }
            Response::Log {
                records,
                head,
                tail,
            } => {
                let b = if records.is_empty() {
                    b
                } else {
                    let packed: Vec<u8> = records.iter().flat_map(|r| r.to_bytes()).collect();
                    b.bytes(tag::RECORDS, &packed)
                };
                b.u32(tag::LOG_HEAD, *head).u32(tag::LOG_TAIL, *tail)
            }
            Response::Image(r) => r.encode(b),
            Response::ImageInstall(p) => p.encode(b),
            Response::HeapVersions { versions } => {
                let packed: Vec<u8> = versions.iter().flat_map(|v| v.to_bytes()).collect();
                b.bytes(tag::VERSIONS, &packed)
            }
            Response::HeapVersion(v) => b.bytes(tag::VERSIONS, &v.to_bytes()),
            Response::HeapPages { absent } => b.bytes(tag::ABSENT, &pack_u32(absent)),
            Response::HeapChanged { pages } => b.bytes(tag::PAGES, &pack_u32(pages)),
        }
    }

    /// Decode the answer to a request of `request_kind`: `Ok(Err(_))` is
    /// the card's refusal, `Err(_)` a response this side cannot take.
    pub fn decode(
        request_kind: u8,
        m: &Message<'_>,
    ) -> Result<Result<Response, Failure>, ResponseError> {
        if m.kind != kind::RESPONSE | request_kind {
            return Err(ResponseError::Kind {
                found: m.kind,
                request: request_kind,
            });
        }
        let (code, detail) = crate::msg::result_of(m)?;
        if code != Code::Ok {
            let needed = if m.has(tag::NEEDED) {
                Some(m.u32_or(tag::NEEDED, 0)?)
            } else {
                None
            };
            let master = if m.has(tag::MASTER) {
                Some(m.u32_or(tag::MASTER, 0)?)
            } else {
                None
            };
            let epoch = if m.has(tag::EPOCH) {
                Some(m.u64_or(tag::EPOCH, 0)?)
            } else {
                None
            };
            return Ok(Err(Failure {
                code,
                detail,
                needed,
                master,
                epoch,
            }));
        }
        let need = |t: u16| -> Result<u32, ResponseError> {
            if m.has(t) {
                Ok(m.u32_or(t, 0)?)
            } else {
                Err(ResponseError::Missing(t))
            }
        };
        let opt = |t: u16| -> Result<Option<u32>, ResponseError> {
            Ok(if m.has(t) {
                Some(m.u32_or(t, 0)?)
            } else {
                None
            })
        };
        let sets = || {
            unpack(
                m.bytes_or_empty(tag::SETS),
                SetInfo::BYTES,
                SetInfo::from_bytes,
                tag::SETS,
            )
        };
        let heap_versions = || {
            unpack(
                m.bytes_or_empty(tag::VERSIONS),
                HeapVersion::BYTES,
                HeapVersion::from_bytes,
                tag::VERSIONS,
            )
        };
        Ok(Ok(match request_kind {
            kind::STATUS => {
                let t = unpack_words(m.bytes_or_empty(tag::TIERS), tag::TIERS, 12)?;
                let c = unpack_words(m.bytes_or_empty(tag::COUNTERS), tag::COUNTERS, 4)?;
                Response::Status(StatusReport {
                    warm: TierReport::from_words(&t[..6]),
                    cold: TierReport::from_words(&t[6..]),
                    requests: c[0],
                    auth_fails: c[1],
                    stores: c[2],
                    sessions_opened: c[3],
                    announced: opt(tag::ANNOUNCED)?,
                    peer: match m.field(tag::PEER) {
                        Some(b) => Some(PeerReport::from_words(&unpack_words(
                            b,
                            tag::PEER,
                            PeerReport::WORDS,
                        )?)),
                        None => None,
                    },
                    peer_notes: PeerNotes {
                        lag_bytes: if m.has(tag::LAG_BYTES) {
                            Some(m.u64_or(tag::LAG_BYTES, 0)?)
                        } else {
                            None
                        },
                        cause: m
                            .field(tag::CAUSE)
                            .map(|c| String::from_utf8_lossy(c).into_owned()),
                        cause_heard: match m.field(tag::CAUSE_HEARD) {
                            Some(c) => Some((
                                opt(tag::CAUSE_FROM)?.unwrap_or(u32::MAX),
                                String::from_utf8_lossy(c).into_owned(),
                            )),
                            None => None,
                        },
                        link_schema: opt(tag::LINK_SCHEMA)?,
                    },
                })
            }
            kind::OPEN => Response::Opened {
                handle: need(tag::HANDLE)?,
                key: need(tag::KEY)?,
                app: opt(tag::APP)?.unwrap_or(0),
                secret: m.field(tag::SECRET).map(<[u8]>::to_vec),
            },
            kind::CLOSE | kind::DELETE | kind::FORMAT => Response::Done,
            kind::STORE => Response::Stored {
                len: opt(tag::DATA_LEN)?.unwrap_or(0),
                crc: opt(tag::DATA_CRC)?.unwrap_or(0),
            },
            kind::LIST | kind::STAGE | kind::RESTORE | kind::FETCH => Response::Sets {
                sets: sets()?,
                data_len: opt(tag::DATA_LEN)?,
            },
            kind::LOG_APPEND => Response::Appended {
                offset: need(tag::TO)?,
            },
            kind::SWITCHOVER => Response::Switched {
                to: need(tag::MASTER)?,
                from_epoch: m.u64_or(tag::FROM_EPOCH, 0)?,
                epoch: if m.has(tag::EPOCH) {
                    Some(m.u64_or(tag::EPOCH, 0)?)
                } else {
                    None
                },
                bracket: m.u64_or(tag::BRACKET, 0)?,
            },
            kind::PROMOTE => Response::Promoted {
                node: need(tag::MASTER)?,
                epoch: m.u64_or(tag::EPOCH, 0)?,
                from_epoch: m.u64_or(tag::FROM_EPOCH, 0)?,
                lost_warm: if m.has(tag::LOST_WARM) {
                    Some(LostWarm::from_word(m.u64_or(tag::LOST_WARM, 0)?))
                } else {
                    None
                },
            },
            kind::LOG_READ | kind::LOG_TRIM => Response::Log {
                records: unpack(
                    m.bytes_or_empty(tag::RECORDS),
                    LogInfo::BYTES,
                    LogInfo::from_bytes,
                    tag::RECORDS,
                )?,
                head: need(tag::LOG_HEAD)?,
                tail: need(tag::LOG_TAIL)?,
            },
            kind::IMAGE_STATUS
            | kind::IMAGE_ACTIVATE
            | kind::IMAGE_MARK_GOOD
            | kind::IMAGE_ROLLBACK
            | kind::IMAGE_REBOOT
            | kind::IMAGE_SERVE => Response::Image(Box::new(ImageReport::decode(m)?)),
            kind::IMAGE_INSTALL => Response::ImageInstall(Box::new(InstallProgress::decode(m)?)),
            kind::HEAP_CLOSE | kind::HEAP_STAGE | kind::HEAP_ABORT | kind::HEAP_DELETE => {
                Response::Done
            }
            kind::HEAP_OPEN | kind::HEAP_VERSIONS => Response::HeapVersions {
                versions: heap_versions()?,
            },
            kind::HEAP_COMMIT | kind::HEAP_CHECKOUT => match heap_versions()?.as_slice() {
                [v] => Response::HeapVersion(*v),
                _ => return Err(ResponseError::Missing(tag::VERSIONS)),
            },
            kind::HEAP_CHANGED => Response::HeapChanged {
                pages: unpack_u32(m.bytes_or_empty(tag::PAGES), tag::PAGES)?,
            },
            kind::HEAP_READ => Response::HeapPages {
                absent: unpack_u32(m.bytes_or_empty(tag::ABSENT), tag::ABSENT)?,
            },
            other => {
                return Err(ResponseError::Kind {
                    found: m.kind,
                    request: other,
                })
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::TierSel;
    use proptest::prelude::*;

    fn request() -> impl Strategy<Value = Request> {
        let a = any::<u32>();
        let addr = any::<u64>();
        prop_oneof![
            Just(Request::Status),
            (a, a).prop_map(|(app, flags)| Request::Open { app, flags }),
            Just(Request::Close),
            (a, a, a, a, addr, a, a).prop_map(
                |(object, endpoint, stage, flags, addr, len, crc)| {
                    Request::Store {
                        object,
                        endpoint,
                        stage,
                        flags,
                        addr,
                        len,
                        crc,
                    }
                }
            ),
            (a, a).prop_map(|(object, endpoint)| Request::Delete { object, endpoint }),
            (a, a, addr, a).prop_map(|(object, endpoint, addr, cap)| Request::Restore {
                object,
                endpoint,
                addr,
                cap
            }),
            a.prop_map(|endpoint| Request::List { endpoint }),
            a.prop_map(|stage| Request::Stage { stage }),
            (a, addr, a).prop_map(|(stage, addr, cap)| Request::Fetch { stage, addr, cap }),
            (a, a, addr, a).prop_map(|(object, flags, addr, len)| Request::LogAppend {
                object,
                flags,
                addr,
                len
            }),
            (a, addr, a).prop_map(|(flags, addr, cap)| Request::LogRead { flags, addr, cap }),
            (a, proptest::option::of(a)).prop_map(|(flags, to)| Request::LogTrim { flags, to }),
            a.prop_map(|flags| Request::Format { flags }),
            Just(Request::ImageStatus),
            (addr, addr, addr, a, any::<bool>()).prop_map(|(total, offset, addr, len, force)| {
                Request::ImageInstall {
                    total,
                    offset,
                    addr,
                    len,
                    force,
                }
            }),
            Just(Request::ImageActivate),
            Just(Request::ImageMarkGood),
            Just(Request::ImageRollback),
            Just(Request::ImageReboot),
            (
                proptest::option::of("[a-z0-9.:]{0,20}"),
                proptest::option::of("[a-z0-9.:]{0,20}")
            )
                .prop_map(|(http, tftp)| Request::ImageServe { http, tftp }),
            proptest::option::of(a).prop_map(|to| Request::Switchover { to }),
            any::<bool>().prop_map(|accept_lost_warm| Request::Promote { accept_lost_warm }),
            (a, a, a, a).prop_map(|(heap, heap_pages, keep, flags)| Request::HeapOpen {
                heap,
                heap_pages,
                keep,
                flags
            }),
            a.prop_map(|heap| Request::HeapClose { heap }),
            (
                a,
                proptest::collection::vec(a, 0..40),
                proptest::collection::vec(a, 0..40),
                addr
            )
                .prop_map(|(heap, pages, crcs, addr)| Request::HeapStage {
                    heap,
                    pages,
                    crcs,
                    addr
                }),
            (a, addr, a, a).prop_map(|(heap, addr, len, crc)| Request::HeapCommit {
                heap,
                addr,
                len,
                crc
            }),
            a.prop_map(|heap| Request::HeapAbort { heap }),
            (a, proptest::collection::vec(a, 0..40), addr, a).prop_map(
                |(heap, pages, addr, cap)| Request::HeapRead {
                    heap,
                    pages,
                    addr,
                    cap
                }
            ),
            a.prop_map(|heap| Request::HeapVersions { heap }),
            (a, addr, addr, a).prop_map(|(heap, version, addr, cap)| Request::HeapCheckout {
                heap,
                version,
                addr,
                cap
            }),
            a.prop_map(|heap| Request::HeapDelete { heap }),
            (a, addr, a).prop_map(|(heap, since, first)| Request::HeapChanged {
                heap,
                since,
                first
            }),
        ]
    }

    #[test]
    fn heap_responses_round_trip() {
        let v = HeapVersion {
            version: 1 << 40,
            state_len: 3,
            state_crc: 4,
            pages: 5,
        };
        for (k, r) in [
            (
                kind::HEAP_OPEN,
                Response::HeapVersions {
                    versions: vec![v, v],
                },
            ),
            (
                kind::HEAP_VERSIONS,
                Response::HeapVersions { versions: vec![] },
            ),
            (kind::HEAP_COMMIT, Response::HeapVersion(v)),
            (kind::HEAP_CHECKOUT, Response::HeapVersion(v)),
            (
                kind::HEAP_READ,
                Response::HeapPages {
                    absent: vec![1, 7, u32::MAX],
                },
            ),
            (kind::HEAP_STAGE, Response::Done),
            (
                kind::HEAP_CHANGED,
                Response::HeapChanged {
                    pages: vec![0, 64, 65],
                },
            ),
            (kind::HEAP_DELETE, Response::Done),
        ] {
            let bytes = r.encode(k).finish();
            let m = Message::decode(&bytes).unwrap();
            assert_eq!(Response::decode(k, &m).unwrap(), Ok(r));
        }
        // A commit answer without its version is refused, a ragged page
        // list is a bad message.
        let bytes = crate::msg::response(kind::HEAP_COMMIT, Code::Ok).finish();
        assert!(Response::decode(kind::HEAP_COMMIT, &Message::decode(&bytes).unwrap()).is_err());
        let bad = Builder::new(kind::HEAP_READ)
            .bytes(tag::PAGES, &[1, 2, 3])
            .finish();
        let e = Request::decode(&Message::decode(&bad).unwrap()).unwrap_err();
        assert_eq!(e.code(), Code::BadMessage);
    }

    proptest! {
        #[test]
        fn requests_round_trip(r in request()) {
            let bytes = r.encode().finish();
            let m = Message::decode(&bytes).unwrap();
            prop_assert_eq!(Request::decode(&m).unwrap(), r);
        }
    }

    #[test]
    fn missing_fields_take_the_defaults_and_unknown_fields_are_skipped() {
        // An older sender: a STORE with only the object; a newer one: an
        // extra field this side does not know.
        let bytes = Builder::new(kind::STORE)
            .u32(tag::OBJECT, 5)
            .u32(999, 1)
            .finish();
        let r = Request::decode(&Message::decode(&bytes).unwrap()).unwrap();
        assert_eq!(
            r,
            Request::Store {
                object: 5,
                endpoint: 0,
                stage: 0,
                flags: 0,
                addr: 0,
                len: 0,
                crc: crc32c(&[]),
            }
        );
        let open = Builder::new(kind::OPEN).u32(tag::APP, 3).finish();
        assert_eq!(
            Request::decode(&Message::decode(&open).unwrap()).unwrap(),
            Request::Open {
                app: 3,
                flags: flags::READ | flags::WRITE | flags::LOG
            }
        );
        let unknown = Builder::new(77).finish();
        let e = Request::decode(&Message::decode(&unknown).unwrap()).unwrap_err();
        assert_eq!(e.code(), Code::UnknownRequest);
        let bad = Builder::new(kind::DELETE)
            .bytes(tag::OBJECT, &[1, 2])
            .finish();
        let e = Request::decode(&Message::decode(&bad).unwrap()).unwrap_err();
        assert_eq!(e.code(), Code::BadMessage);
    }

    #[test]
    fn responses_round_trip() {
        let set = SetInfo {
            app: 1,
            object: 2,
            endpoint: 3,
            stage: 4,
            tier: TierSel::Cold,
            len: 5,
            crc: 6,
            data_offset: 8,
        };
        let log = LogInfo {
            object: 1,
            offset: 2,
            seq: 3,
            len: 4,
            data_offset: 0,
        };
        let status = StatusReport {
            warm: TierReport {
                state: 0,
                boot_result: 1,
                sets: 2,
                image_bytes: 3,
                log_head: 4,
                log_tail: 5,
            },
            cold: TierReport {
                state: 1,
                ..Default::default()
            },
            requests: 9,
            auth_fails: 8,
            stores: 7,
            sessions_opened: 6,
            announced: Some(2),
            peer: None,
            peer_notes: PeerNotes::default(),
        };
        let replicated = StatusReport {
            peer: Some(PeerReport {
                node: 2,
                role: 1,
                epoch: 1 << 40 | 3,
                master: Some(1),
                in_sync: 0,
                lag_brackets: 4,
                mark_epoch: 5,
                mark_bracket: 1 << 33 | 9,
            }),
            peer_notes: PeerNotes {
                lag_bytes: Some(1 << 35 | 7),
                cause: Some("master 1 silent for 600 ms".into()),
                cause_heard: Some((3, "you were silent".into())),
                link_schema: Some(3),
            },
            ..status.clone()
        };
        let cases = [
            (kind::STATUS, Response::Status(status)),
            (
                kind::SWITCHOVER,
                Response::Switched {
                    to: 2,
                    from_epoch: 3,
                    epoch: Some(1 << 40),
                    bracket: 1 << 33,
                },
            ),
            (
                kind::PROMOTE,
                Response::Promoted {
                    node: 2,
                    epoch: 9,
                    from_epoch: 8,
                    lost_warm: Some(LostWarm {
                        sets: Some(3),
                        log: true,
                    }),
                },
            ),
            (
                kind::PROMOTE,
                Response::Promoted {
                    node: 1,
                    epoch: 2,
                    from_epoch: 2,
                    lost_warm: None,
                },
            ),
            (
                kind::SWITCHOVER,
                Response::Switched {
                    to: 2,
                    from_epoch: 3,
                    epoch: None,
                    bracket: 0,
                },
            ),
            (kind::STATUS, Response::Status(replicated)),
            (
                kind::OPEN,
                Response::Opened {
                    handle: 1,
                    key: 2,
                    app: 3,
                    secret: Some(vec![7; 32]),
                },
            ),
            (
                kind::OPEN,
                Response::Opened {
                    handle: 1,
                    key: 2,
                    app: 3,
                    secret: None,
                },
            ),
            (kind::DELETE, Response::Done),
            (kind::STORE, Response::Stored { len: 3, crc: 4 }),
            (
                kind::FETCH,
                Response::Sets {
                    sets: vec![set, set],
                    data_len: Some(16),
                },
            ),
            (
                kind::LIST,
                Response::Sets {
                    sets: vec![],
                    data_len: None,
                },
            ),
            (kind::LOG_APPEND, Response::Appended { offset: 64 }),
            (
                kind::LOG_READ,
                Response::Log {
                    records: vec![log],
                    head: 1,
                    tail: 0,
                },
            ),
        ];
        let image = ImageReport {
            state: ImageReport::RUNNING,
            version: 1 << 40 | 7,
            area: 1,
            trial: true,
            deadline: Some(1_900_000_000),
            alt_boot: true,
            boot_count: 1,
            boot_limit: 3,
            primary: 1,
            current_area: 0,
            areas: [
                [
                    crate::image::AreaReport {
                        state: crate::image::AreaReport::GOOD,
                        version: 6,
                    },
                    crate::image::AreaReport {
                        state: crate::image::AreaReport::CORRUPT,
                        version: 7,
                    },
                ],
                Default::default(),
            ],
            last_rollback: Some((crate::image::cause::SELF_TEST, 6)),
            http: Some("127.0.0.1:8080".into()),
            tftp: None,
            manifest: b"{}".to_vec(),
            notes: vec!["a".into(), "b c".into()],
        };
        let installed = InstallProgress {
            received: 99,
            installed: Some(crate::image::Installed {
                version: 3,
                area: 1,
                fresh: false,
                written: vec!["fw".into()],
                copied: vec!["gw".into(), "cfg".into()],
                bytes_from_package: 1 << 33,
                bytes_copied: 5,
                erases: 6,
                programs: 7,
                notes: vec![],
            }),
        };
        let image_cases = [
            (kind::IMAGE_STATUS, Response::Image(Box::new(image.clone()))),
            (kind::IMAGE_ROLLBACK, Response::Image(Box::default())),
            (
                kind::IMAGE_INSTALL,
                Response::ImageInstall(Box::new(installed)),
            ),
            (
                kind::IMAGE_INSTALL,
                Response::ImageInstall(Box::new(InstallProgress {
                    received: 5,
                    installed: None,
                })),
            ),
        ];
        for (k, r) in cases.into_iter().chain(image_cases) {
            let bytes = r.encode(k).finish();
            let m = Message::decode(&bytes).unwrap();
            assert_eq!(Response::decode(k, &m), Ok(Ok(r)));
        }
        // A refusal keeps its code, detail and NEEDED.
        let f = Failure::too_small(4096);
        let bytes = f.encode(kind::RESTORE).finish();
        let m = Message::decode(&bytes).unwrap();
        assert_eq!(Response::decode(kind::RESTORE, &m), Ok(Err(f)));
        // A NotMaster refusal names the master and its epoch; one that
        // knows no master has none.
        for f in [
            Failure::not_master(Some(2), 1 << 40 | 5, "not master"),
            Failure::not_master(None, 0, "standby"),
        ] {
            let bytes = f.encode(kind::STORE).finish();
            let m = Message::decode(&bytes).unwrap();
            assert_eq!(Response::decode(kind::STORE, &m), Ok(Err(f)));
        }
        // A response to another request is refused.
        let bytes = Response::Done.encode(kind::CLOSE).finish();
        let m = Message::decode(&bytes).unwrap();
        assert!(matches!(
            Response::decode(kind::DELETE, &m),
            Err(ResponseError::Kind { .. })
        ));
        // A STATUS of the wrong size is refused, not read past its end.
        let bytes = crate::msg::response(kind::STATUS, Code::Ok)
            .bytes(tag::TIERS, &[0; 8])
            .finish();
        let m = Message::decode(&bytes).unwrap();
        assert!(Response::decode(kind::STATUS, &m).is_err());
    }
}
