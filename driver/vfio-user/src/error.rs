//! The crate's one error type, [`Error`], for every side: client calls,
//! device results, DMA accesses, VERSION negotiation, and the reasons a
//! server ends a connection or cannot listen.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::proto::{errno, VERSION_MAJOR};

/// Everything that can go wrong in this crate.
///
/// Which variants a function returns is stated in its documentation; the
/// groups below are by where they arise. A [`crate::Device`] returns the
/// "device results" group (and may return any variant: the server answers
/// with [`Error::errno`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- Client calls (and the socket on either side) ----
    /// No (complete) reply, or a message not completed, within this time.
    #[error("no reply or message not completed within {0:?}")]
    Timeout(Duration),
    /// The server closed the connection, or the connection is no longer
    /// usable (an earlier call timed out in the middle of a message or the
    /// server broke the framing). Reconnect.
    #[error("server disconnected")]
    Disconnected,
    /// The server is serving another client (client side), or the device
    /// cannot take the request now (`EBUSY`, device side).
    #[error("busy: another client is attached, or the device cannot take the request now")]
    Busy,
    /// The server answered with an error reply carrying this errno (0 if
    /// the server gave none).
    #[error("server replied with error (errno {0})")]
    Remote(i32),
    /// The server sent something that does not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The request is invalid: refused by the client before sending it, or
    /// by the device (`EINVAL`).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A socket, memfd, eventfd or file error.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),

    // ---- Device results ----
    /// The device does not support the request (`ENOTSUP`).
    #[error("operation not supported")]
    NotSupported,
    /// A DMA mapping overlaps an existing one (`EEXIST`).
    #[error("DMA mapping overlaps an existing one")]
    Exists,
    /// No such DMA mapping (`ENOENT`).
    #[error("no such DMA mapping")]
    NotFound,
    /// The device failed (`EIO`).
    #[error("device I/O error")]
    DeviceIo,
    /// Any other errno.
    #[error("errno {0}")]
    Errno(u32),

    // ---- DMA accesses ----
    /// No single live mapping covers `[iova, iova + len)`.
    #[error("DMA access {iova:#x}+{len:#x} is not inside one mapping")]
    DmaUnmapped {
        /// First address.
        iova: u64,
        /// Length.
        len: usize,
    },
    /// The mapping does not allow this direction.
    #[error("DMA access {iova:#x}+{len:#x} not permitted by the mapping")]
    DmaPermission {
        /// First address.
        iova: u64,
        /// Length.
        len: usize,
    },
    /// The client's file no longer holds the bytes (it was shrunk after
    /// the mapping was made), or reading/writing it failed.
    #[error("DMA access {iova:#x}+{len:#x} failed: the client's memory is gone ({reason})")]
    DmaFault {
        /// First address.
        iova: u64,
        /// Length.
        len: usize,
        /// The I/O error.
        reason: String,
    },

    // ---- VERSION negotiation ----
    /// A VERSION payload shorter than the 4-byte major/minor pair.
    #[error("VERSION payload shorter than 4 bytes")]
    VersionShort,
    /// The VERSION JSON text is not UTF-8, not JSON, or not an object.
    #[error("VERSION capabilities are not a JSON object: {0}")]
    VersionJson(String),
    /// A capability we understand has a value of the wrong type or range.
    #[error("capability {0} is not a valid value")]
    BadCapability(&'static str),
    /// The peer proposed or answered a major version we do not speak.
    #[error("unsupported major version {0} (we speak {VERSION_MAJOR})")]
    VersionMajor(u16),
    /// A reply's minor version is above the proposed one.
    #[error("reply minor version {reply} is above the proposed {proposed}")]
    VersionMinor {
        /// What was proposed.
        proposed: u16,
        /// What the reply says.
        reply: u16,
    },
    /// A reply carries a capability that was not proposed.
    #[error("reply carries capability {0}, which was not proposed")]
    NotProposed(&'static str),
    /// A reply's capability is larger than the proposed one.
    #[error("reply's {name} = {reply} is larger than the proposed {proposed}")]
    CapabilityLarger {
        /// The capability.
        name: &'static str,
        /// What was proposed.
        proposed: u64,
        /// What the reply says.
        reply: u64,
    },
    /// No DMA page size is supported by both sides.
    #[error("no DMA page size in common")]
    NoCommonPageSize,

    // ---- Why a server ended a connection ----
    /// The client closed the connection in the middle of a message.
    #[error("connection closed in the middle of a message")]
    Truncated,
    /// The header declares a size below the header size.
    #[error("message size {0} is smaller than the header")]
    SizeTooSmall(u32),
    /// The header declares a size above the limit.
    #[error("message size {size} exceeds the limit {max}")]
    SizeTooLarge {
        /// Declared size.
        size: u32,
        /// The limit.
        max: u32,
    },
    /// The client sent something other than a command (we never send
    /// commands, so a reply from the client is out of step).
    #[error("message type {0:#x} is not a command")]
    NotACommand(u32),
    /// The first message was not VERSION.
    #[error("command {0} before version negotiation")]
    NotNegotiated(u16),

    // ---- Why a server could not listen ----
    /// Another server answers on the socket path.
    #[error("a server is already listening on {0}")]
    AddrInUse(PathBuf),
    /// The path exists and is not a socket.
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
}

impl Error {
    /// The errno a server puts in the error reply for this error.
    pub fn errno(&self) -> u32 {
        match self {
            Error::InvalidArgument(_)
            | Error::VersionShort
            | Error::VersionJson(_)
            | Error::BadCapability(_)
            | Error::NotNegotiated(_) => errno::EINVAL,
            Error::NotSupported | Error::VersionMajor(_) | Error::NoCommonPageSize => {
                errno::ENOTSUP
            }
            Error::Busy => errno::EBUSY,
            Error::Exists => errno::EEXIST,
            Error::NotFound => errno::ENOENT,
            Error::Errno(e) => *e,
            Error::Remote(e) => u32::try_from(*e).unwrap_or(errno::EIO),
            Error::DmaUnmapped { .. } | Error::DmaPermission { .. } => errno::EFAULT,
            Error::SizeTooLarge { .. } => errno::EMSGSIZE,
            _ => errno::EIO,
        }
    }

    /// The errno of a [`Error::Remote`] reply.
    pub fn remote_errno(&self) -> Option<i32> {
        match self {
            Error::Remote(e) => Some(*e),
            _ => None,
        }
    }
}
