//! The card's control plane: the memory manager that keeps per-application
//! record tables in the controller's regions, delivers sets at reboot
//! stages, separates warm and cold persistence, runs the append log for
//! backup readers and authenticates requests. See `docs/firmware.md`.
//!
//! | module | what |
//! |---|---|
//! | [`tlv`] | the versioned TLV wire format |
//! | [`msg`] | request and response kinds, fields, result codes |
//! | [`auth`] | application secrets and request MACs |
//! | [`records`] | the record table and the splice plan |
//! | [`manager`] | the memory manager over a [`manager::Controller`] |
//! | [`mailbox`] | the mailbox registers and the request loop step |
//! | [`model`] | a model of what the card must answer, for tests |

pub mod auth;
pub mod mailbox;
pub mod manager;
pub mod model;
pub mod msg;
pub mod records;
pub mod tlv;

pub use manager::{Controller, HostMemory, MemoryManager};
