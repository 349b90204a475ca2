//! A client that follows the master of a replicated pair (issue 16,
//! docs/replication.md "A client that follows the master").
//!
//! `pair:SPEC_A,SPEC_B[,…]` names the pair's cards (each a card spec the
//! driver opens itself: `vfio-user:`, `vfio:`, `uio:`, `uart:`). A new
//! member starts at each comma followed by a card kind and a colon, so a
//! `uio:` member keeps its own comma-separated options:
//! `pair:uio:/dev/uio0,dma=/dev/udmabuf0,iova=0x0,uio:/dev/uio1,dma=…`.
//!
//! [`PairClient`] talks to the card that is master. On `NotMaster`, or a
//! card that stops answering (transport error, timeout), it asks every
//! card's STATUS for its replication state, takes the card that says it is
//! master in the newest epoch seen so far (never one older than an epoch
//! any card reported before), reopens the application's sessions there
//! with the same secret (credentials are replicated) and retries the
//! request when that is safe:
//!
//! - `NotMaster` is answered before a request runs (the card checks it is
//!   master first), so any request refused with it is retried.
//! - A request whose answer was lost (the card died or hung during it) may
//!   have been applied and replicated. It is retried only when applying it
//!   twice gives what applying it once gives: STATUS, reads (restore, list,
//!   fetch, log read), a store (the whole set, by content), a trim (to an
//!   offset), a tier's format, a reopen with a secret. A log append, a
//!   delete (a second one answers `NOT_FOUND`), a first open that
//!   registers the application (its secret is in the lost answer) and a
//!   switchover are not: they fail with [`Error::MaybeApplied`].
//! - Log offsets are the card's own (a slave appends the master's records
//!   at its own offsets), so a trim to an offset read on an earlier master
//!   is refused: read the log again.
//! - The heap store and the image manager are not replicated: refused
//!   through `pair:`. Images are each card's own software (a rolling
//!   upgrade runs one card at a time), so `image` commands name one card.
//!
//! Every wait is bounded: a probe of one card by the shorter of the
//! timeout and [`PROBE_LIMIT`], the search for a master by the timeout
//! (from the moment the card was lost), and each request by the timeout.

use crate::error::{Error, Result};
use crate::firmware::{Client, Firmware, FwStatus, LogRead, OpenFlags, Secret, Session, Switched};
use crate::io::CardIo;
use hitless_proto::msg::SetInfo;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The spec prefix.
pub const PREFIX: &str = "pair:";

/// The longest one card's probe (connect and STATUS) may take: a hung card
/// must not hold up the search for the other one for a whole timeout.
pub const PROBE_LIMIT: Duration = Duration::from_secs(3);

/// Cards a pair spec may name (a pair, or a few cards replicating to each
/// other).
pub const MAX_CARDS: usize = 8;

/// The card kinds a member may be: the card itself, opened by the driver.
const MEMBER_KINDS: [&str; 4] = ["vfio-user", "vfio", "uio", "uart"];

/// Pause between two rounds of probes while no card is master (a takeover
/// under way).
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// The cards of a replicated pair, as a `pair:` spec names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairSpec {
    pub cards: Vec<String>,
}

impl PairSpec {
    /// Parse what follows `pair:`.
    pub fn parse(rest: &str) -> Result<Self> {
        let bad = |why: String| {
            Error::InvalidArgument(format!(
                "card \"pair:{rest}\": {why} (expected pair:SPEC,SPEC[,…] of card specs: \
                 vfio-user:, vfio:, uio: or uart:)"
            ))
        };
        let mut cards: Vec<String> = Vec::new();
        for piece in rest.split(',') {
            // `KIND:…` starts a card; anything else (`dma=…`, `irq`) is an
            // option of the `uio:` card before it.
            let starts_member = piece.split_once(':').is_some_and(|(k, _)| !k.contains('='));
            match cards.last_mut() {
                Some(last) if !starts_member && last.starts_with("uio:") => {
                    last.push(',');
                    last.push_str(piece);
                }
                _ => cards.push(piece.to_string()),
            }
        }
        for c in &cards {
            let kind = c.split_once(':').map(|(k, _)| k);
            match kind {
                Some("pair") => return Err(bad(format!("{c:?}: a pair inside a pair"))),
                Some(k) if MEMBER_KINDS.contains(&k) && c.len() > k.len() + 1 => {}
                _ => return Err(bad(format!("{c:?} is not a card spec"))),
            }
        }
        if cards.len() < 2 {
            return Err(bad(format!(
                "{} card(s): a pair names at least two",
                cards.len()
            )));
        }
        if cards.len() > MAX_CARDS {
            return Err(bad(format!("{} cards: at most {MAX_CARDS}", cards.len())));
        }
        for (i, c) in cards.iter().enumerate() {
            if cards[..i].contains(c) {
                return Err(bad(format!("{c:?} named twice")));
            }
        }
        Ok(Self { cards })
    }
}

/// A card's firmware client, as the pair client keeps it.
pub type CardClient = Client<Box<dyn CardIo + Send>>;

/// What the search for the master has learned: the newest epoch any card
/// reported (a card claiming mastership in an older one is stale) and which
/// card is which node.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub epoch: u64,
    pub nodes: BTreeMap<u32, usize>,
}

/// The master found: its index in the spec, node, epoch and client.
pub struct Master {
    pub index: usize,
    pub node: u32,
    pub epoch: u64,
    pub fw: CardClient,
}

impl PairSpec {
    /// Find the master: probe the cards (the card of node `hint` first,
    /// when known) until one reports itself master in an epoch at least
    /// the newest seen, at most `limit`; each request on the found card is
    /// bounded by `timeout`.
    pub fn find_master(
        &self,
        seen: &mut Seen,
        hint: Option<u32>,
        timeout: Duration,
        limit: Duration,
    ) -> Result<Master> {
        let start = Instant::now();
        let mut order: Vec<usize> = (0..self.cards.len()).collect();
        if let Some(first) = hint.and_then(|n| seen.nodes.get(&n).copied()) {
            order.retain(|i| *i != first);
            order.insert(0, first);
        }
        let mut said: Vec<String> = vec![String::new(); self.cards.len()];
        loop {
            let mut best: Option<Master> = None;
            for &i in &order {
                let left = limit.saturating_sub(start.elapsed());
                let probe = timeout
                    .min(PROBE_LIMIT)
                    .min(left)
                    .max(Duration::from_millis(50));
                let spec = &self.cards[i];
                let opened = crate::spec::open_card(spec, probe)
                    .and_then(|io| Client::open(io, probe))
                    .and_then(|mut fw| fw.status().map(|st| (fw, st)));
                let (fw, st) = match opened {
                    Ok(x) => x,
                    Err(e) => {
                        said[i] = format!("{spec}: {}", e.chain());
                        continue;
                    }
                };
                let Some(p) = st.peer else {
                    said[i] = format!("{spec}: not replicated (no peer state)");
                    continue;
                };
                seen.nodes.insert(p.node, i);
                seen.epoch = seen.epoch.max(p.epoch);
                said[i] = format!(
                    "{spec}: node {} {} in epoch {}",
                    p.node,
                    p.role_name(),
                    p.epoch
                );
                let master = p.role == 0 && p.epoch >= seen.epoch;
                if master && best.as_ref().is_none_or(|b| p.epoch > b.epoch) {
                    best = Some(Master {
                        index: i,
                        node: p.node,
                        epoch: p.epoch,
                        fw,
                    });
                }
            }
            // A master found early in the round may be older than an epoch
            // a later card reported.
            if let Some(m) = best.filter(|m| m.epoch >= seen.epoch) {
                // Reopened with the whole timeout for its requests (the
                // probe's transport waits at most the probe's); the card
                // serves one client at a time, so the probe goes first.
                let Master {
                    index,
                    node,
                    epoch,
                    fw,
                } = m;
                drop(fw);
                let spec = &self.cards[index];
                let fw = crate::spec::open_card(spec, timeout)
                    .and_then(|io| Client::open(io, timeout))?;
                tracing::info!(node, epoch, card = %spec, "pair: master found");
                return Ok(Master {
                    index,
                    node,
                    epoch,
                    fw,
                });
            }
            if start.elapsed() + ROUND_PAUSE >= limit {
                return Err(Error::NoMaster {
                    after: limit,
                    cards: said.join("; "),
                });
            }
            std::thread::sleep(ROUND_PAUSE);
        }
    }
}

/// May a request whose answer was lost be sent again?
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Applying it twice is applying it once.
    Safe,
    /// It may have been applied; a second one would be a second change.
    Unsafe,
    /// Only on the card it was meant for (a trim to that card's offsets):
    /// never followed to another master.
    SameCard,
}

/// An application's session as the caller holds it, and where it is open.
struct Followed {
    app: u32,
    flags: OpenFlags,
    secret: Secret,
    /// The session on the card of `generation`.
    on: Option<(u64, Session)>,
    /// Per tier (warm, cold): the generation of the card whose log the
    /// offsets the application holds came from.
    log_from: [Option<u64>; 2],
}

/// The firmware of whichever card of a pair is master (see the module).
pub struct PairClient {
    pair: PairSpec,
    timeout: Duration,
    seen: Seen,
    master: Option<Master>,
    /// Counts the masters this client has talked to (a session or a log
    /// offset belongs to one).
    generation: u64,
    sessions: HashMap<u32, Followed>,
    next_handle: u32,
}

/// Is the card gone (or hung) rather than refusing?
fn lost(e: &Error) -> bool {
    matches!(e, Error::Transport { .. } | Error::Timeout { .. })
}

impl PairClient {
    /// Find the pair's master (waiting at most `timeout` for one) and
    /// connect to it.
    pub fn open(pair: PairSpec, timeout: Duration) -> Result<Self> {
        let mut c = Self {
            pair,
            timeout,
            seen: Seen::default(),
            master: None,
            generation: 0,
            sessions: HashMap::new(),
            next_handle: 1,
        };
        c.connect(None, Instant::now() + timeout)?;
        Ok(c)
    }

    /// The master this client talks to now: node and epoch.
    pub fn master(&self) -> Option<(u32, u64)> {
        self.master.as_ref().map(|m| (m.node, m.epoch))
    }

    fn connect(&mut self, hint: Option<u32>, deadline: Instant) -> Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = self
            .pair
            .find_master(&mut self.seen, hint, self.timeout, left)?;
        self.generation += 1;
        self.master = Some(m);
        Ok(())
    }

    /// The master's client and the caller's session on it (reopened there
    /// when the master changed).
    fn ready(
        &mut self,
        s: Option<&Session>,
        hint: Option<u32>,
        deadline: Instant,
    ) -> Result<(&mut CardClient, Option<Session>)> {
        if self.master.is_none() {
            self.connect(hint, deadline)?;
        }
        let generation = self.generation;
        let m = self
            .master
            .as_mut()
            .ok_or_else(|| Error::transport_msg("no master"))?;
        let Some(s) = s else {
            return Ok((&mut m.fw, None));
        };
        let f = self.sessions.get_mut(&s.handle).ok_or_else(|| {
            Error::InvalidArgument(format!("session {} is not open on this pair", s.handle))
        })?;
        let on = match &f.on {
            Some((g, real)) if *g == generation => real.clone(),
            _ => {
                let (real, _) = m.fw.open_app(f.app, f.flags, Some(&f.secret))?;
                tracing::info!(
                    app = f.app,
                    node = m.node,
                    epoch = m.epoch,
                    "pair: session reopened on the master"
                );
                f.on = Some((generation, real.clone()));
                real
            }
        };
        Ok((&mut m.fw, Some(on)))
    }

    /// Run `op` on the master, following it on `NotMaster` or a lost card
    /// and retrying as `retry` allows.
    fn run<R>(
        &mut self,
        what: &'static str,
        retry: Retry,
        s: Option<&Session>,
        mut op: impl FnMut(&mut CardClient, Option<&Session>) -> Result<R>,
    ) -> Result<R> {
        // Set at the first refusal or loss: following takes at most the
        // timeout from then (plus the last request's own).
        let mut deadline: Option<Instant> = None;
        let mut hint = None;
        loop {
            let limit = match deadline {
                Some(d) if Instant::now() >= d => {
                    return Err(Error::NoMaster {
                        after: self.timeout,
                        cards: format!("{what}: no card stayed master"),
                    })
                }
                Some(d) => d,
                None => Instant::now() + self.timeout,
            };
            let (fw, real) = match self.ready(s, hint, limit) {
                Ok(x) => x,
                Err(Error::NotMaster { master, epoch, .. }) => {
                    self.forget(master, epoch, &mut hint);
                    deadline = Some(limit);
                    continue;
                }
                Err(e) if lost(&e) => {
                    self.forget(None, None, &mut hint);
                    deadline = Some(limit);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let e = match op(fw, real.as_ref()) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            match e {
                Error::NotMaster { master, epoch, .. } if retry != Retry::SameCard => {
                    // Refused before it ran: safe to send to the master.
                    tracing::info!(what, ?master, ?epoch, "pair: not master, following");
                    self.forget(master, epoch, &mut hint);
                    if master.is_none() {
                        // A takeover under way (or a master whose lease ran
                        // out, still saying master): give it a moment.
                        std::thread::sleep(ROUND_PAUSE);
                    }
                    deadline.get_or_insert_with(|| Instant::now() + self.timeout);
                }
                e @ Error::NotMaster { .. } => {
                    self.master = None;
                    return Err(e);
                }
                e if lost(&e) => {
                    let card = self.describe();
                    self.forget(None, None, &mut hint);
                    if retry != Retry::Safe {
                        return Err(Error::MaybeApplied {
                            what,
                            card,
                            cause: Box::new(e),
                        });
                    }
                    tracing::warn!(what, error = %e.chain(), "pair: card lost, following the master");
                    // The search gets its whole time from the loss on.
                    deadline.get_or_insert_with(|| Instant::now() + self.timeout);
                }
                e => return Err(e),
            }
        }
    }

    /// Drop the card: the next request looks for the master, `master`
    /// (as the refusal named it) first.
    fn forget(&mut self, master: Option<u32>, epoch: Option<u64>, hint: &mut Option<u32>) {
        if let Some(e) = epoch {
            self.seen.epoch = self.seen.epoch.max(e);
        }
        *hint = master;
        self.master = None;
    }

    fn followed(&mut self, s: &Session) -> Result<&mut Followed> {
        self.sessions.get_mut(&s.handle).ok_or_else(|| {
            Error::InvalidArgument(format!("session {} is not open on this pair", s.handle))
        })
    }
}

fn tier_index(cold: bool) -> usize {
    usize::from(cold)
}

fn no_session() -> Error {
    Error::InvalidArgument("no session".into())
}

/// Why `image` commands are refused through `pair:`.
fn images_per_card(pair: &PairSpec) -> Error {
    Error::InvalidArgument(format!(
        "images are per card, not replicated (each card runs its own software; a pair is \
         upgraded one card at a time): name one card of the pair, e.g. --card {}",
        pair.cards
            .first()
            .map_or("vfio-user:SOCKET", String::as_str)
    ))
}

impl Firmware for PairClient {
    fn images_refused(&self) -> Error {
        images_per_card(&self.pair)
    }
    fn status(&mut self) -> Result<FwStatus> {
        self.run("STATUS", Retry::Safe, None, |fw, _| fw.status())
    }

    fn open_app(
        &mut self,
        app: u32,
        what: OpenFlags,
        secret: Option<&Secret>,
    ) -> Result<(Session, Option<Secret>)> {
        // Registering (no secret) hands the secret out once, in the
        // answer: if that is lost, a second OPEN cannot get it back.
        let retry = if secret.is_some() {
            Retry::Safe
        } else {
            Retry::Unsafe
        };
        let (real, fresh) =
            self.run("OPEN", retry, None, |fw, _| fw.open_app(app, what, secret))?;
        let Some(key) = fresh.or(secret.copied()) else {
            return Err(Error::BadCompletion("OPEN without a secret".into()));
        };
        let handle = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        self.sessions.insert(
            handle,
            Followed {
                app,
                flags: what,
                secret: key,
                on: Some((self.generation, real.clone())),
                log_from: [None; 2],
            },
        );
        Ok((Session::with_secret(app, handle, real.key, key), fresh))
    }

    fn close(&mut self, s: &Session) -> Result<()> {
        let Some(f) = self.sessions.remove(&s.handle) else {
            return Ok(());
        };
        // A session on an earlier master is gone with that master's role.
        let now = self.generation;
        match (f.on, self.master.as_mut()) {
            (Some((g, real)), Some(m)) if g == now => m.fw.close(&real),
            _ => Ok(()),
        }
    }

    fn store(
        &mut self,
        s: &Session,
        object: u32,
        endpoint: u32,
        stage: u32,
        cold: bool,
        data: &[u8],
    ) -> Result<()> {
        self.run("STORE", Retry::Safe, Some(s), |fw, r| {
            fw.store(
                r.ok_or_else(no_session)?,
                object,
                endpoint,
                stage,
                cold,
                data,
            )
        })
    }

    fn delete(&mut self, s: &Session, object: u32) -> Result<()> {
        self.delete_from(s, object, 0)
    }

    fn delete_from(&mut self, s: &Session, object: u32, endpoint: u32) -> Result<()> {
        self.run("DELETE", Retry::Unsafe, Some(s), |fw, r| {
            fw.delete_from(r.ok_or_else(no_session)?, object, endpoint)
        })
    }

    fn restore(&mut self, s: &Session, object: u32) -> Result<(SetInfo, Vec<u8>)> {
        self.restore_from(s, object, 0)
    }

    /// A node id as the endpoint names the same card whichever is master
    /// (the master's own id is the master itself, the other one's is its
    /// memory, reached over the link).
    fn restore_from(
        &mut self,
        s: &Session,
        object: u32,
        endpoint: u32,
    ) -> Result<(SetInfo, Vec<u8>)> {
        self.run("RESTORE", Retry::Safe, Some(s), |fw, r| {
            fw.restore_from(r.ok_or_else(no_session)?, object, endpoint)
        })
    }

    fn list(&mut self, s: &Session) -> Result<Vec<SetInfo>> {
        self.list_from(s, 0)
    }

    fn list_from(&mut self, s: &Session, endpoint: u32) -> Result<Vec<SetInfo>> {
        self.run("LIST", Retry::Safe, Some(s), |fw, r| {
            fw.list_from(r.ok_or_else(no_session)?, endpoint)
        })
    }

    fn announce(&mut self, stage: u32) -> Result<Vec<SetInfo>> {
        self.run("STAGE", Retry::Safe, None, |fw, _| fw.announce(stage))
    }

    fn fetch(&mut self, s: &Session, stage: u32) -> Result<Vec<(SetInfo, Vec<u8>)>> {
        self.run("FETCH", Retry::Safe, Some(s), |fw, r| {
            fw.fetch(r.ok_or_else(no_session)?, stage)
        })
    }

    fn log_append(
        &mut self,
        s: &Session,
        object: u32,
        cold: bool,
        overwrite: bool,
        data: &[u8],
    ) -> Result<u32> {
        self.run("LOG_APPEND", Retry::Unsafe, Some(s), |fw, r| {
            fw.log_append(r.ok_or_else(no_session)?, object, cold, overwrite, data)
        })
    }

    fn log_read(&mut self, s: &Session, cold: bool) -> Result<LogRead> {
        let read = self.run("LOG_READ", Retry::Safe, Some(s), |fw, r| {
            fw.log_read(r.ok_or_else(no_session)?, cold)
        })?;
        let g = self.generation;
        self.followed(s)?.log_from[tier_index(cold)] = Some(g);
        Ok(read)
    }

    fn log_trim(&mut self, s: &Session, cold: bool, to: u32) -> Result<()> {
        let from = self.followed(s)?.log_from[tier_index(cold)];
        let stale = || {
            Error::InvalidArgument(format!(
                "log trim to {to:#x}: the offset was read on an earlier master of the pair \
                 (each card numbers its own log); read the log again"
            ))
        };
        if from.is_some_and(|g| g != self.generation || self.master.is_none()) {
            return Err(stale());
        }
        // Sent to another master, the offsets would name other records.
        self.run("LOG_TRIM", Retry::SameCard, Some(s), |fw, r| {
            fw.log_trim(r.ok_or_else(no_session)?, cold, to)
        })
    }

    fn format(&mut self, s: &Session, cold: bool) -> Result<()> {
        self.run("FORMAT", Retry::Safe, Some(s), |fw, r| {
            fw.format(r.ok_or_else(no_session)?, cold)
        })
    }

    fn auth_failures(&mut self) -> Result<u32> {
        self.run("MB_AUTH_FAILS", Retry::Safe, None, |fw, _| {
            fw.auth_failures()
        })
    }

    fn switchover(&mut self, to: Option<u32>) -> Result<Switched> {
        // The next request goes to the old master, which refuses it
        // (NotMaster, naming the new one): followed from there.
        self.run("SWITCHOVER", Retry::Unsafe, None, |fw, _| fw.switchover(to))
    }

    fn describe(&self) -> String {
        match &self.master {
            Some(m) => format!(
                "pair:{} (master: node {} in epoch {}, {})",
                self.pair.cards.join(","),
                m.node,
                m.epoch,
                self.pair.cards[m.index]
            ),
            None => format!("pair:{}", self.pair.cards.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_spec_names_its_cards_and_uio_options_stay_with_their_card() {
        let p = PairSpec::parse("vfio-user:/a/card.sock,vfio-user:/b/card.sock").unwrap();
        assert_eq!(
            p.cards,
            ["vfio-user:/a/card.sock", "vfio-user:/b/card.sock"]
        );
        let p = PairSpec::parse(
            "uio:/dev/uio0,dma=/dev/udmabuf0,iova=0x0,irq,uart:/dev/ttyUSB0@115200",
        )
        .unwrap();
        assert_eq!(
            p.cards,
            [
                "uio:/dev/uio0,dma=/dev/udmabuf0,iova=0x0,irq",
                "uart:/dev/ttyUSB0@115200"
            ]
        );
    }

    #[test]
    fn garbage_pair_specs_are_refused_saying_why() {
        for (spec, why) in [
            ("", "is not a card spec"),
            ("vfio-user:/a", "at least two"),
            ("vfio-user:/a,vfio-user:/a", "named twice"),
            ("vfio-user:/a,daemon:/run/h.sock", "is not a card spec"),
            ("vfio-user:/a,backup:1.2.3.4:7100", "is not a card spec"),
            (
                "vfio-user:/a,pair:vfio-user:/b,vfio-user:/c",
                "a pair inside a pair",
            ),
            ("nonsense,vfio-user:/a", "is not a card spec"),
            (
                "vfio-user:/a,irq,vfio-user:/b",
                "\"irq\" is not a card spec",
            ),
            ("vfio-user:,vfio-user:/b", "is not a card spec"),
        ] {
            let e = PairSpec::parse(spec).expect_err(spec).to_string();
            assert!(e.contains(why), "{spec:?}: {e}");
            assert!(e.contains("pair:SPEC,SPEC"), "{spec:?}: {e}");
        }
        let many = (0..=MAX_CARDS)
            .map(|i| format!("vfio-user:/x{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(PairSpec::parse(&many)
            .unwrap_err()
            .to_string()
            .contains("at most"));
    }

    #[test]
    fn no_reachable_card_is_no_master_within_the_limit() {
        let dir = std::env::temp_dir().join(format!("hitless-pair-none-{}", std::process::id()));
        let spec = format!(
            "vfio-user:{}/a.sock,vfio-user:{}/b.sock",
            dir.display(),
            dir.display()
        );
        let pair = PairSpec::parse(&spec).unwrap();
        let t = Instant::now();
        let e = PairClient::open(pair, Duration::from_millis(400))
            .err()
            .expect("no card");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        let text = e.to_string();
        assert!(matches!(e, Error::NoMaster { .. }), "{text}");
        assert!(text.contains("a.sock") && text.contains("b.sock"), "{text}");
    }
}
