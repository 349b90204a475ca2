//! One behaviour per test, on the simulated network.

use super::net::*;
use crate::replication::*;
use hitless_proto::link::{LinkMessage, RefuseCode, Role};
use proptest::prelude::*;
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_bracket_is_applied_at_its_close_and_not_before() {
    let mut net = cluster(2, Mode::Sync);
    net.events(2);
    // OPEN and a change go out as they happen (claim 13)...
    net.with(1, |n, now, _| {
        n.begin(now).unwrap();
        n.change(now, put(5, 1, 0, b"first half")).unwrap();
    });
    net.run(ms(2));
    // ...but the slave applies nothing before the close.
    assert!(net.state(2).sets.is_empty(), "nothing before the close");
    net.with(1, |n, now, _| {
        n.change(now, put(5, 2, 1, b"second half")).unwrap();
        n.close(now).unwrap()
    });
    net.run(ms(2));
    let s = net.state(2);
    assert_eq!(s.sets.len(), 2);
    assert_eq!(s.sets[&(5, 2)].1, b"second half");
    assert_eq!(s.sets[&(5, 2)].0.tier, 1);
    assert!(net
        .events(2)
        .iter()
        .any(|e| matches!(e, Event::Applied { full: false, .. })));
}

#[test]
fn sync_writes_are_durable_only_after_the_slaves_ack() {
    let mut net = cluster(2, Mode::Sync);
    net.events(1);
    let c = net
        .with(1, |n, now, _| {
            n.write(now, vec![put(1, 1, 0, b"x")]).unwrap()
        })
        .unwrap();
    assert!(!c.durable, "no ack yet");
    assert!(!net.get(1).unwrap().is_durable(c.bracket));
    net.run(ms(2));
    assert!(net.get(1).unwrap().is_durable(c.bracket));
    assert!(net.events(1).contains(&Event::Durable {
        epoch: c.epoch,
        bracket: c.bracket
    }));
}

#[test]
fn a_sync_write_the_slave_never_acks_times_out() {
    // Without an arbiter the master never drops its slave: the write
    // fails at its deadline.
    let cfgs = vec![
        config(1, &[1, 2], Mode::Sync),
        config(2, &[1, 2], Mode::Sync),
    ];
    let mut net = Net::new(cfgs, Box::new(NoArbiter));
    net.with(1, |n, now, a| n.bootstrap(now, a).unwrap());
    net.run(ms(5));
    net.cut(1, 2);
    let c = net
        .with(1, |n, now, _| {
            n.write(now, vec![put(1, 1, 0, b"x")]).unwrap()
        })
        .unwrap();
    net.run(ms(40));
    let ev = net.events(1);
    assert!(
        ev.contains(&Event::SyncTimeout {
            epoch: c.epoch,
            bracket: c.bracket
        }),
        "{ev:?}"
    );
    assert!(!ev.contains(&Event::Durable {
        epoch: c.epoch,
        bracket: c.bracket
    }));
}

#[test]
fn async_lag_is_counted_until_acked() {
    let mut net = cluster(2, Mode::Async);
    net.delay.insert((1, 2), ms(3));
    for i in 0..4u32 {
        let c = net
            .with(1, |n, now, _| {
                n.write(now, vec![put(1, i, 0, &[i as u8; 100])]).unwrap()
            })
            .unwrap();
        assert!(c.durable, "async: acknowledged at once");
    }
    net.run(ms(1));
    let lag = net.get(1).unwrap().lag(net.now);
    assert_eq!(lag.brackets, 4);
    assert!(lag.bytes >= 400, "{lag:?}");
    assert!(lag.oldest >= ms(1), "{lag:?}");
    net.run(ms(5));
    assert_eq!(net.get(1).unwrap().lag(net.now), Lag::default());
}

#[test]
fn an_unclosed_bracket_is_discarded_at_the_close_deadline() {
    let mut net = cluster(2, Mode::Sync);
    net.events(2);
    net.with(1, |n, now, _| {
        n.begin(now).unwrap();
        n.change(now, put(1, 1, 0, b"never closed")).unwrap();
    });
    net.run(ms(25));
    assert!(net.state(2).sets.is_empty());
    let ev = net.events(2);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Discarded { why, .. } if why.contains("deadline"))),
        "{ev:?}"
    );
}

#[test]
fn an_unclosed_bracket_is_discarded_when_the_master_dies() {
    let mut net = cluster(2, Mode::Sync);
    net.with(1, |n, now, _| {
        n.write(now, vec![put(1, 1, 0, b"kept")]).unwrap()
    });
    net.run(ms(2));
    net.events(2);
    net.with(1, |n, now, _| {
        n.begin(now).unwrap();
        n.change(now, put(1, 2, 0, b"lost")).unwrap();
    });
    net.run(ms(1));
    net.crash(1);
    net.run(ms(15));
    let s = net.state(2);
    assert!(s.sets.contains_key(&(1, 1)));
    assert!(
        !s.sets.contains_key(&(1, 2)),
        "the unclosed bracket was applied"
    );
    assert_eq!(net.get(2).unwrap().role(), Role::Master, "took over");
    let ev = net.events(2);
    assert!(
        ev.iter().any(|e| matches!(e, Event::Discarded { .. })),
        "{ev:?}"
    );
}

#[test]
fn a_resent_bracket_is_acked_but_not_applied_twice() {
    let mut net = cluster(2, Mode::Sync);
    let c = net
        .with(1, |n, now, _| {
            n.write(now, vec![put(1, 1, 0, b"once")]).unwrap()
        })
        .unwrap();
    net.run(ms(2));
    let applied = net.get(2).unwrap().replica().applied.len();
    // The master resends the same bracket (as after a reconnection).
    let b = Bracket {
        epoch: c.epoch,
        id: c.bracket,
        full: false,
        changes: vec![put(1, 1, 0, b"once")],
    };
    let now = net.now;
    for m in b.messages() {
        net.node(2).unwrap().receive(now, 1, &m.encode());
    }
    let n2 = net.node(2).unwrap();
    assert_eq!(n2.replica().applied.len(), applied, "applied twice");
    let mut acks = 0;
    while let Some((to, bytes)) = n2.poll_transmit() {
        if to == 1 && matches!(LinkMessage::decode(&bytes), Ok(LinkMessage::Ack { .. })) {
            acks += 1;
        }
    }
    assert_eq!(acks, 1, "the duplicate is acknowledged again");
}

#[test]
fn an_oversized_bracket_is_refused_on_both_sides() {
    let mut net = cluster(2, Mode::Sync);
    let big = vec![7u8; 70 << 10];
    let e = net
        .with(1, |n, now, _| {
            n.write(now, vec![put(1, 1, 0, &big)]).unwrap_err()
        })
        .unwrap();
    assert!(matches!(e, WriteError::TooLarge { .. }), "{e:?}");
    // A master with a larger limit than the slave's: the slave refuses.
    let now = net.now;
    let epoch = net.get(1).unwrap().epoch();
    let mark = net.get(2).unwrap().mark();
    let b = Bracket {
        epoch,
        id: mark.bracket + 1,
        full: false,
        changes: vec![put(1, 1, 0, &big)],
    };
    net.events(2);
    let n2 = net.node(2).unwrap();
    for m in b.messages() {
        n2.receive(now, 1, &m.encode());
    }
    let mut refused = false;
    while let Some((_, bytes)) = n2.poll_transmit() {
        refused |= matches!(
            LinkMessage::decode(&bytes),
            Ok(LinkMessage::Refuse {
                code: RefuseCode::Protocol,
                ..
            })
        );
    }
    assert!(refused);
    assert!(n2.replica().state.sets.is_empty());
}

#[test]
fn a_changes_count_mismatch_discards_and_the_master_resends() {
    let mut net = cluster(2, Mode::Sync);
    // Lose every message for a moment: the bracket arrives incomplete or
    // not at all; the slave asks again and the master resends.
    net.loss = 0.5;
    let mut ids = Vec::new();
    for i in 0..10u32 {
        let c = net
            .with(1, |n, now, _| {
                n.write(now, vec![put(1, i, 0, &[i as u8; 10]), put(2, i, 1, b"y")])
            })
            .unwrap();
        if let Ok(c) = c {
            ids.push(c.bracket);
        }
        net.run(ms(1));
    }
    net.loss = 0.0;
    net.run(ms(20));
    let s = net.state(2).clone();
    assert_eq!(s, net.state(1).clone(), "the slave caught up");
    assert_eq!(s.sets.len(), 20);
}

#[test]
fn a_stale_master_is_fenced_and_becomes_slave() {
    let mut net = cluster(2, Mode::Sync);
    net.with(1, |n, now, _| {
        n.write(now, vec![put(1, 1, 0, b"a")]).unwrap()
    });
    net.run(ms(2));
    // The master hangs long enough for a takeover.
    net.hang(1, true);
    net.run(ms(15));
    assert_eq!(net.get(2).unwrap().role(), Role::Master);
    let e2 = net.get(2).unwrap().epoch();
    net.with(2, |n, now, _| {
        n.write(now, vec![put(1, 2, 0, b"b")]).unwrap()
    });
    net.hang(1, false);
    // It wakes with its lease run out: it refuses a store at once.
    let e = net
        .with(1, |n, now, _| {
            n.write(now, vec![put(1, 3, 0, b"stale")]).unwrap_err()
        })
        .unwrap();
    assert!(
        matches!(e, WriteError::LeaseExpired | WriteError::NotMaster { .. }),
        "{e:?}"
    );
    net.run(ms(10));
    let n1 = net.get(1).unwrap();
    assert_eq!(n1.role(), Role::Slave);
    assert_eq!(n1.epoch(), e2);
    assert_eq!(net.state(1), net.state(2));
    assert!(!net.state(1).sets.contains_key(&(1, 3)));
}

#[test]
fn a_slave_refuses_a_stream_from_a_stale_epoch() {
    let mut net = cluster(2, Mode::Sync);
    let epoch = net.get(2).unwrap().epoch();
    let now = net.now;
    let n2 = net.node(2).unwrap();
    n2.receive(
        now,
        1,
        &LinkMessage::Open {
            epoch: epoch - 1,
            bracket: 99,
            full: true,
        }
        .encode(),
    );
    let mut stale = false;
    while let Some((_, bytes)) = n2.poll_transmit() {
        stale |= matches!(
            LinkMessage::decode(&bytes),
            Ok(LinkMessage::Refuse { code: RefuseCode::StaleEpoch, epoch: e, .. }) if e == epoch
        );
    }
    assert!(stale);
}

#[test]
fn a_client_with_an_old_epoch_is_refused() {
    let net = cluster(2, Mode::Sync);
    let n1 = net.get(1).unwrap();
    let e = n1.epoch();
    assert_eq!(n1.check_epoch(net.now, e), Ok(()));
    assert_eq!(
        n1.check_epoch(net.now, e - 1),
        Err(WriteError::StaleEpoch {
            got: e - 1,
            epoch: e
        })
    );
    assert!(matches!(
        net.get(2).unwrap().check_write(net.now),
        Err(WriteError::NotMaster {
            master: Some(1),
            ..
        })
    ));
}

#[test]
fn takeover_keeps_every_acked_write_and_tells_the_old_master_why() {
    let mut net = cluster(2, Mode::Sync);
    let mut acked = Vec::new();
    for i in 0..5u32 {
        let c = net
            .with(1, |n, now, _| {
                n.write(now, vec![put(1, i, 0, &[i as u8; 33])]).unwrap()
            })
            .unwrap();
        net.run(ms(1));
        assert!(net.get(1).unwrap().is_durable(c.bracket));
        acked.push(i);
    }
    net.crash(1);
    net.events(2);
    net.run(ms(15));
    let ev = net.events(2);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::MasterSilent {
                master: Some(1),
                ..
            }
        )),
        "{ev:?}"
    );
    let cause = ev.iter().find_map(|e| match e {
        Event::BecameMaster { cause: Some(c), .. } => Some(c.clone()),
        _ => None,
    });
    let cause = cause.expect("a non-hitless takeover records its cause");
    assert!(cause.contains("without a heartbeat"), "{cause}");
    for i in acked {
        assert_eq!(net.state(2).sets[&(1, i)].1, vec![i as u8; 33]);
    }
    // The old master returns, learns the cause and becomes slave.
    net.restart(1);
    net.run(ms(10));
    let ev1 = net.events(1);
    assert!(
        ev1.iter()
            .any(|e| matches!(e, Event::Cause { from: 2, reason } if *reason == cause)),
        "{ev1:?}"
    );
    assert_eq!(net.get(1).unwrap().role(), Role::Slave);
    assert_eq!(net.state(1), net.state(2));
}

#[test]
fn without_an_arbiter_a_slave_never_promotes_itself() {
    let cfgs = vec![
        config(1, &[1, 2], Mode::Sync),
        config(2, &[1, 2], Mode::Sync),
    ];
    let mut net = Net::new(cfgs, Box::new(NoArbiter));
    net.with(1, |n, now, a| n.bootstrap(now, a).unwrap());
    net.run(ms(5));
    net.cut(1, 2);
    net.run(ms(50));
    assert_eq!(net.masters(), vec![1], "a cut link made no second master");
    let ev = net.events(2);
    assert!(ev.iter().any(|e| matches!(e, Event::MasterSilent { .. })));
    // The operator promotes node 2 (node 1 is really gone).
    net.crash(1);
    let e = net
        .with(2, |n, now, a| n.promote(now, a, false).unwrap().epoch)
        .unwrap();
    assert_eq!(net.masters(), vec![2]);
    net.heal(1, 2);
    net.restart(1);
    net.run(ms(10));
    assert_eq!(net.masters(), vec![2]);
    assert_eq!(net.get(1).unwrap().epoch(), e);
}

#[test]
fn a_cut_link_with_an_arbiter_yields_one_master_and_writes_go_on() {
    let mut net = cluster(2, Mode::Sync);
    net.cut(1, 2);
    net.run(ms(20));
    // Both reach the arbiter: the master keeps its lease, the slave is
    // refused, and leaves the in-sync set so writes are durable again.
    assert_eq!(net.masters(), vec![1]);
    let c = net
        .with(1, |n, now, _| {
            n.write(now, vec![put(1, 1, 0, b"alone")]).unwrap()
        })
        .unwrap();
    assert!(c.durable, "the silent slave left the in-sync set");
    // The slave cannot take over: it is not in sync any more.
    net.crash(1);
    net.run(ms(20));
    assert!(net.masters().is_empty(), "an out-of-sync slave took over");
    // The master comes back: it is the only one that can serve.
    net.restart(1);
    net.heal(1, 2);
    net.run(ms(30));
    assert_eq!(net.masters(), vec![1]);
    net.run(ms(10));
    assert_eq!(net.state(2), net.state(1));
}

#[test]
fn a_master_cut_off_the_arbiter_steps_down_before_another_is_granted() {
    let mut net = cluster(2, Mode::Sync);
    net.arbiter_cut.insert(1);
    let mut both = 0;
    for _ in 0..40 {
        net.run(ms(1));
        let writable: Vec<u32> = [1, 2]
            .into_iter()
            .filter(|i| net.get(*i).unwrap().check_write(net.now).is_ok())
            .collect();
        if writable.len() > 1 {
            both += 1;
        }
    }
    assert_eq!(both, 0, "two nodes accepted writes at once");
    assert_eq!(net.masters(), vec![2]);
    assert_eq!(net.get(1).unwrap().role(), Role::Slave);
}

#[test]
fn manual_switchover_is_hitless() {
    let mut net = cluster(2, Mode::Sync);
    for i in 0..3u32 {
        net.with(1, |n, now, _| {
            n.write(now, vec![put(1, i, 0, b"before")]).unwrap()
        });
    }
    net.with(1, |n, now, _| n.switchover(now, 2).unwrap());
    // Draining: the master takes no writes.
    let e = net
        .with(1, |n, now, _| {
            n.write(now, vec![put(1, 9, 0, b"x")]).unwrap_err()
        })
        .unwrap();
    assert_eq!(e, WriteError::Draining);
    net.run(ms(5));
    assert_eq!(net.masters(), vec![2]);
    let ev2 = net.events(2);
    assert!(
        ev2.iter()
            .any(|e| matches!(e, Event::BecameMaster { cause: None, .. })),
        "a switchover has no cause: {ev2:?}"
    );
    let ev1 = net.events(1);
    assert!(ev1
        .iter()
        .any(|e| matches!(e, Event::Switchover { done: true, .. })));
    assert!(
        !ev1.iter().any(|e| matches!(e, Event::Abandoned { .. })),
        "{ev1:?}"
    );
    net.with(2, |n, now, _| {
        n.write(now, vec![put(1, 5, 0, b"after")]).unwrap()
    });
    net.run(ms(5));
    assert_eq!(net.get(1).unwrap().role(), Role::Slave);
    assert_eq!(net.state(1), net.state(2));
    assert_eq!(net.state(1).sets.len(), 4);
    // The old master followed the new one without a full snapshot.
    assert!(!net
        .events(2)
        .iter()
        .any(|e| matches!(e, Event::FullSent { peer: 1, .. })));
}

#[test]
fn a_slave_that_joins_late_gets_a_full_snapshot() {
    let mut net = cluster(2, Mode::Async);
    net.crash(2);
    net.with(1, |n, now, _| {
        // More than the resend queue keeps (256 KiB): no incremental
        // catch-up is possible.
        for i in 0..10u32 {
            n.write(now, vec![put(1, 100 + i, 0, &vec![i as u8; 40 << 10])])
                .unwrap();
        }
        n.write(now, vec![put(1, 1, 0, b"a")]).unwrap();
        n.write(
            now,
            vec![Change::LogAppend {
                app: 1,
                object: 1,
                tier: 1,
                offset: 64,
                data: b"log".to_vec(),
            }],
        )
        .unwrap();
        n.write(
            now,
            vec![Change::Secret {
                app: 1,
                secret: [3; 32],
            }],
        )
        .unwrap();
    });
    net.events(1);
    net.restart(2);
    net.run(ms(5));
    assert_eq!(net.state(2), net.state(1));
    assert!(net
        .events(1)
        .iter()
        .any(|e| matches!(e, Event::FullSent { peer: 2, .. })));
    // A slave whose state is gone (a new card) catches up from a resend of
    // what the queue still holds when that is everything, or a snapshot.
    net.crash(2);
    net.slots.get_mut(&2).unwrap().nv = MemReplica::default();
    net.restart(2);
    net.run(ms(5));
    assert_eq!(net.state(2), net.state(1));
}

#[test]
fn a_failed_apply_is_refused_and_resent() {
    let mut net = cluster(2, Mode::Sync);
    net.node(2).unwrap().replica_mut().fail_next = true;
    net.with(1, |n, now, _| {
        n.write(now, vec![put(1, 1, 0, b"a")]).unwrap()
    });
    net.run(ms(5));
    assert!(net
        .events(2)
        .iter()
        .any(|e| matches!(e, Event::ApplyFailed { .. })));
    assert_eq!(net.state(2), net.state(1));
}

#[test]
fn three_nodes_one_takes_over_and_the_other_follows() {
    let mut net = cluster(3, Mode::Sync);
    for i in 0..5u32 {
        net.with(1, |n, now, _| {
            n.write(now, vec![put(1, i, 0, b"v")]).unwrap()
        });
        net.run(ms(1));
    }
    net.crash(1);
    net.run(ms(20));
    let m = net.masters();
    assert_eq!(m.len(), 1, "{m:?}");
    let other = if m[0] == 2 { 3 } else { 2 };
    net.with(m[0], |n, now, _| {
        n.write(now, vec![put(1, 9, 0, b"new")]).unwrap()
    });
    net.run(ms(5));
    assert_eq!(net.state(other), net.state(m[0]));
    assert_eq!(net.state(other).sets.len(), 6);
}

#[test]
fn log_trims_follow_the_masters_offsets() {
    let mut s = MemState::default();
    for (off, d) in [(0u32, b"a"), (24, b"b"), (48, b"c")] {
        s.change(&Change::LogAppend {
            app: 1,
            object: 0,
            tier: 0,
            offset: off,
            data: d.to_vec(),
        })
        .unwrap();
    }
    s.change(&Change::LogTrim { tier: 0, to: 48 }).unwrap();
    assert_eq!(s.logs[0].len(), 1);
    assert_eq!(s.logs[0][0].data, b"c");
    // A set whose bytes do not match its CRC is refused.
    let mut bad = put(1, 1, 0, b"abc");
    if let Change::Put { data, .. } = &mut bad {
        data[0] ^= 1;
    }
    assert!(matches!(s.change(&bad), Err(ApplyError::Crc { .. })));
}

proptest! {
    /// Any bytes from a peer: an event, never a panic.
    #[test]
    fn garbage_from_a_peer_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut net = cluster(2, Mode::Sync);
        let now = net.now;
        net.node(2).unwrap().receive(now, 1, &bytes);
        net.node(1).unwrap().receive(now, 2, &bytes);
        net.node(1).unwrap().receive(now, 77, &bytes);
        net.run(ms(1));
    }
}

#[test]
fn a_torn_slave_never_takes_over_until_a_snapshot_makes_it_whole() {
    let mut net = cluster(2, Mode::Sync);
    net.with(1, |n, now, _| {
        n.write(now, vec![put(1, 1, 0, b"a")]).unwrap()
    });
    net.run(ms(2));
    net.node(2).unwrap().replica_mut().torn = true;
    net.crash(1);
    net.run(ms(30));
    assert!(net.masters().is_empty(), "a torn slave took over");
    assert!(net
        .events(2)
        .iter()
        .any(|e| matches!(e, Event::TakeoverRefused { .. })));
    let e = net.with(2, |n, now, a| n.promote(now, a, true)).unwrap();
    assert!(
        matches!(e, Err(PromoteError::MixedBrackets(_))),
        "not even by the operator, accepting a loss: {e:?}"
    );
    // The master returns; the torn slave gets a snapshot and is whole.
    net.restart(1);
    net.run(ms(30));
    assert_eq!(net.masters(), vec![1]);
    assert!(!net.get(2).unwrap().replica().torn);
    assert_eq!(net.state(2), net.state(1));
}

#[test]
fn a_slave_left_out_rejoins_under_a_steady_load() {
    let mut net = cluster(2, Mode::Sync);
    net.cut(1, 2);
    net.run(ms(20));
    assert!(
        !net.get(1).unwrap().status(net.now).in_sync.contains(&2),
        "the cut slave left the in-sync set"
    );
    net.heal(1, 2);
    // A write every 300 µs, none waiting for its ack: whenever the master
    // ticks, its last closed bracket is still on its way to the slave.
    let mut rejoined = None;
    for i in 0..400u32 {
        net.with(1, |n, now, _| {
            let _ = n.write(now, vec![put(1, i % 8, 0, &[i as u8; 64])]);
        });
        net.run(Duration::from_micros(300));
        if net.get(1).unwrap().status(net.now).in_sync.contains(&2) {
            rejoined = Some(i);
            break;
        }
    }
    assert!(
        rejoined.is_some(),
        "the slave never rejoined the in-sync set under a steady load"
    );
    // In sync again: a write is durable only with the slave's ack.
    let c = net
        .with(1, |n, now, _| {
            n.write(now, vec![put(1, 99, 0, b"in sync")]).unwrap()
        })
        .unwrap();
    assert!(!c.durable, "durable before the slave's ack");
    net.run(ms(2));
    assert!(net.get(1).unwrap().is_durable(c.bracket));
    assert_eq!(net.state(2), net.state(1));
}

#[test]
fn a_card_lost_its_warm_tier_is_promoted_only_accepting_the_loss() {
    let cfgs = vec![
        config(1, &[1, 2], Mode::Sync),
        config(2, &[1, 2], Mode::Sync),
    ];
    let mut net = Net::new(cfgs, Box::new(NoArbiter));
    // No arbiter: no master until the operator promotes one.
    net.run(ms(30));
    assert!(net.masters().is_empty());
    let p = net
        .with(1, |n, now, a| n.promote(now, a, false))
        .unwrap()
        .unwrap();
    assert!(!p.already && p.epoch > p.from_epoch && p.lost_warm.is_none());
    net.run(ms(5));
    net.with(1, |n, now, _| {
        n.write(now, vec![put(1, 1, 1, b"cold")]).unwrap()
    });
    net.run(ms(5));
    // Both cards power-cycled with warm sets: neither is whole.
    for id in [1, 2] {
        net.crash(id);
    }
    for id in [1, 2] {
        if let Some(s) = net.slots.get_mut(&id) {
            s.nv.lost_warm = Some(3);
        }
        net.restart(id);
    }
    net.run(ms(30));
    assert!(
        net.masters().is_empty(),
        "a card without its warm sets took over"
    );
    let e = net.with(2, |n, now, a| n.promote(now, a, false)).unwrap();
    assert!(
        matches!(
            e,
            Err(PromoteError::LostWarm(Inconsistency::LostWarm {
                sets: Some(3),
                ..
            }))
        ),
        "{e:?}"
    );
    assert!(net.masters().is_empty());
    let p = net
        .with(2, |n, now, a| n.promote(now, a, true))
        .unwrap()
        .unwrap();
    assert_eq!(
        p.lost_warm,
        Some(Inconsistency::LostWarm {
            sets: Some(3),
            log: false
        })
    );
    assert!(p.epoch > p.from_epoch);
    net.run(ms(30));
    assert_eq!(net.masters(), vec![2]);
    // The other gets a snapshot (whole again) and follows, in sync.
    assert!(net.get(1).unwrap().replica().lost_warm.is_none());
    assert_eq!(net.state(1), net.state(2));
    assert!(net.state(2).sets.contains_key(&(1, 1)));
}

#[test]
fn a_reset_master_steps_down_its_write_in_flight_fails_and_the_pair_goes_on() {
    let mut net = cluster(2, Mode::Sync);
    net.with(1, |n, now, _| {
        n.write(now, vec![put(1, 1, 0, b"acked")]).unwrap()
    });
    net.run(ms(2));
    assert!(net.get(1).unwrap().is_durable(1));
    net.cut(1, 2);
    let c = net
        .with(1, |n, now, _| {
            n.write(now, vec![put(1, 2, 0, b"in flight")]).unwrap()
        })
        .unwrap();
    assert!(!c.durable);
    net.events(1);
    // The card is reset under it: the firmware restarts on its NV state.
    let up: Vec<u32> = vec![];
    net.with(1, |n, now, _| {
        let nv = n.replica().clone();
        n.restart(now, nv, &up);
    });
    let ev = net.events(1);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Abandoned { bracket, .. } if *bracket == c.bracket)),
        "{ev:?}"
    );
    assert!(ev.iter().any(|e| matches!(e, Event::SteppedDown { .. })));
    assert_ne!(net.get(1).unwrap().role(), Role::Master);
    let before = net.get(1).unwrap().epoch();
    net.heal(1, 2);
    net.run(ms(40));
    // One master again, in a newer epoch, holding the acknowledged write.
    let m = net.masters();
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(net.get(m[0]).unwrap().epoch() > before);
    assert!(net.state(m[0]).sets.contains_key(&(1, 1)));
    net.run(ms(20));
    assert_eq!(net.state(1), net.state(2));
}
