//! A host request on a replicated card: the step the firmware loop runs
//! instead of `MemoryManager::handle` when the card has a peer.
//!
//! - a card that is not master serves no host (claim 24; it answers
//!   STATUS only): anything else is refused with the fencing error, so a
//!   stale master never takes a store;
//! - the master runs the request with its journal on; the changes it made
//!   become one bracket, streamed at once;
//! - in sync mode the answer waits for [`Event::Durable`] (the transport
//!   holds it; on [`Event::SyncTimeout`] or [`Event::Abandoned`] it answers
//!   with a failure instead).
//!
//! [`Event::Durable`]: super::Event::Durable
//! [`Event::SyncTimeout`]: super::Event::SyncTimeout
//! [`Event::Abandoned`]: super::Event::Abandoned

use super::node::{Node, WriteError};
use crate::manager::{Controller, HostMemory, MemoryManager, Reply};
use hitless_proto::msg::kind;
use std::time::Instant;

/// When the host gets its answer.
#[derive(Debug)]
pub enum Answer {
    /// Now: a read, a refusal by the manager, async mode, or nothing
    /// changed.
    Now(Reply),
    /// When bracket `bracket` of `epoch` is durable on the in-sync slaves.
    AtDurable {
        reply: Reply,
        epoch: u64,
        bracket: u64,
    },
}

/// Run one host request on a replicated card. `Err`: refused before it
/// ran (not master, lease out, draining), or its changes could not be
/// streamed (the slaves then get a full snapshot: the card's state and
/// theirs must not differ silently).
pub fn serve<C: Controller>(
    node: &mut Node<MemoryManager<C>>,
    now: Instant,
    host: &mut dyn HostMemory,
    req: &[u8],
) -> Result<Answer, WriteError> {
    let k = req.get(3).copied().unwrap_or(0);
    if k != kind::STATUS {
        node.check_write(now)?;
    }
    let mm = node.replica_mut();
    mm.record_changes(true);
    let reply = mm.handle(host, req);
    stream(node, now, reply)
}

/// Run one remote backup reader's request (seed 001) on a replicated
/// card, between the host's: reads on any card (a slave answers from the
/// master's copy as applied up to its last closed bracket: the loop
/// applies a bracket whole between two requests, so a reader never sees
/// half of one); a LOG_TRIM changes the log, so only the master takes
/// it, streamed as its own bracket like a host's trim (`Err` on a slave:
/// the trim belongs to the master, whose log the slave follows).
pub fn serve_backup<C: Controller>(
    node: &mut Node<MemoryManager<C>>,
    now: Instant,
    host: &mut dyn HostMemory,
    req: &[u8],
    challenge: u64,
    window: (u64, u32),
) -> Result<Answer, WriteError> {
    if req.get(3) == Some(&kind::LOG_TRIM) {
        node.check_write(now)?;
        node.replica_mut().record_changes(true);
    }
    let reply = node
        .replica_mut()
        .handle_backup(host, req, challenge, window);
    stream(node, now, reply)
}

/// Stream the changes a request just made as one bracket.
fn stream<C: Controller>(
    node: &mut Node<MemoryManager<C>>,
    now: Instant,
    reply: Reply,
) -> Result<Answer, WriteError> {
    let changes = node.replica_mut().take_changes();
    if changes.is_empty() {
        return Ok(Answer::Now(reply));
    }
    let streamed = (|| {
        node.begin(now)?;
        for c in changes {
            node.change(now, c)?;
        }
        node.close(now)
    })();
    match streamed {
        Ok(c) if c.durable => Ok(Answer::Now(reply)),
        Ok(c) => Ok(Answer::AtDurable {
            reply,
            epoch: c.epoch,
            bracket: c.bracket,
        }),
        Err(e) => {
            tracing::error!(
                node = node.node(),
                "a request's changes were applied but not streamed: {e}; slaves get a snapshot"
            );
            node.resync_all();
            Err(e)
        }
    }
}
