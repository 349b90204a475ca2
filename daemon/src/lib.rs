//! `hitlessd`: one card, many applications.
//!
//! The daemon owns one card (any transport the driver has) and serves the
//! firmware API to applications on a Unix socket
//! ([`hitless_proto::daemon`] frames). It identifies each connection by
//! `SO_PEERCRED`, decides with a [`policy::Policy`] which application ids
//! it may use, keeps the applications' secrets (they never leave the
//! daemon), pools the card's sessions, and runs requests on the card one
//! at a time in arrival order ([`card`]) so applications share the card
//! fairly. See `docs/daemon.md`.
#![forbid(unsafe_code)]

pub mod browser;
pub mod card;
pub mod heaps;
pub mod http;
pub mod metrics;
pub mod policy;
pub mod server;
