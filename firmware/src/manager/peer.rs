//! Sets a host stores with its peer card's endpoint (seed 000, claims
//! 13-15): the manager's two sides.
//!
//! Origin (the card the host talks to): a STORE, RESTORE, DELETE or LIST
//! whose endpoint
//! names a peer of this card is authenticated and checked here as any
//! other, then left as a [`PeerOp`] for the card's loop, which sends it
//! over the card-to-card link and answers the host with the peer's answer
//! (`replication::peer_sets`). The manager's own reply to such a request
//! is a failure, so a loop that does not forward never acknowledges it.
//!
//! Peer (the card whose memory holds the set): [`MemoryManager::store_held`],
//! [`MemoryManager::fetch_held`], [`MemoryManager::delete_held`] and
//! [`MemoryManager::list_held`] serve the origin's requests. A set
//! held for a peer is an ordinary record of this card's table with the
//! application id, the object id and the endpoint (this card's node id)
//! and the [`HELD`] flag: a full snapshot from the master keeps it (it is
//! not the master's state), and when this card becomes master it is one
//! of its own sets.

use super::*;
use hitless_proto::link::{SetRecord, MAX_LISTED};
use hitless_proto::Response;

/// The record flag of a set held for a peer (beside `flags::COLD`; not a
/// request flag).
pub const HELD: u32 = 1 << 31;

/// Which endpoint values name which card.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// This card's node id (0 on an unreplicated card).
    pub own: u32,
    /// The peers whose memory a set may be stored in.
    pub peers: Vec<u32>,
}

/// Where an endpoint sends a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// This card's memory (endpoint 0 or this card's node id).
    Here,
    /// The memory of peer node `0`.
    Peer(u32),
}

impl Endpoints {
    /// `endpoint`'s card; an endpoint that names none is `Invalid`.
    pub fn route(&self, endpoint: u32) -> R<Route> {
        if endpoint == 0 || endpoint == self.own {
            return Ok(Route::Here);
        }
        if self.peers.contains(&endpoint) {
            return Ok(Route::Peer(endpoint));
        }
        if self.peers.is_empty() {
            return fail(
                Code::Invalid,
                format!(
                    "endpoint {endpoint} names no card: this card has no peer (0 is this card)"
                ),
            );
        }
        fail(
            Code::Invalid,
            format!(
                "endpoint {endpoint} names no card of this pair (this card is node {}, its peers {:?}; 0 is this card)",
                self.own, self.peers
            ),
        )
    }
}

/// A request the card's loop sends to a peer card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerOp {
    /// Store `data` as `set` in peer `peer`'s memory; answer the host with
    /// `STORED` when the peer has it durable.
    Store {
        peer: u32,
        set: SetRecord,
        data: Vec<u8>,
    },
    /// Fetch the set from peer `peer` into the host buffer `addr` of
    /// `cap` bytes.
    Fetch {
        peer: u32,
        app: u32,
        object: u32,
        endpoint: u32,
        addr: u64,
        cap: u32,
    },
    /// Delete the set from peer `peer`'s memory; answer `DONE` when the
    /// peer's delete is durable.
    Delete {
        peer: u32,
        app: u32,
        object: u32,
        endpoint: u32,
    },
    /// The sets peer `peer` holds for `app`.
    List { peer: u32, app: u32, endpoint: u32 },
}

impl PeerOp {
    pub fn peer(&self) -> u32 {
        match self {
            PeerOp::Store { peer, .. }
            | PeerOp::Fetch { peer, .. }
            | PeerOp::Delete { peer, .. }
            | PeerOp::List { peer, .. } => *peer,
        }
    }
}

/// What the manager answers a request it left to the loop (never seen by
/// a host unless the loop does not forward).
fn forwarded(peer: u32) -> Failure {
    Failure::new(
        Code::Device,
        format!("the request is for node {peer}: this card's loop does not forward it"),
    )
}

impl<C: Controller> MemoryManager<C> {
    /// Which endpoints name this card and its peers (a replicated card's
    /// loop sets them; an unreplicated card has endpoint 0 only).
    pub fn set_endpoints(&mut self, endpoints: Endpoints) {
        self.endpoints = endpoints;
    }

    /// The request the last `handle` left for a peer card, if any.
    pub fn take_peer_op(&mut self) -> Option<PeerOp> {
        self.peer_op.take()
    }

    pub(super) fn route(&self, endpoint: u32) -> R<Route> {
        self.endpoints.route(endpoint)
    }

    /// A session's STORE for peer `peer`: the bytes read from the host
    /// buffer and checked against the request's CRC here, so the peer
    /// gets exactly what the host gave.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn store_for_peer(
        &mut self,
        host: &mut dyn HostMemory,
        peer: u32,
        key: SetKey,
        endpoint: u32,
        stage: u32,
        cold: bool,
        (addr, len, crc): (u64, u32, u32),
    ) -> R<Response> {
        if len > MAX_TRANSFER {
            return fail(
                Code::Invalid,
                format!("a set stored on a peer card is at most {MAX_TRANSFER} bytes, not {len}"),
            );
        }
        let mut data = vec![0u8; len as usize];
        host.read(addr, &mut data).map_err(host_err)?;
        if crc32c(&data) != crc {
            return fail(
                Code::Invalid,
                format!(
                    "the set's CRC is {:#010x}, the request says {crc:#010x}",
                    crc32c(&data)
                ),
            );
        }
        self.peer_op = Some(PeerOp::Store {
            peer,
            set: SetRecord {
                app: key.app,
                object: key.object,
                endpoint,
                stage,
                tier: u32::from(cold),
                version: 0,
                crc,
                stored_us: 0,
            },
            data,
        });
        Err(forwarded(peer))
    }

    /// A session's RESTORE, DELETE or LIST for peer `op.peer()`: left
    /// for the loop.
    pub(super) fn for_peer(&mut self, op: PeerOp) -> R<Response> {
        let peer = op.peer();
        self.peer_op = Some(op);
        Err(forwarded(peer))
    }

    /// Store a set a peer card sends for its host (claim 13): in this
    /// card's memory, with its application id, object id and endpoint
    /// (claims 14, 15), durable when this returns. Refused: application 0,
    /// the heap store's object ids, a CRC that differs, an endpoint that is
    /// not this card, and a key this card holds as the master's set (a key
    /// names one set in the pair; delete that one first).
    pub fn store_held(&mut self, set: &SetRecord, data: &[u8]) -> R<SetRecord> {
        if set.app == SYSTEM_APP {
            return fail(Code::Invalid, "application 0 is the firmware's own");
        }
        Self::not_reserved(set.object)?;
        if self.route(set.endpoint)? != Route::Here {
            return fail(
                Code::Invalid,
                format!(
                    "endpoint {} is not this card (node {})",
                    set.endpoint, self.endpoints.own
                ),
            );
        }
        if crc32c(data) != set.crc {
            return fail(
                Code::Invalid,
                format!("set {}/{}: CRC differs", set.app, set.object),
            );
        }
        let key = SetKey {
            app: set.app,
            object: set.object,
        };
        if let Some((_, e)) = self.lookup(key) {
            if e.flags & HELD == 0 {
                return fail(
                    Code::Invalid,
                    format!(
                        "set {}/{} on node {} is the master's own (replicated); a key names one \
                         set in the pair: delete it first",
                        set.app, set.object, self.endpoints.own
                    ),
                );
            }
        }
        let t = if set.tier == 1 {
            TierSel::Cold
        } else {
            TierSel::Warm
        };
        self.store_flagged(t, key, set.endpoint, set.stage, HELD, data)?;
        let (t, e) = self.lookup(key).ok_or_else(|| {
            Failure::new(Code::Device, "the set is not in the table after its commit")
        })?;
        Ok(super::replica::record(key, t, &e))
    }

    /// This card became its pair's master: the sets it held for a peer
    /// are its own from now on (they lose the `HELD` mark, so they are
    /// the replicated state like any set: a later master's snapshot
    /// replaces them, a later master's delete removes them). One index
    /// commit per tier that has any; returns how many.
    pub fn adopt_held(&mut self) -> R<usize> {
        let mut adopted = 0;
        for t in [TierSel::Warm, TierSel::Cold] {
            let TierView::Ready(old) = &self.tiers[t as usize] else {
                continue;
            };
            let mut new = old.clone();
            let mut n = 0;
            for e in new.sets.values_mut().filter(|e| e.flags & HELD != 0) {
                e.flags &= !HELD;
                n += 1;
            }
            if n > 0 {
                let old = old.clone();
                self.commit(t, &old, &new, None, (0, 0), &[])?;
                adopted += n;
            }
        }
        Ok(adopted)
    }

    /// A set this card holds for a peer, with its bytes (at most `cap`).
    pub fn fetch_held(&mut self, app: u32, object: u32, cap: u32) -> R<(SetRecord, Vec<u8>)> {
        let key = SetKey { app, object };
        let Some((t, e)) = self.lookup(key).filter(|(_, e)| e.flags & HELD != 0) else {
            return fail(
                Code::NotFound,
                format!(
                    "node {} holds no set {app}/{object} for a peer",
                    self.endpoints.own
                ),
            );
        };
        if e.len > cap {
            return Err(Failure::too_small(e.len.into()));
        }
        let data = self.read_set(t, &e)?;
        Ok((super::replica::record(key, t, &e), data))
    }
}

impl<C: Controller> MemoryManager<C> {
    /// Delete a set this card holds for a peer (only a held one: the
    /// master's replicated sets are not the origin's to delete), durable
    /// when this returns. Nothing is journaled: a held set is not the
    /// replicated state.
    pub fn delete_held(&mut self, app: u32, object: u32) -> R<()> {
        let key = SetKey { app, object };
        if self
            .lookup(key)
            .filter(|(_, e)| e.flags & HELD != 0)
            .is_none()
        {
            return fail(
                Code::NotFound,
                format!(
                    "node {} holds no set {app}/{object} for a peer",
                    self.endpoints.own
                ),
            );
        }
        self.remove(TierSel::Warm, key)?;
        self.remove(TierSel::Cold, key)
    }

    /// One page of the sets this card holds for a peer's application
    /// `app`, by object id from `from` on: at most [`MAX_LISTED`], and
    /// the object id the next page starts at if there are more.
    pub fn list_held(&self, app: u32, from: u32) -> (Vec<SetInfo>, Option<u32>) {
        let mut held = self
            .sets_of(app)
            .into_iter()
            .filter(|(k, _, e)| k.object >= from && e.flags & HELD != 0);
        let page: Vec<SetInfo> = held
            .by_ref()
            .take(MAX_LISTED)
            .map(|(k, t, e)| info(&k, t, &e, 0))
            .collect();
        (page, held.next().map(|(k, _, _)| k.object))
    }
}

/// The host's answer to a RESTORE the peer served: the set's record as
/// this protocol reports it.
pub fn set_info(set: &SetRecord, len: u32) -> SetInfo {
    SetInfo {
        app: set.app,
        object: set.object,
        endpoint: set.endpoint,
        stage: set.stage,
        tier: if set.tier == 1 {
            TierSel::Cold
        } else {
            TierSel::Warm
        },
        len,
        crc: set.crc,
        data_offset: 0,
    }
}
