//! The image manager (seed 002's software version management module,
//! claims 10, 14–18, 25–27, 33–39, 45–51, 57–69): the only code that
//! touches the card's two NVS devices (claims 1, 14, 15).
//!
//! The metadata record ([`Meta`]) is the single source of truth for the
//! roles: which device is primary, which context area is current, what each
//! area holds (manifest SHA-256, length, version), and the trial-boot
//! state. The same record, with the same sequence number, is written to the
//! primary first and then to the secondary; the newest valid record on
//! either device wins at boot, and a device left behind by a power cut is
//! brought up to date. Images themselves are always checked against the
//! record by reading them back and hashing, at boot and after every write,
//! so a record can never make a half-written area bootable.
//!
//! Write ordering, the reason every power cut leaves the old or the new
//! image bootable:
//!
//! * install: the record first forgets the alternate area (if it held
//!   anything), then the primary's alternate area is written and read back,
//!   then mirrored to the secondary and read back, and only then the
//!   record names the new image in the alternate area (claims 34–39);
//! * activation sets the alternate boot flag in the record (claim 62);
//! * a trial boot counts itself in the record *before* it loads the
//!   alternate (U-Boot's bootcount); past the boot limit, or if the
//!   alternate does not verify, the boot rolls back instead;
//! * mark-good makes the alternate current in one record write (claim 64).

use crate::config::{self, ConfigSource, LoadedConfig};
use crate::flash::Nvs;
use crate::layout::{
    hash_range, read_record, write_block, write_record, BlockWriter, FlashStats, Layout, Record,
    CTX_MAGIC, META_MAGIC,
};
use crate::manifest::{ComponentKind, Manifest, Sha};
use crate::package::{read_package, PackageLimits};
use crate::txn::{Access, Guard, Transactions, TxnId};
use crate::ImageError;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// What a context area holds, as the metadata pins it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AreaInfo {
    /// SHA-256 of the manifest bytes stored in the area's header.
    pub manifest_sha: Sha,
    /// Their length.
    pub manifest_len: u32,
    /// The manifest's version (anti-rollback compares it).
    pub version: u64,
}

/// The metadata record (one per slot; see [`crate::layout`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Newer records have higher numbers; both devices share the count.
    pub seq: u64,
    /// The primary device, 0 or 1 (claim 26: a designation, not a device).
    pub primary: u8,
    /// The current context area, 0 or 1; the other is the alternate.
    pub current: u8,
    /// What each context area holds, `None` when empty or being written.
    pub areas: [Option<AreaInfo>; 2],
    /// The alternate boot flag (claim 62).
    pub alt_boot: bool,
    /// Trial boots of the alternate started so far (U-Boot's bootcount).
    pub boot_count: u32,
    /// Trial boots allowed before the automatic rollback (bootlimit).
    pub boot_limit: u32,
}

impl Meta {
    fn blank() -> Self {
        Meta {
            seq: 0,
            primary: 0,
            current: 0,
            areas: [None, None],
            alt_boot: false,
            boot_count: 0,
            boot_limit: 0,
        }
    }
    fn sane(&self) -> bool {
        self.primary < 2 && self.current < 2
    }
    /// The current context area.
    pub fn current_area(&self) -> usize {
        usize::from(self.current & 1)
    }
    /// The alternate context area.
    pub fn alternate_area(&self) -> usize {
        1 - self.current_area()
    }
    /// The primary device.
    pub fn primary_device(&self) -> usize {
        usize::from(self.primary & 1)
    }
}

/// The manager's settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Keys whose packages this card installs.
    pub trusted: Vec<VerifyingKey>,
    /// Trial boots of a newly activated image before the automatic rollback.
    pub boot_limit: u32,
    /// Seconds a trial boot has to be marked good.
    pub trial_window: u64,
    /// Blocks for the configuration (and as many for its backup).
    pub config_blocks: u32,
    /// The factory default configuration (claim 54).
    pub factory_config: Vec<u8>,
    /// How long a request waits for a semaphore before [`ImageError::Busy`].
    pub lock_timeout: Duration,
    /// Largest package header accepted.
    pub max_header: u32,
}

impl Options {
    /// Defaults: three trial boots, five minutes to mark good.
    pub fn new(trusted: Vec<VerifyingKey>) -> Self {
        Options {
            trusted,
            boot_limit: 3,
            trial_window: 300,
            config_blocks: 1,
            factory_config: b"{}".to_vec(),
            lock_timeout: Duration::from_secs(30),
            max_header: 64 * 1024,
        }
    }
}

/// The image the card is running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Booted {
    /// The context area it was loaded from.
    pub area: usize,
    pub manifest: Manifest,
    /// A trial boot of the alternate, not yet marked good.
    pub trial: bool,
    /// The trial's mark-good deadline (Unix seconds).
    pub deadline: Option<u64>,
}

/// Why a trial ended in a rollback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RollbackCause {
    /// Booted the boot limit times without mark-good.
    BootLimit,
    /// The alternate image failed verification on both devices.
    AlternateCorrupt,
    /// Not marked good before the deadline.
    Deadline,
    /// The operator asked.
    Manual,
    /// A component of the trial image failed its boot self-test (the
    /// platform's check, [`ImageManager::fail_trial`]).
    SelfTest,
}

/// Autonomous notices (claims 45, 51) and other events for the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Notice {
    /// An installed image changes a programmable device's gateware.
    GatewareChange { component: String, version: String },
    /// The card went back to the previous image.
    RolledBack { cause: RollbackCause, version: u64 },
    /// The primary was corrupt; the other device is now the primary.
    DesignationSwapped { primary: usize },
    /// A device's copy of an area was rewritten from the other device.
    Repaired { device: usize, area: usize },
}

/// What [`ImageManager::boot`] did.
#[derive(Clone, Debug)]
pub struct BootReport {
    pub booted: Booted,
    /// The primary device after the boot.
    pub primary: usize,
    /// The designations were swapped (claims 67, 69).
    pub swapped: bool,
    /// (device, area) copies rewritten from the other device.
    pub repaired: Vec<(usize, usize)>,
    /// The trial ended in a rollback.
    pub rollback: Option<RollbackCause>,
}

/// What an install wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InstallReport {
    pub version: u64,
    /// The context area written.
    pub area: usize,
    /// A fresh install into a card with no valid image (claims 66, 68).
    pub fresh: bool,
    /// Components whose checksums differ from the current manifest: written
    /// from the package (claims 47, 49).
    pub written: Vec<String>,
    /// Unchanged components, copied from the current context area (claim 48).
    pub copied: Vec<String>,
    /// Component bytes taken from the package and written (per device).
    pub bytes_from_package: u64,
    /// Component bytes copied from the current area (per device).
    pub bytes_copied: u64,
    /// Everything the install did to flash, both devices and metadata.
    pub flash: FlashStats,
}

/// The verdict on one device's copy of one context area.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum AreaHealth {
    /// The metadata says the area holds nothing.
    Empty,
    /// Verified: the manifest's version.
    Good(u64),
    /// Does not match the metadata; why.
    Corrupt(String),
}

/// Both devices' copies of both areas, verified now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    pub primary: usize,
    pub current_area: usize,
    /// `[device][area]`.
    pub areas: [[AreaHealth; 2]; 2],
}

/// The card's state as the metadata and the running image say.
#[derive(Clone, Debug)]
pub struct Status {
    pub booted: Option<Booted>,
    /// Both devices corrupt or blank: only a fresh install is accepted.
    pub needs_fresh_download: bool,
    pub meta: Meta,
}

#[derive(Debug)]
enum CardState {
    NotBooted,
    NeedsFresh,
    Running(Booted),
}

#[derive(Debug)]
struct Staged {
    txn: TxnId,
    area: usize,
    info: AreaInfo,
    blocks: u64,
    fresh: bool,
    mirrored: bool,
    report: InstallReport,
}

struct Inner<D> {
    devs: [D; 2],
    layout: Layout,
    state: CardState,
    meta: Meta,
    newest_slot: [Option<usize>; 2],
    max_seq: u64,
    staged: Option<Staged>,
    notices: Vec<Notice>,
    stats: FlashStats,
}

/// The card's image manager over its two NVS devices.
pub struct ImageManager<D: Nvs> {
    inner: Mutex<Inner<D>>,
    txns: Transactions,
    opts: Options,
}

type Verdict = Option<Result<Manifest, String>>;

fn good(v: &[[Verdict; 2]; 2], d: usize, a: usize) -> bool {
    matches!(v[d][a], Some(Ok(_)))
}

fn pair<D>(devs: &mut [D; 2], src: usize) -> (&mut D, &mut D) {
    let [a, b] = devs;
    if src == 0 {
        (a, b)
    } else {
        (b, a)
    }
}

/// Read a device's metadata slots: the newest valid record and its slot.
fn read_meta<D: Nvs>(
    dev: &mut D,
    layout: &Layout,
) -> Result<(Option<Meta>, Option<usize>), ImageError> {
    let mut best: (Option<Meta>, Option<usize>) = (None, None);
    for (slot, region) in layout.meta.iter().enumerate() {
        if let Record::Valid(b) = read_record(dev, *region, META_MAGIC)? {
            match serde_json::from_slice::<Meta>(&b) {
                Ok(m) if m.sane() => {
                    if best.0.as_ref().is_none_or(|o| m.seq > o.seq) {
                        best = (Some(m), Some(slot));
                    }
                }
                _ => tracing::warn!(slot, "metadata record with a valid checksum does not parse"),
            }
        }
    }
    Ok(best)
}

/// Verify one device's copy of `area` against `info`: the header, the
/// manifest's SHA-256 and every component's. `Ok(Err(why))` is corruption;
/// `Err` is a flash failure (a power cut), which is not a verdict.
pub fn verify_area<D: Nvs>(
    dev: &mut D,
    layout: &Layout,
    area: usize,
    info: &AreaInfo,
) -> Result<Result<Manifest, String>, ImageError> {
    let g = layout.geometry;
    let base = layout.areas[area].offset(&g);
    let mut head = [0u8; 12];
    dev.read(base, &mut head)?;
    if &head[..8] != CTX_MAGIC {
        return Ok(Err("no context header".into()));
    }
    let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if len != info.manifest_len || 12 + u64::from(len) > layout.area_bytes() {
        return Ok(Err("manifest length differs from the metadata".into()));
    }
    let mut mb = vec![0u8; len as usize];
    dev.read(base + 12, &mut mb)?;
    if Sha::of(&mb) != info.manifest_sha {
        return Ok(Err("manifest SHA-256 differs from the metadata".into()));
    }
    let m = match Manifest::from_bytes(&mb) {
        Ok(m) if m.version == info.version => m,
        Ok(_) => return Ok(Err("manifest version differs from the metadata".into())),
        Err(e) => return Ok(Err(e.to_string())),
    };
    let offs = match layout.placements(&m, mb.len()) {
        Ok((o, _)) => o,
        Err(e) => return Ok(Err(e.to_string())),
    };
    for (c, off) in m.components.iter().zip(offs) {
        if hash_range(dev, base + off, c.size)? != c.sha256 {
            return Ok(Err(format!("component {} fails its SHA-256", c.name)));
        }
    }
    Ok(Ok(m))
}

/// Copy the first `blocks` blocks of `area` from device `src` to the other.
fn copy_area<D: Nvs>(
    devs: &mut [D; 2],
    layout: &Layout,
    src: usize,
    area: usize,
    blocks: u64,
    stats: &mut FlashStats,
) -> Result<(), ImageError> {
    let (from, to) = pair(devs, src);
    let bs = layout.geometry.block_size;
    let mut buf = vec![0u8; bs as usize];
    let r = layout.areas[area];
    for b in 0..blocks.min(u64::from(r.blocks)) as u32 {
        let block = r.first_block + b;
        from.read(u64::from(block) * u64::from(bs), &mut buf)?;
        write_block(to, block, &buf, stats)?;
    }
    Ok(())
}

impl<D: Nvs> Inner<D> {
    /// Write `m` (with the next sequence number) to the primary, then to
    /// the secondary, each into the slot not holding its newest record.
    fn commit_meta(&mut self, mut m: Meta) -> Result<(), ImageError> {
        m.seq = self.max_seq.saturating_add(1);
        let body = serde_json::to_vec(&m).map_err(|e| ImageError::BadManifest(e.to_string()))?;
        let p = m.primary_device();
        for d in [p, 1 - p] {
            let slot = self.newest_slot[d].map_or(0, |s| 1 - s);
            write_record(
                &mut self.devs[d],
                self.layout.meta[slot],
                META_MAGIC,
                &body,
                &mut self.stats,
            )?;
            self.newest_slot[d] = Some(slot);
        }
        tracing::debug!(
            seq = m.seq,
            primary = p,
            current = m.current,
            alt_boot = m.alt_boot,
            "metadata committed"
        );
        self.max_seq = m.seq;
        self.meta = m;
        Ok(())
    }

    fn verify_all(&mut self) -> Result<[[Verdict; 2]; 2], ImageError> {
        let mut v: [[Verdict; 2]; 2] = Default::default();
        for (d, row) in v.iter_mut().enumerate() {
            for (a, cell) in row.iter_mut().enumerate() {
                if let Some(info) = self.meta.areas[a] {
                    *cell = Some(verify_area(&mut self.devs[d], &self.layout, a, &info)?);
                }
            }
        }
        Ok(v)
    }

    /// Verify `area` on both devices; error naming the first bad one.
    fn verify_both(&mut self, area: usize) -> Result<Manifest, ImageError> {
        let info = self.meta.areas[area].ok_or(ImageError::NoAlternate)?;
        let p = self.meta.primary_device();
        let mut out = None;
        for d in [p, 1 - p] {
            match verify_area(&mut self.devs[d], &self.layout, area, &info)? {
                Ok(m) => out = out.or(Some(m)),
                Err(what) => return Err(ImageError::Corrupt { device: d, what }),
            }
        }
        out.ok_or(ImageError::NoAlternate)
    }

    fn running(&self) -> Result<&Booted, ImageError> {
        match &self.state {
            CardState::Running(b) => Ok(b),
            _ => Err(ImageError::NotBooted),
        }
    }
}

impl<D: Nvs> ImageManager<D> {
    /// Open the card's two devices (same geometry). Nothing is read until
    /// [`boot`](Self::boot).
    pub fn open(devs: [D; 2], opts: Options) -> Result<Self, ImageError> {
        if devs[0].geometry() != devs[1].geometry() {
            return Err(ImageError::GeometryMismatch);
        }
        let layout = Layout::new(devs[0].geometry(), opts.config_blocks)?;
        Ok(ImageManager {
            inner: Mutex::new(Inner {
                devs,
                layout,
                state: CardState::NotBooted,
                meta: Meta::blank(),
                newest_slot: [None, None],
                max_seq: 0,
                staged: None,
                notices: Vec::new(),
                stats: FlashStats::default(),
            }),
            txns: Transactions::new(opts.lock_timeout),
            opts,
        })
    }

    // The device lock is claim 61's third semaphore: one context area at a time.
    fn lock(&self) -> MutexGuard<'_, Inner<D>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn switch(&self) -> Result<Guard<'_>, ImageError> {
        let id = self.txns.begin(Access::Switch)?;
        Ok(Guard {
            txns: &self.txns,
            id,
        })
    }

    /// The layout of each device.
    pub fn layout(&self) -> Layout {
        self.lock().layout
    }

    /// Everything written to flash since [`open`](Self::open).
    pub fn flash_stats(&self) -> FlashStats {
        self.lock().stats
    }

    /// Boot (claims 62, 65–69): read the metadata of both devices, run the
    /// trial-boot rules, verify the image to load on the primary and fall
    /// back to the secondary (swapping designations), bring a device whose
    /// metadata fell behind up to date, and repair every bad copy of an
    /// area from the good one. Ends every open transaction.
    ///
    /// Both devices' copies of the image to load corrupt (or a blank card):
    /// [`ImageError::NeedsFreshDownload`], and the manager then accepts a
    /// fresh install (claims 66, 68).
    pub fn boot(&self, now: u64) -> Result<BootReport, ImageError> {
        self.txns.reboot();
        let mut g = self.lock();
        g.state = CardState::NotBooted;
        g.staged = None;
        let mut metas: [Option<Meta>; 2] = [None, None];
        for (d, slot) in metas.iter_mut().enumerate() {
            let layout = g.layout;
            let (m, s) = read_meta(&mut g.devs[d], &layout)?;
            g.newest_slot[d] = s;
            *slot = m;
        }
        g.max_seq = metas.iter().flatten().map(|m| m.seq).max().unwrap_or(0);
        let Some(mut meta) = metas.iter().flatten().max_by_key(|m| m.seq).cloned() else {
            tracing::warn!("no valid metadata on either device: needs a fresh download");
            g.meta = Meta::blank();
            g.state = CardState::NeedsFresh;
            return Err(ImageError::NeedsFreshDownload);
        };
        let mut changed = metas
            .iter()
            .any(|m| m.as_ref().map(|m| m.seq) != Some(meta.seq));
        g.meta = meta.clone();
        let v = g.verify_all()?;
        let cur = meta.current_area();
        let alt = meta.alternate_area();
        let mut rollback = None;
        let mut trial = false;
        if meta.alt_boot {
            changed = true;
            if meta.boot_count >= meta.boot_limit {
                rollback = Some(RollbackCause::BootLimit);
            } else if !good(&v, 0, alt) && !good(&v, 1, alt) {
                rollback = Some(RollbackCause::AlternateCorrupt);
            } else {
                // Counted before loading: a boot that never completes counts.
                meta.boot_count += 1;
                trial = true;
            }
            if rollback.is_some() {
                meta.alt_boot = false;
                meta.boot_count = 0;
            }
        }
        let target = if trial { alt } else { cur };
        let mut p = meta.primary_device();
        let mut swapped = false;
        if !good(&v, p, target) {
            if good(&v, 1 - p, target) {
                tracing::warn!(
                    device = p,
                    area = target,
                    "primary's image is corrupt: the secondary becomes the primary"
                );
                p = 1 - p;
                meta.primary = p as u8;
                swapped = true;
                changed = true;
            } else {
                tracing::error!(
                    area = target,
                    "the image is corrupt on both devices: needs a fresh download"
                );
                g.state = CardState::NeedsFresh;
                return Err(ImageError::NeedsFreshDownload);
            }
        }
        if meta.areas[alt].is_some() && !good(&v, 0, alt) && !good(&v, 1, alt) {
            tracing::warn!(
                area = alt,
                "alternate image corrupt on both devices: forgotten"
            );
            meta.areas[alt] = None;
            changed = true;
        }
        if changed {
            g.commit_meta(meta.clone())?;
        }
        let mut repaired = Vec::new();
        for a in 0..2 {
            let Some(info) = meta.areas[a] else { continue };
            for d in 0..2 {
                if good(&v, d, a) || !good(&v, 1 - d, a) {
                    continue;
                }
                let blocks = match &v[1 - d][a] {
                    Some(Ok(m)) => g.layout.placements(m, info.manifest_len as usize)?.1,
                    _ => continue,
                };
                let layout = g.layout;
                let mut st = FlashStats::default();
                copy_area(&mut g.devs, &layout, 1 - d, a, blocks, &mut st)?;
                g.stats.add(&st);
                if verify_area(&mut g.devs[d], &layout, a, &info)?.is_err() {
                    return Err(ImageError::VerifyFailed { device: d });
                }
                tracing::info!(device = d, area = a, "repaired from the other device");
                repaired.push((d, a));
                g.notices.push(Notice::Repaired { device: d, area: a });
            }
        }
        if swapped {
            g.notices.push(Notice::DesignationSwapped { primary: p });
        }
        if let Some(cause) = rollback {
            tracing::warn!(?cause, "trial boot rolled back");
            let version = meta.areas[cur].map_or(0, |i| i.version);
            g.notices.push(Notice::RolledBack { cause, version });
        }
        let manifest = match &v[p][target] {
            Some(Ok(m)) => m.clone(),
            _ => return Err(ImageError::NeedsFreshDownload),
        };
        let booted = Booted {
            area: target,
            manifest,
            trial,
            deadline: trial.then(|| now.saturating_add(self.opts.trial_window)),
        };
        tracing::info!(
            version = booted.manifest.version,
            area = target,
            trial,
            primary = p,
            "booted"
        );
        g.state = CardState::Running(booted.clone());
        Ok(BootReport {
            booted,
            primary: p,
            swapped,
            repaired,
            rollback,
        })
    }

    /// Begin a transaction: wait for the semaphores `access` needs (claim 57).
    pub fn begin(&self, access: Access) -> Result<TxnId, ImageError> {
        self.txns.begin(access)
    }

    /// End a transaction without committing; a staged install is dropped
    /// (the metadata never named it).
    pub fn abort(&self, txn: TxnId) -> Result<(), ImageError> {
        self.txns
            .check(txn, Access::WriteAlternate)
            .or_else(|e| match e {
                ImageError::WrongAccess(_) => Ok(()),
                e => Err(e),
            })?;
        let mut g = self.lock();
        if g.staged.as_ref().is_some_and(|s| s.txn == txn) {
            g.staged = None;
        }
        drop(g);
        self.txns.end(txn)
    }

    /// Install a package into the primary's alternate context area (claims
    /// 34–39, 42, 47–49) and verify it by reading it back; [`mirror`] and
    /// [`commit`] finish the transaction.
    ///
    /// The package is read and verified whole (signature, trusted key,
    /// expiry, every component's SHA-256) before anything is written; so
    /// are anti-rollback (a version lower than the installed one needs
    /// `force`) and the partial-package check. Components whose checksums
    /// match the current manifest are copied from the current context area
    /// (claim 48); the others come from the package. A change of gateware
    /// raises [`Notice::GatewareChange`] (claims 45, 51).
    ///
    /// [`mirror`]: Self::mirror
    /// [`commit`]: Self::commit
    pub fn install<R: Read>(
        &self,
        txn: TxnId,
        package: R,
        now: u64,
        force: bool,
    ) -> Result<InstallReport, ImageError> {
        self.txns.check(txn, Access::WriteAlternate)?;
        let area_bytes = self.lock().layout.area_bytes();
        let limits = PackageLimits {
            max_header: self.opts.max_header,
            max_payload: area_bytes,
        };
        let pkg = read_package(package, &self.opts.trusted, now, limits)?;
        let mut g = self.lock();
        let (fresh, current) = match &g.state {
            CardState::NotBooted => return Err(ImageError::NotBooted),
            CardState::NeedsFresh => (true, None),
            CardState::Running(b) => {
                if b.trial || g.meta.alt_boot {
                    return Err(ImageError::TrialInProgress);
                }
                (false, Some(b.manifest.clone()))
            }
        };
        let meta = g.meta.clone();
        let cur = meta.current_area();
        let target = if fresh { cur } else { meta.alternate_area() };
        if let Some(cm) = &current {
            if pkg.manifest.version < cm.version && !force {
                return Err(ImageError::Rollback {
                    installed: cm.version,
                    offered: pkg.manifest.version,
                });
            }
        }
        let manifest_bytes = pkg.manifest.to_bytes();
        let layout = g.layout;
        let (_, blocks) = layout.placements(&pkg.manifest, manifest_bytes.len())?;
        let cur_offs = match (&current, meta.areas[cur]) {
            (Some(cm), Some(info)) => Some(layout.placements(cm, info.manifest_len as usize)?.0),
            _ => None,
        };
        // Where each component comes from: Some(offset in the current area)
        // to copy, None to take it from the package.
        let mut copy_from = Vec::with_capacity(pkg.manifest.components.len());
        for (c, payload) in pkg.manifest.components.iter().zip(&pkg.payloads) {
            let from = match (&current, &cur_offs) {
                (Some(cm), Some(co)) if cm.holds_unchanged(c) => cm
                    .components
                    .iter()
                    .position(|o| o.name == c.name)
                    .and_then(|i| co.get(i).copied()),
                _ => None,
            };
            if from.is_none() && payload.is_none() {
                return Err(ImageError::MissingBase {
                    name: c.name.clone(),
                });
            }
            copy_from.push(from);
        }
        // Nothing has been written up to here.
        let before = g.stats;
        if meta.areas[target].is_some() {
            let mut m = meta.clone();
            m.areas[target] = None;
            g.commit_meta(m)?;
        }
        let p = meta.primary_device();
        let g = &mut *g;
        let dev = &mut g.devs[p];
        let stats = &mut g.stats;
        let region = layout.areas[target];
        let cur_base = layout.areas[cur].offset(&layout.geometry);
        let mut w = BlockWriter::new(&layout.geometry, region);
        w.push(dev, stats, CTX_MAGIC)?;
        w.push(dev, stats, &(manifest_bytes.len() as u32).to_le_bytes())?;
        w.push(dev, stats, &manifest_bytes)?;
        w.align(dev, stats)?;
        let mut report = InstallReport {
            version: pkg.manifest.version,
            area: target,
            fresh,
            ..Default::default()
        };
        let bs = u64::from(layout.geometry.block_size);
        let mut chunk = vec![0u8; bs as usize];
        for ((c, payload), from) in pkg
            .manifest
            .components
            .iter()
            .zip(&pkg.payloads)
            .zip(&copy_from)
        {
            match (from, payload) {
                (Some(off), _) => {
                    let mut done = 0;
                    while done < c.size {
                        let n = bs.min(c.size - done) as usize;
                        dev.read(cur_base + off + done, &mut chunk[..n])?;
                        w.push(dev, stats, &chunk[..n])?;
                        done += n as u64;
                    }
                    report.copied.push(c.name.clone());
                    report.bytes_copied += c.size;
                }
                (None, Some(data)) => {
                    w.push(dev, stats, data)?;
                    report.written.push(c.name.clone());
                    report.bytes_from_package += c.size;
                }
                (None, None) => {
                    return Err(ImageError::MissingBase {
                        name: c.name.clone(),
                    })
                }
            }
            w.align(dev, stats)?;
        }
        let info = AreaInfo {
            manifest_sha: Sha::of(&manifest_bytes),
            manifest_len: manifest_bytes.len() as u32,
            version: pkg.manifest.version,
        };
        if let Err(why) = verify_area(dev, &layout, target, &info)? {
            tracing::error!(
                device = p,
                why,
                "read-back of the primary's alternate area failed"
            );
            return Err(ImageError::VerifyFailed { device: p });
        }
        for c in &pkg.manifest.components {
            let changed = current.as_ref().is_none_or(|cm| !cm.holds_unchanged(c));
            if c.kind == ComponentKind::Gateware && changed {
                tracing::warn!(component = %c.name, version = %c.version, "upgrade changes a programmable device");
                g.notices.push(Notice::GatewareChange {
                    component: c.name.clone(),
                    version: c.version.clone(),
                });
            }
        }
        let mut spent = g.stats;
        spent.erases -= before.erases;
        spent.programs -= before.programs;
        spent.bytes_programmed -= before.bytes_programmed;
        spent.blocks_skipped -= before.blocks_skipped;
        report.flash = spent;
        tracing::info!(version = info.version, area = target, written = ?report.written, copied = ?report.copied, "installed on the primary");
        g.staged = Some(Staged {
            txn,
            area: target,
            info,
            blocks,
            fresh,
            mirrored: false,
            report: report.clone(),
        });
        Ok(report)
    }

    /// Mirror the staged install from the primary's alternate area to the
    /// secondary's (claims 34, 36, 59) and read it back. The primary is
    /// only read meanwhile (claim 37).
    pub fn mirror(&self, txn: TxnId) -> Result<FlashStats, ImageError> {
        self.txns.check(txn, Access::WriteAlternate)?;
        let mut g = self.lock();
        let g = &mut *g;
        let st = g
            .staged
            .as_mut()
            .filter(|s| s.txn == txn)
            .ok_or(ImageError::NotStaged)?;
        let p = g.meta.primary_device();
        let mut stats = FlashStats::default();
        copy_area(&mut g.devs, &g.layout, p, st.area, st.blocks, &mut stats)?;
        if let Err(why) = verify_area(&mut g.devs[1 - p], &g.layout, st.area, &st.info)? {
            tracing::error!(device = 1 - p, why, "read-back of the mirror failed");
            return Err(ImageError::VerifyFailed { device: 1 - p });
        }
        st.mirrored = true;
        st.report.flash.add(&stats);
        g.stats.add(&stats);
        tracing::info!(area = st.area, "mirrored to the secondary");
        Ok(stats)
    }

    /// Name the mirrored image in the metadata and end the transaction.
    /// A fresh install becomes the current image (boot to run it); any
    /// other stays in the alternate area until activated.
    pub fn commit(&self, txn: TxnId) -> Result<InstallReport, ImageError> {
        self.txns.check(txn, Access::WriteAlternate)?;
        let mut g = self.lock();
        let Some(st) = g.staged.take_if(|s| s.txn == txn) else {
            return Err(ImageError::NotStaged);
        };
        if !st.mirrored {
            g.staged = Some(st);
            return Err(ImageError::NotMirrored);
        }
        let before = g.stats;
        let mut m = g.meta.clone();
        m.areas[st.area] = Some(st.info);
        if st.fresh {
            m.current = st.area as u8;
            m.alt_boot = false;
            m.boot_count = 0;
        }
        g.commit_meta(m)?;
        if st.fresh {
            g.state = CardState::NotBooted;
        }
        let mut report = st.report;
        report.flash.erases += g.stats.erases - before.erases;
        report.flash.programs += g.stats.programs - before.programs;
        report.flash.bytes_programmed += g.stats.bytes_programmed - before.bytes_programmed;
        drop(g);
        self.txns.end(txn)?;
        Ok(report)
    }

    /// Install, mirror and commit in one transaction; waits for any other
    /// install first (concurrent installs are serialized).
    pub fn install_package<R: Read>(
        &self,
        package: R,
        now: u64,
        force: bool,
    ) -> Result<InstallReport, ImageError> {
        let id = self.txns.begin(Access::WriteAlternate)?;
        let _guard = Guard {
            txns: &self.txns,
            id,
        };
        self.install(id, package, now, force)?;
        self.mirror(id)?;
        self.commit(id)
    }

    /// Activation (claim 62): verify the alternate on both devices and set
    /// the alternate boot flag; the next boot is a trial boot of it.
    pub fn activate(&self) -> Result<(), ImageError> {
        let _t = self.switch()?;
        let mut g = self.lock();
        if g.running()?.trial || g.meta.alt_boot {
            return Err(ImageError::TrialInProgress);
        }
        let alt = g.meta.alternate_area();
        g.verify_both(alt)?;
        let mut m = g.meta.clone();
        m.alt_boot = true;
        m.boot_count = 0;
        m.boot_limit = self.opts.boot_limit;
        g.commit_meta(m)?;
        tracing::info!(
            area = alt,
            "activated: next boot is a trial boot of the alternate"
        );
        Ok(())
    }

    /// Mark the trial image good (claims 62, 64): the alternate becomes
    /// the current area, the previous current the alternate.
    pub fn mark_good(&self, now: u64) -> Result<(), ImageError> {
        let _t = self.switch()?;
        let mut g = self.lock();
        let b = g.running()?.clone();
        if !b.trial {
            return Err(ImageError::NotInTrial);
        }
        if let Some(deadline) = b.deadline.filter(|d| now > *d) {
            return Err(ImageError::TrialExpired { deadline, now });
        }
        let mut m = g.meta.clone();
        m.current = b.area as u8;
        m.alt_boot = false;
        m.boot_count = 0;
        g.commit_meta(m)?;
        g.state = CardState::Running(Booted {
            trial: false,
            deadline: None,
            ..b
        });
        tracing::info!(
            area = g.meta.current,
            "marked good: the alternate is now current"
        );
        Ok(())
    }

    fn roll_back(g: &mut Inner<D>, cause: RollbackCause) -> Result<Booted, ImageError> {
        let b = g.running()?.clone();
        let mut m = g.meta.clone();
        let to = if b.trial || m.alt_boot {
            m.alt_boot = false;
            m.boot_count = 0;
            m.current_area()
        } else {
            let alt = m.alternate_area();
            g.verify_both(alt)?;
            m.current = alt as u8;
            alt
        };
        let manifest = g.verify_both(to)?;
        g.commit_meta(m)?;
        g.notices.push(Notice::RolledBack {
            cause,
            version: manifest.version,
        });
        tracing::warn!(?cause, version = manifest.version, "rolled back");
        let booted = Booted {
            area: to,
            manifest,
            trial: false,
            deadline: None,
        };
        g.state = CardState::Running(booted.clone());
        Ok(booted)
    }

    /// Manual rollback: during a trial, abandon it (back to the current
    /// image); otherwise make the alternate (the previous image) current
    /// again. The card reloads the returned image.
    pub fn rollback(&self) -> Result<Booted, ImageError> {
        let _t = self.switch()?;
        let mut g = self.lock();
        Self::roll_back(&mut g, RollbackCause::Manual)
    }

    /// The trial image does not work (claim 62: "if the new software has
    /// not loaded or is not functioning properly, then loading a previous
    /// software version"): the platform's boot self-test failed. Abandon
    /// the trial at once and run the current image; the card loads the
    /// returned image. [`ImageError::NotInTrial`] outside a trial.
    pub fn fail_trial(&self, cause: RollbackCause) -> Result<Booted, ImageError> {
        let _t = self.switch()?;
        let mut g = self.lock();
        if !g.running()?.trial {
            return Err(ImageError::NotInTrial);
        }
        Self::roll_back(&mut g, cause)
    }

    /// The trial's watchdog: past the deadline without mark-good, roll back.
    pub fn tick(&self, now: u64) -> Result<Option<RollbackCause>, ImageError> {
        let _t = self.switch()?;
        let mut g = self.lock();
        let expired = match &g.state {
            CardState::Running(b) => b.trial && b.deadline.is_some_and(|d| now > d),
            _ => false,
        };
        if !expired {
            return Ok(None);
        }
        Self::roll_back(&mut g, RollbackCause::Deadline)?;
        Ok(Some(RollbackCause::Deadline))
    }

    /// Read a component of the running image (for serving it to a module),
    /// checked against its SHA-256; from the secondary if the primary's
    /// copy is bad.
    pub fn read_component(&self, txn: TxnId, name: &str) -> Result<Vec<u8>, ImageError> {
        self.txns.check(txn, Access::ReadCurrent)?;
        let mut g = self.lock();
        let b = g.running()?.clone();
        let info = g.meta.areas[b.area].ok_or(ImageError::NotBooted)?;
        let (offs, _) = g
            .layout
            .placements(&b.manifest, info.manifest_len as usize)?;
        let (i, c) = b
            .manifest
            .components
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
            .ok_or_else(|| ImageError::NoComponent(name.to_string()))?;
        let off = g.layout.areas[b.area].offset(&g.layout.geometry) + offs[i];
        let p = g.meta.primary_device();
        for d in [p, 1 - p] {
            let mut data = vec![0u8; c.size as usize];
            g.devs[d].read(off, &mut data)?;
            if Sha::of(&data) == c.sha256 {
                return Ok(data);
            }
            tracing::warn!(
                device = d,
                component = name,
                "component copy fails its SHA-256"
            );
        }
        Err(ImageError::Corrupt {
            device: p,
            what: format!("component {name} on both devices"),
        })
    }

    /// Verify every area the metadata names on both devices.
    pub fn health(&self) -> Result<Health, ImageError> {
        let mut g = self.lock();
        let v = g.verify_all()?;
        let h = |x: &Verdict| match x {
            None => AreaHealth::Empty,
            Some(Ok(m)) => AreaHealth::Good(m.version),
            Some(Err(w)) => AreaHealth::Corrupt(w.clone()),
        };
        Ok(Health {
            primary: g.meta.primary_device(),
            current_area: g.meta.current_area(),
            areas: [[h(&v[0][0]), h(&v[0][1])], [h(&v[1][0]), h(&v[1][1])]],
        })
    }

    /// The metadata and the running image.
    pub fn status(&self) -> Status {
        let g = self.lock();
        Status {
            booted: match &g.state {
                CardState::Running(b) => Some(b.clone()),
                _ => None,
            },
            needs_fresh_download: matches!(g.state, CardState::NeedsFresh),
            meta: g.meta.clone(),
        }
    }

    /// Notices raised since the last call (claims 45, 51).
    pub fn take_notices(&self) -> Vec<Notice> {
        std::mem::take(&mut self.lock().notices)
    }

    /// Load the configuration (claims 53, 54, 56), saying where from.
    pub fn load_config(&self) -> Result<LoadedConfig, ImageError> {
        let mut g = self.lock();
        let layout = g.layout;
        let p = g.meta.primary_device();
        config::load(&mut g.devs, &layout, p, &self.opts.factory_config)
    }

    /// Save the configuration, keeping the previous one as the backup
    /// (claim 55); primary first, then secondary.
    pub fn save_config(&self, data: &[u8]) -> Result<FlashStats, ImageError> {
        let _t = self.switch()?;
        let mut g = self.lock();
        let layout = g.layout;
        if data.len() + crate::layout::RECORD_OVERHEAD
            > layout.config.len(&layout.geometry) as usize
        {
            return Err(ImageError::TooLarge {
                what: "configuration",
                size: data.len() as u64,
                limit: layout.config.len(&layout.geometry),
            });
        }
        let p = g.meta.primary_device();
        let st = config::save(&mut g.devs, &layout, p, data)?;
        g.stats.add(&st);
        Ok(st)
    }

    /// Make the factory default the stored configuration (claim 54).
    pub fn restore_factory_config(&self) -> Result<FlashStats, ImageError> {
        self.save_config(&self.opts.factory_config.clone())
    }

    /// Which source the configuration would load from.
    pub fn config_source(&self) -> Result<ConfigSource, ImageError> {
        Ok(self.load_config()?.source)
    }
}
