//! Sets a host stores in its peer card's memory (seed 000, claims
//! 13-15): the manager leaves the request to the loop, the forwarder
//! sends it and answers the host, the peer's manager holds the set (a
//! master's snapshot keeps it), on the controller's reference model.

use super::manager::{card, Card};
use crate::manager::peer::{Endpoints, PeerOp};
use crate::replication::peer_sets::{serve, Done, Forwarder, MAX_WAITING};
use crate::replication::*;
use hitless_hdl::contract::crc32c;
use hitless_hdl::model::HostMemory as _;
use hitless_proto::link::{LinkMessage, Role, SetRecord};
use hitless_proto::message::{Failure, Request};
use hitless_proto::msg::{flags, Code};
use hitless_proto::Response;
use std::time::{Duration, Instant};

const APP: u32 = 9;
const BUF: u64 = 0x10_0000;

fn node(own: u32, peer: u32) -> Card {
    let mut c = card();
    c.mm.set_endpoints(Endpoints {
        own,
        peers: vec![peer],
    });
    c.open(APP);
    c
}

fn store(c: &mut Card, object: u32, endpoint: u32, data: &[u8]) -> Result<Response, Failure> {
    c.mem.borrow_mut().write(BUF, data);
    c.try_request(Request::Store {
        object,
        endpoint,
        stage: 3,
        flags: flags::COLD,
        addr: BUF,
        len: data.len() as u32,
        crc: crc32c(data),
    })
}

fn restore(c: &mut Card, object: u32, endpoint: u32, cap: u32) -> Result<Response, Failure> {
    c.try_request(Request::Restore {
        object,
        endpoint,
        addr: 0x40_0000,
        cap,
    })
}

fn code(r: Result<Response, Failure>) -> Code {
    match r {
        Ok(r) => panic!("expected a refusal, got {r:?}"),
        Err(f) => f.code,
    }
}

/// One message through the link both ways: `origin`'s forwarder sends
/// `op`, `peer` serves it as a card of `role`, the answer comes back.
fn round_trip(fwd: &mut Forwarder<u32>, op: PeerOp, peer: &mut Card, role: Role) -> Done<u32> {
    let now = Instant::now();
    let (to, bytes) = fwd.send(now, op, 7, true, Some(4)).unwrap();
    let msg = LinkMessage::decode(&bytes).unwrap();
    let answer = serve(&mut peer.mm, role, msg).expect("a peer-set request is answered");
    let done = fwd
        .receive(to, LinkMessage::decode(&answer.encode()).unwrap())
        .expect("the answer matches the request");
    assert_eq!(done.tag, 7);
    assert_eq!(fwd.waiting(), 0);
    done
}

#[test]
fn endpoints_name_this_card_the_peer_or_nothing() {
    let mut a = node(1, 2);
    // 0 and the card's own node id: this card.
    store(&mut a, 1, 0, b"here").unwrap();
    store(&mut a, 2, 1, b"here too").unwrap();
    assert!(a.mm.take_peer_op().is_none());
    // The peer's: left to the loop, the host answered only by it (the
    // manager's own answer is a refusal), nothing stored here.
    let r = store(&mut a, 3, 2, b"for the peer");
    assert_eq!(code(r), Code::Device);
    match a.mm.take_peer_op() {
        Some(PeerOp::Store { peer, set, data }) => {
            assert_eq!(peer, 2);
            assert_eq!(
                (set.app, set.object, set.endpoint, set.stage, set.tier),
                (APP, 3, 2, 3, 1)
            );
            assert_eq!(set.crc, crc32c(b"for the peer"));
            assert_eq!(data, b"for the peer");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(code(restore(&mut a, 3, 0, 4096)), Code::NotFound);
    assert!(a.mm.take_peer_op().is_none());
    assert_eq!(code(restore(&mut a, 3, 2, 4096)), Code::Device);
    assert!(matches!(
        a.mm.take_peer_op(),
        Some(PeerOp::Fetch {
            peer: 2,
            app: APP,
            object: 3,
            endpoint: 2,
            cap: 4096,
            ..
        })
    ));
    // An endpoint of no card: refused, nothing stored, nothing sent.
    assert_eq!(code(store(&mut a, 4, 5, b"nowhere")), Code::Invalid);
    assert_eq!(code(restore(&mut a, 4, 5, 4096)), Code::Invalid);
    assert!(a.mm.take_peer_op().is_none());
    assert_eq!(code(restore(&mut a, 4, 0, 4096)), Code::NotFound);
    // A CRC that does not match the host's bytes is refused here.
    a.mem.borrow_mut().write(BUF, b"abcd");
    let r = a.try_request(Request::Store {
        object: 5,
        endpoint: 2,
        stage: 0,
        flags: 0,
        addr: BUF,
        len: 4,
        crc: 1,
    });
    assert_eq!(code(r), Code::Invalid);
    assert!(a.mm.take_peer_op().is_none());

    // An unreplicated card: endpoint 0 only.
    let mut u = card();
    u.open(APP);
    assert_eq!(code(store(&mut u, 1, 2, b"x")), Code::Invalid);
    store(&mut u, 1, 0, b"x").unwrap();
}

#[test]
fn the_peer_holds_the_set_durable_and_a_masters_snapshot_keeps_it() {
    let mut a = node(1, 2);
    let mut b = node(2, 1);
    let mut fwd = Forwarder::<u32>::new(Duration::from_secs(1));
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let _ = store(&mut a, 10, 2, &data);
    let op = a.mm.take_peer_op().unwrap();
    let done = round_trip(&mut fwd, op, &mut b, Role::Slave);
    assert_eq!(
        done.answer.unwrap(),
        Response::Stored {
            len: 5000,
            crc: crc32c(&data)
        }
    );
    // In the peer's memory with the application id, object id and
    // endpoint (claims 13-15), marked held; durable: a restart keeps it.
    let mut b = b.restart();
    b.mm.set_endpoints(Endpoints {
        own: 2,
        peers: vec![1],
    });
    let (set, got) = b.mm.fetch_held(APP, 10, 8192).unwrap();
    assert_eq!(
        (set.app, set.object, set.endpoint, set.tier),
        (APP, 10, 2, 1)
    );
    assert_eq!(got, data);
    // Read back through the link: into the host buffer of the request.
    let _ = restore(&mut a, 10, 2, 8192);
    let op = a.mm.take_peer_op().unwrap();
    let done = round_trip(&mut fwd, op, &mut b, Role::Slave);
    let (addr, got) = done.write.expect("the set's bytes for the host");
    assert_eq!((addr, &got), (0x40_0000, &data));
    assert!(matches!(done.answer, Ok(Response::Sets { ref sets, .. }) if sets[0].endpoint == 2));
    // A host buffer too small: TooSmall with the size, nothing written.
    let _ = restore(&mut a, 10, 2, 100);
    let op = a.mm.take_peer_op().unwrap();
    let done = round_trip(&mut fwd, op, &mut b, Role::Slave);
    assert!(done.write.is_none());
    let f = done.answer.unwrap_err();
    assert_eq!((f.code, f.needed), (Code::TooSmall, Some(5000)));

    // The master's full snapshot replaces the replicated state, not the
    // sets held for the peer.
    let mut m = node(3, 2);
    m.store(50, false, b"the master's");
    snapshot(&mut m, &mut b, 5);
    let (mut got, want) = (b.state(), m.state());
    let held = got
        .sets
        .remove(&(APP, 10))
        .expect("the held set survives the snapshot");
    assert_eq!(held.1, data);
    assert_eq!(got.sets, want.sets, "the rest is the master's state");
    let _ = restore(&mut a, 10, 2, 8192);
    let op = a.mm.take_peer_op().unwrap();
    assert!(round_trip(&mut fwd, op, &mut b, Role::Slave).answer.is_ok());
    // A key the peer holds as the master's own set is not taken over by
    // a peer's store (one key, one set in the pair); nor fetched as held.
    // A card that is master does not take a peer's set (nothing stored).
    let cases: [(u32, bool, Role, Code); 4] = [
        (50, false, Role::Slave, Code::Invalid),
        (50, true, Role::Slave, Code::NotFound),
        (11, false, Role::Master, Code::Device),
        (11, true, Role::Slave, Code::NotFound),
    ];
    for (object, fetch, role, want) in cases {
        let _ = if fetch {
            restore(&mut a, object, 2, 8192)
        } else {
            store(&mut a, object, 2, b"refused")
        };
        let op = a.mm.take_peer_op().unwrap();
        let f = round_trip(&mut fwd, op, &mut b, role).answer.unwrap_err();
        assert_eq!(f.code, want, "object {object} fetch {fetch}: {}", f.detail);
    }

    // The holder becomes master: the set is its own (still there, no
    // longer held), so a later master's snapshot replaces it as any set.
    assert_eq!(b.mm.adopt_held().unwrap(), 1);
    assert_eq!(b.mm.adopt_held().unwrap(), 0, "once");
    assert!(b.state().sets.contains_key(&(APP, 10)));
    assert_eq!(
        b.mm.fetch_held(APP, 10, 8192).unwrap_err().code,
        Code::NotFound
    );
    snapshot(&mut m, &mut b, 6);
    assert_eq!(b.state().sets, m.state().sets);
}

/// `to` takes a full snapshot of `from`'s state, as a slave of master
/// `from` in `epoch`.
fn snapshot(from: &mut Card, to: &mut Card, epoch: u64) {
    let full = Bracket {
        epoch,
        id: 1,
        full: true,
        changes: from.mm.snapshot().unwrap(),
    };
    to.mm.apply(&full).unwrap();
}

fn op(peer: u32) -> PeerOp {
    PeerOp::Store {
        peer,
        set: SetRecord {
            app: APP,
            object: 1,
            endpoint: peer,
            stage: 0,
            tier: 0,
            version: 0,
            crc: crc32c(b"x"),
            stored_us: 0,
        },
        data: b"x".to_vec(),
    }
}

#[test]
fn the_forwarder_answers_every_request_within_its_deadline() {
    let t0 = Instant::now();
    let mut fwd = Forwarder::<u32>::new(Duration::from_millis(500));
    // Link down, or a peer of an older schema: refused at once, nothing sent.
    let d = fwd.send(t0, op(2), 1, false, Some(4)).unwrap_err();
    assert_eq!((d.tag, d.answer.unwrap_err().code), (1, Code::Device));
    let d = fwd.send(t0, op(2), 2, true, Some(3)).unwrap_err();
    assert!(d.answer.unwrap_err().detail.contains("schema 3"));
    assert_eq!(fwd.waiting(), 0);
    // No answer: failed at the deadline, not before.
    fwd.send(t0, op(2), 3, true, Some(4)).unwrap();
    assert!(fwd.expire(t0 + Duration::from_millis(499)).is_empty());
    let late = fwd.expire(t0 + Duration::from_millis(500));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].tag, 3);
    assert!(late[0]
        .answer
        .as_ref()
        .unwrap_err()
        .detail
        .contains("did not answer"));
    // The link goes down: that peer's requests fail at once, others wait.
    let (_, first) = fwd.send(t0, op(2), 4, true, Some(4)).unwrap();
    fwd.send(t0, op(3), 5, true, Some(4)).unwrap();
    let down = fwd.link_down(2);
    assert_eq!(down.iter().map(|d| d.tag).collect::<Vec<_>>(), vec![4]);
    assert_eq!(fwd.waiting(), 1);
    // An answer to a request no longer waiting, or from another node
    // than the one asked, answers nothing.
    let request = match LinkMessage::decode(&first).unwrap() {
        LinkMessage::PeerStore { request, .. } => request,
        other => panic!("{other:?}"),
    };
    let ok = |request| LinkMessage::PeerAnswer {
        request,
        code: 0,
        reason: String::new(),
        set: match op(2) {
            PeerOp::Store { set, .. } => set,
            PeerOp::Fetch { .. } => unreachable!(),
        },
        data: Vec::new(),
    };
    assert!(fwd.receive(2, ok(request)).is_none());
    assert!(fwd.receive(2, ok(request + 1)).is_none(), "asked node 3");
    let d = fwd.receive(3, ok(request + 1)).unwrap();
    assert_eq!(d.tag, 5);
    assert!(d.answer.is_ok());
    // A peer's refusal keeps its code; a code this side does not know, or
    // none, is never success.
    fwd.send(t0, op(2), 6, true, Some(4)).unwrap();
    let r = LinkMessage::PeerAnswer {
        request: request + 2,
        code: 999,
        reason: "?".into(),
        set: match op(2) {
            PeerOp::Store { set, .. } => set,
            PeerOp::Fetch { .. } => unreachable!(),
        },
        data: Vec::new(),
    };
    assert_eq!(
        fwd.receive(2, r).unwrap().answer.unwrap_err().code,
        Code::Device
    );
    // Bounded: past MAX_WAITING requests, refused.
    for i in 0..MAX_WAITING as u32 {
        fwd.send(t0, op(2), 100 + i, true, Some(4)).unwrap();
    }
    assert!(fwd.send(t0, op(2), 1000, true, Some(4)).is_err());
    assert_eq!(fwd.drain("stop").len(), MAX_WAITING);
}
