//! The card-to-card link messages (seed 004): what a master card streams to
//! its slave, and what the slave answers, in the TLV format of
//! [`crate::tlv`] (the canonical message format of claims 8-10: fields are
//! found by tag, in any order).
//!
//! Version tolerance (claims 11, 12, 27-29): every message kind is written
//! here once with the default of each field; a receiver takes the fields
//! it knows, skips the others and defaults the missing ones. Each field has
//! the link schema version that introduced it ([`SCHEMA`]), and
//! [`LinkMessage::encode_as`] writes only the fields of an older schema, so
//! a card speaking schema 2 talks to one speaking schema 1 in both
//! directions (the rolling upgrade of claims 19-33 needs that).
//!
//! Bracketing (claims 14-17, 30, 31, 40-43): the master sends `Open`, the
//! changes of one host request (or of a whole snapshot), then `Close`; the
//! slave applies the group at `Close`, atomically, and discards it when the
//! master fails, or the close does not come within a deadline, first.
//!
//! Fencing: every message of a master carries its epoch; a slave refuses
//! anything from an epoch older than the newest it has seen.
//!
//! Frames on a byte stream: a 4-byte little-endian length, then the
//! message; [`FrameReader`] reassembles them from any chunking and refuses a
//! length over [`MAX_FRAME`] before allocating. (The secure channel that
//! carries these frames between cards lives in the firmware.)

use crate::auth::SECRET_BYTES;
use crate::msg::SetInfo;
use crate::tlv::{self, Builder, Message, TlvError};

/// The link schema this code speaks (the newest field's version).
pub const SCHEMA: u32 = 5;
/// Largest frame: a 1 MiB set plus its fields.
pub const MAX_FRAME: usize = tlv::HEADER + tlv::MAX_BODY;
/// Bytes of the length prefix.
pub const PREFIX: usize = 4;
/// Most sets one `PEER_LISTED` answer carries (32 KiB of records); a
/// longer list continues from `next`.
pub const MAX_LISTED: usize = 1024;

/// Link message kinds (their own TLV kind space: a link message is never
/// a host request).
pub mod kind {
    pub const HELLO: u8 = 0x40;
    pub const HEARTBEAT: u8 = 0x41;
    pub const OPEN: u8 = 0x42;
    pub const PUT: u8 = 0x43;
    pub const DELETE: u8 = 0x44;
    pub const LOG_APPEND: u8 = 0x45;
    pub const LOG_TRIM: u8 = 0x46;
    pub const SECRET: u8 = 0x47;
    pub const CLOSE: u8 = 0x48;
    pub const ACK: u8 = 0x49;
    pub const REFUSE: u8 = 0x4A;
    pub const CAUSE: u8 = 0x4B;
    /// Schema 3: a master hands its role to a slave (manual switchover).
    pub const HANDOVER: u8 = 0x4C;
    /// Schema 4: store a set in the receiving card's memory for its peer
    /// (000 claims 13-15: a host stored it with that card's endpoint).
    pub const PEER_STORE: u8 = 0x4D;
    /// Schema 4: read back a set stored with `PEER_STORE`.
    pub const PEER_FETCH: u8 = 0x4E;
    /// Schema 4: the answer to `PEER_STORE` or `PEER_FETCH` (schema 5:
    /// and to `PEER_DELETE`, and a refused `PEER_LIST`).
    pub const PEER_ANSWER: u8 = 0x4F;
    /// Schema 5: delete a set stored with `PEER_STORE`.
    pub const PEER_DELETE: u8 = 0x50;
    /// Schema 5: the sets the receiver holds for an application.
    pub const PEER_LIST: u8 = 0x51;
    /// Schema 5: the answer to `PEER_LIST`: one page of sets.
    pub const PEER_LISTED: u8 = 0x52;
}

/// Link field tags (100 and up, so that a link field is never mistaken
/// for a host request's).
pub mod tag {
    pub const NODE: u16 = 100;
    pub const SCHEMA: u16 = 101;
    pub const EPOCH: u16 = 102;
    pub const ROLE: u16 = 103;
    pub const BRACKET: u16 = 104;
    pub const APPLIED: u16 = 105;
    pub const FULL: u16 = 106;
    pub const APP: u16 = 107;
    pub const OBJECT: u16 = 108;
    pub const ENDPOINT: u16 = 109;
    pub const STAGE: u16 = 110;
    pub const TIER: u16 = 111;
    pub const VERSION: u16 = 112;
    pub const CRC: u16 = 113;
    pub const DATA: u16 = 114;
    pub const TO: u16 = 115;
    pub const SECRET: u16 = 116;
    pub const TIME_US: u16 = 117;
    pub const REASON: u16 = 118;
    pub const CODE: u16 = 119;
    /// Schema 2: the master's count of changes not yet acknowledged.
    pub const LAG: u16 = 120;
    /// Schema 2: when the master stored the set (µs on its clock).
    pub const STORED_US: u16 = 121;
    pub const CHANGES: u16 = 122;
    /// Schema 3: the master's log offset of an appended record (so the
    /// slave can follow the master's trims).
    pub const OFFSET: u16 = 123;
    /// Schema 3: the epoch of the bracket named by `APPLIED`.
    pub const APPLIED_EPOCH: u16 = 124;
    /// Schema 4: the sender's number of a peer-set request (its answer
    /// carries it back).
    pub const REQUEST: u16 = 125;
    /// Schema 4: the most bytes a `PEER_FETCH` takes back.
    pub const CAP: u16 = 126;
    /// Schema 5: the first object id a `PEER_LIST` page starts at.
    pub const FROM: u16 = 127;
    /// Schema 5: a page of set records (`msg::SetInfo`, 32 bytes each).
    pub const SETS: u16 = 128;
    /// Schema 5: where the next page starts (absent: the last page).
    pub const NEXT: u16 = 129;
}

/// A card's role in the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Serves hosts and streams every change to the slave.
    Master = 0,
    /// Stores what the master streams; takes over when it fails.
    Slave = 1,
    /// Not serving yet (starting, or a returning old master).
    Standby = 2,
}

impl Role {
    fn from_u32(v: u32) -> Self {
        match v {
            0 => Role::Master,
            1 => Role::Slave,
            _ => Role::Standby,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Slave => "slave",
            Role::Standby => "standby",
        }
    }
}

/// Why a peer refused a message or a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefuseCode {
    /// The sender's epoch is older than the receiver's.
    StaleEpoch = 1,
    /// A change outside a bracket, a bracket id out of order, or a close
    /// of a bracket that was not open.
    Protocol = 2,
    /// The receiver could not make the change durable.
    Apply = 3,
    /// Anything else (a newer code this side does not know).
    Other = 255,
}

impl RefuseCode {
    fn from_u32(v: u32) -> Self {
        match v {
            1 => RefuseCode::StaleEpoch,
            2 => RefuseCode::Protocol,
            3 => RefuseCode::Apply,
            _ => RefuseCode::Other,
        }
    }
}

/// A set as the master stored it (the record table's fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetRecord {
    pub app: u32,
    pub object: u32,
    pub endpoint: u32,
    pub stage: u32,
    /// 0 warm, 1 cold.
    pub tier: u32,
    /// The master's store version of the set.
    pub version: u64,
    pub crc: u32,
    /// Schema 2 (0 from a schema 1 sender).
    pub stored_us: u64,
}

/// One link message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkMessage {
    /// First message of each side on a new connection.
    Hello {
        node: u32,
        schema: u32,
        epoch: u64,
        role: Role,
        /// The last bracket the sender applied (slave) or sent (master).
        applied: u64,
        /// Schema 3: the epoch that bracket was sent in (0 from older
        /// senders: the receiver then cannot match histories and resends
        /// a full snapshot).
        applied_epoch: u64,
    },
    /// The master's (and the slave's) liveness, at the configured interval.
    Heartbeat {
        epoch: u64,
        /// The last bracket sent (master) or applied (slave).
        bracket: u64,
        time_us: u64,
        /// Schema 2: brackets sent but not acknowledged (0 from schema 1).
        lag: u64,
        /// Schema 3: the sender's role (None from older senders: a slave
        /// then takes any heartbeat of its master for the master's).
        role: Option<Role>,
    },
    /// Starts a group; `full`: a snapshot that replaces the slave's state.
    Open {
        epoch: u64,
        bracket: u64,
        full: bool,
    },
    /// A set, with its bytes.
    Put {
        bracket: u64,
        set: SetRecord,
        data: Vec<u8>,
    },
    /// A deleted set.
    Delete { bracket: u64, app: u32, object: u32 },
    /// A record appended to a tier's append log.
    LogAppend {
        bracket: u64,
        app: u32,
        object: u32,
        tier: u32,
        /// Schema 3: the record's offset in the master's log (0 from
        /// older senders).
        offset: u32,
        data: Vec<u8>,
    },
    /// A tier's log trimmed to `to`.
    LogTrim { bracket: u64, tier: u32, to: u32 },
    /// An application's credential (travels only inside the secure channel).
    Secret {
        bracket: u64,
        app: u32,
        secret: [u8; SECRET_BYTES],
    },
    /// Ends the group: the slave applies it now.
    Close {
        epoch: u64,
        bracket: u64,
        /// Messages in the group (a check against loss).
        changes: u32,
        /// Schema 3: CRC-32C of the group's changes and its `full` flag
        /// (0 from older senders: not checked), so a group pieced together
        /// from two sendings is never applied.
        digest: u32,
    },
    /// The slave has the group durable.
    Ack { epoch: u64, bracket: u64 },
    /// The receiver refused; `epoch` is its own.
    Refuse {
        epoch: u64,
        code: RefuseCode,
        reason: String,
    },
    /// Claim 18: after a non-hitless takeover, why (sent to the returning
    /// old master).
    Cause { epoch: u64, reason: String },
    /// Schema 3, manual switchover (claim 44): the master at `epoch` has
    /// stopped accepting writes and the receiver has acknowledged every
    /// bracket up to `bracket`; the receiver becomes master at a newer
    /// epoch.
    Handover { epoch: u64, bracket: u64 },
    /// Schema 4 (000 claims 13-15): store `data` as `set` (its `app`,
    /// `object`, `endpoint`: the receiver, `stage`, `tier`, `crc`) in the
    /// receiver's own memory, not as part of the replicated state.
    PeerStore {
        request: u64,
        set: SetRecord,
        data: Vec<u8>,
    },
    /// Schema 4: send back the set (`app`, `object`) stored with
    /// `PeerStore`, if it is at most `cap` bytes.
    PeerFetch {
        request: u64,
        app: u32,
        object: u32,
        endpoint: u32,
        cap: u32,
    },
    /// Schema 4: the answer to request `request`: `code` is the host
    /// protocol's result code (0: done; `reason` says why not), `set` the
    /// record as stored (`version` the receiver's), `data` the bytes of a
    /// fetch.
    PeerAnswer {
        request: u64,
        code: u32,
        reason: String,
        set: SetRecord,
        data: Vec<u8>,
    },
    /// Schema 5: delete the set (`app`, `object`) stored with `PeerStore`;
    /// answered (`PeerAnswer`) when the delete is durable.
    PeerDelete {
        request: u64,
        app: u32,
        object: u32,
        endpoint: u32,
    },
    /// Schema 5: the sets the receiver holds for `app`, from object id
    /// `from` on, answered with one `PeerListed` page.
    PeerList {
        request: u64,
        app: u32,
        endpoint: u32,
        from: u32,
    },
    /// Schema 5: a page of at most [`MAX_LISTED`] sets, by object id;
    /// `next`: the object id the next page starts at (`None`: the last).
    PeerListed {
        request: u64,
        sets: Vec<SetInfo>,
        next: Option<u32>,
    },
}

/// Why bytes are not a link message this side can use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error(transparent)]
    Tlv(#[from] TlvError),
    #[error("link message kind {0:#04x}")]
    UnknownKind(u8),
    #[error("field {tag}: {what}")]
    Field { tag: u16, what: &'static str },
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    FrameTooLarge(usize),
}

fn u32_of(m: &Message<'_>, t: u16, d: u32) -> Result<u32, LinkError> {
    Ok(m.u32_or(t, d)?)
}
fn u64_of(m: &Message<'_>, t: u16, d: u64) -> Result<u64, LinkError> {
    Ok(m.u64_or(t, d)?)
}
fn text_of(m: &Message<'_>, t: u16) -> String {
    String::from_utf8_lossy(m.bytes_or_empty(t)).into_owned()
}

impl LinkMessage {
    pub fn kind(&self) -> u8 {
        match self {
            LinkMessage::Hello { .. } => kind::HELLO,
            LinkMessage::Heartbeat { .. } => kind::HEARTBEAT,
            LinkMessage::Open { .. } => kind::OPEN,
            LinkMessage::Put { .. } => kind::PUT,
            LinkMessage::Delete { .. } => kind::DELETE,
            LinkMessage::LogAppend { .. } => kind::LOG_APPEND,
            LinkMessage::LogTrim { .. } => kind::LOG_TRIM,
            LinkMessage::Secret { .. } => kind::SECRET,
            LinkMessage::Close { .. } => kind::CLOSE,
            LinkMessage::Ack { .. } => kind::ACK,
            LinkMessage::Refuse { .. } => kind::REFUSE,
            LinkMessage::Cause { .. } => kind::CAUSE,
            LinkMessage::Handover { .. } => kind::HANDOVER,
            LinkMessage::PeerStore { .. } => kind::PEER_STORE,
            LinkMessage::PeerFetch { .. } => kind::PEER_FETCH,
            LinkMessage::PeerAnswer { .. } => kind::PEER_ANSWER,
            LinkMessage::PeerDelete { .. } => kind::PEER_DELETE,
            LinkMessage::PeerList { .. } => kind::PEER_LIST,
            LinkMessage::PeerListed { .. } => kind::PEER_LISTED,
        }
    }

    /// A peer-set message (schemas 4, 5): not part of the replication
    /// stream (the card's loop serves it beside the node).
    pub fn is_peer_set(kind: u8) -> bool {
        matches!(
            kind,
            kind::PEER_STORE
                | kind::PEER_FETCH
                | kind::PEER_ANSWER
                | kind::PEER_DELETE
                | kind::PEER_LIST
                | kind::PEER_LISTED
        )
    }

    /// The bracket a change belongs to (None for the others).
    pub fn bracket_of_change(&self) -> Option<u64> {
        match self {
            LinkMessage::Put { bracket, .. }
            | LinkMessage::Delete { bracket, .. }
            | LinkMessage::LogAppend { bracket, .. }
            | LinkMessage::LogTrim { bracket, .. }
            | LinkMessage::Secret { bracket, .. } => Some(*bracket),
            _ => None,
        }
    }

    /// The message in this code's schema.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_as(SCHEMA)
    }

    /// The message as a card speaking link schema `schema` writes it: the
    /// fields introduced later are left out.
    pub fn encode_as(&self, schema: u32) -> Vec<u8> {
        let b = Builder::new(self.kind());
        let v2 = |b: Builder, t: u16, v: u64| if schema >= 2 { b.u64(t, v) } else { b };
        let v3 = |b: Builder, t: u16, v: u64| if schema >= 3 { b.u64(t, v) } else { b };
        match self {
            LinkMessage::Hello {
                node,
                schema: s,
                epoch,
                role,
                applied,
                applied_epoch,
            } => v3(
                b.u32(tag::NODE, *node)
                    .u32(tag::SCHEMA, (*s).min(schema))
                    .u64(tag::EPOCH, *epoch)
                    .u32(tag::ROLE, *role as u32)
                    .u64(tag::APPLIED, *applied),
                tag::APPLIED_EPOCH,
                *applied_epoch,
            ),
            LinkMessage::Heartbeat {
                epoch,
                bracket,
                time_us,
                lag,
                role,
            } => {
                let b = v2(
                    b.u64(tag::EPOCH, *epoch)
                        .u64(tag::BRACKET, *bracket)
                        .u64(tag::TIME_US, *time_us),
                    tag::LAG,
                    *lag,
                );
                match role {
                    Some(r) if schema >= 3 => b.u32(tag::ROLE, *r as u32),
                    _ => b,
                }
            }
            LinkMessage::Open {
                epoch,
                bracket,
                full,
            } => b
                .u64(tag::EPOCH, *epoch)
                .u64(tag::BRACKET, *bracket)
                .u32(tag::FULL, u32::from(*full)),
            LinkMessage::Put { bracket, set, data } => v2(
                set_fields(b.u64(tag::BRACKET, *bracket), set),
                tag::STORED_US,
                set.stored_us,
            )
            .bytes(tag::DATA, data),
            LinkMessage::Delete {
                bracket,
                app,
                object,
            } => b
                .u64(tag::BRACKET, *bracket)
                .u32(tag::APP, *app)
                .u32(tag::OBJECT, *object),
            LinkMessage::LogAppend {
                bracket,
                app,
                object,
                tier,
                offset,
                data,
            } => v3(
                b.u64(tag::BRACKET, *bracket)
                    .u32(tag::APP, *app)
                    .u32(tag::OBJECT, *object)
                    .u32(tag::TIER, *tier),
                tag::OFFSET,
                u64::from(*offset),
            )
            .bytes(tag::DATA, data),
            LinkMessage::LogTrim { bracket, tier, to } => b
                .u64(tag::BRACKET, *bracket)
                .u32(tag::TIER, *tier)
                .u32(tag::TO, *to),
            LinkMessage::Secret {
                bracket,
                app,
                secret,
            } => b
                .u64(tag::BRACKET, *bracket)
                .u32(tag::APP, *app)
                .bytes(tag::SECRET, secret),
            LinkMessage::Close {
                epoch,
                bracket,
                changes,
                digest,
            } => v3(
                b.u64(tag::EPOCH, *epoch)
                    .u64(tag::BRACKET, *bracket)
                    .u32(tag::CHANGES, *changes),
                tag::CRC,
                u64::from(*digest),
            ),
            LinkMessage::Ack { epoch, bracket } => {
                b.u64(tag::EPOCH, *epoch).u64(tag::BRACKET, *bracket)
            }
            LinkMessage::Refuse {
                epoch,
                code,
                reason,
            } => b
                .u64(tag::EPOCH, *epoch)
                .u32(tag::CODE, *code as u32)
                .bytes(tag::REASON, reason.as_bytes()),
            LinkMessage::Cause { epoch, reason } => b
                .u64(tag::EPOCH, *epoch)
                .bytes(tag::REASON, reason.as_bytes()),
            LinkMessage::Handover { epoch, bracket } => {
                b.u64(tag::EPOCH, *epoch).u64(tag::BRACKET, *bracket)
            }
            LinkMessage::PeerStore { request, set, data } => {
                set_fields(b.u64(tag::REQUEST, *request), set).bytes(tag::DATA, data)
            }
            LinkMessage::PeerFetch {
                request,
                app,
                object,
                endpoint,
                cap,
            } => b
                .u64(tag::REQUEST, *request)
                .u32(tag::APP, *app)
                .u32(tag::OBJECT, *object)
                .u32(tag::ENDPOINT, *endpoint)
                .u32(tag::CAP, *cap),
            LinkMessage::PeerAnswer {
                request,
                code,
                reason,
                set,
                data,
            } => set_fields(
                b.u64(tag::REQUEST, *request)
                    .u32(tag::CODE, *code)
                    .bytes(tag::REASON, reason.as_bytes()),
                set,
            )
            .bytes(tag::DATA, data),
            LinkMessage::PeerDelete {
                request,
                app,
                object,
                endpoint,
            } => b
                .u64(tag::REQUEST, *request)
                .u32(tag::APP, *app)
                .u32(tag::OBJECT, *object)
                .u32(tag::ENDPOINT, *endpoint),
            LinkMessage::PeerList {
                request,
                app,
                endpoint,
                from,
            } => b
                .u64(tag::REQUEST, *request)
                .u32(tag::APP, *app)
                .u32(tag::ENDPOINT, *endpoint)
                .u32(tag::FROM, *from),
            LinkMessage::PeerListed {
                request,
                sets,
                next,
            } => {
                let packed: Vec<u8> = sets.iter().flat_map(|s| s.to_bytes()).collect();
                let b = b.u64(tag::REQUEST, *request).bytes(tag::SETS, &packed);
                match next {
                    Some(n) => b.u32(tag::NEXT, *n),
                    None => b,
                }
            }
        }
        .finish()
    }

    /// The link schema that introduced this message's kind.
    pub fn schema_of_kind(&self) -> u32 {
        match self {
            LinkMessage::Handover { .. } => 3,
            LinkMessage::PeerStore { .. }
            | LinkMessage::PeerFetch { .. }
            | LinkMessage::PeerAnswer { .. } => 4,
            LinkMessage::PeerDelete { .. }
            | LinkMessage::PeerList { .. }
            | LinkMessage::PeerListed { .. } => 5,
            _ => 1,
        }
    }

    /// Decode as a card speaking link schema `schema` does: the fields
    /// later schemas introduced are skipped (so they take their
    /// defaults), a kind they introduced is unknown. This is how a test
    /// runs an older card's receiver against a newer sender.
    pub fn decode_as(bytes: &[u8], schema: u32) -> Result<Self, LinkError> {
        let m = Self::decode(bytes)?;
        if schema >= SCHEMA {
            return Ok(m);
        }
        if m.schema_of_kind() > schema {
            return Err(LinkError::UnknownKind(m.kind()));
        }
        Self::decode(&m.encode_as(schema))
    }

    /// Decode a link message: unknown fields skipped, missing ones
    /// defaulted, sizes checked.
    pub fn decode(bytes: &[u8]) -> Result<Self, LinkError> {
        let m = Message::decode(bytes)?;
        let epoch = || u64_of(&m, tag::EPOCH, 0);
        let bracket = || u64_of(&m, tag::BRACKET, 0);
        let app = || u32_of(&m, tag::APP, 0);
        let object = || u32_of(&m, tag::OBJECT, 0);
        let tier = || {
            let t = u32_of(&m, tag::TIER, 0)?;
            if t > 1 {
                return Err(LinkError::Field {
                    tag: tag::TIER,
                    what: "a tier is 0 (warm) or 1 (cold)",
                });
            }
            Ok(t)
        };
        let request = || u64_of(&m, tag::REQUEST, 0);
        let set = || -> Result<SetRecord, LinkError> {
            Ok(SetRecord {
                app: app()?,
                object: object()?,
                endpoint: u32_of(&m, tag::ENDPOINT, 0)?,
                stage: u32_of(&m, tag::STAGE, 0)?,
                tier: tier()?,
                version: u64_of(&m, tag::VERSION, 0)?,
                crc: u32_of(&m, tag::CRC, 0)?,
                stored_us: u64_of(&m, tag::STORED_US, 0)?,
            })
        };
        Ok(match m.kind {
            kind::HELLO => LinkMessage::Hello {
                node: u32_of(&m, tag::NODE, 0)?,
                schema: u32_of(&m, tag::SCHEMA, 1)?,
                epoch: epoch()?,
                role: Role::from_u32(u32_of(&m, tag::ROLE, Role::Standby as u32)?),
                applied: u64_of(&m, tag::APPLIED, 0)?,
                applied_epoch: u64_of(&m, tag::APPLIED_EPOCH, 0)?,
            },
            kind::HEARTBEAT => LinkMessage::Heartbeat {
                epoch: epoch()?,
                bracket: bracket()?,
                time_us: u64_of(&m, tag::TIME_US, 0)?,
                lag: u64_of(&m, tag::LAG, 0)?,
                role: match m.u32_or(tag::ROLE, u32::MAX)? {
                    u32::MAX => None,
                    r => Some(Role::from_u32(r)),
                },
            },
            kind::OPEN => LinkMessage::Open {
                epoch: epoch()?,
                bracket: bracket()?,
                full: u32_of(&m, tag::FULL, 0)? != 0,
            },
            kind::PUT => LinkMessage::Put {
                bracket: bracket()?,
                set: set()?,
                data: m.bytes_or_empty(tag::DATA).to_vec(),
            },
            kind::DELETE => LinkMessage::Delete {
                bracket: bracket()?,
                app: app()?,
                object: object()?,
            },
            kind::LOG_APPEND => LinkMessage::LogAppend {
                bracket: bracket()?,
                app: app()?,
                object: object()?,
                tier: tier()?,
                offset: u32::try_from(u64_of(&m, tag::OFFSET, 0)?).map_err(|_| {
                    LinkError::Field {
                        tag: tag::OFFSET,
                        what: "a log offset is 32 bits",
                    }
                })?,
                data: m.bytes_or_empty(tag::DATA).to_vec(),
            },
            kind::LOG_TRIM => LinkMessage::LogTrim {
                bracket: bracket()?,
                tier: tier()?,
                to: u32_of(&m, tag::TO, 0)?,
            },
            kind::SECRET => LinkMessage::Secret {
                bracket: bracket()?,
                app: app()?,
                secret: <[u8; SECRET_BYTES]>::try_from(m.bytes_or_empty(tag::SECRET)).map_err(
                    |_| LinkError::Field {
                        tag: tag::SECRET,
                        what: "a secret is 32 bytes",
                    },
                )?,
            },
            kind::CLOSE => LinkMessage::Close {
                epoch: epoch()?,
                bracket: bracket()?,
                changes: u32_of(&m, tag::CHANGES, 0)?,
                digest: u32::try_from(u64_of(&m, tag::CRC, 0)?).map_err(|_| LinkError::Field {
                    tag: tag::CRC,
                    what: "a digest is 32 bits",
                })?,
            },
            kind::ACK => LinkMessage::Ack {
                epoch: epoch()?,
                bracket: bracket()?,
            },
            kind::REFUSE => LinkMessage::Refuse {
                epoch: epoch()?,
                code: RefuseCode::from_u32(u32_of(&m, tag::CODE, RefuseCode::Other as u32)?),
                reason: text_of(&m, tag::REASON),
            },
            kind::CAUSE => LinkMessage::Cause {
                epoch: epoch()?,
                reason: text_of(&m, tag::REASON),
            },
            kind::HANDOVER => LinkMessage::Handover {
                epoch: epoch()?,
                bracket: bracket()?,
            },
            kind::PEER_STORE => LinkMessage::PeerStore {
                request: request()?,
                set: set()?,
                data: m.bytes_or_empty(tag::DATA).to_vec(),
            },
            kind::PEER_FETCH => LinkMessage::PeerFetch {
                request: request()?,
                app: app()?,
                object: object()?,
                endpoint: u32_of(&m, tag::ENDPOINT, 0)?,
                cap: u32_of(&m, tag::CAP, 0)?,
            },
            kind::PEER_ANSWER => LinkMessage::PeerAnswer {
                request: request()?,
                // A missing code is never success.
                code: u32_of(&m, tag::CODE, u32::MAX)?,
                reason: text_of(&m, tag::REASON),
                set: set()?,
                data: m.bytes_or_empty(tag::DATA).to_vec(),
            },
            kind::PEER_DELETE => LinkMessage::PeerDelete {
                request: request()?,
                app: app()?,
                object: object()?,
                endpoint: u32_of(&m, tag::ENDPOINT, 0)?,
            },
            kind::PEER_LIST => LinkMessage::PeerList {
                request: request()?,
                app: app()?,
                endpoint: u32_of(&m, tag::ENDPOINT, 0)?,
                from: u32_of(&m, tag::FROM, 0)?,
            },
            kind::PEER_LISTED => LinkMessage::PeerListed {
                request: request()?,
                sets: listed(m.bytes_or_empty(tag::SETS))?,
                next: if m.has(tag::NEXT) {
                    Some(u32_of(&m, tag::NEXT, 0)?)
                } else {
                    None
                },
            },
            other => return Err(LinkError::UnknownKind(other)),
        })
    }
}

/// A `PEER_LISTED` page's records: whole 32-byte records, at most
/// [`MAX_LISTED`].
fn listed(b: &[u8]) -> Result<Vec<SetInfo>, LinkError> {
    let bad = |what| LinkError::Field {
        tag: tag::SETS,
        what,
    };
    if !b.len().is_multiple_of(SetInfo::BYTES) {
        return Err(bad("set records are 32 bytes each"));
    }
    if b.len() / SetInfo::BYTES > MAX_LISTED {
        return Err(bad("a page lists at most MAX_LISTED sets"));
    }
    b.chunks(SetInfo::BYTES)
        .map(|c| SetInfo::from_bytes(c).ok_or(bad("set records are 32 bytes each")))
        .collect()
}

/// A set's record fields (`stored_us` apart: its schema is the
/// message's business).
fn set_fields(b: Builder, set: &SetRecord) -> Builder {
    b.u32(tag::APP, set.app)
        .u32(tag::OBJECT, set.object)
        .u32(tag::ENDPOINT, set.endpoint)
        .u32(tag::STAGE, set.stage)
        .u32(tag::TIER, set.tier)
        .u64(tag::VERSION, set.version)
        .u32(tag::CRC, set.crc)
}

/// A frame for a byte stream: length prefix, then the message.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(PREFIX + message.len());
    f.extend_from_slice(&(message.len() as u32).to_le_bytes());
    f.extend_from_slice(message);
    f
}

/// Reassembles frames from a byte stream however it is chunked.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// Add bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that are not a whole frame yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame's message, if there is one. A length over
    /// [`MAX_FRAME`] is an error at once (the connection must be dropped:
    /// nothing after it can be trusted to be a frame boundary).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, LinkError> {
        let Some(prefix) = self.buf.get(..PREFIX) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > MAX_FRAME {
            return Err(LinkError::FrameTooLarge(len));
        }
        if self.buf.len() < PREFIX + len {
            return Ok(None);
        }
        let msg = self.buf[PREFIX..PREFIX + len].to_vec();
        self.buf.drain(..PREFIX + len);
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn listed_set() -> impl Strategy<Value = SetInfo> {
        (any::<[u32; 4]>(), any::<bool>(), any::<[u32; 3]>()).prop_map(|(w, cold, v)| SetInfo {
            app: w[0],
            object: w[1],
            endpoint: w[2],
            stage: w[3],
            tier: if cold {
                crate::msg::TierSel::Cold
            } else {
                crate::msg::TierSel::Warm
            },
            len: v[0],
            crc: v[1],
            data_offset: v[2],
        })
    }

    fn set() -> impl Strategy<Value = SetRecord> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            0u32..2,
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
        )
            .prop_map(
                |(app, object, endpoint, stage, tier, version, crc, stored_us)| SetRecord {
                    app,
                    object,
                    endpoint,
                    stage,
                    tier,
                    version,
                    crc,
                    stored_us,
                },
            )
    }

    fn message() -> impl Strategy<Value = LinkMessage> {
        let data = proptest::collection::vec(any::<u8>(), 0..300);
        let role = prop_oneof![Just(Role::Master), Just(Role::Slave), Just(Role::Standby)];
        let code = prop_oneof![
            Just(RefuseCode::StaleEpoch),
            Just(RefuseCode::Protocol),
            Just(RefuseCode::Apply),
            Just(RefuseCode::Other)
        ];
        prop_oneof![
            (
                any::<u32>(),
                1u32..=SCHEMA,
                any::<u64>(),
                role,
                any::<u64>(),
                any::<u64>()
            )
                .prop_map(|(node, schema, epoch, role, applied, applied_epoch)| {
                    LinkMessage::Hello {
                        node,
                        schema,
                        epoch,
                        role,
                        applied,
                        applied_epoch,
                    }
                }),
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                proptest::option::of(prop_oneof![
                    Just(Role::Master),
                    Just(Role::Slave),
                    Just(Role::Standby)
                ])
            )
                .prop_map(|(epoch, bracket, time_us, lag, role)| {
                    LinkMessage::Heartbeat {
                        epoch,
                        bracket,
                        time_us,
                        lag,
                        role,
                    }
                }),
            (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(epoch, bracket, full)| {
                LinkMessage::Open {
                    epoch,
                    bracket,
                    full,
                }
            }),
            (any::<u64>(), set(), data.clone()).prop_map(|(bracket, set, data)| LinkMessage::Put {
                bracket,
                set,
                data
            }),
            (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(bracket, app, object)| {
                LinkMessage::Delete {
                    bracket,
                    app,
                    object,
                }
            }),
            (
                any::<u64>(),
                any::<u32>(),
                any::<u32>(),
                0u32..2,
                any::<u32>(),
                data.clone()
            )
                .prop_map(|(bracket, app, object, tier, offset, data)| {
                    LinkMessage::LogAppend {
                        bracket,
                        app,
                        object,
                        tier,
                        offset,
                        data,
                    }
                }),
            (any::<u64>(), 0u32..2, any::<u32>())
                .prop_map(|(bracket, tier, to)| LinkMessage::LogTrim { bracket, tier, to }),
            (any::<u64>(), any::<u32>(), any::<[u8; 32]>()).prop_map(|(bracket, app, secret)| {
                LinkMessage::Secret {
                    bracket,
                    app,
                    secret,
                }
            }),
            (any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>()).prop_map(
                |(epoch, bracket, changes, digest)| LinkMessage::Close {
                    epoch,
                    bracket,
                    changes,
                    digest,
                }
            ),
            (any::<u64>(), any::<u64>())
                .prop_map(|(epoch, bracket)| LinkMessage::Ack { epoch, bracket }),
            (any::<u64>(), code, ".{0,40}").prop_map(|(epoch, code, reason)| {
                LinkMessage::Refuse {
                    epoch,
                    code,
                    reason,
                }
            }),
            (any::<u64>(), ".{0,40}")
                .prop_map(|(epoch, reason)| LinkMessage::Cause { epoch, reason }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(epoch, bracket)| LinkMessage::Handover { epoch, bracket }),
            (any::<u64>(), set(), data.clone()).prop_map(|(request, mut set, data)| {
                set.stored_us = 0; // not a field of the message
                LinkMessage::PeerStore { request, set, data }
            }),
            (
                any::<u64>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>()
            )
                .prop_map(|(request, app, object, endpoint, cap)| {
                    LinkMessage::PeerFetch {
                        request,
                        app,
                        object,
                        endpoint,
                        cap,
                    }
                }),
            (any::<u64>(), any::<u32>(), ".{0,40}", set(), data).prop_map(
                |(request, code, reason, mut set, data)| {
                    set.stored_us = 0;
                    LinkMessage::PeerAnswer {
                        request,
                        code,
                        reason,
                        set,
                        data,
                    }
                }
            ),
            (any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
                |(request, app, object, endpoint)| LinkMessage::PeerDelete {
                    request,
                    app,
                    object,
                    endpoint,
                }
            ),
            (any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
                |(request, app, endpoint, from)| LinkMessage::PeerList {
                    request,
                    app,
                    endpoint,
                    from,
                }
            ),
            (
                any::<u64>(),
                proptest::collection::vec(listed_set(), 0..20),
                proptest::option::of(any::<u32>())
            )
                .prop_map(|(request, sets, next)| LinkMessage::PeerListed {
                    request,
                    sets,
                    next,
                }),
        ]
    }

    /// What a card speaking `schema` sends of a message (the fields later
    /// schemas added are defaulted by the receiver).
    fn as_schema(m: &LinkMessage, schema: u32) -> LinkMessage {
        let mut m = m.clone();
        match &mut m {
            LinkMessage::Heartbeat { lag, role, .. } => {
                if schema < 2 {
                    *lag = 0;
                }
                if schema < 3 {
                    *role = None;
                }
            }
            LinkMessage::Put { set, .. } if schema < 2 => set.stored_us = 0,
            LinkMessage::LogAppend { offset, .. } if schema < 3 => *offset = 0,
            LinkMessage::Close { digest, .. } if schema < 3 => *digest = 0,
            LinkMessage::Hello {
                schema: s,
                applied_epoch,
                ..
            } => {
                *s = (*s).min(schema);
                if schema < 3 {
                    *applied_epoch = 0;
                }
            }
            _ => {}
        }
        m
    }

    proptest! {
        #[test]
        fn link_messages_round_trip(m in message()) {
            prop_assert_eq!(LinkMessage::decode(&m.encode()).unwrap(), m);
        }

        /// An older sender's message reaches this receiver with the
        /// newer fields defaulted (a kind an older card does not have,
        /// `Handover` or the peer-set kinds, is never sent to it: the
        /// sender checks the peer's schema first).
        #[test]
        fn an_older_senders_message_takes_the_defaults(m in message(), schema in 1u32..SCHEMA) {
            prop_assume!(m.schema_of_kind() <= schema);
            prop_assert_eq!(LinkMessage::decode(&m.encode_as(schema)).unwrap(), as_schema(&m, schema));
        }

        /// An older card's receiver sees a newer sender's message with
        /// the newer fields defaulted, and does not know its newer kinds.
        #[test]
        fn an_older_receiver_defaults_the_newer_fields(m in message(), schema in 1u32..SCHEMA) {
            let got = LinkMessage::decode_as(&m.encode(), schema);
            if m.schema_of_kind() > schema {
                prop_assert_eq!(got, Err(LinkError::UnknownKind(m.kind())));
            } else {
                prop_assert_eq!(got.unwrap(), as_schema(&m, schema));
            }
        }

        /// Frames survive any chunking of the stream.
        #[test]
        fn frames_reassemble_from_any_chunking(
            ms in proptest::collection::vec(message(), 1..6),
            cuts in proptest::collection::vec(1usize..50, 1..40),
        ) {
            let stream: Vec<u8> = ms.iter().flat_map(|m| frame(&m.encode())).collect();
            let mut r = FrameReader::default();
            let mut got = Vec::new();
            let mut at = 0;
            for c in cuts.iter().cycle() {
                if at >= stream.len() {
                    break;
                }
                let end = (at + c).min(stream.len());
                r.push(&stream[at..end]);
                at = end;
                while let Some(f) = r.next_frame().unwrap() {
                    got.push(LinkMessage::decode(&f).unwrap());
                }
            }
            prop_assert_eq!(got, ms);
            prop_assert_eq!(r.pending(), 0);
        }

        /// Garbage is an error, never a panic.
        #[test]
        fn garbage_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = LinkMessage::decode(&bytes);
        }
    }

    /// A schema 1 card's own decoder (the structure it had: no `lag`, no
    /// `stored_us`) reading a schema 2 card's messages: it updates the
    /// fields it knows and skips the new ones (claim 11).
    #[test]
    fn a_newer_senders_message_reaches_an_older_receiver() {
        struct HeartbeatV1 {
            epoch: u64,
            bracket: u64,
        }
        let m = LinkMessage::Heartbeat {
            epoch: 7,
            bracket: 99,
            time_us: 5,
            lag: 3,
            role: Some(Role::Slave),
        };
        let bytes = m.encode_as(2);
        let d = Message::decode(&bytes).unwrap();
        assert!(d.tags().any(|t| t == tag::LAG), "schema 2 sends LAG");
        let v1 = HeartbeatV1 {
            epoch: d.u64_or(tag::EPOCH, 0).unwrap(),
            bracket: d.u64_or(tag::BRACKET, 0).unwrap(),
        };
        assert_eq!((v1.epoch, v1.bracket), (7, 99));
        assert!(!Message::decode(&m.encode_as(1))
            .unwrap()
            .tags()
            .any(|t| t == tag::LAG));
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_arrives() {
        let mut r = FrameReader::default();
        r.push(&((MAX_FRAME as u32) + 1).to_le_bytes());
        assert_eq!(r.next_frame(), Err(LinkError::FrameTooLarge(MAX_FRAME + 1)));
        let mut r = FrameReader::default();
        r.push(&8u32.to_le_bytes());
        r.push(&[0; 3]);
        assert_eq!(r.next_frame(), Ok(None), "a partial frame waits");
    }

    #[test]
    fn bad_fields_are_refused_with_their_tag() {
        let b = Builder::new(kind::PUT).u32(tag::TIER, 5).finish();
        assert!(matches!(
            LinkMessage::decode(&b),
            Err(LinkError::Field { tag: tag::TIER, .. })
        ));
        let b = Builder::new(kind::SECRET)
            .bytes(tag::SECRET, &[1; 5])
            .finish();
        assert!(matches!(
            LinkMessage::decode(&b),
            Err(LinkError::Field {
                tag: tag::SECRET,
                ..
            })
        ));
        let b = Builder::new(0x7F).finish();
        assert_eq!(LinkMessage::decode(&b), Err(LinkError::UnknownKind(0x7F)));
        let b = Builder::new(kind::ACK).u32(tag::EPOCH, 1).finish();
        assert!(matches!(LinkMessage::decode(&b), Err(LinkError::Tlv(_))));
    }
}
