//! The manager's side of replication (issue 16): its journal and its
//! [`Replica`] implementation.
//!
//! Journal (the master): with [`MemoryManager::record_changes`] on, every
//! request that changes the card's state leaves its changes (the set
//! stored, read back from NV after its commit; a delete; a log record
//! appended with its log offset, or a trim; an application's new secret)
//! for [`MemoryManager::take_changes`]; the firmware loop streams them as
//! that request's bracket.
//!
//! Apply (the slave): a bracket's changes become the manager's own
//! operations: a set is stored from scratch memory (the firmware's
//! protection entry, as secrets are), a log record is appended with the
//! master's offset in its tag (bytes 8..12, replicated flag in 12..16) so
//! the master's trims can be followed. The mark (epoch, bracket) is a
//! firmware record in the cold tier (application 0, object 0). A bracket
//! of more than one change is not one NV commit: the mark is written
//! `dirty` first and clean after, so a power cut in between leaves a card
//! that knows its state is not a whole bracket: it reports no mark (the
//! master sends a full snapshot) and is not [`Replica::consistent`] (it
//! never takes over) until then.
//!
//! The warm tier does not survive a power cycle, the cold mark does: a
//! card power-cycled (a card process restarted) would claim brackets whose
//! warm sets it lost. So the warm tier holds a token (a random number,
//! the same key as the mark, written once) and the mark names it, with
//! whether the warm tier held anything: a mark whose warm tier held
//! something and whose token is gone is dirty (a snapshot, no takeover).
//!
//! The two are different dirt ([`Inconsistency`]): an interrupted apply
//! mixes two brackets (never promotable); a lost warm tier leaves the cold
//! tier whole to the mark (the operator may promote it, accepting the
//! loss). The mark's dirty word says which was written: 1 is an
//! interrupted apply (what every firmware wrote), anything else unknown
//! reads as that too; a lost warm tier is found at start, not written. The
//! warm-held word counts the warm sets (bit 63 marks a count, bit 62 the
//! warm log; an older firmware wrote 1 for "something", read as an
//! unknown count).

use super::*;
use crate::replication::journal::{Bracket, Change, Mark};
use crate::replication::replica::{Inconsistency, Replica};
use hitless_proto::link::SetRecord;
use hitless_proto::message::Request;
use hitless_proto::msg::flags;

/// The mark's record: application 0 (the firmware's), object 0 (never an
/// application id, so never a secret); in the warm tier the same key holds
/// the warm tier's token.
pub(super) const MARK_KEY: SetKey = SetKey {
    app: SYSTEM_APP,
    object: 0,
};
/// Epoch, bracket, dirty, the warm tier's token, whether the warm tier
/// held sets or log records, and each tier's log position delta
/// ([`ReplState::log_delta`]; a mark of 40 bytes, written before it
/// existed, has none).
const MARK_BYTES: usize = 48;
const OLD_MARK_BYTES: usize = 40;
const TOKEN_BYTES: usize = 8;
/// The dirty word of a mark written before an apply of several changes.
const DIRTY_APPLY: u64 = 1;
/// The warm-held word: a count of warm sets in its low 32 bits.
const WARM_COUNTED: u64 = 1 << 63;
/// The warm-held word: the warm log held records.
const WARM_LOG: u64 = 1 << 62;

/// Why the manager could not apply a bracket or take a snapshot.
#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {detail}")]
pub struct ReplicaError {
    pub code: Code,
    pub detail: String,
}

impl From<Failure> for ReplicaError {
    fn from(f: Failure) -> Self {
        Self {
            code: f.code,
            detail: f.detail,
        }
    }
}

/// Replication state the manager keeps.
#[derive(Debug, Default)]
pub(super) struct ReplState {
    pub journal: Option<Vec<Change>>,
    pub mark: Mark,
    /// Why the state is not whole brackets, if it is not.
    pub dirty: Option<Inconsistency>,
    /// The warm tier's token (read at start or written), if it has one.
    pub warm_token: Option<u64>,
    /// Per tier (warm, cold): what turns this card's log offsets into the
    /// pair's log positions, so that a log cursor (a backup reader's)
    /// names the same record on every card of the pair. A record's
    /// position is in its tag (a master tags its own records with
    /// `head + delta`, a slave with its master's position); the next
    /// record's is this card's head + delta. Follows the last record a
    /// slave applied; kept in the mark.
    pub log_delta: [u32; 2],
}

fn tier_of(t: u32) -> TierSel {
    if t == 1 {
        TierSel::Cold
    } else {
        TierSel::Warm
    }
}

impl<C: Controller> MemoryManager<C> {
    /// Keep (or stop keeping) the changes each request makes.
    pub fn record_changes(&mut self, on: bool) {
        self.repl.journal = on.then(Vec::new);
    }

    /// The changes recorded since the last call (one request's bracket).
    pub fn take_changes(&mut self) -> Vec<Change> {
        self.repl
            .journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub(super) fn journal(&mut self, c: impl FnOnce() -> Change) {
        if let Some(j) = self.repl.journal.as_mut() {
            j.push(c());
        }
    }

    /// What a replicated master refuses before it changes anything,
    /// because its stream cannot carry it to the slave: a set over one
    /// link frame (`MAX_TRANSFER`; the stream sends a set as one `PUT`),
    /// and the heap store's requests (heap versions are not journaled).
    /// Refused here, not after the commit: otherwise the master would
    /// hold what its slave never gets, and the host would see a stream
    /// failure for a set that is on one card only.
    pub(super) fn replicable(&self, r: &Request) -> R<()> {
        if self.repl.journal.is_none() {
            return Ok(());
        }
        match r {
            Request::Store { len, .. } if *len > MAX_TRANSFER => fail(
                Code::Invalid,
                format!(
                    "a replicated card stores sets of at most {MAX_TRANSFER} bytes (its link carries a set in one frame), not {len}"
                ),
            ),
            Request::HeapOpen { .. }
            | Request::HeapStage { .. }
            | Request::HeapCommit { .. }
            | Request::HeapAbort { .. }
            | Request::HeapDelete { .. } => fail(
                Code::Invalid,
                "heap versions are not replicated to the peer card: keep a heap on an unreplicated card",
            ),
            _ => Ok(()),
        }
    }

    /// Journal a set just stored: its record and its bytes read back.
    pub(super) fn journal_put(&mut self, key: SetKey) -> R<()> {
        if self.repl.journal.is_none() {
            return Ok(());
        }
        let Some((t, e)) = self.lookup(key) else {
            return Ok(());
        };
        let data = self.read_set(t, &e)?;
        self.journal(|| Change::Put {
            set: record(key, t, &e),
            data,
        });
        Ok(())
    }

    /// Read the mark record (at start).
    pub(super) fn load_mark(&mut self) {
        if let Some(TierView::Ready(tab)) = self.tiers.get(TierSel::Warm as usize).cloned() {
            if let Some(e) = tab
                .sets
                .get(&MARK_KEY)
                .filter(|e| e.len as usize == TOKEN_BYTES)
            {
                match self.read_set(TierSel::Warm, e) {
                    Ok(b) => {
                        let mut w = [0u8; 8];
                        w.copy_from_slice(&b[..8]);
                        self.repl.warm_token = Some(u64::from_le_bytes(w));
                    }
                    Err(f) => tracing::warn!("warm tier token unreadable: {}", f.detail),
                }
            }
        }
        let Some(TierView::Ready(tab)) = self.tiers.get(TierSel::Cold as usize).cloned() else {
            return;
        };
        let Some(e) = tab.sets.get(&MARK_KEY) else {
            return;
        };
        if e.len as usize != MARK_BYTES && e.len as usize != OLD_MARK_BYTES {
            return;
        }
        match self.read_set(TierSel::Cold, e) {
            Ok(b) => {
                let u = |i: usize| {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&b[i..i + 8]);
                    u64::from_le_bytes(w)
                };
                self.repl.dirty = (u(16) != 0).then_some(Inconsistency::MixedBrackets);
                if b.len() >= MARK_BYTES {
                    let d = u(40);
                    self.repl.log_delta = [d as u32, (d >> 32) as u32];
                }
                let (token, held) = (u(24), u(32));
                if self.repl.dirty.is_none() && held != 0 && self.repl.warm_token != Some(token) {
                    tracing::warn!(
                        "the warm tier is not the one the replication mark describes \
                         (a power cycle): the state is not whole brackets until a snapshot"
                    );
                    self.repl.dirty = Some(if held & WARM_COUNTED != 0 {
                        Inconsistency::LostWarm {
                            sets: Some(held as u32),
                            log: held & WARM_LOG != 0,
                        }
                    } else {
                        Inconsistency::LostWarm {
                            sets: None,
                            log: false,
                        }
                    });
                }
                // A lost warm tier keeps its mark: the cold tier is whole to
                // it, and a promotion continues from its epoch (a newer one).
                self.repl.mark = if self.repl.dirty == Some(Inconsistency::MixedBrackets) {
                    Mark::default()
                } else {
                    Mark {
                        epoch: u(0),
                        bracket: u(8),
                    }
                };
            }
            Err(f) => tracing::warn!("replication mark unreadable: {}", f.detail),
        }
    }

    fn write_mark(&mut self, mark: Mark, dirty: bool) -> R<()> {
        if self.repl.warm_token.is_none() {
            let token: u64 = self.rng.gen();
            match self.store_bytes(TierSel::Warm, MARK_KEY, 0, NEVER, &token.to_le_bytes()) {
                Ok(()) => self.repl.warm_token = Some(token),
                // No warm tier to write: it holds nothing to lose either.
                Err(f) => tracing::debug!("warm tier token not written: {}", f.detail),
            }
        }
        let warm_sets = match &self.tiers[TierSel::Warm as usize] {
            TierView::Ready(tab) => tab.sets.keys().filter(|k| k.app != SYSTEM_APP).count(),
            _ => 0,
        };
        let warm_log = self
            .tier_regs(TierSel::Warm)
            .is_ok_and(|r| r.log_head != r.log_tail);
        let warm_held = if warm_sets == 0 && !warm_log {
            0
        } else {
            WARM_COUNTED
                | if warm_log { WARM_LOG } else { 0 }
                | u64::from(u32::try_from(warm_sets).unwrap_or(u32::MAX))
        };
        let mut b = [0u8; MARK_BYTES];
        b[0..8].copy_from_slice(&mark.epoch.to_le_bytes());
        b[8..16].copy_from_slice(&mark.bracket.to_le_bytes());
        b[16..24].copy_from_slice(&if dirty { DIRTY_APPLY } else { 0 }.to_le_bytes());
        b[24..32].copy_from_slice(&self.repl.warm_token.unwrap_or(0).to_le_bytes());
        b[32..40].copy_from_slice(&warm_held.to_le_bytes());
        let [dw, dc] = self.repl.log_delta;
        b[40..48].copy_from_slice(&(u64::from(dw) | u64::from(dc) << 32).to_le_bytes());
        self.store_bytes(TierSel::Cold, MARK_KEY, 0, NEVER, &b)?;
        self.repl.mark = mark;
        self.repl.dirty = dirty.then_some(Inconsistency::MixedBrackets);
        Ok(())
    }

    /// Tests: write a mark record word by word (epoch, bracket, dirty,
    /// token, warm-held), as an older firmware would have.
    #[cfg(test)]
    pub(crate) fn write_raw_mark(&mut self, words: [u64; 5]) -> R<()> {
        let mut b = [0u8; MARK_BYTES];
        for (i, w) in words.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        self.store_bytes(TierSel::Cold, MARK_KEY, 0, NEVER, &b)
    }

    /// Tests: the warm tier's token.
    #[cfg(test)]
    pub(crate) fn warm_token(&self) -> Option<u64> {
        self.repl.warm_token
    }

    /// Store `data` as set `key` in tier `t` from scratch memory.
    fn store_bytes(
        &mut self,
        t: TierSel,
        key: SetKey,
        endpoint: u32,
        stage: u32,
        data: &[u8],
    ) -> R<()> {
        self.store_flagged(t, key, endpoint, stage, 0, data)
    }

    /// [`Self::store_bytes`] with record flags beside the tier's
    /// (`peer::HELD`).
    pub(super) fn store_flagged(
        &mut self,
        t: TierSel,
        key: SetKey,
        endpoint: u32,
        stage: u32,
        extra: u32,
        data: &[u8],
    ) -> R<()> {
        if data.len() > MAX_TRANSFER as usize {
            return fail(Code::Invalid, "a set is at most MAX_TRANSFER bytes");
        }
        self.ctl.scratch_write(STAGING, data).map_err(ctl)?;
        let e = Entry {
            endpoint,
            stage,
            flags: extra | if t == TierSel::Cold { flags::COLD } else { 0 },
            len: data.len() as u32,
            crc: crc32c(data),
            offset: 0,
            version: 0,
        };
        let (base, _) = self.ctl.scratch();
        let fw_key = self.fw_key;
        self.store(t, key, e, (base + STAGING as u64, fw_key))
    }

    fn apply_change(&mut self, c: &Change) -> R<()> {
        match c {
            Change::Put { set, data } => {
                if crc32c(data) != set.crc {
                    return fail(
                        Code::Invalid,
                        format!("set {}/{}: CRC differs", set.app, set.object),
                    );
                }
                if set.app == SYSTEM_APP {
                    return fail(Code::Invalid, "application 0 is the firmware's own");
                }
                let key = SetKey {
                    app: set.app,
                    object: set.object,
                };
                self.store_bytes(tier_of(set.tier), key, set.endpoint, set.stage, data)
            }
            Change::Delete { app, object } => {
                let key = SetKey {
                    app: *app,
                    object: *object,
                };
                self.remove(TierSel::Warm, key)?;
                self.remove(TierSel::Cold, key)
            }
            Change::LogAppend {
                app,
                object,
                tier,
                offset,
                data,
            } => {
                let t = tier_of(*tier);
                let own = self.append_tagged(t, *app, *object, Some(*offset), data)?;
                // This card's next record follows the master's.
                self.repl.log_delta[t as usize] = offset.wrapping_sub(own);
                Ok(())
            }
            Change::LogTrim { tier, to } => {
                let t = tier_of(*tier);
                let (recs, st) = self.log_records(t)?;
                // The first record the master's trim keeps, by its
                // position; none: all go, and an empty log's next
                // record is at the master's position `to` at least.
                let keep = recs
                    .iter()
                    .find(|r| (r.pos().wrapping_sub(*to) as i32) >= 0)
                    .map_or(st.log_head, |r| r.offset);
                let head = self.log_position(t, st.log_head);
                if keep == st.log_head && (to.wrapping_sub(head) as i32) > 0 {
                    self.repl.log_delta[t as usize] = to.wrapping_sub(st.log_head);
                }
                self.log_trim(t, keep)
            }
            Change::Secret { app, secret } => {
                if *app == SYSTEM_APP {
                    return fail(Code::Invalid, "application 0 has no secret");
                }
                self.store_bytes(
                    TierSel::Cold,
                    SetKey {
                        app: SYSTEM_APP,
                        object: *app,
                    },
                    0,
                    NEVER,
                    secret,
                )?;
                self.secrets.insert(*app, *secret);
                Ok(())
            }
        }
    }

    /// Before a full snapshot: no sets, no secrets, empty logs; but the
    /// sets this card holds for a peer stay (they are not the master's
    /// state, so its snapshot does not have them).
    fn wipe(&mut self) -> R<()> {
        for t in [TierSel::Warm, TierSel::Cold] {
            let old = match &self.tiers[t as usize] {
                TierView::Ready(tab) => tab.clone(),
                _ => Table::default(),
            };
            let mut new = old.clone();
            new.sets
                .retain(|k, e| *k == MARK_KEY || e.flags & super::peer::HELD != 0);
            if new.sets.len() != old.sets.len() {
                self.commit(t, &old, &new, None, (0, 0), &[])?;
            }
            let st = self.tier_regs(t)?;
            if st.log_head != st.log_tail {
                self.log_trim(t, st.log_head)?;
            }
        }
        self.secrets.clear();
        Ok(())
    }
}

pub(super) fn record(key: SetKey, t: TierSel, e: &Entry) -> SetRecord {
    SetRecord {
        app: key.app,
        object: key.object,
        endpoint: e.endpoint,
        stage: e.stage,
        tier: t as u32,
        version: e.version,
        crc: e.crc,
        stored_us: 0,
    }
}

impl<C: Controller> Replica for MemoryManager<C> {
    type Error = ReplicaError;

    fn mark(&self) -> Mark {
        self.repl.mark
    }

    fn inconsistency(&self) -> Option<Inconsistency> {
        self.repl.dirty
    }

    fn accept_lost_warm(&mut self) -> Result<(), ReplicaError> {
        match self.repl.dirty {
            None => Ok(()),
            Some(Inconsistency::LostWarm { .. }) => {
                // A clean mark naming the warm tier as it is now (a new
                // token if the old one is gone): whole to the mark again.
                Ok(self.write_mark(self.repl.mark, false)?)
            }
            Some(m @ Inconsistency::MixedBrackets) => Err(ReplicaError {
                code: Code::Invalid,
                detail: m.to_string(),
            }),
        }
    }

    fn apply(&mut self, b: &Bracket) -> Result<(), ReplicaError> {
        // One change that is not a log record is one commit: atomic by
        // itself. Anything else is bracketed by a dirty mark.
        let single = b.changes.len() <= 1
            && !b.full
            && !matches!(b.changes.first(), Some(Change::LogAppend { .. }));
        if !single {
            self.write_mark(self.repl.mark, true)?;
        }
        if b.full {
            self.wipe()?;
        }
        for c in &b.changes {
            self.apply_change(c)?;
        }
        self.write_mark(b.mark(), false)?;
        Ok(())
    }

    fn set_mark(&mut self, mark: Mark) -> Result<(), ReplicaError> {
        Ok(self.write_mark(mark, false)?)
    }

    fn snapshot(&mut self) -> Result<Vec<Change>, ReplicaError> {
        let mut out: Vec<Change> = self
            .secrets
            .iter()
            .map(|(app, secret)| Change::Secret {
                app: *app,
                secret: *secret,
            })
            .collect();
        let mut sets: BTreeMap<SetKey, (TierSel, Entry)> = BTreeMap::new();
        for t in [TierSel::Warm, TierSel::Cold] {
            if let TierView::Ready(tab) = &self.tiers[t as usize] {
                for (k, e) in &tab.sets {
                    if k.app != SYSTEM_APP && sets.get(k).is_none_or(|(_, o)| o.version < e.version)
                    {
                        sets.insert(*k, (t, *e));
                    }
                }
            }
        }
        for (k, (t, e)) in sets {
            let data = self.read_set(t, &e)?;
            out.push(Change::Put {
                set: record(k, t, &e),
                data,
            });
        }
        for t in [TierSel::Warm, TierSel::Cold] {
            let (recs, st) = self.log_records(t)?;
            if recs.is_empty() {
                // Where the next record goes, so that the slave's
                // positions go on from this card's.
                out.push(Change::LogTrim {
                    tier: t as u32,
                    to: self.log_position(t, st.log_head),
                });
            }
            out.extend(recs.into_iter().map(|r| Change::LogAppend {
                app: r.app,
                object: r.object,
                tier: t as u32,
                offset: r.pos(),
                data: r.payload,
            }));
        }
        Ok(out)
    }
}
