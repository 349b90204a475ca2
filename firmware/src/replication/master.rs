//! The master's side: each host request's changes as one bracket, sent as
//! they happen (claim 13); acks; sync durability and async lag; resending
//! to a slave that returns, or a full snapshot; manual switchover.

use super::arbiter::Arbiter;
use super::journal::{Bracket, Change, Mark};
use super::node::{Event, Lag, Mode, Node, RoleError, Sent, Stream, WriteError};
use super::replica::Replica;
use hitless_proto::link::{LinkMessage, Role};
use std::time::Instant;

/// How many brackets behind a slave out of the in-sync set may be when
/// its ack takes it back into the set of slaves every write waits for
/// (the writes meanwhile wait for it to apply that many: well within the
/// sync deadline).
const REJOIN_BEHIND: u64 = 8;

/// A closed bracket: its id, and whether the host may be answered now
/// (async mode, or no slave whose ack is needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    pub epoch: u64,
    pub bracket: u64,
    pub durable: bool,
}

impl<R: Replica> Node<R> {
    /// Whether this node may accept a write now: master, lease running,
    /// not draining. The card checks this before it runs a store (so a
    /// stale master refuses the store), and a request that carries the
    /// epoch its client saw is checked with [`Node::check_epoch`].
    pub fn check_write(&self, now: Instant) -> Result<u64, WriteError> {
        if self.role != Role::Master {
            return Err(WriteError::NotMaster {
                epoch: self.epoch,
                master: self.master,
            });
        }
        match &self.lease {
            Some(l) if l.valid(now) && l.epoch == self.epoch => {}
            _ => return Err(WriteError::LeaseExpired),
        }
        if self.draining.is_some() {
            return Err(WriteError::Draining);
        }
        Ok(self.epoch)
    }

    /// As [`Node::check_write`], for a request made under `epoch`.
    pub fn check_epoch(&self, now: Instant, epoch: u64) -> Result<(), WriteError> {
        let ours = self.check_write(now)?;
        if epoch != ours {
            return Err(WriteError::StaleEpoch {
                got: epoch,
                epoch: ours,
            });
        }
        Ok(())
    }

    /// The next bracket of this master's epoch, when it may write and no
    /// bracket is open (`begin` and `write` both start here).
    fn next_bracket(&self, now: Instant, changes: Vec<Change>) -> Result<Bracket, WriteError> {
        self.check_write(now)?;
        if self.tx.is_some() {
            return Err(WriteError::BracketOpen);
        }
        Ok(Bracket {
            epoch: self.epoch,
            id: self.last_closed + 1,
            full: false,
            changes,
        })
    }

    /// Open the bracket of one host request; OPEN goes out now.
    pub fn begin(&mut self, now: Instant) -> Result<u64, WriteError> {
        let b = self.next_bracket(now, Vec::new())?;
        let open = LinkMessage::Open {
            epoch: b.epoch,
            bracket: b.id,
            full: false,
        };
        let id = b.id;
        self.tx = Some((b, 0));
        self.stream(&open);
        Ok(id)
    }

    /// One change of the open bracket, sent now (claim 13). A change that
    /// would make the bracket larger than the limit drops the bracket
    /// (its slaves discard it at their close deadline or the next OPEN).
    pub fn change(&mut self, now: Instant, change: Change) -> Result<(), WriteError> {
        if let Err(e) = self.check_write(now) {
            self.tx = None;
            return Err(e);
        }
        let Some((b, size)) = self.tx.as_mut() else {
            return Err(WriteError::NoBracket);
        };
        let new = *size + change.size();
        if new > self.cfg.max_bracket_bytes {
            self.tx = None;
            return Err(WriteError::TooLarge {
                size: new,
                limit: self.cfg.max_bracket_bytes,
            });
        }
        *size = new;
        let m = change.to_message(b.id);
        b.changes.push(change);
        self.stream(&m);
        Ok(())
    }

    /// Close the open bracket whose changes this node has already applied
    /// (the manager ran the request): CLOSE goes out, the mark is kept.
    pub fn close(&mut self, now: Instant) -> Result<Commit, WriteError> {
        if let Err(e) = self.check_write(now) {
            self.tx = None;
            return Err(e);
        }
        let Some((b, _)) = self.tx.as_ref() else {
            return Err(WriteError::NoBracket);
        };
        if let Err(e) = self.replica.set_mark(b.mark()) {
            self.tx = None;
            return Err(WriteError::Apply(e.to_string()));
        }
        self.finish(now)
    }

    /// A whole request at once: apply `changes` to this node's replica
    /// (all or nothing), then stream them as one bracket.
    pub fn write(&mut self, now: Instant, changes: Vec<Change>) -> Result<Commit, WriteError> {
        let b = self.next_bracket(now, changes)?;
        let size = b.size();
        if size > self.cfg.max_bracket_bytes {
            return Err(WriteError::TooLarge {
                size,
                limit: self.cfg.max_bracket_bytes,
            });
        }
        self.replica
            .apply(&b)
            .map_err(|e| WriteError::Apply(e.to_string()))?;
        for m in b.messages().iter().take(b.changes.len() + 1) {
            self.stream(m);
        }
        self.tx = Some((b, size));
        self.finish(now)
    }

    /// CLOSE the open bracket and account for it.
    fn finish(&mut self, now: Instant) -> Result<Commit, WriteError> {
        let Some((b, size)) = self.tx.take() else {
            return Err(WriteError::NoBracket);
        };
        self.stream(&LinkMessage::Close {
            epoch: b.epoch,
            bracket: b.id,
            changes: b.changes.len() as u32,
            digest: b.digest(),
        });
        self.last_closed = b.id;
        let id = b.id;
        self.queue.push_back(Sent {
            bracket: b,
            size,
            closed: now,
        });
        self.queue_bytes += size;
        self.bound_queue();
        // Slaves waiting for a snapshot get it now, at a bracket boundary.
        let waiting: Vec<u32> = self
            .peers
            .iter()
            .filter(|(_, p)| p.stream == Stream::NeedsFull)
            .map(|(id, _)| *id)
            .collect();
        for p in waiting {
            self.send_full(p);
        }
        let durable = match self.cfg.mode {
            Mode::Async => true,
            Mode::Sync => {
                self.pending.insert(id, now + self.cfg.sync_deadline);
                self.settle();
                !self.pending.contains_key(&id)
            }
        };
        Ok(Commit {
            epoch: self.epoch,
            bracket: id,
            durable,
        })
    }

    /// Send a bracket message to every streaming slave.
    fn stream(&mut self, m: &LinkMessage) {
        let to: Vec<u32> = self
            .peers
            .iter()
            .filter(|(_, p)| p.stream == Stream::Streaming)
            .map(|(id, _)| *id)
            .collect();
        for p in to {
            self.send(p, m);
        }
    }

    /// Keep the resend queue within its bound; a slave that still needs a
    /// dropped bracket gets a full snapshot instead.
    fn bound_queue(&mut self) {
        while self.queue_bytes > self.cfg.max_unacked_bytes {
            let Some(s) = self.queue.pop_front() else {
                break;
            };
            self.queue_bytes -= s.size;
            for p in self.peers.values_mut() {
                if p.acked < s.bracket.id && p.stream == Stream::Streaming {
                    p.stream = Stream::NeedsFull;
                }
            }
        }
    }

    /// Whether bracket `id` of this master's epoch is durable on every
    /// in-sync slave.
    pub fn is_durable(&self, id: u64) -> bool {
        id <= self.durable_upto()
    }

    fn durable_upto(&self) -> u64 {
        self.required
            .iter()
            .map(|p| self.peers.get(p).map_or(0, |p| p.acked))
            .min()
            .unwrap_or(self.last_closed)
    }

    /// Report the sync writes that became durable; drop acked brackets.
    pub(super) fn settle(&mut self) {
        let upto = self.durable_upto();
        let done: Vec<u64> = self.pending.range(..=upto).map(|(id, _)| *id).collect();
        for id in done {
            self.pending.remove(&id);
            self.event(Event::Durable {
                epoch: self.epoch,
                bracket: id,
            });
        }
        let all = self
            .peers
            .values()
            .map(|p| p.acked)
            .min()
            .unwrap_or(u64::MAX);
        while self.queue.front().is_some_and(|s| s.bracket.id <= all) {
            if let Some(s) = self.queue.pop_front() {
                self.queue_bytes -= s.size;
            }
        }
    }

    /// What is not acknowledged by every slave yet.
    pub fn lag(&self, now: Instant) -> Lag {
        if self.role != Role::Master {
            return Lag::default();
        }
        let all = self
            .peers
            .values()
            .map(|p| p.acked)
            .min()
            .unwrap_or(u64::MAX);
        let behind: Vec<&Sent> = self.queue.iter().filter(|s| s.bracket.id > all).collect();
        Lag {
            brackets: behind.len() as u64,
            bytes: behind.iter().map(|s| s.size as u64).sum(),
            oldest: behind.first().map_or_else(Default::default, |s| {
                now.saturating_duration_since(s.closed)
            }),
        }
    }

    pub(super) fn on_ack(&mut self, _now: Instant, peer: u32, epoch: u64, bracket: u64) {
        if self.role != Role::Master || epoch != self.epoch || bracket > self.last_closed {
            return;
        }
        let mut behind = None;
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.stream == Stream::Streaming {
                p.acked = p.acked.max(bracket);
                behind = Some(self.last_closed.saturating_sub(p.acked));
            }
        }
        self.settle();
        // A streaming slave out of the in-sync set, close behind: from now
        // on no bracket is durable without it. Under a steady load a slave
        // left out is always a bracket or two behind (the master does not
        // wait for it), so waiting until it has caught up with every closed
        // bracket would keep it out for ever; once required, it catches up,
        // and the tick after it has acknowledged the last bracket closed
        // without it tells the arbiter.
        if behind.is_some_and(|b| b <= REJOIN_BEHIND) && !self.required.contains(&peer) {
            self.required.insert(peer);
            self.rejoining.insert(peer, self.last_closed);
        }
    }

    /// A slave said HELLO with its mark: resend what it lacks, or a full
    /// snapshot when its history is not ours or the queue no longer holds
    /// what it lacks.
    pub(super) fn sync_slave(&mut self, _now: Instant, peer: u32, mark: Mark) {
        let ours = mark.epoch == self.epoch || mark == self.base;
        let first = self
            .queue
            .front()
            .map_or(self.last_closed + 1, |s| s.bracket.id);
        let covered = mark.bracket <= self.last_closed && mark.bracket + 1 >= first;
        if ours && covered {
            if mark.epoch != self.epoch {
                // Continued from our base: our HELLO (with the base) goes
                // first, the slave checks it.
                self.hello(peer);
            }
            let resend: Vec<LinkMessage> = self
                .queue
                .iter()
                .filter(|s| s.bracket.id > mark.bracket)
                .flat_map(|s| s.bracket.messages())
                .collect();
            tracing::debug!(
                node = self.cfg.node,
                peer,
                from = mark.bracket,
                n = resend.len(),
                "resend"
            );
            for m in &resend {
                self.send(peer, m);
            }
            if let Some(p) = self.peers.get_mut(&peer) {
                p.stream = Stream::Streaming;
                p.acked = mark.bracket;
            }
            // The bracket being built now reaches it too.
            if let Some((b, _)) = &self.tx {
                let msgs = b.messages();
                let n = msgs.len() - 1;
                for m in msgs.into_iter().take(n) {
                    self.send(peer, &m);
                }
            }
            self.settle();
        } else if self.tx.is_some() {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.stream = Stream::NeedsFull;
                p.acked = 0;
            }
        } else {
            self.send_full(peer);
        }
    }

    /// Every slave gets a full snapshot (at the next bracket boundary):
    /// after a change applied here that could not be streamed.
    pub fn resync_all(&mut self) {
        self.tx = None;
        let ids: Vec<u32> = self.peers.keys().copied().collect();
        for p in ids {
            if let Some(peer) = self.peers.get_mut(&p) {
                if peer.stream == Stream::Streaming {
                    peer.stream = Stream::NeedsFull;
                    peer.acked = 0;
                }
            }
            if self.role == Role::Master
                && self
                    .peers
                    .get(&p)
                    .is_some_and(|x| x.stream == Stream::NeedsFull)
            {
                self.send_full(p);
            }
        }
    }

    /// A full snapshot bracket to `peer` (its id: the last closed one).
    pub(super) fn send_full(&mut self, peer: u32) {
        let changes = match self.replica.snapshot() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(node = self.cfg.node, "snapshot failed: {e}");
                return;
            }
        };
        let b = Bracket {
            epoch: self.epoch,
            id: self.last_closed,
            full: true,
            changes,
        };
        let bytes = b.size();
        if bytes > self.cfg.max_full_bytes {
            tracing::error!(
                node = self.cfg.node,
                bytes,
                limit = self.cfg.max_full_bytes,
                "state too large for a full snapshot"
            );
            return;
        }
        for m in &b.messages() {
            self.send(peer, m);
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.stream = Stream::Streaming;
            p.acked = 0;
        }
        self.event(Event::FullSent {
            peer,
            mark: b.mark(),
            digest: b.digest(),
            bytes,
        });
    }

    /// Stop being master: writes in flight fail.
    pub(super) fn step_down(&mut self, _now: Instant, why: &str) {
        self.tx = None;
        self.lease = None;
        self.draining = None;
        let pending: Vec<u64> = std::mem::take(&mut self.pending).into_keys().collect();
        for bracket in pending {
            let epoch = self.epoch;
            self.event(Event::Abandoned { epoch, bracket });
        }
        self.queue.clear();
        self.queue_bytes = 0;
        for p in self.peers.values_mut() {
            p.stream = Stream::NeedsHello;
            p.acked = 0;
        }
        self.role = Role::Standby;
        self.event(Event::SteppedDown {
            epoch: self.epoch,
            why: why.to_string(),
        });
    }

    /// Manual switchover (claim 44), hitless: stop taking writes, wait
    /// until `to` has acknowledged every bracket, then hand it the role
    /// (the arbiter's lease is released for it; it takes a newer epoch).
    pub fn switchover(&mut self, now: Instant, to: u32) -> Result<(), RoleError> {
        if self.role != Role::Master {
            return Err(RoleError::NotMaster);
        }
        let p = self.peers.get(&to).ok_or(RoleError::UnknownPeer(to))?;
        if p.schema < 3 {
            return Err(RoleError::PeerTooOld {
                peer: to,
                schema: p.schema,
            });
        }
        if p.stream != Stream::Streaming {
            return Err(RoleError::NotStreaming(to));
        }
        if self.tx.is_some() {
            return Err(RoleError::BracketOpen);
        }
        self.draining = Some((to, now + self.cfg.switchover_deadline));
        tracing::info!(node = self.cfg.node, to, "switchover: draining");
        Ok(())
    }

    /// Finish or give up a draining switchover (from `tick`).
    pub(super) fn drain(&mut self, now: Instant, arbiter: &mut dyn Arbiter) {
        let Some((to, deadline)) = self.draining else {
            return;
        };
        let acked = self.peers.get(&to).map_or(0, |p| p.acked);
        if acked >= self.last_closed {
            let epoch = self.epoch;
            let bracket = self.last_closed;
            if let Err(e) = arbiter.release(self.cfg.node, epoch, now) {
                tracing::warn!(node = self.cfg.node, "switchover: release: {e}");
            }
            self.send(to, &LinkMessage::Handover { epoch, bracket });
            self.step_down(now, &format!("switchover to node {to}"));
            self.role = Role::Slave;
            self.master = Some(to);
            self.heard_master(now);
            self.event(Event::Switchover {
                to,
                done: true,
                why: format!("node {to} had every bracket up to {bracket}"),
            });
        } else if now >= deadline {
            self.draining = None;
            self.event(Event::Switchover {
                to,
                done: false,
                why: format!(
                    "node {to} acknowledged {acked} of {} before the deadline",
                    self.last_closed
                ),
            });
        }
    }
}
