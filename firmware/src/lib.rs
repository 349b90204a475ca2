//! The card's control plane: the memory manager that keeps per-application
//! record tables in the controller's regions, delivers sets at reboot
//! stages, separates warm and cold persistence, runs the append log for
//! backup readers and authenticates requests. See `docs/firmware.md`.
//! The wire protocol (TLV, typed messages, credentials, the mailbox
//! registers) is the `hitless-proto` crate's, shared with the host driver.
//!
//! | module | what |
//! |---|---|
//! | [`records`] | the record table and the splice plan |
//! | [`manager`] | the memory manager over a [`manager::Controller`] |
//! | [`mailbox`] | the loop step that runs one mailbox request |
//! | [`ring_controller`] | the [`manager::Controller`] over the shared ring engine, for any platform bus |
//! | [`model`] | a model of what the card must answer, for tests |
#![forbid(unsafe_code)]

pub mod heap;
pub mod mailbox;
pub mod manager;
pub mod model;
pub mod records;
pub mod replication;
pub mod ring_controller;

pub use hitless_proto as proto;
pub use manager::{AccessError, Controller, FirmwareError, HostMemory, MemoryManager};
pub use ring_controller::{LocalLayout, RingController};
