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
