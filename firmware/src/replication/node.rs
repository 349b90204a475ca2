//! One card's replication role: the sans-IO state machine the transport
//! drives. The caller (the tokio layer in `hitless-sim`, or a test's
//! simulated network) gives it what arrives ([`Node::receive`]), the
//! passing of time ([`Node::tick`]) and link changes ([`Node::connected`]),
//! and takes what it must send ([`Node::poll_transmit`]: a peer and an
//! encoded link message) and what happened ([`Node::poll_event`]). Time is
//! an `Instant` passed in; nothing here blocks, sleeps or opens a socket.
//!
//! | file | concern |
//! |---|---|
//! | `node.rs` | the node, its configuration, events, message dispatch, epochs |
//! | `master.rs` | the write path, brackets out, acks, sync/async, resend, switchover |
//! | `slave.rs` | brackets in: buffer, apply at close, discard, ack |
//! | `monitor.rs` | heartbeats, silence, lease renewal, takeover |

use super::arbiter::Lease;
use super::journal::{Bracket, Mark};
use super::replica::Replica;
use hitless_proto::link::{LinkMessage, RefuseCode, Role, SCHEMA};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// What a slave whose state is not whole brackets says in its HELLO.
pub const NO_MARK: Mark = Mark {
    epoch: u64::MAX,
    bracket: 0,
};

/// When a write counts as done for the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Acknowledged to the host only when every in-sync slave has the
    /// bracket durable ([`Event::Durable`]).
    Sync,
    /// Acknowledged at once; the lag is tracked ([`Node::lag`]).
    Async,
}

/// A node's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// This card's node id.
    pub node: u32,
    /// The other cards of the pair (or trio).
    pub peers: Vec<u32>,
    /// The link schema this node writes (older values: an older card).
    pub schema: u32,
    pub mode: Mode,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Heartbeats missed before a peer is taken for failed.
    pub missed_heartbeats: u32,
    /// An open bracket whose close does not come within this is discarded.
    pub close_deadline: Duration,
    /// A sync write not durable within this fails ([`Event::SyncTimeout`]).
    pub sync_deadline: Duration,
    /// A switchover that has not drained within this is given up.
    pub switchover_deadline: Duration,
    /// Largest bracket of one request (bytes of its changes).
    pub max_bracket_bytes: usize,
    /// Largest full snapshot bracket.
    pub max_full_bytes: usize,
    /// Closed brackets kept for resending; past this, a lagging slave gets
    /// a full snapshot instead.
    pub max_unacked_bytes: usize,
}

impl Config {
    /// Defaults: 10 ms heartbeats, 3 missed, 100 ms close deadline.
    pub fn new(node: u32, peers: impl IntoIterator<Item = u32>) -> Self {
        Self {
            node,
            peers: peers.into_iter().filter(|p| *p != node).collect(),
            schema: SCHEMA,
            mode: Mode::Sync,
            heartbeat: Duration::from_millis(10),
            missed_heartbeats: 3,
            close_deadline: Duration::from_millis(100),
            sync_deadline: Duration::from_millis(200),
            switchover_deadline: Duration::from_secs(1),
            max_bracket_bytes: 4 << 20,
            max_full_bytes: 256 << 20,
            max_unacked_bytes: 64 << 20,
        }
    }

    /// Silence after which a peer is taken for failed.
    pub fn silence(&self) -> Duration {
        self.heartbeat * self.missed_heartbeats
    }
}

/// What happened, for the caller (the firmware loop, the CLI's status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Sync mode: every in-sync slave has the bracket durable; the host's
    /// request may be acknowledged now.
    Durable { epoch: u64, bracket: u64 },
    /// Sync mode: not durable within the deadline; the host's request
    /// fails (it may or may not survive a takeover).
    SyncTimeout { epoch: u64, bracket: u64 },
    /// A write in flight when this node stopped being master: it fails.
    Abandoned { epoch: u64, bracket: u64 },
    /// Slave: a closed bracket applied and acknowledged.
    Applied { mark: Mark, full: bool, digest: u32 },
    /// Slave: an open bracket thrown away (claims 16, 31, 42).
    Discarded { bracket: u64, why: String },
    /// Slave: a closed bracket could not be applied (the master resends).
    ApplyFailed { bracket: u64, why: String },
    /// No heartbeat from the master for the silence period.
    MasterSilent {
        master: Option<u32>,
        since: Duration,
    },
    /// The arbiter refused a takeover (or there is none).
    TakeoverRefused { why: String },
    /// This node became master.
    BecameMaster {
        epoch: u64,
        /// Why, when the takeover was not hitless (claim 18).
        cause: Option<String>,
    },
    /// This node stopped being master of `epoch` (a newer epoch, a lost
    /// lease, a switchover).
    SteppedDown { epoch: u64, why: String },
    /// Master: a full snapshot sent to a slave.
    FullSent {
        peer: u32,
        mark: Mark,
        digest: u32,
        bytes: usize,
    },
    /// Master: a silent slave left (or a caught-up one rejoined) the
    /// in-sync set.
    InSync { slaves: BTreeSet<u32> },
    /// A peer refused something of ours.
    Refused {
        peer: u32,
        code: RefuseCode,
        reason: String,
    },
    /// The master that took over from us said why (claim 18).
    Cause { from: u32, reason: String },
    /// A switchover finished (old master side) or failed.
    Switchover { to: u32, done: bool, why: String },
    /// A message that was not a link message this node can use.
    BadMessage { peer: u32, why: String },
}

/// Why a write is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    /// This node is not master (fencing: its epoch, the master it knows).
    #[error("not master (epoch {epoch}, master {master:?})")]
    NotMaster { epoch: u64, master: Option<u32> },
    /// The request's epoch is not the master's (a client that saw an old
    /// master).
    #[error("stale epoch {got}, the master's is {epoch}")]
    StaleEpoch { got: u64, epoch: u64 },
    #[error("the master's lease ran out")]
    LeaseExpired,
    #[error("a switchover is draining")]
    Draining,
    #[error("a bracket is already open")]
    BracketOpen,
    #[error("no bracket is open")]
    NoBracket,
    #[error("the bracket would be {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("the local state refused the bracket: {0}")]
    Apply(String),
}

/// Why a switchover or a promotion cannot start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoleError {
    #[error("only the master hands over")]
    NotMaster,
    #[error("node {0} is not a peer")]
    UnknownPeer(u32),
    #[error("node {peer} speaks link schema {schema}; a switchover needs 3")]
    PeerTooOld { peer: u32, schema: u32 },
    #[error("node {0} is not streaming from this master")]
    NotStreaming(u32),
    #[error("already master")]
    AlreadyMaster,
    #[error("a write is in flight")]
    BracketOpen,
}

/// What a master knows of a slave's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stream {
    /// Waiting for its HELLO (its mark) before sending anything.
    NeedsHello,
    /// Must get a full snapshot (sent at the next bracket boundary).
    NeedsFull,
    /// Receives every bracket as it happens.
    Streaming,
}

/// A peer as this node sees it.
#[derive(Clone, Debug)]
pub(super) struct Peer {
    /// The schema its HELLO said (1 until then).
    pub schema: u32,
    pub heard: Option<Instant>,
    pub hello_sent: bool,
    /// Master side: the last bracket it acknowledged in our epoch.
    pub acked: u64,
    pub stream: Stream,
}

/// A slave's open bracket.
#[derive(Clone, Debug)]
pub(super) struct Rx {
    pub from: u32,
    pub bracket: Bracket,
    pub size: usize,
    pub deadline: Instant,
    /// A resent bracket already applied: acknowledged again at its close,
    /// not applied twice.
    pub duplicate: bool,
}

/// A closed bracket kept until every slave has it.
#[derive(Clone, Debug)]
pub(super) struct Sent {
    pub bracket: Bracket,
    pub size: usize,
    pub closed: Instant,
}

/// The master's async lag: what is not acknowledged by every slave yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lag {
    pub brackets: u64,
    pub bytes: u64,
    /// Age of the oldest unacknowledged bracket.
    pub oldest: Duration,
}

/// A node's state for `hitless peer status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub node: u32,
    pub role: Role,
    pub epoch: u64,
    pub mark: Mark,
    pub master: Option<u32>,
    pub in_sync: BTreeSet<u32>,
    pub lag: Lag,
    pub cause: Option<String>,
}

/// One card's replication role (see the module doc).
pub struct Node<R: Replica> {
    pub(super) cfg: Config,
    pub(super) replica: R,
    pub(super) role: Role,
    /// The newest epoch this node knows (it refuses anything older).
    pub(super) epoch: u64,
    pub(super) master: Option<u32>,
    pub(super) peers: BTreeMap<u32, Peer>,
    pub(super) start: Instant,
    pub(super) out: VecDeque<(u32, Vec<u8>)>,
    pub(super) events: VecDeque<Event>,
    // slave
    pub(super) rx: Option<Rx>,
    /// Since when no master has been heard (None: one is heard).
    pub(super) silent_since: Instant,
    pub(super) silence_reported: bool,
    /// When this slave last asked its master to resend.
    pub(super) asked: Option<Instant>,
    /// The master's HELLO: (master, its epoch, the mark it took over from).
    pub(super) master_base: Option<(u32, u64, Mark)>,
    pub(super) handover_from: Option<u32>,
    // master
    pub(super) lease: Option<Lease>,
    pub(super) tx: Option<(Bracket, usize)>,
    pub(super) last_closed: u64,
    /// The mark this node had when it became master (a slave at exactly
    /// this mark shares its history).
    pub(super) base: Mark,
    pub(super) queue: VecDeque<Sent>,
    pub(super) queue_bytes: usize,
    /// Slaves whose ack a sync write needs.
    pub(super) required: BTreeSet<u32>,
    /// Slaves taken back into `required` (no bracket is durable without
    /// them any more), not yet counted in sync by the arbiter: each with
    /// the last bracket closed without it. Once it has acknowledged that
    /// one it holds every durable bracket, and a tick tells the arbiter.
    pub(super) rejoining: BTreeMap<u32, u64>,
    /// Sync writes not durable yet, with their deadlines.
    pub(super) pending: BTreeMap<u64, Instant>,
    pub(super) draining: Option<(u32, Instant)>,
    /// After a non-hitless takeover: the old master and why (claim 18).
    pub(super) cause: Option<(Option<u32>, String)>,
    pub(super) last_heartbeat: Option<Instant>,
}

impl<R: Replica> Node<R> {
    /// A node starting (or restarting) on `replica`: standby, at the epoch
    /// of its last applied bracket, until it hears a master or takes over.
    pub fn new(cfg: Config, replica: R, now: Instant) -> Self {
        let mark = replica.mark();
        let peers = cfg
            .peers
            .iter()
            .map(|p| {
                (
                    *p,
                    Peer {
                        schema: 1,
                        heard: None,
                        hello_sent: false,
                        acked: 0,
                        stream: Stream::NeedsHello,
                    },
                )
            })
            .collect();
        Self {
            required: cfg.peers.iter().copied().collect(),
            rejoining: BTreeMap::new(),
            cfg,
            replica,
            role: Role::Standby,
            epoch: mark.epoch,
            master: None,
            peers,
            start: now,
            out: VecDeque::new(),
            events: VecDeque::new(),
            rx: None,
            silent_since: now,
            silence_reported: false,
            asked: None,
            master_base: None,
            handover_from: None,
            lease: None,
            tx: None,
            last_closed: mark.bracket,
            base: mark,
            queue: VecDeque::new(),
            queue_bytes: 0,
            pending: BTreeMap::new(),
            draining: None,
            cause: None,
            last_heartbeat: None,
        }
    }

    /// The card was reset (a warm reset or a power cycle): its firmware
    /// restarts on `replica`, the manager rebuilt from NV, as a restarted
    /// card process does: standby at the replica's mark and consistency
    /// (a power cycle that lost warm sets leaves it dirty: a snapshot
    /// before it may take over). A master steps down first: its writes in
    /// flight fail (`Abandoned`), so a host never has a store acknowledged
    /// that the reset may have cut; with an arbiter it may be granted the
    /// next epoch again (it still holds every acknowledged bracket), a
    /// slave taking over otherwise. The newest epoch known is kept (a
    /// reset forgets no fencing). `up`: the peers whose link is up, told
    /// at once (HELLO: the master resends what is missing or a snapshot).
    /// Returns the old replica (the manager that lost the controller).
    pub fn restart(&mut self, now: Instant, replica: R, up: &[u32]) -> R {
        if self.role == Role::Master {
            self.step_down(now, "the card was reset");
        }
        if self.rx.is_some() {
            self.discard("the card was reset");
        }
        let mut fresh = Node::new(self.cfg.clone(), replica, now);
        fresh.epoch = fresh.epoch.max(self.epoch);
        // The events (the abandoned writes) are still the caller's; the
        // frames not sent yet are not (the HELLOs below replace them).
        fresh.events = std::mem::take(&mut self.events);
        let old = std::mem::replace(self, fresh);
        for p in up {
            self.connected(now, *p);
        }
        old.replica
    }

    pub fn role(&self) -> Role {
        self.role
    }
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    pub fn node(&self) -> u32 {
        self.cfg.node
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn replica(&self) -> &R {
        &self.replica
    }
    pub fn replica_mut(&mut self) -> &mut R {
        &mut self.replica
    }
    /// Give the replica back (a simulated crash keeps only this).
    pub fn into_replica(self) -> R {
        self.replica
    }
    /// The link schema `peer` said in its HELLO (1 before one came);
    /// `None`: not a peer of this node.
    pub fn peer_schema(&self, peer: u32) -> Option<u32> {
        self.peers.get(&peer).map(|p| p.schema)
    }

    pub fn mark(&self) -> Mark {
        self.replica.mark()
    }

    /// The next message to send: (peer, encoded link message). The
    /// transport frames it and puts it on the secure channel.
    pub fn poll_transmit(&mut self) -> Option<(u32, Vec<u8>)> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn status(&self, now: Instant) -> Status {
        Status {
            node: self.cfg.node,
            role: self.role,
            epoch: self.epoch,
            mark: self.replica.mark(),
            master: if self.role == Role::Master {
                Some(self.cfg.node)
            } else {
                self.master
            },
            in_sync: self
                .required
                .iter()
                .copied()
                .filter(|p| !self.rejoining.contains_key(p))
                .collect(),
            lag: self.lag(now),
            cause: self.cause.as_ref().map(|(_, c)| c.clone()),
        }
    }

    pub(super) fn send(&mut self, peer: u32, m: &LinkMessage) {
        tracing::trace!(node = self.cfg.node, peer, ?m, "send");
        self.out.push_back((peer, m.encode_as(self.cfg.schema)));
    }

    pub(super) fn event(&mut self, e: Event) {
        tracing::debug!(node = self.cfg.node, ?e, "replication event");
        self.events.push_back(e);
    }

    /// HELLO: a slave's carries its mark (what it has); a master's the
    /// mark it took over from (a slave at exactly that mark shares its
    /// history and is continued from there, any other gets a snapshot).
    pub(super) fn hello(&mut self, peer: u32) {
        let mark = if self.role == Role::Master {
            self.base
        } else if !self.replica.consistent() {
            // No usable mark (not whole brackets): an epoch no master has,
            // so the master sends a full snapshot.
            NO_MARK
        } else {
            self.replica.mark()
        };
        let m = LinkMessage::Hello {
            node: self.cfg.node,
            schema: self.cfg.schema,
            epoch: self.epoch,
            role: self.role,
            applied: mark.bracket,
            applied_epoch: mark.epoch,
        };
        if let Some(p) = self.peers.get_mut(&peer) {
            p.hello_sent = true;
        }
        self.send(peer, &m);
    }

    pub(super) fn hello_all(&mut self) {
        for p in self.cfg.peers.clone() {
            self.hello(p);
        }
    }

    /// A connection to `peer` came up (first, or again): say HELLO.
    pub fn connected(&mut self, now: Instant, peer: u32) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.hello_sent = false;
            p.heard = Some(now);
            if p.stream == Stream::Streaming {
                p.stream = Stream::NeedsHello;
            }
        }
        self.hello(peer);
    }

    /// The connection to `peer` went down: nothing more is sent to it
    /// until it says HELLO again.
    pub fn disconnected(&mut self, _now: Instant, peer: u32) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.hello_sent = false;
            p.stream = Stream::NeedsHello;
        }
        if self.rx.as_ref().is_some_and(|rx| rx.from == peer) {
            self.discard("the connection to the master went down");
        }
    }

    /// Bytes from `peer`: one encoded link message. Never panics on any
    /// input; a message that does not decode is reported and dropped.
    pub fn receive(&mut self, now: Instant, peer: u32, bytes: &[u8]) {
        if !self.peers.contains_key(&peer) {
            self.event(Event::BadMessage {
                peer,
                why: "not a peer of this node".into(),
            });
            return;
        }
        let m = match LinkMessage::decode_as(bytes, self.cfg.schema) {
            Ok(m) => m,
            Err(e) => {
                self.event(Event::BadMessage {
                    peer,
                    why: e.to_string(),
                });
                return;
            }
        };
        tracing::trace!(node = self.cfg.node, peer, ?m, "receive");
        if let Some(p) = self.peers.get_mut(&peer) {
            p.heard = Some(now);
        }
        // The master is alive while it speaks as master (a heartbeat of
        // an older card does not say its role: any counts).
        let as_master = match &m {
            LinkMessage::Heartbeat { role, .. } => role.is_none_or(|r| r == Role::Master),
            LinkMessage::Hello { role, .. } => *role == Role::Master,
            LinkMessage::Ack { .. } | LinkMessage::Refuse { .. } => false,
            m if LinkMessage::is_peer_set(m.kind()) => false,
            _ => true,
        };
        if self.master == Some(peer) && self.role != Role::Master && as_master {
            self.heard_master(now);
        }
        self.tell_cause(peer);
        match m {
            LinkMessage::Hello {
                schema,
                epoch,
                role,
                applied,
                applied_epoch,
                ..
            } => self.on_hello(
                now,
                peer,
                schema,
                epoch,
                role,
                Mark {
                    epoch: applied_epoch,
                    bracket: applied,
                },
            ),
            LinkMessage::Heartbeat {
                epoch,
                bracket,
                role,
                ..
            } => {
                if role.is_some_and(|r| r != Role::Master)
                    && self.master == Some(peer)
                    && self.role != Role::Master
                {
                    // Our master is not master any more (a lost HANDOVER,
                    // a step-down): no master until one is granted.
                    self.master = None;
                    self.role = Role::Standby;
                }
                if role == Some(Role::Master)
                    && epoch >= self.epoch
                    && self.master != Some(peer)
                    && self.role != Role::Master
                {
                    // The master of our epoch, whose HELLO we missed: follow
                    // it and tell it our mark.
                    self.adopt(now, epoch, Some(peer), "a master's heartbeat");
                    return;
                }
                self.on_heartbeat(now, peer, epoch, bracket)
            }
            LinkMessage::Open {
                epoch,
                bracket,
                full,
            } => self.on_open(now, peer, epoch, bracket, full),
            LinkMessage::Close {
                epoch,
                bracket,
                changes,
                digest,
            } => self.on_close(now, peer, epoch, bracket, changes, digest),
            LinkMessage::Ack { epoch, bracket } => self.on_ack(now, peer, epoch, bracket),
            LinkMessage::Refuse {
                epoch,
                code,
                reason,
            } => {
                self.event(Event::Refused {
                    peer,
                    code,
                    reason: reason.clone(),
                });
                if code == RefuseCode::StaleEpoch && epoch > self.epoch {
                    self.adopt(now, epoch, None, &format!("node {peer}: {reason}"));
                }
            }
            LinkMessage::Cause { epoch, reason } => {
                self.event(Event::Cause { from: peer, reason });
                if epoch > self.epoch {
                    self.adopt(now, epoch, Some(peer), "the new master told its cause");
                }
            }
            LinkMessage::Handover { epoch, bracket } => self.on_handover(now, peer, epoch, bracket),
            // Not the replication stream: the card's loop serves them
            // (`peer_sets`) and never hands them here.
            LinkMessage::PeerStore { .. }
            | LinkMessage::PeerFetch { .. }
            | LinkMessage::PeerAnswer { .. } => self.event(Event::BadMessage {
                peer,
                why: "a peer-set message is the card loop's, not the node's".into(),
            }),
            change => self.on_change(now, peer, change),
        }
    }

    fn on_hello(
        &mut self,
        now: Instant,
        peer: u32,
        schema: u32,
        epoch: u64,
        role: Role,
        mark: Mark,
    ) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.schema = schema.max(1);
        }
        let mut news = false;
        if role == Role::Master && epoch >= self.epoch {
            news = self.master_base != Some((peer, epoch, mark));
            self.master_base = Some((peer, epoch, mark));
        }
        if epoch > self.epoch {
            let master = (role == Role::Master).then_some(peer);
            // (adopting says HELLO to every peer, this one included)
            self.adopt(
                now,
                epoch,
                master,
                &format!("node {peer} is at epoch {epoch}"),
            );
            return;
        } else if epoch < self.epoch && role == Role::Master {
            // A returning old master: fence it.
            self.refuse_stale(peer, epoch);
        }
        if role == Role::Master && epoch == self.epoch && self.role != Role::Master {
            self.master = Some(peer);
            self.role = Role::Slave;
            self.heard_master(now);
            // A slave answers a new master's HELLO with its mark (that is
            // how the master knows what to send); a repeated one only
            // when it has not said HELLO on this connection yet.
            let answered = self.peers.get(&peer).is_some_and(|p| p.hello_sent);
            if news || !answered {
                self.hello(peer);
            }
            return;
        }
        if role != Role::Master && self.master == Some(peer) && self.role != Role::Master {
            // Our master stepped down: no master until one is granted
            // (the silence clock runs from its last word as master).
            self.master = None;
            self.role = Role::Standby;
        }
        let answered = self.peers.get(&peer).is_some_and(|p| p.hello_sent);
        if !answered {
            self.hello(peer);
        }
        if self.role == Role::Master && role != Role::Master {
            self.sync_slave(now, peer, mark);
        }
    }

    fn on_heartbeat(&mut self, now: Instant, peer: u32, epoch: u64, bracket: u64) {
        if epoch > self.epoch {
            self.adopt(
                now,
                epoch,
                None,
                &format!("node {peer} is at epoch {epoch}"),
            );
            return;
        }
        if epoch < self.epoch {
            self.refuse_stale(peer, epoch);
            return;
        }
        match self.role {
            // A slave's heartbeat carries its applied bracket: an ack that
            // heals a lost ACK.
            Role::Master => self.on_ack(now, peer, epoch, bracket),
            // The master has closed brackets we lack and none is
            // arriving: ask for them.
            _ if self.master == Some(peer)
                && bracket > self.replica.mark().bracket
                && self.rx.is_none() =>
            {
                self.ask_resync(now, peer)
            }
            _ => {}
        }
    }

    pub(super) fn refuse_stale(&mut self, peer: u32, epoch: u64) {
        let m = LinkMessage::Refuse {
            epoch: self.epoch,
            code: RefuseCode::StaleEpoch,
            reason: format!("epoch {epoch} is older than {}", self.epoch),
        };
        self.send(peer, &m);
    }

    /// Tell a returning old master why we took over (once).
    fn tell_cause(&mut self, peer: u32) {
        if self.role != Role::Master {
            return;
        }
        if let Some((Some(old), reason)) = &self.cause {
            if *old == peer {
                let m = LinkMessage::Cause {
                    epoch: self.epoch,
                    reason: reason.clone(),
                };
                if let Some(c) = self.cause.as_mut() {
                    c.0 = None;
                }
                self.send(peer, &m);
            }
        }
    }

    /// A newer epoch is known: take it; a master steps down (fencing).
    pub(super) fn adopt(&mut self, now: Instant, epoch: u64, master: Option<u32>, why: &str) {
        if epoch <= self.epoch && master.is_none() {
            return;
        }
        if self.role == Role::Master {
            // (in the epoch it held: its writes in flight fail)
            self.step_down(now, why);
        }
        self.epoch = self.epoch.max(epoch);
        self.master = master;
        self.role = if master.is_some() {
            Role::Slave
        } else {
            Role::Standby
        };
        self.heard_master(now);
        if self.rx.as_ref().is_some_and(|rx| rx.bracket.epoch < epoch) {
            self.discard("a newer epoch began");
        }
        // Tell everybody where we stand; the new master answers with what
        // we lack.
        self.hello_all();
    }

    pub(super) fn heard_master(&mut self, now: Instant) {
        self.silent_since = now;
        self.silence_reported = false;
    }
}
