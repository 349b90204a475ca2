//! Sets a host stores in its peer card's memory (seed 000, claims
//! 13-15): the manager leaves the request to the loop, the forwarder
//! sends it and answers the host, the peer's manager holds the set (a
//! master's snapshot keeps it), on the controller's reference model.

use super::manager::{card, Card};
use crate::manager::peer::{Endpoints, PeerOp};
use crate::replication::peer_sets::{serve, Done, Forwarder, MAX_PEER_LIST, MAX_WAITING};
use crate::replication::*;
use hitless_hdl::contract::crc32c;
use hitless_hdl::model::HostMemory as _;
use hitless_proto::link::{LinkError, LinkMessage, Role, SetRecord, SCHEMA};
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
    let (to, bytes) = fwd.send(now, op, 7, true, Some(SCHEMA)).unwrap();
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
            _ => unreachable!(),
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
            _ => unreachable!(),
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

/// The host's DELETE or LIST with `endpoint`: left to the loop (the
/// manager's own answer a refusal), or refused here.
fn delete(c: &mut Card, object: u32, endpoint: u32) -> Result<Response, Failure> {
    c.try_request(Request::Delete { object, endpoint })
}

fn list(c: &mut Card, endpoint: u32) -> Result<Response, Failure> {
    c.try_request(Request::List { endpoint })
}

/// The objects of a LIST's answer.
fn objects(done: Done<u32>) -> Vec<u32> {
    match done.answer {
        Ok(Response::Sets { sets, .. }) => sets.iter().map(|s| s.object).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn delete_and_list_reach_the_sets_the_peer_holds() {
    let mut a = node(1, 2);
    let mut b = node(2, 1);
    let mut fwd = Forwarder::<u32>::new(Duration::from_secs(1));
    for (object, len) in [(10, 100), (11, 200), (12, 300)] {
        let _ = store(&mut a, object, 2, &vec![object as u8; len]);
        let op = a.mm.take_peer_op().unwrap();
        assert!(round_trip(&mut fwd, op, &mut b, Role::Slave).answer.is_ok());
    }
    // The peer's own (replicated) set of the application: not listed as
    // held, not deletable by the origin.
    b.store(50, false, b"the master's");

    // LIST with the peer's endpoint: exactly the sets it holds for the
    // application, with their records; LIST of this card: not them.
    assert_eq!(code(list(&mut a, 2)), Code::Device);
    let op = a.mm.take_peer_op().unwrap();
    assert_eq!(
        op,
        PeerOp::List {
            peer: 2,
            app: APP,
            endpoint: 2
        }
    );
    let done = round_trip(&mut fwd, op, &mut b, Role::Slave);
    match &done.answer {
        Ok(Response::Sets { sets, .. }) => {
            let got: Vec<_> = sets
                .iter()
                .map(|s| (s.app, s.object, s.endpoint, s.len))
                .collect();
            assert_eq!(
                got,
                [(APP, 10, 2, 100), (APP, 11, 2, 200), (APP, 12, 2, 300)]
            );
        }
        other => panic!("{other:?}"),
    }
    match list(&mut a, 0) {
        Ok(Response::Sets { sets, .. }) => assert!(sets.is_empty(), "{sets:?}"),
        other => panic!("{other:?}"),
    }
    assert!(a.mm.take_peer_op().is_none());
    // A page from an object id on.
    assert_eq!(
        b.mm.list_held(APP, 11)
            .0
            .iter()
            .map(|s| s.object)
            .collect::<Vec<_>>(),
        [11, 12]
    );

    // DELETE with the peer's endpoint: done when the peer's delete is
    // durable (a restart does not bring it back); gone from its LIST,
    // RESTORE says not found.
    assert_eq!(code(delete(&mut a, 11, 2)), Code::Device);
    let op = a.mm.take_peer_op().unwrap();
    assert_eq!(
        round_trip(&mut fwd, op, &mut b, Role::Slave).answer,
        Ok(Response::Done)
    );
    let mut b = b.restart();
    b.mm.set_endpoints(Endpoints {
        own: 2,
        peers: vec![1],
    });
    let _ = list(&mut a, 2);
    let op = a.mm.take_peer_op().unwrap();
    assert_eq!(
        objects(round_trip(&mut fwd, op, &mut b, Role::Slave)),
        [10, 12]
    );
    let _ = restore(&mut a, 11, 2, 4096);
    let op = a.mm.take_peer_op().unwrap();
    let f = round_trip(&mut fwd, op, &mut b, Role::Slave)
        .answer
        .unwrap_err();
    assert_eq!(f.code, Code::NotFound);
    // Deleted once; the peer's own set is not the origin's to delete (it
    // stays); a master refuses DELETE and LIST as it refuses STORE.
    let cases: [(Option<u32>, Role, Code); 4] = [
        (Some(11), Role::Slave, Code::NotFound),
        (Some(50), Role::Slave, Code::NotFound),
        (Some(10), Role::Master, Code::Device),
        (None, Role::Master, Code::Device),
    ];
    for (object, role, want) in cases {
        let _ = match object {
            Some(o) => delete(&mut a, o, 2),
            None => list(&mut a, 2),
        };
        let op = a.mm.take_peer_op().unwrap();
        let f = round_trip(&mut fwd, op, &mut b, role).answer.unwrap_err();
        assert_eq!(f.code, want, "{object:?} as {role:?}: {}", f.detail);
    }
    assert!(b.state().sets.contains_key(&(APP, 50)));
    assert!(b.mm.fetch_held(APP, 10, 4096).is_ok());
    // An endpoint of no card: refused here, nothing sent.
    assert_eq!(code(delete(&mut a, 10, 5)), Code::Invalid);
    assert_eq!(code(list(&mut a, 5)), Code::Invalid);
    assert!(a.mm.take_peer_op().is_none());
}

fn listed(object: u32) -> hitless_proto::msg::SetInfo {
    hitless_proto::msg::SetInfo {
        app: APP,
        object,
        endpoint: 2,
        stage: 0,
        tier: hitless_proto::msg::TierSel::Cold,
        len: 1,
        crc: 0,
        data_offset: 0,
    }
}

#[test]
fn a_list_continues_page_by_page_and_a_schema_4_peer_is_refused() {
    let t0 = Instant::now();
    let mut fwd = Forwarder::<u32>::new(Duration::from_millis(500));
    let list_op = PeerOp::List {
        peer: 2,
        app: APP,
        endpoint: 2,
    };
    let delete_op = PeerOp::Delete {
        peer: 2,
        app: APP,
        object: 1,
        endpoint: 2,
    };
    // A peer of schema 4 has no PEER_DELETE or PEER_LIST (its decoder
    // says unknown kind): refused at once as unsupported, nothing sent;
    // STORE and RESTORE still go to it.
    for (tag, op) in [(1, list_op.clone()), (2, delete_op.clone())] {
        let d = fwd.send(t0, op, tag, true, Some(4)).unwrap_err();
        let f = d.answer.unwrap_err();
        assert_eq!(f.code, Code::Device);
        assert!(
            f.detail.contains("schema 4") && f.detail.contains("unsupported"),
            "{}",
            f.detail
        );
    }
    assert_eq!(fwd.waiting(), 0);
    assert!(fwd.send(t0, op(2), 3, true, Some(4)).is_ok());
    let _ = fwd.drain("next");
    let (_, bytes) = fwd.send(t0, delete_op, 4, true, Some(SCHEMA)).unwrap();
    assert_eq!(
        LinkMessage::decode_as(&bytes, 4),
        Err(LinkError::UnknownKind(
            hitless_proto::link::kind::PEER_DELETE
        ))
    );
    let _ = fwd.drain("next");

    // Pages: each one asks for the next (the request waits on), the last
    // answers the host with them all, in order.
    let (_, bytes) = fwd
        .send(t0, list_op.clone(), 5, true, Some(SCHEMA))
        .unwrap();
    let LinkMessage::PeerList {
        request, from: 0, ..
    } = LinkMessage::decode(&bytes).unwrap()
    else {
        panic!("the first page starts at object 0");
    };
    let page = |sets: Vec<u32>, next| LinkMessage::PeerListed {
        request,
        sets: sets.into_iter().map(listed).collect(),
        next,
    };
    assert!(fwd.receive(2, page(vec![1, 2], Some(7))).is_none());
    let (to, next) = fwd.poll_transmit().expect("the next page's request");
    assert_eq!(to, 2);
    assert!(matches!(
        LinkMessage::decode(&next).unwrap(),
        LinkMessage::PeerList { request: r, from: 7, .. } if r == request
    ));
    assert!(fwd.poll_transmit().is_none());
    assert_eq!(fwd.waiting(), 1);
    let done = fwd.receive(2, page(vec![7, 9], None)).unwrap();
    assert_eq!(done.tag, 5);
    assert_eq!(objects(done), [1, 2, 7, 9]);

    // A page out of order, of another application, or one that would
    // page on without end: the host gets DEVICE, nothing more is asked.
    let bad: [Vec<LinkMessage>; 3] = [
        vec![page(vec![3, 2], None)],
        vec![LinkMessage::PeerListed {
            request,
            sets: vec![hitless_proto::msg::SetInfo {
                app: APP + 1,
                ..listed(1)
            }],
            next: None,
        }],
        vec![page(vec![], Some(4))],
    ];
    for (i, pages) in bad.into_iter().enumerate() {
        let (_, bytes) = fwd
            .send(t0, list_op.clone(), 10 + i as u32, true, Some(SCHEMA))
            .unwrap();
        let LinkMessage::PeerList { request: r, .. } = LinkMessage::decode(&bytes).unwrap() else {
            panic!("a list request");
        };
        let mut done = None;
        for p in pages {
            let LinkMessage::PeerListed { sets, next, .. } = p else {
                unreachable!()
            };
            done = fwd.receive(
                2,
                LinkMessage::PeerListed {
                    request: r,
                    sets,
                    next,
                },
            );
        }
        let f = done.expect("answered").answer.unwrap_err();
        assert_eq!(f.code, Code::Device, "case {i}: {}", f.detail);
        assert!(fwd.poll_transmit().is_none());
    }
    assert_eq!(fwd.waiting(), 0);
    // Bounded in all: a peer that pages on past both tiers' sets is refused.
    let (_, bytes) = fwd.send(t0, list_op, 20, true, Some(SCHEMA)).unwrap();
    let LinkMessage::PeerList { request: r, .. } = LinkMessage::decode(&bytes).unwrap() else {
        panic!("a list request");
    };
    let per = hitless_proto::link::MAX_LISTED as u32;
    let mut done = None;
    for p in 0.. {
        let sets = (p * per..(p + 1) * per).map(listed).collect();
        done = fwd.receive(
            2,
            LinkMessage::PeerListed {
                request: r,
                sets,
                next: Some((p + 1) * per),
            },
        );
        let _ = fwd.poll_transmit();
        if done.is_some() || p as usize * per as usize > MAX_PEER_LIST {
            break;
        }
    }
    let f = done.expect("refused past the bound").answer.unwrap_err();
    assert_eq!(f.code, Code::Device);
}
