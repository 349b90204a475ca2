//! The async (tokio) API: the same operations as [`Card`], awaited.
//!
//! Each call runs the synchronous driver core on tokio's blocking pool, so
//! an async application never blocks its runtime while the card works, and
//! every wait keeps the core's timeouts. (The transports' interrupt waits
//! are blocking `poll`s there; an `AsyncFd`-driven core is a possible later
//! refinement, not needed for correctness.)

use crate::card::{Card, CardStatus, Committed, Tier};
use crate::error::{Error, Result};
use crate::io::CardIo;
use std::sync::{Arc, Mutex};

/// An open card, shareable between tasks (operations are serialized).
pub struct AsyncCard<T: CardIo + Send + 'static> {
    inner: Arc<Mutex<Card<T>>>,
}

impl<T: CardIo + Send + 'static> Clone for AsyncCard<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: CardIo + Send + 'static> AsyncCard<T> {
    /// Wrap an open card.
    pub fn new(card: Card<T>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(card)),
        }
    }

    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Card<T>) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut card = inner.lock().map_err(|_| {
                Error::transport_msg("a driver call panicked while holding the card")
            })?;
            f(&mut card)
        })
        .await
        .map_err(|e| Error::transport("driver task", e))?
    }

    /// See [`Card::program_entry`].
    pub async fn program_entry(
        &self,
        index: u32,
        tag: u32,
        base: u32,
        len: u32,
        perm: u32,
    ) -> Result<u32> {
        self.run(move |c| c.program_entry(index, tag, base, len, perm))
            .await
    }

    /// See [`Card::checkpoint`].
    pub async fn checkpoint(&self, key: u32, tier: Tier, data: Vec<u8>) -> Result<Committed> {
        self.run(move |c| c.checkpoint(key, tier, &data)).await
    }

    /// See [`Card::restore`].
    pub async fn restore(&self, key: u32, tier: Tier) -> Result<Vec<u8>> {
        self.run(move |c| c.restore(key, tier)).await
    }

    /// See [`Card::append`].
    pub async fn append(&self, key: u32, tier: Tier, data: Vec<u8>) -> Result<u32> {
        self.run(move |c| c.append(key, tier, &data)).await
    }

    /// See [`Card::status`].
    pub async fn status(&self) -> Result<CardStatus> {
        self.run(|c| c.status()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::model::ModelIo;
    use crate::Options;
    use hitless_hdl::contract::{perm, DEFAULT_GEOMETRY};

    #[tokio::test]
    async fn concurrent_tasks_share_one_card() {
        let card = Card::open(ModelIo::new(DEFAULT_GEOMETRY, 8 << 20), Options::default()).unwrap();
        let card = AsyncCard::new(card);
        let p = perm::FULL_REGION_WINDOW | perm::LOG;
        let key = card
            .program_entry(1, 9, 0, DEFAULT_GEOMETRY.region_size, p)
            .await
            .unwrap();
        let g = DEFAULT_GEOMETRY;
        let log = card
            .program_entry(2, 9, g.log_base(), g.log_size, p & !perm::REGION)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..8u8 {
            let c = card.clone();
            tasks.push(tokio::spawn(async move {
                c.append(log, Tier::Warm, vec![i; 100]).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        card.checkpoint(key, Tier::Cold, vec![7; 5000])
            .await
            .unwrap();
        assert_eq!(card.restore(key, Tier::Cold).await.unwrap(), vec![7; 5000]);
        let st = card.status().await.unwrap();
        assert_eq!(
            st.warm.log_head,
            8 * hitless_hdl::contract::log_record_bytes(100)
        );
    }
}
