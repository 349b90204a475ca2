//! The messages between a card and the pair's witness, the arbiter
//! process that grants mastership (`hitless-sim witness`): two cards
//! cannot tell a dead peer from a cut link, so the one that may accept
//! writes is the one holding the witness's lease for the newest epoch.
//!
//! The witness keeps the epoch (a fencing token: it only grows), its
//! holder, the lease's end by its own clock, and the in-sync set (the
//! nodes that hold every acknowledged write). A lease travels as the time
//! it has left, never as a clock reading: the card ends it early by the
//! round trip and a skew margin, by its own clock.
//!
//! TLV like every hitless message ([`crate::tlv`]): its own kind space
//! (0x60…) and tags (200…); unknown fields skipped, missing ones
//! defaulted. One request, one answer, over the pair's secure channel.

use crate::tlv::{Builder, Message, TlvError};

/// Witness message kinds.
pub mod kind {
    pub const ACQUIRE: u8 = 0x60;
    pub const RENEW: u8 = 0x61;
    pub const RELEASE: u8 = 0x62;
    pub const SET_IN_SYNC: u8 = 0x63;
    pub const GRANT: u8 = 0x64;
    pub const DONE: u8 = 0x65;
    pub const DENY: u8 = 0x66;
}

/// Witness field tags.
pub mod tag {
    pub const NODE: u16 = 200;
    pub const EPOCH: u16 = 201;
    /// Microseconds the lease has left when the witness answers.
    pub const LEFT_US: u16 = 202;
    /// The in-sync set: node ids, 4 bytes each, little-endian.
    pub const MEMBERS: u16 = 203;
    pub const CODE: u16 = 204;
    pub const HOLDER: u16 = 205;
}

/// Most nodes in an in-sync set (a pair or a trio; bounded for decoding).
pub const MAX_MEMBERS: usize = 16;

/// Why the witness said no.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyCode {
    /// Another node holds the lease (`holder`, `epoch`, `left_us`).
    Held = 1,
    /// The asking node is not in the in-sync set.
    NotInSync = 2,
    /// The asking node does not hold that epoch (`holder`, `epoch`: the
    /// current ones).
    NotHolder = 3,
    /// Anything else (a malformed request).
    Other = 4,
}

impl DenyCode {
    fn from_u32(v: u32) -> Self {
        match v {
            1 => DenyCode::Held,
            2 => DenyCode::NotInSync,
            3 => DenyCode::NotHolder,
            _ => DenyCode::Other,
        }
    }
}

/// One witness message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WitnessMessage {
    /// A new epoch and lease for `node`.
    Acquire { node: u32 },
    /// Extend the lease of `node`, holder of `epoch`.
    Renew { node: u32, epoch: u64 },
    /// Give the lease of `epoch` up.
    Release { node: u32, epoch: u64 },
    /// The holder of `epoch` says which nodes hold every acknowledged write.
    SetInSync {
        node: u32,
        epoch: u64,
        members: Vec<u32>,
    },
    /// Master at `epoch` for `left_us` more; the in-sync set as the
    /// witness has it.
    Grant {
        epoch: u64,
        left_us: u64,
        members: Vec<u32>,
    },
    /// Done (release, set-in-sync).
    Done,
    /// Refused.
    Deny {
        code: DenyCode,
        holder: Option<u32>,
        epoch: u64,
        left_us: u64,
    },
}

/// Why bytes are not a witness message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WitnessError {
    #[error(transparent)]
    Tlv(#[from] TlvError),
    #[error("witness message kind {0:#04x}")]
    UnknownKind(u8),
    #[error("field {tag}: {what}")]
    Field { tag: u16, what: &'static str },
}

/// No holder, on the wire.
const NO_HOLDER: u32 = u32::MAX;

fn members_bytes(m: &[u32]) -> Vec<u8> {
    m.iter().flat_map(|n| n.to_le_bytes()).collect()
}

fn members_of(m: &Message<'_>) -> Result<Vec<u32>, WitnessError> {
    let b = m.bytes_or_empty(tag::MEMBERS);
    if !b.len().is_multiple_of(4) || b.len() / 4 > MAX_MEMBERS {
        return Err(WitnessError::Field {
            tag: tag::MEMBERS,
            what: "a set of at most 16 node ids of 4 bytes",
        });
    }
    Ok(b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

impl WitnessMessage {
    pub fn kind(&self) -> u8 {
        match self {
            WitnessMessage::Acquire { .. } => kind::ACQUIRE,
            WitnessMessage::Renew { .. } => kind::RENEW,
            WitnessMessage::Release { .. } => kind::RELEASE,
            WitnessMessage::SetInSync { .. } => kind::SET_IN_SYNC,
            WitnessMessage::Grant { .. } => kind::GRANT,
            WitnessMessage::Done => kind::DONE,
            WitnessMessage::Deny { .. } => kind::DENY,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let b = Builder::new(self.kind());
        match self {
            WitnessMessage::Acquire { node } => b.u32(tag::NODE, *node),
            WitnessMessage::Renew { node, epoch } | WitnessMessage::Release { node, epoch } => {
                b.u32(tag::NODE, *node).u64(tag::EPOCH, *epoch)
            }
            WitnessMessage::SetInSync {
                node,
                epoch,
                members,
            } => b
                .u32(tag::NODE, *node)
                .u64(tag::EPOCH, *epoch)
                .bytes(tag::MEMBERS, &members_bytes(members)),
            WitnessMessage::Grant {
                epoch,
                left_us,
                members,
            } => b
                .u64(tag::EPOCH, *epoch)
                .u64(tag::LEFT_US, *left_us)
                .bytes(tag::MEMBERS, &members_bytes(members)),
            WitnessMessage::Done => b,
            WitnessMessage::Deny {
                code,
                holder,
                epoch,
                left_us,
            } => b
                .u32(tag::CODE, *code as u32)
                .u32(tag::HOLDER, holder.unwrap_or(NO_HOLDER))
                .u64(tag::EPOCH, *epoch)
                .u64(tag::LEFT_US, *left_us),
        }
        .finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WitnessError> {
        let m = Message::decode(bytes)?;
        let node = || m.u32_or(tag::NODE, NO_HOLDER);
        let epoch = || m.u64_or(tag::EPOCH, 0);
        let left = || m.u64_or(tag::LEFT_US, 0);
        let need_node = |n: u32| {
            if n == NO_HOLDER {
                Err(WitnessError::Field {
                    tag: tag::NODE,
                    what: "a request names its node",
                })
            } else {
                Ok(n)
            }
        };
        Ok(match m.kind {
            kind::ACQUIRE => WitnessMessage::Acquire {
                node: need_node(node()?)?,
            },
            kind::RENEW => WitnessMessage::Renew {
                node: need_node(node()?)?,
                epoch: epoch()?,
            },
            kind::RELEASE => WitnessMessage::Release {
                node: need_node(node()?)?,
                epoch: epoch()?,
            },
            kind::SET_IN_SYNC => WitnessMessage::SetInSync {
                node: need_node(node()?)?,
                epoch: epoch()?,
                members: members_of(&m)?,
            },
            kind::GRANT => WitnessMessage::Grant {
                epoch: epoch()?,
                left_us: left()?,
                members: members_of(&m)?,
            },
            kind::DONE => WitnessMessage::Done,
            kind::DENY => WitnessMessage::Deny {
                code: DenyCode::from_u32(m.u32_or(tag::CODE, DenyCode::Other as u32)?),
                holder: Some(m.u32_or(tag::HOLDER, NO_HOLDER)?).filter(|h| *h != NO_HOLDER),
                epoch: epoch()?,
                left_us: left()?,
            },
            other => return Err(WitnessError::UnknownKind(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_message() -> impl Strategy<Value = WitnessMessage> {
        let node = 0u32..1000;
        let members = proptest::collection::vec(0u32..1000, 0..=MAX_MEMBERS);
        prop_oneof![
            node.clone()
                .prop_map(|node| WitnessMessage::Acquire { node }),
            (node.clone(), any::<u64>())
                .prop_map(|(node, epoch)| WitnessMessage::Renew { node, epoch }),
            (node.clone(), any::<u64>())
                .prop_map(|(node, epoch)| WitnessMessage::Release { node, epoch }),
            (node, any::<u64>(), members.clone()).prop_map(|(node, epoch, members)| {
                WitnessMessage::SetInSync {
                    node,
                    epoch,
                    members,
                }
            }),
            (any::<u64>(), any::<u64>(), members).prop_map(|(epoch, left_us, members)| {
                WitnessMessage::Grant {
                    epoch,
                    left_us,
                    members,
                }
            }),
            Just(WitnessMessage::Done),
            (
                1u32..5,
                proptest::option::of(0u32..1000),
                any::<u64>(),
                any::<u64>()
            )
                .prop_map(|(c, holder, epoch, left_us)| WitnessMessage::Deny {
                    code: DenyCode::from_u32(c),
                    holder,
                    epoch,
                    left_us,
                }),
        ]
    }

    proptest! {
        #[test]
        fn every_message_round_trips(m in any_message()) {
            prop_assert_eq!(WitnessMessage::decode(&m.encode()), Ok(m));
        }

        #[test]
        fn garbage_is_refused_or_decoded_never_a_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..200)
        ) {
            let _ = WitnessMessage::decode(&bytes);
        }
    }

    #[test]
    fn a_request_without_its_node_or_with_a_bad_set_is_refused() {
        let no_node = Builder::new(kind::ACQUIRE).finish();
        assert!(matches!(
            WitnessMessage::decode(&no_node),
            Err(WitnessError::Field { tag: tag::NODE, .. })
        ));
        let odd = Builder::new(kind::SET_IN_SYNC)
            .u32(tag::NODE, 1)
            .bytes(tag::MEMBERS, &[1, 2, 3])
            .finish();
        assert!(matches!(
            WitnessMessage::decode(&odd),
            Err(WitnessError::Field {
                tag: tag::MEMBERS,
                ..
            })
        ));
        let big = Builder::new(kind::GRANT)
            .bytes(tag::MEMBERS, &[0; 4 * (MAX_MEMBERS + 1)])
            .finish();
        assert!(WitnessMessage::decode(&big).is_err());
        assert_eq!(
            WitnessMessage::decode(&Builder::new(0x4F).finish()),
            Err(WitnessError::UnknownKind(0x4F))
        );
    }
}
