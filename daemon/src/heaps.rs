//! Which connection holds which heap (the heap store's requests through
//! the daemon; `docs/daemon.md`, "Heaps through the daemon").
//!
//! The card keeps one open transaction per (application, heap), whatever
//! session sends to it. Through the daemon every process of an
//! application shares the application's card session, so without this
//! one process could commit pages another staged. A heap is held by the
//! connection that opened it (HEAP_OPEN) until it closes it, closes the
//! session, or goes away; the others are refused. When the holder goes
//! away without closing, the daemon aborts its staged pages (HEAP_ABORT,
//! then HEAP_CLOSE) before the heap is free again: a process killed in
//! the middle of a checkpoint leaves the committed versions as they were
//! and the next opener a clean transaction. The store browser takes a heap
//! for the length of one action ([`Holder::Operator`]); an application's
//! open waits for it (bounded).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// (application, heap id).
pub type HeapKey = (u32, u32);

/// How long an open waits for another connection's hold to end before it
/// is refused: long enough for a connection that just closed (its thread
/// aborts and frees its heaps within milliseconds), so a process that
/// closes a heap and opens it again at once is not refused.
pub const HOLDER_GRACE: Duration = Duration::from_secs(2);

/// Who holds a heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// An application's connection, with the session handle it opened the
    /// heap under.
    Connection { conn: u64, handle: u32 },
    /// The store browser, for one action.
    Operator,
}

/// Why a claim was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClaimError {
    #[error("heap {heap} of application {app} is open on another connection to hitlessd (one process at a time holds a heap; it is freed when that process closes it or exits)")]
    HeldByAnother { app: u32, heap: u32 },
    #[error("heap {heap} of application {app} is busy with an operator's action (store browser) for longer than {after:?}")]
    Busy {
        app: u32,
        heap: u32,
        after: Duration,
    },
}

/// The heaps held, and what the store browser did to them.
#[derive(Debug, Default)]
pub struct Heaps {
    held: Mutex<HashMap<HeapKey, Holder>>,
    freed: Condvar,
    /// (application, heap, version) → the version an operator restarted
    /// it from (shown by the browser; the daemon's memory only).
    restarted: Mutex<HashMap<(u32, u32, u64), u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Heaps {
    /// Take `key` for `who`. A connection already holding it keeps it
    /// (under the newer handle); another connection's hold is waited for
    /// at most [`HOLDER_GRACE`] (and `wait`), then refused; an operator's
    /// action in progress is waited for, at most `wait`.
    /// Returns whether this call took it (false: `who` held it already).
    pub fn claim(&self, key: HeapKey, who: Holder, wait: Duration) -> Result<bool, ClaimError> {
        let start = Instant::now();
        let deadline = start + wait;
        let grace = start + wait.min(HOLDER_GRACE);
        let mut held = lock(&self.held);
        loop {
            match held.get(&key).copied() {
                None => {
                    held.insert(key, who);
                    return Ok(true);
                }
                Some(Holder::Connection { conn, .. }) if matches!(who, Holder::Connection { conn: c, .. } if c == conn) =>
                {
                    held.insert(key, who);
                    return Ok(false);
                }
                Some(h) => {
                    let until = match h {
                        Holder::Connection { .. } => grace,
                        Holder::Operator => deadline,
                    };
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(match h {
                            Holder::Connection { .. } => ClaimError::HeldByAnother {
                                app: key.0,
                                heap: key.1,
                            },
                            Holder::Operator => ClaimError::Busy {
                                app: key.0,
                                heap: key.1,
                                after: wait,
                            },
                        });
                    }
                    held = self
                        .freed
                        .wait_timeout(held, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    /// Give `key` up, if `who` holds it.
    pub fn release(&self, key: HeapKey, who: Holder) {
        let mut held = lock(&self.held);
        let mine = match (held.get(&key), who) {
            (Some(Holder::Operator), Holder::Operator) => true,
            (Some(Holder::Connection { conn, .. }), Holder::Connection { conn: c, .. }) => {
                *conn == c
            }
            _ => false,
        };
        if mine {
            held.remove(&key);
            drop(held);
            self.freed.notify_all();
        }
    }

    /// Who holds `key`.
    pub fn holder(&self, key: HeapKey) -> Option<Holder> {
        lock(&self.held).get(&key).copied()
    }

    /// Does connection `conn` hold `key`?
    pub fn held_by(&self, key: HeapKey, conn: u64) -> bool {
        matches!(self.holder(key), Some(Holder::Connection { conn: c, .. }) if c == conn)
    }

    /// The heaps connection `conn` holds (all, or those opened under
    /// session `handle`).
    pub fn of_connection(&self, conn: u64, handle: Option<u32>) -> Vec<(HeapKey, Holder)> {
        lock(&self.held)
            .iter()
            .filter(|(_, h)| match h {
                Holder::Connection {
                    conn: c,
                    handle: hd,
                } => *c == conn && handle.is_none_or(|want| want == *hd),
                Holder::Operator => false,
            })
            .map(|(k, h)| (*k, *h))
            .collect()
    }

    /// Remember that `version` of `key` was made from `from` by an
    /// operator's restart.
    pub fn note_restart(&self, key: HeapKey, version: u64, from: u64) {
        lock(&self.restarted).insert((key.0, key.1, version), from);
    }

    /// The version `version` of `key` was restarted from, if an operator
    /// made it.
    pub fn restarted_from(&self, key: HeapKey, version: u64) -> Option<u64> {
        lock(&self.restarted).get(&(key.0, key.1, version)).copied()
    }

    /// Forget what was noted of a deleted heap.
    pub fn forget(&self, key: HeapKey) {
        lock(&self.restarted).retain(|(a, h, _), _| (*a, *h) != key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_connection_at_a_time_and_operators_are_waited_for() {
        let h = Heaps::default();
        let a = Holder::Connection { conn: 1, handle: 9 };
        let b = Holder::Connection { conn: 2, handle: 9 };
        let w = Duration::from_millis(30);
        assert_eq!(h.claim((7, 0), a, w), Ok(true));
        assert_eq!(h.claim((7, 0), a, w), Ok(false), "the holder again");
        assert!(matches!(
            h.claim((7, 0), b, w),
            Err(ClaimError::HeldByAnother { app: 7, heap: 0 })
        ));
        assert_eq!(
            h.claim((8, 0), b, w),
            Ok(true),
            "another application's heap 0"
        );
        h.release((7, 0), b);
        assert!(h.held_by((7, 0), 1), "only the holder releases");
        assert_eq!(h.of_connection(1, Some(9)).len(), 1);
        assert!(h.of_connection(1, Some(3)).is_empty());
        h.release((7, 0), a);
        assert_eq!(h.claim((7, 0), Holder::Operator, w), Ok(true));
        assert!(matches!(
            h.claim((7, 0), b, w),
            Err(ClaimError::Busy { .. })
        ));
        let h = std::sync::Arc::new(h);
        let h2 = h.clone();
        let t = std::thread::spawn(move || h2.claim((7, 0), b, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        h.release((7, 0), Holder::Operator);
        assert_eq!(t.join().unwrap(), Ok(true), "the waiting open goes on");
        h.note_restart((7, 0), 6, 3);
        assert_eq!(h.restarted_from((7, 0), 6), Some(3));
        h.forget((7, 0));
        assert_eq!(h.restarted_from((7, 0), 6), None);
    }
}
