//! The card's software image manager (seed 002; tracker issue 18): two
//! redundant NVS devices, each with a current and an alternate context
//! area, signed packages with a manifest (SGC), full and partial upgrades
//! mirrored from the primary to the secondary device, trial boot with
//! automatic rollback, and boot-time integrity checks that repair one
//! device from the other. See `docs/images.md`.
//!
//! | module | what |
//! |---|---|
//! | [`flash`] | the [`Nvs`] trait and the simulated NOR device with power-cut injection |
//! | [`manifest`] | the manifest (SGC): components, kinds, modules, SHA-256 |
//! | [`package`] | the signed package format: builder, keys, verifying reader |
//! | [`layout`] | the NVS layout of a device and the block-level writer |
//! | [`manager`] | the [`ImageManager`]: boot, install, mirror, activation, trial boot, mark-good, rollback |
//! | [`txn`] | semaphores and transaction ids (claims 57–61) |
//! | [`config`] | the configuration with its backup and factory default (claims 53–56) |
//! | [`bench`] | the power-cut sweep and the benchmark figures |
//! | [`serve`] | serving components to modules: TFTP ([`serve::tftp`]) and HTTP ([`serve::http`]) |
//! | [`fetch`] | the streaming, resumable HTTP download of a package |
#![forbid(unsafe_code)]

pub mod bench;
pub mod config;
pub mod fetch;
pub mod flash;
pub mod layout;
pub mod manager;
pub mod manifest;
pub mod package;
pub mod serve;
pub mod txn;

pub use config::{ConfigSource, LoadedConfig};
pub use flash::{Geometry, Nvs, PowerRail, SimFlash};
pub use layout::{FlashStats, Layout};
pub use manager::{
    AreaHealth, BootReport, Booted, Health, ImageManager, InstallReport, Notice, Options,
    RollbackCause,
};
pub use manifest::{Component, ComponentKind, Manifest};
pub use package::{PackageBuilder, PackageLimits};
pub use serve::{ComponentSource, FixedSource, ServerHandle};
pub use txn::{Access, TxnId};

/// Everything that can go wrong in the image manager.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The card lost power during or before this flash operation.
    #[error("power cut")]
    PowerCut,
    /// A flash access outside the device.
    #[error("flash access at {offset:#x} is outside the device")]
    OutOfRange { offset: u64 },
    /// A program that crosses a page boundary.
    #[error("program of {len} bytes at {offset:#x} crosses a page")]
    CrossesPage { offset: u64, len: usize },
    /// A program that would set a bit (0 → 1) without an erase.
    #[error("program at {offset:#x} would set bits that only an erase sets")]
    ProgramSetsBits { offset: u64 },
    /// A file-backed device's I/O.
    #[error("flash file I/O")]
    Io(#[from] std::io::Error),
    /// A geometry that cannot hold the layout.
    #[error("bad geometry: {0}")]
    BadGeometry(&'static str),
    /// The two devices differ in geometry.
    #[error("the two NVS devices have different geometries")]
    GeometryMismatch,

    /// Not a package (magic) or an unknown package format.
    #[error("not a hitless package (bad magic or format {0})")]
    BadPackage(u16),
    /// The package ended early.
    #[error("package truncated")]
    Truncated,
    /// Bytes after the last component.
    #[error("package has data after its last component")]
    TrailingData,
    /// A size from the package above its bound.
    #[error("{what} of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// The package carries no signature.
    #[error("package is not signed")]
    Unsigned,
    /// Signed by a key this card does not trust.
    #[error("package signed by an untrusted key {key_id}")]
    UntrustedKey { key_id: String },
    /// The signature does not verify.
    #[error("package signature does not verify")]
    BadSignature,
    /// The manifest does not parse or breaks a rule.
    #[error("bad manifest: {0}")]
    BadManifest(String),
    /// A component's bytes do not match the manifest's SHA-256.
    #[error("component {name} does not match its SHA-256")]
    ComponentChecksum { name: String },
    /// The package's `expires` is in the past.
    #[error("package expired at {expires} (now {now})")]
    Expired { expires: u64, now: u64 },
    /// Anti-rollback: the package is older than what is installed.
    #[error("package version {offered} is lower than the installed {installed} (use force)")]
    Rollback { installed: u64, offered: u64 },
    /// A partial package omits a component the current context does not hold.
    #[error("partial package omits {name}, which the current context does not hold unchanged")]
    MissingBase { name: String },

    /// `boot()` has not run since the manager was opened.
    #[error("the card has not booted")]
    NotBooted,
    /// Both devices' current context areas are corrupt or blank.
    #[error("no valid image on either device: needs a fresh download")]
    NeedsFreshDownload,
    /// No verified image in the alternate context area.
    #[error("the alternate context area holds no image")]
    NoAlternate,
    /// An install or activation while a trial boot is pending.
    #[error("a trial boot is in progress")]
    TrialInProgress,
    /// mark-good outside a trial boot of the alternate image.
    #[error("not running a trial boot")]
    NotInTrial,
    /// mark-good after the trial's deadline.
    #[error("the trial boot's deadline {deadline} has passed (now {now})")]
    TrialExpired { deadline: u64, now: u64 },
    /// A device's copy of an area does not match the metadata.
    #[error("device {device}: {what}")]
    Corrupt { device: usize, what: String },
    /// mirror or commit without an install in this transaction.
    #[error("no install staged in this transaction")]
    NotStaged,
    /// commit before the install was mirrored to the secondary.
    #[error("the install has not been mirrored to the secondary")]
    NotMirrored,
    /// The running image has no component of that name.
    #[error("no component {0} in the running image")]
    NoComponent(String),
    /// What was just written does not read back as written.
    #[error("verification after write failed on device {device}")]
    VerifyFailed { device: usize },

    /// Another transaction holds the NVS past the timeout.
    #[error("the NVS is busy with another transaction")]
    Busy,
    /// A transaction id that has ended (or belongs to an earlier boot).
    #[error("transaction {0:#x} is stale")]
    StaleTransaction(u64),
    /// A transaction id this manager never issued.
    #[error("transaction {0:#x} is foreign")]
    ForeignTransaction(u64),
    /// A transaction of the wrong kind for this operation.
    #[error("the transaction does not grant {0}")]
    WrongAccess(&'static str),
}
