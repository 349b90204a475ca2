//! `hitless-sim`: the hitless card as a simulated device.
//!
//! `hitless-sim serve --socket PATH --state-dir DIR` runs the Verilated
//! controller and serves it over vfio-user; the other subcommands talk to a
//! running card's control socket (fault injection and status).

use clap::{Parser, Subcommand};
use hitless_sim::serve::{control_loop, control_request, SimDevice};
use hitless_sim::service;
use hitless_sim::CardTiming;
use hitless_vfio_user::{Limits, Server};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "hitless-sim",
    version,
    about = "The hitless card as a simulated device (Verilated RTL over vfio-user)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once at start-up: the size of the serve variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run the card: serve BAR0, DMA and interrupts over vfio-user on SOCKET.
    Serve {
        /// The vfio-user socket.
        #[arg(long)]
        socket: PathBuf,
        /// Where the cold tier is kept (survives restarts of this process).
        #[arg(long)]
        state_dir: PathBuf,
        /// The control socket (default: SOCKET.ctl).
        #[arg(long)]
        control: Option<PathBuf>,
        /// Host read latency in cycles.
        #[arg(long, default_value_t = 128)]
        host_latency: u64,
        /// Serve the controller alone: no firmware behind the mailbox page
        /// (the host drives the controller's rings itself).
        #[arg(long)]
        no_firmware: bool,
        #[command(flatten)]
        pair: PairArgs,
        #[command(flatten)]
        image: ImageArgs,
        #[command(flatten)]
        backup: BackupArgs,
    },
    /// Reset the controller; both tiers keep their contents.
    WarmReset(Target),
    /// Power off and on: the warm tier is lost, the cold tier kept.
    PowerCycle(Target),
    /// Cut the power when the card's cycle counter reaches N.
    CutPower {
        #[command(flatten)]
        target: Target,
        /// Absolute card cycle (see `status`).
        #[arg(long)]
        at_cycle: u64,
    },
    /// Flip random bits in the committed image of a region.
    FlipBits {
        #[command(flatten)]
        target: Target,
        /// warm or cold.
        #[arg(long, default_value = "cold")]
        tier: String,
        /// a, b, active or alternate.
        #[arg(long, default_value = "active")]
        region: String,
        /// How many bits.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Seed of the choice of bits.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Flip random bits in a tier's data area (where set data lives).
    FlipData {
        #[command(flatten)]
        target: Target,
        /// warm or cold.
        #[arg(long, default_value = "cold")]
        tier: String,
        /// First byte of the damaged span, from the data area's start.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Bytes of the damaged span.
        #[arg(long, default_value_t = 4096)]
        len: u64,
        /// How many bits.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Seed of the choice of bits.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Print the card's state.
    Status(Target),
    /// Run the pair's witness: the arbiter that grants mastership (epochs
    /// and leases) over the pair's secure channel.
    Witness {
        /// Address to listen on (host:port).
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The pair's node ids, comma-separated (all in sync at first).
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<u32>,
        /// Lease length in milliseconds.
        #[arg(long, default_value_t = 1000)]
        lease_ms: u64,
        /// Clock-skew margin in milliseconds: a lease is granted to another
        /// node only this long after it ran out.
        #[arg(long, default_value_t = 50)]
        skew_ms: u64,
        /// The pair's pre-shared key (64 hex digits).
        #[arg(long)]
        key: PathBuf,
        /// Keep the epoch and the in-sync set in this file across restarts
        /// (without it a restarted witness starts again at epoch 0).
        #[arg(long)]
        state: Option<PathBuf>,
    },
}

/// The card's software image manager (its two NVS flash devices are
/// STATE_DIR/nvs0.flash and nvs1.flash).
#[derive(clap::Args)]
struct ImageArgs {
    /// A public key (64 hex digits, `hitless image keygen`'s .pub file)
    /// whose packages the card installs; repeat for more. Without one the
    /// card refuses every package.
    #[arg(long)]
    image_trust: Vec<PathBuf>,
    /// Size of each NVS device in MiB.
    #[arg(long, default_value_t = 8)]
    image_flash_mib: u32,
    /// Trial boots of a newly activated image before the automatic rollback.
    #[arg(long, default_value_t = 3)]
    image_boot_limit: u32,
    /// Seconds a trial boot has to be marked good.
    #[arg(long, default_value_t = 300)]
    image_trial_secs: u64,
}

impl ImageArgs {
    fn config(&self) -> Result<hitless_sim::image::ImageConfig, String> {
        let mut trusted = Vec::new();
        for p in &self.image_trust {
            let key = read_key(p)?;
            trusted.push(
                ed25519_dalek::VerifyingKey::from_bytes(&key)
                    .map_err(|e| format!("{}: not an ed25519 public key: {e}", p.display()))?,
            );
        }
        Ok(hitless_sim::image::ImageConfig {
            trusted,
            flash_mib: self.image_flash_mib,
            boot_limit: self.image_boot_limit,
            trial_window: self.image_trial_secs,
        })
    }
}

/// The remote backup reader service (seed 001): backup processes on other
/// hosts read an application's sets and log over TCP (`--card
/// backup:HOST:PORT`).
#[derive(clap::Args)]
struct BackupArgs {
    /// Serve the read-only backup reader on this address (HOST:PORT); on
    /// a replicated card (--node) too: reads on either card, trims on the
    /// master.
    #[arg(long)]
    backup_listen: Option<std::net::SocketAddr>,
    /// Milliseconds a reader's frame may take from its first byte to its
    /// last (a stalled reader is dropped after it).
    #[arg(long, default_value_t = 5000)]
    backup_frame_ms: u64,
    /// Seconds a reader may stay silent between requests.
    #[arg(long, default_value_t = 300)]
    backup_idle_s: u64,
}

impl BackupArgs {
    fn config(&self) -> Option<(std::net::SocketAddr, hitless_sim::backup::BackupLimits)> {
        self.backup_listen.map(|addr| {
            (
                addr,
                hitless_sim::backup::BackupLimits {
                    frame: Duration::from_millis(self.backup_frame_ms.max(1)),
                    idle: Duration::from_secs(self.backup_idle_s.max(1)),
                    ..Default::default()
                },
            )
        })
    }
}

/// Replication to peer cards (all or none of --node, --listen, --peer,
/// --pair-key).
#[derive(clap::Args)]
struct PairArgs {
    /// This card's node id: the card is replicated.
    #[arg(long, requires_all = ["listen", "peer", "pair_key"])]
    node: Option<u32>,
    /// Where the card-to-card links listen (host:port).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// A peer card: N=host:port (repeat for each).
    #[arg(long, value_parser = parse_peer)]
    peer: Vec<(u32, std::net::SocketAddr)>,
    /// The pair's pre-shared key file (64 hex digits).
    #[arg(long)]
    pair_key: Option<PathBuf>,
    /// The pair's witness (host:port); without it no takeover is automatic.
    #[arg(long, conflicts_with = "etcd")]
    witness: Option<std::net::SocketAddr>,
    /// The pair's arbiter in etcd instead of a witness: the URL of etcd's
    /// v3 JSON gateway (e.g. http://127.0.0.1:2379). A lease per pair, the
    /// epoch a counter key raised in one transaction with the grant.
    #[arg(long)]
    etcd: Option<String>,
    /// The pair's key prefix in etcd (default /hitless/pair/<members>/).
    #[arg(long, requires = "etcd")]
    etcd_prefix: Option<String>,
    /// The etcd lease TTL in seconds (etcd's minimum is about 2).
    #[arg(long, default_value_t = 2, requires = "etcd")]
    etcd_ttl_s: u64,
    /// sync: a store is acknowledged once the slaves have it; async: at once.
    #[arg(long, default_value = "sync", value_parser = ["sync", "async"])]
    mode: String,
    /// Heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 10)]
    heartbeat_ms: u64,
}

fn parse_peer(s: &str) -> Result<(u32, std::net::SocketAddr), String> {
    let (n, a) = s
        .split_once('=')
        .ok_or_else(|| format!("{s}: a peer is N=host:port"))?;
    let n = n.parse().map_err(|e| format!("{n}: {e}"))?;
    let a = a.parse().map_err(|e| format!("{a}: {e}"))?;
    Ok((n, a))
}

impl PairArgs {
    fn config(&self) -> Result<Option<hitless_sim::pair::PairConfig>, String> {
        let Some(node) = self.node else {
            return Ok(None);
        };
        let (Some(listen), Some(key)) = (self.listen, &self.pair_key) else {
            return Err("--node needs --listen and --pair-key".into());
        };
        Ok(Some(hitless_sim::pair::PairConfig {
            node,
            listen,
            peers: self.peer.clone(),
            psk: read_key(key)?,
            witness: self.witness,
            etcd: self
                .etcd
                .as_ref()
                .map(|url| hitless_sim::pair::EtcdSettings {
                    url: url.clone(),
                    prefix: self.etcd_prefix.clone(),
                    ttl: Duration::from_secs(self.etcd_ttl_s.max(1)),
                }),
            mode: if self.mode == "async" {
                hitless_firmware::replication::Mode::Async
            } else {
                hitless_firmware::replication::Mode::Sync
            },
            heartbeat: Duration::from_millis(self.heartbeat_ms.max(1)),
        }))
    }
}

#[derive(clap::Args)]
struct Target {
    /// The card's control socket.
    #[arg(long)]
    control: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs only when asked (HITLESS_LOG=info, debug, ...), to stderr.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("HITLESS_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init();
    }
    let result = match cli.cmd {
        Cmd::Serve {
            socket,
            state_dir,
            control,
            host_latency,
            no_firmware,
            pair,
            image,
            backup,
        } => pair.config().and_then(|pair| {
            let image = image.config()?;
            serve(
                socket,
                state_dir,
                control,
                host_latency,
                !no_firmware,
                pair,
                image,
                backup.config(),
            )
            .and_then(|s| match s {
                Served::Stopped => Ok(()),
                Served::Reboot => Err(reboot_process()),
            })
        }),
        Cmd::WarmReset(t) => ctl(&t, "warm-reset".into()),
        Cmd::PowerCycle(t) => ctl(&t, "power-cycle".into()),
        Cmd::CutPower { target, at_cycle } => ctl(&target, format!("cut-power {at_cycle}")),
        Cmd::FlipBits {
            target,
            tier,
            region,
            count,
            seed,
        } => ctl(&target, format!("flip-bits {tier} {region} {count} {seed}")),
        Cmd::FlipData {
            target,
            tier,
            offset,
            len,
            count,
            seed,
        } => ctl(
            &target,
            format!("flip-data {tier} {offset} {len} {count} {seed}"),
        ),
        Cmd::Status(t) => ctl(&t, "status".into()),
        Cmd::Witness {
            listen,
            members,
            lease_ms,
            skew_ms,
            key,
            state,
        } => witness(listen, members, lease_ms, skew_ms, &key, state),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hitless-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ctl(t: &Target, command: String) -> Result<(), String> {
    let reply = control_request(&t.control, &command, Duration::from_secs(10))?;
    println!("{reply}");
    Ok(())
}

/// The pair's key from its file (64 hex digits).
fn read_key(path: &std::path::Path) -> Result<[u8; 32], String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    hitless_firmware::replication::channel::parse_psk(&text)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn witness(
    listen: std::net::SocketAddr,
    members: Vec<u32>,
    lease_ms: u64,
    skew_ms: u64,
    key: &std::path::Path,
    state: Option<PathBuf>,
) -> Result<(), String> {
    let psk = read_key(key)?;
    let w = hitless_sim::witness::Witness::start(
        listen,
        hitless_sim::witness::WitnessConfig {
            members,
            lease: Duration::from_millis(lease_ms),
            skew: Duration::from_millis(skew_ms),
            psk,
            state,
        },
    )
    .map_err(|e| e.to_string())?;
    let stop = w.stop_flag();
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())
        .map_err(|e| format!("signals: {e}"))?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop)
        .map_err(|e| format!("signals: {e}"))?;
    eprintln!("hitless-sim: witness listening on {}", w.local_addr());
    w.wait();
    eprintln!("hitless-sim: witness stopped");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn serve(
    socket: PathBuf,
    state_dir: PathBuf,
    control: Option<PathBuf>,
    host_latency: u64,
    firmware: bool,
    pair: Option<hitless_sim::pair::PairConfig>,
    image: hitless_sim::image::ImageConfig,
    backup: Option<(std::net::SocketAddr, hitless_sim::backup::BackupLimits)>,
) -> Result<Served, String> {
    if backup.is_some() && !firmware {
        return Err("--backup-listen needs the card's firmware".into());
    }
    let mut timing = CardTiming::default();
    timing.host.latency = host_latency;
    let (svc, thread) =
        service::start(&state_dir, timing, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let server = Server::bind(&socket, Limits::default()).map_err(|e| e.to_string())?;
    let control = control.unwrap_or_else(|| {
        let mut p = socket.clone().into_os_string();
        p.push(".ctl");
        PathBuf::from(p)
    });
    let _ = std::fs::remove_file(&control);
    let listener = std::os::unix::net::UnixListener::bind(&control)
        .map_err(|e| format!("{}: {e}", control.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let ctl_thread = {
        let (svc, stop) = (svc.clone(), stop.clone());
        std::thread::spawn(move || control_loop(listener, svc, stop))
    };
    // SIGTERM / SIGINT: stop serving, flush the cold tier, remove sockets.
    let server_stop = server.stop_handle();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| format!("signals: {e}"))?;
    let sig_handle = signals.handle();
    let sig_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                stop.store(true, Ordering::SeqCst);
                server_stop.stop();
            }
        })
    };
    eprintln!(
        "hitless-sim: serving {} (control {}, state {})",
        socket.display(),
        control.display(),
        state_dir.display()
    );
    // The image manager boots the card's image before the host can send
    // the first request (the card's first boot), on a replicated card too
    // (where the booted image decides the link schema). A card runs one
    // when it trusts a signing key, or has its NVS devices already: a
    // card that can never install a package keeps no 2 × 8 MiB of flash
    // files.
    // IMAGE_REBOOT: once answered, the card stops serving (after a pause
    // in which the host reads the answer) and `main` starts it again.
    let reboot = Arc::new(AtomicBool::new(false));
    let open_image = || -> Result<Option<hitless_sim::image::CardImage>, String> {
        if !image.trusted.is_empty() || state_dir.join("nvs0.flash").exists() {
            let mut img = hitless_sim::image::CardImage::open(&state_dir, &image)
                .map_err(|e| hitless_firmware::manager::chain(&e))?;
            let (flag, stop) = (reboot.clone(), server.stop_handle());
            img.set_reboot_hook(Box::new(move || {
                let (flag, stop) = (flag.clone(), stop.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(REBOOT_PAUSE);
                    flag.store(true, Ordering::SeqCst);
                    stop.stop();
                });
            }));
            Ok(Some(img))
        } else {
            Ok(None)
        }
    };
    let fw = match (firmware, pair) {
        (false, _) => None,
        (true, None) => Some(hitless_sim::firmware::start_with_image(
            svc.clone(),
            open_image()?,
        )),
        (true, Some(pair)) => {
            let node = pair.node;
            let (h, t, addr) =
                hitless_sim::firmware::start_replicated(svc.clone(), pair, open_image()?)?;
            eprintln!("hitless-sim: node {node}: links on {addr}");
            Some((h, t))
        }
    };
    // Backup readers reach the same firmware instance as the host.
    let backup_service = match (backup, &fw) {
        (Some((addr, limits)), Some((handle, _))) => {
            let b = hitless_sim::backup::BackupService::start(addr, handle.clone(), limits)
                .map_err(|e| format!("--backup-listen {addr}: {e}"))?;
            eprintln!("hitless-sim: backup reader on {}", b.local_addr());
            Some(b)
        }
        _ => None,
    };
    let mut device = match &fw {
        Some((handle, _)) => SimDevice::with_firmware(svc.clone(), handle.clone()),
        None => SimDevice::new(svc.clone()),
    };
    let served = server.run(&mut device).map_err(|e| e.to_string());
    drop(backup_service);
    if let Some((handle, thread)) = fw {
        handle.stop();
        thread.join();
    }
    stop.store(true, Ordering::SeqCst);
    sig_handle.close();
    let _ = sig_thread.join();
    let _ = ctl_thread.join();
    svc.shutdown();
    thread.join().map_err(|e| e.to_string())?;
    drop(server);
    let _ = std::fs::remove_file(&control);
    if reboot.load(Ordering::SeqCst) {
        eprintln!("hitless-sim: rebooting");
        return served.map(|()| Served::Reboot);
    }
    eprintln!("hitless-sim: stopped");
    served.map(|()| Served::Stopped)
}

/// How `serve` ended.
enum Served {
    Stopped,
    /// IMAGE_REBOOT: start the card again.
    Reboot,
}

/// How long a rebooting card keeps serving after its answer, so the host
/// reads it before the connection goes.
const REBOOT_PAUSE: Duration = Duration::from_millis(300);

/// The card's reboot: the process replaces itself with a fresh start of
/// the same command (same pid, same state directory): everything in
/// memory is gone, the NVS and the tiers' files stay, and the image boots
/// again. Returns only on failure.
fn reboot_process() -> String {
    use std::os::unix::process::CommandExt;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match std::env::current_exe() {
        Ok(exe) => {
            let e = std::process::Command::new(exe).args(args).exec();
            format!("reboot: {e}")
        }
        Err(e) => format!("reboot: the program's path: {e}"),
    }
}
