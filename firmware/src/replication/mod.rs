//! Replication to a peer card (seed 004; seed 000 claims 13-15; seed 001).
//!
//! | file | concern |
//! |---|---|
//! | `channel.rs` | the secure channel: Noise NNpsk0 over any byte stream, sans-IO |

pub mod channel;
