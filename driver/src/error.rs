//! The driver's one error type.

use hitless_hdl::contract::Status;
use std::time::Duration;

/// Everything the driver can fail with. Nothing in the driver panics on
/// what a card or a transport returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The transport failed (socket, file, ioctl, serial line); the
    /// underlying error, when there is one, is the source.
    #[error("transport: {what}")]
    Transport {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A wait ran out of time: the card is dead, hung or too slow.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: &'static str, after: Duration },
    /// The device at the other end is not a hitless controller.
    #[error("not a hitless card: ID register reads {id:#010x}")]
    NotHitless { id: u32 },
    /// The controller speaks another major version of the contract.
    #[error("contract version {found:#010x} is not compatible with {expected:#010x}")]
    Version { found: u32, expected: u32 },
    /// The controller completed the operation with an error status.
    #[error("card refused the operation: {status:?} ({})", status.describe())]
    Device { status: Status },
    /// The controller returned a completion this driver cannot interpret.
    #[error("malformed completion: {0}")]
    BadCompletion(String),
    /// The firmware answered with a response this driver cannot take.
    #[error("malformed firmware response")]
    BadResponse(#[from] hitless_proto::message::ResponseError),
    /// Not enough DMA memory for the transfer.
    #[error("DMA window exhausted: {wanted} bytes wanted, {free} free")]
    DmaExhausted { wanted: u64, free: u64 },
    /// BAR0's mailbox page has no firmware behind it.
    #[error("no card firmware: MB_ID reads {id:#010x} (a controller-only card, or `hitless-sim serve --no-firmware`)")]
    NoFirmware { id: u32 },
    /// The firmware refused the request.
    #[error("card firmware: {} ({code:?}){}", code.describe(), if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Firmware {
        code: hitless_proto::Code,
        detail: String,
        /// With `TooSmall`: the bytes the buffer must have.
        needed: Option<u32>,
    },
    /// A replicated card that is not its pair's master refused the
    /// request (`Code::NotMaster`): `master` is the master it knows (none:
    /// it knows none, e.g. during a takeover), `epoch` the newest epoch it
    /// knows. Send the request to the master's card.
    #[error("{}", not_master_text(*master, *epoch, detail))]
    NotMaster {
        master: Option<u32>,
        epoch: Option<u64>,
        detail: String,
    },
    /// No card of a `pair:` spec said it is master in the newest epoch
    /// seen, within `after` (a takeover that did not finish, every card
    /// unreachable); `cards` says what each one answered.
    #[error("no master among the pair's cards after {after:?}: {cards}")]
    NoMaster { after: Duration, cards: String },
    /// The card of a `pair:` spec was lost while it ran a request that is
    /// not safe to send again (`what`: a log append, a delete, a first
    /// open, a switchover): it may or may not have been applied (and
    /// replicated). The client did not retry it; check before doing it
    /// again.
    #[error("{what} may or may not have been applied: {card} was lost during it ({cause}); not retried on the new master, since doing it twice would not be doing it once")]
    MaybeApplied {
        what: &'static str,
        card: String,
        #[source]
        cause: Box<Error>,
    },
    /// The descriptor needs what the controller lacks (its `LIMITS`): it
    /// would complete `BAD_OPCODE`, so it is not submitted.
    #[error(
        "the card lacks {what} (LIMITS {limits:#x}: a reduced controller, see docs/registers.md)"
    )]
    Unsupported { what: &'static str, limits: u32 },
    /// An address or length outside what the API accepts.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A transport's own error, kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl Error {
    /// The transport failed doing `what`, because of `source`.
    pub fn transport(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Transport {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// The transport failed doing `what` (no underlying error).
    pub fn transport_msg(what: impl Into<String>) -> Self {
        Error::Transport {
            what: what.into(),
            source: None,
        }
    }

    /// The error and its sources on one line.
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(x) = src {
            s.push_str(": ");
            s.push_str(&x.to_string());
            src = x.source();
        }
        s
    }
}

fn not_master_text(master: Option<u32>, epoch: Option<u64>, detail: &str) -> String {
    let who = match (master, epoch) {
        (Some(m), Some(e)) => format!("the master is node {m} (epoch {e})"),
        (Some(m), None) => format!("the master is node {m}"),
        (None, Some(e)) => {
            format!("it knows no master now (epoch {e}): a takeover may be under way")
        }
        (None, None) => "it knows no master now".to_string(),
    };
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" [{detail}]")
    };
    format!("this card is not the master of its pair: {who}{detail}")
}

impl From<hitless_proto::message::Failure> for Error {
    /// A card's refusal: `NotMaster` typed with the master it names, any
    /// other code as `Error::Firmware`.
    fn from(f: hitless_proto::message::Failure) -> Self {
        match f.code {
            hitless_proto::Code::NotMaster => Error::NotMaster {
                master: f.master,
                epoch: f.epoch,
                detail: f.detail,
            },
            code => Error::Firmware {
                code,
                detail: f.detail,
                needed: f.needed,
            },
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::transport("I/O", e)
    }
}

impl From<hitless_ring::RingError> for Error {
    fn from(e: hitless_ring::RingError) -> Self {
        use hitless_ring::RingError;
        match e {
            RingError::Timeout { what, after } => Error::Timeout { what, after },
            RingError::Full { wanted, free } => {
                Error::InvalidArgument(format!("{wanted} descriptors, {free} ring slots free"))
            }
            RingError::Size { .. } => Error::InvalidArgument(e.to_string()),
            RingError::Mismatch { .. } => Error::BadCompletion(e.to_string()),
        }
    }
}
