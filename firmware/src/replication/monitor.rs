//! Monitoring (claim 1 b(i)): heartbeats at the configured interval both
//! ways; a master heard from by nothing for the silence period (missed
//! heartbeats: a dead, hung or unreachable master all look the same) is
//! taken for failed; the slave discards its open bracket (claim 16) and,
//! with the arbiter's grant, takes over from its last closed bracket. The
//! master renews its lease at every heartbeat and steps down when it
//! cannot; it drops a silent slave from the in-sync set (through the
//! arbiter) and takes a caught-up one back.

use super::arbiter::{Arbiter, ArbiterError, Lease};
use super::node::{Event, Node, Stream};
use super::replica::{Inconsistency, Replica};
use hitless_proto::link::{LinkMessage, Role};
use std::collections::BTreeSet;
use std::time::Instant;

impl<R: Replica> Node<R> {
    /// Let time pass: heartbeats, deadlines, silence, lease, takeover.
    /// Call it at least every heartbeat interval.
    pub fn tick(&mut self, now: Instant, arbiter: &mut dyn Arbiter) {
        let due = self
            .last_heartbeat
            .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.heartbeat);
        if due {
            self.last_heartbeat = Some(now);
            self.heartbeat(now);
        }
        match self.role {
            Role::Master => self.tick_master(now, arbiter, due),
            _ => self.tick_slave(now, arbiter),
        }
    }

    fn heartbeat(&mut self, now: Instant) {
        let mark = self.replica.mark();
        let bracket = if self.role == Role::Master {
            self.last_closed
        } else if mark.epoch == self.epoch && self.replica.consistent() {
            // A slave's heartbeat acknowledges what it applied in this
            // epoch; a bracket of an older epoch is no ack of this one.
            mark.bracket
        } else {
            0
        };
        let m = LinkMessage::Heartbeat {
            epoch: self.epoch,
            bracket,
            time_us: now.saturating_duration_since(self.start).as_micros() as u64,
            lag: self.lag(now).brackets,
            role: Some(self.role),
        };
        for p in self.cfg.peers.clone() {
            self.send(p, &m);
        }
    }

    fn tick_master(&mut self, now: Instant, arbiter: &mut dyn Arbiter, due: bool) {
        if due {
            if let Some(epoch) = self.lease.as_ref().map(|l| l.epoch) {
                match arbiter.renew(self.cfg.node, epoch, now) {
                    Ok(l) => self.lease = Some(l),
                    Err(ArbiterError::Unreachable) => {}
                    Err(e) => {
                        let why = format!("the arbiter refused to renew: {e}");
                        self.step_down(now, &why);
                        self.hello_all();
                        return;
                    }
                }
            }
        }
        if self.lease.as_ref().is_some_and(|l| !l.valid(now)) {
            self.step_down(now, "the lease ran out");
            self.hello_all();
            return;
        }
        // Sync writes past their deadline fail.
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, d)| now >= **d)
            .map(|(id, _)| *id)
            .collect();
        for bracket in late {
            self.pending.remove(&bracket);
            let epoch = self.epoch;
            self.event(Event::SyncTimeout { epoch, bracket });
        }
        self.maintain_in_sync(now, arbiter);
        self.drain(now, arbiter);
    }

    /// Drop silent slaves from the in-sync set (the arbiter first, so it
    /// never grants them a takeover they could not serve), take caught-up
    /// ones back (locally first, so no write is acknowledged without them
    /// while the arbiter already counts them).
    fn maintain_in_sync(&mut self, now: Instant, arbiter: &mut dyn Arbiter) {
        let silence = self.cfg.silence();
        let is_silent = |p: &u32| {
            self.peers.get(p).is_none_or(|p| {
                p.heard
                    .is_none_or(|h| now.saturating_duration_since(h) >= silence)
            })
        };
        // A rejoining slave fallen silent leaves at once: the arbiter
        // does not count it yet.
        let gone: Vec<u32> = self.rejoining.keys().copied().filter(is_silent).collect();
        for p in gone {
            self.rejoining.remove(&p);
            self.required.remove(&p);
        }
        let silent: Vec<u32> = self.required.iter().copied().filter(is_silent).collect();
        if !silent.is_empty() {
            let keep: BTreeSet<u32> = self
                .required
                .iter()
                .copied()
                .filter(|p| !silent.contains(p))
                .collect();
            match arbiter.set_in_sync(self.cfg.node, self.epoch, &keep, now) {
                Ok(()) => {
                    tracing::warn!(node = self.cfg.node, ?silent, "slaves left the in-sync set");
                    self.required = keep;
                    self.event(Event::InSync {
                        slaves: self.required.clone(),
                    });
                    self.settle();
                }
                Err(e) => tracing::debug!(node = self.cfg.node, "in-sync set unchanged: {e}"),
            }
        }
        let mut back: Vec<u32> = self
            .peers
            .iter()
            .filter(|(id, p)| {
                !self.required.contains(id)
                    && p.stream == Stream::Streaming
                    && p.acked >= self.last_closed
                    && p.heard
                        .is_some_and(|h| now.saturating_duration_since(h) < silence)
            })
            .map(|(id, _)| *id)
            .collect();
        let caught_up: Vec<u32> = self
            .rejoining
            .iter()
            .filter(|(id, upto)| self.peers.get(id).is_some_and(|p| p.acked >= **upto))
            .map(|(id, _)| *id)
            .collect();
        back.extend(caught_up.iter().copied());
        if !back.is_empty() {
            let mut all = self.required.clone();
            all.extend(back.iter().copied());
            let mut before = std::mem::replace(&mut self.required, all.clone());
            for id in &caught_up {
                self.rejoining.remove(id);
            }
            match arbiter.set_in_sync(self.cfg.node, self.epoch, &all, now) {
                Ok(()) => self.event(Event::InSync { slaves: all }),
                // Not counted by the arbiter: keep requiring their acks
                // anyway would block writes for nothing; go back.
                Err(_) => {
                    before.retain(|p| !caught_up.contains(p));
                    self.required = before;
                }
            }
        }
    }

    fn tick_slave(&mut self, now: Instant, arbiter: &mut dyn Arbiter) {
        if self.rx.as_ref().is_some_and(|rx| now >= rx.deadline) {
            self.discard("the close did not come within the deadline");
        }
        if let Some(from) = self.handover_from.take() {
            let cause = None;
            match arbiter.acquire(self.cfg.node, now) {
                Ok(lease) => self.take_over(now, lease, Some(from), cause),
                Err(ArbiterError::Absent) => {
                    let lease = self.manual_lease();
                    self.take_over(now, lease, Some(from), cause);
                }
                Err(e) => self.event(Event::TakeoverRefused {
                    why: format!("handover from node {from}: {e}"),
                }),
            }
            return;
        }
        let silent = now.saturating_duration_since(self.silent_since);
        if silent < self.cfg.silence() {
            return;
        }
        if self.rx.is_some() {
            self.discard("the master fell silent before the close");
        }
        if !self.silence_reported {
            self.silence_reported = true;
            self.event(Event::MasterSilent {
                master: self.master,
                since: silent,
            });
            if !self.replica.consistent() {
                self.event(Event::TakeoverRefused {
                    why: "this node's state is not whole brackets (a cut while applying one)"
                        .into(),
                });
            }
        }
        if !self.replica.consistent() {
            return;
        }
        match arbiter.acquire(self.cfg.node, now) {
            Ok(lease) => {
                let mark = self.replica.mark();
                let cause = format!(
                    "node {} took over in epoch {} after {} ms without a heartbeat from {}; \
                     last closed bracket {}@{}",
                    self.cfg.node,
                    lease.epoch,
                    silent.as_millis(),
                    self.master
                        .map_or("any master".to_string(), |m| format!("master {m}")),
                    mark.bracket,
                    mark.epoch
                );
                let old = self.master;
                self.take_over(now, lease, old, Some(cause));
            }
            Err(ArbiterError::Absent) => {}
            Err(e) => {
                tracing::debug!(node = self.cfg.node, "takeover refused: {e}");
            }
        }
    }

    /// Become master at the lease's epoch, from the last closed bracket.
    fn take_over(&mut self, now: Instant, lease: Lease, old: Option<u32>, cause: Option<String>) {
        if self.rx.is_some() {
            self.discard("taking over: an unclosed bracket is never applied");
        }
        let mark = self.replica.mark();
        self.epoch = self.epoch.max(lease.epoch);
        self.role = Role::Master;
        self.master = None;
        // Sync writes need the acks of the slaves the arbiter counts in
        // sync (all of them without an arbiter), never of fewer.
        self.rejoining.clear();
        self.required = if lease.until.is_none() {
            self.cfg.peers.iter().copied().collect()
        } else {
            lease
                .in_sync
                .iter()
                .copied()
                .filter(|p| *p != self.cfg.node && self.peers.contains_key(p))
                .collect()
        };
        self.lease = Some(Lease {
            epoch: self.epoch,
            until: lease.until,
            in_sync: lease.in_sync,
        });
        self.last_closed = mark.bracket;
        self.base = mark;
        self.queue.clear();
        self.queue_bytes = 0;
        self.pending.clear();
        for p in self.peers.values_mut() {
            p.stream = Stream::NeedsHello;
            p.acked = 0;
            // A slave that is alive says so within the silence period;
            // until then it counts as heard now.
            p.heard = Some(now);
        }
        if let Some(old) = old {
            if let Some(p) = self.peers.get_mut(&old) {
                p.heard = None;
            }
        }
        self.cause = cause.clone().map(|c| (old, c));
        tracing::warn!(
            node = self.cfg.node,
            epoch = self.epoch,
            ?cause,
            "became master"
        );
        self.event(Event::BecameMaster {
            epoch: self.epoch,
            cause,
        });
        self.hello_all();
    }

    /// The operator's grant when there is no arbiter: the next epoch.
    fn manual_lease(&self) -> Lease {
        Lease {
            epoch: self.epoch + 1,
            until: None,
            in_sync: self.cfg.peers.iter().copied().collect(),
        }
    }

    /// Start the pair: this node asks the arbiter for the first epoch.
    pub fn bootstrap(
        &mut self,
        now: Instant,
        arbiter: &mut dyn Arbiter,
    ) -> Result<u64, ArbiterError> {
        if !self.replica.consistent() {
            return Err(ArbiterError::NotInSync(self.cfg.node));
        }
        let lease = match arbiter.acquire(self.cfg.node, now) {
            Ok(l) => l,
            Err(ArbiterError::Absent) => self.manual_lease(),
            Err(e) => return Err(e),
        };
        self.take_over(now, lease, None, None);
        Ok(self.epoch)
    }

    /// The operator's promotion (`hitless peer promote`): this card
    /// becomes master in a new epoch, which fences the old master (it
    /// steps down when it hears it). Without an arbiter the operator
    /// asserts the old master is dead (the only way a pair without one
    /// gets a master); with one the arbiter still decides (refused while
    /// another master holds the lease, or this card is not in sync).
    ///
    /// Refused where it could serve a state that is not whole brackets: a
    /// bracket cut while being applied (mixed brackets) is never
    /// promotable; a power cycle that lost warm sets is promotable only
    /// with `accept_lost_warm` (the cold tier is whole to the mark), which
    /// the answer reports with what was lost.
    pub fn promote(
        &mut self,
        now: Instant,
        arbiter: &mut dyn Arbiter,
        accept_lost_warm: bool,
    ) -> Result<Promoted, PromoteError> {
        let from_epoch = self.epoch;
        if self.role == Role::Master {
            return Ok(Promoted {
                epoch: self.epoch,
                from_epoch,
                already: true,
                lost_warm: None,
            });
        }
        let lost = match self.replica.inconsistency() {
            None => None,
            Some(i @ Inconsistency::MixedBrackets) => return Err(PromoteError::MixedBrackets(i)),
            Some(i @ Inconsistency::LostWarm { .. }) if !accept_lost_warm => {
                return Err(PromoteError::LostWarm(i))
            }
            Some(i) => Some(i),
        };
        let lease = match arbiter.acquire(self.cfg.node, now) {
            Ok(l) => l,
            Err(ArbiterError::Absent) => self.manual_lease(),
            Err(e) => return Err(PromoteError::Arbiter(e)),
        };
        // Only once granted: a card refused the role must stay unable to
        // take over (another master may hold warm sets it lost).
        if lost.is_some() {
            if let Err(e) = self.replica.accept_lost_warm() {
                let _ = arbiter.release(self.cfg.node, lease.epoch, now);
                return Err(PromoteError::Accept(e.to_string()));
            }
        }
        let old = self.master;
        let cause = match lost {
            Some(i) => format!(
                "promoted by the operator in epoch {}, accepting the loss: {i}",
                lease.epoch
            ),
            None => format!("promoted by the operator in epoch {}", lease.epoch),
        };
        self.take_over(now, lease, old, Some(cause));
        Ok(Promoted {
            epoch: self.epoch,
            from_epoch,
            already: false,
            lost_warm: lost,
        })
    }
}

/// A promotion done ([`Node::promote`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promoted {
    /// The epoch this card is master in.
    pub epoch: u64,
    /// The newest epoch it knew before.
    pub from_epoch: u64,
    /// It was master already (nothing changed).
    pub already: bool,
    /// What the operator accepted to lose (`--accept-lost-warm`).
    pub lost_warm: Option<Inconsistency>,
}

/// Why the operator's promotion was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PromoteError {
    #[error("not promotable: {0}")]
    MixedBrackets(Inconsistency),
    #[error("not promoted: {0}; promote with --accept-lost-warm to serve it without them")]
    LostWarm(Inconsistency),
    #[error("the arbiter refused: {0}")]
    Arbiter(ArbiterError),
    #[error("the lost warm tier could not be accepted: {0}")]
    Accept(String),
}
