//! `hitlessd --card SPEC --socket PATH`: serve a card to the applications
//! of this host. See `docs/daemon.md`.
#![forbid(unsafe_code)]

use clap::Parser;
use hitless_daemon::{browser, card, metrics, policy, server};
use hitless_driver::credentials::Credentials;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "hitlessd",
    version,
    about = "Serve one hitless card to many applications on a Unix socket"
)]
struct Args {
    /// The card (as `hitless --card`): vfio-user:SOCKET, vfio:DDDD:BB:DD.F,
    /// uio:..., uart:/dev/ttyUSB0[@BAUD], or pair:SPEC,SPEC (the cards of a
    /// replicated pair: the daemon serves through whichever is master and
    /// follows it across takeovers and switchovers).
    #[arg(long)]
    card: String,
    /// The socket applications connect to (ignored under systemd socket
    /// activation, which passes the listening socket).
    #[arg(long, default_value = hitless_driver::daemon::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Where the daemon keeps the applications' secrets and their owners.
    #[arg(long, default_value = "/var/lib/hitless")]
    state_dir: PathBuf,
    /// Policy file: which uids and gids may use which application ids
    /// (default: an id belongs to the uid that registered it).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (GET /metrics).
    #[arg(long)]
    metrics: Option<String>,
    /// Serve the store browser (a web page and its JSON API: the card's
    /// status, the applications, their sets and logs; remove a set,
    /// suspend an application) on this address, e.g. 127.0.0.1:9478.
    /// Requests need the token the daemon writes to STATE_DIR/http-token
    /// (the URL with it is logged at start).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Let --http listen on a non-loopback address. Off by default: the
    /// page changes what the card holds and speaks plain HTTP, so the
    /// token would cross the network in clear; put a TLS proxy with its
    /// own access control in front when you turn this on.
    #[arg(long, requires = "http")]
    http_allow_remote: bool,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Seconds a card operation may take before the card is declared hung.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Seconds a request may wait for its answer (queue and card).
    #[arg(long, default_value_t = 60)]
    answer_timeout: u64,
    /// Seconds a connection may stay silent before it is closed.
    #[arg(long, default_value_t = 3600)]
    idle_timeout: u64,
    /// Card sessions kept open at most (the card has 14 for sessions).
    #[arg(long, default_value_t = 14)]
    max_card_sessions: usize,
    /// Microseconds a connection busy-polls for the next request after an
    /// answer before it sleeps (0: never): saves the application a
    /// wake-up of the daemon when it sends requests back to back, at the
    /// cost of at most this much CPU per request.
    #[arg(long, default_value_t = 200)]
    busy_poll_us: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    #[error(transparent)]
    Driver(#[from] hitless_driver::Error),
    #[error(transparent)]
    Browser(#[from] browser::BrowserError),
    #[error("{0}")]
    Usage(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("HITLESS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => sub.json().init(),
        LogFormat::Text => sub.init(),
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("hitlessd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The listening socket: systemd's (socket activation) or our own, bound
/// at `path` (a stale socket of a dead daemon is replaced; a live one is
/// an error).
fn listener(path: &Path) -> Result<UnixListener, Error> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() > 0 {
        if let Some(l) = fds
            .take_unix_listener(0)
            .map_err(io("the socket systemd passed"))?
        {
            tracing::info!("serving the socket systemd passed");
            return Ok(l);
        }
        return Err(Error::Usage(
            "systemd passed a socket that is not a Unix stream listener".into(),
        ));
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(Error::Usage(format!(
                "{}: another hitlessd is serving this socket",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(io(format!("removing stale {}", path.display())))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    let l = UnixListener::bind(path).map_err(io(format!("binding {}", path.display())))?;
    // Anyone may connect: the policy decides what each uid may do.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(io(format!("chmod {}", path.display())))?;
    Ok(l)
}

fn run(args: Args) -> Result<(), Error> {
    std::fs::create_dir_all(&args.state_dir)
        .map_err(io(format!("creating {}", args.state_dir.display())))?;
    std::fs::set_permissions(&args.state_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod {}", args.state_dir.display())))?;
    let rules = match &args.policy {
        Some(p) => policy::Policy::rules_from_file(p)?,
        None => Vec::new(),
    };
    let policy = policy::Policy::new(rules, Some(args.state_dir.join("owners")))?;
    let credentials = Credentials::new(Some(args.state_dir.join("secrets")))?;
    let metrics = metrics::Metrics::new();
    let timeout = Duration::from_secs(args.timeout.max(1));
    let card = card::Card::start(
        card::CardConfig {
            spec: args.card.clone(),
            timeout,
            credentials,
            max_sessions: args.max_card_sessions.clamp(1, 14),
        },
        metrics.clone(),
    )
    .map_err(io("starting the card thread"))?;
    if let Some(addr) = &args.metrics {
        let l = std::net::TcpListener::bind(addr).map_err(io(format!("metrics on {addr}")))?;
        tracing::info!(
            "metrics on http://{}/metrics",
            l.local_addr().map_err(io("metrics"))?
        );
        let c = card.clone();
        metrics::serve(l, metrics.clone(), move || {
            // Fresh card figures; a busy or absent card leaves the last ones.
            let _ = c.call(
                card::Op::Plain(hitless_proto::Request::Status),
                Duration::from_secs(2),
            );
        });
    }
    let listener = listener(&args.socket)?;
    tracing::info!(
        "serving card {} on {}",
        args.card,
        listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            .unwrap_or_else(|| "the activated socket".into())
    );
    let limits = server::Limits {
        idle: Duration::from_secs(args.idle_timeout.max(1)),
        answer: Duration::from_secs(args.answer_timeout.max(1)),
        // More than a millisecond would be a core spent waiting.
        busy_poll: Duration::from_micros(args.busy_poll_us.min(1000)),
        ..server::Limits::default()
    };
    let suspended = server::Suspended::load(Some(args.state_dir.join("suspended")))
        .map_err(io(format!("{}/suspended", args.state_dir.display())))?;
    let shared = server::Shared::new(card, policy, metrics, limits, suspended);
    if let Some(addr) = &args.http {
        let l = browser::bind(addr, args.http_allow_remote)?;
        let local = l.local_addr().map_err(io("--http"))?;
        let token = browser::new_token(&args.state_dir)?;
        let credentials = Credentials::new(Some(args.state_dir.join("secrets")))?;
        let b = browser::Browser::new(
            shared.clone(),
            credentials,
            token.clone(),
            args.http_allow_remote,
            local,
        );
        browser::serve(l, b).map_err(io("starting the store browser"))?;
        tracing::info!(
            "store browser on http://{local}/?token={token} (token in {})",
            args.state_dir.join("http-token").display()
        );
    }
    server::serve(listener, shared).map_err(io("serving"))
}
