//! The card's software image manager inside `hitless-sim serve` (seed
//! 002, issue 18): the card owns its two simulated NVS flash devices
//! (`STATE_DIR/nvs0.flash`, `nvs1.flash`, created erased on first start),
//! boots its image at every card boot (process start, warm reset, power
//! cycle: integrity check, repair, trial boot, rollback), runs each
//! booted image's self-test, and answers the mailbox's `IMAGE_*`
//! requests. Only this module touches the NVS (claims 1, 14, 15): the
//! host reaches it through the mailbox alone.
//!
//! The boot self-test stands in for what a real card's firmware does once
//! loaded: the simulated card "runs" each firmware component, and a
//! component holding the line `selftest=fail` fails (a deliberately
//! broken firmware, for tests and the demo); a gateware component must
//! not be empty. A trial image that fails is abandoned in the same boot
//! and the previous image runs (claim 62), without the operator.
//!
//! The booted image also decides the card's behaviour on the pair's link:
//! a firmware component holding the line `link_schema=N` makes the card
//! speak link schema N (`hitless_proto::link`, 1 to the newest this build
//! knows), taken when the replicated card starts (its boot). The
//! simulator's binary holds the code of every schema; the image selects
//! which one the card runs, so installing, activating and rebooting into
//! another package really changes what the card says on the link (the
//! rolling upgrade of a pair, docs/images.md). Without the line the card
//! speaks the newest schema; a schema this build does not know fails the
//! self-test (a trial of it rolls back).

use hitless_firmware::manager::HostMemory;
use hitless_hdl::contract::MAX_MESSAGE;
use hitless_image::manager::Meta;
use hitless_image::serve::http::{serve_http, HttpOptions};
use hitless_image::serve::tftp::{serve_tftp, TftpOptions};
use hitless_image::{
    AreaHealth, ComponentKind, ComponentSource, Geometry, ImageError, ImageManager, Notice,
    Options, PowerRail, RollbackCause, ServerHandle, SimFlash,
};
use hitless_proto::image::{cause, AreaReport, ImageReport, InstallProgress, Installed};
use hitless_proto::mailbox::Pending;
use hitless_proto::message::{Failure, Request, Response};
use hitless_proto::msg::Code;
use hitless_proto::tlv::Message;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Largest chunk of a package one IMAGE_INSTALL moves.
pub const MAX_CHUNK: u32 = 4 << 20;
/// Notes kept for IMAGE_STATUS (the newest).
const MAX_NOTES: usize = 16;
/// The line that makes a simulated firmware component fail its self-test.
pub const SELFTEST_FAIL: &str = "selftest=fail";
/// The start of the line naming the link schema a firmware speaks.
pub const LINK_SCHEMA_LINE: &str = "link_schema=";

/// The link schema a firmware component's text names: `None` without a
/// `link_schema=` line, `Err` for one this build cannot speak.
pub fn firmware_link_schema(text: &[u8]) -> Option<Result<u32, String>> {
    let text = String::from_utf8_lossy(text);
    let value = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(LINK_SCHEMA_LINE))?;
    let newest = hitless_proto::link::SCHEMA;
    Some(match value.trim().parse::<u32>() {
        Ok(v) if (1..=newest).contains(&v) => Ok(v),
        _ => Err(format!(
            "{LINK_SCHEMA_LINE}{} (this card speaks link schemas 1 to {newest})",
            value.trim()
        )),
    })
}

/// How the card's image manager is set up (`hitless-sim serve --image-*`).
#[derive(Clone, Debug)]
pub struct ImageConfig {
    /// Keys whose packages the card installs.
    pub trusted: Vec<ed25519_dalek::VerifyingKey>,
    /// Size of each NVS device in MiB.
    pub flash_mib: u32,
    /// Trial boots before the automatic rollback.
    pub boot_limit: u32,
    /// Seconds a trial boot has to be marked good.
    pub trial_window: u64,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            trusted: Vec::new(),
            flash_mib: 8,
            boot_limit: 3,
            trial_window: 300,
        }
    }
}

/// Why the image manager could not start.
#[derive(Debug, thiserror::Error)]
pub enum CardImageError {
    #[error("NVS device {path}")]
    Flash {
        path: String,
        #[source]
        source: ImageError,
    },
    #[error("image manager")]
    Manager(#[from] ImageError),
}

struct Upload {
    total: u64,
    data: Vec<u8>,
}

/// What a card does to reboot (`IMAGE_REBOOT`), called once the request
/// is answered: `hitless-sim serve` stops and starts itself again.
pub type RebootHook = Box<dyn Fn() + Send>;

/// The card's image manager and what it serves.
pub struct CardImage {
    mgr: Arc<ImageManager<SimFlash>>,
    upload: Option<Upload>,
    http: Option<ServerHandle>,
    tftp: Option<ServerHandle>,
    last_rollback: Option<(RollbackCause, u64)>,
    notes: Vec<String>,
    max_package: u64,
    reboot: Option<RebootHook>,
    reboot_asked: bool,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn cause_code(c: RollbackCause) -> u32 {
    match c {
        RollbackCause::BootLimit => cause::BOOT_LIMIT,
        RollbackCause::AlternateCorrupt => cause::ALTERNATE_CORRUPT,
        RollbackCause::Deadline => cause::DEADLINE,
        RollbackCause::Manual => cause::MANUAL,
        RollbackCause::SelfTest => cause::SELF_TEST,
    }
}

/// The result code a refused image request answers with; the detail is
/// the image manager's own message.
fn code_of(e: &ImageError) -> Code {
    use ImageError as E;
    match e {
        E::Unsigned | E::UntrustedKey { .. } | E::BadSignature => Code::AuthFailed,
        E::Rollback { .. } => Code::Permission,
        E::TooLarge { .. } => Code::NoSpace,
        E::PowerCut
        | E::OutOfRange { .. }
        | E::CrossesPage { .. }
        | E::ProgramSetsBits { .. }
        | E::Io(_)
        | E::Corrupt { .. }
        | E::VerifyFailed { .. }
        | E::Busy => Code::Device,
        _ => Code::Invalid,
    }
}

fn refuse(e: &ImageError) -> Failure {
    Failure::new(code_of(e), e.to_string())
}

impl CardImage {
    /// Open (or create) the card's two NVS devices in `state_dir` and
    /// boot the image.
    pub fn open(state_dir: &Path, cfg: &ImageConfig) -> Result<Self, CardImageError> {
        let geometry = Geometry {
            block_size: 4096,
            page_size: 256,
            blocks: cfg.flash_mib.max(1) * 256,
        };
        let rail = PowerRail::new();
        let dev = |i: usize| {
            let path = state_dir.join(format!("nvs{i}.flash"));
            SimFlash::file(&path, geometry, rail.clone()).map_err(|source| CardImageError::Flash {
                path: path.display().to_string(),
                source,
            })
        };
        let mut opts = Options::new(cfg.trusted.clone());
        opts.boot_limit = cfg.boot_limit.max(1);
        opts.trial_window = cfg.trial_window;
        let mgr = ImageManager::open([dev(0)?, dev(1)?], opts)?;
        let max_package = mgr.layout().area_bytes() + 128 * 1024;
        let mut me = Self {
            mgr: Arc::new(mgr),
            upload: None,
            http: None,
            tftp: None,
            last_rollback: None,
            notes: Vec::new(),
            max_package,
            reboot: None,
            reboot_asked: false,
        };
        me.boot();
        Ok(me)
    }

    fn note(&mut self, s: String) {
        self.notes.push(s);
        let n = self.notes.len();
        if n > MAX_NOTES {
            self.notes.drain(..n - MAX_NOTES);
        }
    }

    fn collect_notices(&mut self) {
        for n in self.mgr.take_notices() {
            let s = match &n {
                Notice::GatewareChange { component, version } => {
                    format!("gateware change: {component} {version} (reprogram the FPGA)")
                }
                Notice::RolledBack { cause, version } => {
                    self.last_rollback = Some((*cause, *version));
                    format!(
                        "rolled back to version {version}: {}",
                        hitless_proto::image::cause::name(cause_code(*cause))
                    )
                }
                Notice::DesignationSwapped { primary } => {
                    format!("the primary's image was corrupt: device {primary} is now the primary")
                }
                Notice::Repaired { device, area } => {
                    format!("device {device} area {area} repaired from the other device")
                }
            };
            self.note(s);
        }
    }

    /// A card boot: integrity check and repair, trial boot or rollback,
    /// then the booted image's self-test (a failing trial is abandoned).
    pub fn boot(&mut self) {
        self.upload = None;
        match self.mgr.boot(now()) {
            Ok(r) => {
                tracing::info!(
                    version = r.booted.manifest.version,
                    trial = r.booted.trial,
                    "image booted"
                );
                let test = self.self_test();
                match (r.booted.trial, test) {
                    (_, Ok(())) => {}
                    (true, Err(why)) => {
                        tracing::warn!(why, "the trial image failed its self-test: rolling back");
                        self.note(format!(
                            "version {} failed its boot self-test: {why}",
                            r.booted.manifest.version
                        ));
                        if let Err(e) = self.mgr.fail_trial(RollbackCause::SelfTest) {
                            tracing::error!(error = %e, "rollback after a failed self-test");
                            self.note(format!("rollback after the failed self-test: {e}"));
                        }
                    }
                    (false, Err(why)) => {
                        tracing::error!(why, "the running image fails its self-test");
                        self.note(format!(
                            "the running version {} fails its self-test: {why}",
                            r.booted.manifest.version
                        ));
                    }
                }
            }
            Err(ImageError::NeedsFreshDownload) => {
                tracing::warn!("no valid image on the NVS: waiting for a fresh install");
            }
            Err(e) => {
                tracing::error!(error = %e, "image boot");
                self.note(format!("boot: {e}"));
            }
        }
        self.collect_notices();
    }

    /// The booted image's self-test (see the module doc).
    fn self_test(&self) -> Result<(), String> {
        let m = self.mgr.manifest().map_err(|e| e.to_string())?;
        for c in &m.components {
            let data = self
                .mgr
                .component(&c.name)
                .map_err(|e| format!("{}: {e}", c.name))?;
            match c.kind {
                ComponentKind::Firmware
                    if String::from_utf8_lossy(&data)
                        .lines()
                        .any(|l| l.trim() == SELFTEST_FAIL) =>
                {
                    return Err(format!("firmware {} reports {SELFTEST_FAIL}", c.name));
                }
                ComponentKind::Firmware => {
                    if let Some(Err(why)) = firmware_link_schema(&data) {
                        return Err(format!("firmware {}: {why}", c.name));
                    }
                }
                ComponentKind::Gateware if data.is_empty() => {
                    return Err(format!("gateware {} is empty", c.name));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The link schema the running image's firmware names (`None`: no
    /// image, no `link_schema=` line, or one this build cannot speak:
    /// the card's newest).
    pub fn link_schema(&self) -> Option<u32> {
        let m = self.mgr.manifest().ok()?;
        m.components
            .iter()
            .filter(|c| c.kind == ComponentKind::Firmware)
            .find_map(|c| {
                let data = self.mgr.component(&c.name).ok()?;
                firmware_link_schema(&data)?.ok()
            })
    }

    /// The running image's version (0: none).
    pub fn running_version(&self) -> u64 {
        self.mgr.manifest().map_or(0, |m| m.version)
    }

    /// How this card reboots (`IMAGE_REBOOT`); without a hook the request
    /// is refused.
    pub fn set_reboot_hook(&mut self, hook: RebootHook) {
        self.reboot = Some(hook);
    }

    /// After a request's answer is in the mailbox: a reboot it asked for
    /// starts now.
    pub fn after_answer(&mut self) {
        if std::mem::take(&mut self.reboot_asked) {
            if let Some(h) = &self.reboot {
                tracing::info!("rebooting the card (IMAGE_REBOOT)");
                h();
            }
        }
    }

    /// The trial's watchdog (called while the card idles).
    pub fn tick(&mut self) {
        match self.mgr.tick(now()) {
            Ok(Some(_)) => self.collect_notices(),
            Ok(None) | Err(ImageError::NotBooted) => {}
            Err(e) => tracing::warn!(error = %e, "trial watchdog"),
        }
    }

    /// The image state now (both devices verified).
    pub fn report(&self) -> ImageReport {
        let st = self.mgr.status();
        let meta: &Meta = &st.meta;
        let mut r = ImageReport {
            state: if st.booted.is_some() {
                ImageReport::RUNNING
            } else if st.needs_fresh_download {
                ImageReport::NEEDS_FRESH
            } else {
                ImageReport::NOT_BOOTED
            },
            alt_boot: meta.alt_boot,
            boot_count: meta.boot_count,
            boot_limit: meta.boot_limit,
            primary: meta.primary_device() as u32,
            current_area: meta.current_area() as u32,
            last_rollback: self.last_rollback.map(|(c, v)| (cause_code(c), v)),
            http: self.http.as_ref().map(|h| h.local_addr().to_string()),
            tftp: self.tftp.as_ref().map(|h| h.local_addr().to_string()),
            notes: self.notes.clone(),
            ..Default::default()
        };
        if let Some(b) = &st.booted {
            r.version = b.manifest.version;
            r.area = b.area as u32;
            r.trial = b.trial;
            r.deadline = b.deadline;
            r.manifest = b.manifest.to_bytes();
        }
        match self.mgr.health() {
            Ok(h) => {
                for (d, row) in h.areas.iter().enumerate() {
                    for (a, cell) in row.iter().enumerate() {
                        let version = meta.areas[a].map_or(0, |i| i.version);
                        r.areas[d][a] = match cell {
                            AreaHealth::Empty => AreaReport::default(),
                            AreaHealth::Good(_) => AreaReport {
                                state: AreaReport::GOOD,
                                version,
                            },
                            AreaHealth::Corrupt(why) => {
                                r.notes.push(format!("device {d} area {a}: {why}"));
                                AreaReport {
                                    state: AreaReport::CORRUPT,
                                    version,
                                }
                            }
                        };
                    }
                }
            }
            Err(e) => r.notes.push(format!("health check: {e}")),
        }
        r
    }

    fn install_chunk(
        &mut self,
        host: &mut dyn HostMemory,
        total: u64,
        offset: u64,
        addr: u64,
        len: u32,
        force: bool,
    ) -> Result<InstallProgress, Failure> {
        let bad = |s: String| Failure::new(Code::Invalid, s);
        if offset == 0 {
            if total == 0 {
                return Err(bad("an empty package".into()));
            }
            if total > self.max_package {
                return Err(Failure::new(
                    Code::NoSpace,
                    format!(
                        "a package of {total} bytes does not fit the card's context area ({} bytes at most)",
                        self.max_package
                    ),
                ));
            }
            let cap = usize::try_from(total).unwrap_or(0);
            self.upload = Some(Upload {
                total,
                data: Vec::with_capacity(cap),
            });
        }
        let Some(up) = self.upload.as_mut() else {
            return Err(bad(format!(
                "no upload in progress: start at offset 0, not {offset}"
            )));
        };
        let held = up.data.len() as u64;
        if up.total != total || offset != held {
            return Err(bad(format!(
                "chunk at {offset} of {total}: the card holds {held} bytes of {}",
                up.total
            )));
        }
        if len == 0 || len > MAX_CHUNK || offset + u64::from(len) > total {
            return Err(bad(format!(
                "chunk of {len} bytes at {offset} of {total} (1 to {MAX_CHUNK} bytes, within the package)"
            )));
        }
        let mut chunk = vec![0u8; len as usize];
        host.read(addr, &mut chunk).map_err(|e| {
            Failure::new(
                Code::HostMemory,
                format!("package chunk: {}", hitless_firmware::manager::chain(&e)),
            )
        })?;
        up.data.extend_from_slice(&chunk);
        let received = up.data.len() as u64;
        if received < total {
            return Ok(InstallProgress {
                received,
                installed: None,
            });
        }
        let Some(up) = self.upload.take() else {
            return Err(bad("upload vanished".into()));
        };
        // Verified whole (signature, key, expiry, checksums, anti-rollback)
        // before anything is written.
        let rep = self
            .mgr
            .install_package(&up.data[..], now(), force)
            .map_err(|e| {
                tracing::warn!(error = %e, "package refused");
                refuse(&e)
            })?;
        tracing::info!(
            version = rep.version,
            fresh = rep.fresh,
            "package installed"
        );
        let gateware: Vec<String> = self
            .mgr
            .take_notices()
            .into_iter()
            .filter_map(|n| match n {
                Notice::GatewareChange { component, version } => Some(format!(
                    "gateware change: {component} {version} (reprogram the FPGA)"
                )),
                _ => None,
            })
            .collect();
        for g in &gateware {
            self.note(g.clone());
        }
        if rep.fresh {
            // A fresh install on a blank card is the current image: boot it.
            self.boot();
        }
        Ok(InstallProgress {
            received,
            installed: Some(Installed {
                version: rep.version,
                area: rep.area as u32,
                fresh: rep.fresh,
                written: rep.written,
                copied: rep.copied,
                bytes_from_package: rep.bytes_from_package,
                bytes_copied: rep.bytes_copied,
                erases: rep.flash.erases,
                programs: rep.flash.programs,
                notes: gateware,
            }),
        })
    }

    fn serve(&mut self, http: Option<&str>, tftp: Option<&str>) -> Result<(), Failure> {
        if let Some(h) = self.http.take() {
            h.stop();
        }
        if let Some(t) = self.tftp.take() {
            t.stop();
        }
        let parse = |what: &str, a: &str| {
            a.parse::<SocketAddr>()
                .map_err(|e| Failure::new(Code::Invalid, format!("{what} address {a}: {e}")))
        };
        let src: Arc<dyn ComponentSource> = self.mgr.clone();
        if let Some(a) = http {
            let addr = parse("HTTP", a)?;
            let h = serve_http(addr, src.clone(), HttpOptions::default())
                .map_err(|e| Failure::new(Code::Invalid, format!("HTTP on {addr}: {e}")))?;
            self.http = Some(h);
        }
        if let Some(a) = tftp {
            let addr = parse("TFTP", a)?;
            let t = serve_tftp(addr, src, TftpOptions::default())
                .map_err(|e| Failure::new(Code::Invalid, format!("TFTP on {addr}: {e}")))?;
            self.tftp = Some(t);
        }
        Ok(())
    }

    /// Run one image request.
    pub fn handle(&mut self, host: &mut dyn HostMemory, req: Request) -> Result<Response, Failure> {
        let report = |s: &Self| Ok(Response::Image(Box::new(s.report())));
        match req {
            Request::ImageStatus => report(self),
            Request::ImageInstall {
                total,
                offset,
                addr,
                len,
                force,
            } => {
                let r = self.install_chunk(host, total, offset, addr, len, force);
                if r.is_err() {
                    // A refused chunk ends the upload: start again at 0.
                    self.upload = None;
                }
                r.map(|p| Response::ImageInstall(Box::new(p)))
            }
            Request::ImageActivate => {
                self.mgr.activate().map_err(|e| refuse(&e))?;
                report(self)
            }
            Request::ImageMarkGood => {
                self.mgr.mark_good(now()).map_err(|e| refuse(&e))?;
                report(self)
            }
            Request::ImageRollback => {
                self.mgr.rollback().map_err(|e| refuse(&e))?;
                self.collect_notices();
                report(self)
            }
            Request::ImageServe { http, tftp } => {
                self.serve(http.as_deref(), tftp.as_deref())?;
                report(self)
            }
            Request::ImageReboot => {
                if self.reboot.is_none() {
                    return Err(Failure::new(
                        Code::UnknownRequest,
                        "this card cannot reboot itself (no reboot hook): restart its process",
                    ));
                }
                self.reboot_asked = true;
                report(self)
            }
            other => Err(Failure::new(
                Code::UnknownRequest,
                format!("kind {} is not an image request", other.kind()),
            )),
        }
    }

    /// Stop serving (the card process ends).
    pub fn shutdown(&mut self) {
        if let Some(h) = self.http.take() {
            h.stop();
        }
        if let Some(t) = self.tftp.take() {
            t.stop();
        }
    }
}

/// The kind of the request `p` names, when it is an image request.
pub fn image_kind(host: &mut dyn HostMemory, p: &Pending) -> Option<u8> {
    let mut head = [0u8; 4];
    if p.req_len < 4 || host.read(p.req_addr, &mut head).is_err() {
        return None;
    }
    Request::is_image(head[3]).then_some(head[3])
}

/// The mailbox step for an image request: read it, run it, write the
/// response; the result code and the response length (as
/// `hitless_firmware::mailbox::run`).
pub fn run(img: &mut CardImage, host: &mut dyn HostMemory, p: &Pending, kind: u8) -> (Code, u32) {
    if p.req_len == 0 || p.req_len > MAX_MESSAGE {
        return (Code::BadMessage, 0);
    }
    let mut raw = vec![0u8; p.req_len as usize];
    if let Err(e) = host.read(p.req_addr, &mut raw) {
        tracing::warn!(
            "request unreadable: {}",
            hitless_firmware::manager::chain(&e)
        );
        return (Code::HostMemory, 0);
    }
    let result = Message::decode(&raw)
        .map_err(|e| Failure::new(Code::BadMessage, e.to_string()))
        .and_then(|m| Request::decode(&m).map_err(|e| Failure::new(e.code(), e.to_string())))
        .and_then(|r| img.handle(host, r));
    let (code, message) = match result {
        Ok(r) => (Code::Ok, r.encode(kind).finish()),
        Err(f) => (f.code, f.encode(kind).finish()),
    };
    let len = message.len() as u32;
    if len > p.resp_cap {
        return (Code::TooSmall, len);
    }
    if let Err(e) = host.write(p.resp_addr, &message) {
        tracing::warn!(
            "response unwritable: {}",
            hitless_firmware::manager::chain(&e)
        );
        return (Code::HostMemory, 0);
    }
    (code, len)
}
