//! The image manager's behaviour (seed 002; issue 18 items 3–7, 10).
use hitless_image::bench::{check_booted, Fixture, Release, TestCard, NOW, SWEEP_GEOMETRY};
use hitless_image::flash::Nvs;
use hitless_image::package::generate_key;
use hitless_image::{
    Access, AreaHealth, ComponentKind, ConfigSource, Geometry, ImageError, ImageManager, Notice,
    PackageBuilder, RollbackCause, SimFlash, TxnId,
};
use rand::SeedableRng;
use std::sync::{Arc, Mutex};

fn provisioned() -> (Fixture, ImageManager<SimFlash>) {
    let fx = Fixture::new().unwrap();
    let m = fx.card.open().unwrap();
    assert!(matches!(m.boot(NOW), Err(ImageError::NeedsFreshDownload)));
    let r = m.install_package(&fx.v1.full[..], NOW, false).unwrap();
    assert!(r.fresh);
    let b = m.boot(NOW).unwrap();
    assert_eq!(b.booted.manifest, fx.v1.manifest);
    (fx, m)
}

fn flip_in_area(fx: &Fixture, m: &ImageManager<SimFlash>, device: usize, area: usize) {
    let l = m.layout();
    let off = l.areas[area].offset(&l.geometry) + u64::from(l.geometry.block_size) + 77;
    fx.card.devs[device].flip_bit(off, 5).unwrap();
}

#[test]
fn partial_upgrade_trial_boot_and_mark_good() {
    let (fx, m) = provisioned();
    m.take_notices();
    let full_len = fx.v2.full.len();
    assert!(fx.v2_partial.len() < full_len - 2000);
    let r = m.install_package(&fx.v2_partial[..], NOW, false).unwrap();
    assert_eq!(r.written, ["gateware", "config"]);
    assert_eq!(r.copied, ["firmware"]);
    assert_eq!(r.bytes_from_package, 5200 + 640);
    assert_eq!(r.bytes_copied, 3000);
    assert!(r.flash.bytes_programmed >= 2 * (5200 + 640 + 3000));
    let n = m.take_notices();
    assert!(
        n.iter().any(
            |x| matches!(x, Notice::GatewareChange { component, .. } if component == "gateware")
        ),
        "{n:?}"
    );
    // still running v1 until activated
    assert_eq!(m.status().booted.unwrap().manifest.version, 1);
    assert!(matches!(m.mark_good(NOW), Err(ImageError::NotInTrial)));
    m.activate().unwrap();
    assert!(matches!(
        m.install_package(&fx.v2.full[..], NOW, false),
        Err(ImageError::TrialInProgress)
    ));
    let b = m.boot(NOW).unwrap();
    assert!(b.booted.trial);
    assert_eq!(b.booted.deadline, Some(NOW + m_window()));
    check_booted(&fx, &m, &b, &[2]).unwrap();
    m.mark_good(NOW + 10).unwrap();
    let b = m.boot(NOW).unwrap();
    assert!(!b.booted.trial);
    assert_eq!(b.booted.manifest.version, 2);
    // the previous image is the alternate: manual rollback returns to it
    let back = m.rollback().unwrap();
    assert_eq!(back.manifest.version, 1);
    let b = m.boot(NOW).unwrap();
    assert_eq!(b.booted.manifest.version, 1);
    check_booted(&fx, &m, &b, &[1]).unwrap();
}

fn m_window() -> u64 {
    hitless_image::Options::new(vec![]).trial_window
}

#[test]
fn gateware_unchanged_raises_no_notice() {
    let (fx, m) = provisioned();
    m.take_notices();
    let v = Release::new(
        &fx.card.key,
        3,
        &[
            ("gateware", ComponentKind::Gateware, 5000, 11),
            ("firmware", ComponentKind::Firmware, 3000, 99),
            ("config", ComponentKind::Configuration, 600, 31),
        ],
    );
    let r = m.install_package(&v.full[..], NOW, false).unwrap();
    assert_eq!(r.written, ["firmware"]);
    assert!(!m
        .take_notices()
        .iter()
        .any(|x| matches!(x, Notice::GatewareChange { .. })));
}

#[test]
fn rejected_packages_write_nothing() {
    let (fx, m) = provisioned();
    // v2 in the alternate, so an older package is a rollback attempt
    m.install_package(&fx.v2_partial[..], NOW, false).unwrap();
    m.activate().unwrap();
    m.boot(NOW).unwrap();
    m.mark_good(NOW).unwrap();
    let before = fx.card.snapshot().unwrap();
    let ops = fx.card.rail.ops();
    let good = fx.v1.full.clone();
    let mut tampered = good.clone();
    let n = tampered.len();
    tampered[n - 10] ^= 0x40;
    let mut header = good.clone();
    header[120] ^= 1;
    let other = generate_key(&mut rand::rngs::StdRng::seed_from_u64(99));
    let b = PackageBuilder::new(9, NOW + 100).component(
        "gateware",
        ComponentKind::Gateware,
        "9",
        &["card"],
        vec![7; 100],
    );
    let expired = PackageBuilder::new(9, NOW - 1)
        .component(
            "gateware",
            ComponentKind::Gateware,
            "9",
            &["card"],
            vec![7; 100],
        )
        .build_signed(&fx.card.key);
    let missing_base = PackageBuilder::new(9, NOW + 100)
        .component(
            "nothere",
            ComponentKind::Other,
            "9",
            &["card"],
            vec![7; 100],
        )
        .partial_against(
            &PackageBuilder::new(0, 0)
                .component(
                    "nothere",
                    ComponentKind::Other,
                    "9",
                    &["card"],
                    vec![7; 100],
                )
                .manifest()
                .clone(),
        )
        .build_signed(&fx.card.key);
    let too_big = PackageBuilder::new(9, NOW + 100)
        .component(
            "gateware",
            ComponentKind::Gateware,
            "9",
            &["card"],
            vec![7; 200_000],
        )
        .build_signed(&fx.card.key);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("tampered payload", tampered),
        ("tampered header", header),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("unsigned", b.build_unsigned()),
        ("untrusted", b.build_signed(&other)),
        ("expired", expired),
        ("rolled back (v1 < v2)", good.clone()),
        ("partial without base", missing_base),
        ("larger than an area", too_big),
    ];
    for (what, pkg) in cases {
        let e = m.install_package(&pkg[..], NOW, false).unwrap_err();
        println!("{what}: {e}");
        assert_eq!(fx.card.rail.ops(), ops, "{what} touched flash");
        assert_eq!(fx.card.snapshot().unwrap(), before, "{what} changed flash");
    }
    assert!(matches!(
        m.install_package(&good[..], NOW, false),
        Err(ImageError::Rollback {
            installed: 2,
            offered: 1
        })
    ));
    // forced, the downgrade installs
    m.install_package(&good[..], NOW, true).unwrap();
    assert_ne!(fx.card.rail.ops(), ops);
}

#[test]
fn bad_image_rolls_back_automatically() {
    let (fx, m) = provisioned();
    m.install_package(&fx.v2_partial[..], NOW, false).unwrap();
    m.activate().unwrap();
    let alt = m.status().meta.alternate_area();
    flip_in_area(&fx, &m, 0, alt);
    flip_in_area(&fx, &m, 1, alt);
    m.take_notices();
    let b = m.boot(NOW).unwrap();
    assert_eq!(b.rollback, Some(RollbackCause::AlternateCorrupt));
    assert!(!b.booted.trial);
    check_booted(&fx, &m, &b, &[1]).unwrap();
    assert!(m.take_notices().contains(&Notice::RolledBack {
        cause: RollbackCause::AlternateCorrupt,
        version: 1
    }));
    // the corrupt alternate is forgotten; activation needs a new install
    assert!(matches!(m.activate(), Err(ImageError::NoAlternate)));
}

#[test]
fn trial_not_marked_good_rolls_back_at_the_boot_limit_and_deadline() {
    let (fx, m) = provisioned();
    m.install_package(&fx.v2_partial[..], NOW, false).unwrap();
    m.activate().unwrap();
    let limit = fx.card.opts.boot_limit;
    for i in 0..limit {
        let b = m.boot(NOW).unwrap();
        assert!(b.booted.trial, "boot {i}");
        assert_eq!(m.status().meta.boot_count, i + 1);
    }
    let b = m.boot(NOW).unwrap();
    assert_eq!(b.rollback, Some(RollbackCause::BootLimit));
    assert_eq!(b.booted.manifest.version, 1);
    // the deadline: mark-good too late is refused, the watchdog rolls back
    m.activate().unwrap();
    let b = m.boot(NOW).unwrap();
    let d = b.booted.deadline.unwrap();
    assert_eq!(m.tick(d).unwrap(), None);
    assert!(matches!(
        m.mark_good(d + 1),
        Err(ImageError::TrialExpired { .. })
    ));
    assert_eq!(m.tick(d + 1).unwrap(), Some(RollbackCause::Deadline));
    assert_eq!(m.status().booted.unwrap().manifest.version, 1);
    let b = m.boot(NOW).unwrap();
    assert!(!b.booted.trial);
    assert_eq!(b.booted.manifest.version, 1);
}

#[test]
fn corrupt_primary_swaps_designations_and_is_repaired() {
    let (fx, m) = provisioned();
    let p = m.status().meta.primary_device();
    let cur = m.status().meta.current_area();
    flip_in_area(&fx, &m, p, cur);
    let h = m.health().unwrap();
    assert!(matches!(h.areas[p][cur], AreaHealth::Corrupt(_)));
    let b = m.boot(NOW).unwrap();
    assert!(b.swapped);
    assert_eq!(b.primary, 1 - p);
    assert_eq!(b.repaired, [(p, cur)]);
    check_booted(&fx, &m, &b, &[1]).unwrap();
    // the designation lives in the metadata: it survives a power cycle
    let m2 = fx.card.open().unwrap();
    let b2 = m2.boot(NOW).unwrap();
    assert_eq!(b2.primary, 1 - p);
    assert!(!b2.swapped && b2.repaired.is_empty());
}

#[test]
fn corrupt_secondary_is_repaired() {
    let (fx, m) = provisioned();
    let s = 1 - m.status().meta.primary_device();
    let cur = m.status().meta.current_area();
    flip_in_area(&fx, &m, s, cur);
    let b = m.boot(NOW).unwrap();
    assert!(!b.swapped);
    assert_eq!(b.repaired, [(s, cur)]);
    check_booted(&fx, &m, &b, &[1]).unwrap();
}

#[test]
fn both_corrupt_needs_a_fresh_download_and_accepts_one() {
    let (fx, m) = provisioned();
    let cur = m.status().meta.current_area();
    flip_in_area(&fx, &m, 0, cur);
    flip_in_area(&fx, &m, 1, cur);
    assert!(matches!(m.boot(NOW), Err(ImageError::NeedsFreshDownload)));
    assert!(m.status().needs_fresh_download);
    let r = m.install_package(&fx.v2.full[..], NOW, false).unwrap();
    assert!(r.fresh);
    let b = m.boot(NOW).unwrap();
    check_booted(&fx, &m, &b, &[2]).unwrap();
}

#[test]
fn a_corrupt_metadata_slot_falls_back_to_the_other_slot_and_device() {
    let (fx, m) = provisioned();
    m.install_package(&fx.v2_partial[..], NOW, false).unwrap();
    // corrupt every metadata slot of device 0: device 1's record rules,
    // and device 0 gets its metadata back
    let l = m.layout();
    for r in l.meta {
        fx.card.devs[0]
            .flip_bit(r.offset(&l.geometry) + 20, 1)
            .unwrap();
    }
    let b = m.boot(NOW).unwrap();
    check_booted(&fx, &m, &b, &[1]).unwrap();
    let h = m.health().unwrap();
    let alt = 1 - h.current_area;
    assert_eq!(h.areas[0][alt], AreaHealth::Good(2));
    let m2 = fx.card.open().unwrap();
    m2.boot(NOW).unwrap();
    let mut dev0 = fx.card.devs[0].clone();
    let mut blank = vec![0u8; 12];
    dev0.read(0, &mut blank).unwrap();
    assert_eq!(&blank[..8], b"HTLSMETA");
}

#[test]
fn stale_foreign_and_wrong_transactions_are_refused() {
    let (fx, m) = provisioned();
    let t = m.begin(Access::WriteAlternate).unwrap();
    assert!(matches!(m.commit(t), Err(ImageError::NotStaged)));
    m.install(t, &fx.v2_partial[..], NOW, false).unwrap();
    assert!(matches!(m.commit(t), Err(ImageError::NotMirrored)));
    assert!(matches!(
        m.read_component(t, "firmware"),
        Err(ImageError::WrongAccess(_))
    ));
    let foreign = TxnId(t.0 ^ 0xFFFF_0000_0000_0000);
    assert!(matches!(
        m.mirror(foreign),
        Err(ImageError::ForeignTransaction(_))
    ));
    m.mirror(t).unwrap();
    m.commit(t).unwrap();
    let ops = fx.card.rail.ops();
    assert!(matches!(
        m.install(t, &fx.v2_partial[..], NOW, false),
        Err(ImageError::StaleTransaction(_))
    ));
    assert!(matches!(m.commit(t), Err(ImageError::StaleTransaction(_))));
    // an id from before a reboot is stale
    let r = m.begin(Access::ReadCurrent).unwrap();
    assert_eq!(
        m.read_component(r, "firmware").unwrap(),
        fx.v1.components[1].1
    );
    m.boot(NOW).unwrap();
    assert!(matches!(
        m.read_component(r, "firmware"),
        Err(ImageError::StaleTransaction(_))
    ));
    assert_eq!(fx.card.rail.ops(), ops, "refused requests wrote nothing");
}

/// A device that logs which thread did each program/erase.
struct Logged {
    inner: SimFlash,
    log: Arc<Mutex<Vec<std::thread::ThreadId>>>,
}

impl Nvs for Logged {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ImageError> {
        self.inner.read(offset, buf)
    }
    fn program(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError> {
        self.log.lock().unwrap().push(std::thread::current().id());
        // widen the window in which an unserialized install would interleave
        std::thread::yield_now();
        self.inner.program(offset, data)
    }
    fn erase(&mut self, block: u32) -> Result<(), ImageError> {
        self.log.lock().unwrap().push(std::thread::current().id());
        self.inner.erase(block)
    }
}

#[test]
fn concurrent_installs_are_serialized() {
    let card = TestCard::new(SWEEP_GEOMETRY).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let devs = [0, 1].map(|i| Logged {
        inner: card.devs[i].clone(),
        log: log.clone(),
    });
    let m = Arc::new(ImageManager::open(devs, card.opts.clone()).unwrap());
    let v1 = Release::new(&card.key, 1, &[("fw", ComponentKind::Firmware, 4000, 1)]);
    let _ = m.boot(NOW);
    m.install_package(&v1.full[..], NOW, false).unwrap();
    m.boot(NOW).unwrap();
    log.lock().unwrap().clear();
    let releases: Vec<Release> = (2..6)
        .map(|v| {
            Release::new(
                &card.key,
                v,
                &[("fw", ComponentKind::Firmware, 4000 + v as usize * 100, v)],
            )
        })
        .collect();
    let start = Arc::new(std::sync::Barrier::new(releases.len()));
    let handles: Vec<_> = releases
        .iter()
        .cloned()
        .map(|r| {
            let m = m.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                m.install_package(&r.full[..], NOW, false)
                    .map(|rep| (std::thread::current().id(), rep.version))
            })
        })
        .collect();
    let done: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert_eq!(done.len(), 4);
    // each thread's flash operations form one unbroken run
    let log = log.lock().unwrap();
    let mut runs = Vec::new();
    for id in log.iter() {
        if runs.last() != Some(id) {
            runs.push(*id);
        }
    }
    assert_eq!(runs.len(), 4, "interleaved installs: {runs:?}");
    // the last to finish is in the alternate, verified on both devices
    let last = *log.last().unwrap();
    let v = done.iter().find(|(t, _)| *t == last).unwrap().1;
    let h = m.health().unwrap();
    let alt = 1 - h.current_area;
    assert_eq!(h.areas[0][alt], AreaHealth::Good(v));
    assert_eq!(h.areas[1][alt], AreaHealth::Good(v));
}

#[test]
fn configuration_falls_back_to_backup_then_factory_default() {
    let (fx, m) = provisioned();
    assert_eq!(
        m.load_config().unwrap().source,
        ConfigSource::FactoryDefault
    );
    m.save_config(b"one").unwrap();
    m.save_config(b"two").unwrap();
    let p = m.status().meta.primary_device();
    let c = m.load_config().unwrap();
    assert_eq!(
        (c.data.as_slice(), c.source),
        (&b"two"[..], ConfigSource::Stored { device: p })
    );
    let l = m.layout();
    let cfg = l.config.offset(&l.geometry) + 13;
    fx.card.devs[p].flip_bit(cfg, 0).unwrap();
    assert_eq!(
        m.load_config().unwrap().source,
        ConfigSource::Stored { device: 1 - p }
    );
    fx.card.devs[1 - p].flip_bit(cfg, 0).unwrap();
    let c = m.load_config().unwrap();
    assert_eq!(
        (c.data.as_slice(), c.source),
        (&b"one"[..], ConfigSource::Backup { device: p })
    );
    let bak = l.config_backup.offset(&l.geometry) + 13;
    fx.card.devs[0].flip_bit(bak, 0).unwrap();
    fx.card.devs[1].flip_bit(bak, 0).unwrap();
    let c = m.load_config().unwrap();
    assert_eq!(c.source, ConfigSource::FactoryDefault);
    assert_eq!(c.data, fx.card.opts.factory_config);
    m.restore_factory_config().unwrap();
    assert_eq!(
        m.load_config().unwrap().source,
        ConfigSource::Stored { device: p }
    );
}

#[test]
fn the_checker_catches_a_wrong_or_corrupt_image() {
    let (fx, m) = provisioned();
    let b = m.boot(NOW).unwrap();
    assert!(check_booted(&fx, &m, &b, &[2]).is_err(), "v1 is not v2");
    let cur = b.booted.area;
    flip_in_area(&fx, &m, 0, cur);
    flip_in_area(&fx, &m, 1, cur);
    assert!(check_booted(&fx, &m, &b, &[1]).is_err());
}

#[test]
fn file_backed_card_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixture::new().unwrap();
    let rail = hitless_image::PowerRail::new();
    let open = || {
        let devs = [0, 1].map(|i| {
            SimFlash::file(
                &dir.path().join(format!("nvs{i}.bin")),
                SWEEP_GEOMETRY,
                rail.clone(),
            )
            .unwrap()
        });
        ImageManager::open(devs, fx.card.opts.clone()).unwrap()
    };
    let m = open();
    let _ = m.boot(NOW);
    m.install_package(&fx.v1.full[..], NOW, false).unwrap();
    drop(m);
    let m = open();
    assert_eq!(m.boot(NOW).unwrap().booted.manifest, fx.v1.manifest);
}

#[test]
fn a_trial_that_fails_its_self_test_rolls_back_at_once() {
    let (fx, m) = provisioned();
    // Outside a trial there is nothing to abandon.
    assert!(matches!(
        m.fail_trial(RollbackCause::SelfTest),
        Err(ImageError::NotInTrial)
    ));
    m.install_package(&fx.v2.full[..], NOW, false).unwrap();
    m.activate().unwrap();
    let b = m.boot(NOW).unwrap();
    assert!(b.booted.trial);
    m.take_notices();
    let back = m.fail_trial(RollbackCause::SelfTest).unwrap();
    assert_eq!(back.manifest.version, 1);
    assert!(!back.trial);
    assert!(m.take_notices().iter().any(|n| matches!(
        n,
        Notice::RolledBack {
            cause: RollbackCause::SelfTest,
            version: 1
        }
    )));
    // The flag is cleared: the next boot runs v1, not another trial.
    let b = m.boot(NOW).unwrap();
    assert!(!b.booted.trial);
    check_booted(&fx, &m, &b, &[1]).unwrap();
}
