//! `hitless`: checkpoint and restore application state on a hitless card.
//!
//! Most commands talk to the card's firmware (records per application and
//! object, reboot stages, warm/cold tiers, the append log) and need the
//! application's credentials: the first `open` (or any first command) of an
//! application makes the card hand out its secret, which is saved under
//! `--credentials` (mode 0600) and used from then on. `raw ...` drives the
//! controller directly, for cards without firmware.

use clap::{Parser, Subcommand};
use hitless_driver::card::{status_of, tier_status};
use hitless_driver::firmware::{Client, OpenFlags, Secret, Session};
use hitless_driver::{Card, CardIo, Error, Options, Tier};
use hitless_firmware::auth::SECRET_BYTES;
use hitless_hdl::contract::{perm, reg, PT_ENTRIES};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The local simulated card (`hitless-sim serve --socket` this path).
const DEFAULT_CARD: &str = "vfio-user:/tmp/hitless/card.sock";
/// Protection entry and tag `raw` commands use for the region window.
const ENTRY: u32 = 1;
const TAG: u32 = 0x0C11;

#[derive(Parser)]
#[command(
    name = "hitless",
    version,
    about = "Checkpoint and restore application state on a hitless card"
)]
struct Cli {
    /// The card: vfio-user:SOCKET (simulated), vfio:DDDD:BB:DD.F (PCIe),
    /// uio:REGS,dma=PATH,iova=ADDR[,offset=N][,len=N][,irq] (Zynq),
    /// uart:/dev/ttyUSB0[@BAUD] (boards without PCIe, over the UART bridge).
    /// Default: $HITLESS_CARD, else the local simulated card.
    #[arg(long, global = true)]
    card: Option<String>,
    /// Where application secrets are kept (default: $HITLESS_CREDENTIALS,
    /// else $XDG_STATE_HOME/hitless, else ~/.local/state/hitless).
    #[arg(long, global = true)]
    credentials: Option<PathBuf>,
    /// Log what the driver does (tracing to stderr).
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Seconds an operation may take before the card is declared hung.
    #[arg(long, global = true, default_value_t = 10)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Controller and firmware state: boot results, images, log, counters.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Geometry, both superblocks and the firmware's view of each tier.
    Inspect {
        #[arg(long)]
        json: bool,
    },
    /// Register an application (first time: the card makes its secret,
    /// saved under --credentials) or check its credentials.
    Open {
        #[arg(long)]
        app: u32,
    },
    /// Store FILE (or stdin with -) as the set (app, object).
    Checkpoint {
        #[arg(long)]
        app: u32,
        #[arg(long, default_value_t = 0)]
        object: u32,
        /// Endpoint the set is destined for (recorded with it).
        #[arg(long, default_value_t = 0)]
        endpoint: u32,
        /// Reboot stage at which the set is delivered.
        #[arg(long, default_value_t = 0)]
        stage: u32,
        /// Commit to the cold tier (survives a power cycle); default warm
        /// (survives a warm reset only).
        #[arg(long)]
        cold: bool,
        file: PathBuf,
    },
    /// Write the set (app, object) to FILE (or stdout).
    Restore {
        #[arg(long)]
        app: u32,
        #[arg(long, default_value_t = 0)]
        object: u32,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// The application's sets.
    List {
        #[arg(long)]
        app: u32,
        #[arg(long)]
        json: bool,
    },
    /// Delete the set (app, object).
    Delete {
        #[arg(long)]
        app: u32,
        #[arg(long, default_value_t = 0)]
        object: u32,
    },
    /// Announce reboot stage N (after a reset, stages 0, 1, 2 ...); lists
    /// the sets the card holds for it. With --app, also deliver that
    /// application's sets of the stage into --dir (one file per object).
    Stage {
        stage: u32,
        #[arg(long)]
        app: Option<u32>,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The append log: a primary appends, a backup reads what is unread.
    Log {
        #[command(subcommand)]
        cmd: LogCmd,
    },
    /// Erase a tier's record table (after it was written by `raw`).
    Format {
        #[arg(long)]
        app: u32,
        #[arg(long)]
        cold: bool,
    },
    /// The controller without firmware: one image per tier (takes the
    /// controller's rings; the firmware restarts on its next request).
    Raw {
        #[command(subcommand)]
        cmd: RawCmd,
    },
}

#[derive(Subcommand)]
enum LogCmd {
    /// Append FILE (or stdin with -) to the log.
    Append {
        #[arg(long)]
        app: u32,
        #[arg(long, default_value_t = 0)]
        object: u32,
        #[arg(long)]
        cold: bool,
        /// Overwrite mode: keep only this record of the application.
        #[arg(long)]
        overwrite: bool,
        file: PathBuf,
    },
    /// Print (or with --dir, save) every unread record of the application;
    /// --trim then clears what was read.
    Read {
        #[arg(long)]
        app: u32,
        #[arg(long)]
        cold: bool,
        #[arg(long)]
        trim: bool,
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RawCmd {
    /// Commit FILE (or -) as the whole image of a tier.
    Checkpoint {
        #[arg(long)]
        cold: bool,
        file: PathBuf,
    },
    /// The committed image of a tier to FILE (or stdout).
    Restore {
        #[arg(long)]
        cold: bool,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Check the committed images of both tiers against their CRCs.
    Validate,
    /// The protection table.
    Protection,
    /// Time a 1 MiB checkpoint and restore.
    Bench,
}

fn open_io(spec: &str, timeout: Duration) -> Result<Box<dyn CardIo>, Error> {
    let (kind, rest) = spec
        .split_once(':')
        .ok_or_else(|| Error::InvalidArgument(format!("card {spec:?}: expected KIND:ADDRESS")))?;
    match kind {
        #[cfg(feature = "vfio-user")]
        "vfio-user" => Ok(Box::new(
            hitless_driver::backend::vfio_user::VfioUserIo::connect(
                std::path::Path::new(rest),
                8 << 20,
                timeout,
            )?,
        )),
        #[cfg(feature = "vfio")]
        "vfio" => Ok(Box::new(hitless_driver::backend::vfio::VfioIo::open(
            rest.parse()?,
            8 << 20,
        )?)),
        "uio" => {
            let mut parts = rest.split(',');
            let regs = parts
                .next()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Error::InvalidArgument("uio: register device missing".into()))?;
            let mut cfg = hitless_driver::backend::uio::UioConfig {
                regs: regs.into(),
                regs_offset: 0,
                dma: PathBuf::new(),
                dma_len: 8 << 20,
                dma_iova: 0,
                irq: false,
            };
            let num = |v: &str| -> Result<u64, Error> {
                let r = match v.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16),
                    None => v.parse(),
                };
                r.map_err(|_| Error::InvalidArgument(format!("uio: not a number {v:?}")))
            };
            for p in parts {
                match p.split_once('=') {
                    Some(("dma", v)) => cfg.dma = v.into(),
                    Some(("iova", v)) => cfg.dma_iova = num(v)?,
                    Some(("offset", v)) => cfg.regs_offset = num(v)?,
                    Some(("len", v)) => cfg.dma_len = num(v)?,
                    None if p == "irq" => cfg.irq = true,
                    _ => return Err(Error::InvalidArgument(format!("uio: unknown option {p:?}"))),
                }
            }
            if cfg.dma.as_os_str().is_empty() {
                return Err(Error::InvalidArgument("uio: dma=PATH missing".into()));
            }
            Ok(Box::new(hitless_driver::backend::uio::UioIo::open(&cfg)?))
        }
        "uart" => Ok(Box::new(hitless_driver::backend::uart::UartIo::from_spec(
            rest, timeout,
        )?)),
        other => Err(Error::InvalidArgument(format!(
            "card kind {other:?}: vfio-user, vfio, uio or uart"
        ))),
    }
}

/// A progress bar for transfers over 1 MiB (hidden when stderr is not a
/// terminal, so scripts see no escape codes).
fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    (total > 1 << 20).then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    })
}

fn tier(cold: bool) -> Tier {
    if cold {
        Tier::Cold
    } else {
        Tier::Warm
    }
}

fn tier_name(cold: bool) -> &'static str {
    if cold {
        "cold"
    } else {
        "warm"
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.verbose {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::DEBUG)
            .init();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hitless: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_input(file: &Path) -> Result<Vec<u8>, Error> {
    let mut data = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut data)?;
    } else {
        data = std::fs::read(file)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", file.display())))?;
    }
    Ok(data)
}

fn write_output(output: Option<&Path>, data: &[u8]) -> Result<(), Error> {
    match output {
        Some(p) => std::fs::write(p, data)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", p.display()))),
        None => Ok(std::io::stdout().write_all(data)?),
    }
}

/// Application secrets on disk, one file per application.
struct Credentials(PathBuf);

impl Credentials {
    fn new(dir: Option<PathBuf>) -> Self {
        let dir = dir
            .or_else(|| std::env::var_os("HITLESS_CREDENTIALS").map(PathBuf::from))
            .or_else(|| {
                std::env::var_os("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("hitless"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/hitless"))
            })
            .unwrap_or_else(|| PathBuf::from("/tmp/hitless/credentials"));
        Self(dir)
    }
    fn path(&self, app: u32) -> PathBuf {
        self.0.join(format!("app-{app}.secret"))
    }
    fn load(&self, app: u32) -> Result<Option<Secret>, Error> {
        let p = self.path(app);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::InvalidArgument(format!("{}: {e}", p.display()))),
        };
        let t = text.trim();
        let bad = || {
            Error::InvalidArgument(format!(
                "{}: not a {SECRET_BYTES}-byte hex secret",
                p.display()
            ))
        };
        if t.len() != 2 * SECRET_BYTES {
            return Err(bad());
        }
        let mut s = [0u8; SECRET_BYTES];
        for (i, b) in s.iter_mut().enumerate() {
            *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Some(s))
    }
    fn save(&self, app: u32, s: &Secret) -> Result<PathBuf, Error> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(&self.0)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", self.0.display())))?;
        let p = self.path(app);
        let hex: String = s.iter().map(|b| format!("{b:02x}")).collect();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&p)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", p.display())))?;
        writeln!(f, "{hex}")?;
        Ok(p)
    }
}

/// The firmware and one session of `app`, closed when dropped.
struct App {
    fw: Client<Box<dyn CardIo>>,
    s: Session,
}

impl App {
    fn open(
        io: Box<dyn CardIo>,
        creds: &Credentials,
        app: u32,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let mut fw = Client::open(io, timeout)?;
        let secret = creds.load(app)?;
        let (s, fresh) = fw
            .open_app(app, OpenFlags::all(), secret.as_ref())
            .map_err(|e| match e {
                Error::Firmware {
                    code: hitless_firmware::msg::Code::AuthFailed,
                    detail,
                } => Error::InvalidArgument(format!(
                    "the card refused application {app}'s credentials ({}): {detail}",
                    if secret.is_some() {
                        format!("{} does not match", creds.path(app).display())
                    } else {
                        format!(
                            "the application is registered and {} is missing",
                            creds.path(app).display()
                        )
                    }
                )),
                other => other,
            })?;
        if let Some(n) = fresh {
            let p = creds.save(app, &n)?;
            eprintln!(
                "application {app} registered; its secret is in {}",
                p.display()
            );
        }
        Ok(Self { fw, s })
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Err(e) = self.fw.close(&self.s) {
            tracing::warn!("closing the session: {e}");
        }
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    let spec = cli
        .card
        .or_else(|| std::env::var("HITLESS_CARD").ok())
        .unwrap_or_else(|| DEFAULT_CARD.to_string());
    let timeout = Duration::from_secs(cli.timeout.max(1));
    let mut io = open_io(&spec, timeout)?;
    let creds = Credentials::new(cli.credentials);
    let app = |io, a| App::open(io, &creds, a, timeout);
    match cli.cmd {
        Cmd::Status { json } => status(io, timeout, json),
        Cmd::Inspect { json } => inspect(io, timeout, json),
        Cmd::Open { app: a } => {
            let x = app(io, a)?;
            println!(
                "application {a}: session {:#x}, key {:#010x}",
                x.s.handle, x.s.key
            );
            Ok(())
        }
        Cmd::Checkpoint {
            app: a,
            object,
            endpoint,
            stage,
            cold,
            file,
        } => {
            let data = read_input(&file)?;
            let mut x = app(io, a)?;
            let s = x.s.clone();
            x.fw.store(&s, object, endpoint, stage, cold, &data)?;
            eprintln!(
                "stored {} bytes as app {a} object {object} (stage {stage}) in the {} tier",
                data.len(),
                tier_name(cold)
            );
            Ok(())
        }
        Cmd::Restore {
            app: a,
            object,
            output,
        } => {
            let mut x = app(io, a)?;
            let s = x.s.clone();
            let (_, data) = x.fw.restore(&s, object)?;
            write_output(output.as_deref(), &data)
        }
        Cmd::List { app: a, json } => {
            let mut x = app(io, a)?;
            let s = x.s.clone();
            let sets = x.fw.list(&s)?;
            print_sets(&sets, json);
            Ok(())
        }
        Cmd::Delete { app: a, object } => {
            let mut x = app(io, a)?;
            let s = x.s.clone();
            x.fw.delete(&s, object)?;
            eprintln!("deleted app {a} object {object}");
            Ok(())
        }
        Cmd::Stage {
            stage,
            app: a,
            dir,
            json,
        } => {
            let mut fw = Client::open(io, timeout)?;
            let sets = fw.announce(stage)?;
            if !json {
                println!("reboot stage {stage} announced: {} sets", sets.len());
            }
            print_sets(&sets, json);
            if let Some(a) = a {
                drop(fw);
                let mut x = app(open_io(&spec, timeout)?, a)?;
                let s = x.s.clone();
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::InvalidArgument(format!("{}: {e}", dir.display())))?;
                for (info, data) in x.fw.fetch(&s, stage)? {
                    let p = dir.join(format!("app-{a}-object-{}.bin", info.object));
                    write_output(Some(&p), &data)?;
                    eprintln!("delivered {} bytes to {}", data.len(), p.display());
                }
            }
            Ok(())
        }
        Cmd::Log { cmd } => log(cmd, io, &creds, timeout),
        Cmd::Format { app: a, cold } => {
            let mut x = app(io, a)?;
            let s = x.s.clone();
            x.fw.format(&s, cold)?;
            eprintln!("the {} tier's record table is empty", tier_name(cold));
            Ok(())
        }
        Cmd::Raw { cmd } => {
            // Make sure this is a controller before taking its rings.
            status_of(&mut io)?;
            raw(cmd, io, timeout)
        }
    }
}

fn print_sets(sets: &[hitless_firmware::msg::SetInfo], json: bool) {
    if json {
        let v: Vec<_> = sets
            .iter()
            .map(|i| {
                serde_json::json!({"app": i.app, "object": i.object, "endpoint": i.endpoint,
                    "stage": i.stage, "tier": i.tier.name(), "len": i.len, "crc": i.crc})
            })
            .collect();
        println!("{}", serde_json::Value::from(v));
        return;
    }
    for i in sets {
        println!(
            "app {} object {}: {} bytes, stage {}, {} tier, endpoint {}, crc {:#010x}",
            i.app,
            i.object,
            i.len,
            i.stage,
            i.tier.name(),
            i.endpoint,
            i.crc
        );
    }
}

fn log(
    cmd: LogCmd,
    io: Box<dyn CardIo>,
    creds: &Credentials,
    timeout: Duration,
) -> Result<(), Error> {
    match cmd {
        LogCmd::Append {
            app,
            object,
            cold,
            overwrite,
            file,
        } => {
            let data = read_input(&file)?;
            let mut x = App::open(io, creds, app, timeout)?;
            let s = x.s.clone();
            let at = x.fw.log_append(&s, object, cold, overwrite, &data)?;
            eprintln!(
                "appended {} bytes to the {} log at offset {at:#x}",
                data.len(),
                tier_name(cold)
            );
            Ok(())
        }
        LogCmd::Read {
            app,
            cold,
            trim,
            dir,
            json,
        } => {
            let mut x = App::open(io, creds, app, timeout)?;
            let s = x.s.clone();
            let read = x.fw.log_read(&s, cold)?;
            if json {
                let v: Vec<_> = read
                    .records
                    .iter()
                    .map(|(i, d)| {
                        serde_json::json!({"object": i.object, "offset": i.offset, "seq": i.seq,
                            "len": i.len, "text": String::from_utf8_lossy(d)})
                    })
                    .collect();
                println!(
                    "{:#}",
                    serde_json::json!({"records": v, "head": read.head, "tail": read.tail})
                );
            } else {
                println!(
                    "{} unread records of app {app} in the {} log",
                    read.records.len(),
                    tier_name(cold)
                );
                for (i, d) in &read.records {
                    println!(
                        "seq {} object {} offset {:#x}: {} bytes",
                        i.seq, i.object, i.offset, i.len
                    );
                    let _ = d;
                }
            }
            if let Some(dir) = dir {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::InvalidArgument(format!("{}: {e}", dir.display())))?;
                for (i, d) in &read.records {
                    write_output(Some(&dir.join(format!("seq-{}.bin", i.seq))), d)?;
                }
            }
            if trim {
                x.fw.log_trim(&s, cold, read.head)?;
                eprintln!("cleared the log up to {:#x}", read.head);
            }
            Ok(())
        }
    }
}

fn status(mut io: Box<dyn CardIo>, timeout: Duration, json: bool) -> Result<(), Error> {
    let s = status_of(&mut io)?;
    let fw = match Client::open(&mut io, timeout) {
        Ok(mut c) => Some(c.status()),
        Err(Error::NoFirmware { .. }) => None,
        Err(e) => Some(Err(e)),
    };
    let tier_json = |t: &hitless_driver::TierStatus| {
        serde_json::json!({
            "boot_result": format!("{:?}", t.result),
            "active_region": if t.active == 0 { "A" } else { "B" },
            "seq": t.seq,
            "region_len": t.region_len,
            "region_crc": t.region_crc,
            "log_head": t.log_head,
            "log_tail": t.log_tail,
        })
    };
    let fw_json = match &fw {
        None => serde_json::Value::Null,
        Some(Err(e)) => serde_json::json!({"error": e.to_string()}),
        Some(Ok(f)) => {
            let t = |x: &hitless_driver::firmware::FwTier| serde_json::json!({"state": x.state_name(), "sets": x.sets, "image_bytes": x.image_bytes});
            serde_json::json!({"warm": t(&f.warm), "cold": t(&f.cold), "requests": f.requests,
                "auth_failures": f.auth_fails, "stores": f.stores, "announced_stage": f.announced})
        }
    };
    if json {
        let v = serde_json::json!({
            "card": io.describe(),
            "version": format!("{}.{}", s.version >> 16, s.version & 0xFFFF),
            "limits": s.limits,
            "boot_done": s.boot_done,
            "busy": s.busy,
            "ring_error": s.ring_error,
            "ops_ok": s.ops_ok,
            "ops_failed": s.ops_failed,
            "warm": tier_json(&s.warm),
            "cold": tier_json(&s.cold),
            "firmware": fw_json,
        });
        println!("{v:#}");
        return Ok(());
    }
    println!(
        "card: {} (contract {}.{})",
        io.describe(),
        s.version >> 16,
        s.version & 0xFFFF
    );
    if s.limits != 0 {
        let lacks: Vec<&str> = hitless_hdl::contract::LIMITS_BITS
            .iter()
            .filter(|(_, bit, _)| s.limits & bit != 0)
            .map(|(_, _, doc)| doc.trim_end_matches('.'))
            .collect();
        println!("controller: reduced ({})", lacks.join("; "));
    }
    println!("operations: {} ok, {} failed", s.ops_ok, s.ops_failed);
    for (name, t) in [("warm", s.warm), ("cold", s.cold)] {
        let (len, crc) = t.active_image();
        println!(
            "{name}: {:?}; seq {}, active region {}, {len} bytes, crc {crc:#010x}; log {} bytes unread",
            t.result,
            t.seq,
            if t.active == 0 { 'A' } else { 'B' },
            t.log_head.wrapping_sub(t.log_tail)
        );
    }
    match fw {
        None => println!("firmware: none (controller only)"),
        Some(Err(e)) => println!("firmware: {e}"),
        Some(Ok(f)) => {
            for (name, t) in [("warm", f.warm), ("cold", f.cold)] {
                println!(
                    "firmware {name} tier: {}, {} sets, {} bytes",
                    t.state_name(),
                    t.sets,
                    t.image_bytes
                );
            }
            println!(
                "firmware: {} requests, {} refused for credentials, {} stores, stage {}",
                f.requests,
                f.auth_fails,
                f.stores,
                f.announced
                    .map_or("not announced".to_string(), |s| s.to_string())
            );
        }
    }
    Ok(())
}

fn inspect(mut io: Box<dyn CardIo>, timeout: Duration, json: bool) -> Result<(), Error> {
    let s = status_of(&mut io)?;
    let g = s.geometry;
    let fw = match Client::open(&mut io, timeout) {
        Ok(mut c) => c.status().ok(),
        Err(_) => None,
    };
    let sb = |t: &hitless_driver::TierStatus| {
        serde_json::json!({"result": format!("{:?}", t.result), "seq": t.seq, "active": t.active,
            "regions": [[t.region_len[0], t.region_crc[0]], [t.region_len[1], t.region_crc[1]]],
            "log": [t.log_tail, t.log_head]})
    };
    let fwt = |t: &hitless_driver::firmware::FwTier| serde_json::json!({"state": t.state_name(), "sets": t.sets, "image_bytes": t.image_bytes});
    let v = serde_json::json!({
        "geometry": {"region_size": g.region_size, "log_size": g.log_size,
                      "region_a": g.region_a_base(), "region_b": g.region_b_base(), "log": g.log_base()},
        "superblocks": {"warm": sb(&s.warm), "cold": sb(&s.cold)},
        "record_tables": fw.map(|f| serde_json::json!({"warm": fwt(&f.warm), "cold": fwt(&f.cold)})),
    });
    if json {
        println!("{v:#}");
        return Ok(());
    }
    println!(
        "geometry: regions of {} bytes at {:#x} and {:#x}, log of {} bytes at {:#x}",
        g.region_size,
        g.region_a_base(),
        g.region_b_base(),
        g.log_size,
        g.log_base()
    );
    for (name, t) in [("warm", s.warm), ("cold", s.cold)] {
        println!(
            "{name} superblock: {:?}, seq {}, active {}; A {} bytes crc {:#010x}; B {} bytes crc {:#010x}; log tail {} head {}",
            t.result, t.seq, if t.active == 0 { 'A' } else { 'B' }, t.region_len[0], t.region_crc[0], t.region_len[1], t.region_crc[1], t.log_tail, t.log_head
        );
    }
    if let Some(f) = fw {
        for (name, t) in [("warm", f.warm), ("cold", f.cold)] {
            println!(
                "{name} record table: {}, {} sets in {} bytes",
                t.state_name(),
                t.sets,
                t.image_bytes
            );
        }
    }
    Ok(())
}

fn raw(cmd: RawCmd, io: Box<dyn CardIo>, timeout: Duration) -> Result<(), Error> {
    let opts = Options {
        op_timeout: timeout,
        ..Options::default()
    };
    let mut card = Card::open(io, opts)?;
    let g = card.geometry();
    let window = perm::FULL_REGION_WINDOW;
    let key = card.program_entry(ENTRY, TAG, 0, g.region_size, window)?;
    match cmd {
        RawCmd::Checkpoint { cold, file } => {
            let data = read_input(&file)?;
            let bar = progress_bar(data.len() as u64);
            let c = card.checkpoint_with_progress(key, tier(cold), &data, &mut |done, _| {
                if let Some(b) = &bar {
                    b.set_position(done)
                }
            })?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            eprintln!(
                "committed {} bytes to the {} tier: seq {}, crc {:#010x}",
                data.len(),
                tier_name(cold),
                c.seq,
                c.crc
            );
            Ok(())
        }
        RawCmd::Restore { cold, output } => {
            let st = tier_status(card.io(), tier(cold))?;
            let bar = progress_bar(st.active_image().0 as u64);
            let img = card.restore_with_progress(key, tier(cold), &mut |done, _| {
                if let Some(b) = &bar {
                    b.set_position(done)
                }
            })?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            write_output(output.as_deref(), &img)
        }
        RawCmd::Validate => {
            let mut bad = 0;
            for (name, t) in [("warm", Tier::Warm), ("cold", Tier::Cold)] {
                let st = card.tier_status(t)?;
                let (len, crc) = st.active_image();
                let r = if len == 0 {
                    Ok(0)
                } else {
                    card.validate(
                        key,
                        t,
                        0,
                        len.min(1 << 20),
                        if len <= 1 << 20 { Some(crc) } else { None },
                    )
                };
                match r {
                    Ok(_) => println!(
                        "{name}: {:?}, {len} bytes, crc {crc:#010x}: valid",
                        st.result
                    ),
                    Err(e) => {
                        bad += 1;
                        println!("{name}: {:?}, {len} bytes: {e}", st.result);
                    }
                }
            }
            if bad > 0 {
                return Err(Error::Device {
                    status: hitless_hdl::contract::Status::CrcMismatch,
                });
            }
            Ok(())
        }
        RawCmd::Protection => {
            for i in 0..PT_ENTRIES {
                card.io().write32(reg::PT_INDEX, i)?;
                let perm_bits = card.io().read32(reg::PT_PERM)?;
                if perm_bits & perm::VALID != 0 {
                    println!(
                        "protection entry {i}: base {:#x} len {:#x} perm {perm_bits:#04x}",
                        card.io().read32(reg::PT_BASE)?,
                        card.io().read32(reg::PT_LEN)?
                    );
                }
            }
            Ok(())
        }
        RawCmd::Bench => {
            let data = vec![0x5Au8; 1 << 20];
            let t = Instant::now();
            card.checkpoint(key, Tier::Warm, &data)?;
            let w = t.elapsed();
            let t = Instant::now();
            let back = card.restore(key, Tier::Warm)?;
            let r = t.elapsed();
            if back != data {
                return Err(Error::BadCompletion("restored data differs".into()));
            }
            println!("checkpoint_1MiB_s = {:.4}", w.as_secs_f64());
            println!("restore_1MiB_s = {:.4}", r.as_secs_f64());
            Ok(())
        }
    }
}
