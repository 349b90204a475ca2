//! The driver's one error type.

use hitless_hdl::contract::Status;
use std::time::Duration;

/// Everything the driver can fail with. Nothing in the driver panics on
/// what a card or a transport returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The transport failed (socket, file, ioctl).
    #[error("transport: {0}")]
    Transport(String),
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
    /// Not enough DMA memory for the transfer.
    #[error("DMA window exhausted: {wanted} bytes wanted, {free} free")]
    DmaExhausted { wanted: u64, free: u64 },
    /// BAR0's mailbox page has no firmware behind it.
    #[error("no card firmware: MB_ID reads {id:#010x} (a controller-only card, or `hitless-sim serve --no-firmware`)")]
    NoFirmware { id: u32 },
    /// The firmware refused the request.
    #[error("card firmware: {} ({code:?}){}", code.describe(), if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Firmware {
        code: hitless_firmware::msg::Code,
        detail: String,
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

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Transport(e.to_string())
    }
}
