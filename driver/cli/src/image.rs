//! `hitless image ...`: the card's software images (seed 002, issue 18).
//! `status`, `install`, `activate`, `mark-good`, `rollback`, `reboot` and `serve`
//! talk to the card's image manager through the mailbox; `keygen` and
//! `pack` are local (the tools to make a signing key and a signed package).

use clap::Subcommand;
use hitless_driver::firmware::{Firmware, ImageReport, Installed};
use hitless_driver::Error;
use hitless_image::fetch::{fetch_to_file, FetchOptions};
use hitless_image::package::{generate_key, key_id};
use hitless_image::{ComponentKind, Manifest, PackageBuilder};
use hitless_proto::image::cause;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum ImageCmd {
    /// The running image, the trial state and both NVS devices' health.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Install a signed package (a file, or an http:// URL downloaded with
    /// resume) into the card's alternate context area; the card verifies
    /// it whole before it writes anything.
    Install {
        /// The package file or URL.
        package: String,
        /// Install a version lower than the running one (anti-rollback).
        #[arg(long)]
        force: bool,
        /// Where a URL's download is kept (resumed if interrupted;
        /// default: a file in the temporary directory named after the URL).
        #[arg(long)]
        download: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Activate the installed image: the card's next boot is a trial boot.
    Activate {
        #[arg(long)]
        json: bool,
    },
    /// The trial image works: make it current.
    MarkGood {
        #[arg(long)]
        json: bool,
    },
    /// Abandon a trial, or go back to the previous image.
    Rollback {
        #[arg(long)]
        json: bool,
    },
    /// Reboot the card: its image boots again (an activated one on trial);
    /// waits until the card answers again and prints its image state.
    Reboot {
        /// Seconds to wait for the card to answer again.
        #[arg(long, default_value_t = 60)]
        wait: u64,
        #[arg(long)]
        json: bool,
    },
    /// Make the card serve its running image's components over HTTP and
    /// TFTP (port 0: any free port); --stop to stop.
    Serve {
        /// HTTP address (host:port).
        #[arg(long)]
        http: Option<String>,
        /// TFTP address (host:port).
        #[arg(long)]
        tftp: Option<String>,
        /// Stop serving.
        #[arg(long, conflicts_with_all = ["http", "tftp"])]
        stop: bool,
        #[arg(long)]
        json: bool,
    },
    /// Make an ed25519 signing key: KEY (the secret, mode 0600) and
    /// KEY.pub (what a card trusts: `hitless-sim serve --image-trust`).
    Keygen {
        /// The secret key file to write.
        key: PathBuf,
    },
    /// Build and sign a package from component files.
    Pack {
        /// The signing key (from `hitless image keygen`).
        #[arg(long)]
        key: PathBuf,
        /// The package file to write.
        #[arg(long)]
        out: PathBuf,
        /// The package's version (anti-rollback compares it).
        #[arg(long)]
        version: u64,
        /// Days until the package expires.
        #[arg(long, default_value_t = 365)]
        expires_days: u64,
        /// Make it partial: omit components this manifest (a file, e.g.
        /// `curl http://card/manifest`) holds unchanged.
        #[arg(long)]
        base: Option<PathBuf>,
        /// Components: NAME:KIND:FILE[:MODULE,...] with KIND gateware,
        /// firmware, configuration or other.
        #[arg(required = true)]
        components: Vec<String>,
    },
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn bad(s: String) -> Error {
    Error::InvalidArgument(s)
}

/// The card's image state as `status` prints it.
#[derive(Serialize)]
struct StatusView {
    state: &'static str,
    version: Option<u64>,
    area: Option<u32>,
    trial: bool,
    deadline: Option<u64>,
    next_boot_is_trial: bool,
    boot_count: u32,
    boot_limit: u32,
    primary_device: u32,
    current_area: u32,
    /// `devices[d][a]`: "good v3", "empty", "corrupt v2".
    devices: Vec<Vec<String>>,
    last_rollback: Option<RollbackView>,
    components: Vec<ComponentView>,
    http: Option<String>,
    tftp: Option<String>,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct RollbackView {
    cause: &'static str,
    to_version: u64,
}

#[derive(Serialize)]
struct ComponentView {
    name: String,
    kind: ComponentKind,
    version: String,
    size: u64,
    sha256: String,
}

impl From<&ImageReport> for StatusView {
    fn from(r: &ImageReport) -> Self {
        let running = r.state == ImageReport::RUNNING;
        let components = Manifest::from_bytes(&r.manifest)
            .map(|m| {
                m.components
                    .iter()
                    .map(|c| ComponentView {
                        name: c.name.clone(),
                        kind: c.kind,
                        version: c.version.clone(),
                        size: c.size,
                        sha256: c.sha256.hex(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            state: r.state_name(),
            version: running.then_some(r.version),
            area: running.then_some(r.area),
            trial: r.trial,
            deadline: r.deadline,
            next_boot_is_trial: r.alt_boot && !r.trial,
            boot_count: r.boot_count,
            boot_limit: r.boot_limit,
            primary_device: r.primary,
            current_area: r.current_area,
            devices: r
                .areas
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|a| match a.state_name() {
                            "empty" => "empty".to_string(),
                            s => format!("{s} v{}", a.version),
                        })
                        .collect()
                })
                .collect(),
            last_rollback: r.last_rollback.map(|(c, v)| RollbackView {
                cause: cause::name(c),
                to_version: v,
            }),
            components,
            http: r.http.clone(),
            tftp: r.tftp.clone(),
            notes: r.notes.clone(),
        }
    }
}

fn print_status(r: &ImageReport, json: bool) -> Result<(), Error> {
    let v = StatusView::from(r);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| bad(e.to_string()))?
        );
        return Ok(());
    }
    match v.version {
        Some(ver) if v.trial => println!(
            "image: version {ver} from area {} ON TRIAL (boot {} of {}; mark good within {})",
            r.area,
            v.boot_count,
            v.boot_limit,
            v.deadline.map_or("-".into(), |d| format!(
                "{} s",
                d.saturating_sub(unix_now())
            ))
        ),
        Some(ver) => println!("image: version {ver} from area {} (current)", r.area),
        None => println!("image: {}", v.state),
    }
    if v.next_boot_is_trial {
        println!("  activated: the next card boot is a trial boot of the alternate area");
    }
    println!(
        "  primary device {}, current area {}",
        v.primary_device, v.current_area
    );
    for (d, row) in v.devices.iter().enumerate() {
        println!("  device {d}: area 0 {}, area 1 {}", row[0], row[1]);
    }
    if let Some(rb) = &v.last_rollback {
        println!(
            "  last rollback: to version {} ({})",
            rb.to_version, rb.cause
        );
    }
    for c in &v.components {
        println!(
            "  {:<12} {:<13} {:<8} {:>9} bytes  sha256 {}",
            c.name,
            format!("{:?}", c.kind).to_lowercase(),
            c.version,
            c.size,
            &c.sha256[..16]
        );
    }
    if let Some(h) = &v.http {
        println!("  serving HTTP on {h}");
    }
    if let Some(t) = &v.tftp {
        println!("  serving TFTP on {t}");
    }
    for n in &v.notes {
        println!("  note: {n}");
    }
    Ok(())
}

#[derive(Serialize)]
struct InstalledView<'a> {
    version: u64,
    area: u32,
    fresh: bool,
    written: &'a [String],
    copied: &'a [String],
    bytes_from_package: u64,
    bytes_copied: u64,
    flash_erases: u64,
    flash_programs: u64,
    notes: &'a [String],
}

fn bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what:>9} {{bar:40}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// A URL's download place: the same URL resumes into the same file.
fn download_path(url: &str) -> PathBuf {
    let name: String = url
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    std::env::temp_dir().join(format!("hitless-download-{name}"))
}

fn install(
    fw: &mut dyn Firmware,
    package: &str,
    force: bool,
    download: Option<PathBuf>,
    json: bool,
) -> Result<(), Error> {
    let (path, fetched) = if package.starts_with("http://") || package.starts_with("https://") {
        let path = download.unwrap_or_else(|| download_path(package));
        let b = bar(0, "download");
        fetch_to_file(
            package,
            &path,
            &FetchOptions::default(),
            &mut |held, total| {
                if let Some(t) = total {
                    b.set_length(t);
                }
                b.set_position(held);
            },
        )
        .map_err(|e| bad(format!("downloading {package}: {e}")))?;
        b.finish_and_clear();
        (path, true)
    } else {
        (PathBuf::from(package), false)
    };
    let mut f = std::fs::File::open(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let total = f
        .metadata()
        .map_err(|e| bad(format!("{}: {e}", path.display())))?
        .len();
    let b = bar(total, "install");
    let r = fw.image_install(&mut f, total, force, &mut |sent, _| b.set_position(sent));
    b.finish_and_clear();
    let i: Installed = r.map_err(|e| match e {
        Error::Firmware { detail, .. } => bad(format!(
            "the card refused the package, nothing was written: {}",
            detail.replace("(use force)", "(--force installs it anyway)")
        )),
        other => other,
    })?;
    if fetched {
        // Installed: the download is no longer needed.
        let _ = std::fs::remove_file(&path);
    }
    if json {
        let v = InstalledView {
            version: i.version,
            area: i.area,
            fresh: i.fresh,
            written: &i.written,
            copied: &i.copied,
            bytes_from_package: i.bytes_from_package,
            bytes_copied: i.bytes_copied,
            flash_erases: i.erases,
            flash_programs: i.programs,
            notes: &i.notes,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| bad(e.to_string()))?
        );
    } else {
        println!(
            "installed version {} in area {}{}: written {:?} ({} bytes), copied on the card {:?} ({} bytes); {} erases, {} page programs",
            i.version,
            i.area,
            if i.fresh { " (fresh install: now current)" } else { "" },
            i.written,
            i.bytes_from_package,
            i.copied,
            i.bytes_copied,
            i.erases,
            i.programs
        );
        for n in &i.notes {
            println!("note: {n}");
        }
        if !i.fresh {
            println!("next: `hitless image activate`, then restart the card");
        }
    }
    Ok(())
}

fn parse_kind(s: &str) -> Result<ComponentKind, Error> {
    Ok(match s {
        "gateware" => ComponentKind::Gateware,
        "firmware" => ComponentKind::Firmware,
        "configuration" | "config" => ComponentKind::Configuration,
        "other" => ComponentKind::Other,
        _ => {
            return Err(bad(format!(
                "component kind {s}: gateware, firmware, configuration or other"
            )))
        }
    })
}

fn read_hex32(path: &Path) -> Result<[u8; 32], Error> {
    let text =
        std::fs::read_to_string(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let t = text.trim();
    if t.len() != 64 {
        return Err(bad(format!("{}: not 64 hex digits", path.display())));
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&t[2 * i..2 * i + 2], 16)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
    }
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn keygen(key: &Path) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let k = generate_key(&mut rand::rngs::OsRng);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key)
        .map_err(|e| bad(format!("{}: {e}", key.display())))?;
    writeln!(f, "{}", hex(k.as_bytes())).map_err(|e| bad(format!("{}: {e}", key.display())))?;
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    let pubpath = PathBuf::from(p);
    std::fs::write(&pubpath, format!("{}\n", hex(k.verifying_key().as_bytes())))
        .map_err(|e| bad(format!("{}: {e}", pubpath.display())))?;
    println!(
        "key {} written to {} (secret) and {} (public: give it to the card)",
        hex(&key_id(&k.verifying_key())),
        key.display(),
        pubpath.display()
    );
    Ok(())
}

fn pack(
    key: &Path,
    out: &Path,
    version: u64,
    expires_days: u64,
    base: Option<&Path>,
    components: &[String],
) -> Result<(), Error> {
    let k = ed25519_dalek::SigningKey::from_bytes(&read_hex32(key)?);
    let expires = unix_now().saturating_add(expires_days.saturating_mul(86_400));
    let mut b = PackageBuilder::new(version, expires);
    for spec in components {
        let parts: Vec<&str> = spec.splitn(4, ':').collect();
        let [name, kind, file, rest @ ..] = parts.as_slice() else {
            return Err(bad(format!(
                "component {spec}: NAME:KIND:FILE[:MODULE,...]"
            )));
        };
        let data = std::fs::read(file).map_err(|e| bad(format!("{file}: {e}")))?;
        let modules: Vec<&str> = rest
            .first()
            .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        b = b.component(
            name,
            parse_kind(kind)?,
            &version.to_string(),
            &modules,
            data,
        );
    }
    if let Some(base) = base {
        let bytes = std::fs::read(base).map_err(|e| bad(format!("{}: {e}", base.display())))?;
        let m =
            Manifest::from_bytes(&bytes).map_err(|e| bad(format!("{}: {e}", base.display())))?;
        b = b.partial_against(&m);
    }
    // The manifest's own rules (names, count) before anything is written.
    Manifest::from_bytes(&b.manifest().to_bytes()).map_err(|e| bad(e.to_string()))?;
    let bytes = b.build_signed(&k);
    std::fs::write(out, &bytes).map_err(|e| bad(format!("{}: {e}", out.display())))?;
    println!(
        "package version {version}, {} components, {} bytes, signed by key {}: {}",
        b.manifest().components.len(),
        bytes.len(),
        hex(&key_id(&k.verifying_key())),
        out.display()
    );
    Ok(())
}

/// Reboot the card and wait (at most `limit`) until it answers again:
/// its image state after the boot.
pub fn reboot(
    fw: &dyn Fn() -> Result<Box<dyn Firmware>, Error>,
    limit: std::time::Duration,
) -> Result<ImageReport, Error> {
    let start = std::time::Instant::now();
    let mut f = fw()?;
    f.image_reboot()?;
    // The card answers, then goes down and ends this connection: only an
    // answer after that is the rebooted card's.
    while f.image_status().is_ok() {
        if start.elapsed() > limit {
            return Err(bad(format!(
                "the card answered the reboot but was still up after {limit:?}"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(f);
    loop {
        match fw().and_then(|mut f| f.image_status()) {
            Ok(r) => return Ok(r),
            Err(_) if start.elapsed() < limit => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => {
                return Err(bad(format!(
                    "the card did not answer within {limit:?} of its reboot: {e}"
                )))
            }
        }
    }
}

/// Whether the command needs the card.
pub fn needs_card(cmd: &ImageCmd) -> bool {
    !matches!(cmd, ImageCmd::Keygen { .. } | ImageCmd::Pack { .. })
}

/// Run `hitless image ...`; `fw` opens the card's firmware.
pub fn run(cmd: ImageCmd, fw: &dyn Fn() -> Result<Box<dyn Firmware>, Error>) -> Result<(), Error> {
    match cmd {
        ImageCmd::Keygen { key } => keygen(&key),
        ImageCmd::Pack {
            key,
            out,
            version,
            expires_days,
            base,
            components,
        } => pack(
            &key,
            &out,
            version,
            expires_days,
            base.as_deref(),
            &components,
        ),
        ImageCmd::Status { json } => print_status(&fw()?.image_status()?, json),
        ImageCmd::Install {
            package,
            force,
            download,
            json,
        } => install(fw()?.as_mut(), &package, force, download, json),
        ImageCmd::Activate { json } => {
            let r = fw()?.image_activate()?;
            if !json {
                println!("activated: the next card boot is a trial boot (restart the card, then `hitless image mark-good`)");
            }
            print_status(&r, json)
        }
        ImageCmd::MarkGood { json } => {
            let r = fw()?.image_mark_good()?;
            if !json {
                println!("marked good: version {} is current", r.version);
            }
            print_status(&r, json)
        }
        ImageCmd::Rollback { json } => {
            let r = fw()?.image_rollback()?;
            if !json {
                println!("rolled back: version {} runs", r.version);
            }
            print_status(&r, json)
        }
        ImageCmd::Reboot { wait, json } => {
            let r = reboot(fw, std::time::Duration::from_secs(wait))?;
            print_status(&r, json)
        }
        ImageCmd::Serve {
            http,
            tftp,
            stop,
            json,
        } => {
            if !stop && http.is_none() && tftp.is_none() {
                return Err(bad("give --http ADDR and/or --tftp ADDR, or --stop".into()));
            }
            let r = fw()?.image_serve(http, tftp)?;
            print_status(&r, json)
        }
    }
}
