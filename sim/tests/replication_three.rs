//! Three replicated cards as processes (nodes 1, 2, 3) and a witness on
//! loopback, sync mode, a client per card storing sets whenever its card
//! is master: the master is killed (SIGKILL); one slave takes over, the
//! third follows the new master in its epoch (and is in its in-sync set),
//! every acknowledged set restores from the new master byte for byte; the
//! old master restarted follows too, and no two nodes acknowledged stores
//! in one epoch.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn three_cards_master_killed_one_slave_takes_over_the_other_follows() {
    let started = Instant::now();
    let (dir, key) = test_dir("three");
    let pw = free_port();
    let ports = [free_port(), free_port(), free_port()];
    let witness = format!("127.0.0.1:{pw}");
    let _witness = start_witness(&dir, &key, &witness, "1,2,3", &[]);
    let cards: Vec<Card> = (0..3)
        .map(|i| {
            let peers: Vec<(u32, String)> = (0..3)
                .filter(|&j| j != i)
                .map(|j| (j as u32 + 1, format!("127.0.0.1:{}", ports[j])))
                .collect();
            Card::new(
                &dir,
                &key,
                i as u32 + 1,
                &format!("127.0.0.1:{}", ports[i]),
                &peers,
                &witness,
            )
        })
        .collect();
    let mut procs: Vec<Option<Proc>> = cards.iter().map(|c| Some(c.start())).collect();
    let (_, secret) = first_master(&cards, Duration::from_secs(30));
    let (m, first) = wait_for(Duration::from_secs(30), "three cards to settle", || {
        settled(&cards)
    });
    assert_eq!(first.in_sync, 2, "{first:?}");
    println!(
        "node {} master in epoch {}, two slaves in sync, after {:?}",
        cards[m].node,
        first.epoch,
        started.elapsed()
    );

    let load = Load::start(&cards, secret, 3);
    wait_for(Duration::from_secs(30), "ten acknowledged stores", || {
        (load.acks() >= 10).then_some(())
    });
    let killed = Instant::now();
    procs[m] = None; // SIGKILL
    let (n, e) = wait_for(Duration::from_secs(20), "a takeover", || {
        load.seen(Duration::from_millis(600))
            .iter()
            .enumerate()
            .find_map(|(i, s)| {
                s.as_ref()
                    .filter(|p| i != m && p.role == 0 && p.epoch > first.epoch)
                    .map(|p| (i, p.epoch))
            })
    });
    let ack = load.wait_ack(cards[n].node, e, killed, Duration::from_secs(20));
    let third = (0..3).find(|&i| i != m && i != n).expect("a third card");
    let follows = wait_for(Duration::from_secs(20), "the third card to follow", || {
        load.seen(Duration::from_millis(600))[third]
            .filter(|p| p.role == 1 && p.master == Some(cards[n].node) && p.epoch == e)
    });
    let new_master = wait_for(Duration::from_secs(20), "the third card in sync", || {
        load.seen(Duration::from_millis(600))[n].filter(|p| p.role == 0 && p.in_sync == 1)
    });
    println!(
        "node {} killed: node {} master in epoch {e} serving {:?} later, node {} follows it \
         (mark {}@{}), in sync: {}",
        cards[m].node,
        cards[n].node,
        ack.at - killed,
        cards[third].node,
        follows.mark_bracket,
        follows.mark_epoch,
        new_master.in_sync
    );
    load.pause();
    let checked = load.verify(n);
    load.resume();

    // The old master returns: it follows the new one, all three in sync.
    procs[m] = Some(cards[m].start());
    let back = Instant::now();
    let (m2, last) = wait_for(
        Duration::from_secs(30),
        "three cards to settle again",
        || load.settled(Duration::from_millis(600)),
    );
    assert_eq!(m2, n, "the new master stays master");
    assert_eq!(last.in_sync, 2, "{last:?}");
    load.wait_ack(cards[n].node, e, back, Duration::from_secs(20));
    load.pause();
    let checked2 = load.verify(n);
    let epochs = load.check_epochs();
    let (acks, failed) = (load.acks(), load.failed());
    load.stop();
    println!(
        "three cards: {acks} stores acknowledged ({failed} not), {checked} + {checked2} sets \
         checked, epochs {epochs:?} (epoch: node), {:?}",
        started.elapsed()
    );
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}
