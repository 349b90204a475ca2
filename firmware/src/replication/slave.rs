//! The slave's side: an OPEN starts buffering (claim 15), the CLOSE
//! applies the group atomically into the replica and acknowledges it once
//! durable (claims 17, 43); a bracket whose close does not come in time,
//! or whose master fails, is discarded (claims 16, 31, 42). Apply is
//! idempotent by bracket id: a resent bracket is acknowledged again, not
//! applied twice.

use super::journal::{Bracket, Change};
use super::node::{Event, Node, Rx};
use super::replica::Replica;
use hitless_proto::link::{LinkMessage, RefuseCode, Role};
use std::time::Instant;

impl<R: Replica> Node<R> {
    fn refuse(&mut self, peer: u32, code: RefuseCode, reason: String) {
        let m = LinkMessage::Refuse {
            epoch: self.epoch,
            code,
            reason,
        };
        self.send(peer, &m);
    }

    /// Ask the master (by our HELLO, which carries our mark) to resend
    /// what we lack; at most once per heartbeat interval, so a lossy link
    /// does not make a storm of resends.
    pub(super) fn ask_resync(&mut self, now: Instant, peer: u32) {
        if self
            .asked
            .is_some_and(|t| now.saturating_duration_since(t) < self.cfg.heartbeat)
        {
            return;
        }
        self.asked = Some(now);
        self.hello(peer);
    }

    /// Throw the open bracket away.
    pub(super) fn discard(&mut self, why: &str) {
        if let Some(rx) = self.rx.take() {
            tracing::info!(
                node = self.cfg.node,
                bracket = rx.bracket.id,
                why,
                "bracket discarded"
            );
            self.event(Event::Discarded {
                bracket: rx.bracket.id,
                why: why.to_string(),
            });
        }
    }

    pub(super) fn on_open(&mut self, now: Instant, peer: u32, epoch: u64, id: u64, full: bool) {
        if epoch < self.epoch {
            self.refuse_stale(peer, epoch);
            return;
        }
        if epoch > self.epoch || self.master != Some(peer) {
            if self.role == Role::Master && epoch == self.epoch {
                // Two masters in one epoch cannot happen with an arbiter;
                // refuse rather than follow.
                self.refuse(
                    peer,
                    RefuseCode::Protocol,
                    format!("node {} is master of epoch {epoch}", self.cfg.node),
                );
                return;
            }
            self.adopt(
                now,
                epoch,
                Some(peer),
                &format!("node {peer} opened a bracket in epoch {epoch}"),
            );
        }
        if self.rx.is_some() {
            self.discard("a new bracket opened before the close");
        }
        let mark = self.replica.mark();
        // A state that is not whole brackets takes nothing but a snapshot.
        let whole = self.replica.consistent();
        let duplicate = whole && !full && epoch == mark.epoch && id <= mark.bracket;
        let next = whole && !full && epoch == mark.epoch && id == mark.bracket + 1;
        // The first bracket of a new master continues the history it took
        // over from, which the slave shares only if it says so in its
        // HELLO: the master then streams on from there.
        // (only from exactly the mark the master took over from, as its
        // HELLO said: the same history)
        let continues = whole
            && !full
            && epoch != mark.epoch
            && id == mark.bracket + 1
            && self.master_base == Some((peer, epoch, mark));
        if !(full || duplicate || next || continues) {
            self.refuse(
                peer,
                RefuseCode::Protocol,
                format!(
                    "bracket {id} of epoch {epoch} does not follow {}@{}",
                    mark.bracket, mark.epoch
                ),
            );
            // Our mark, so the master resends what we lack.
            self.ask_resync(now, peer);
            return;
        }
        self.rx = Some(Rx {
            from: peer,
            bracket: Bracket {
                epoch,
                id,
                full,
                changes: Vec::new(),
            },
            size: 0,
            deadline: now + self.cfg.close_deadline,
            duplicate,
        });
    }

    pub(super) fn on_change(&mut self, _now: Instant, peer: u32, m: LinkMessage) {
        let Some((id, change)) = Change::from_message(m) else {
            return;
        };
        let Some(rx) = self.rx.as_mut() else {
            tracing::debug!(
                node = self.cfg.node,
                peer,
                id,
                "a change outside a bracket: ignored"
            );
            return;
        };
        if rx.from != peer || rx.bracket.id != id {
            tracing::debug!(
                node = self.cfg.node,
                peer,
                id,
                "a change of another bracket: ignored"
            );
            return;
        }
        let limit = if rx.bracket.full {
            self.cfg.max_full_bytes
        } else {
            self.cfg.max_bracket_bytes
        };
        let size = rx.size + change.size();
        if size > limit {
            self.discard(&format!("the bracket is over the {limit}-byte limit"));
            self.refuse(
                peer,
                RefuseCode::Protocol,
                format!("bracket {id} over the {limit}-byte limit"),
            );
            return;
        }
        rx.size = size;
        // A duplicate's changes are counted (the close checks the count)
        // but never applied.
        rx.bracket.changes.push(change);
    }

    pub(super) fn on_close(
        &mut self,
        now: Instant,
        peer: u32,
        epoch: u64,
        id: u64,
        changes: u32,
        digest: u32,
    ) {
        let matches = self
            .rx
            .as_ref()
            .is_some_and(|rx| rx.from == peer && rx.bracket.epoch == epoch && rx.bracket.id == id);
        if !matches {
            // A close for a bracket already applied (resent): ack again.
            let mark = self.replica.mark();
            if epoch == mark.epoch && id <= mark.bracket && self.replica.consistent() {
                self.send(
                    peer,
                    &LinkMessage::Ack {
                        epoch,
                        bracket: mark.bracket,
                    },
                );
            }
            return;
        }
        let Some(rx) = self.rx.take() else {
            return;
        };
        let got = rx.bracket.digest();
        if digest != 0 && digest != got && rx.bracket.changes.len() == changes as usize {
            self.event(Event::Discarded {
                bracket: id,
                why: format!("digest {got:#010x}, the close says {digest:#010x}"),
            });
            self.refuse(
                peer,
                RefuseCode::Protocol,
                format!("bracket {id}: changes mixed up"),
            );
            self.ask_resync(now, peer);
            return;
        }
        if rx.bracket.changes.len() != changes as usize {
            self.event(Event::Discarded {
                bracket: id,
                why: format!(
                    "{} changes arrived, the close says {changes}",
                    rx.bracket.changes.len()
                ),
            });
            self.refuse(
                peer,
                RefuseCode::Protocol,
                format!("bracket {id}: changes lost"),
            );
            self.ask_resync(now, peer);
            return;
        }
        if rx.duplicate {
            let mark = self.replica.mark();
            self.send(
                peer,
                &LinkMessage::Ack {
                    epoch,
                    bracket: mark.bracket,
                },
            );
            return;
        }
        match self.replica.apply(&rx.bracket) {
            Ok(()) => {
                let mark = rx.bracket.mark();
                self.event(Event::Applied {
                    mark,
                    full: rx.bracket.full,
                    digest: rx.bracket.digest(),
                });
                self.send(peer, &LinkMessage::Ack { epoch, bracket: id });
            }
            Err(e) => {
                let why = e.to_string();
                tracing::warn!(node = self.cfg.node, bracket = id, "apply failed: {why}");
                self.event(Event::ApplyFailed {
                    bracket: id,
                    why: why.clone(),
                });
                self.refuse(peer, RefuseCode::Apply, why);
                self.ask_resync(now, peer);
            }
        }
    }

    /// The master hands over (switchover): take the role at the next tick,
    /// once the arbiter grants it.
    pub(super) fn on_handover(&mut self, _now: Instant, peer: u32, epoch: u64, bracket: u64) {
        let mark = self.replica.mark();
        if epoch == self.epoch
            && self.master == Some(peer)
            && mark.bracket >= bracket
            && self.rx.is_none()
        {
            self.handover_from = Some(peer);
        } else {
            self.refuse(
                peer,
                RefuseCode::Protocol,
                format!(
                    "handover at {bracket}@{epoch}, this node is at {}@{}",
                    mark.bracket, mark.epoch
                ),
            );
        }
    }
}
