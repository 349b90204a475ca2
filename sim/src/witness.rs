//! The pair's witness (`hitless-sim witness`): the arbiter process that
//! decides which card may be master. It holds a [`LocalArbiter`] (epoch,
//! holder, lease, in-sync set) and answers the witness messages
//! ([`hitless_proto::witness`]) over the pair's secure channel (Noise
//! NNpsk0, [`hitless_firmware::replication::channel`]); a peer without the
//! key is refused and counted.
//!
//! [`WitnessArbiter`] is the card's side: an [`Arbiter`] that asks the
//! witness. It connects lazily, reconnects after any failure, and bounds
//! every call by a short deadline (then [`ArbiterError::Unreachable`]). A
//! lease travels as the time it has left; the card ends it at its own send
//! time + time left − a skew margin, so the card's lease always ends before
//! the witness's does.
//!
//! Plain std TCP, a thread per connection (a witness serves a pair or a
//! trio): read and write timeouts on every socket, a witness frame is one
//! Noise message of at most [`MAX_WITNESS_FRAME`] bytes, and at most
//! [`MAX_CONNECTIONS`] connections are served at once.

use hitless_firmware::replication::channel::{
    Channel, ChannelError, Handshake, NoiseReader, Step, PSK_BYTES,
};
use hitless_firmware::replication::{Arbiter, ArbiterError, Lease, LocalArbiter};
use hitless_proto::witness::{DenyCode, WitnessError, WitnessMessage};
use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest witness frame (a request or answer is a few dozen bytes).
pub const MAX_WITNESS_FRAME: usize = 1024;
/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// A connection silent this long is closed (a card renews every heartbeat).
pub const IDLE: Duration = Duration::from_secs(30);
/// The handshake's deadline on the witness's side.
const HANDSHAKE: Duration = Duration::from_secs(2);

/// Why a witness connection failed.
#[derive(Debug, thiserror::Error)]
pub enum WitnessIoError {
    #[error("the witness's socket failed")]
    Io(#[from] std::io::Error),
    #[error("{0}: no answer within the deadline")]
    Timeout(&'static str),
    #[error("the peer closed the connection")]
    Closed,
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error("a witness frame of more than {MAX_WITNESS_FRAME} bytes")]
    FrameTooLarge,
    #[error("not a witness message")]
    Message(#[from] WitnessError),
    #[error("a handshake of more than two messages")]
    Handshake,
    #[error("the witness's state file {path}: {what}")]
    State { path: PathBuf, what: String },
}

/// The secure channel over a blocking socket.
struct Conn {
    stream: TcpStream,
    chan: Channel,
    noise: NoiseReader,
}

/// Read the next Noise message before `deadline` (socket read timeouts set
/// from it).
fn next_noise(
    stream: &mut TcpStream,
    noise: &mut NoiseReader,
    deadline: Instant,
    what: &'static str,
) -> Result<Vec<u8>, WitnessIoError> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(m) = noise.next_message() {
            return Ok(m);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WitnessIoError::Timeout(what));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err(WitnessIoError::Closed),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(WitnessIoError::Timeout(what))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        noise.push(&buf[..n]);
    }
}

fn write_by(
    stream: &mut TcpStream,
    bytes: &[u8],
    deadline: Instant,
    what: &'static str,
) -> Result<(), WitnessIoError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(WitnessIoError::Timeout(what));
    }
    stream.set_write_timeout(Some(left))?;
    stream.write_all(bytes).map_err(|e| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => WitnessIoError::Timeout(what),
        _ => e.into(),
    })
}

impl Conn {
    fn handshake(
        mut stream: TcpStream,
        hs: Handshake,
        first: Vec<u8>,
        deadline: Instant,
    ) -> Result<Self, WitnessIoError> {
        stream.set_nodelay(true)?;
        if !first.is_empty() {
            write_by(&mut stream, &first, deadline, "the witness handshake")?;
        }
        let mut noise = NoiseReader::default();
        let m = next_noise(&mut stream, &mut noise, deadline, "the witness handshake")?;
        let Step::Done(out, chan) = hs.read(&m)? else {
            return Err(WitnessIoError::Handshake);
        };
        if !out.is_empty() {
            write_by(&mut stream, &out, deadline, "the witness handshake")?;
        }
        Ok(Self {
            stream,
            chan,
            noise,
        })
    }

    fn send(&mut self, m: &WitnessMessage, deadline: Instant) -> Result<(), WitnessIoError> {
        let bytes = self.chan.seal(&m.encode())?;
        write_by(
            &mut self.stream,
            &bytes,
            deadline,
            "sending a witness message",
        )
    }

    fn recv(&mut self, deadline: Instant) -> Result<WitnessMessage, WitnessIoError> {
        let m = next_noise(
            &mut self.stream,
            &mut self.noise,
            deadline,
            "a witness message",
        )?;
        if m.len() > MAX_WITNESS_FRAME + 64 {
            return Err(WitnessIoError::FrameTooLarge);
        }
        // A witness frame is one Noise message: a continuation is refused.
        let frame = self.chan.open(&m)?.ok_or(WitnessIoError::FrameTooLarge)?;
        if frame.len() > MAX_WITNESS_FRAME {
            return Err(WitnessIoError::FrameTooLarge);
        }
        Ok(WitnessMessage::decode(&frame)?)
    }
}

/// The witness's configuration.
#[derive(Clone, Debug)]
pub struct WitnessConfig {
    pub members: Vec<u32>,
    pub lease: Duration,
    /// Margin for clock skew: a lease is granted again only this long
    /// after it ran out.
    pub skew: Duration,
    pub psk: [u8; PSK_BYTES],
    /// Where the epoch and the in-sync set are kept across restarts
    /// (written before every grant and in-sync change is answered).
    /// `None`: memory only (a restarted witness starts at epoch 0).
    pub state: Option<PathBuf>,
}

/// The arbiter, its state file, and the grace after a restart.
struct Shared {
    arbiter: LocalArbiter,
    state: Option<PathBuf>,
    /// Restarted from a state file: no grant before this (a holder of the
    /// lease the witness forgot may still be taking writes).
    grace_until: Option<Instant>,
}

/// The saved epoch and in-sync set, if the file exists.
fn load_state(path: &Path) -> Result<Option<(u64, Vec<u32>)>, WitnessIoError> {
    let bad = |what: String| WitnessIoError::State {
        path: path.to_owned(),
        what,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let (mut epoch, mut in_sync) = (None, None);
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("epoch", v)) => epoch = Some(v.trim().parse().map_err(|e| bad(format!("{e}")))?),
            Some(("in_sync", v)) => {
                in_sync = Some(
                    v.split(',')
                        .filter(|n| !n.trim().is_empty())
                        .map(|n| n.trim().parse::<u32>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| bad(format!("{e}")))?,
                )
            }
            _ => {}
        }
    }
    match (epoch, in_sync) {
        (Some(e), Some(m)) => Ok(Some((e, m))),
        _ => Err(bad("no epoch or in_sync line".into())),
    }
}

/// Write the state durably (a temporary file, fsync, rename).
fn save_state(path: &Path, a: &LocalArbiter) -> std::io::Result<()> {
    let members: Vec<String> = a.in_sync().iter().map(u32::to_string).collect();
    let text = format!("epoch {}\nin_sync {}\n", a.epoch(), members.join(","));
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A running witness.
pub struct Witness {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    arbiter: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Witness {
    /// Listen on `addr` (port 0: any free port) and serve in a thread.
    pub fn start(addr: SocketAddr, cfg: WitnessConfig) -> Result<Self, WitnessIoError> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let saved = match &cfg.state {
            Some(p) => load_state(p)?,
            None => None,
        };
        let (arbiter, grace_until) = match saved {
            Some((epoch, in_sync)) => {
                tracing::warn!(
                    epoch,
                    ?in_sync,
                    "witness restarted: no grant for one lease and skew"
                );
                (
                    LocalArbiter::resume(epoch, in_sync, cfg.lease, cfg.skew),
                    Some(Instant::now() + cfg.lease + cfg.skew),
                )
            }
            None => (
                LocalArbiter::new(cfg.members.iter().copied(), cfg.lease, cfg.skew),
                None,
            ),
        };
        let arbiter = Arc::new(Mutex::new(Shared {
            arbiter,
            state: cfg.state.clone(),
            grace_until,
        }));
        let thread = {
            let (stop, refused, arbiter) = (stop.clone(), refused.clone(), arbiter.clone());
            std::thread::Builder::new()
                .name("hitless-witness".into())
                .spawn(move || accept_loop(listener, cfg.psk, arbiter, refused, stop))?
        };
        tracing::info!(%addr, "witness listening");
        Ok(Self {
            addr,
            stop,
            refused,
            arbiter,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections refused (no key, garbage, silence, too many).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The current epoch and holder.
    pub fn epoch(&self) -> (u64, Option<u32>) {
        let a = lock(&self.arbiter);
        (a.arbiter.epoch(), a.arbiter.holder())
    }

    /// A flag that stops the witness when set (signal handlers).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Stop accepting and wait for the accept thread (connections end at
    /// their next read).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Run until the stop flag is set.
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn accept_loop(
    listener: TcpListener,
    psk: [u8; PSK_BYTES],
    arbiter: Arc<Mutex<Shared>>,
    refused: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let live = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        let (stream, from) = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "witness accept");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if live.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(peer = %from, "witness: too many connections, refused");
            continue;
        }
        live.fetch_add(1, Ordering::SeqCst);
        let (arbiter, refused, stop, live2) =
            (arbiter.clone(), refused.clone(), stop.clone(), live.clone());
        let spawned = std::thread::Builder::new()
            .name("hitless-witness-conn".into())
            .spawn(move || {
                if let Err(e) = serve_conn(stream, &psk, &arbiter, &refused, &stop) {
                    tracing::debug!(peer = %from, error = %e, "witness connection ended");
                }
                live2.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            live.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(error = %e, "witness: no thread for a connection");
        }
    }
}

fn serve_conn(
    stream: TcpStream,
    psk: &[u8; PSK_BYTES],
    arbiter: &Mutex<Shared>,
    refused: &AtomicU64,
    stop: &AtomicBool,
) -> Result<(), WitnessIoError> {
    stream.set_nonblocking(false)?;
    let hs = Handshake::respond(psk)?;
    let mut conn = match Conn::handshake(stream, hs, Vec::new(), Instant::now() + HANDSHAKE) {
        Ok(c) => c,
        Err(e) => {
            refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "witness: peer refused");
            return Err(e);
        }
    };
    let mut idle_since = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        // Short reads so a stopped witness lets go of its connections.
        let req = match conn.recv(Instant::now() + Duration::from_millis(200)) {
            Ok(r) => r,
            Err(WitnessIoError::Timeout(_)) if idle_since.elapsed() < IDLE => continue,
            Err(e) => return Err(e),
        };
        idle_since = Instant::now();
        let answer = answer(&mut lock(arbiter), &req, Instant::now());
        conn.send(&answer, Instant::now() + HANDSHAKE)?;
    }
    Ok(())
}

fn left_us(until: Option<Instant>, now: Instant) -> u64 {
    until.map_or(u64::MAX, |u| {
        u64::try_from(u.saturating_duration_since(now).as_micros()).unwrap_or(u64::MAX)
    })
}

fn grant(l: Lease, now: Instant) -> WitnessMessage {
    WitnessMessage::Grant {
        epoch: l.epoch,
        left_us: left_us(l.until, now),
        members: l.in_sync.into_iter().collect(),
    }
}

fn deny(e: ArbiterError) -> WitnessMessage {
    match e {
        ArbiterError::Held {
            holder,
            epoch,
            left,
        } => WitnessMessage::Deny {
            code: DenyCode::Held,
            holder: Some(holder),
            epoch,
            left_us: u64::try_from(left.as_micros()).unwrap_or(u64::MAX),
        },
        ArbiterError::NotInSync(_) => WitnessMessage::Deny {
            code: DenyCode::NotInSync,
            holder: None,
            epoch: 0,
            left_us: 0,
        },
        ArbiterError::NotHolder {
            holder, current, ..
        } => WitnessMessage::Deny {
            code: DenyCode::NotHolder,
            holder,
            epoch: current,
            left_us: 0,
        },
        ArbiterError::Absent | ArbiterError::Unreachable => WitnessMessage::Deny {
            code: DenyCode::Other,
            holder: None,
            epoch: 0,
            left_us: 0,
        },
    }
}

/// The witness's answer to one request: the arbiter's, once its state is
/// on disk (a grant or an in-sync change not saved is refused).
fn answer(sh: &mut Shared, req: &WitnessMessage, now: Instant) -> WitnessMessage {
    if let (WitnessMessage::Acquire { .. }, Some(g)) = (req, sh.grace_until) {
        if now < g {
            return WitnessMessage::Deny {
                code: DenyCode::Held,
                holder: None,
                epoch: sh.arbiter.epoch(),
                left_us: left_us(Some(g), now),
            };
        }
        sh.grace_until = None;
    }
    let reply = arbitrate(&mut sh.arbiter, req, now);
    let changed = matches!(
        (req, &reply),
        (WitnessMessage::Acquire { .. }, WitnessMessage::Grant { .. })
            | (WitnessMessage::SetInSync { .. }, WitnessMessage::Done)
    );
    if let (true, Some(path)) = (changed, &sh.state) {
        if let Err(e) = save_state(path, &sh.arbiter) {
            tracing::error!(path = %path.display(), error = %e, "witness state not saved: refused");
            return WitnessMessage::Deny {
                code: DenyCode::Other,
                holder: None,
                epoch: 0,
                left_us: 0,
            };
        }
    }
    reply
}

fn arbitrate(a: &mut LocalArbiter, req: &WitnessMessage, now: Instant) -> WitnessMessage {
    let r = match req {
        WitnessMessage::Acquire { node } => a.acquire(*node, now).map(|l| grant(l, now)),
        WitnessMessage::Renew { node, epoch } => a.renew(*node, *epoch, now).map(|l| grant(l, now)),
        WitnessMessage::Release { node, epoch } => {
            a.release(*node, *epoch, now).map(|()| WitnessMessage::Done)
        }
        WitnessMessage::SetInSync {
            node,
            epoch,
            members,
        } => {
            let set: BTreeSet<u32> = members.iter().copied().collect();
            a.set_in_sync(*node, *epoch, &set, now)
                .map(|()| WitnessMessage::Done)
        }
        WitnessMessage::Grant { .. } | WitnessMessage::Done | WitnessMessage::Deny { .. } => {
            Err(ArbiterError::Absent)
        }
    };
    r.unwrap_or_else(deny)
}

/// The card's arbiter: the witness over the secure channel.
pub struct WitnessArbiter {
    addr: SocketAddr,
    psk: [u8; PSK_BYTES],
    /// Every call's deadline (connecting included).
    deadline: Duration,
    /// Subtracted from every lease the witness grants.
    skew: Duration,
    conn: Option<Conn>,
}

impl WitnessArbiter {
    pub fn new(addr: SocketAddr, psk: [u8; PSK_BYTES], deadline: Duration, skew: Duration) -> Self {
        Self {
            addr,
            psk,
            deadline,
            skew,
            conn: None,
        }
    }

    fn connect(&self, deadline: Instant) -> Result<Conn, WitnessIoError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WitnessIoError::Timeout("connecting to the witness"));
        }
        let stream = TcpStream::connect_timeout(&self.addr, left)?;
        let (hs, first) = Handshake::initiate(&self.psk)?;
        Conn::handshake(stream, hs, first, deadline)
    }

    /// One request and its answer, with one reconnection (a connection
    /// the witness closed while idle), all within the deadline.
    fn call(&mut self, req: &WitnessMessage) -> Result<(WitnessMessage, Instant), ArbiterError> {
        let deadline = Instant::now() + self.deadline;
        for attempt in 0..2 {
            let fresh = self.conn.is_none();
            let mut conn = match self.conn.take() {
                Some(c) => c,
                None => self.connect(deadline).map_err(|e| {
                    tracing::debug!(witness = %self.addr, error = %e, "witness unreachable");
                    ArbiterError::Unreachable
                })?,
            };
            let sent = Instant::now();
            match conn.send(req, deadline).and_then(|()| conn.recv(deadline)) {
                Ok(a) => {
                    self.conn = Some(conn);
                    return Ok((a, sent));
                }
                Err(e) => {
                    tracing::debug!(witness = %self.addr, attempt, error = %e, "witness call failed");
                    if fresh || matches!(e, WitnessIoError::Timeout(_)) {
                        break;
                    }
                }
            }
        }
        Err(ArbiterError::Unreachable)
    }

    fn lease(&self, answer: WitnessMessage, sent: Instant) -> Result<Lease, ArbiterError> {
        match answer {
            WitnessMessage::Grant {
                epoch,
                left_us,
                members,
            } => {
                let left = Duration::from_micros(left_us).saturating_sub(self.skew);
                Ok(Lease {
                    epoch,
                    until: Some(sent + left),
                    in_sync: members.into_iter().collect(),
                })
            }
            other => Err(self.refusal(other, None)),
        }
    }

    fn refusal(&self, answer: WitnessMessage, asked: Option<(u32, u64)>) -> ArbiterError {
        match answer {
            WitnessMessage::Deny {
                code: DenyCode::Held,
                holder,
                epoch,
                left_us,
            } => ArbiterError::Held {
                holder: holder.unwrap_or(u32::MAX),
                epoch,
                left: Duration::from_micros(left_us),
            },
            WitnessMessage::Deny {
                code: DenyCode::NotInSync,
                ..
            } => ArbiterError::NotInSync(asked.map_or(u32::MAX, |a| a.0)),
            WitnessMessage::Deny {
                code: DenyCode::NotHolder,
                holder,
                epoch,
                ..
            } => {
                let (node, asked_epoch) = asked.unwrap_or((u32::MAX, 0));
                ArbiterError::NotHolder {
                    node,
                    epoch: asked_epoch,
                    holder,
                    current: epoch,
                }
            }
            other => {
                tracing::warn!(?other, "the witness answered what was not asked");
                ArbiterError::Unreachable
            }
        }
    }

    fn lease_for(&mut self, req: WitnessMessage, asked: (u32, u64)) -> Result<Lease, ArbiterError> {
        let (a, sent) = self.call(&req)?;
        match a {
            g @ WitnessMessage::Grant { .. } => self.lease(g, sent),
            other => Err(self.refusal(other, Some(asked))),
        }
    }

    fn done(&mut self, req: WitnessMessage, asked: (u32, u64)) -> Result<(), ArbiterError> {
        match self.call(&req)?.0 {
            WitnessMessage::Done => Ok(()),
            other => Err(self.refusal(other, Some(asked))),
        }
    }
}

impl Arbiter for WitnessArbiter {
    fn acquire(&mut self, node: u32, _now: Instant) -> Result<Lease, ArbiterError> {
        self.lease_for(WitnessMessage::Acquire { node }, (node, 0))
    }
    fn renew(&mut self, node: u32, epoch: u64, _now: Instant) -> Result<Lease, ArbiterError> {
        self.lease_for(WitnessMessage::Renew { node, epoch }, (node, epoch))
    }
    fn release(&mut self, node: u32, epoch: u64, _now: Instant) -> Result<(), ArbiterError> {
        self.done(WitnessMessage::Release { node, epoch }, (node, epoch))
    }
    fn set_in_sync(
        &mut self,
        node: u32,
        epoch: u64,
        slaves: &BTreeSet<u32>,
        _now: Instant,
    ) -> Result<(), ArbiterError> {
        self.done(
            WitnessMessage::SetInSync {
                node,
                epoch,
                members: slaves.iter().copied().collect(),
            },
            (node, epoch),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [5; 32];

    fn witness(lease_ms: u64) -> Witness {
        Witness::start(
            "127.0.0.1:0".parse().unwrap(),
            WitnessConfig {
                members: vec![1, 2],
                lease: Duration::from_millis(lease_ms),
                skew: Duration::from_millis(10),
                psk: KEY,
                state: None,
            },
        )
        .unwrap()
    }

    fn client(w: &Witness, key: [u8; 32]) -> WitnessArbiter {
        WitnessArbiter::new(
            w.local_addr(),
            key,
            Duration::from_millis(500),
            Duration::from_millis(5),
        )
    }

    #[test]
    fn the_arbiter_rules_hold_through_the_witness() {
        let w = witness(300);
        let (mut a, mut b) = (client(&w, KEY), client(&w, KEY));
        let now = Instant::now();
        // Grant: epoch 1, a lease shorter than the witness's by the skew.
        let l = a.acquire(1, now).unwrap();
        assert_eq!(l.epoch, 1);
        assert_eq!(l.in_sync, BTreeSet::from([1, 2]));
        let until = l.until.unwrap();
        assert!(until <= Instant::now() + Duration::from_millis(300));
        assert!(until > now + Duration::from_millis(200));
        // Held for the other node.
        assert!(matches!(
            b.acquire(2, Instant::now()),
            Err(ArbiterError::Held {
                holder: 1,
                epoch: 1,
                ..
            })
        ));
        // Renew by the holder; not by another node or for another epoch.
        assert_eq!(a.renew(1, 1, Instant::now()).unwrap().epoch, 1);
        assert!(matches!(
            b.renew(2, 1, Instant::now()),
            Err(ArbiterError::NotHolder {
                node: 2,
                epoch: 1,
                holder: Some(1),
                current: 1
            })
        ));
        assert!(matches!(
            a.renew(1, 7, Instant::now()),
            Err(ArbiterError::NotHolder { current: 1, .. })
        ));
        // The holder drops node 2 from the in-sync set: 2 cannot take over
        // even after the lease ran out.
        a.set_in_sync(1, 1, &BTreeSet::new(), Instant::now())
            .unwrap();
        std::thread::sleep(Duration::from_millis(330));
        assert_eq!(
            b.acquire(2, Instant::now()),
            Err(ArbiterError::NotInSync(2))
        );
        // Back in sync, a release lets node 2 take epoch 2 at once.
        let l = a.acquire(1, Instant::now()).unwrap();
        assert_eq!(l.epoch, 2);
        a.set_in_sync(1, 2, &BTreeSet::from([2]), Instant::now())
            .unwrap();
        a.release(1, 2, Instant::now()).unwrap();
        let l = b.acquire(2, Instant::now()).unwrap();
        assert_eq!(l.epoch, 3);
        assert_eq!(l.in_sync, BTreeSet::from([1, 2]));
        // The old holder is fenced.
        assert!(matches!(
            a.renew(1, 2, Instant::now()),
            Err(ArbiterError::NotHolder {
                holder: Some(2),
                current: 3,
                ..
            })
        ));
        assert_eq!(w.epoch(), (3, Some(2)));
        assert_eq!(w.refused(), 0);
        w.stop();
    }

    #[test]
    fn a_client_without_the_key_is_refused_and_counted() {
        let w = witness(300);
        let mut bad = client(&w, [6; 32]);
        let t = Instant::now();
        assert_eq!(
            bad.acquire(1, Instant::now()),
            Err(ArbiterError::Unreachable)
        );
        assert!(t.elapsed() < Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(5);
        while w.refused() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(w.refused() >= 1);
        // Nothing was granted to it; a card with the key gets epoch 1.
        assert_eq!(client(&w, KEY).acquire(2, Instant::now()).unwrap().epoch, 1);
        w.stop();
    }

    #[test]
    fn a_stopped_witness_is_unreachable_within_the_deadline_and_a_new_one_is_reached() {
        let w = witness(300);
        let addr = w.local_addr();
        let mut a = client(&w, KEY);
        a.acquire(1, Instant::now()).unwrap();
        w.stop();
        // Let the connection thread see the stop.
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        assert_eq!(
            a.renew(1, 1, Instant::now()),
            Err(ArbiterError::Unreachable)
        );
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // A witness back on the same address: the client reconnects.
        let w2 = Witness::start(
            addr,
            WitnessConfig {
                members: vec![1, 2],
                lease: Duration::from_millis(300),
                skew: Duration::from_millis(10),
                psk: KEY,
                state: None,
            },
        )
        .unwrap();
        assert_eq!(a.acquire(1, Instant::now()).unwrap().epoch, 1);
        w2.stop();
    }

    #[test]
    fn a_restarted_witness_keeps_its_epoch_and_in_sync_set_and_waits_a_lease() {
        let dir = std::env::temp_dir().join(format!("hitless-witness-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = WitnessConfig {
            members: vec![1, 2],
            lease: Duration::from_millis(200),
            skew: Duration::from_millis(10),
            psk: KEY,
            state: Some(dir.join("witness.state")),
        };
        let w = Witness::start("127.0.0.1:0".parse().unwrap(), cfg.clone()).unwrap();
        let mut a = client(&w, KEY);
        assert_eq!(a.acquire(1, Instant::now()).unwrap().epoch, 1);
        a.set_in_sync(1, 1, &BTreeSet::new(), Instant::now())
            .unwrap();
        w.stop();
        let w = Witness::start("127.0.0.1:0".parse().unwrap(), cfg).unwrap();
        let (mut a, mut b) = (client(&w, KEY), client(&w, KEY));
        // Within a lease of the restart nobody is granted.
        assert!(matches!(
            a.acquire(1, Instant::now()),
            Err(ArbiterError::Held { epoch: 1, .. })
        ));
        std::thread::sleep(Duration::from_millis(250));
        // Then the saved in-sync set holds: node 2 was dropped.
        assert_eq!(
            b.acquire(2, Instant::now()),
            Err(ArbiterError::NotInSync(2))
        );
        assert_eq!(a.acquire(1, Instant::now()).unwrap().epoch, 2);
        w.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
