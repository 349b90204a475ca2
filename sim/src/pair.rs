//! The card-to-card links of a replicated card (`hitless-sim serve --node
//! N --listen ADDR --peer N=ADDR`): a tokio runtime in its own thread that
//! keeps one authenticated link ([`crate::link`]) per peer and moves link
//! frames between it and the firmware thread, which owns the replication
//! [`Node`](hitless_firmware::replication::Node).
//!
//! Who dials: a card dials the peers with a smaller node id and accepts the
//! others, so a pair has one connection. The dialer's first frame on the
//! secure channel is its node id (4 bytes, little-endian), read by the
//! acceptor within the handshake deadline; a peer that is not configured,
//! or should have been dialed instead, is refused and counted.
//!
//! Bounds: a link silent for [`LinkSetup::idle`] is dropped and dialed
//! again (a hung peer); outgoing frames wait in a bounded queue per peer
//! ([`OUTBOX`]); a frame for a peer without a link, or past the bound, is
//! dropped (the node resends or snapshots after the next `HELLO`).
//!
//! Keepalive: the firmware thread runs one host request or one bracket's
//! apply at a time, and an NV commit of the simulated card can take most
//! of a second on a loaded machine, longer than the peer's silence period.
//! So while the node sends nothing to a peer, its link repeats the node's
//! last `HEARTBEAT` to that peer every heartbeat interval, for at most
//! [`LinkSetup::keepalive_for`] after the node wrote it (a firmware thread
//! stuck for longer falls silent, as a hung card should). A `HELLO` (a new
//! connection or role) forgets the repeated heartbeat.

use crate::firmware::Input;
use crate::link::{LinkIoError, LinkLimits, LinkListener, SecureLink};
use hitless_firmware::replication::channel::PSK_BYTES;
use hitless_firmware::replication::Mode;
use hitless_proto::link;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Frames queued per peer before new ones are dropped.
pub const OUTBOX: usize = 4096;

/// A replicated card's pair settings.
#[derive(Clone, Debug)]
pub struct PairConfig {
    pub node: u32,
    pub listen: SocketAddr,
    pub peers: Vec<(u32, SocketAddr)>,
    pub psk: [u8; PSK_BYTES],
    pub witness: Option<SocketAddr>,
    /// The pair's arbiter in etcd instead of a witness (URL of the v3
    /// gateway, the pair's key prefix, the lease TTL).
    pub etcd: Option<EtcdSettings>,
    pub mode: Mode,
    pub heartbeat: Duration,
}

/// Where a card finds the pair's etcd arbiter.
#[derive(Clone, Debug)]
pub struct EtcdSettings {
    /// The v3 JSON gateway, e.g. `http://127.0.0.1:2379`.
    pub url: String,
    /// The pair's key prefix (`None`: `/hitless/pair/<members>/`).
    pub prefix: Option<String>,
    /// The etcd lease TTL (whole seconds, at least etcd's minimum, ~2 s).
    pub ttl: Duration,
}

/// Timing of the links.
#[derive(Clone, Debug)]
pub struct LinkSetup {
    pub limits: LinkLimits,
    /// A link with nothing received for this long is dropped.
    pub idle: Duration,
    /// Pause between dials.
    pub redial: Duration,
    /// The heartbeat interval (the keepalive's period).
    pub heartbeat: Duration,
    /// How long after the node wrote a heartbeat the link may repeat it.
    pub keepalive_for: Duration,
}

impl LinkSetup {
    pub fn for_heartbeat(heartbeat: Duration) -> Self {
        Self {
            limits: LinkLimits {
                connect: Duration::from_millis(500),
                handshake: Duration::from_secs(1),
                write: Duration::from_secs(1),
            },
            idle: (heartbeat * 20).max(Duration::from_secs(1)),
            redial: Duration::from_millis(50),
            heartbeat,
            keepalive_for: heartbeat * 10,
        }
    }
}

type Outboxes = Arc<Mutex<HashMap<u32, mpsc::Sender<Vec<u8>>>>>;
/// Each peer's last heartbeat from the node, with when it was written.
type Heartbeats = Arc<Mutex<HashMap<u32, (Vec<u8>, Instant)>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running links.
pub struct Links {
    outboxes: Outboxes,
    heartbeats: Heartbeats,
    refused: Arc<AtomicU64>,
    local: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Links {
    /// Send one frame to `peer` if it has a link (dropped otherwise).
    pub fn send(&self, peer: u32, frame: Vec<u8>) {
        // The TLV header: magic (2 bytes), format version, kind.
        match frame.get(3).copied() {
            Some(link::kind::HEARTBEAT) => {
                lock(&self.heartbeats).insert(peer, (frame.clone(), Instant::now()));
            }
            Some(link::kind::HELLO) => {
                lock(&self.heartbeats).remove(&peer);
            }
            _ => {}
        }
        let out = lock(&self.outboxes).get(&peer).cloned();
        match out {
            Some(tx) => {
                if tx.try_send(frame).is_err() {
                    tracing::debug!(peer, "link queue full or closed: frame dropped");
                }
            }
            None => tracing::trace!(peer, "no link: frame dropped"),
        }
    }

    /// Peers refused so far (no key, garbage, not a configured peer).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Start the links: listen, dial, and report frames and connections to
/// the firmware thread through `input`.
pub fn start(cfg: &PairConfig, setup: LinkSetup, input: Sender<Input>) -> Result<Links, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("the link runtime: {e}"))?;
    let listener = rt
        .block_on(LinkListener::bind(
            cfg.listen,
            cfg.psk,
            setup.limits.clone(),
        ))
        .map_err(|e| format!("listening on {}: {e}", cfg.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let refused = listener.refused_counter();
    let outboxes: Outboxes = Arc::default();
    let heartbeats: Heartbeats = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node = cfg.node;
    let cfg = cfg.clone();
    let (ob, rf, hb) = (outboxes.clone(), refused.clone(), heartbeats.clone());
    let thread = std::thread::Builder::new()
        .name("hitless-links".into())
        .spawn(move || {
            rt.block_on(async move {
                let ctx = Arc::new(Ctx {
                    me: cfg.node,
                    outboxes: ob,
                    heartbeats: hb,
                    input,
                    setup,
                    refused: rf,
                });
                for &(peer, addr) in &cfg.peers {
                    if peer < cfg.node {
                        tokio::spawn(dial(ctx.clone(), peer, addr, cfg.psk));
                    }
                }
                let peers: Vec<u32> = cfg.peers.iter().map(|p| p.0).collect();
                tokio::select! {
                    _ = stop_rx => {}
                    _ = accept(ctx, listener, peers) => {}
                }
            });
        })
        .map_err(|e| format!("the link thread: {e}"))?;
    tracing::info!(node, %local, "links up");
    Ok(Links {
        outboxes,
        heartbeats,
        refused,
        local,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

struct Ctx {
    me: u32,
    outboxes: Outboxes,
    heartbeats: Heartbeats,
    input: Sender<Input>,
    setup: LinkSetup,
    refused: Arc<AtomicU64>,
}

async fn dial(ctx: Arc<Ctx>, peer: u32, addr: SocketAddr, psk: [u8; PSK_BYTES]) {
    loop {
        match SecureLink::connect(addr, &psk, &ctx.setup.limits).await {
            Ok(mut link) => match link.send_frame(&ctx.me.to_le_bytes()).await {
                Ok(()) => {
                    tracing::info!(peer, %addr, "link up (dialed)");
                    run_peer(&ctx, peer, link).await;
                }
                Err(e) => tracing::debug!(peer, error = %e, "link introduction"),
            },
            Err(e) => tracing::trace!(peer, error = %e, "dialing"),
        }
        tokio::time::sleep(ctx.setup.redial).await;
    }
}

async fn accept(ctx: Arc<Ctx>, listener: LinkListener, peers: Vec<u32>) {
    loop {
        let mut link = match listener.accept().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "link listener");
                tokio::time::sleep(ctx.setup.redial).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        let peers = peers.clone();
        tokio::spawn(async move {
            let intro = tokio::time::timeout(ctx.setup.limits.handshake, link.recv_frame()).await;
            let peer = match intro {
                Ok(Ok(f)) if f.len() == 4 => u32::from_le_bytes([f[0], f[1], f[2], f[3]]),
                _ => {
                    ctx.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(from = %link.peer(), "link refused: no introduction");
                    return;
                }
            };
            if !peers.contains(&peer) || peer <= ctx.me {
                ctx.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer, from = %link.peer(), "link refused: not a peer that dials");
                return;
            }
            tracing::info!(peer, from = %link.peer(), "link up (accepted)");
            run_peer(&ctx, peer, link).await;
        });
    }
}

/// Move frames both ways until the link fails or falls silent.
async fn run_peer(ctx: &Ctx, peer: u32, mut link: SecureLink) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(OUTBOX);
    lock(&ctx.outboxes).insert(peer, tx.clone());
    let _ = ctx.input.send(Input::Connected(peer));
    let mut keepalive = tokio::time::interval(ctx.setup.heartbeat.max(Duration::from_millis(1)));
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sent = Instant::now();
    let why: LinkIoError = loop {
        tokio::select! {
            _ = keepalive.tick() => {
                if last_sent.elapsed() < ctx.setup.heartbeat {
                    continue;
                }
                // The node sent nothing for an interval: repeat its last
                // heartbeat while it is recent (the firmware thread busy).
                let repeat = lock(&ctx.heartbeats)
                    .get(&peer)
                    .filter(|(_, at)| at.elapsed() < ctx.setup.keepalive_for)
                    .map(|(f, _)| f.clone());
                if let Some(frame) = repeat {
                    tracing::trace!(peer, "keepalive: the last heartbeat repeated");
                    if let Err(e) = link.send_frame(&frame).await {
                        break e;
                    }
                    last_sent = Instant::now();
                }
            },
            r = tokio::time::timeout(ctx.setup.idle, link.recv_frame()) => match r {
                Ok(Ok(frame)) => {
                    if ctx.input.send(Input::Frame(peer, frame)).is_err() {
                        break LinkIoError::Closed;
                    }
                }
                Ok(Err(e)) => break e,
                Err(_) => break LinkIoError::Timeout { what: "the peer's next frame", after: ctx.setup.idle },
            },
            m = rx.recv() => match m {
                Some(frame) => {
                    if let Err(e) = link.send_frame(&frame).await {
                        break e;
                    }
                    last_sent = Instant::now();
                }
                None => break LinkIoError::Closed,
            },
        }
    };
    tracing::info!(peer, error = %why, "link down");
    // Only the current link of the peer reports it gone (a newer one may
    // have replaced it).
    let mut ob = lock(&ctx.outboxes);
    if ob.get(&peer).is_some_and(|t| t.same_channel(&tx)) {
        ob.remove(&peer);
        drop(ob);
        let _ = ctx.input.send(Input::Disconnected(peer));
    }
}
