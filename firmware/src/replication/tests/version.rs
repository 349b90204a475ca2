//! Version tolerance (claims 8-12): cards speaking link schemas 1, 2 and
//! 3 replicate to each other in both directions. Each side writes its own
//! schema and reads as its schema does (`decode_as`): the fields both know
//! are updated, the others take their defaults.

use super::net::*;
use crate::replication::*;
use hitless_proto::link::Role;
use std::time::Duration;

fn pair(master_schema: u32, slave_schema: u32) -> Net {
    let ids = [1, 2];
    let mut c1 = config(1, &ids, Mode::Sync);
    c1.schema = master_schema;
    let mut c2 = config(2, &ids, Mode::Sync);
    c2.schema = slave_schema;
    let arb = LocalArbiter::new(ids, Duration::from_millis(5), Duration::from_micros(500));
    let mut net = Net::new(vec![c1, c2], Box::new(arb));
    net.with(1, |n, now, a| n.bootstrap(now, a).unwrap());
    net.run(Duration::from_millis(5));
    net
}

fn log(offset: u32) -> Change {
    Change::LogAppend {
        app: 4,
        object: 2,
        tier: 1,
        offset,
        data: b"entry".to_vec(),
    }
}

/// What `to` holds of what `from` wrote, given the two schemas.
fn check(net: &Net, from: u32, to: u32, common: u32, object: u32) {
    let (src, dst) = (net.state(from), net.state(to));
    let (sr, sd) = &src.sets[&(4, object)];
    let (dr, dd) = &dst.sets[&(4, object)];
    // Known to both: updated.
    assert_eq!(dd, sd, "bytes");
    assert_eq!(
        (dr.app, dr.object, dr.endpoint, dr.stage, dr.tier, dr.crc),
        (sr.app, sr.object, sr.endpoint, sr.stage, sr.tier, sr.crc)
    );
    // Schema 2's stored_us, schema 3's log offset: defaulted when either
    // side lacks them.
    assert_eq!(
        dr.stored_us,
        if common >= 2 { sr.stored_us } else { 0 },
        "stored_us at common schema {common}"
    );
    let off = dst.logs[1].back().map(|r| r.offset);
    assert_eq!(
        off,
        Some(if common >= 3 { 64 + object } else { 0 }),
        "log offset at common schema {common}"
    );
}

#[test]
fn schemas_1_2_3_replicate_to_each_other_both_ways() {
    for (a, b) in [(1, 3), (3, 1), (2, 3), (3, 2), (1, 2), (2, 1), (3, 3)] {
        let common = a.min(b);
        let mut net = pair(a, b);
        // a → b
        net.with(1, |n, now, _| {
            n.write(now, vec![put(4, 1, 1, b"from the first master"), log(65)])
                .unwrap()
        });
        net.run(Duration::from_millis(3));
        check(&net, 1, 2, common, 1);
        // b takes over (the first master fails), the first returns as
        // its slave: b → a.
        net.crash(1);
        net.run(Duration::from_millis(20));
        assert_eq!(net.masters(), vec![2], "schemas {a}/{b}");
        net.restart(1);
        net.run(Duration::from_millis(10));
        assert_eq!(net.get(1).unwrap().role(), Role::Slave, "schemas {a}/{b}");
        net.with(2, |n, now, _| {
            n.write(now, vec![put(4, 2, 0, b"from the second master"), log(66)])
                .unwrap()
        });
        net.run(Duration::from_millis(3));
        check(&net, 2, 1, common, 2);
        assert_eq!(net.state(1).sets.len(), 2);
    }
}

#[test]
fn an_older_card_cannot_take_a_switchover() {
    let mut net = pair(3, 2);
    let e = net
        .with(1, |n, now, _| n.switchover(now, 2).unwrap_err())
        .unwrap();
    assert_eq!(e, RoleError::PeerTooOld { peer: 2, schema: 2 });
}
