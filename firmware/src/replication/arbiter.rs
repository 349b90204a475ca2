//! The arbiter: who may be master, for which epoch, until when.
//!
//! Two cards cannot tell a dead peer from a cut link. The decision rule:
//! - a slave becomes master only with a grant from the arbiter; a grant
//!   is a new epoch (a fencing token, monotonic) and a lease;
//! - the arbiter grants a new epoch only when the holder's lease has run
//!   out (plus a skew margin), and only to a node in the in-sync set;
//! - a master accepts writes only while its lease runs (by its own
//!   clock), renews it at every heartbeat, and steps down when it cannot;
//! - a master removes a silent slave from the in-sync set at the arbiter
//!   before it acknowledges any write without that slave's ack, and puts
//!   it back only after the slave has acknowledged everything.
//!
//! So a cut link yields at most one master that can acknowledge a write,
//! and the node that takes over holds every acknowledged bracket. Without
//! an arbiter ([`NoArbiter`]) a slave never promotes itself: a silent
//! master is reported and the operator decides (manual promotion or
//! switchover), and in synchronous mode the master never drops its slave
//! (a write waits for the slave's ack or fails at its deadline).
//!
//! [`LocalArbiter`] is the in-process implementation the tests use (and a
//! witness process can wrap); an etcd lease is the other planned one.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A grant: master at `epoch` until `until` (`None`: no expiry, the
/// no-arbiter case), with the in-sync set as the arbiter has it (a new
/// master starts from it: it must never count as in sync a node the
/// previous master dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub epoch: u64,
    pub until: Option<Instant>,
    pub in_sync: BTreeSet<u32>,
}

impl Lease {
    /// Whether the lease still runs at `now`.
    pub fn valid(&self, now: Instant) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

/// Why the arbiter said no.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArbiterError {
    /// There is no arbiter: no automatic takeover, no degraded sync.
    #[error("no arbiter: the operator decides")]
    Absent,
    #[error("node {holder} holds epoch {epoch} for {left:?} more")]
    Held {
        holder: u32,
        epoch: u64,
        left: Duration,
    },
    #[error("node {0} is not in the in-sync set")]
    NotInSync(u32),
    #[error("node {node} does not hold epoch {epoch} (node {holder:?} holds {current})")]
    NotHolder {
        node: u32,
        epoch: u64,
        holder: Option<u32>,
        current: u64,
    },
    /// The arbiter could not be reached within its deadline.
    #[error("the arbiter is unreachable")]
    Unreachable,
}

/// Grants leadership for an epoch with a lease.
pub trait Arbiter {
    /// A new epoch and lease for `node`, if the current lease has run out
    /// (or `node` holds it) and `node` is in sync.
    fn acquire(&mut self, node: u32, now: Instant) -> Result<Lease, ArbiterError>;
    /// Extend the lease of the holder of `epoch`.
    fn renew(&mut self, node: u32, epoch: u64, now: Instant) -> Result<Lease, ArbiterError>;
    /// Give the lease up (a switchover: the target acquires at once).
    fn release(&mut self, node: u32, epoch: u64, now: Instant) -> Result<(), ArbiterError>;
    /// The holder of `epoch` sets the nodes that hold every acknowledged
    /// write (besides itself).
    fn set_in_sync(
        &mut self,
        node: u32,
        epoch: u64,
        slaves: &BTreeSet<u32>,
        now: Instant,
    ) -> Result<(), ArbiterError>;
}

/// No arbiter: nothing is granted automatically.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoArbiter;

impl Arbiter for NoArbiter {
    fn acquire(&mut self, _: u32, _: Instant) -> Result<Lease, ArbiterError> {
        Err(ArbiterError::Absent)
    }
    fn renew(&mut self, _: u32, epoch: u64, _: Instant) -> Result<Lease, ArbiterError> {
        Ok(Lease {
            epoch,
            until: None,
            in_sync: BTreeSet::new(),
        })
    }
    fn release(&mut self, _: u32, _: u64, _: Instant) -> Result<(), ArbiterError> {
        Ok(())
    }
    fn set_in_sync(
        &mut self,
        _: u32,
        _: u64,
        _: &BTreeSet<u32>,
        _: Instant,
    ) -> Result<(), ArbiterError> {
        Err(ArbiterError::Absent)
    }
}

/// The in-process arbiter (one per pair; the tests share it between the
/// nodes and cut nodes off it).
#[derive(Clone, Debug)]
pub struct LocalArbiter {
    lease: Duration,
    /// Margin for clock skew between a master and the arbiter.
    skew: Duration,
    epoch: u64,
    holder: Option<u32>,
    until: Option<Instant>,
    in_sync: BTreeSet<u32>,
    /// Grants made: (epoch, node).
    pub grants: Vec<(u64, u32)>,
}

impl LocalArbiter {
    /// An arbiter for `members` (all in sync at first: they start empty),
    /// granting leases of `lease`.
    pub fn new(members: impl IntoIterator<Item = u32>, lease: Duration, skew: Duration) -> Self {
        Self {
            lease,
            skew,
            epoch: 0,
            holder: None,
            until: None,
            in_sync: members.into_iter().collect(),
            grants: Vec::new(),
        }
    }

    /// An arbiter resuming from a saved epoch and in-sync set (a witness
    /// restarted): no holder, the next grant is `epoch + 1`. Its caller
    /// must not grant before a whole lease and skew have passed (a holder
    /// of the lost lease may still be taking writes).
    pub fn resume(
        epoch: u64,
        in_sync: impl IntoIterator<Item = u32>,
        lease: Duration,
        skew: Duration,
    ) -> Self {
        Self {
            epoch,
            in_sync: in_sync.into_iter().collect(),
            ..Self::new([], lease, skew)
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    pub fn holder(&self) -> Option<u32> {
        self.holder
    }
    pub fn in_sync(&self) -> &BTreeSet<u32> {
        &self.in_sync
    }

    fn holds(&self, node: u32, epoch: u64) -> Result<(), ArbiterError> {
        if self.holder == Some(node) && self.epoch == epoch {
            Ok(())
        } else {
            Err(ArbiterError::NotHolder {
                node,
                epoch,
                holder: self.holder,
                current: self.epoch,
            })
        }
    }
}

impl Arbiter for LocalArbiter {
    fn acquire(&mut self, node: u32, now: Instant) -> Result<Lease, ArbiterError> {
        if let (Some(holder), Some(until)) = (self.holder, self.until) {
            let free_at = until + self.skew;
            if holder != node && now < free_at {
                return Err(ArbiterError::Held {
                    holder,
                    epoch: self.epoch,
                    left: free_at - now,
                });
            }
        }
        if !self.in_sync.contains(&node) {
            return Err(ArbiterError::NotInSync(node));
        }
        self.epoch += 1;
        self.holder = Some(node);
        self.until = Some(now + self.lease);
        // The holder is in sync by definition; the others until it says.
        self.grants.push((self.epoch, node));
        tracing::info!(node, epoch = self.epoch, "arbiter: granted");
        Ok(Lease {
            epoch: self.epoch,
            until: self.until,
            in_sync: self.in_sync.clone(),
        })
    }

    fn renew(&mut self, node: u32, epoch: u64, now: Instant) -> Result<Lease, ArbiterError> {
        self.holds(node, epoch)?;
        self.until = Some(now + self.lease);
        Ok(Lease {
            epoch,
            until: self.until,
            in_sync: self.in_sync.clone(),
        })
    }

    fn release(&mut self, node: u32, epoch: u64, _: Instant) -> Result<(), ArbiterError> {
        self.holds(node, epoch)?;
        self.holder = None;
        self.until = None;
        Ok(())
    }

    fn set_in_sync(
        &mut self,
        node: u32,
        epoch: u64,
        slaves: &BTreeSet<u32>,
        now: Instant,
    ) -> Result<(), ArbiterError> {
        self.holds(node, epoch)?;
        if self.until.is_some_and(|u| now >= u) {
            return Err(ArbiterError::NotHolder {
                node,
                epoch,
                holder: None,
                current: self.epoch,
            });
        }
        self.in_sync = slaves.clone();
        self.in_sync.insert(node);
        Ok(())
    }
}
