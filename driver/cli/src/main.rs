//! `hitless`: checkpoint and restore application state on a hitless card.
//!
//! Most commands talk to the card's firmware (records per application and
//! object, reboot stages, warm/cold tiers, the append log) and need the
//! application's credentials: the first `open` (or any first command) of an
//! application makes the card hand out its secret, which is saved under
//! `--credentials` (mode 0600) and used from then on. `raw ...` drives the
//! controller directly, for cards without firmware.
#![forbid(unsafe_code)]

mod heap;
mod image;
mod raw;
mod status;
mod upgrade;

use clap::{Parser, Subcommand};
use hitless_driver::card::status_of;
use hitless_driver::credentials::Credentials;
use hitless_driver::firmware::{Firmware, OpenFlags, Session};
use hitless_driver::{card_spec, open_card, open_firmware, Error, Tier};
use hitless_proto::msg::SetInfo;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "hitless",
    version,
    about = "Checkpoint and restore application state on a hitless card"
)]
struct Cli {
    /// The card: vfio-user:SOCKET (simulated), vfio:DDDD:BB:DD.F (PCIe),
    /// uio:REGS,dma=PATH,iova=ADDR[,offset=N][,len=N][,irq] (Zynq),
    /// uart:/dev/ttyUSB0[@BAUD] (boards without PCIe, over the UART bridge),
    /// daemon:SOCKET (through hitlessd, which owns the card and keeps the
    /// secrets), backup:HOST:PORT (a card's read-only backup reader
    /// service over TCP: list, restore, log read, status; the application's
    /// secret must be in the credentials directory), pair:SPEC,SPEC[,…] (the
    /// cards of a replicated pair: requests go to whichever is master, followed
    /// across takeovers and switchovers; a log append or delete the lost card
    /// may have applied is not repeated). Default: $HITLESS_CARD, else hitlessd at
    /// /run/hitless/hitlessd.sock when it is running, else the local
    /// simulated card.
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
enum PeerCmd {
    /// This card's replication state: node, role (master, slave,
    /// standby), epoch, master, in-sync slaves, lag, last bracket.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Hand the master role to a slave, hitless (ask the master's card):
    /// it stops taking stores, waits until the slave has acknowledged
    /// every bracket, then hands over; the slave becomes master in a
    /// newer epoch and this card its slave. Nothing acknowledged is lost.
    Switchover {
        /// The node to hand over to (default: the only slave in sync).
        #[arg(long)]
        to: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// The hitless rolling upgrade of the pair (--card pair:A,B): each
    /// slave installs the package, activates it, reboots into it, rejoins
    /// and is marked good; then a switchover, then the old master the
    /// same way. Stops at the first failure (a card that does not come
    /// back healthy is rolled back); the master serves throughout.
    Upgrade {
        /// The signed package file.
        package: PathBuf,
        /// Install a version lower than the running one (a downgrade).
        #[arg(long)]
        force: bool,
        /// Seconds each card has to come back and rejoin.
        #[arg(long, default_value_t = 60)]
        health_secs: u64,
    },
    /// Make this card master in a new epoch (the operator's decision: the
    /// only way a pair without a witness or etcd gets a master, or the
    /// way out when no card is whole). The old master is fenced by the
    /// new epoch. With an arbiter, the arbiter still decides. Refused for
    /// a card cut while applying a bracket (it needs a snapshot from a
    /// master), and for a card whose power cycle lost warm sets unless
    /// --accept-lost-warm.
    Promote {
        /// Promote a card whose power cycle lost its warm sets: it serves
        /// its cold state (whole to its last bracket); the warm sets are
        /// gone for good.
        #[arg(long)]
        accept_lost_warm: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Controller and firmware state: boot results, images, log, counters.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Replication to a peer card (`hitless-sim serve --node …`).
    Peer {
        #[command(subcommand)]
        cmd: PeerCmd,
    },
    /// The card's software images: status, install, activate, mark-good,
    /// rollback, serve; keygen and pack make keys and signed packages.
    Image {
        #[command(subcommand)]
        cmd: image::ImageCmd,
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
        /// The card that holds the set: 0 (or this card's node id) this
        /// card; a replicated card's peer node id: stored in the peer
        /// card's memory over the card-to-card link.
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
        /// The card that holds the set (as stored with `checkpoint
        /// --endpoint`): 0 this card, a peer node id: fetched from it.
        #[arg(long, default_value_t = 0)]
        endpoint: u32,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// The application's sets.
    List {
        #[arg(long)]
        app: u32,
        /// The card whose sets are listed: 0 this card, a peer node id:
        /// the sets that card holds for the application (stored with
        /// `checkpoint --endpoint`).
        #[arg(long, default_value_t = 0)]
        endpoint: u32,
        #[arg(long)]
        json: bool,
    },
    /// Delete the set (app, object).
    Delete {
        #[arg(long)]
        app: u32,
        #[arg(long, default_value_t = 0)]
        object: u32,
        /// The card that holds the set: 0 this card, a peer node id:
        /// deleted there (done when its delete is durable).
        #[arg(long, default_value_t = 0)]
        endpoint: u32,
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
    /// An application's persistent heaps: list, versions, restart from a
    /// version, migrate to another card.
    Heap {
        #[command(subcommand)]
        cmd: heap::HeapCmd,
    },
    /// The controller without firmware: one image per tier (takes the
    /// controller's rings; the firmware restarts on its next request).
    Raw {
        #[command(subcommand)]
        cmd: raw::RawCmd,
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
            eprintln!("hitless: {}", e.chain());
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

/// The firmware and one session of `app`, closed when dropped.
struct App {
    fw: Box<dyn Firmware>,
    s: Session,
}

impl App {
    /// A session of `app`. `creds` is the local secret store (none when
    /// the daemon, which keeps the secrets, is in between).
    fn open(
        mut fw: Box<dyn Firmware>,
        creds: Option<&Credentials>,
        app: u32,
    ) -> Result<Self, Error> {
        let secret = match creds {
            Some(c) => c.load(app)?,
            None => None,
        };
        let (s, fresh) = fw
            .open_app(app, OpenFlags::all(), secret.as_ref())
            .map_err(|e| match (e, creds) {
                (
                    Error::Firmware {
                        code: hitless_proto::Code::AuthFailed,
                        detail,
                        ..
                    },
                    Some(creds),
                ) => Error::InvalidArgument(format!(
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
                (other, _) => other,
            })?;
        if let (Some(n), Some(creds)) = (fresh, creds) {
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
    let spec = card_spec(cli.card);
    let timeout = Duration::from_secs(cli.timeout.max(1));
    let through_daemon = spec.starts_with("daemon:");
    // Commands that open an application need the secret store (unless the
    // daemon keeps the secrets): find it (or refuse) before touching the
    // card.
    let creds = match &cli.cmd {
        Cmd::Status { .. }
        | Cmd::Peer { .. }
        | Cmd::Image { .. }
        | Cmd::Inspect { .. }
        | Cmd::Raw { .. }
        | Cmd::Stage { app: None, .. } => None,
        _ if through_daemon => None,
        _ => Some(Credentials::new(cli.credentials.clone())?),
    };
    let fw = || open_firmware(&spec, timeout);
    let app = |a| App::open(fw()?, creds.as_ref(), a);
    // A migration's destination: its own secret store when it is reached
    // directly (a secret is per card), none through its hitlessd.
    let to_app = |to: &str, to_creds: Option<PathBuf>, a| {
        if to == spec {
            return Err(Error::InvalidArgument(format!(
                "the destination {to} is the source card"
            )));
        }
        let c = if to.starts_with("daemon:") {
            None
        } else if to_creds.is_none() && !through_daemon {
            return Err(Error::InvalidArgument(
                "both cards are reached directly and an application's secret differs per \
                 card: give the destination's secret store with --to-credentials DIR"
                    .into(),
            ));
        } else {
            Some(Credentials::new(
                to_creds.or_else(|| cli.credentials.clone()),
            )?)
        };
        App::open(open_firmware(to, timeout)?, c.as_ref(), a)
    };
    match cli.cmd {
        Cmd::Image { cmd } => {
            if image::needs_card(&cmd) {
                tracing::debug!(card = %spec, "image command");
            }
            image::run(cmd, &fw)
        }
        Cmd::Peer {
            cmd: PeerCmd::Status { json },
        } => status::peer_status(fw()?, json),
        Cmd::Peer {
            cmd: PeerCmd::Switchover { to, json },
        } => status::peer_switchover(fw()?, to, json),
        Cmd::Peer {
            cmd:
                PeerCmd::Upgrade {
                    package,
                    force,
                    health_secs,
                },
        } => upgrade::upgrade(
            &spec,
            timeout,
            &package,
            force,
            Duration::from_secs(health_secs.max(1)),
        ),
        Cmd::Peer {
            cmd:
                PeerCmd::Promote {
                    accept_lost_warm,
                    json,
                },
        } => status::peer_promote(fw()?, accept_lost_warm, json),
        // The daemon, the backup reader and a pair (whichever card is
        // master) serve the firmware's status, not the controller's
        // registers.
        Cmd::Status { json }
            if through_daemon
                || spec.starts_with("backup:")
                || spec.starts_with(hitless_driver::pair::PREFIX) =>
        {
            status::firmware_status(fw()?, json)
        }
        Cmd::Status { json } => status::status(open_card(&spec, timeout)?, timeout, json),
        Cmd::Inspect { json } => status::inspect(open_card(&spec, timeout)?, timeout, json),
        Cmd::Open { app: a } => {
            let x = app(a)?;
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
            let mut x = app(a)?;
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
            endpoint,
            output,
        } => {
            let mut x = app(a)?;
            let s = x.s.clone();
            let (_, data) = x.fw.restore_from(&s, object, endpoint)?;
            write_output(output.as_deref(), &data)
        }
        Cmd::List {
            app: a,
            endpoint,
            json,
        } => {
            let mut x = app(a)?;
            let s = x.s.clone();
            let sets = x.fw.list_from(&s, endpoint)?;
            print_sets(&sets, json);
            Ok(())
        }
        Cmd::Delete {
            app: a,
            object,
            endpoint,
        } => {
            let mut x = app(a)?;
            let s = x.s.clone();
            x.fw.delete_from(&s, object, endpoint)?;
            eprintln!("deleted app {a} object {object}");
            Ok(())
        }
        Cmd::Stage {
            stage,
            app: a,
            dir,
            json,
        } => {
            let mut x = match a {
                Some(a) => Some(app(a)?),
                None => None,
            };
            let sets = match &mut x {
                Some(x) => x.fw.announce(stage)?,
                None => fw()?.announce(stage)?,
            };
            if !json {
                println!("reboot stage {stage} announced: {} sets", sets.len());
            }
            print_sets(&sets, json);
            if let Some(x) = &mut x {
                let s = x.s.clone();
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::InvalidArgument(format!("{}: {e}", dir.display())))?;
                for (info, data) in x.fw.fetch(&s, stage)? {
                    let p = dir.join(format!("app-{}-object-{}.bin", s.app, info.object));
                    write_output(Some(&p), &data)?;
                    eprintln!("delivered {} bytes to {}", data.len(), p.display());
                }
            }
            Ok(())
        }
        Cmd::Log { cmd } => log(cmd, &app),
        Cmd::Heap { cmd } => heap::run(cmd, &app, &to_app),
        Cmd::Format { app: a, cold } => {
            let mut x = app(a)?;
            let s = x.s.clone();
            x.fw.format(&s, cold)?;
            eprintln!("the {} tier's record table is empty", tier_name(cold));
            Ok(())
        }
        Cmd::Raw { cmd } => {
            let mut io = open_card(&spec, timeout)?;
            // Make sure this is a controller before taking its rings.
            status_of(&mut io)?;
            raw::raw(cmd, io, timeout)
        }
    }
}

fn print_sets(sets: &[SetInfo], json: bool) {
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

fn log(cmd: LogCmd, app: &dyn Fn(u32) -> Result<App, Error>) -> Result<(), Error> {
    match cmd {
        LogCmd::Append {
            app: a,
            object,
            cold,
            overwrite,
            file,
        } => {
            let data = read_input(&file)?;
            let mut x = app(a)?;
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
            app: a,
            cold,
            trim,
            dir,
            json,
        } => {
            let mut x = app(a)?;
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
                    "{} unread records of app {a} in the {} log",
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
