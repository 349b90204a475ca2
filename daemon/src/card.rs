//! The card, shared by the connection threads: one request at a time, in
//! arrival order. A connection thread takes a turn (a ticket, served
//! first come first served) once its whole request is received (so a slow
//! client never holds the card), runs the request on the card itself and
//! gives the turn up. Each connection has at most one request waiting, so
//! the turns go round-robin over the applications and a small store waits
//! at most for the requests of the others ahead of it. The request runs on
//! the thread that received it: no hand-off to a card thread and back,
//! which on a loaded machine cost a scheduler wake-up each way (about
//! 50 µs apiece here: most of the daemon's overhead before).
//!
//! It keeps one card session per application (a pool: the card has 14
//! protection entries for sessions, the daemon serves any number of
//! applications; when it needs a new one it closes the session needed
//! furthest ahead, as the queue of turns tells: see [`victim`]) and the
//! applications' secrets. It reopens the card when it is lost: a transport error or timeout (the card process restarted, the
//! device reset) drops the card and its sessions; a card session the card
//! no longer knows (a warm reset restarts the firmware) is reopened. A
//! request that can be repeated without changing its outcome is retried
//! once on the reopened card; a log append is not (it could be appended
//! twice), its error goes back to the application.
//!
//! With `--card pair:SPEC,SPEC` it opens whichever card of the replicated
//! pair is master ([`hitless_driver::pair`]): a `NotMaster` refusal (the
//! request did not run) drops the card and its sessions, the master is
//! looked for (the card the refusal names first, never in an epoch older
//! than one seen) and the request sent there, whatever it is; a card lost
//! during a request is handled as above (repeated only when repeatable).

use crate::metrics::Metrics;
use hitless_driver::credentials::Credentials;
use hitless_driver::firmware::{Client, OpenFlags, Session};
use hitless_driver::{open_card, CardIo, Error};
use hitless_hdl::contract::crc32c;
use hitless_proto::message::{Failure, Request};
use hitless_proto::msg::{flags, Code, HEAP_PAGE_BYTES};
use hitless_proto::Response;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// What a connection asks of the card.
#[derive(Debug)]
pub enum Op {
    /// A request that needs no session (`Status`, `Stage`; `ImageStatus`
    /// from the store browser).
    Plain(Request),
    /// Make sure `app` has a card session (an OPEN through the daemon);
    /// answers `Opened` with the card's key.
    Register { app: u32 },
    /// A session request of `app`, with its data.
    Run {
        app: u32,
        req: Request,
        data: Vec<u8>,
    },
}

impl Op {
    /// The application whose card session the operation needs.
    fn app(&self) -> Option<u32> {
        match self {
            Op::Plain(_) => None,
            Op::Register { app } | Op::Run { app, .. } => Some(*app),
        }
    }

    /// The request kind's name, for metrics.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Op::Plain(r) | Op::Run { req: r, .. } => crate::server::kind_name(r.kind()),
            Op::Register { .. } => "open",
        }
    }

    /// Can it be repeated on a reopened card without changing its
    /// outcome?
    fn repeatable(&self) -> bool {
        match self {
            Op::Plain(_) | Op::Register { .. } => true,
            // A commit repeated could make two versions of one
            // checkpoint; the card's answer to it decides.
            Op::Run { req, .. } => !matches!(
                req,
                Request::LogAppend { .. }
                    | Request::Delete { .. }
                    | Request::HeapCommit { .. }
                    | Request::HeapDelete { .. }
            ),
        }
    }
}

/// The card's answer: the response and its data, or the refusal.
pub type Answer = Result<(Response, Vec<u8>), Failure>;

/// How the daemon reaches the card.
pub struct CardConfig {
    pub spec: String,
    pub timeout: Duration,
    pub credentials: Credentials,
    /// Card sessions kept open at most (the card has 14).
    pub max_sessions: usize,
}

type Fw = Client<Box<dyn CardIo + Send>>;

struct Worker {
    cfg: CardConfig,
    fw: Option<Fw>,
    sessions: HashMap<u32, Pooled>,
    /// Counts the sessions' uses (their recency, for [`victim`]).
    uses: u64,
    opened_once: bool,
    metrics: Arc<Metrics>,
    /// With a `pair:` spec: what the search for the master has seen, and
    /// the node the last `NotMaster` named.
    seen: hitless_driver::pair::Seen,
    hint: Option<u32>,
}

/// A card session in the daemon's pool.
struct Pooled {
    session: Session,
    /// The worker's use count at its last use.
    used: u64,
}

/// Turns at the card: tickets handed out in arrival order and served in
/// that order; a ticket whose holder gave up waiting is skipped. It also
/// knows which application each waiting ticket is for: the order in which
/// the card sessions will be needed.
#[derive(Default)]
struct Turnstile {
    turns: Mutex<Turns>,
    changed: Condvar,
}

#[derive(Default)]
struct Turns {
    next: u64,
    serving: u64,
    abandoned: BTreeSet<u64>,
    /// Waiting tickets of session requests, with their application.
    waiting: BTreeMap<u64, u32>,
}

/// A turn; dropping it (also on a panic) passes the turn to the next
/// ticket.
struct Turn<'a>(&'a Turnstile);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut t = lock(&self.0.turns);
        let Turns {
            serving,
            abandoned,
            next,
            ..
        } = &mut *t;
        *serving += 1;
        while abandoned.remove(serving) {
            *serving += 1;
        }
        // Nobody to wake (the usual case with one application): spare
        // the system call.
        let waiters = *next > *serving;
        drop(t);
        if waiters {
            self.0.changed.notify_all();
        }
    }
}

impl Turnstile {
    /// Wait (at most `timeout`) for this caller's turn, for a request of
    /// `app`'s session if it has one.
    fn turn(&self, timeout: Duration, app: Option<u32>) -> Option<Turn<'_>> {
        let deadline = Instant::now() + timeout;
        let mut t = lock(&self.turns);
        let me = t.next;
        t.next += 1;
        if let Some(app) = app {
            t.waiting.insert(me, app);
        }
        while t.serving != me {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                t.abandoned.insert(me);
                t.waiting.remove(&me);
                return None;
            }
            t = self
                .changed
                .wait_timeout(t, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        t.waiting.remove(&me);
        Some(Turn(self))
    }

    /// The first waiting ticket of each application with one.
    fn next_needed(&self) -> HashMap<u32, u64> {
        let t = lock(&self.turns);
        let mut first = HashMap::new();
        for (&ticket, &app) in &t.waiting {
            first.entry(app).or_insert(ticket);
        }
        first
    }
}

/// The card session to close to make room, of those open (application,
/// last use): the one needed furthest ahead (Belady's choice, as far as the
/// queue of turns shows it). An application with no request waiting is
/// needed after every one that has one, and of those the one idle longest
/// first; then the one whose next request is last in the queue. (Neither
/// random nor least-recently-used: with applications taking turns, more of
/// them than the card has entries, least recently used closes exactly the
/// session needed next, every time; this closes the one just served.)
fn victim(
    open: impl IntoIterator<Item = (u32, u64)>,
    next_needed: &HashMap<u32, u64>,
) -> Option<u32> {
    open.into_iter()
        .max_by_key(|&(app, used)| match next_needed.get(&app) {
            None => (1, u64::MAX - used),
            Some(&ticket) => (0, ticket),
        })
        .map(|(app, _)| app)
}

/// The card and its turns, shared by every connection.
pub struct Card {
    turns: Turnstile,
    worker: Mutex<Worker>,
    metrics: Arc<Metrics>,
}

/// A lock whose holder panicked is still usable: the turns are plain
/// counters, and the card is reopened after a panic (see [`Card::call`]).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Card {
    /// The card at `cfg.spec`, opened in the background so the first
    /// application does not wait for it (a card that is not there yet is
    /// opened on the first request).
    pub fn start(cfg: CardConfig, metrics: Arc<Metrics>) -> std::io::Result<Arc<Card>> {
        let timeout = cfg.timeout;
        let card = Arc::new(Card {
            turns: Turnstile::default(),
            worker: Mutex::new(Worker {
                cfg,
                fw: None,
                sessions: HashMap::new(),
                uses: 0,
                opened_once: false,
                metrics: metrics.clone(),
                seen: Default::default(),
                hint: None,
            }),
            metrics,
        });
        let c = card.clone();
        std::thread::Builder::new()
            .name("card-open".into())
            .spawn(move || {
                let Some(_turn) = c.turns.turn(timeout, None) else {
                    return;
                };
                let mut w = lock(&c.worker);
                if let Err(e) = w.card() {
                    tracing::warn!(card = %w.cfg.spec, error = %e.chain(), "card not available yet");
                }
            })?;
        Ok(card)
    }

    /// Run `op` on the card when its turn comes; waits at most `timeout`
    /// for the turn (the operation itself is bounded by the card timeout).
    pub fn call(&self, op: Op, timeout: Duration) -> Answer {
        let start = Instant::now();
        let Some(_turn) = self.turns.turn(timeout, op.app()) else {
            return Err(Failure::new(
                Code::Device,
                format!(
                    "no turn at the card within {:?} (queued behind other applications, or the card hung)",
                    start.elapsed()
                ),
            ));
        };
        let mut w = match self.worker.lock() {
            Ok(w) => w,
            Err(poisoned) => {
                // A request panicked mid-operation: the card's state is
                // unknown, so reopen it.
                let mut w = poisoned.into_inner();
                w.fw = None;
                w.sessions.clear();
                self.worker.clear_poison();
                w
            }
        };
        let start = Instant::now();
        let answer = w.serve(&op, &self.turns);
        self.metrics
            .card_time
            .get_or_create(&crate::metrics::KindLabel {
                kind: op.kind_name().into(),
            })
            .observe(start.elapsed().as_secs_f64());
        answer
    }
}

/// Whether an error means the card (or its firmware) must be reopened.
fn card_lost(e: &Error) -> bool {
    !matches!(
        e,
        Error::Firmware { .. } | Error::NotMaster { .. } | Error::InvalidArgument(_)
    )
}

/// The answer the application gets for a driver error: the firmware's
/// refusal as it is, anything else as a device failure with its chain.
fn failure(e: &Error) -> Failure {
    match e {
        Error::Firmware {
            code,
            detail,
            needed,
        } => Failure {
            needed: *needed,
            ..Failure::new(*code, detail.clone())
        },
        Error::NotMaster {
            master,
            epoch,
            detail,
        } => Failure {
            master: *master,
            epoch: *epoch,
            ..Failure::new(Code::NotMaster, detail.clone())
        },
        Error::InvalidArgument(m) => Failure::new(Code::Invalid, m.clone()),
        other => Failure::new(Code::Device, format!("card: {}", other.chain())),
    }
}

fn tier(f: u32) -> bool {
    f & flags::COLD != 0
}

impl Worker {
    fn card(&mut self) -> Result<&mut Fw, Error> {
        if self.fw.is_none() {
            let fw = match self.cfg.spec.strip_prefix(hitless_driver::pair::PREFIX) {
                Some(cards) => {
                    let t = self.cfg.timeout;
                    let m = hitless_driver::pair::PairSpec::parse(cards)?.find_master(
                        &mut self.seen,
                        self.hint.take(),
                        t,
                        t,
                    )?;
                    tracing::info!(node = m.node, epoch = m.epoch, "the pair's master");
                    m.fw
                }
                None => Client::open(
                    open_card(&self.cfg.spec, self.cfg.timeout)?,
                    self.cfg.timeout,
                )?,
            };
            if self.opened_once {
                self.metrics.card_reopens.inc();
                tracing::info!(card = %self.cfg.spec, "card reopened");
            } else {
                tracing::info!(card = %self.cfg.spec, "card opened");
            }
            self.opened_once = true;
            self.metrics.card_opens.inc();
            self.fw = Some(fw);
        }
        self.fw
            .as_mut()
            .ok_or_else(|| Error::transport_msg("card not open"))
    }

    fn serve(&mut self, op: &Op, turns: &Turnstile) -> Answer {
        let mut retried = false;
        let mut followed = 0;
        loop {
            let r = self.attempt(op, turns);
            let e = match r {
                Ok(a) => return Ok(a),
                Err(e) => e,
            };
            if let Error::NotMaster { master, epoch, .. } = &e {
                // Refused before it ran: any request goes to the master.
                // A few follows cover a takeover and a switchover back.
                if self.cfg.spec.starts_with(hitless_driver::pair::PREFIX) && followed < 4 {
                    tracing::info!(?master, ?epoch, "not the pair's master: following");
                    self.hint = *master;
                    if let Some(ep) = epoch {
                        self.seen.epoch = self.seen.epoch.max(*ep);
                    }
                    self.fw = None;
                    self.sessions.clear();
                    followed += 1;
                    continue;
                }
            }
            let stale_session = matches!(
                (&e, op),
                (
                    Error::Firmware {
                        code: Code::AuthFailed,
                        ..
                    },
                    Op::Run { .. }
                )
            );
            if stale_session {
                // The daemon signs with the right secret: a refusal means
                // the card lost the session (its firmware restarted).
                if let Op::Run { app, .. } = op {
                    self.sessions.remove(app);
                }
            } else if card_lost(&e) {
                tracing::warn!(error = %e.chain(), "card lost");
                self.fw = None;
                self.sessions.clear();
            }
            if retried || !(stale_session || card_lost(&e)) || !op.repeatable() {
                return Err(failure(&e));
            }
            retried = true;
        }
    }

    /// The pooled card session of `app`, opened when needed.
    fn session(&mut self, app: u32, turns: &Turnstile) -> Result<Session, Error> {
        self.uses += 1;
        let now = self.uses;
        if let Some(p) = self.sessions.get_mut(&app) {
            p.used = now;
            return Ok(p.session.clone());
        }
        let secret = self.cfg.credentials.load(app)?;
        loop {
            if self.sessions.len() >= self.cfg.max_sessions {
                self.evict(turns)?;
            }
            let fw = self.card()?;
            match fw.open_app(app, OpenFlags::all(), secret.as_ref()) {
                Ok((s, fresh)) => {
                    self.metrics.card_session_opens.inc();
                    if let Some(n) = fresh {
                        self.cfg.credentials.save(app, &n)?;
                        tracing::info!(app, "application registered on the card");
                    }
                    self.sessions.insert(
                        app,
                        Pooled {
                            session: s.clone(),
                            used: now,
                        },
                    );
                    return Ok(s);
                }
                Err(Error::Firmware {
                    code: Code::NoSession,
                    ..
                }) if !self.sessions.is_empty() => self.evict(turns)?,
                Err(
                    e @ Error::Firmware {
                        code: Code::NoSession,
                        ..
                    },
                ) => {
                    if !self.reclaim(app)? {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Free a protection entry that an earlier instance of the daemon left
    /// open (it was killed, or the card outlived it): the card gives an
    /// application's OPEN that application's own stale entry, so opening
    /// and closing one of our registered applications frees its entry.
    /// False when none of them holds one (the entries are other clients').
    fn reclaim(&mut self, wanted: u32) -> Result<bool, Error> {
        for app in self.cfg.credentials.apps()? {
            if app == wanted || self.sessions.contains_key(&app) {
                continue;
            }
            let secret = self.cfg.credentials.load(app)?;
            let fw = self.card()?;
            match fw.open_app(app, OpenFlags::all(), secret.as_ref()) {
                Ok((s, fresh)) => {
                    if let Some(n) = fresh {
                        // The card had lost the secret (its cold tier was
                        // erased) and made a new one: keep it.
                        self.cfg.credentials.save(app, &n)?;
                    }
                    let fw = self.card()?;
                    if let Err(e) = fw.close(&s) {
                        tracing::debug!(app, error = %e, "closing a stale session");
                    }
                    tracing::info!(app, "freed the protection entry the application held");
                    return Ok(true);
                }
                Err(Error::Firmware {
                    code: Code::NoSession | Code::AuthFailed,
                    ..
                }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Close a card session to make room: the [`victim`].
    fn evict(&mut self, turns: &Turnstile) -> Result<(), Error> {
        let open = self.sessions.iter().map(|(&app, p)| (app, p.used));
        let Some(app) = victim(open, &turns.next_needed()) else {
            return Ok(());
        };
        if let Some(p) = self.sessions.remove(&app) {
            self.metrics.card_session_evictions.inc();
            let fw = self.card()?;
            if let Err(e) = fw.close(&p.session) {
                // The session is gone either way; the card reuses an
                // application's own stale entries.
                tracing::debug!(app, error = %e, "closing an evicted session");
            }
        }
        Ok(())
    }

    fn attempt(&mut self, op: &Op, turns: &Turnstile) -> Result<(Response, Vec<u8>), Error> {
        match op {
            Op::Plain(Request::Stage { stage }) => {
                let sets = self.card()?.announce(*stage)?;
                Ok((
                    Response::Sets {
                        sets,
                        data_len: None,
                    },
                    vec![],
                ))
            }
            // The store browser's read-only view of the image manager
            // (applications cannot send it: the server relays only STATUS
            // and STAGE as plain requests).
            Op::Plain(Request::ImageStatus) => {
                let r = self.card()?.image_status()?;
                Ok((Response::Image(Box::new(r)), vec![]))
            }
            Op::Plain(_) => {
                let s = self.card()?.status()?;
                self.metrics.card_status(&s);
                Ok((Response::Status(s), vec![]))
            }
            Op::Register { app } => {
                let s = self.session(*app, turns)?;
                Ok((
                    Response::Opened {
                        handle: 0,
                        key: s.key,
                        app: *app,
                        secret: None,
                    },
                    vec![],
                ))
            }
            Op::Run { app, req, data } => {
                let s = self.session(*app, turns)?;
                self.run(&s, req, data)
            }
        }
    }

    fn run(
        &mut self,
        s: &Session,
        req: &Request,
        data: &[u8],
    ) -> Result<(Response, Vec<u8>), Error> {
        let fw = self.card()?;
        let none = Vec::new;
        Ok(match *req {
            Request::Store {
                object,
                endpoint,
                stage,
                flags: f,
                len,
                crc,
                ..
            } => {
                if data.len() != len as usize {
                    return Err(Error::InvalidArgument(format!(
                        "STORE of {len} bytes with {} bytes of data",
                        data.len()
                    )));
                }
                if crc32c(data) != crc {
                    return Err(Error::InvalidArgument(
                        "the set's data fails its CRC (damaged on the way to the daemon)".into(),
                    ));
                }
                fw.store(s, object, endpoint, stage, tier(f), data)?;
                (Response::Stored { len, crc }, none())
            }
            // DELETE's and LIST's endpoints go to the card too (a
            // replicated card reaches the sets it placed on its peer).
            Request::Delete { object, endpoint } => {
                fw.delete_from(s, object, endpoint)?;
                (Response::Done, none())
            }
            // The endpoint goes to the card (a replicated card fetches a
            // set it placed on its peer; another card refuses it).
            Request::Restore {
                object, endpoint, ..
            } => {
                let (mut info, bytes) = fw.restore_from(s, object, endpoint)?;
                info.data_offset = 0;
                (
                    Response::Sets {
                        sets: vec![info],
                        data_len: None,
                    },
                    bytes,
                )
            }
            Request::List { endpoint } => (
                Response::Sets {
                    sets: fw.list_from(s, endpoint)?,
                    data_len: None,
                },
                none(),
            ),
            Request::Fetch { stage, .. } => {
                let mut out = Vec::new();
                let mut sets = Vec::new();
                for (mut info, bytes) in fw.fetch(s, stage)? {
                    info.data_offset = out.len() as u32;
                    out.extend_from_slice(&bytes);
                    sets.push(info);
                }
                let data_len = Some(out.len() as u32);
                (Response::Sets { sets, data_len }, out)
            }
            Request::LogAppend {
                object,
                flags: f,
                len,
                ..
            } => {
                if data.len() != len as usize {
                    return Err(Error::InvalidArgument(format!(
                        "LOG_APPEND of {len} bytes with {} bytes of data",
                        data.len()
                    )));
                }
                let offset = fw.log_append(s, object, tier(f), f & flags::OVERWRITE != 0, data)?;
                (Response::Appended { offset }, none())
            }
            Request::LogRead { flags: f, .. } => {
                let read = fw.log_read(s, tier(f))?;
                let mut out = Vec::new();
                let mut records = Vec::new();
                for (mut li, bytes) in read.records {
                    li.data_offset = out.len() as u32;
                    out.extend_from_slice(&bytes);
                    records.push(li);
                }
                (
                    Response::Log {
                        records,
                        head: read.head,
                        tail: read.tail,
                    },
                    out,
                )
            }
            Request::LogTrim { flags: f, to } => {
                let (head, tail) = fw.log_trim_to(s, tier(f), to)?;
                (
                    Response::Log {
                        records: vec![],
                        head,
                        tail,
                    },
                    none(),
                )
            }
            Request::Format { flags: f } => {
                fw.format(s, tier(f))?;
                (Response::Done, none())
            }
            Request::Status
            | Request::Open { .. }
            | Request::Close
            | Request::Stage { .. }
            | Request::Switchover { .. }
            | Request::Promote { .. } => {
                return Err(Error::InvalidArgument(format!(
                    "request kind {} is not a session request",
                    req.kind()
                )))
            }
            // Image management is the card operator's; the daemon does not
            // forward it (docs/images.md).
            Request::ImageStatus
            | Request::ImageInstall { .. }
            | Request::ImageActivate
            | Request::ImageMarkGood
            | Request::ImageRollback
            | Request::ImageReboot
            | Request::ImageServe { .. } => {
                return Err(Error::InvalidArgument(
                    hitless_driver::daemon::IMAGE_THROUGH_DAEMON.into(),
                ))
            }
            // The heap store: pages and state in the frame's data (the
            // server checked the connection holds the heap).
            Request::HeapOpen {
                heap,
                heap_pages,
                keep,
                flags: f,
            } => (
                Response::HeapVersions {
                    versions: fw.heap_open(s, heap, heap_pages, keep, tier(f))?,
                },
                none(),
            ),
            Request::HeapClose { heap } => {
                fw.heap_close(s, heap)?;
                (Response::Done, none())
            }
            Request::HeapAbort { heap } => {
                fw.heap_abort(s, heap)?;
                (Response::Done, none())
            }
            Request::HeapStage {
                heap,
                ref pages,
                ref crcs,
                ..
            } => {
                if data.len() != pages.len() * HEAP_PAGE_BYTES || crcs.len() != pages.len() {
                    return Err(Error::InvalidArgument(format!(
                        "HEAP_STAGE of {} pages with {} CRCs and {} bytes of data",
                        pages.len(),
                        crcs.len(),
                        data.len()
                    )));
                }
                let list: Vec<(u32, &[u8])> = pages
                    .iter()
                    .copied()
                    .zip(data.chunks(HEAP_PAGE_BYTES))
                    .collect();
                for ((p, d), c) in list.iter().zip(crcs) {
                    if crc32c(d) != *c {
                        return Err(Error::InvalidArgument(format!(
                            "page {p} fails its CRC (damaged on the way to the daemon)"
                        )));
                    }
                }
                fw.heap_stage(s, heap, &list)?;
                (Response::Done, none())
            }
            Request::HeapCommit { heap, len, crc, .. } => {
                if data.len() != len as usize || crc32c(data) != crc {
                    return Err(Error::InvalidArgument(format!(
                        "HEAP_COMMIT of {len} bytes of state with {} bytes of data, or a bad CRC",
                        data.len()
                    )));
                }
                (
                    Response::HeapVersion(fw.heap_commit(s, heap, data)?),
                    none(),
                )
            }
            Request::HeapRead {
                heap, ref pages, ..
            } => {
                let got = fw.heap_read(s, heap, pages)?;
                let mut absent = Vec::new();
                let mut out = Vec::new();
                for (p, g) in pages.iter().zip(got) {
                    match g {
                        Some(b) => out.extend_from_slice(&b),
                        None => absent.push(*p),
                    }
                }
                (Response::HeapPages { absent }, out)
            }
            Request::HeapVersions { heap } => (
                Response::HeapVersions {
                    versions: fw.heap_versions(s, heap)?,
                },
                none(),
            ),
            Request::HeapCheckout { heap, version, .. } => {
                let (v, state) = fw.heap_checkout(s, heap, version)?;
                (Response::HeapVersion(v), state)
            }
            Request::HeapChanged { heap, since, first } => {
                let mut pages = fw.heap_changed(s, heap, since)?;
                pages.retain(|p| *p >= first);
                pages.truncate(hitless_proto::msg::HEAP_CHANGED_MAX);
                (Response::HeapChanged { pages }, none())
            }
            Request::HeapDelete { heap } => {
                fw.heap_delete(s, heap)?;
                (Response::Done, none())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_are_served_in_arrival_order() {
        let t = Arc::new(Turnstile::default());
        let served = Arc::new(Mutex::new(Vec::new()));
        let first = t.turn(Duration::from_secs(5), None).unwrap();
        let mut threads = Vec::new();
        for i in 0..8u64 {
            // Each waiter takes its ticket before the next one starts.
            let (ts, served) = (t.clone(), served.clone());
            threads.push(std::thread::spawn(move || {
                let turn = ts.turn(Duration::from_secs(20), None);
                assert!(turn.is_some());
                lock(&served).push(i);
                drop(turn);
            }));
            while lock(&t.turns).next < i + 2 {
                std::thread::yield_now();
            }
        }
        drop(first);
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(*lock(&served), (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn the_victim_is_the_session_needed_furthest_ahead() {
        // Applications 1..=4 open, last used in that order; 2 and 3 have
        // requests waiting (3's first).
        let open = [(1, 10), (2, 20), (3, 30), (4, 40)];
        let waiting: HashMap<u32, u64> = [(3, 100), (2, 101)].into();
        // 1 and 4 are not waiting: the one idle longest goes.
        assert_eq!(victim(open, &waiting), Some(1));
        // Everyone waiting: the last in the queue goes.
        let waiting: HashMap<u32, u64> = [(1, 7), (2, 5), (3, 9), (4, 8)].into();
        assert_eq!(victim(open, &waiting), Some(3));
        assert_eq!(victim([], &waiting), None);
    }

    /// Applications taking turns at the card, more of them than it has
    /// entries (the daemon's load with 16 clients): the pool's misses with
    /// the victim rule against the best possible (Belady, knowing the
    /// future) and against a random choice.
    #[test]
    fn taking_turns_costs_few_session_opens() {
        use rand::{Rng, SeedableRng};
        let (apps, entries, rounds) = (16u32, 14usize, 40usize);
        // Round-robin: while one is served, all the others wait in order.
        let order: Vec<u32> = (0..rounds).flat_map(|_| 0..apps).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let run = |rule: &mut dyn FnMut(&HashMap<u32, u64>, usize) -> u32| {
            let mut pool: HashMap<u32, u64> = HashMap::new();
            let mut misses = 0;
            for (i, &app) in order.iter().enumerate() {
                if !pool.contains_key(&app) {
                    misses += 1;
                    if pool.len() >= entries {
                        let out = rule(&pool, i);
                        pool.remove(&out);
                    }
                }
                pool.insert(app, i as u64);
            }
            misses
        };
        let ours = run(&mut |pool, i| {
            // The queue: the next request of every other application.
            let waiting: HashMap<u32, u64> = order[i + 1..]
                .iter()
                .take(apps as usize - 1)
                .enumerate()
                .map(|(k, &a)| (a, (i + 1 + k) as u64))
                .collect();
            victim(pool.iter().map(|(&a, &u)| (a, u)), &waiting).unwrap()
        });
        let random = run(&mut |pool, _| {
            let keys: Vec<u32> = pool.keys().copied().collect();
            keys[rng.gen_range(0..keys.len())]
        });
        let best = run(&mut |pool, i| {
            *pool
                .keys()
                .max_by_key(|a| {
                    order[i..]
                        .iter()
                        .position(|x| x == *a)
                        .unwrap_or(usize::MAX)
                })
                .unwrap()
        });
        assert_eq!(ours, best, "the victim rule is Belady's on this load");
        // 98 against 176 of 640 turns.
        assert!(
            ours * 3 < random * 2,
            "{ours} misses against {random} with random eviction"
        );
    }

    #[test]
    fn a_ticket_given_up_is_skipped() {
        let t = Arc::new(Turnstile::default());
        let first = t.turn(Duration::from_secs(5), None).unwrap();
        // The second gives up while the first holds the card.
        assert!(t.turn(Duration::from_millis(20), None).is_none());
        let t3 = t.clone();
        let third = std::thread::spawn(move || t3.turn(Duration::from_secs(20), None).is_some());
        while lock(&t.turns).next < 3 {
            std::thread::yield_now();
        }
        drop(first);
        assert!(
            third.join().unwrap(),
            "the turn after an abandoned ticket never came"
        );
        let t = lock(&t.turns);
        assert_eq!((t.serving, t.abandoned.len()), (3, 0));
    }
}
