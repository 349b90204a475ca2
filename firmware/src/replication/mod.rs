//! Replication to a peer card (seed 004; seed 000 claims 13-15; seed 001).
//! Sans-IO: no sockets, threads or clocks here; the transport moves the
//! encoded messages and passes time in. See `docs/replication.md`.
//!
//! | file | concern |
//! |---|---|
//! | `channel.rs` | the secure channel: Noise NNpsk0 over any byte stream |
//! | `journal.rs` | changes, brackets, marks, and their link messages |
//! | `replica.rs` | the [`Replica`] trait a slave applies into; [`MemReplica`] |
//! | `card.rs` | a host request on a replicated card: fencing, journal, bracket, when to answer |
//! | `arbiter.rs` | the [`Arbiter`] trait, [`LocalArbiter`], [`NoArbiter`], the decision rule |
//! | `node.rs` | the [`Node`]: roles, epochs, dispatch, events, configuration |
//! | `master.rs` | the write path, acks, sync/async, resend, snapshot, switchover |
//! | `slave.rs` | brackets in: buffer, apply at close, discard, ack |
//! | `monitor.rs` | heartbeats, silence, lease, takeover, promotion |
//! | `peer_sets.rs` | sets a host stores in the peer card's memory (000 claims 13-15): forwarding, answers, deadlines |

pub mod arbiter;
pub mod card;
pub mod channel;
pub mod journal;
mod master;
mod monitor;
pub mod node;
pub mod peer_sets;
pub mod replica;
mod slave;
#[cfg(test)]
mod tests;

pub use arbiter::{Arbiter, ArbiterError, Lease, LocalArbiter, NoArbiter};
pub use journal::{Bracket, Change, Mark};
pub use master::Commit;
pub use monitor::{PromoteError, Promoted};
pub use node::{Config, Event, Lag, Mode, Node, RoleError, Status, WriteError};
pub use replica::{ApplyError, Inconsistency, MemReplica, MemState, Replica};
