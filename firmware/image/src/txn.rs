//! Serialized access to the NVS (seed 002, claims 57–61).
//!
//! Two semaphores guard the context areas: one grants *read of the
//! current* context area (claim 60's first), one grants *write of the
//! alternate* (claim 60's second). A context switch (activation, mark-good,
//! rollback, configuration change) changes both areas' roles and so takes
//! both. The third semaphore of claim 61, "one context area at a time", is
//! the manager's device lock, held for every single area access, so reads
//! of the current and writes of the alternate interleave only between
//! whole steps, never inside one.
//!
//! A request that finds its semaphore held blocks until it is released
//! (claim 57), up to a timeout ([`crate::ImageError::Busy`]). Granting
//! access assigns a transaction id (claim 58); later requests of the same
//! transaction carry the id. An id that has ended, or that an earlier boot
//! issued, is *stale*; one this manager never issued is *foreign*; both are
//! refused with a typed error before touching flash.

use crate::ImageError;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A transaction id (claim 58). Plain data: a remote client may hand it
/// back; the manager checks it on every use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxnId(pub u64);

/// What a transaction may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read components of the current context area.
    ReadCurrent,
    /// Write the alternate context area (install, mirror).
    WriteAlternate,
    /// Change which area is current, or the configuration: takes both
    /// semaphores.
    Switch,
}

impl Access {
    fn needs(self) -> (bool, bool) {
        match self {
            Access::ReadCurrent => (true, false),
            Access::WriteAlternate => (false, true),
            Access::Switch => (true, true),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Access::ReadCurrent => "read of the current context area",
            Access::WriteAlternate => "write of the alternate context area",
            Access::Switch => "a context switch",
        }
    }
}

#[derive(Debug)]
struct Table {
    epoch: u32,
    past_epochs: Vec<u32>,
    next: u32,
    active: Vec<(TxnId, Access)>,
    read_current: Option<TxnId>,
    write_alternate: Option<TxnId>,
}

/// The semaphores and the table of transactions.
#[derive(Debug)]
pub struct Transactions {
    table: Mutex<Table>,
    freed: Condvar,
    timeout: Duration,
}

impl Transactions {
    /// A table whose blocked requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Transactions {
            table: Mutex::new(Table {
                epoch: rand::random(),
                past_epochs: Vec::new(),
                next: 1,
                active: Vec::new(),
                read_current: None,
                write_alternate: None,
            }),
            freed: Condvar::new(),
            timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for the semaphores `access` needs, take them, and assign an id.
    pub fn begin(&self, access: Access) -> Result<TxnId, ImageError> {
        let deadline = Instant::now() + self.timeout;
        let (rc, wa) = access.needs();
        let mut t = self.lock();
        loop {
            let free = (!rc || t.read_current.is_none()) && (!wa || t.write_alternate.is_none());
            if free {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ImageError::Busy);
            }
            t = self
                .freed
                .wait_timeout(t, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let id = TxnId((u64::from(t.epoch) << 32) | u64::from(t.next));
        t.next = t.next.wrapping_add(1);
        if rc {
            t.read_current = Some(id);
        }
        if wa {
            t.write_alternate = Some(id);
        }
        t.active.push((id, access));
        tracing::debug!(id = id.0, ?access, "transaction begins");
        Ok(id)
    }

    /// Check that `id` is active and grants `access`.
    pub fn check(&self, id: TxnId, access: Access) -> Result<(), ImageError> {
        let t = self.lock();
        match t.active.iter().find(|(i, _)| *i == id) {
            Some((_, a)) if *a == access => Ok(()),
            Some(_) => Err(ImageError::WrongAccess(access.name())),
            None => Err(Self::classify(&t, id)),
        }
    }

    fn classify(t: &Table, id: TxnId) -> ImageError {
        let epoch = (id.0 >> 32) as u32;
        let n = id.0 as u32;
        if (epoch == t.epoch && n != 0 && n < t.next) || t.past_epochs.contains(&epoch) {
            ImageError::StaleTransaction(id.0)
        } else {
            ImageError::ForeignTransaction(id.0)
        }
    }

    /// End `id`, releasing its semaphores.
    pub fn end(&self, id: TxnId) -> Result<(), ImageError> {
        let mut t = self.lock();
        let Some(pos) = t.active.iter().position(|(i, _)| *i == id) else {
            return Err(Self::classify(&t, id));
        };
        t.active.swap_remove(pos);
        if t.read_current == Some(id) {
            t.read_current = None;
        }
        if t.write_alternate == Some(id) {
            t.write_alternate = None;
        }
        drop(t);
        self.freed.notify_all();
        tracing::debug!(id = id.0, "transaction ends");
        Ok(())
    }

    /// A boot: every open transaction dies, their ids become stale.
    pub fn reboot(&self) {
        let mut t = self.lock();
        let old = t.epoch;
        t.past_epochs.push(old);
        let mut e: u32 = rand::random();
        while e == old || t.past_epochs.contains(&e) {
            e = e.wrapping_add(1);
        }
        t.epoch = e;
        t.next = 1;
        t.active.clear();
        t.read_current = None;
        t.write_alternate = None;
        drop(t);
        self.freed.notify_all();
    }
}

/// Ends a transaction when dropped (for operations that open their own).
pub(crate) struct Guard<'a> {
    pub(crate) txns: &'a Transactions,
    pub(crate) id: TxnId,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // Ending an id this guard began cannot be refused unless a reboot
        // already ended it, which is what we want anyway.
        let _ = self.txns.end(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stale_foreign_and_wrong_access() {
        let t = Transactions::new(Duration::from_millis(50));
        let a = t.begin(Access::WriteAlternate).unwrap();
        t.check(a, Access::WriteAlternate).unwrap();
        assert!(matches!(
            t.check(a, Access::ReadCurrent),
            Err(ImageError::WrongAccess(_))
        ));
        // a second writer waits, then gives up
        assert!(matches!(
            t.begin(Access::WriteAlternate),
            Err(ImageError::Busy)
        ));
        // a reader is not blocked by a writer (different semaphore)
        let r = t.begin(Access::ReadCurrent).unwrap();
        assert!(matches!(t.begin(Access::Switch), Err(ImageError::Busy)));
        t.end(a).unwrap();
        t.end(r).unwrap();
        assert!(matches!(
            t.check(a, Access::WriteAlternate),
            Err(ImageError::StaleTransaction(_))
        ));
        assert!(matches!(
            t.check(TxnId(a.0 ^ (1 << 40)), Access::WriteAlternate),
            Err(ImageError::ForeignTransaction(_))
        ));
        assert!(matches!(
            t.check(TxnId(a.0 + 1000), Access::WriteAlternate),
            Err(ImageError::ForeignTransaction(_))
        ));
        let b = t.begin(Access::Switch).unwrap();
        t.reboot();
        assert!(matches!(
            t.check(b, Access::Switch),
            Err(ImageError::StaleTransaction(_))
        ));
        assert!(t.begin(Access::Switch).is_ok());
    }
}
