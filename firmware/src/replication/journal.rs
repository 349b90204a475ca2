//! The master's journal: the state changes of one host request (or of a
//! whole snapshot) as one [`Bracket`] (claims 14-17, 30-31, 40-43), and
//! their link messages.

use hitless_proto::auth::SECRET_BYTES;
use hitless_proto::link::{LinkMessage, SetRecord};

/// Where a node's replicated state stands: the last bracket applied, and
/// the epoch of the master that sent it. Ordered by epoch first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mark {
    pub epoch: u64,
    pub bracket: u64,
}

/// One state change of the card, as it travels in a bracket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A set stored (or replaced) in a tier, with its bytes.
    Put { set: SetRecord, data: Vec<u8> },
    /// A set deleted (from both tiers).
    Delete { app: u32, object: u32 },
    /// A record appended to a tier's append log; `offset` is where the
    /// master's log has it (its trims name such offsets).
    LogAppend {
        app: u32,
        object: u32,
        tier: u32,
        offset: u32,
        data: Vec<u8>,
    },
    /// A tier's log trimmed to the master's offset `to`.
    LogTrim { tier: u32, to: u32 },
    /// An application's credential made (first OPEN).
    Secret {
        app: u32,
        secret: [u8; SECRET_BYTES],
    },
}

/// Bytes a change's fields take besides its data (for the bracket bound).
const CHANGE_OVERHEAD: usize = 64;

impl Change {
    /// Bytes this change holds in a buffered bracket.
    pub fn size(&self) -> usize {
        CHANGE_OVERHEAD
            + match self {
                Change::Put { data, .. } | Change::LogAppend { data, .. } => data.len(),
                Change::Secret { .. } => SECRET_BYTES,
                Change::Delete { .. } | Change::LogTrim { .. } => 0,
            }
    }

    /// The change's link message in bracket `bracket`.
    pub fn to_message(&self, bracket: u64) -> LinkMessage {
        match self.clone() {
            Change::Put { set, data } => LinkMessage::Put { bracket, set, data },
            Change::Delete { app, object } => LinkMessage::Delete {
                bracket,
                app,
                object,
            },
            Change::LogAppend {
                app,
                object,
                tier,
                offset,
                data,
            } => LinkMessage::LogAppend {
                bracket,
                app,
                object,
                tier,
                offset,
                data,
            },
            Change::LogTrim { tier, to } => LinkMessage::LogTrim { bracket, tier, to },
            Change::Secret { app, secret } => LinkMessage::Secret {
                bracket,
                app,
                secret,
            },
        }
    }

    /// The change a link message carries (None: not a change).
    pub fn from_message(m: LinkMessage) -> Option<(u64, Change)> {
        Some(match m {
            LinkMessage::Put { bracket, set, data } => (bracket, Change::Put { set, data }),
            LinkMessage::Delete {
                bracket,
                app,
                object,
            } => (bracket, Change::Delete { app, object }),
            LinkMessage::LogAppend {
                bracket,
                app,
                object,
                tier,
                offset,
                data,
            } => (
                bracket,
                Change::LogAppend {
                    app,
                    object,
                    tier,
                    offset,
                    data,
                },
            ),
            LinkMessage::LogTrim { bracket, tier, to } => (bracket, Change::LogTrim { tier, to }),
            LinkMessage::Secret {
                bracket,
                app,
                secret,
            } => (bracket, Change::Secret { app, secret }),
            _ => return None,
        })
    }
}

/// A group of changes applied atomically by the slave at its close.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bracket {
    /// The epoch of the master that sent it.
    pub epoch: u64,
    /// Bracket id: consecutive within a master's stream; a full snapshot
    /// takes the id of the last bracket it includes.
    pub id: u64,
    /// A snapshot that replaces the receiver's whole state.
    pub full: bool,
    pub changes: Vec<Change>,
}

impl Bracket {
    /// Bytes of the changes (what the bounds count).
    pub fn size(&self) -> usize {
        self.changes.iter().map(Change::size).sum()
    }

    /// The mark a node has after applying it.
    pub fn mark(&self) -> Mark {
        Mark {
            epoch: self.epoch,
            bracket: self.id,
        }
    }

    /// The bracket's link messages: OPEN, the changes, CLOSE.
    pub fn messages(&self) -> Vec<LinkMessage> {
        let mut v = Vec::with_capacity(self.changes.len() + 2);
        v.push(LinkMessage::Open {
            epoch: self.epoch,
            bracket: self.id,
            full: self.full,
        });
        v.extend(self.changes.iter().map(|c| c.to_message(self.id)));
        v.push(LinkMessage::Close {
            epoch: self.epoch,
            bracket: self.id,
            changes: self.changes.len() as u32,
            digest: self.digest(),
        });
        v
    }

    /// A digest of the contents and the `full` flag: CLOSE carries it
    /// (schema 3) and the slave checks it; tests compare what a slave
    /// applied with what a master closed. Never 0 (0: not given).
    pub fn digest(&self) -> u32 {
        let mut bytes = Vec::new();
        for c in &self.changes {
            bytes.extend_from_slice(&c.to_message(0).encode());
        }
        bytes.push(u8::from(self.full));
        hitless_hdl::contract::crc32c(&bytes).max(1)
    }
}
