//! Sessions and credentials (seed 001, claims 9, 17-20): OPEN allocates a
//! protection entry for an application and, on its first open, makes the
//! secret its later requests are signed with; every other request is
//! authenticated against the session it names.

use super::*;
use hitless_proto::auth;
use hitless_proto::msg::{flags, tag};
use hitless_proto::tlv::Message;
use hitless_proto::Response;
use rand::RngCore;

impl<C: Controller> MemoryManager<C> {
    /// OPEN: a session for `app` with the permissions `want`; the first
    /// open of an application makes its secret, later ones must be signed
    /// with it.
    pub(super) fn open(&mut self, app: u32, want: u32, raw: &[u8], challenge: u64) -> R<Response> {
        if app == SYSTEM_APP {
            return fail(Code::Invalid, "application id 0 is the firmware's own");
        }
        if want & !flags::ALL != 0 {
            return fail(Code::Invalid, format!("unknown flags {want:#x}"));
        }
        // A free entry, else the application's own least recently used
        // session (a client that died without CLOSE must not lock its
        // application out; other applications' sessions are never taken).
        let free = (2..PT_ENTRIES as usize).find(|&i| self.sessions[i].is_none());
        let reuse = (2..PT_ENTRIES as usize)
            .filter_map(|i| {
                self.sessions[i]
                    .filter(|s| s.app == app)
                    .map(|s| (s.used, i))
            })
            .min()
            .map(|(_, i)| i);
        let Some(index) = free.or(reuse) else {
            return fail(
                Code::NoSession,
                "every protection entry is in use by other applications; CLOSE a session",
            );
        };
        let mut new_secret = None;
        match self.secrets.get(&app) {
            Some(secret) => {
                if !auth::verify(raw, secret, challenge) {
                    return fail(
                        Code::AuthFailed,
                        format!("OPEN of application {app}: wrong MAC"),
                    );
                }
            }
            None => {
                // First open: the card makes the application's secret and
                // keeps it in the cold tier (it must outlive power cycles).
                let mut s = [0u8; SECRET_BYTES];
                self.rng.fill_bytes(&mut s);
                self.ctl.scratch_write(STAGING, &s).map_err(ctl)?;
                let e = Entry {
                    endpoint: 0,
                    stage: NEVER,
                    flags: flags::COLD,
                    len: SECRET_BYTES as u32,
                    crc: crc32c(&s),
                    offset: 0,
                    version: 0,
                };
                let (base, _) = self.ctl.scratch();
                let fw_key = self.fw_key;
                self.store(
                    TierSel::Cold,
                    SetKey {
                        app: SYSTEM_APP,
                        object: app,
                    },
                    e,
                    (base + STAGING as u64, fw_key),
                )?;
                self.secrets.insert(app, s);
                self.journal(|| crate::replication::Change::Secret { app, secret: s });
                new_secret = Some(s);
            }
        }
        let mut perms = perm::VALID | perm::WARM | perm::COLD | perm::REGION;
        if want & flags::READ != 0 {
            perms |= perm::READ;
        }
        if want & flags::WRITE != 0 {
            perms |= perm::WRITE | perm::COMMIT;
        }
        if want & flags::LOG != 0 {
            perms |= perm::LOG;
        }
        let tag_bits: u32 = self.rng.gen::<u32>() >> contract::PT_INDEX_BITS;
        let key = program(
            &mut self.ctl,
            index as u32,
            tag_bits,
            0,
            self.geometry.region_size,
            perms,
        )
        .map_err(|e| Failure::new(Code::Device, e.to_string()))?;
        self.opened = self.opened.wrapping_add(1);
        let handle = (self.opened << contract::PT_INDEX_BITS) | index as u32;
        if let Some(old) = self.sessions[index] {
            tracing::info!(
                app,
                handle = old.handle,
                "session replaced (least recently used)"
            );
        }
        self.sessions[index] = Some(Session {
            handle,
            app,
            perms: want,
            key,
            used: self.counters.requests,
        });
        tracing::info!(app, handle, "session opened");
        Ok(Response::Opened {
            handle,
            key,
            app,
            secret: new_secret.map(|s| s.to_vec()),
        })
    }

    /// The session a signed request names, if its MAC is right.
    pub(super) fn authenticate(
        &mut self,
        m: &Message<'_>,
        raw: &[u8],
        challenge: u64,
    ) -> R<Session> {
        let handle = m
            .u32_or(tag::HANDLE, u32::MAX)
            .map_err(|e| Failure::new(Code::BadMessage, e.to_string()))?;
        let index = (handle & (PT_ENTRIES - 1)) as usize;
        let Some(s) = self.sessions[index].filter(|s| s.handle == handle) else {
            return fail(
                Code::AuthFailed,
                format!("no session with handle {handle:#x}"),
            );
        };
        let Some(secret) = self.secrets.get(&s.app) else {
            return fail(Code::AuthFailed, "the application has no credentials");
        };
        if !auth::verify(raw, secret, challenge) {
            return fail(
                Code::AuthFailed,
                "wrong MAC (wrong secret or stale challenge)",
            );
        }
        let used = self.counters.requests;
        if let Some(live) = self.sessions[index].as_mut() {
            live.used = used;
        }
        Ok(s)
    }

    pub(super) fn need(s: &Session, f: u32, what: &str) -> R<()> {
        if s.perms & f == 0 {
            return fail(
                Code::Permission,
                format!("the session was not opened for {what}"),
            );
        }
        Ok(())
    }
}
