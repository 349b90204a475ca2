//! The hitless wire protocol, shared by the card firmware (the server) and
//! the host driver (the client): neither depends on the other.
//!
//! | module | what |
//! |---|---|
//! | [`tlv`] | the versioned TLV wire format: unknown fields skipped, missing fields defaulted |
//! | [`msg`] | request kinds, field tags, flags, result codes, packed records |
//! | [`image`] | the image manager's reports (IMAGE_* responses) |
//! | [`message`] | the typed [`Request`] and [`Response`], encoded to and decoded from TLV |
//! | [`auth`] | application secrets and request MACs |
//! | [`backup`] | the frames of the remote backup reader (seed 001) |
//! | [`mailbox`] | the mailbox register block as the card implements it |
//! | [`daemon`] | the frames between applications and `hitlessd` |
//! | [`link`] | the card-to-card replication messages (seed 004) |
//! | [`witness`] | a card and the pair's witness (the arbiter granting mastership) |
#![forbid(unsafe_code)]

pub mod auth;
pub mod backup;
pub mod daemon;
pub mod image;
pub mod link;
pub mod mailbox;
pub mod message;
pub mod msg;
pub mod tlv;
pub mod witness;

pub use message::{LostWarm, PeerNotes, PeerReport, Request, Response, StatusReport, TierReport};
pub use msg::Code;
