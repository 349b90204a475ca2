//! The card store: a [`PageStore`] over the card's heap store (the
//! firmware's HEAP_* requests through any [`Firmware`]: the card's own
//! mailbox, [`hitless_driver::firmware::Client`], or `hitlessd`,
//! [`hitless_driver::daemon::DaemonClient`]; `docs/heap.md`, "The card
//! store").
//!
//! Pages are 4096 bytes. Staged pages are written to the card's free
//! space at once but live only in the firmware's memory until a commit: a
//! card reset or power cut drops them, and the session with them: the
//! next call fails with the driver's `AuthFailed` (inside
//! [`StoreError::Backend`]); reopen the session with the application's
//! secret and open a new store (its base is the newest committed
//! version). If the session survived but the firmware forgot the heap (a
//! firmware restart), the store reopens the heap and returns
//! [`CardStoreError::StagedLost`]: pages evicted (staged) before are
//! gone, so the transaction must restart from the last version.

use std::collections::BTreeSet;

use hitless_driver::firmware::{Firmware, Session};
use hitless_driver::Error as DriverError;
use hitless_proto::msg::{Code, HEAP_PAGE_BYTES};

use crate::error::StoreError;
use crate::store::{check_page, PageStore, VersionInfo};

/// Why the card store refused (inside [`StoreError::Backend`]).
#[derive(Debug, thiserror::Error)]
pub enum CardStoreError {
    /// The card forgot the staged pages (a reset or power cut since they
    /// were staged): restart from a committed version.
    #[error(
        "the card was reset: {0} staged pages were lost; restart from the last committed version"
    )]
    StagedLost(usize),
    /// The driver or the firmware refused.
    #[error(transparent)]
    Driver(#[from] DriverError),
}

fn backend(e: impl Into<CardStoreError>) -> StoreError {
    StoreError::Backend(Box::new(e.into()))
}

/// A heap's pages on the card: heap `heap` of the session's application,
/// through `F` (directly or through hitlessd).
pub struct CardStore<F: Firmware> {
    client: F,
    session: Session,
    heap: u32,
    heap_pages: u64,
    cold: bool,
    /// Pages staged since the last commit, abort or checkout.
    staged: BTreeSet<u64>,
    /// Bytes of pages sent to the card (a benchmark's count).
    pub sent_bytes: u64,
}

impl<F: Firmware> std::fmt::Debug for CardStore<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardStore")
            .field("heap", &self.heap)
            .field("heap_pages", &self.heap_pages)
            .field("staged", &self.staged.len())
            .finish()
    }
}

impl<F: Firmware> CardStore<F> {
    /// Open (or create) heap `heap` of `heap_pages` pages keeping `keep`
    /// versions (0: the card's default) in the cold (survives a power
    /// cycle) or warm tier. The base is the newest version.
    pub fn open(
        mut client: F,
        session: Session,
        heap: u32,
        heap_pages: u64,
        keep: u32,
        cold: bool,
    ) -> Result<Self, StoreError> {
        let pages = u32::try_from(heap_pages).map_err(|_| {
            StoreError::Config(format!(
                "{heap_pages} pages: the card store has at most 2^20"
            ))
        })?;
        client
            .heap_open(&session, heap, pages, keep, cold)
            .map_err(backend)?;
        Ok(Self {
            client,
            session,
            heap,
            heap_pages,
            cold,
            staged: BTreeSet::new(),
            sent_bytes: 0,
        })
    }

    /// The client (for status and cycle counts), and the session.
    pub fn client(&mut self) -> (&mut F, &Session) {
        (&mut self.client, &self.session)
    }

    /// A refusal that says the heap is not open any more means the card
    /// was reset: reopen it and report the staged pages lost.
    fn card<R>(&mut self, r: Result<R, DriverError>) -> Result<R, StoreError> {
        match r {
            Ok(v) => Ok(v),
            Err(DriverError::Firmware {
                code: Code::NotFound,
                ref detail,
                ..
            }) if detail.contains("not open") => {
                let lost = std::mem::take(&mut self.staged).len();
                tracing::warn!(
                    heap = self.heap,
                    lost,
                    "the card forgot the heap: reopening"
                );
                self.client
                    .heap_open(
                        &self.session,
                        self.heap,
                        self.heap_pages as u32,
                        0,
                        self.cold,
                    )
                    .map_err(backend)?;
                Err(backend(CardStoreError::StagedLost(lost)))
            }
            Err(e) => Err(backend(e)),
        }
    }
}

impl<F: Firmware + Send> PageStore for CardStore<F> {
    fn page_size(&self) -> usize {
        HEAP_PAGE_BYTES
    }

    fn heap_pages(&self) -> u64 {
        self.heap_pages
    }

    fn read_page(&mut self, page: u64, buf: &mut [u8]) -> Result<bool, StoreError> {
        check_page(page, self.heap_pages, buf.len(), HEAP_PAGE_BYTES)?;
        let r = self
            .client
            .heap_read(&self.session, self.heap, &[page as u32]);
        match self.card(r)?.pop().flatten() {
            Some(b) => {
                buf.copy_from_slice(&b);
                Ok(true)
            }
            None => {
                buf.fill(0);
                Ok(false)
            }
        }
    }

    fn stage_pages(&mut self, pages: &[(u64, &[u8])]) -> Result<(), StoreError> {
        for (p, d) in pages {
            check_page(*p, self.heap_pages, d.len(), HEAP_PAGE_BYTES)?;
        }
        // The card wants each page once per request: the last copy wins.
        let mut last = std::collections::BTreeMap::new();
        for (p, d) in pages {
            last.insert(*p as u32, *d);
        }
        let list: Vec<(u32, &[u8])> = last.into_iter().collect();
        let r = self.client.heap_stage(&self.session, self.heap, &list);
        self.sent_bytes += self.card(r)?;
        self.staged.extend(pages.iter().map(|(p, _)| *p));
        Ok(())
    }

    fn commit(&mut self, app_state: &[u8]) -> Result<VersionInfo, StoreError> {
        let r = self.client.heap_commit(&self.session, self.heap, app_state);
        let v = self.card(r)?;
        self.sent_bytes += app_state.len() as u64;
        self.staged.clear();
        Ok(VersionInfo {
            version: v.version,
            pages: v.pages as u64,
            state_len: v.state_len as u64,
        })
    }

    fn abort(&mut self) -> Result<(), StoreError> {
        let r = self.client.heap_abort(&self.session, self.heap);
        self.card(r)?;
        self.staged.clear();
        Ok(())
    }

    fn versions(&mut self) -> Result<Vec<VersionInfo>, StoreError> {
        let r = self.client.heap_versions(&self.session, self.heap);
        Ok(self
            .card(r)?
            .into_iter()
            .map(|v| VersionInfo {
                version: v.version,
                pages: v.pages as u64,
                state_len: v.state_len as u64,
            })
            .collect())
    }

    fn checkout(&mut self, version: u64) -> Result<Vec<u8>, StoreError> {
        let r = self.client.heap_checkout(&self.session, self.heap, version);
        match r {
            Err(DriverError::Firmware {
                code: Code::NotFound,
                ref detail,
                ..
            }) if !detail.contains("not open") => Err(StoreError::NoSuchVersion(version)),
            r => {
                let (_, state) = self.card(r)?;
                self.staged.clear();
                Ok(state)
            }
        }
    }
}
