//! The power-cut sweep (MCUboot's simulator way) and the benchmark figures.
//!
//! [`powercut_sweep`] runs each operation of the image manager once on a
//! simulated card to count its flash operations N, then for every k in
//! 0..N restores the card, cuts the power at the k-th program/erase, powers
//! on, boots, and checks that the card runs a valid image that is exactly
//! the old or the new one (manifest equal, every component read back equal
//! to the release's bytes, both devices' copies verified after the boot's
//! repairs), and that the operation then completes. A cut point whose boot
//! fails or runs anything else counts as *bricked*.
//!
//! [`bench_lines`] gives `cargo xtask bench` its `name = value` lines.

use crate::flash::{Geometry, PowerRail, SimFlash};
use crate::manager::{AreaHealth, BootReport, ImageManager, Options};
use crate::manifest::{ComponentKind, Manifest};
use crate::package::{generate_key, PackageBuilder};
use crate::txn::{Access, TxnId};
use crate::ImageError;
use ed25519_dalek::SigningKey;
use rand::SeedableRng;
use std::time::Instant;

/// "Now" for the simulated card (Unix seconds).
pub const NOW: u64 = 1_800_000_000;

/// A card of two simulated devices on one power rail.
pub struct TestCard {
    pub rail: PowerRail,
    pub devs: [SimFlash; 2],
    pub key: SigningKey,
    pub opts: Options,
    blank: Vec<u8>,
}

impl TestCard {
    /// Two erased in-memory devices of geometry `g`.
    pub fn new(g: Geometry) -> Result<Self, ImageError> {
        let rail = PowerRail::new();
        let devs = [
            SimFlash::memory(g, rail.clone())?,
            SimFlash::memory(g, rail.clone())?,
        ];
        let key = generate_key(&mut rand::rngs::StdRng::seed_from_u64(7));
        let opts = Options::new(vec![key.verifying_key()]);
        let blank = devs[0].snapshot()?;
        Ok(TestCard {
            rail,
            devs,
            key,
            opts,
            blank,
        })
    }

    /// A manager over the card (a power-on: nothing in memory survives).
    pub fn open(&self) -> Result<ImageManager<SimFlash>, ImageError> {
        ImageManager::open(self.devs.clone(), self.opts.clone())
    }

    /// Both devices' contents.
    pub fn snapshot(&self) -> Result<[Vec<u8>; 2], ImageError> {
        Ok([self.devs[0].snapshot()?, self.devs[1].snapshot()?])
    }

    /// Put back what [`snapshot`](Self::snapshot) took.
    pub fn restore(&self, s: &[Vec<u8>; 2]) -> Result<(), ImageError> {
        self.devs[0].restore(&s[0])?;
        self.devs[1].restore(&s[1])
    }

    /// Erase both devices.
    pub fn format(&self) -> Result<(), ImageError> {
        self.devs[0].restore(&self.blank)?;
        self.devs[1].restore(&self.blank)
    }
}

/// One software version: its components and packages.
#[derive(Clone, Debug)]
pub struct Release {
    pub manifest: Manifest,
    pub components: Vec<(String, Vec<u8>)>,
    /// The full signed package.
    pub full: Vec<u8>,
    builder: PackageBuilder,
}

impl Release {
    /// A release of `version` whose components `(name, kind, size, seed)`
    /// hold bytes derived from their seed (same seed, same bytes).
    pub fn new(
        key: &SigningKey,
        version: u64,
        parts: &[(&str, ComponentKind, usize, u64)],
    ) -> Self {
        let mut b = PackageBuilder::new(version, NOW + 1_000_000);
        let mut components = Vec::new();
        for (name, kind, size, seed) in parts {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let data: Vec<u8> = (0..*size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            b = b.component(name, *kind, &seed.to_string(), &["card"], data.clone());
            components.push((name.to_string(), data));
        }
        Release {
            manifest: b.manifest().clone(),
            components,
            full: b.build_signed(key),
            builder: b,
        }
    }

    /// A partial package against `base`: carries only changed components.
    pub fn partial(&self, key: &SigningKey, base: &Manifest) -> Vec<u8> {
        self.builder.clone().partial_against(base).build_signed(key)
    }
}

/// The geometry of the sweep's card: 4 KiB blocks, 256-byte pages, 96 KiB.
pub const SWEEP_GEOMETRY: Geometry = Geometry {
    block_size: 4096,
    page_size: 256,
    blocks: 24,
};

/// The card and the two releases a sweep moves between.
pub struct Fixture {
    pub card: TestCard,
    pub v1: Release,
    pub v2: Release,
    /// v2 as a partial package against v1 (the firmware is unchanged).
    pub v2_partial: Vec<u8>,
}

impl Fixture {
    /// A small card; v1 → v2 changes the gateware and the configuration
    /// component, not the firmware.
    pub fn new() -> Result<Self, ImageError> {
        let card = TestCard::new(SWEEP_GEOMETRY)?;
        let v1 = Release::new(
            &card.key,
            1,
            &[
                ("gateware", ComponentKind::Gateware, 5000, 11),
                ("firmware", ComponentKind::Firmware, 3000, 21),
                ("config", ComponentKind::Configuration, 600, 31),
            ],
        );
        let v2 = Release::new(
            &card.key,
            2,
            &[
                ("gateware", ComponentKind::Gateware, 5200, 12),
                ("firmware", ComponentKind::Firmware, 3000, 21),
                ("config", ComponentKind::Configuration, 640, 32),
            ],
        );
        let v2_partial = v2.partial(&card.key, &v1.manifest);
        Ok(Fixture {
            card,
            v1,
            v2,
            v2_partial,
        })
    }

    fn release(&self, version: u64) -> Option<&Release> {
        [&self.v1, &self.v2]
            .into_iter()
            .find(|r| r.manifest.version == version)
    }
}

type Mgr = ImageManager<SimFlash>;

/// Check what a boot loaded: exactly one of `allowed`'s releases, every
/// component read back equal to it, and both devices' copies of the
/// running area good. `Err` says why not.
pub fn check_booted(
    fx: &Fixture,
    m: &Mgr,
    rep: &BootReport,
    allowed: &[u64],
) -> Result<u64, String> {
    let r = allowed
        .iter()
        .filter_map(|v| fx.release(*v))
        .find(|r| r.manifest == rep.booted.manifest)
        .ok_or_else(|| {
            format!(
                "booted version {} which is not one of {allowed:?} (or a mix)",
                rep.booted.manifest.version
            )
        })?;
    let t = m.begin(Access::ReadCurrent).map_err(|e| e.to_string())?;
    for (name, data) in &r.components {
        let got = m.read_component(t, name).map_err(|e| e.to_string())?;
        if &got != data {
            return Err(format!("component {name} differs from release bytes"));
        }
    }
    m.abort(t).map_err(|e| e.to_string())?;
    let h = m.health().map_err(|e| e.to_string())?;
    for d in 0..2 {
        if h.areas[d][rep.booted.area] != AreaHealth::Good(r.manifest.version) {
            return Err(format!(
                "device {d}'s copy of the running area is {:?}",
                h.areas[d][rep.booted.area]
            ));
        }
    }
    Ok(r.manifest.version)
}

fn fail(what: String) -> ImageError {
    ImageError::BadManifest(what)
}

fn expect(cond: bool, what: &str) -> Result<(), ImageError> {
    if cond {
        Ok(())
    } else {
        Err(fail(what.to_string()))
    }
}

// ---- card states the scenarios start from (each from a blank card) ----

fn base(fx: &Fixture) -> Result<(), ImageError> {
    let m = fx.card.open()?;
    match m.boot(NOW) {
        Err(ImageError::NeedsFreshDownload) => {}
        other => return Err(fail(format!("blank card booted: {other:?}"))),
    }
    m.install_package(&fx.v1.full[..], NOW, false)?;
    m.boot(NOW)?;
    Ok(())
}

fn with_v2_alternate(fx: &Fixture) -> Result<(), ImageError> {
    base(fx)?;
    let m = fx.card.open()?;
    m.boot(NOW)?;
    m.install_package(&fx.v2_partial[..], NOW, false)?;
    Ok(())
}

fn activated(fx: &Fixture) -> Result<(), ImageError> {
    with_v2_alternate(fx)?;
    let m = fx.card.open()?;
    m.boot(NOW)?;
    m.activate()
}

fn in_trial(fx: &Fixture) -> Result<(), ImageError> {
    activated(fx)?;
    fx.card.open()?.boot(NOW)?;
    Ok(())
}

fn v2_good(fx: &Fixture) -> Result<(), ImageError> {
    in_trial(fx)?;
    let m = fx.card.open()?;
    m.boot(NOW)?;
    m.mark_good(NOW)
}

fn trial_exhausted(fx: &Fixture) -> Result<(), ImageError> {
    activated(fx)?;
    for _ in 0..fx.card.opts.boot_limit {
        let rep = fx.card.open()?.boot(NOW)?;
        expect(rep.booted.trial, "trial boot expected while counting")?;
    }
    Ok(())
}

fn corrupt_current(fx: &Fixture, primary: bool) -> Result<(), ImageError> {
    base(fx)?;
    let m = fx.card.open()?;
    m.boot(NOW)?;
    let st = m.status();
    let l = m.layout();
    let p = st.meta.primary_device();
    let d = if primary { p } else { 1 - p };
    let off = l.areas[st.meta.current_area()].offset(&l.geometry)
        + u64::from(l.geometry.block_size)
        + 100;
    fx.card.devs[d].flip_bit(off, 2)
}

fn no_prepare(_: &Fixture, _: &Mgr) -> Result<Option<TxnId>, ImageError> {
    Ok(None)
}

fn alternate_is(m: &Mgr, version: u64) -> Result<bool, ImageError> {
    let h = m.health()?;
    let alt = 1 - h.current_area;
    Ok((0..2).all(|d| h.areas[d][alt] == AreaHealth::Good(version)))
}

/// One operation swept at every cut point.
struct Scenario {
    name: &'static str,
    setup: fn(&Fixture) -> Result<(), ImageError>,
    /// Boot before the operation (false: the operation is the boot).
    boot_first: bool,
    prepare: fn(&Fixture, &Mgr) -> Result<Option<TxnId>, ImageError>,
    op: fn(&Fixture, &Mgr, Option<TxnId>) -> Result<(), ImageError>,
    /// Versions the card may boot after a cut.
    allowed: &'static [u64],
    /// Complete the operation after the cut (repeat it if it did not take
    /// effect) and check the final state.
    finish: fn(&Fixture, &Mgr, &BootReport) -> Result<(), ImageError>,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "install (primary)",
            setup: base,
            boot_first: true,
            prepare: no_prepare,
            op: |fx, m, _| {
                let t = m.begin(Access::WriteAlternate)?;
                m.install(t, &fx.v2_partial[..], NOW, false).map(|_| ())
            },
            allowed: &[1],
            finish: |fx, m, _| {
                m.install_package(&fx.v2_partial[..], NOW, false)?;
                expect(alternate_is(m, 2)?, "v2 in the alternate on both devices")
            },
        },
        Scenario {
            name: "mirror",
            setup: base,
            boot_first: true,
            prepare: |fx, m| {
                let t = m.begin(Access::WriteAlternate)?;
                m.install(t, &fx.v2_partial[..], NOW, false)?;
                Ok(Some(t))
            },
            op: |_, m, t| {
                let t = t.ok_or(ImageError::NotStaged)?;
                m.mirror(t)?;
                m.commit(t).map(|_| ())
            },
            allowed: &[1],
            finish: |fx, m, _| {
                if !alternate_is(m, 2)? {
                    m.install_package(&fx.v2_partial[..], NOW, false)?;
                }
                expect(alternate_is(m, 2)?, "v2 in the alternate on both devices")
            },
        },
        Scenario {
            name: "activation",
            setup: with_v2_alternate,
            boot_first: true,
            prepare: no_prepare,
            op: |_, m, _| m.activate(),
            allowed: &[1, 2],
            finish: |_, m, rep| {
                if !rep.booted.trial {
                    m.activate()?;
                }
                let r = m.boot(NOW)?;
                expect(
                    r.booted.trial && r.booted.manifest.version == 2 || rep.booted.trial,
                    "a trial boot of v2",
                )
            },
        },
        Scenario {
            name: "trial boot",
            setup: activated,
            boot_first: false,
            prepare: no_prepare,
            op: |_, m, _| m.boot(NOW).map(|_| ()),
            allowed: &[1, 2],
            finish: |_, m, rep| {
                if !rep.booted.trial {
                    m.activate()?;
                    m.boot(NOW)?;
                }
                m.mark_good(NOW)?;
                let r = m.boot(NOW)?;
                expect(
                    !r.booted.trial && r.booted.manifest.version == 2,
                    "v2 current after mark-good",
                )
            },
        },
        Scenario {
            name: "mark-good",
            setup: in_trial,
            boot_first: true,
            prepare: no_prepare,
            op: |_, m, _| m.mark_good(NOW),
            allowed: &[2],
            finish: |_, m, rep| {
                if rep.booted.trial {
                    m.mark_good(NOW)?;
                }
                let r = m.boot(NOW)?;
                expect(
                    !r.booted.trial && r.booted.manifest.version == 2,
                    "v2 current after mark-good",
                )
            },
        },
        Scenario {
            name: "rollback (manual)",
            setup: v2_good,
            boot_first: true,
            prepare: no_prepare,
            op: |_, m, _| m.rollback().map(|_| ()),
            allowed: &[1, 2],
            finish: |_, m, rep| {
                if rep.booted.manifest.version == 2 {
                    m.rollback()?;
                }
                let r = m.boot(NOW)?;
                expect(
                    r.booted.manifest.version == 1 && alternate_is(m, 2)?,
                    "v1 current, v2 alternate",
                )
            },
        },
        Scenario {
            name: "rollback (boot limit)",
            setup: trial_exhausted,
            boot_first: false,
            prepare: no_prepare,
            op: |_, m, _| m.boot(NOW).map(|_| ()),
            allowed: &[1],
            finish: |_, m, _| {
                let r = m.boot(NOW)?;
                expect(
                    !r.booted.trial && !m.status().meta.alt_boot && alternate_is(m, 2)?,
                    "v1 current, no trial pending",
                )
            },
        },
        Scenario {
            name: "repair of the secondary",
            setup: |fx| corrupt_current(fx, false),
            boot_first: false,
            prepare: no_prepare,
            op: |_, m, _| m.boot(NOW).map(|_| ()),
            allowed: &[1],
            finish: |_, _, _| Ok(()),
        },
        Scenario {
            name: "repair of the primary",
            setup: |fx| corrupt_current(fx, true),
            boot_first: false,
            prepare: no_prepare,
            op: |_, m, _| m.boot(NOW).map(|_| ()),
            allowed: &[1],
            finish: |_, _, _| Ok(()),
        },
        Scenario {
            name: "configuration save",
            setup: |fx| {
                base(fx)?;
                let m = fx.card.open()?;
                m.boot(NOW)?;
                m.save_config(b"{\"rate\":1}").map(|_| ())
            },
            boot_first: true,
            prepare: no_prepare,
            op: |_, m, _| m.save_config(b"{\"rate\":2}").map(|_| ()),
            allowed: &[1],
            finish: |_, m, _| {
                let c = m.load_config()?;
                expect(
                    c.data == b"{\"rate\":1}" || c.data == b"{\"rate\":2}",
                    "old or new configuration",
                )?;
                m.save_config(b"{\"rate\":2}")?;
                expect(
                    m.load_config()?.data == b"{\"rate\":2}",
                    "new configuration after the repeat",
                )
            },
        },
    ]
}

/// The outcome of [`powercut_sweep`].
#[derive(Clone, Debug, Default)]
pub struct PowerCutSummary {
    /// Cut points tested, all operations.
    pub points: u64,
    /// Cut points after which the card did not boot the old or the new image.
    pub bricked: u64,
    /// Cut points after which the operation could not be completed.
    pub failed_repeats: u64,
    /// (operation, its flash operations N = its cut points).
    pub per_operation: Vec<(&'static str, u64)>,
    /// What went wrong, for the first few failures.
    pub failures: Vec<String>,
}

fn sweep_one(fx: &Fixture, sc: &Scenario, out: &mut PowerCutSummary) -> Result<(), ImageError> {
    let rail = &fx.card.rail;
    rail.power_on();
    fx.card.format()?;
    (sc.setup)(fx)?;
    let snap = fx.card.snapshot()?;
    let start = |fx: &Fixture| -> Result<(Mgr, Option<TxnId>), ImageError> {
        let m = fx.card.open()?;
        if sc.boot_first {
            m.boot(NOW)?;
        }
        let t = (sc.prepare)(fx, &m)?;
        Ok((m, t))
    };
    let (m, t) = start(fx)?;
    let before = rail.ops();
    (sc.op)(fx, &m, t)?;
    let n = rail.ops() - before;
    drop(m);
    let note = |out: &mut PowerCutSummary, s: String| {
        tracing::error!("{s}");
        if out.failures.len() < 20 {
            out.failures.push(s);
        }
    };
    for k in 0..n {
        fx.card.restore(&snap)?;
        rail.power_on();
        let (m, t) = start(fx)?;
        rail.cut_at(k);
        let r = (sc.op)(fx, &m, t);
        drop(m);
        if !rail.is_down() {
            note(out, format!("{}: cut {k} never happened ({r:?})", sc.name));
            out.bricked += 1;
            continue;
        }
        rail.power_on();
        let m = fx.card.open()?;
        let rep = match m.boot(NOW) {
            Ok(rep) => rep,
            Err(e) => {
                note(out, format!("{}: cut {k}: boot failed: {e}", sc.name));
                out.bricked += 1;
                continue;
            }
        };
        if let Err(why) = check_booted(fx, &m, &rep, sc.allowed) {
            note(out, format!("{}: cut {k}: {why}", sc.name));
            out.bricked += 1;
            continue;
        }
        if let Err(e) = (sc.finish)(fx, &m, &rep) {
            note(
                out,
                format!("{}: cut {k}: completing the operation: {e}", sc.name),
            );
            out.failed_repeats += 1;
        }
    }
    tracing::info!(operation = sc.name, cut_points = n, "power-cut sweep");
    out.points += n;
    out.per_operation.push((sc.name, n));
    Ok(())
}

/// Cut the power at every program/erase of install, mirror, activation,
/// trial boot, mark-good, manual and automatic rollback, boot repair and a
/// configuration save; see the module doc.
pub fn powercut_sweep() -> Result<PowerCutSummary, ImageError> {
    let fx = Fixture::new()?;
    let mut out = PowerCutSummary::default();
    for sc in scenarios() {
        sweep_one(&fx, &sc, &mut out)?;
    }
    fx.card.rail.power_on();
    Ok(out)
}

fn big_release(key: &SigningKey, version: u64, fw_seed: u64, total: usize) -> Release {
    Release::new(
        key,
        version,
        &[
            ("gateware", ComponentKind::Gateware, total * 3 / 4, 1),
            ("firmware", ComponentKind::Firmware, total / 8, fw_seed),
            ("config", ComponentKind::Configuration, total / 8, 3),
        ],
    )
}

fn bench_card(total: usize) -> Result<TestCard, ImageError> {
    let block = 4096u32;
    let area_blocks = (total as u32).div_ceil(block) + 8;
    TestCard::new(Geometry {
        block_size: block,
        page_size: 256,
        blocks: 4 + 2 * area_blocks,
    })
}

/// Install a full package of `mib` MiB (verify, write the primary, read
/// back, mirror, read back, commit) on a fresh card: MiB of components per
/// second of wall time.
pub fn install_mib_per_s(mib: usize) -> Result<f64, ImageError> {
    let total = mib << 20;
    let card = bench_card(total)?;
    let r = big_release(&card.key, 1, 2, total);
    let m = card.open()?;
    let _ = m.boot(NOW);
    let t0 = Instant::now();
    m.install_package(&r.full[..], NOW, false)?;
    let s = t0.elapsed().as_secs_f64();
    Ok(r.manifest.total_size() as f64 / f64::from(1u32 << 20) / s.max(1e-9))
}

/// Partial upgrades on a card with 256 KiB images, one component changed.
#[derive(Clone, Copy, Debug)]
pub struct PartialFigures {
    /// Component bytes written from the package for the one-component
    /// change ÷ the full package's component bytes.
    pub bytes_ratio: f64,
    /// Flash bytes programmed by that install ÷ by the full first install,
    /// in the steady state where the alternate holds the image before the
    /// current one (unchanged blocks already in place are skipped).
    pub flash_ratio: f64,
}

/// Measure [`PartialFigures`]: v1 fresh, v2 (firmware changed) installed,
/// activated, marked good; then v3 (firmware changed again) as a partial
/// package.
pub fn partial_figures() -> Result<PartialFigures, ImageError> {
    let total = 256 << 10;
    let card = bench_card(total)?;
    let v1 = big_release(&card.key, 1, 2, total);
    let v2 = big_release(&card.key, 2, 22, total);
    let v3 = big_release(&card.key, 3, 33, total);
    let m = card.open()?;
    let _ = m.boot(NOW);
    let first = m.install_package(&v1.full[..], NOW, false)?;
    m.boot(NOW)?;
    m.install_package(&v2.partial(&card.key, &v1.manifest)[..], NOW, false)?;
    m.activate()?;
    m.boot(NOW)?;
    m.mark_good(NOW)?;
    m.boot(NOW)?;
    let p = m.install_package(&v3.partial(&card.key, &v2.manifest)[..], NOW, false)?;
    Ok(PartialFigures {
        bytes_ratio: p.bytes_from_package as f64 / v3.manifest.total_size() as f64,
        flash_ratio: p.flash.bytes_programmed as f64 / first.flash.bytes_programmed as f64,
    })
}

/// The benchmark lines: `image_install_MiB_per_s`,
/// `image_partial_bytes_ratio`, `image_partial_flash_ratio`,
/// `image_powercut_points`, `image_bricked`.
pub fn bench_lines() -> Result<Vec<(String, f64)>, ImageError> {
    let speed = install_mib_per_s(4)?;
    let partial = partial_figures()?;
    let sweep = powercut_sweep()?;
    Ok(vec![
        ("image_install_MiB_per_s".into(), speed),
        ("image_partial_bytes_ratio".into(), partial.bytes_ratio),
        ("image_partial_flash_ratio".into(), partial.flash_ratio),
        ("image_powercut_points".into(), sweep.points as f64),
        (
            "image_bricked".into(),
            (sweep.bricked + sweep.failed_repeats) as f64,
        ),
    ])
}
