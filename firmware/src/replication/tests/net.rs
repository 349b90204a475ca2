//! A simulated pair (or trio) of cards: nodes over [`MemReplica`]s, one
//! clock, a network of per-link FIFO queues with latency, extra delay,
//! random loss and cuts, nodes that crash (their replica survives, as NV
//! memory does) or hang (no ticks, nothing received, messages wait), and
//! an arbiter the nodes can be cut off.

use crate::replication::arbiter::{Arbiter, ArbiterError, Lease};
use crate::replication::*;
use hitless_hdl::contract::crc32c;
use hitless_proto::link::{Role, SetRecord};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// The arbiter as one node reaches it (or not).
pub struct Reach<'a> {
    pub inner: &'a mut dyn Arbiter,
    pub up: bool,
}

impl Arbiter for Reach<'_> {
    fn acquire(&mut self, node: u32, now: Instant) -> Result<Lease, ArbiterError> {
        if !self.up {
            return Err(ArbiterError::Unreachable);
        }
        self.inner.acquire(node, now)
    }
    fn renew(&mut self, node: u32, epoch: u64, now: Instant) -> Result<Lease, ArbiterError> {
        if !self.up {
            return Err(ArbiterError::Unreachable);
        }
        self.inner.renew(node, epoch, now)
    }
    fn release(&mut self, node: u32, epoch: u64, now: Instant) -> Result<(), ArbiterError> {
        if !self.up {
            return Err(ArbiterError::Unreachable);
        }
        self.inner.release(node, epoch, now)
    }
    fn set_in_sync(
        &mut self,
        node: u32,
        epoch: u64,
        slaves: &BTreeSet<u32>,
        now: Instant,
    ) -> Result<(), ArbiterError> {
        if !self.up {
            return Err(ArbiterError::Unreachable);
        }
        self.inner.set_in_sync(node, epoch, slaves, now)
    }
}

struct Msg {
    at: Instant,
    from: u32,
    to: u32,
    bytes: Vec<u8>,
}

/// One card slot: a running node, or the NV state of a crashed one.
pub struct Slot {
    pub node: Option<Node<MemReplica>>,
    pub nv: MemReplica,
    pub cfg: Config,
    pub hung: bool,
    pub events: Vec<Event>,
}

pub struct Net {
    pub now: Instant,
    pub slots: BTreeMap<u32, Slot>,
    pub arbiter: Box<dyn Arbiter>,
    /// Nodes cut off the arbiter.
    pub arbiter_cut: BTreeSet<u32>,
    queue: VecDeque<Msg>,
    /// Cut links (unordered pairs, smaller id first).
    cuts: BTreeSet<(u32, u32)>,
    /// Extra one-way delay per link (from, to).
    pub delay: BTreeMap<(u32, u32), Duration>,
    pub latency: Duration,
    /// Probability of losing a message (a message lost inside a stream:
    /// the harshest case, worse than TCP's).
    pub loss: f64,
    pub dropped: u64,
    pub delivered: u64,
    /// The loss draws (seeded: runs are deterministic).
    pub rng: ChaCha8Rng,
}

fn pair(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

impl Net {
    pub fn new(cfgs: Vec<Config>, arbiter: Box<dyn Arbiter>) -> Self {
        let now = Instant::now();
        let slots = cfgs
            .into_iter()
            .map(|cfg| {
                let nv = MemReplica::default();
                (
                    cfg.node,
                    Slot {
                        node: Some(Node::new(cfg.clone(), nv.clone(), now)),
                        nv,
                        cfg,
                        hung: false,
                        events: Vec::new(),
                    },
                )
            })
            .collect();
        let mut net = Self {
            now,
            slots,
            arbiter,
            arbiter_cut: BTreeSet::new(),
            queue: VecDeque::new(),
            cuts: BTreeSet::new(),
            delay: BTreeMap::new(),
            latency: Duration::from_micros(200),
            loss: 0.0,
            dropped: 0,
            delivered: 0,
            rng: rng(0),
        };
        let ids: Vec<u32> = net.slots.keys().copied().collect();
        for a in &ids {
            for b in &ids {
                if a != b {
                    let now = net.now;
                    if let Some(n) = net.node(*a) {
                        n.connected(now, *b);
                    }
                }
            }
        }
        net
    }

    pub fn node(&mut self, id: u32) -> Option<&mut Node<MemReplica>> {
        self.slots.get_mut(&id).and_then(|s| s.node.as_mut())
    }

    pub fn get(&self, id: u32) -> Option<&Node<MemReplica>> {
        self.slots.get(&id).and_then(|s| s.node.as_ref())
    }

    /// Run `f` on node `id` with the arbiter as it reaches it.
    pub fn with<T>(
        &mut self,
        id: u32,
        f: impl FnOnce(&mut Node<MemReplica>, Instant, &mut dyn Arbiter) -> T,
    ) -> Option<T> {
        let now = self.now;
        let up = !self.arbiter_cut.contains(&id);
        let slot = self.slots.get_mut(&id)?;
        let node = slot.node.as_mut()?;
        let mut a = Reach {
            inner: self.arbiter.as_mut(),
            up,
        };
        let t = f(node, now, &mut a);
        self.flush(id);
        Some(t)
    }

    pub fn alive(&self, id: u32) -> bool {
        self.slots
            .get(&id)
            .is_some_and(|s| s.node.is_some() && !s.hung)
    }

    fn link_up(&self, a: u32, b: u32) -> bool {
        !self.cuts.contains(&pair(a, b))
    }

    /// Move node `id`'s outgoing messages onto the network; collect its
    /// events.
    fn flush(&mut self, id: u32) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let Some(node) = slot.node.as_mut() else {
            return;
        };
        while let Some(e) = node.poll_event() {
            slot.events.push(e);
        }
        let mut out = Vec::new();
        while let Some(m) = node.poll_transmit() {
            out.push(m);
        }
        slot.nv = node.replica().clone();
        for (to, bytes) in out {
            self.post(id, to, bytes);
        }
    }

    fn post(&mut self, from: u32, to: u32, bytes: Vec<u8>) {
        if !self.link_up(from, to) || self.slots.get(&to).is_none_or(|s| s.node.is_none()) {
            self.dropped += 1;
            return;
        }
        if self.loss > 0.0 && self.rng.gen_bool(self.loss) {
            self.dropped += 1;
            return;
        }
        let extra = self.delay.get(&(from, to)).copied().unwrap_or_default();
        // FIFO per link: never before an earlier message of the link.
        let last = self
            .queue
            .iter()
            .rev()
            .find(|m| m.from == from && m.to == to)
            .map(|m| m.at);
        let at = (self.now + self.latency + extra).max(last.unwrap_or(self.now));
        self.queue.push_back(Msg {
            at,
            from,
            to,
            bytes,
        });
    }

    /// Advance the clock by `dt` in steps of at most 100 µs: deliver what
    /// is due, tick every running node.
    pub fn run(&mut self, dt: Duration) {
        let end = self.now + dt;
        while self.now < end {
            let step = Duration::from_micros(100).min(end - self.now);
            self.now += step;
            self.deliver();
            let ids: Vec<u32> = self.slots.keys().copied().collect();
            for id in ids {
                if self.alive(id) {
                    self.with(id, |n, now, a| n.tick(now, a));
                }
            }
        }
    }

    fn deliver(&mut self) {
        let now = self.now;
        let mut keep = VecDeque::new();
        let mut due = Vec::new();
        // Earlier messages of a link stay ahead of later ones.
        let mut blocked: BTreeSet<(u32, u32)> = BTreeSet::new();
        while let Some(m) = self.queue.pop_front() {
            let hung = self.slots.get(&m.to).is_some_and(|s| s.hung);
            if m.at <= now && !hung && !blocked.contains(&(m.from, m.to)) {
                due.push(m);
            } else {
                blocked.insert((m.from, m.to));
                keep.push_back(m);
            }
        }
        self.queue = keep;
        for m in due {
            if !self.link_up(m.from, m.to) {
                self.dropped += 1;
                continue;
            }
            let Some(node) = self.node(m.to) else {
                self.dropped += 1;
                continue;
            };
            node.receive(now, m.from, &m.bytes);
            self.delivered += 1;
            self.flush(m.to);
        }
    }

    /// kill -9: the node is gone, its NV state stays; the peers' kernels
    /// reset the connections.
    pub fn crash(&mut self, id: u32) {
        let now = self.now;
        if let Some(slot) = self.slots.get_mut(&id) {
            if let Some(n) = slot.node.take() {
                slot.nv = n.into_replica();
            }
            slot.hung = false;
        }
        self.queue.retain(|m| m.to != id && m.from != id);
        for p in self.peer_ids(id) {
            if let Some(n) = self.node(p) {
                n.disconnected(now, id);
            }
            self.flush(p);
        }
    }

    /// The card restarts from its NV state and connects to its peers.
    pub fn restart(&mut self, id: u32) {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        if slot.node.is_some() {
            return;
        }
        slot.node = Some(Node::new(slot.cfg.clone(), slot.nv.clone(), now));
        for p in self.peer_ids(id) {
            if self.link_up(id, p) && self.slots.get(&p).is_some_and(|s| s.node.is_some()) {
                if let Some(n) = self.node(id) {
                    n.connected(now, p);
                }
                if let Some(n) = self.node(p) {
                    n.connected(now, id);
                }
                self.flush(p);
            }
        }
        self.flush(id);
    }

    /// SIGSTOP / SIGCONT.
    pub fn hang(&mut self, id: u32, hung: bool) {
        if let Some(s) = self.slots.get_mut(&id) {
            s.hung = hung && s.node.is_some();
        }
    }

    pub fn cut(&mut self, a: u32, b: u32) {
        if self.cuts.insert(pair(a, b)) {
            let now = self.now;
            for (x, y) in [(a, b), (b, a)] {
                if let Some(n) = self.node(x) {
                    n.disconnected(now, y);
                }
                self.flush(x);
            }
        }
    }

    pub fn heal(&mut self, a: u32, b: u32) {
        if self.cuts.remove(&pair(a, b)) {
            let now = self.now;
            for (x, y) in [(a, b), (b, a)] {
                if self.slots.get(&y).is_some_and(|s| s.node.is_some()) {
                    if let Some(n) = self.node(x) {
                        n.connected(now, y);
                    }
                    self.flush(x);
                }
            }
        }
    }

    pub fn heal_all(&mut self) {
        for (a, b) in self.cuts.clone() {
            self.heal(a, b);
        }
        self.arbiter_cut.clear();
        self.delay.clear();
        self.loss = 0.0;
        let ids: Vec<u32> = self.slots.keys().copied().collect();
        for id in ids {
            self.hang(id, false);
            self.restart(id);
        }
    }

    fn peer_ids(&self, id: u32) -> Vec<u32> {
        self.slots.keys().copied().filter(|p| *p != id).collect()
    }

    /// Running nodes that say they are master.
    pub fn masters(&self) -> Vec<u32> {
        self.slots
            .iter()
            .filter(|(_, s)| s.node.as_ref().is_some_and(|n| n.role() == Role::Master))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Events of node `id` so far (taken).
    pub fn events(&mut self, id: u32) -> Vec<Event> {
        self.slots
            .get_mut(&id)
            .map(|s| std::mem::take(&mut s.events))
            .unwrap_or_default()
    }

    pub fn state(&self, id: u32) -> &MemState {
        match self.slots.get(&id) {
            Some(s) => match &s.node {
                Some(n) => &n.replica().state,
                None => &s.nv.state,
            },
            None => panic!("no node {id}"),
        }
    }
}

/// A put of `data` at (app, object).
pub fn put(app: u32, object: u32, tier: u32, data: &[u8]) -> Change {
    Change::Put {
        set: SetRecord {
            app,
            object,
            endpoint: 0,
            stage: 1,
            tier,
            version: 0,
            crc: crc32c(data),
            stored_us: 7,
        },
        data: data.to_vec(),
    }
}

/// A test configuration: 1 ms heartbeats, 3 missed, 20 ms close deadline.
pub fn config(node: u32, peers: &[u32], mode: Mode) -> Config {
    let mut c = Config::new(node, peers.iter().copied());
    c.mode = mode;
    c.heartbeat = Duration::from_millis(1);
    c.missed_heartbeats = 3;
    c.close_deadline = Duration::from_millis(20);
    c.sync_deadline = Duration::from_millis(30);
    c.switchover_deadline = Duration::from_millis(50);
    c.max_bracket_bytes = 64 << 10;
    c.max_full_bytes = 16 << 20;
    c.max_unacked_bytes = 256 << 10;
    c
}

/// A pair (or trio) with a local arbiter (leases of 5 ms), node 1 master.
pub fn cluster(n: u32, mode: Mode) -> Net {
    let ids: Vec<u32> = (1..=n).collect();
    let cfgs = ids.iter().map(|i| config(*i, &ids, mode)).collect();
    let arb = LocalArbiter::new(
        ids.clone(),
        Duration::from_millis(5),
        Duration::from_micros(500),
    );
    let mut net = Net::new(cfgs, Box::new(arb));
    net.with(1, |n, now, a| n.bootstrap(now, a).unwrap());
    net.run(Duration::from_millis(5));
    net
}

/// Some test randomness (seeded: deterministic).
pub fn rng(seed: u64) -> ChaCha8Rng {
    rand::SeedableRng::seed_from_u64(seed)
}
