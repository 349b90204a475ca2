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
    /// Print the card's state.
    Status(Target),
}

#[derive(clap::Args)]
struct Target {
    /// The card's control socket.
    #[arg(long)]
    control: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve {
            socket,
            state_dir,
            control,
            host_latency,
            no_firmware,
        } => serve(socket, state_dir, control, host_latency, !no_firmware),
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
        Cmd::Status(t) => ctl(&t, "status".into()),
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

fn serve(
    socket: PathBuf,
    state_dir: PathBuf,
    control: Option<PathBuf>,
    host_latency: u64,
    firmware: bool,
) -> Result<(), String> {
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
    let fw = firmware.then(|| hitless_sim::firmware::start(svc.clone()));
    let mut device = match &fw {
        Some((handle, _)) => SimDevice::with_firmware(svc.clone(), handle.clone()),
        None => SimDevice::new(svc.clone()),
    };
    let served = server.run(&mut device).map_err(|e| e.to_string());
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
    eprintln!("hitless-sim: stopped");
    served
}
