//! Card resets on a replicated pair (a witness and two card processes,
//! sync mode): a warm reset of the slave, of the master, a power cycle of
//! the slave, of the master (the simulator's control socket). After each
//! the firmware restarts on the card's NV state inside its replication
//! node; every acknowledged set restores byte for byte from the master
//! (a new one where the old could not keep the role) and the pair is
//! whole again (the slave in the master's epoch, in its in-sync set). A
//! request on a card being reset gets an answer, never a hang; the
//! operator's promotion of the slave while the master holds the lease is
//! refused naming it.

mod common;

use common::*;
use hitless_driver::firmware::{Client, Session};
use hitless_driver::Error;
use hitless_sim::serve::control_request;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Acknowledged sets: object → (cold, bytes).
type Acked = BTreeMap<u32, (bool, Vec<u8>)>;

/// Wait until the pair is whole: one master whose slave follows it in its
/// epoch and is in its in-sync set. Returns the master's index.
fn whole(cards: &[Card; 2], limit: Duration) -> usize {
    wait_for(limit, "the pair to be whole again", || {
        let p: Vec<_> = cards.iter().map(|c| c.peer_now().ok()).collect();
        let m = p
            .iter()
            .position(|r| r.as_ref().is_some_and(|r| r.role == 0))?;
        let (master, slave) = (p[m].as_ref()?, p[1 - m].as_ref()?);
        (master.in_sync == 1
            && slave.role == 1
            && slave.master == Some(master.node)
            && slave.epoch == master.epoch)
            .then_some(m)
    })
}

/// Open the application on whichever card serves it (the master).
fn open_master(
    cards: &[Card; 2],
    secret: &hitless_driver::firmware::Secret,
) -> (
    usize,
    Client<hitless_driver::backend::vfio_user::VfioUserIo>,
    Session,
) {
    wait_for(
        Duration::from_secs(20),
        "a master serving the application",
        || {
            cards
                .iter()
                .enumerate()
                .find_map(|(i, c)| c.open(Some(secret)).ok().map(|(cl, s, _)| (i, cl, s)))
        },
    )
}

fn store_some(
    c: &mut Client<hitless_driver::backend::vfio_user::VfioUserIo>,
    s: &Session,
    acked: &mut Acked,
    round: u32,
) {
    for i in 0..4u32 {
        // New objects each round, and object 1 stored again (a version).
        let object = if i == 0 { 1 } else { round * 10 + i };
        let cold = i % 2 == 1;
        let data = pattern(round * 100 + i, [1usize, 777, 4096, 40_000][i as usize]);
        match c.store(s, object, 0, 0, cold, &data) {
            Ok(()) => {
                acked.insert(object, (cold, data));
            }
            Err(e) => panic!("store {object} in round {round} not acknowledged: {e}"),
        }
    }
}

fn verify(cards: &[Card; 2], secret: &hitless_driver::firmware::Secret, acked: &Acked, what: &str) {
    let (m, mut c, s) = open_master(cards, secret);
    for (object, (_, data)) in acked {
        let (_, got) = c
            .restore(&s, *object)
            .unwrap_or_else(|e| panic!("{what}: set {object} on node {}: {e}", cards[m].node));
        assert!(
            got == *data,
            "{what}: set {object} differs on node {}",
            cards[m].node
        );
    }
    eprintln!(
        "{what}: {} sets restore from node {}",
        acked.len(),
        cards[m].node
    );
}

#[test]
fn resets_and_power_cycles_of_either_card_lose_no_acknowledged_set() {
    let (dir, _witness, cards) = witness_and_pair("reset");
    let _procs = [cards[0].start(), cards[1].start()];
    let (_, secret) = first_master(&cards, Duration::from_secs(30));
    let mut acked = Acked::new();
    let t0 = Instant::now();

    // The operator's promotion of the slave while the master holds the
    // lease goes through the witness, which refuses it naming the master.
    let m = whole(&cards, Duration::from_secs(20));
    let mut slave = cards[1 - m].client(CALL).unwrap();
    match slave.promote(false) {
        Err(Error::NotMaster { master, .. }) => assert_eq!(master, Some(cards[m].node)),
        other => panic!("a promotion past the lease holder: {other:?}"),
    }
    drop(slave);

    let steps = [
        ("warm reset of the slave", false, "warm-reset"),
        ("warm reset of the master", true, "warm-reset"),
        ("power cycle of the slave", false, "power-cycle"),
        ("power cycle of the master", true, "power-cycle"),
    ];
    for (round, (what, master, command)) in steps.into_iter().enumerate() {
        let m = whole(&cards, Duration::from_secs(30));
        let (_, mut c, s) = open_master(&cards, &secret);
        store_some(&mut c, &s, &mut acked, round as u32 + 1);
        drop(c);
        let target = if master { m } else { 1 - m };
        let t = Instant::now();
        let ctl = cards[target].dir.join("card.ctl");
        let r = control_request(&ctl, command, Duration::from_secs(20));
        assert!(r.is_ok(), "{what}: {r:?}");
        // A request right after the reset is answered (served or refused
        // with a reason), never left hanging.
        let asked = Instant::now();
        let answer = cards[target]
            .client(CALL)
            .and_then(|mut c| c.status().map(|_| ()).map_err(|e| e.to_string()));
        assert!(
            asked.elapsed() < CALL + Duration::from_secs(1),
            "{what}: {answer:?}"
        );
        verify(&cards, &secret, &acked, what);
        let m2 = whole(&cards, Duration::from_secs(30));
        eprintln!(
            "{what}: whole again after {:?} (master node {}, was {})",
            t.elapsed(),
            cards[m2].node,
            cards[m].node
        );
        if master && command == "power-cycle" {
            // It lost its warm sets: it must not have kept the role.
            assert_ne!(
                m2, m,
                "{what}: a master without its warm sets kept the role"
            );
        }
    }
    // And the pair goes on storing.
    let (_, mut c, s) = open_master(&cards, &secret);
    store_some(&mut c, &s, &mut acked, 9);
    drop(c);
    verify(&cards, &secret, &acked, "at the end");
    eprintln!("{} sets, {:?} in all", acked.len(), t0.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}
