//! The application socket: one thread per connection reads whole frames
//! (bounded in size and time), checks who is asking, and runs the request
//! on the card when its turn comes ([`crate::card::Card`]). Sessions
//! belong to their connection: a handle means nothing on another
//! connection, and a connection that goes away takes its sessions with it
//! (the card sessions stay pooled with the card, nothing is leaked).

use crate::card::{Answer, Card, Op};
use crate::heaps::{Heaps, Holder};
use crate::metrics::{CodeLabel, DirLabel, KindLabel, Metrics};
use crate::policy::{groups_of, Decision, Peer, Policy};
use hitless_driver::daemon::wire;
use hitless_proto::daemon::MAX_DATA;
use hitless_proto::message::{Failure, Request};
use hitless_proto::msg::{flags, kind, tag, Code};
use hitless_proto::tlv::Message;
use hitless_proto::Response;
use rand::Rng;
use std::collections::{BTreeSet, HashMap};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Limits of the application side.
#[derive(Clone, Debug)]
pub struct Limits {
    /// A connection may stay silent between requests this long.
    pub idle: Duration,
    /// A frame must arrive whole this long after its first byte.
    pub frame: Duration,
    /// A request may wait this long for the card (queue and operation).
    pub answer: Duration,
    pub max_connections: usize,
    pub max_sessions_per_connection: usize,
    /// After answering, a connection busy-polls this long for the
    /// application's next request before it sleeps (see
    /// [`wire::spin_until_readable`]): an application storing several
    /// sets in a row then finds the daemon awake. Zero turns it off.
    pub busy_poll: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(3600),
            frame: Duration::from_secs(10),
            answer: Duration::from_secs(60),
            max_connections: 256,
            max_sessions_per_connection: 64,
            busy_poll: Duration::from_micros(200),
        }
    }
}

/// What every connection shares.
pub struct Shared {
    pub card: Arc<Card>,
    pub policy: Mutex<Policy>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Applications the operator suspended (the store browser).
    pub suspended: Suspended,
    /// Which connection holds which heap ([`crate::heaps`]).
    pub heaps: Heaps,
    connections: AtomicUsize,
    /// Numbers the connections (a heap's holder).
    next_conn: AtomicU64,
}

impl Shared {
    pub fn new(
        card: Arc<Card>,
        policy: Policy,
        metrics: Arc<Metrics>,
        limits: Limits,
        suspended: Suspended,
    ) -> Arc<Self> {
        Arc::new(Self {
            card,
            policy: Mutex::new(policy),
            metrics,
            limits,
            suspended,
            heaps: Heaps::default(),
            connections: AtomicUsize::new(0),
            next_conn: AtomicU64::new(1),
        })
    }
}

/// The applications an operator suspended: the daemon refuses their
/// requests that change what the card holds for them (stores, deletes,
/// log appends and trims, formats) until they are resumed; reading goes
/// on. Kept in a file of the state directory (one id a line, written whole
/// and renamed into place) so a suspension survives a daemon restart.
#[derive(Debug, Default)]
pub struct Suspended {
    apps: Mutex<BTreeSet<u32>>,
    file: Option<PathBuf>,
}

impl Suspended {
    /// The suspensions kept in `file` (none when it does not exist).
    pub fn load(file: Option<PathBuf>) -> std::io::Result<Self> {
        let mut apps = BTreeSet::new();
        if let Some(f) = &file {
            match std::fs::read_to_string(f) {
                Ok(text) => {
                    for (i, line) in text.lines().enumerate() {
                        let line = line.trim();
                        if line.is_empty() {
                            continue;
                        }
                        let app = line.parse::<u32>().map_err(|_| {
                            std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                format!("{} line {}: not an application id", f.display(), i + 1),
                            )
                        })?;
                        apps.insert(app);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Self {
            apps: Mutex::new(apps),
            file,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u32>> {
        self.apps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn contains(&self, app: u32) -> bool {
        self.lock().contains(&app)
    }

    pub fn list(&self) -> Vec<u32> {
        self.lock().iter().copied().collect()
    }

    /// Suspend (`on`) or resume `app`; false when it already was.
    pub fn set(&self, app: u32, on: bool) -> std::io::Result<bool> {
        let mut apps = self.lock();
        let changed = if on {
            apps.insert(app)
        } else {
            apps.remove(&app)
        };
        if changed {
            if let Some(path) = &self.file {
                let text: String = apps.iter().map(|a| format!("{a}\n")).collect();
                let tmp = path.with_extension("new");
                let written = std::fs::write(&tmp, text)
                    .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                    .and_then(|()| std::fs::rename(&tmp, path));
                if let Err(e) = written {
                    // Undo: what the daemon enforces is what it keeps.
                    if on {
                        apps.remove(&app);
                    } else {
                        apps.insert(app);
                    }
                    return Err(e);
                }
            }
        }
        Ok(changed)
    }
}

/// Does `req` change what the card holds for its application (refused
/// while the application is suspended)?
pub fn changes_state(req: &Request) -> bool {
    matches!(
        req,
        Request::Store { .. }
            | Request::Delete { .. }
            | Request::LogAppend { .. }
            | Request::LogTrim { .. }
            | Request::Format { .. }
            | Request::HeapStage { .. }
            | Request::HeapCommit { .. }
            | Request::HeapDelete { .. }
    )
}

/// The refusal a suspended application gets.
pub fn suspended_failure(app: u32) -> Failure {
    Failure::new(
        Code::Permission,
        format!(
            "application {app} is suspended by the operator (hitlessd store browser): \
             stores, deletes and log changes are refused until it is resumed"
        ),
    )
}

/// Accept connections until the listener fails.
pub fn serve(listener: UnixListener, shared: Arc<Shared>) -> std::io::Result<()> {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let shared = shared.clone();
        let n = shared.connections.fetch_add(1, Ordering::SeqCst);
        if n >= shared.limits.max_connections {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            let f = Failure::new(Code::NoSession, "hitlessd: too many connections");
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = wire::send(&stream, f.encode(0).finish().as_slice(), &[]);
            continue;
        }
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .spawn(move || {
                shared.metrics.connections.inc();
                connection(&stream, &shared);
                shared.metrics.connections.dec();
                shared.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            tracing::warn!("no thread for a connection: {e}");
        }
    }
    Ok(())
}

/// A session of this connection.
#[derive(Clone, Copy)]
struct Sess {
    app: u32,
    flags: u32,
}

/// A request kind's name, for metrics.
pub fn kind_name(k: u8) -> &'static str {
    match k {
        kind::STATUS => "status",
        kind::OPEN => "open",
        kind::CLOSE => "close",
        kind::STORE => "store",
        kind::DELETE => "delete",
        kind::RESTORE => "restore",
        kind::LIST => "list",
        kind::STAGE => "stage",
        kind::FETCH => "fetch",
        kind::LOG_APPEND => "log_append",
        kind::LOG_READ => "log_read",
        kind::LOG_TRIM => "log_trim",
        kind::FORMAT => "format",
        kind::HEAP_OPEN => "heap_open",
        kind::HEAP_CLOSE => "heap_close",
        kind::HEAP_STAGE => "heap_stage",
        kind::HEAP_COMMIT => "heap_commit",
        kind::HEAP_ABORT => "heap_abort",
        kind::HEAP_READ => "heap_read",
        kind::HEAP_VERSIONS => "heap_versions",
        kind::HEAP_CHECKOUT => "heap_checkout",
        kind::HEAP_DELETE => "heap_delete",
        kind::HEAP_CHANGED => "heap_changed",
        _ => "unknown",
    }
}

fn connection(stream: &UnixStream, shared: &Shared) {
    let peer = match rustix::net::sockopt::socket_peercred(stream) {
        Ok(c) => {
            let pid = c.pid.as_raw_nonzero().get();
            Peer {
                pid,
                uid: c.uid.as_raw(),
                gids: groups_of(pid, c.gid.as_raw()),
            }
        }
        Err(e) => {
            tracing::warn!("SO_PEERCRED: {e}");
            return;
        }
    };
    let _ = stream.set_write_timeout(Some(shared.limits.frame));
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(uid = peer.uid, pid = peer.pid, conn, "connection");
    let mut sessions: HashMap<u32, Sess> = HashMap::new();
    let mut answered = false;
    loop {
        if answered {
            wire::spin_until_readable(stream, shared.limits.busy_poll);
        }
        answered = true;
        let frame = match wire::recv(stream, shared.limits.idle, shared.limits.frame) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(wire::WireError::Idle(after)) => {
                tracing::debug!(uid = peer.uid, "connection idle for {after:?}: closed");
                break;
            }
            Err(e) => {
                // The stream cannot be resynchronised after a bad frame:
                // say why, then close.
                tracing::info!(uid = peer.uid, "bad frame: {e}");
                shared
                    .metrics
                    .errors
                    .get_or_create(&CodeLabel {
                        code: "BadMessage".into(),
                    })
                    .inc();
                let f = Failure::new(Code::BadMessage, format!("hitlessd: {e}"));
                let _ = wire::send(stream, f.encode(0).finish().as_slice(), &[]);
                break;
            }
        };
        let start = Instant::now();
        let bytes_in = frame.data.len();
        let (k, answer) = handle(shared, &peer, conn, &mut sessions, &frame.msg, frame.data);
        let m = &shared.metrics;
        let label = KindLabel {
            kind: kind_name(k).into(),
        };
        m.requests.get_or_create(&label).inc();
        let (msg, data) = match answer {
            Ok((r, d)) => (r.encode(k).finish(), d),
            Err(f) => {
                m.errors
                    .get_or_create(&CodeLabel {
                        code: format!("{:?}", f.code),
                    })
                    .inc();
                (f.encode(k).finish(), Vec::new())
            }
        };
        let dir = |d: &str| DirLabel {
            direction: d.into(),
        };
        m.bytes.get_or_create(&dir("in")).inc_by(bytes_in as u64);
        m.bytes.get_or_create(&dir("out")).inc_by(data.len() as u64);
        if let Err(e) = wire::send(stream, msg.as_slice(), &data) {
            tracing::info!(uid = peer.uid, "answer not delivered: {e}");
            break;
        }
        m.latency
            .get_or_create(&label)
            .observe(start.elapsed().as_secs_f64());
    }
    // The heaps it still holds: their staged pages are nobody's now.
    drop_heaps(shared, conn, None);
    tracing::debug!(
        uid = peer.uid,
        sessions = sessions.len(),
        "connection closed"
    );
}

/// Abort and close the heaps connection `conn` holds (those opened under
/// session `handle`, or all), then free them: a holder that went away in
/// the middle of a transaction leaves the committed versions as they are
/// and the next opener nothing staged.
fn drop_heaps(shared: &Shared, conn: u64, handle: Option<u32>) {
    for ((app, heap), who) in shared.heaps.of_connection(conn, handle) {
        for req in [Request::HeapAbort { heap }, Request::HeapClose { heap }] {
            let what = kind_name(req.kind());
            let op = Op::Run {
                app,
                req,
                data: vec![],
            };
            if let Err(f) = shared.card.call(op, shared.limits.answer) {
                // A card that lost the heap (a reset) dropped the staged
                // pages itself.
                tracing::info!(app, heap, "{what} of an abandoned heap: {}", f.detail);
            }
        }
        tracing::info!(
            app,
            heap,
            conn,
            "heap left open by a closed session or connection: staged pages aborted"
        );
        shared.heaps.release((app, heap), who);
    }
}

/// The heap a heap request names.
fn heap_of(req: &Request) -> Option<u32> {
    match *req {
        Request::HeapOpen { heap, .. }
        | Request::HeapClose { heap }
        | Request::HeapStage { heap, .. }
        | Request::HeapCommit { heap, .. }
        | Request::HeapAbort { heap }
        | Request::HeapRead { heap, .. }
        | Request::HeapVersions { heap }
        | Request::HeapCheckout { heap, .. }
        | Request::HeapDelete { heap }
        | Request::HeapChanged { heap, .. } => Some(heap),
        _ => None,
    }
}

/// A heap request of connection `conn`: HEAP_OPEN takes the heap for the
/// connection (refused while another holds it), HEAP_DELETE takes it for
/// its length, HEAP_CLOSE gives it up, and the others need it held.
fn heap_request(shared: &Shared, conn: u64, handle: u32, heap: u32, op: Op) -> Answer {
    let Op::Run { app, ref req, .. } = op else {
        return Err(Failure::new(Code::Invalid, "not a session request"));
    };
    let key = (app, heap);
    let me = Holder::Connection { conn, handle };
    let call = |op| shared.card.call(op, shared.limits.answer);
    let claim = || {
        shared
            .heaps
            .claim(key, me, shared.limits.answer)
            .map_err(|e| Failure::new(Code::Permission, e.to_string()))
    };
    match req {
        Request::HeapOpen { .. } => {
            let took = claim()?;
            let r = call(op);
            if r.is_err() && took {
                shared.heaps.release(key, me);
            }
            r
        }
        Request::HeapDelete { .. } => {
            let took = claim()?;
            let r = call(op);
            if r.is_ok() {
                shared.heaps.forget(key);
            }
            if took || r.is_ok() {
                shared.heaps.release(key, me);
            }
            r
        }
        _ if !shared.heaps.held_by(key, conn) => Err(Failure::new(
            Code::NotFound,
            format!(
                "heap {heap} of application {app} is not open on this connection (HEAP_OPEN first)"
            ),
        )),
        Request::HeapClose { .. } => {
            let r = call(op);
            shared.heaps.release(key, me);
            r
        }
        _ => call(op),
    }
}

fn handle(
    shared: &Shared,
    peer: &Peer,
    conn: u64,
    sessions: &mut HashMap<u32, Sess>,
    raw: &[u8],
    data: Vec<u8>,
) -> (u8, Answer) {
    let m = match Message::decode(raw) {
        Ok(m) => m,
        Err(e) => return (0, Err(Failure::new(Code::BadMessage, e.to_string()))),
    };
    let k = m.kind;
    let req = match Request::decode(&m) {
        Ok(r) => r,
        Err(e) => return (k, Err(Failure::new(e.code(), e.to_string()))),
    };
    let call = |op| shared.card.call(op, shared.limits.answer);
    let answer = match req {
        Request::Status | Request::Stage { .. } => call(Op::Plain(req)),
        // An operator's request on the card's role, not an application's:
        // hitlessd does not relay it.
        Request::Switchover { .. } => Err(Failure::new(
            Code::Permission,
            "hitlessd does not relay a switchover: ask the card directly (hitless --card …)",
        )),
        Request::Promote { .. } => Err(Failure::new(
            Code::Permission,
            "hitlessd does not relay a promotion: ask the card directly (hitless --card …)",
        )),
        Request::Open { app, flags: want } => open(shared, peer, sessions, app, want, call),
        Request::Close => match m.u32_or(tag::HANDLE, u32::MAX) {
            Ok(h) if sessions.remove(&h).is_some() => {
                drop_heaps(shared, conn, Some(h));
                Ok((Response::Done, vec![]))
            }
            _ => Err(no_session()),
        },
        req => session_request(sessions, &m, req, data).and_then(|op| {
            if let Op::Run { app, req, .. } = &op {
                if changes_state(req) && shared.suspended.contains(*app) {
                    tracing::info!(
                        uid = peer.uid,
                        app,
                        "request of a suspended application refused"
                    );
                    return Err(suspended_failure(*app));
                }
            }
            let cap = match &op {
                Op::Run {
                    req:
                        Request::Restore { cap, .. }
                        | Request::Fetch { cap, .. }
                        | Request::LogRead { cap, .. }
                        | Request::HeapRead { cap, .. }
                        | Request::HeapCheckout { cap, .. },
                    ..
                } => Some(*cap),
                _ => None,
            };
            let heap = match &op {
                Op::Run { req, .. } => heap_of(req),
                _ => None,
            };
            let (r, d) = match heap {
                Some(heap) => {
                    let handle = m.u32_or(tag::HANDLE, u32::MAX).unwrap_or(u32::MAX);
                    heap_request(shared, conn, handle, heap, op)?
                }
                None => call(op)?,
            };
            match cap {
                Some(cap) if d.len() > cap as usize => Err(Failure::too_small(d.len() as u64)),
                _ => Ok((r, d)),
            }
        }),
    };
    (k, answer)
}

fn no_session() -> Failure {
    Failure::new(
        Code::AuthFailed,
        "no session with this handle on this connection",
    )
}

fn open(
    shared: &Shared,
    peer: &Peer,
    sessions: &mut HashMap<u32, Sess>,
    app: u32,
    want: u32,
    call: impl Fn(Op) -> Answer,
) -> Answer {
    if want & !flags::ALL != 0 {
        return Err(Failure::new(
            Code::Invalid,
            format!("unknown flags {want:#x}"),
        ));
    }
    if sessions.len() >= shared.limits.max_sessions_per_connection {
        return Err(Failure::new(
            Code::NoSession,
            "hitlessd: too many sessions on this connection; CLOSE one",
        ));
    }
    let decision = match shared.policy.lock() {
        Ok(p) => p.decide(peer, app),
        Err(_) => return Err(Failure::new(Code::Device, "hitlessd: policy unavailable")),
    };
    if decision == Decision::Refused {
        shared.metrics.policy_refusals.inc();
        tracing::warn!(
            uid = peer.uid,
            pid = peer.pid,
            app,
            "open refused by policy"
        );
        return Err(Failure::new(
            Code::Permission,
            format!(
                "uid {} may not use application {app} (hitlessd policy)",
                peer.uid
            ),
        ));
    }
    let (r, _) = call(Op::Register { app })?;
    let Response::Opened { key, .. } = r else {
        return Err(Failure::new(
            Code::Device,
            "hitlessd: the card answered OPEN oddly",
        ));
    };
    if decision == Decision::Register {
        let registered = shared.policy.lock().map_err(|_| ()).and_then(|mut p| {
            p.register(app, peer.uid)
                .map_err(|e| tracing::error!("{e}"))
        });
        if registered.is_err() {
            return Err(Failure::new(
                Code::Device,
                "hitlessd: cannot record the application's owner",
            ));
        }
        tracing::info!(uid = peer.uid, app, "application registered");
    }
    let mut rng = rand::thread_rng();
    let handle = loop {
        let h: u32 = rng.gen();
        if h != 0 && h != u32::MAX && !sessions.contains_key(&h) {
            break h;
        }
    };
    sessions.insert(handle, Sess { app, flags: want });
    Ok((
        Response::Opened {
            handle,
            key,
            app,
            secret: None,
        },
        vec![],
    ))
}

/// A session request as the card's operation: the session named, the
/// permission it was opened with, the data where the request takes some.
fn session_request(
    sessions: &HashMap<u32, Sess>,
    m: &Message<'_>,
    req: Request,
    data: Vec<u8>,
) -> Result<Op, Failure> {
    let handle = m
        .u32_or(tag::HANDLE, u32::MAX)
        .map_err(|e| Failure::new(Code::BadMessage, e.to_string()))?;
    let s = *sessions.get(&handle).ok_or_else(no_session)?;
    if let Some((need, what)) = req.permission() {
        if s.flags & need == 0 {
            return Err(Failure::new(
                Code::Permission,
                format!("the session was not opened for {what}"),
            ));
        }
    }
    let takes_data = matches!(
        req,
        Request::Store { .. }
            | Request::LogAppend { .. }
            | Request::HeapStage { .. }
            | Request::HeapCommit { .. }
    );
    if !takes_data && !data.is_empty() {
        return Err(Failure::new(
            Code::Invalid,
            format!(
                "{} bytes of data with a request that takes none",
                data.len()
            ),
        ));
    }
    debug_assert!(data.len() <= MAX_DATA as usize);
    Ok(Op::Run {
        app: s.app,
        req,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspensions_survive_a_restart_and_bad_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("hitlessd-suspended-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("suspended");
        let s = Suspended::load(Some(file.clone())).unwrap();
        assert!(s.list().is_empty());
        assert!(s.set(9, true).unwrap());
        assert!(s.set(3, true).unwrap());
        assert!(!s.set(3, true).unwrap(), "already suspended");
        assert!(s.set(9, false).unwrap());
        let again = Suspended::load(Some(file.clone())).unwrap();
        assert_eq!(again.list(), [3]);
        assert!(again.contains(3) && !again.contains(9));
        std::fs::write(&file, "3\nseven\n").unwrap();
        let e = Suspended::load(Some(file)).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(changes_state(&Request::Delete {
            object: 1,
            endpoint: 0
        }));
        assert!(!changes_state(&Request::List { endpoint: 0 }));
    }
}
