//! The firmware end to end: a host application through the driver's
//! firmware client, the vfio-user transport, the mailbox, the memory
//! manager and the Verilated controller, to NV and back.

use hitless_driver::firmware::{Client, OpenFlags};
use hitless_driver::{CardIo, Error};
use hitless_hdl::contract::BootResult;
use hitless_proto::msg::{Code, TierSel};
use hitless_sim::inproc::InProcessCard;
use hitless_sim::service::{Control, RegionSel};

mod common;
use common::{await_power_ons, client, code};

/// The mailbox's current challenge, for signing a hand-made request.
fn challenge(fw: &mut Client<Box<dyn CardIo>>) -> u64 {
    use hitless_hdl::contract::mbox::{MB_NONCE_HI, MB_NONCE_LO};
    let io = fw.io();
    io.read32(MB_NONCE_LO).unwrap() as u64 | (io.read32(MB_NONCE_HI).unwrap() as u64) << 32
}

#[test]
fn stages_tiers_and_fallback() {
    let dir = common::temp("fw-stages");
    let card = InProcessCard::start(&dir).unwrap();
    let mut fw = client(&card);
    let (s, secret) = fw.open_app(7, OpenFlags::all(), None).unwrap();
    let secret = secret.expect("first open hands out the secret");
    fw.store(&s, 1, 0, 0, false, b"warm, stage 0").unwrap();
    fw.store(&s, 2, 0, 1, true, b"cold, stage 1").unwrap();
    fw.store(&s, 3, 0, 1, false, &vec![0xAB; 5000]).unwrap();
    assert_eq!(fw.list(&s).unwrap().len(), 3);
    // Before any announcement, FETCH refuses.
    assert_eq!(code(fw.fetch(&s, 0).unwrap_err()), Code::NotYet);

    // Warm reset: everything comes back; the session is gone (reopen with
    // the secret), the stage announcements start over.
    drop(fw);
    card.control(Control::WarmReset).unwrap();
    let mut fw = client(&card);
    assert_eq!(
        code(fw.open_app(7, OpenFlags::all(), None).unwrap_err()),
        Code::AuthFailed,
        "a second open without the secret is refused"
    );
    let (s, again) = fw.open_app(7, OpenFlags::all(), Some(&secret)).unwrap();
    assert!(again.is_none());
    let at0 = fw.announce(0).unwrap();
    assert_eq!(at0.len(), 1);
    let got = fw.fetch(&s, 0).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, b"warm, stage 0");
    assert_eq!(code(fw.fetch(&s, 1).unwrap_err()), Code::NotYet);
    fw.announce(1).unwrap();
    let got = fw.fetch(&s, 1).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1, b"cold, stage 1");
    assert_eq!(got[1].1, vec![0xAB; 5000]);

    // Power cycle: only the cold set survives.
    drop(fw);
    card.control(Control::PowerCycle).unwrap();
    let mut fw = client(&card);
    let (s, _) = fw.open_app(7, OpenFlags::all(), Some(&secret)).unwrap();
    let sets = fw.list(&s).unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!((sets[0].object, sets[0].tier), (2, TierSel::Cold));
    assert_eq!(code(fw.restore(&s, 1).unwrap_err()), Code::NotFound);

    // A damaged active region: the card serves the alternate copy.
    fw.store(&s, 4, 0, 2, true, &vec![0x5A; 20_000]).unwrap();
    drop(fw);
    card.control(Control::FlipBits {
        cold: true,
        region: RegionSel::Active,
        count: 8,
        seed: 3,
    })
    .unwrap();
    let st = card.control(Control::WarmReset).unwrap();
    assert_eq!(
        st.cold_result,
        Some(BootResult::FellBack),
        "the boot scan fell back"
    );
    let mut fw = client(&card);
    let (s, _) = fw.open_app(7, OpenFlags::all(), Some(&secret)).unwrap();
    assert_eq!(fw.restore(&s, 4).unwrap().1, vec![0x5A; 20_000]);
    assert_eq!(fw.restore(&s, 2).unwrap().1, b"cold, stage 1");
    let st = fw.status().unwrap();
    assert_eq!(st.cold.state, 0, "{st:?}");
}

#[test]
fn append_log_backup_reader() {
    let dir = common::temp("fw-log");
    let card = InProcessCard::start(&dir).unwrap();
    let mut primary = client(&card);
    let (p, secret) = primary.open_app(9, OpenFlags::all(), None).unwrap();
    let secret = secret.unwrap();
    for i in 0..5u8 {
        primary.log_append(&p, 0, false, false, &[i; 100]).unwrap();
    }
    // The backup is a later requestor of application 9: it presents the
    // credentials the primary handed it, and reads every set at once.
    let (b, _) = primary
        .open_app(9, OpenFlags::read_only(), Some(&secret))
        .unwrap();
    assert_eq!(
        code(primary.log_read(&b, false).unwrap_err()),
        Code::Permission,
        "a read-only session may not use the log"
    );
    primary.close(&b).unwrap();
    let (b, _) = primary
        .open_app(9, OpenFlags::all(), Some(&secret))
        .unwrap();
    let read = primary.log_read(&b, false).unwrap();
    assert_eq!(read.records.len(), 5);
    for (i, (_, data)) in read.records.iter().enumerate() {
        assert_eq!(data, &vec![i as u8; 100]);
    }
    primary.log_trim(&b, false, read.head).unwrap();
    // More sets, then the primary dies without closing anything.
    for i in 5..8u8 {
        primary.log_append(&p, 0, false, false, &[i; 100]).unwrap();
    }
    drop(primary);
    let mut backup = client(&card);
    let (b, _) = backup.open_app(9, OpenFlags::all(), Some(&secret)).unwrap();
    let unread = backup.log_read(&b, false).unwrap();
    let got: Vec<u8> = unread.records.iter().map(|(_, d)| d[0]).collect();
    assert_eq!(got, vec![5, 6, 7], "exactly the previously unread sets");

    // Another application's records cannot be trimmed away by app 9.
    let (other, _) = backup.open_app(10, OpenFlags::all(), None).unwrap();
    backup
        .log_append(&other, 0, false, false, b"app 10")
        .unwrap();
    let all = backup.log_read(&b, false).unwrap();
    assert_eq!(
        code(backup.log_trim(&b, false, all.head).unwrap_err()),
        Code::Foreign
    );
    let mine = backup.log_read(&other, false).unwrap();
    assert_eq!(mine.records.len(), 1);
    assert_eq!(mine.records[0].1, b"app 10");

    // Overwrite mode (cold tier): only the newest set remains.
    for i in 0..3u8 {
        backup.log_append(&b, 1, true, true, &[i; 64]).unwrap();
    }
    let cold = backup.log_read(&b, true).unwrap();
    assert_eq!(cold.records.len(), 1);
    assert_eq!(cold.records[0].1, vec![2u8; 64]);

    // A full log refuses the writer; nothing unread is lost.
    let mut appended = 0;
    let err = loop {
        match backup.log_append(&b, 2, true, false, &vec![0xC3; 64 << 10]) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
        assert!(appended < 64, "a 1 MiB log never fills");
    };
    assert_eq!(code(err), Code::LogFull);
    let cold = backup.log_read(&b, true).unwrap();
    assert_eq!(cold.records.len(), appended + 1);
    backup.log_trim(&b, true, cold.head).unwrap();
    backup
        .log_append(&b, 2, true, false, b"room again")
        .unwrap();
}

#[test]
fn credentials_and_bad_requests() {
    use hitless_hdl::contract::MAX_MESSAGE;
    use hitless_proto::auth;
    use hitless_proto::msg::{kind, tag};
    use hitless_proto::tlv::Builder;

    let dir = common::temp("fw-auth");
    let card = InProcessCard::start(&dir).unwrap();
    let mut fw = client(&card);
    let (s, secret) = fw.open_app(3, OpenFlags::all(), None).unwrap();
    let secret = secret.unwrap();
    let before = fw.auth_failures().unwrap();
    let wrong = [0u8; 32];
    assert_eq!(
        code(fw.open_app(3, OpenFlags::all(), Some(&wrong)).unwrap_err()),
        Code::AuthFailed
    );
    assert_eq!(
        fw.auth_failures().unwrap(),
        before + 1,
        "refusals are counted"
    );

    // A correctly signed request works once; replayed, it is refused (the
    // challenge changed).
    let nonce = challenge(&mut fw);
    let list = auth::sign(
        Builder::new(kind::LIST).u32(tag::HANDLE, s.handle).finish(),
        &secret,
        nonce,
    );
    assert_eq!(fw.raw(&list).unwrap().0, Code::Ok);
    assert_eq!(fw.raw(&list).unwrap().0, Code::AuthFailed);
    assert_eq!(fw.auth_failures().unwrap(), before + 2);
    // A handle that is not a session.
    let forged = auth::sign(
        Builder::new(kind::LIST).u32(tag::HANDLE, 0x7777).finish(),
        &secret,
        nonce,
    );
    assert_eq!(fw.raw(&forged).unwrap().0, Code::AuthFailed);

    // Malformed messages: a reason, nothing stored, the card still serves.
    assert_eq!(fw.raw(b"garbage!").unwrap().0, Code::BadMessage);
    let good = Builder::new(kind::STATUS).finish();
    assert_eq!(fw.raw(&good[..5]).unwrap().0, Code::BadMessage);
    let mut long = good.clone();
    long.extend_from_slice(&[0u8; 3]);
    assert_eq!(fw.raw(&long).unwrap().0, Code::BadMessage);
    assert_eq!(
        fw.raw(&vec![0u8; MAX_MESSAGE as usize + 1]).unwrap().0,
        Code::BadMessage
    );
    // Unknown fields are skipped; unknown kinds refused with a reason.
    let extra = Builder::new(kind::STATUS)
        .bytes(999, b"newer sender")
        .finish();
    assert_eq!(fw.raw(&extra).unwrap().0, Code::Ok);
    let nonce = challenge(&mut fw);
    let unknown = auth::sign(
        Builder::new(0x55).u32(tag::HANDLE, s.handle).finish(),
        &secret,
        nonce,
    );
    assert_eq!(fw.raw(&unknown).unwrap().0, Code::UnknownRequest);

    // A STORE whose data does not match its CRC is refused by the
    // controller's datapath check; the old set stays.
    fw.store(&s, 0, 0, 0, false, b"original").unwrap();
    let nonce = challenge(&mut fw);
    let lying = auth::sign(
        Builder::new(kind::STORE)
            .u32(tag::HANDLE, s.handle)
            .u64(tag::DATA_ADDR, 1 << 32)
            .u32(tag::DATA_LEN, 64)
            .u32(tag::DATA_CRC, 0x1234_5678)
            .finish(),
        &secret,
        nonce,
    );
    assert_eq!(fw.raw(&lying).unwrap().0, Code::Invalid);
    assert_eq!(fw.restore(&s, 0).unwrap().1, b"original");
    // A data buffer outside the host's DMA mappings.
    let nonce = challenge(&mut fw);
    let stray = auth::sign(
        Builder::new(kind::LOG_APPEND)
            .u32(tag::HANDLE, s.handle)
            .u64(tag::DATA_ADDR, 0x10)
            .u32(tag::DATA_LEN, 64)
            .finish(),
        &secret,
        nonce,
    );
    assert_eq!(fw.raw(&stray).unwrap().0, Code::HostMemory);
    assert_eq!(fw.restore(&s, 0).unwrap().1, b"original");
    // Sets over the API's limit are refused before anything is sent.
    assert!(matches!(
        fw.store(
            &s,
            1,
            0,
            0,
            false,
            &vec![1; hitless_driver::firmware::MAX_SET_BYTES as usize + 1]
        ),
        Err(Error::InvalidArgument(_))
    ));
}

/// Sets larger than one transfer (the controller's MAX_TRANSFER) store and
/// restore in both tiers, checked against the whole set's CRC; a bit flip
/// in a set's bytes in the data area is detected (LOST) and costs no other
/// set; the tier's index stays small whatever the sets hold.
#[test]
fn large_sets_and_a_damaged_data_area() {
    use hitless_hdl::contract::{DEFAULT_GEOMETRY, MAX_TRANSFER};
    let dir = common::temp("fw-large");
    let card = InProcessCard::start(&dir).unwrap();
    let mut fw = client(&card);
    let (s, secret) = fw.open_app(9, OpenFlags::all(), None).unwrap();
    let secret = secret.unwrap();
    let big: Vec<u8> = (0..3 * MAX_TRANSFER as usize + 12_345)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    // The first warm set lands at the data area's start (first fit).
    fw.store(&s, 1, 0, 0, false, &big).unwrap();
    fw.store(&s, 2, 0, 0, false, b"a small neighbour").unwrap();
    fw.store(&s, 3, 0, 0, true, &big[..MAX_TRANSFER as usize + 8])
        .unwrap();
    assert_eq!(fw.restore(&s, 1).unwrap().1, big);
    assert_eq!(
        fw.restore(&s, 3).unwrap().1,
        &big[..MAX_TRANSFER as usize + 8]
    );
    let st = fw.status().unwrap();
    assert!(
        st.warm.image_bytes as usize >= big.len(),
        "the tier reports the bytes it holds: {st:?}"
    );
    // Replacing the big set with a bigger one keeps the old copy until
    // the new index is committed, then frees it.
    let bigger = [&big[..], &big[..1000]].concat();
    fw.store(&s, 1, 0, 0, false, &bigger).unwrap();
    assert_eq!(fw.restore(&s, 1).unwrap().1, bigger);

    // Damage the first extent of the warm data area: the big set was
    // replaced, so it is the freed copy and no set is harmed.
    drop(fw);
    card.control(Control::FlipDataBits {
        cold: false,
        offset: 0,
        len: big.len() as u64,
        count: 16,
        seed: 7,
    })
    .unwrap();
    let mut fw = client(&card);
    let (s, _) = fw.open_app(9, OpenFlags::all(), Some(&secret)).unwrap();
    assert_eq!(fw.restore(&s, 1).unwrap().1, bigger);
    assert_eq!(fw.restore(&s, 2).unwrap().1, b"a small neighbour");

    // Damage the live copy (placed after the small set's 24 bytes): LOST,
    // and only it.
    let live = (big.len() as u64).div_ceil(8) * 8 + 24;
    drop(fw);
    card.control(Control::FlipDataBits {
        cold: false,
        offset: live,
        len: bigger.len() as u64,
        count: 1,
        seed: 8,
    })
    .unwrap();
    let mut fw = client(&card);
    let (s, _) = fw.open_app(9, OpenFlags::all(), Some(&secret)).unwrap();
    let e = fw.restore(&s, 1).unwrap_err();
    assert_eq!(code(e), Code::Lost);
    assert_eq!(fw.restore(&s, 2).unwrap().1, b"a small neighbour");
    assert_eq!(
        fw.restore(&s, 3).unwrap().1,
        &big[..MAX_TRANSFER as usize + 8]
    );
    // Out of the data area: refused by the control channel.
    assert!(card
        .control(Control::FlipDataBits {
            cold: false,
            offset: DEFAULT_GEOMETRY.data_size as u64,
            len: 1,
            count: 1,
            seed: 1,
        })
        .is_err());
}

mod against_the_model {
    use super::*;
    use hitless_driver::firmware::{Secret, Session};
    use hitless_firmware::model::CardModel;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Op {
        Store {
            app: u32,
            object: u32,
            cold: bool,
            stage: u32,
            len: usize,
            byte: u8,
        },
        Delete {
            app: u32,
            object: u32,
        },
        WarmReset,
        PowerCycle,
        /// Bits flipped in one tier's active region, then a reboot.
        FlipAndReboot {
            cold: bool,
            seed: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1u32..4, 0u32..3, any::<bool>(), 0u32..3, 0usize..6000, any::<u8>()).prop_map(
                |(app, object, cold, stage, len, byte)| Op::Store { app, object, cold, stage, len, byte }
            ),
            2 => (1u32..4, 0u32..3).prop_map(|(app, object)| Op::Delete { app, object }),
            1 => Just(Op::WarmReset),
            1 => Just(Op::PowerCycle),
            1 => (any::<bool>(), any::<u64>()).prop_map(|(cold, seed)| Op::FlipAndReboot { cold, seed }),
        ]
    }

    struct Rig {
        card: InProcessCard,
        fw: Option<Client<Box<dyn CardIo>>>,
        secrets: BTreeMap<u32, Secret>,
        sessions: BTreeMap<u32, Session>,
    }

    impl Rig {
        fn fw(&mut self) -> &mut Client<Box<dyn CardIo>> {
            let card = &self.card;
            self.fw.get_or_insert_with(|| client(card))
        }
        fn session(&mut self, app: u32) -> Session {
            if let Some(s) = self.sessions.get(&app) {
                return s.clone();
            }
            let secret = self.secrets.get(&app).copied();
            let (s, new) = self
                .fw()
                .open_app(app, OpenFlags::all(), secret.as_ref())
                .unwrap();
            if let Some(n) = new {
                self.secrets.insert(app, n);
            }
            self.sessions.insert(app, s.clone());
            s
        }
        fn reboot(&mut self, c: Control) {
            self.fw = None;
            self.card.control(c).unwrap();
            self.sessions.clear();
        }
    }

    /// Every application's sets, as the card reports and delivers them,
    /// equal the model's.
    fn check(rig: &mut Rig, model: &CardModel) -> Result<(), TestCaseError> {
        for app in 1u32..4 {
            let s = rig.session(app);
            let mut listed: Vec<(u32, TierSel, u32)> = rig
                .fw()
                .list(&s)
                .unwrap()
                .into_iter()
                .map(|i| (i.object, i.tier, i.stage))
                .collect();
            listed.sort();
            let want: Vec<(u32, TierSel, u32)> = model
                .sets
                .iter()
                .filter(|((a, _), _)| *a == app)
                .map(|((_, o), m)| (*o, m.tier, m.stage))
                .collect();
            prop_assert_eq!(&listed, &want, "app {}", app);
            for (object, _, _) in &want {
                let (_, bytes) = rig.fw().restore(&s, *object).unwrap();
                prop_assert_eq!(Some(&bytes[..]), model.restore(app, *object));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn the_card_answers_as_the_model(ops in proptest::collection::vec(op(), 1..24), case in any::<u32>()) {
            let dir = common::temp(&format!("fw-model-{case}"));
            let card = InProcessCard::start(&dir).unwrap();
            let mut rig = Rig { card, fw: None, secrets: BTreeMap::new(), sessions: BTreeMap::new() };
            let mut model = CardModel::default();
            for op in ops {
                match op {
                    Op::Store { app, object, cold, stage, len, byte } => {
                        let s = rig.session(app);
                        let data: Vec<u8> = (0..len).map(|i| byte.wrapping_add(i as u8)).collect();
                        rig.fw().store(&s, object, 0, stage, cold, &data).unwrap();
                        let tier = if cold { TierSel::Cold } else { TierSel::Warm };
                        model.store(app, object, tier, stage, data);
                    }
                    Op::Delete { app, object } => {
                        let s = rig.session(app);
                        let r = rig.fw().delete(&s, object);
                        if model.delete(app, object) {
                            r.unwrap();
                        } else {
                            prop_assert_eq!(code(r.unwrap_err()), Code::NotFound);
                        }
                    }
                    Op::WarmReset => {
                        rig.reboot(Control::WarmReset);
                        model.warm_reset();
                    }
                    Op::PowerCycle => {
                        rig.reboot(Control::PowerCycle);
                        model.power_cycle();
                    }
                    Op::FlipAndReboot { cold, seed } => {
                        rig.card.control(Control::FlipBits { cold, region: RegionSel::Active, count: 4, seed }).unwrap();
                        rig.reboot(Control::WarmReset);
                        model.damage_one_region(if cold { TierSel::Cold } else { TierSel::Warm });
                    }
                }
                check(&mut rig, &model)?;
            }
            drop(rig);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Where in an operation of `span` cycles to cut: uniform, then (`late`,
/// when one outcome has not been seen yet) beyond the latest cut that kept
/// the old version or before the earliest that gave the new one, since
/// where the commit falls depends on the firmware's timing.
fn cut_point(
    rng: &mut impl rand::Rng,
    late: bool,
    (old_seen, new_seen): (u32, u32),
    (latest_old, earliest_new): (u64, u64),
    span: u64,
) -> u64 {
    match (late, old_seen, new_seen) {
        (true, _, 0) => rng.gen_range(latest_old.min(span - 1)..span),
        (true, 0, _) => rng.gen_range(0..earliest_new.max(1)),
        _ => rng.gen_range(0..span),
    }
}

/// Power cuts at random cycles while sets are being stored: afterwards
/// every set is its old or its new version, never a mix, never lost, and
/// the firmware keeps serving.
#[test]
fn power_cuts_during_stores_keep_old_or_new() {
    use rand::SeedableRng;
    let dir = common::temp("fw-cuts");
    let card = InProcessCard::start(&dir).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xC075);
    let version = |object: u32, v: u32| -> Vec<u8> {
        (0..(3000 + 1500 * object + 700 * (v % 3)))
            .map(|i| (i ^ v.wrapping_mul(31) ^ object) as u8)
            .collect()
    };
    let mut fw = client(&card);
    let (s, secret) = fw.open_app(5, OpenFlags::all(), None).unwrap();
    let secret = secret.unwrap();
    let mut committed = [0u32; 3];
    for object in 0..3 {
        fw.store(&s, object, 0, 0, true, &version(object, 0))
            .unwrap();
    }
    // How many cycles one store takes.
    let c0 = card.control(Control::Status).unwrap().cycle;
    fw.store(&s, 1, 0, 0, true, &version(1, 0)).unwrap();
    let span = card.control(Control::Status).unwrap().cycle - c0;
    let (mut old_seen, mut new_seen) = (0, 0);
    let (mut latest_old, mut earliest_new) = (0, span);
    let mut fw = Some(fw);
    let mut session = s;
    for round in 1..=12u32 {
        let object = round % 3;
        let now = card.control(Control::Status).unwrap().cycle;
        // Uniform cut points, then (when one outcome has not been seen by
        // half-time) points beyond the latest cut that kept the old
        // version, or before the earliest that gave the new one: where the
        // commit falls in a store depends on the firmware's timing.
        let at = cut_point(
            &mut rng,
            round > 6,
            (old_seen, new_seen),
            (latest_old, earliest_new),
            span,
        );
        card.control(Control::CutPowerAt(now + at)).unwrap();
        let c = fw.as_mut().unwrap();
        let stored = c.store(&session, object, 0, 0, true, &version(object, round));
        // Reconnect after the cut (the store may have finished first).
        drop(fw.take());
        await_power_ons(&card, round as u64 + 1);
        let mut c = client(&card);
        let (s2, _) = c.open_app(5, OpenFlags::all(), Some(&secret)).unwrap();
        session = s2;
        let (_, got) = c.restore(&session, object).unwrap();
        if got == version(object, round) {
            committed[object as usize] = round;
            new_seen += 1;
            earliest_new = earliest_new.min(at);
        } else {
            assert_eq!(
                got,
                version(object, committed[object as usize]),
                "round {round}: object {object} is neither its old nor its new version"
            );
            assert!(
                stored.is_err(),
                "round {round}: a store reported done was lost"
            );
            old_seen += 1;
            latest_old = latest_old.max(at);
        }
        for other in (0..3).filter(|&o| o != object) {
            let (_, got) = c.restore(&session, other).unwrap();
            assert_eq!(
                got,
                version(other, committed[other as usize]),
                "round {round}"
            );
        }
        fw = Some(c);
    }
    assert!(
        old_seen > 0 && new_seen > 0,
        "cuts hit both before and after the commit: {old_seen} old, {new_seen} new"
    );
}

/// Clients that die without closing their sessions do not lock their
/// application out: its least recently used session is replaced. Other
/// applications' sessions are never taken.
#[test]
fn abandoned_sessions_are_reclaimed_per_application() {
    let dir = common::temp("fw-sessions");
    let card = InProcessCard::start(&dir).unwrap();
    let mut fw = client(&card);
    let (other, _) = fw.open_app(2, OpenFlags::all(), None).unwrap();
    let (first, secret) = fw.open_app(1, OpenFlags::all(), None).unwrap();
    let secret = secret.unwrap();
    // 14 session entries: app 2 holds one, app 1 opens far more than the rest.
    let mut last = first.clone();
    for _ in 0..20 {
        last = fw.open_app(1, OpenFlags::all(), Some(&secret)).unwrap().0;
    }
    fw.store(&last, 0, 0, 0, false, b"still works").unwrap();
    assert_eq!(
        code(fw.list(&first).unwrap_err()),
        Code::AuthFailed,
        "the oldest session was replaced"
    );
    assert!(
        fw.list(&other).is_ok(),
        "another application's session is kept"
    );
    // With every other entry held by application 1, application 3 has none.
    assert_eq!(
        code(fw.open_app(3, OpenFlags::all(), None).unwrap_err()),
        Code::NoSession
    );
    fw.close(&last).unwrap();
    assert!(fw.open_app(3, OpenFlags::all(), None).is_ok());
}

/// The cold tier's committed paged root (region A: after a store's mirror
/// both regions hold it), read from the card's state file.
fn cold_root(dir: &std::path::Path) -> Vec<hitless_firmware::records::LeafRef> {
    use hitless_firmware::records::{Head, Table, HEADER};
    use hitless_hdl::contract::DEFAULT_GEOMETRY as G;
    let nv = std::fs::read(dir.join("cold.nv")).unwrap();
    let image = &nv[G.region_a_base() as usize..][..G.region_size as usize];
    let size = Table::head_size(&image[..HEADER]).unwrap();
    match Table::decode_head(&image[..size], G.data_size as usize).unwrap() {
        Head::Paged(refs) => refs,
        Head::Inline(t) => panic!("an inline index of {} sets", t.sets.len()),
    }
}

/// A tier of more sets than one leaf holds: power cuts during stores keep
/// each set old or new and every other set intact; a damaged copy of an
/// index leaf is survived (and rewritten), and a leaf damaged in both
/// copies makes the tier foreign rather than dropping its sets.
#[test]
fn a_paged_index_survives_power_cuts_and_damaged_leaves() {
    use hitless_firmware::records::LEAF_SETS;
    use hitless_hdl::contract::{crc32c, DEFAULT_GEOMETRY as G};
    use hitless_proto::TierReport;
    use rand::SeedableRng;
    const SETS: u32 = 3 * LEAF_SETS as u32 + 5;
    let dir = common::temp("fw-paged");
    let card = InProcessCard::start(&dir).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x1EAF);
    let version = |object: u32, v: u32| -> Vec<u8> {
        (0..(64 + 8 * object + 40 * (v % 3)))
            .map(|i| (i ^ v.wrapping_mul(31) ^ object.wrapping_mul(7)) as u8)
            .collect()
    };
    let mut fw = client(&card);
    let (mut s, secret) = fw.open_app(6, OpenFlags::all(), None).unwrap();
    let secret = secret.unwrap();
    let mut committed = vec![0u32; SETS as usize];
    for object in 0..SETS {
        fw.store(&s, object, 0, 0, true, &version(object, 0))
            .unwrap();
    }
    let leaves = cold_root(&dir);
    assert!(leaves.len() >= 3, "{} leaves", leaves.len());
    let check_all = |fw: &mut Client<Box<dyn CardIo>>,
                     s: &hitless_driver::firmware::Session,
                     committed: &[u32],
                     what: &str| {
        for object in 0..SETS {
            let (_, got) = fw.restore(s, object).unwrap();
            assert_eq!(
                got,
                version(object, committed[object as usize]),
                "{what}: object {object}"
            );
        }
    };
    // How many cycles one store takes.
    let c0 = card.control(Control::Status).unwrap().cycle;
    fw.store(&s, 1, 0, 0, true, &version(1, 0)).unwrap();
    let span = card.control(Control::Status).unwrap().cycle - c0;
    let (mut old_seen, mut new_seen) = (0, 0);
    let (mut latest_old, mut earliest_new) = (0, span);
    let mut fw = Some(fw);
    for round in 1..=8u32 {
        // Objects across the leaves.
        let object = (round * 37) % SETS;
        let now = card.control(Control::Status).unwrap().cycle;
        let at = cut_point(
            &mut rng,
            round > 4,
            (old_seen, new_seen),
            (latest_old, earliest_new),
            span,
        );
        card.control(Control::CutPowerAt(now + at)).unwrap();
        let stored = fw
            .as_mut()
            .unwrap()
            .store(&s, object, 0, 0, true, &version(object, round));
        drop(fw.take());
        await_power_ons(&card, round as u64 + 1);
        let mut c = client(&card);
        s = c.open_app(6, OpenFlags::all(), Some(&secret)).unwrap().0;
        let (_, got) = c.restore(&s, object).unwrap();
        if got == version(object, round) {
            committed[object as usize] = round;
            new_seen += 1;
            earliest_new = earliest_new.min(at);
        } else {
            assert!(
                stored.is_err(),
                "round {round}: a store reported done was lost"
            );
            old_seen += 1;
            latest_old = latest_old.max(at);
        }
        check_all(&mut c, &s, &committed, &format!("round {round}"));
        fw = Some(c);
    }
    assert!(
        old_seen > 0 && new_seen > 0,
        "cuts hit both before and after the commit: {old_seen} old, {new_seen} new"
    );

    // One copy of a leaf damaged: served from the other, then rewritten.
    drop(fw.take());
    let leaves = cold_root(&dir);
    let leaf = leaves[1];
    let flip = |copy: usize| {
        card.control(Control::FlipDataBits {
            cold: true,
            offset: leaf.copies[copy] as u64,
            len: leaf.len as u64,
            count: 3,
            seed: 11 + copy as u64,
        })
        .unwrap();
    };
    let copy_crc = |copy: usize| {
        let nv = std::fs::read(dir.join("cold.nv")).unwrap();
        crc32c(&nv[(G.data_base() + leaf.copies[copy]) as usize..][..leaf.len as usize])
    };
    flip(0);
    assert_ne!(copy_crc(0), leaf.crc);
    card.control(Control::WarmReset).unwrap();
    let mut c = client(&card);
    let st = c.status().unwrap();
    assert_eq!(st.cold.state, TierReport::READY, "{st:?}");
    assert_eq!(st.cold.sets, SETS + 1, "the sets and the secret: {st:?}");
    assert_eq!(copy_crc(0), leaf.crc, "the damaged copy was rewritten");
    s = c.open_app(6, OpenFlags::all(), Some(&secret)).unwrap().0;
    check_all(&mut c, &s, &committed, "one leaf copy damaged");

    // Both copies damaged: the tier is foreign (FORMAT decides), not
    // silently smaller.
    drop(c);
    flip(0);
    flip(1);
    card.control(Control::WarmReset).unwrap();
    let mut c = client(&card);
    let st = c.status().unwrap();
    assert_eq!(st.cold.state, TierReport::FOREIGN, "{st:?}");
}
