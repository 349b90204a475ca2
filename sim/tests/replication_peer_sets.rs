//! Sets a host stores with its peer card's endpoint (seed 000, claims
//! 13-15), as real processes on loopback: a witness and two replicated
//! cards. The application, talking to the master, stores a set with the
//! slave's node id as its endpoint: acknowledged when the slave holds it,
//! read back through the master, not in the master's own memory; an
//! endpoint of no card is refused; with the slave hung (SIGSTOP) the store
//! fails within a bounded time; after the master is killed the slave
//! takes over and serves the set from its own memory. Every wait has a
//! timeout.

mod common;

use common::*;
use hitless_proto::Code;
use std::time::{Duration, Instant};

/// Longest a peer-set request may take before the host hears (the card's
/// deadline at 200 ms heartbeats is 3 s; the client's own is `CALL`).
const BOUND: Duration = Duration::from_millis(3800);

#[test]
fn a_set_stored_with_the_peers_endpoint_lives_in_the_peer_cards_memory() {
    let (dir, _witness, cards) = witness_and_pair("peerset");
    let mut procs = vec![Some(cards[0].start()), Some(cards[1].start())];
    let (m, secret) = first_master(&cards, Duration::from_secs(30));
    let s = 1 - m;
    let (mn, sn) = (cards[m].node, cards[s].node);
    let first = cards[m].peer(TIMEOUT, |p| p.role == 0 && p.in_sync == 1);
    cards[s].peer(TIMEOUT, |p| {
        p.role == 1 && p.master == Some(mn) && p.epoch == first.epoch
    });
    let (mut client, session, _) = cards[m].open(Some(&secret)).unwrap();

    // Stored in the slave's memory, acknowledged when it has it.
    let data = pattern(1, 40_000);
    client.store(&session, 20, sn, 0, true, &data).unwrap();
    let warm = pattern(2, 777);
    client.store(&session, 21, sn, 5, false, &warm).unwrap();
    // The master's own node id is the master itself, as is 0.
    client.store(&session, 22, mn, 0, false, b"here").unwrap();
    let (info, got) = client.restore_from(&session, 20, sn).unwrap();
    assert!(got == data, "set 20 read back through the link differs");
    assert_eq!((info.endpoint, info.len), (sn, 40_000));
    assert_eq!(client.restore_from(&session, 21, sn).unwrap().1, warm);
    assert_eq!(client.restore(&session, 22).unwrap().1, b"here");
    assert_eq!(client.restore_from(&session, 22, mn).unwrap().1, b"here");
    // Not in the master's memory, nor listed there.
    assert_eq!(
        code(client.restore(&session, 20).unwrap_err()),
        Code::NotFound
    );
    let listed: Vec<u32> = client
        .list(&session)
        .unwrap()
        .iter()
        .map(|i| i.object)
        .collect();
    assert!(!listed.contains(&20), "{listed:?}");

    // An endpoint that names no card of the pair: refused, nothing stored.
    let e = client
        .store(&session, 23, 9, 0, true, b"nowhere")
        .unwrap_err();
    assert_eq!(code(e), Code::Invalid);
    let e = client.restore_from(&session, 20, 9).unwrap_err();
    assert_eq!(code(e), Code::Invalid);
    assert_eq!(
        code(client.restore(&session, 23).unwrap_err()),
        Code::NotFound
    );
    assert_eq!(
        code(client.restore_from(&session, 23, sn).unwrap_err()),
        Code::NotFound
    );

    // The slave hung: a store for its memory fails, within the bound.
    procs[s].as_ref().unwrap().signal("STOP");
    let t = Instant::now();
    let e = client
        .store(&session, 24, sn, 0, true, b"to a hung card")
        .unwrap_err();
    let took = t.elapsed();
    eprintln!("store with the peer hung: {e} after {took:?}");
    assert_eq!(code(e), Code::Device);
    assert!(took < BOUND, "{took:?}");
    let t = Instant::now();
    let e = client.restore_from(&session, 20, sn).unwrap_err();
    assert_eq!(code(e), Code::Device);
    assert!(t.elapsed() < BOUND, "{:?}", t.elapsed());
    // The master's own sets go on meanwhile.
    client.store(&session, 25, 0, 0, false, b"local").unwrap();
    procs[s].as_ref().unwrap().signal("CONT");
    // (A vfio-user card serves one client at a time.)
    drop(client);
    cards[m].peer(TIMEOUT, |p| p.role == 0 && p.in_sync == 1);
    let (mut client, session, _) = cards[m].open(Some(&secret)).unwrap();
    // The link back: stores for the slave work again.
    wait_for(TIMEOUT, "a store on the peer after it resumed", || {
        client.store(&session, 26, sn, 0, true, b"after").ok()
    });
    assert_eq!(client.restore_from(&session, 26, sn).unwrap().1, b"after");

    // The link down: the slave killed, a store for it refused at once.
    procs[s] = None;
    wait_for(TIMEOUT, "the master to see the link down", || {
        let t = Instant::now();
        match client.store(&session, 27, sn, 0, true, b"to a dead card") {
            Err(e) => {
                let took = t.elapsed();
                assert!(took < BOUND, "{took:?}");
                assert_eq!(code(e), Code::Device);
                (took < Duration::from_millis(500)).then_some(())
            }
            Ok(()) => panic!("a store for a killed card was acknowledged"),
        }
    });
    // It comes back (a power cycle: its warm tier is gone, so it gets a
    // full snapshot, which keeps the cold sets it holds for its peer) and
    // catches up as the slave.
    procs[s] = Some(cards[s].start());
    drop(client);
    // Caught up: its mark is the master's last bracket (a card whose
    // state is not whole brackets never takes over), and in sync.
    let at = cards[m].peer_now().unwrap();
    cards[s].peer(TIMEOUT, |p| {
        p.role == 1
            && p.master == Some(mn)
            && (p.mark_epoch, p.mark_bracket) >= (at.mark_epoch, at.mark_bracket)
    });
    cards[m].peer(TIMEOUT, |p| p.role == 0 && p.in_sync == 1);

    // The master killed: the slave takes over and holds the sets it held
    // for its peer as its own (its memory, read on it directly).
    procs[m] = None;
    let (mut client, session) = take_over(&cards[s], &secret, Duration::from_secs(20));
    let (info, got) = client.restore(&session, 20).unwrap();
    assert!(got == data, "set 20 on the new master differs");
    assert_eq!(info.endpoint, sn);
    assert_eq!(client.restore_from(&session, 26, sn).unwrap().1, b"after");
    // A warm set held for the peer went with the card's power cycle (it
    // has no other copy: it is not the replicated state).
    assert_eq!(
        code(client.restore(&session, 21).unwrap_err()),
        Code::NotFound
    );
    // The old master's replicated sets are there too.
    assert_eq!(client.restore(&session, 22).unwrap().1, b"here");
    assert_eq!(client.restore(&session, 25).unwrap().1, b"local");
    drop(client);
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}
