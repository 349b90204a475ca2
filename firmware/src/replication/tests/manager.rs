//! The memory manager as a replica, on the controller's reference model
//! (no Verilator): its journal of host requests applied to a second
//! manager gives the same state, which survives a restart; a full
//! snapshot rebuilds a blank card; a bracket that fails halfway leaves a
//! card that knows it is not whole.

use crate::manager::{AccessError, Controller, HostMemory, MemoryManager};
use crate::replication::*;
use hitless_hdl::contract::{crc32c, Completion, Descriptor, NvGeometry, MAX_TRANSFER};
use hitless_hdl::model::{HostMemory as ModelMemory, Model, PagedMemory};
use hitless_proto::auth;
use hitless_proto::link::Role;
use hitless_proto::message::{Failure, Request};
use hitless_proto::msg::{flags, tag, Code};
use hitless_proto::tlv::Message;
use hitless_proto::Response;
use std::cell::RefCell;
use std::rc::Rc;

const SCRATCH: u64 = 0x8000_0000;
const GEOMETRY: NvGeometry = NvGeometry {
    region_size: 512 << 10,
    log_size: 64 << 10,
    data_size: 4 << 20,
};

/// The controller as the firmware sees it, over the reference model; the
/// host's memory and the firmware's scratch are one paged memory.
pub(super) struct ModelCtl {
    model: Model,
    mem: Rc<RefCell<PagedMemory>>,
}

impl Controller for ModelCtl {
    fn read32(&mut self, offset: u32) -> Result<u32, AccessError> {
        Ok(self.model.read_reg(offset))
    }
    fn write32(&mut self, offset: u32, value: u32) -> Result<(), AccessError> {
        self.model.write_reg(offset, value);
        Ok(())
    }
    fn execute(&mut self, d: Descriptor) -> Result<Completion, AccessError> {
        Ok(self.model.execute(&d, &mut *self.mem.borrow_mut()))
    }
    fn scratch(&self) -> (u64, usize) {
        (SCRATCH, crate::manager::SCRATCH_BYTES)
    }
    fn scratch_write(&mut self, offset: usize, data: &[u8]) -> Result<(), AccessError> {
        self.mem.borrow_mut().write(SCRATCH + offset as u64, data);
        Ok(())
    }
    fn scratch_read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), AccessError> {
        self.mem.borrow().read(SCRATCH + offset as u64, buf);
        Ok(())
    }
}

struct Host(Rc<RefCell<PagedMemory>>);

impl HostMemory for Host {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        self.0.borrow().read(addr, buf);
        Ok(())
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        self.0.borrow_mut().write(addr, data);
        Ok(())
    }
}

pub(super) struct Card {
    pub(super) mm: MemoryManager<ModelCtl>,
    pub(super) mem: Rc<RefCell<PagedMemory>>,
    handle: u32,
    secret: Vec<u8>,
}

pub(super) fn card() -> Card {
    let mut model = Model::new(GEOMETRY);
    model.boot_scan();
    let mem = Rc::new(RefCell::new(PagedMemory::default()));
    let ctl = ModelCtl {
        model,
        mem: mem.clone(),
    };
    Card {
        mm: MemoryManager::start(ctl, 1).unwrap(),
        mem,
        handle: 0,
        secret: Vec::new(),
    }
}

impl Card {
    pub(super) fn restart(self) -> Card {
        let ctl = self.mm.into_controller();
        Card {
            mm: MemoryManager::start(ctl, 2).unwrap(),
            ..self
        }
    }

    /// A power cycle: the warm tier's contents are gone, the cold tier's
    /// stay.
    fn power_cycle(self) -> Card {
        let mut ctl = self.mm.into_controller();
        ctl.model.nv[0].fill(0);
        ctl.model.reset();
        ctl.model.boot_scan();
        Card {
            mm: MemoryManager::start(ctl, 3).unwrap(),
            ..self
        }
    }

    fn request(&mut self, r: Request) -> Response {
        self.try_request(r).unwrap()
    }

    /// A request's answer, a refusal as its failure.
    pub(super) fn try_request(&mut self, r: Request) -> Result<Response, Failure> {
        let kind = r.kind();
        let mut b = r.encode();
        if Request::needs_session(kind) {
            b = b.u32(tag::HANDLE, self.handle);
        }
        let mut msg = b.finish();
        if Request::needs_session(kind) {
            msg = auth::sign(msg, &self.secret, self.mm.nonce());
        }
        let mut host = Host(self.mem.clone());
        let reply = self.mm.handle(&mut host, &msg);
        let m = Message::decode(&reply.message).unwrap();
        Response::decode(kind, &m).unwrap()
    }

    pub(super) fn open(&mut self, app: u32) {
        match self.request(Request::Open {
            app,
            flags: flags::READ | flags::WRITE | flags::LOG,
        }) {
            Response::Opened { handle, secret, .. } => {
                self.handle = handle;
                self.secret = secret.unwrap();
            }
            other => panic!("{other:?}"),
        }
    }

    pub(super) fn store(&mut self, object: u32, cold: bool, data: &[u8]) {
        self.mem.borrow_mut().write(0x10_0000, data);
        let r = self.request(Request::Store {
            object,
            endpoint: 0,
            stage: 2,
            flags: if cold { flags::COLD } else { 0 },
            addr: 0x10_0000,
            len: data.len() as u32,
            crc: crc32c(data),
        });
        assert!(matches!(r, Response::Stored { .. }), "{r:?}");
    }

    fn append(&mut self, object: u32, data: &[u8]) -> u32 {
        self.mem.borrow_mut().write(0x20_0000, data);
        match self.request(Request::LogAppend {
            object,
            flags: 0,
            addr: 0x20_0000,
            len: data.len() as u32,
        }) {
            Response::Appended { offset } => offset,
            other => panic!("{other:?}"),
        }
    }

    /// The card's state as the replication sees it.
    pub(super) fn state(&mut self) -> MemState {
        let mut s = MemState::default();
        for c in self.mm.snapshot().unwrap() {
            s.change(&c).unwrap();
        }
        // Store versions are each card's own.
        for (r, _) in s.sets.values_mut() {
            r.version = 0;
        }
        s
    }
}

#[test]
fn the_journal_of_host_requests_rebuilds_the_masters_state_on_a_slave() {
    let mut m = card();
    let mut s = card();
    m.mm.record_changes(true);
    let mut id = 0;
    let mut replicate = |m: &mut Card, s: &mut Card, want: usize| {
        let changes = m.mm.take_changes();
        assert_eq!(changes.len(), want, "{changes:?}");
        id += 1;
        let b = Bracket {
            epoch: 1,
            id,
            full: false,
            changes,
        };
        m.mm.set_mark(b.mark()).unwrap();
        s.mm.apply(&b).unwrap();
    };
    m.open(7);
    replicate(&mut m, &mut s, 1); // the secret
    m.store(1, false, b"warm set");
    replicate(&mut m, &mut s, 1);
    m.store(2, true, &[9u8; 5000]);
    replicate(&mut m, &mut s, 1);
    let first = m.append(1, b"first record");
    replicate(&mut m, &mut s, 1);
    let second = m.append(2, b"second record");
    replicate(&mut m, &mut s, 1);
    assert!(second > first);
    assert!(matches!(
        m.request(Request::LogTrim {
            flags: 0,
            to: Some(second)
        }),
        Response::Log { .. }
    ));
    replicate(&mut m, &mut s, 1);
    assert!(matches!(
        m.request(Request::Delete {
            object: 1,
            endpoint: 0,
        }),
        Response::Done
    ));
    replicate(&mut m, &mut s, 1);
    // A read changes nothing: no change, no bracket.
    m.request(Request::List { endpoint: 0 });
    assert!(m.mm.take_changes().is_empty());

    let want = m.state();
    assert_eq!(want.sets.len(), 1);
    assert_eq!(want.logs[0].len(), 1);
    assert_eq!(want.secrets.len(), 1);
    assert_eq!(s.state(), want);
    assert_eq!(s.mm.mark(), m.mm.mark());
    // Both survive a restart: state and mark are in NV.
    let mut s = s.restart();
    let mut m = m.restart();
    assert_eq!(s.state(), want);
    assert_eq!(m.state(), want);
    assert_eq!(
        s.mm.mark(),
        Mark {
            epoch: 1,
            bracket: 7
        }
    );
    assert!(s.mm.consistent());

    // A blank card rebuilt from a full snapshot.
    let mut blank = card();
    blank.mm.store_junk();
    let full = Bracket {
        epoch: 2,
        id: 7,
        full: true,
        changes: m.mm.snapshot().unwrap(),
    };
    blank.mm.apply(&full).unwrap();
    assert_eq!(
        blank.mm.mark(),
        Mark {
            epoch: 2,
            bracket: 7
        }
    );
    // Log offsets are each card's own (this card's log started afresh);
    // the master's are kept in the records' tags.
    let own = |mut s: MemState| {
        for l in &mut s.logs {
            for r in l.iter_mut() {
                r.offset = 0;
            }
        }
        s
    };
    assert_eq!(own(blank.state()), own(want.clone()));
    // A later trim by the master's offset finds the record by its tag.
    let kept = want.logs[0][0].offset;
    let trim = |to| Bracket {
        epoch: 2,
        id: 8,
        full: false,
        changes: vec![Change::LogTrim { tier: 0, to }],
    };
    blank.mm.apply(&trim(kept)).unwrap();
    assert_eq!(
        blank.state().logs[0].len(),
        1,
        "a trim to the record keeps it"
    );
    blank.mm.apply(&trim(kept + 1)).unwrap();
    assert!(blank.state().logs[0].is_empty(), "a trim past it drops it");
}

/// A bracket whose second change is refused (a CRC that differs) after
/// the first applied: the manager is cut in the middle of applying it.
fn halfway() -> Bracket {
    let mut bad = put(3, 2, 0, b"refused");
    if let Change::Put { data, .. } = &mut bad {
        data[0] ^= 1;
    }
    Bracket {
        epoch: 1,
        id: 1,
        full: false,
        changes: vec![put(3, 1, 0, b"applied"), bad],
    }
}

#[test]
fn a_bracket_that_fails_halfway_leaves_a_card_that_is_not_whole() {
    let mut s = card();
    assert!(s.mm.apply(&halfway()).is_err());
    assert!(!s.mm.consistent());
    assert_eq!(
        s.mm.mark(),
        Mark::default(),
        "no mark: the master sends a snapshot"
    );
    let mut s = s.restart();
    assert!(!s.mm.consistent(), "still known after a restart");
    let full = Bracket {
        epoch: 1,
        id: 1,
        full: true,
        changes: vec![put(3, 1, 0, b"applied")],
    };
    s.mm.apply(&full).unwrap();
    assert!(s.mm.consistent());
    assert_eq!(s.state().sets.len(), 1);
}

use super::net::put;

impl MemoryManager<ModelCtl> {
    /// Some state a snapshot must replace.
    fn store_junk(&mut self) {
        let b = Bracket {
            epoch: 1,
            id: 1,
            full: false,
            changes: vec![
                put(99, 1, 1, b"junk"),
                Change::LogAppend {
                    app: 99,
                    object: 0,
                    tier: 1,
                    offset: 0,
                    data: b"junk".to_vec(),
                },
                Change::Secret {
                    app: 99,
                    secret: [1; 32],
                },
            ],
        };
        self.apply(&b).unwrap();
    }
}

/// Two cards, each a `Node` over its own memory manager on the reference
/// model, wired by hand: host requests through `card::serve`.
struct Pair {
    nodes: Vec<Node<MemoryManager<ModelCtl>>>,
    mems: Vec<Rc<RefCell<PagedMemory>>>,
    up: Vec<bool>,
    arb: LocalArbiter,
    now: std::time::Instant,
    events: Vec<Vec<Event>>,
}

impl Pair {
    fn new() -> Self {
        let now = std::time::Instant::now();
        let mut nodes = Vec::new();
        let mut mems = Vec::new();
        for id in 1..=2u32 {
            let c = card();
            mems.push(c.mem.clone());
            let cfg = super::net::config(id, &[1, 2], Mode::Sync);
            nodes.push(Node::new(cfg, c.mm, now));
        }
        let arb = LocalArbiter::new(
            [1, 2],
            std::time::Duration::from_millis(5),
            std::time::Duration::from_micros(500),
        );
        let mut p = Self {
            nodes,
            mems,
            up: vec![true, true],
            arb,
            now,
            events: vec![Vec::new(), Vec::new()],
        };
        p.nodes[0].connected(now, 2);
        p.nodes[1].connected(now, 1);
        p.nodes[0].bootstrap(now, &mut p.arb).unwrap();
        p.run(30);
        p
    }

    /// `steps` of 100 µs: deliver, tick.
    fn run(&mut self, steps: u32) {
        for _ in 0..steps {
            self.now += std::time::Duration::from_micros(100);
            let mut msgs = Vec::new();
            for (i, n) in self.nodes.iter_mut().enumerate() {
                while let Some((to, b)) = n.poll_transmit() {
                    msgs.push((i as u32 + 1, to, b));
                }
                while let Some(e) = n.poll_event() {
                    self.events[i].push(e);
                }
            }
            for (from, to, b) in msgs {
                let t = to as usize - 1;
                if self.up[t] && self.up[from as usize - 1] {
                    self.nodes[t].receive(self.now, from, &b);
                }
            }
            for (i, n) in self.nodes.iter_mut().enumerate() {
                if self.up[i] {
                    n.tick(self.now, &mut self.arb);
                }
            }
        }
    }

    fn serve(
        &mut self,
        id: u32,
        handle: u32,
        secret: &[u8],
        r: Request,
    ) -> Result<(card::Answer, Response), WriteError> {
        let i = id as usize - 1;
        let kind = r.kind();
        let mut b = r.encode();
        if Request::needs_session(kind) {
            b = b.u32(tag::HANDLE, handle);
        }
        let mut msg = b.finish();
        if Request::needs_session(kind) {
            msg = auth::sign(msg, secret, self.nodes[i].replica().nonce());
        }
        let mut host = Host(self.mems[i].clone());
        let a = card::serve(&mut self.nodes[i], self.now, &mut host, &msg)?;
        let reply = match &a {
            card::Answer::Now(r) | card::Answer::AtDurable { reply: r, .. } => r,
        };
        let m = Message::decode(&reply.message).unwrap();
        let resp = Response::decode(kind, &m).unwrap().unwrap();
        Ok((a, resp))
    }
}

#[test]
fn a_replicated_card_answers_a_sync_store_once_durable_and_the_slave_takes_over_with_it() {
    let mut p = Pair::new();
    // The application opens on the master: its secret is replicated.
    let (_, r) = p
        .serve(
            1,
            0,
            &[],
            Request::Open {
                app: 7,
                flags: flags::READ | flags::WRITE,
            },
        )
        .unwrap();
    let Response::Opened {
        handle,
        secret: Some(secret),
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    let data = vec![0x5Au8; 3000];
    p.mems[0].borrow_mut().write(0x10_0000, &data);
    let (a, _) = p
        .serve(
            1,
            handle,
            &secret,
            Request::Store {
                object: 4,
                endpoint: 0,
                stage: 1,
                flags: flags::COLD,
                addr: 0x10_0000,
                len: data.len() as u32,
                crc: crc32c(&data),
            },
        )
        .unwrap();
    let card::Answer::AtDurable { epoch, bracket, .. } = a else {
        panic!("a sync store is answered when durable: {a:?}")
    };
    p.run(20);
    assert!(
        p.events[0].contains(&Event::Durable { epoch, bracket }),
        "{:?}",
        p.events[0]
    );
    // The slave serves no host: the store is refused there.
    let e = p
        .serve(2, handle, &secret, Request::List { endpoint: 0 })
        .unwrap_err();
    assert!(
        matches!(
            e,
            WriteError::NotMaster {
                master: Some(1),
                ..
            }
        ),
        "{e:?}"
    );
    // The master dies; the slave takes over with the set and the secret.
    p.up[0] = false;
    p.run(100);
    assert_eq!(p.nodes[1].role(), hitless_proto::link::Role::Master);
    let (_, r) = {
        // A reopen is signed with the replicated secret.
        let kind = Request::Open {
            app: 7,
            flags: flags::READ,
        }
        .kind();
        let msg = Request::Open {
            app: 7,
            flags: flags::READ,
        }
        .encode()
        .finish();
        let msg = auth::sign(msg, &secret, p.nodes[1].replica().nonce());
        let mut host = Host(p.mems[1].clone());
        let a = card::serve(&mut p.nodes[1], p.now, &mut host, &msg).unwrap();
        let card::Answer::Now(reply) = a else {
            panic!()
        };
        let m = Message::decode(&reply.message).unwrap();
        ((), Response::decode(kind, &m).unwrap().unwrap())
    };
    let Response::Opened { handle: h2, .. } = r else {
        panic!("{r:?}")
    };
    let (_, r) = p
        .serve(
            2,
            h2,
            &secret,
            Request::Restore {
                object: 4,
                endpoint: 0,
                addr: 0x30_0000,
                cap: 4096,
            },
        )
        .unwrap();
    assert!(matches!(r, Response::Sets { .. }), "{r:?}");
    let mut back = vec![0u8; data.len()];
    p.mems[1].borrow().read(0x30_0000, &mut back);
    assert_eq!(back, data, "restored byte for byte from the new master");
}

/// A slave power-cycled has lost its warm sets but kept its cold mark: the
/// mark must not claim them (it would be continued incrementally, never
/// get them back, and could take over without them). A slave whose warm
/// tier held nothing keeps its mark.
#[test]
fn a_power_cycled_slave_that_lost_warm_sets_has_no_mark_until_a_snapshot() {
    for warm in [false, true] {
        let mut m = card();
        let mut s = card();
        m.mm.record_changes(true);
        m.open(7);
        m.store(1, true, b"cold set");
        if warm {
            m.store(2, false, b"warm set");
        }
        let b = Bracket {
            epoch: 1,
            id: 1,
            full: false,
            changes: m.mm.take_changes(),
        };
        s.mm.apply(&b).unwrap();
        let mark = Mark {
            epoch: 1,
            bracket: 1,
        };
        assert_eq!(s.mm.mark(), mark);
        // A restart that keeps both tiers keeps the mark.
        let s = s.restart();
        assert_eq!(s.mm.mark(), mark);
        assert!(s.mm.consistent());
        let mut s = s.power_cycle();
        if warm {
            assert!(!s.mm.consistent(), "a mark over lost warm sets");
            // A full snapshot makes it whole again.
            let full = Bracket {
                epoch: 1,
                id: 1,
                full: true,
                changes: m.mm.snapshot().unwrap(),
            };
            s.mm.apply(&full).unwrap();
            assert!(s.mm.consistent());
            assert_eq!(s.mm.mark(), mark);
            assert_eq!(s.state(), m.state());
            let s = s.power_cycle();
            assert!(!s.mm.consistent(), "the token of the new warm tier");
        } else {
            assert!(s.mm.consistent(), "nothing warm was lost");
            assert_eq!(s.mm.mark(), mark);
        }
    }
}

impl Card {
    /// Open `app` with its (replicated) secret.
    fn reopen(&mut self, app: u32, secret: &[u8]) {
        let r = Request::Open {
            app,
            flags: flags::READ | flags::WRITE | flags::LOG,
        };
        let kind = r.kind();
        let msg = auth::sign(r.encode().finish(), secret, self.mm.nonce());
        let mut host = Host(self.mem.clone());
        let reply = self.mm.handle(&mut host, &msg);
        let m = Message::decode(&reply.message).unwrap();
        match Response::decode(kind, &m).unwrap() {
            Ok(Response::Opened { handle, .. }) => {
                self.handle = handle;
                self.secret = secret.to_vec();
            }
            other => panic!("{other:?}"),
        }
    }

    /// The log as a reader sees it: (position, payload) of each record,
    /// head, tail.
    fn log(&mut self) -> (Vec<(u32, Vec<u8>)>, u32, u32) {
        let Response::Log {
            records,
            head,
            tail,
        } = self.request(Request::LogRead {
            flags: 0,
            addr: 0x40_0000,
            cap: 1 << 20,
        })
        else {
            panic!("not a log")
        };
        let recs = records
            .iter()
            .map(|r| {
                let mut b = vec![0u8; r.len as usize];
                self.mem
                    .borrow()
                    .read(0x40_0000 + u64::from(r.data_offset), &mut b);
                (r.offset, b)
            })
            .collect();
        (recs, head, tail)
    }

    fn trim(&mut self, to: u32) {
        let r = self.request(Request::LogTrim {
            flags: 0,
            to: Some(to),
        });
        assert!(matches!(r, Response::Log { .. }), "{r:?}");
    }
}

/// A log cursor (a backup reader's position) names the same record on
/// both cards of a pair, though the slave's own offsets differ (its log
/// started elsewhere, and the ring wraps at other records there), and
/// after the slave takes over its own records go on after the master's;
/// the old master following it keeps the same positions.
#[test]
fn log_positions_name_the_same_record_on_both_cards_and_after_a_takeover() {
    let mut m = card();
    let mut s = card();
    // The slave's ring is elsewhere: another application's records, read
    // and trimmed.
    s.open(8);
    for i in 0..7u8 {
        s.append(1, &vec![i; 1500]);
    }
    let (_, head, _) = s.log();
    s.trim(head);
    m.mm.record_changes(true);
    m.open(7);
    let secret = m.secret.clone();
    let mut id = 0;
    let mut ship = |m: &mut Card, s: &mut Card, epoch: u64| {
        id += 1;
        let b = Bracket {
            epoch,
            id,
            full: false,
            changes: m.mm.take_changes(),
        };
        s.mm.apply(&b).unwrap();
    };
    ship(&mut m, &mut s, 1);
    s.reopen(7, &secret);
    let record = |n: u32| {
        let mut r = format!("record {n}").into_bytes();
        r.resize(500 + (n as usize * 397) % 2600, b'.');
        r
    };
    let mut n = 0;
    for _ in 0..24 {
        for _ in 0..3 {
            m.append(1, &record(n));
            n += 1;
        }
        ship(&mut m, &mut s, 1);
        let (mine, head, tail) = m.log();
        assert_eq!(s.log(), (mine.clone(), head, tail), "after record {n}");
        // The reader trims to the last record it read (a cursor).
        m.trim(mine[mine.len() - 1].0);
        ship(&mut m, &mut s, 1);
        assert_eq!(s.log(), m.log());
    }
    let (mine, head, _) = m.log();
    assert!(head > 60 << 10, "the ring went round ({head:#x})");
    assert!(!mine.is_empty());
    // The slave takes over: its records go on after the master's head.
    s.mm.record_changes(true);
    let at = s.append(1, &record(n));
    assert!(
        at >= head,
        "the new master's record at {at:#x}, the old head {head:#x}"
    );
    ship(&mut s, &mut m, 2);
    let (after, _, _) = s.log();
    assert_eq!(&after[..mine.len()], &mine[..], "the same positions");
    assert_eq!(after.last().map(|r| r.0), Some(at));
    assert_eq!(
        m.log(),
        s.log(),
        "the old master follows at the same positions"
    );
    // A trim to a cursor read on the old master, on the new one.
    s.trim(mine[mine.len() - 1].0);
    ship(&mut s, &mut m, 2);
    let (left, _, _) = s.log();
    assert_eq!(left.len(), 2);
    assert_eq!(m.log(), s.log());
}

/// The two kinds of dirt a mark has, and the operator's promotion of each:
/// a bracket cut while applied (mixed) is never promoted; a power cycle
/// that lost warm sets is promoted only accepting the loss, which the
/// answer counts; the cold sets are served, the card is whole after it
/// (across a restart too).
#[test]
fn a_promotion_refuses_mixed_brackets_and_accepts_lost_warm_sets_only_when_asked() {
    let cfg = |n| Config::new(n, [1, 2]);
    let now = std::time::Instant::now();
    // Mixed: the second change of a bracket fails after the first applied.
    let mut s = card();
    assert!(s.mm.apply(&halfway()).is_err());
    let s = s.restart();
    assert_eq!(s.mm.inconsistency(), Some(Inconsistency::MixedBrackets));
    let mut node = Node::new(cfg(2), s.mm, now);
    for accept in [false, true] {
        let e = node.promote(now, &mut NoArbiter, accept);
        assert!(matches!(e, Err(PromoteError::MixedBrackets(_))), "{e:?}");
    }
    assert_ne!(node.role(), Role::Master);

    // Lost warm: a master's bracket with a cold and two warm sets and a
    // warm log record, applied on a card that is then power-cycled.
    let mut m = card();
    let mut s = card();
    m.mm.record_changes(true);
    m.open(7);
    m.store(1, true, b"cold set");
    m.store(2, false, b"warm set");
    m.store(3, false, b"another warm set");
    m.append(4, b"warm record");
    let b = Bracket {
        epoch: 4,
        id: 9,
        full: false,
        changes: m.mm.take_changes(),
    };
    s.mm.apply(&b).unwrap();
    let s = s.power_cycle();
    let lost = Inconsistency::LostWarm {
        sets: Some(2),
        log: true,
    };
    assert_eq!(s.mm.inconsistency(), Some(lost));
    let mark = Mark {
        epoch: 4,
        bracket: 9,
    };
    assert_eq!(s.mm.mark(), mark, "the cold tier is whole to its mark");
    let Card { mm, mem, .. } = s;
    let mut node = Node::new(cfg(2), mm, now);
    let e = node.promote(now, &mut NoArbiter, false);
    assert_eq!(e, Err(PromoteError::LostWarm(lost)));
    assert!(e.unwrap_err().to_string().contains("--accept-lost-warm"));
    assert_ne!(node.role(), Role::Master);
    let p = node.promote(now, &mut NoArbiter, true).unwrap();
    assert_eq!(node.role(), Role::Master);
    assert_eq!(p.lost_warm, Some(lost));
    assert!(p.epoch > mark.epoch, "a new epoch fences the old master");
    assert!(node.replica().consistent());
    let mut s = Card {
        mm: node.into_replica(),
        mem,
        handle: 0,
        secret: m.secret.clone(),
    }
    .restart();
    assert!(
        s.mm.consistent(),
        "whole across a restart (a new warm token)"
    );
    assert_eq!(s.mm.mark(), mark);
    let st = s.state();
    assert_eq!(st.sets.len(), 1, "the cold set only");
    assert_eq!(st.sets[&(7, 1)].1, b"cold set");
    assert!(st.logs[0].is_empty());
}

/// A mark written by an older firmware: its dirty word reads as mixed
/// brackets (the unsafe kind), its warm-held word of 1 as warm sets lost
/// in an unknown number.
#[test]
fn an_older_firmwares_mark_reads_as_the_unsafe_kind() {
    let mut s = card();
    s.mm.write_raw_mark([3, 5, 1, 0, 0]).unwrap();
    let s = s.restart();
    assert_eq!(s.mm.inconsistency(), Some(Inconsistency::MixedBrackets));
    assert_eq!(s.mm.mark(), Mark::default());
    let mut s = s;
    s.mm.set_mark(Mark {
        epoch: 3,
        bracket: 5,
    })
    .unwrap();
    let token = s.mm.warm_token().unwrap();
    // Clean, warm tier held something ("1"), and the token differs.
    s.mm.write_raw_mark([3, 5, 0, token ^ 1, 1]).unwrap();
    let s = s.restart();
    assert_eq!(
        s.mm.inconsistency(),
        Some(Inconsistency::LostWarm {
            sets: None,
            log: false
        })
    );
    // The same with the token: whole.
    let mut s = s;
    s.mm.write_raw_mark([3, 5, 0, token, 1]).unwrap();
    let s = s.restart();
    assert_eq!(s.mm.inconsistency(), None);
}

/// A replicated master refuses, before it changes anything, what its
/// stream cannot carry: a set over one link frame and the heap store's
/// requests. The same set on an unreplicated card is stored.
#[test]
fn a_replicated_master_refuses_what_its_stream_cannot_carry_before_storing_it() {
    let big: Vec<u8> = (0..MAX_TRANSFER as usize + 4096)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let store = |c: &mut Card| {
        c.mem.borrow_mut().write(0x10_0000, &big);
        c.try_request(Request::Store {
            object: 5,
            endpoint: 0,
            stage: 2,
            flags: 0,
            addr: 0x10_0000,
            len: big.len() as u32,
            crc: crc32c(&big),
        })
    };
    let mut m = card();
    m.open(3);
    m.store(4, false, b"small");
    m.mm.record_changes(true);
    let before = m.state();
    let err = store(&mut m).expect_err("a set over one link frame is refused");
    assert_eq!(err.code, Code::Invalid, "{err:?}");
    assert!(err.detail.contains("replicated card"), "{err:?}");
    let heap = m
        .try_request(Request::HeapOpen {
            heap: 1,
            heap_pages: 16,
            keep: 2,
            flags: 0,
        })
        .expect_err("a heap on a replicated card is refused");
    assert_eq!(heap.code, Code::Invalid, "{heap:?}");
    assert!(m.mm.take_changes().is_empty(), "nothing journaled");
    assert_eq!(m.state(), before, "nothing stored");
    // A set of exactly one frame still goes, and is journaled.
    m.store(6, false, &big[..MAX_TRANSFER as usize]);
    assert_eq!(m.mm.take_changes().len(), 1);

    let mut plain = card();
    plain.open(3);
    assert!(
        matches!(store(&mut plain), Ok(Response::Stored { .. })),
        "an unreplicated card stores the large set"
    );
}
