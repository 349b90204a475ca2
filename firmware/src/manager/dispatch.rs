//! Requests: a message is decoded into a typed [`Request`] (the protocol
//! crate's), authenticated where it needs a session, run, and answered
//! with a typed [`Response`] or a [`Failure`].

use super::*;
use hitless_proto::message::{Failure, Request, RequestError};
use hitless_proto::msg::flags;
use hitless_proto::tlv::Message;
use hitless_proto::{Response, StatusReport, TierReport};

impl<C: Controller> MemoryManager<C> {
    /// Handle one request message; the reply goes back through the mailbox.
    /// Every request, good or bad, consumes the challenge.
    pub fn handle(&mut self, host: &mut dyn HostMemory, req: &[u8]) -> Reply {
        let challenge = self.nonce;
        self.nonce = self.rng.gen();
        self.answer(host, req, challenge, None)
    }

    /// Handle one request of a remote backup reader (seed 001, claims 1,
    /// 4, 9, 16-19): authenticated as on the mailbox path, but against the
    /// reader's connection's `challenge` (the mailbox's is left to the
    /// local host), and read-only: STATUS, OPEN without WRITE of an
    /// application that has credentials, CLOSE, LIST, RESTORE, LOG_READ
    /// and LOG_TRIM, whose data must go to `window` (address, bytes).
    pub fn handle_backup(
        &mut self,
        host: &mut dyn HostMemory,
        req: &[u8],
        challenge: u64,
        window: (u64, u32),
    ) -> Reply {
        self.answer(host, req, challenge, Some(window))
    }

    fn answer(
        &mut self,
        host: &mut dyn HostMemory,
        req: &[u8],
        challenge: u64,
        backup_window: Option<(u64, u32)>,
    ) -> Reply {
        self.counters.requests = self.counters.requests.wrapping_add(1);
        self.peer_op = None;
        let kind = req.get(3).copied().unwrap_or(0);
        let answer = match Message::decode(req) {
            Err(e) => Err(Failure::new(Code::BadMessage, e.to_string())),
            Ok(m) => match backup_window.map(|w| self.backup_allows(&m, w)) {
                Some(Err(f)) => Err(f),
                _ => self.dispatch(host, &m, req, challenge),
            },
        };
        let (code, b) = match answer {
            Ok(r) => (Code::Ok, r.encode(kind)),
            Err(f) => {
                if f.code == Code::AuthFailed {
                    self.counters.auth_fails = self.counters.auth_fails.wrapping_add(1);
                }
                tracing::debug!(kind, code = ?f.code, "{}", f.detail);
                (f.code, f.encode(kind))
            }
        };
        Reply {
            code,
            message: b.finish(),
        }
    }

    fn dispatch(
        &mut self,
        host: &mut dyn HostMemory,
        m: &Message<'_>,
        raw: &[u8],
        challenge: u64,
    ) -> R<Response> {
        let decode = |m: &Message<'_>| {
            Request::decode(m).map_err(|e: RequestError| Failure::new(e.code(), e.to_string()))
        };
        // A session request is authenticated before its fields are read:
        // an unauthenticated sender learns nothing about them.
        if !Request::needs_session(m.kind) {
            return match decode(m)? {
                Request::Status => Ok(Response::Status(self.status())),
                Request::Stage { stage } => Ok(self.announce(stage)),
                Request::Open { app, flags } => self.open(app, flags, raw, challenge),
                // The image manager answers these in front of the memory
                // manager where the card has one (hitless-sim serve).
                other if Request::is_image(other.kind()) => fail(
                    Code::UnknownRequest,
                    "this card runs no image manager (hitless-sim serve starts one with --image-trust KEY.pub)"
                        .to_string(),
                ),
                // The replicated card's loop answers it before the manager.
                Request::Switchover { .. } => fail(
                    Code::UnknownRequest,
                    "SWITCHOVER: this card has no peer (not replicated)",
                ),
                Request::Promote { .. } => fail(
                    Code::UnknownRequest,
                    "PROMOTE: this card has no peer (not replicated)",
                ),
                other => fail(Code::UnknownRequest, format!("{other:?}")),
            };
        }
        let s = self.authenticate(m, raw, challenge)?;
        let r = decode(m)?;
        self.session_request(host, r, s)
    }

    /// What the backup reader service serves (its own rule, checked
    /// before the request's authentication: a refusal here says only
    /// what the service never does).
    fn backup_allows(&self, m: &Message<'_>, (base, size): (u64, u32)) -> R<()> {
        let read_only = |what: &str| {
            fail(
                Code::Permission,
                format!("the backup reader service is read-only: {what}"),
            )
        };
        let r = Request::decode(m).map_err(|e| Failure::new(e.code(), e.to_string()))?;
        let in_window = |addr: u64, cap: u32| {
            let end = base.saturating_add(u64::from(size));
            if addr < base || addr.saturating_add(u64::from(cap)) > end {
                return fail(
                    Code::Invalid,
                    format!(
                        "[{addr:#x}, +{cap:#x}) is outside the backup window [{base:#x}, +{size:#x})"
                    ),
                );
            }
            Ok(())
        };
        // This card's sets only: a request for a peer's memory would be
        // left for a loop that does not forward the reader's requests.
        let here = |endpoint: u32| match self.route(endpoint)? {
            peer::Route::Here => Ok(()),
            peer::Route::Peer(p) => read_only(&format!(
                "it reads this card's sets only, not node {p}'s (endpoint {endpoint})"
            )),
        };
        match r {
            Request::List { endpoint } => here(endpoint),
            Request::Status | Request::Close | Request::LogTrim { .. } => Ok(()),
            Request::Open { app, flags: f } => {
                if f & flags::WRITE != 0 {
                    return read_only("open without WRITE");
                }
                if !self.secrets.contains_key(&app) {
                    return read_only(&format!(
                        "application {app} is not registered on this card (it registers \
                         through the card's host)"
                    ));
                }
                Ok(())
            }
            Request::Restore {
                addr,
                cap,
                endpoint,
                ..
            } => {
                here(endpoint)?;
                in_window(addr, cap)
            }
            Request::LogRead { addr, cap, .. } => in_window(addr, cap),
            other => read_only(&format!(
                "it serves STATUS, OPEN, CLOSE, LIST, RESTORE, LOG_READ and LOG_TRIM, not request kind {}",
                other.kind()
            )),
        }
    }

    fn announce(&mut self, stage: u32) -> Response {
        self.announced = Some(stage);
        let mut sets = Vec::new();
        for t in [TierSel::Warm, TierSel::Cold] {
            if let TierView::Ready(tab) = &self.tiers[t as usize] {
                for (k, _) in tab.at_stage(stage) {
                    if k.app == SYSTEM_APP {
                        continue;
                    }
                    if let Some((tt, e)) = self.lookup(*k) {
                        if tt == t && e.stage == stage {
                            sets.push(info(k, t, &e, 0));
                        }
                    }
                }
            }
        }
        tracing::info!(stage, sets = sets.len(), "reboot stage announced");
        Response::Sets {
            sets,
            data_len: None,
        }
    }

    fn status(&mut self) -> StatusReport {
        let mut tiers = [TierReport::default(); 2];
        for t in [TierSel::Warm, TierSel::Cold] {
            let regs = self.tier_regs(t).ok();
            let (state, sets, image_bytes) = match &self.tiers[t as usize] {
                TierView::Ready(tab) => (
                    TierReport::READY,
                    tab.sets.len() as u32,
                    (tab.end() as u64 + tab.leaf_bytes() + tab.data_bytes()).min(u32::MAX as u64)
                        as u32,
                ),
                TierView::Lost => (TierReport::LOST, 0, 0),
                TierView::Foreign(_) => (TierReport::FOREIGN, 0, 0),
            };
            tiers[t as usize] = TierReport {
                state,
                boot_result: regs.map_or(0, |r| r.result as u32),
                sets,
                image_bytes,
                log_head: regs.map_or(0, |r| r.log_head),
                log_tail: regs.map_or(0, |r| r.log_tail),
            };
        }
        let c = self.counters;
        StatusReport {
            warm: tiers[0],
            cold: tiers[1],
            requests: c.requests,
            auth_fails: c.auth_fails,
            stores: c.stores,
            sessions_opened: self.opened,
            announced: self.announced,
            // A replicated card's loop adds it (the manager has no peer).
            peer: None,
            peer_notes: Default::default(),
        }
    }

    fn session_request(
        &mut self,
        host: &mut dyn HostMemory,
        r: Request,
        s: Session,
    ) -> R<Response> {
        self.replicable(&r)?;
        let key = |object| SetKey { app: s.app, object };
        match r {
            Request::Close => {
                let index = s.handle & (PT_ENTRIES - 1);
                program(&mut self.ctl, index, 0, 0, 0, 0)
                    .map_err(|e| Failure::new(Code::Device, chain(&e)))?;
                self.sessions[index as usize] = None;
                Ok(Response::Done)
            }
            Request::Store {
                object,
                endpoint,
                stage,
                flags: f,
                addr,
                len,
                crc,
            } => {
                Self::need(&s, flags::WRITE, "writing")?;
                Self::not_reserved(object)?;
                if len == 0 && crc != crc32c(&[]) {
                    return fail(Code::Invalid, "an empty set has CRC 0");
                }
                if let peer::Route::Peer(p) = self.route(endpoint)? {
                    return self.store_for_peer(
                        host,
                        p,
                        key(object),
                        endpoint,
                        stage,
                        f & flags::COLD != 0,
                        (addr, len, crc),
                    );
                }
                let e = Entry {
                    endpoint,
                    stage,
                    flags: f & flags::COLD,
                    len,
                    crc,
                    offset: 0,
                    version: 0,
                };
                self.store(TierSel::of_flags(f), key(object), e, (addr, s.key))?;
                self.journal_put(key(object))?;
                Ok(Response::Stored { len, crc })
            }
            Request::Delete { object, endpoint } => {
                Self::need(&s, flags::WRITE, "writing")?;
                Self::not_reserved(object)?;
                if let peer::Route::Peer(p) = self.route(endpoint)? {
                    return self.for_peer(peer::PeerOp::Delete {
                        peer: p,
                        app: s.app,
                        object,
                        endpoint,
                    });
                }
                if self.lookup(key(object)).is_none() {
                    return fail(Code::NotFound, format!("no set {}/{}", s.app, object));
                }
                self.remove(TierSel::Warm, key(object))?;
                self.remove(TierSel::Cold, key(object))?;
                let app = s.app;
                self.journal(|| crate::replication::Change::Delete { app, object });
                Ok(Response::Done)
            }
            Request::List { endpoint } => {
                Self::need(&s, flags::READ, "reading")?;
                if let peer::Route::Peer(p) = self.route(endpoint)? {
                    return self.for_peer(peer::PeerOp::List {
                        peer: p,
                        app: s.app,
                        endpoint,
                    });
                }
                let sets = self
                    .sets_of(s.app)
                    .into_iter()
                    .map(|(k, t, e)| info(&k, t, &e, 0))
                    .collect();
                Ok(Response::Sets {
                    sets,
                    data_len: None,
                })
            }
            Request::Restore {
                object,
                endpoint,
                addr,
                cap,
            } => {
                Self::need(&s, flags::READ, "reading")?;
                if let peer::Route::Peer(p) = self.route(endpoint)? {
                    return self.for_peer(peer::PeerOp::Fetch {
                        peer: p,
                        app: s.app,
                        object,
                        endpoint,
                        addr,
                        cap,
                    });
                }
                let Some((t, e)) = self.lookup(key(object)) else {
                    return self.missing(key(object));
                };
                if e.len > cap {
                    return Err(Failure::too_small(e.len.into()));
                }
                self.deliver(t, &e, addr)?;
                Ok(Response::Sets {
                    sets: vec![info(&key(object), t, &e, 0)],
                    data_len: None,
                })
            }
            Request::Fetch { stage, addr, cap } => {
                Self::need(&s, flags::READ, "reading")?;
                match self.announced {
                    Some(a) if a >= stage => {}
                    _ => {
                        return fail(
                            Code::NotYet,
                            format!("reboot stage {stage} has not been announced"),
                        )
                    }
                }
                let sets: Vec<_> = self
                    .sets_of(s.app)
                    .into_iter()
                    .filter(|(_, _, e)| e.stage == stage)
                    .collect();
                let needed: u64 = sets
                    .iter()
                    .map(|(_, _, e)| align8(e.len as usize) as u64)
                    .sum();
                if needed > cap.into() {
                    return Err(Failure::too_small(needed));
                }
                let mut at = 0u32;
                let mut infos = Vec::new();
                for (k, t, e) in sets {
                    let to = addr.checked_add(at as u64).ok_or_else(|| {
                        Failure::new(Code::Invalid, "the data buffer wraps the address space")
                    })?;
                    self.deliver(t, &e, to)?;
                    infos.push(info(&k, t, &e, at));
                    at += align8(e.len as usize) as u32;
                }
                Ok(Response::Sets {
                    sets: infos,
                    data_len: Some(at),
                })
            }
            Request::LogAppend {
                object,
                flags: f,
                addr,
                len,
            } => {
                Self::need(&s, flags::LOG, "the append log")?;
                self.log_append(host, s.app, object, TierSel::of_flags(f), f, addr, len)
            }
            Request::LogRead {
                flags: f,
                addr,
                cap,
            } => {
                Self::need(&s, flags::LOG, "the append log")?;
                self.log_read(host, s.app, TierSel::of_flags(f), addr, cap)
            }
            Request::LogTrim { flags: f, to } => {
                Self::need(&s, flags::LOG, "the append log")?;
                let t = TierSel::of_flags(f);
                // Positions in the pair's log (offsets on an unreplicated
                // card).
                let to = match to {
                    Some(to) => to,
                    None => self.log_ends(t)?.0,
                };
                self.log_trim_checked(t, s.app, to)?;
                self.journal(|| crate::replication::Change::LogTrim { tier: t as u32, to });
                let (head, tail) = self.log_ends(t)?;
                Ok(Response::Log {
                    records: Vec::new(),
                    head,
                    tail,
                })
            }
            Request::Format { flags: f } => {
                Self::need(&s, flags::WRITE, "writing")?;
                let t = TierSel::of_flags(f);
                // Keep the firmware's own records of a readable table; a
                // foreign or lost tier starts empty.
                let old = match &self.tiers[t as usize] {
                    TierView::Ready(tab) => tab.clone(),
                    _ => Table::default(),
                };
                let mut new = old.clone();
                new.sets.retain(|k, _| k.app == SYSTEM_APP);
                self.commit(t, &old, &new, None, (0, 0), &[])?;
                for k in old.sets.keys().filter(|k| k.app != SYSTEM_APP) {
                    let (app, object) = (k.app, k.object);
                    self.journal(|| crate::replication::Change::Delete { app, object });
                }
                // The heap roots of the tier went with the format.
                self.heap_rebuild();
                tracing::warn!(tier = t.name(), app = s.app, "tier formatted");
                Ok(Response::Done)
            }
            Request::HeapOpen {
                heap,
                heap_pages,
                keep,
                flags: f,
            } => {
                Self::need(&s, flags::READ, "reading")?;
                self.heap_open(s.app, heap, heap_pages, keep, f)
            }
            Request::HeapClose { heap } => self.heap_close(s.app, heap),
            Request::HeapStage {
                heap,
                pages,
                crcs,
                addr,
            } => {
                Self::need(&s, flags::WRITE, "writing")?;
                self.heap_stage(s.app, heap, &pages, &crcs, addr)
            }
            Request::HeapCommit {
                heap,
                addr,
                len,
                crc,
            } => {
                Self::need(&s, flags::WRITE, "writing")?;
                self.heap_commit(s.app, heap, addr, len, crc)
            }
            Request::HeapAbort { heap } => {
                Self::need(&s, flags::WRITE, "writing")?;
                self.heap_abort(s.app, heap)
            }
            Request::HeapRead {
                heap,
                pages,
                addr,
                cap,
            } => {
                Self::need(&s, flags::READ, "reading")?;
                self.heap_read(s.app, heap, &pages, addr, cap)
            }
            Request::HeapVersions { heap } => {
                Self::need(&s, flags::READ, "reading")?;
                self.heap_versions(s.app, heap)
            }
            Request::HeapCheckout {
                heap,
                version,
                addr,
                cap,
            } => {
                Self::need(&s, flags::READ, "reading")?;
                self.heap_checkout(s.app, heap, version, addr, cap)
            }
            Request::HeapChanged { heap, since, first } => {
                Self::need(&s, flags::READ, "reading")?;
                self.heap_changed(s.app, heap, since, first)
            }
            Request::HeapDelete { heap } => {
                Self::need(&s, flags::WRITE, "writing")?;
                self.heap_delete(s.app, heap)
            }
            other @ (Request::Status
            | Request::Stage { .. }
            | Request::Open { .. }
            | Request::ImageStatus
            | Request::ImageInstall { .. }
            | Request::ImageActivate
            | Request::ImageMarkGood
            | Request::ImageRollback
            | Request::ImageReboot
            | Request::ImageServe { .. }
            | Request::Switchover { .. }
            | Request::Promote { .. }) => fail(
                Code::UnknownRequest,
                format!("{other:?} is not a session request"),
            ),
        }
    }

    /// Object ids the heap store keeps its roots under are not sets a
    /// session may store or delete.
    pub(super) fn not_reserved(object: u32) -> R<()> {
        if crate::heap::is_reserved(object) {
            return fail(
                Code::Invalid,
                format!(
                    "object {object:#x}: ids {:#x} and above are the heap store's (HEAP_* requests)",
                    crate::heap::RESERVED_OBJECTS
                ),
            );
        }
        Ok(())
    }

    fn missing(&self, key: SetKey) -> R<Response> {
        let lost: Vec<&str> = [TierSel::Warm, TierSel::Cold]
            .into_iter()
            .filter(|t| matches!(self.tiers[*t as usize], TierView::Lost))
            .map(|t| t.name())
            .collect();
        if lost.is_empty() {
            fail(Code::NotFound, format!("no set {}/{}", key.app, key.object))
        } else {
            fail(
                Code::NotFound,
                format!(
                    "no set {}/{} (the {} tier was lost)",
                    key.app,
                    key.object,
                    lost.join(" and ")
                ),
            )
        }
    }
}
