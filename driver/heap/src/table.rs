//! The page table: each page's state, and the LRU order of the resident ones.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};

/// The state of one heap page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PageState {
    /// Not in memory; the next reference copies it in from the store.
    NotResident = 0,
    /// In memory, equal to the store's view of it (the open transaction's
    /// staged copy, else the base version), and write-protected.
    Clean = 1,
    /// In memory, written since it was last fetched or staged; writable.
    Dirty = 2,
    /// Write-protected and being staged into the store (checkpoint, pre-flush,
    /// eviction); becomes Clean when staged, Dirty again if staging fails.
    Flushing = 3,
}

impl PageState {
    pub(crate) fn from_u8(v: u8) -> PageState {
        match v {
            1 => PageState::Clean,
            2 => PageState::Dirty,
            3 => PageState::Flushing,
            _ => PageState::NotResident,
        }
    }
}

/// The page table. Changed only under the heap's lock; the states are
/// atomics so that a signal handler may read them without the lock.
#[derive(Debug)]
pub(crate) struct PageTable {
    states: Box<[AtomicU8]>,
    /// Per page: its LRU stamp (0 = not resident).
    stamps: Vec<u64>,
    /// Resident pages by stamp, oldest first.
    lru: BTreeMap<u64, u64>,
    next_stamp: u64,
}

impl PageTable {
    pub(crate) fn new(pages: usize) -> Self {
        PageTable {
            states: (0..pages).map(|_| AtomicU8::new(0)).collect(),
            stamps: vec![0; pages],
            lru: BTreeMap::new(),
            next_stamp: 1,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    pub(crate) fn state(&self, page: usize) -> PageState {
        self.states
            .get(page)
            .map(|s| PageState::from_u8(s.load(Ordering::Acquire)))
            .unwrap_or(PageState::NotResident)
    }

    /// The states, for a lock-free reader (the signal handler).
    pub(crate) fn atomic_states(&self) -> &[AtomicU8] {
        &self.states
    }

    pub(crate) fn resident(&self) -> usize {
        self.lru.len()
    }

    /// Set `page`'s state; entering or leaving NotResident adds it to or
    /// removes it from the LRU list. Out-of-range pages are ignored.
    pub(crate) fn set(&mut self, page: usize, state: PageState) {
        let Some(slot) = self.states.get(page) else {
            return;
        };
        slot.store(state as u8, Ordering::Release);
        if state == PageState::NotResident {
            let stamp = std::mem::take(&mut self.stamps[page]);
            if stamp != 0 {
                self.lru.remove(&stamp);
            }
        } else if self.stamps[page] == 0 {
            self.touch(page);
        }
    }

    /// Mark `page` most recently used (if resident, or being made resident).
    pub(crate) fn touch(&mut self, page: usize) {
        if page >= self.stamps.len() {
            return;
        }
        let old = self.stamps[page];
        if old != 0 {
            self.lru.remove(&old);
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.stamps[page] = stamp;
        self.lru.insert(stamp, page as u64);
    }

    /// The least recently used resident page that is not Flushing and not `keep`.
    pub(crate) fn victim(&self, keep: Option<usize>) -> Option<usize> {
        self.lru
            .values()
            .map(|&p| p as usize)
            .find(|&p| Some(p) != keep && self.state(p) != PageState::Flushing)
    }

    /// Resident pages in a state, oldest first.
    pub(crate) fn pages_in(&self, state: PageState) -> Vec<usize> {
        self.lru
            .values()
            .map(|&p| p as usize)
            .filter(|&p| self.state(p) == state)
            .collect()
    }

    /// All resident pages, oldest first.
    pub(crate) fn resident_pages(&self) -> Vec<usize> {
        self.lru.values().map(|&p| p as usize).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_order_and_victims() {
        let mut t = PageTable::new(8);
        t.set(3, PageState::Clean);
        t.set(5, PageState::Dirty);
        t.set(1, PageState::Clean);
        assert_eq!(t.resident(), 3);
        assert_eq!(t.victim(None), Some(3));
        t.touch(3);
        assert_eq!(t.victim(None), Some(5));
        t.set(5, PageState::Flushing);
        assert_eq!(t.victim(None), Some(1));
        assert_eq!(t.victim(Some(1)), Some(3));
        t.set(1, PageState::NotResident);
        assert_eq!(t.resident(), 2);
        assert_eq!(t.pages_in(PageState::Flushing), vec![5]);
        assert_eq!(t.state(100), PageState::NotResident);
    }
}
