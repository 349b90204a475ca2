//! A replicated pair as real processes on loopback: a witness
//! (`hitless-sim witness`) and two cards (`hitless-sim serve --node …`),
//! an application storing sets on the master in sync mode through the
//! driver over vfio-user; the master killed with SIGKILL; the slave takes
//! over (granted by the witness) and every acknowledged set restores from
//! it byte for byte; the old master restarted comes back as slave (fenced
//! by the newer epoch). Every wait has a timeout.

mod common;

use common::*;
use hitless_driver::state;
use std::time::{Duration, Instant};

#[test]
fn master_killed_the_slave_takes_over_with_every_acknowledged_set() {
    let (dir, _witness, cards) = witness_and_pair("repl");
    let mut procs = vec![Some(cards[0].start()), Some(cards[1].start())];

    // One of them becomes master (the witness's first grant).
    let t = Instant::now();
    let (m, client, _, secret) = loop {
        let found = cards
            .iter()
            .enumerate()
            .find_map(|(i, c)| c.open(None).ok().map(|(cl, s, sec)| (i, cl, s, sec)));
        if let Some(f) = found {
            break f;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no master");
        std::thread::sleep(Duration::from_millis(50));
    };
    let secret = secret.expect("the first open hands out the secret");
    let s = 1 - m;
    eprintln!("master: node {} after {:?}", cards[m].node, t.elapsed());
    drop(client);
    // The slave follows the master and is in its in-sync set.
    let mn = cards[m].node;
    let first = cards[m].peer(TIMEOUT, |p| p.role == 0 && p.in_sync == 1);
    cards[s].peer(TIMEOUT, |p| {
        p.role == 1 && p.master == Some(mn) && p.epoch == first.epoch
    });
    let (mut client, session, _) = cards[m].open(Some(&secret)).unwrap();

    let mut acked = Vec::new();
    for i in 0..24u32 {
        let data = pattern(i, [1usize, 777, 4096, 40_000][i as usize % 4]);
        let t = Instant::now();
        let r = client.store(&session, 100 + i, 0, 0, i % 2 == 0, &data);
        match r {
            Ok(()) => acked.push((100 + i, data)),
            Err(e) => eprintln!("store {i} not acknowledged: {e}"),
        }
        assert!(t.elapsed() < TIMEOUT);
    }
    assert!(
        acked.len() >= 20,
        "only {} stores acknowledged",
        acked.len()
    );
    // The application's own state (seed 004 claim 1): two brackets ended,
    // a third begun and never ended when the master dies.
    let at = state::StateSet {
        object: 900,
        cold: true,
    };
    let mut b = state::begin(&mut client, &session, at).unwrap();
    b.put(1, b"routes: 10.0.0.0/8 via 2").unwrap();
    b.put(2, b"neighbours: 3").unwrap();
    b.end().unwrap();
    let mut b = state::begin(&mut client, &session, at).unwrap();
    b.put(2, b"neighbours: 4").unwrap();
    let ended = b.end().unwrap();
    let mut open = state::begin(&mut client, &session, at).unwrap();
    open.put(1, b"never ended").unwrap();
    // Nothing of it reaches the card before its end.
    drop(open);
    drop(client);

    // kill -9 the master.
    let killed = Instant::now();
    procs[m] = None;
    let (mut client, session) = take_over(&cards[s], &secret, Duration::from_secs(20));
    eprintln!(
        "takeover by node {}: serving {:?} after the kill",
        cards[s].node,
        killed.elapsed()
    );
    let second = client.status().unwrap().peer.unwrap();
    assert_eq!(second.role, 0, "{second:?}");
    assert!(second.epoch > first.epoch, "{second:?} after {first:?}");
    for (object, data) in &acked {
        let (_, got) = client.restore(&session, *object).unwrap();
        assert!(got == *data, "set {object} differs after the takeover");
    }
    // The standby application reads the state of the last ended bracket.
    assert_eq!(state::read(&mut client, &session, at).unwrap(), ended);
    client.store(&session, 500, 0, 0, true, b"after").unwrap();
    drop(client);

    // The old master returns: a slave (fenced), the new master goes on.
    procs[m] = Some(cards[m].start());
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        cards[m].open(Some(&secret)).is_err(),
        "the returning old master served a host"
    );
    let sn = cards[s].node;
    cards[m].peer(TIMEOUT, |p| {
        p.role == 1 && p.master == Some(sn) && p.epoch == second.epoch
    });
    let (mut client, session, _) = cards[s].open(Some(&secret)).unwrap();
    client
        .store(&session, 501, 0, 0, true, b"still master")
        .unwrap();
    assert_eq!(client.restore(&session, 500).unwrap().1, b"after");
    drop(client);
    assert!(t.elapsed() < Duration::from_secs(20));
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}
