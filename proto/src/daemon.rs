//! The frames between applications and `hitlessd` on its Unix socket.
//!
//! A frame is a 16-byte header, a TLV message (a [`crate::Request`] from
//! the application, a response from the daemon, the same encoding the card
//! firmware speaks) and the set data it carries. Data travels inline after
//! the message, or, when large, in a memfd passed with `SCM_RIGHTS`
//! ([`FLAG_FD`]): the bytes then never cross the socket.
//!
//! The requests are the firmware's, with two differences: the `HANDLE`
//! field names a session of *this connection* (the daemon's, not the
//! card's), and the `DATA_ADDR` fields are offsets into the frame's data.
//! Nothing is signed: the daemon knows who is connected (`SO_PEERCRED`)
//! and keeps the applications' secrets itself.
//!
//! ```text
//! offset  size  field
//!      0     4  MAGIC ("HTLD", little-endian)
//!      4     2  VERSION
//!      6     2  flags (FLAG_FD: the data is in the attached fd)
//!      8     4  message length (at most MAX_MESSAGE)
//!     12     4  data length    (at most MAX_DATA)
//! ```

use hitless_hdl::contract::{MAX_MESSAGE, MAX_TRANSFER};

/// "HTLD" read as a little-endian u32.
pub const MAGIC: u32 = u32::from_le_bytes(*b"HTLD");
/// The frame format version; a daemon answers a frame of another major
/// version with [`FrameError::Version`] and closes the connection.
pub const VERSION: u16 = 1;
/// Header size in bytes.
pub const HEADER_BYTES: usize = 16;
/// The frame's data is in the file descriptor sent with it.
pub const FLAG_FD: u16 = 1;
/// Flags this side knows.
pub const FLAGS_ALL: u16 = FLAG_FD;
/// Largest message.
pub const MAX_MESSAGE_BYTES: u32 = MAX_MESSAGE;
/// Largest data of one frame: a whole reboot stage's sets of one
/// application (FETCH) fit, as in the direct client's data buffer.
pub const MAX_DATA: u32 = 4 * MAX_TRANSFER;
/// Data at least this large goes in a memfd rather than inline.
pub const FD_THRESHOLD: usize = 64 * 1024;

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub flags: u16,
    pub msg_len: u32,
    pub data_len: u32,
}

/// Why bytes are not a frame header this side takes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("not a hitlessd frame (magic {0:#010x})")]
    Magic(u32),
    #[error("frame version {found}, this side speaks {VERSION}")]
    Version { found: u16 },
    #[error("unknown frame flags {0:#x}")]
    Flags(u16),
    #[error("message of {0} bytes (at most {MAX_MESSAGE_BYTES})")]
    MessageSize(u32),
    #[error("frame data of {0} bytes (at most {MAX_DATA})")]
    DataSize(u32),
}

impl Header {
    /// A header for `msg_len` message bytes and `data_len` data bytes.
    pub fn new(msg_len: usize, data_len: usize, in_fd: bool) -> Result<Self, FrameError> {
        let msg_len = u32::try_from(msg_len).unwrap_or(u32::MAX);
        let data_len = u32::try_from(data_len).unwrap_or(u32::MAX);
        let h = Self {
            flags: if in_fd { FLAG_FD } else { 0 },
            msg_len,
            data_len,
        };
        h.check()?;
        Ok(h)
    }

    /// Whether the data is in the attached file descriptor.
    pub fn data_in_fd(&self) -> bool {
        self.flags & FLAG_FD != 0
    }

    fn check(&self) -> Result<(), FrameError> {
        if self.flags & !FLAGS_ALL != 0 {
            return Err(FrameError::Flags(self.flags));
        }
        if self.msg_len > MAX_MESSAGE_BYTES {
            return Err(FrameError::MessageSize(self.msg_len));
        }
        if self.data_len > MAX_DATA {
            return Err(FrameError::DataSize(self.data_len));
        }
        Ok(())
    }

    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..12].copy_from_slice(&self.msg_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.data_len.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; HEADER_BYTES]) -> Result<Self, FrameError> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let magic = u32_at(0);
        if magic != MAGIC {
            return Err(FrameError::Magic(magic));
        }
        let found = u16_at(4);
        if found != VERSION {
            return Err(FrameError::Version { found });
        }
        let h = Self {
            flags: u16_at(6),
            msg_len: u32_at(8),
            data_len: u32_at(12),
        };
        h.check()?;
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn headers_round_trip() {
        for (m, d, fd) in [(0, 0, false), (12, 4096, false), (100, 1 << 20, true)] {
            let h = Header::new(m, d, fd).unwrap();
            assert_eq!(Header::decode(&h.encode()), Ok(h));
            assert_eq!(h.data_in_fd(), fd);
        }
    }

    #[test]
    fn bad_headers_are_refused() {
        let good = Header::new(10, 10, false).unwrap().encode();
        let mut b = good;
        b[0] ^= 1;
        assert!(matches!(Header::decode(&b), Err(FrameError::Magic(_))));
        let mut b = good;
        b[4] = 2;
        assert_eq!(Header::decode(&b), Err(FrameError::Version { found: 2 }));
        let mut b = good;
        b[6] = 0x80;
        assert_eq!(Header::decode(&b), Err(FrameError::Flags(0x80)));
        assert_eq!(
            Header::new(MAX_MESSAGE_BYTES as usize + 1, 0, false),
            Err(FrameError::MessageSize(MAX_MESSAGE_BYTES + 1))
        );
        assert_eq!(
            Header::new(0, MAX_DATA as usize + 1, false),
            Err(FrameError::DataSize(MAX_DATA + 1))
        );
        assert!(Header::new(0, usize::MAX, false).is_err());
    }

    proptest! {
        // Any 16 bytes: a header within the limits, or an error; never a
        // panic, never a header beyond the limits.
        #[test]
        fn any_bytes_decode_within_limits(b in proptest::array::uniform16(any::<u8>())) {
            if let Ok(h) = Header::decode(&b) {
                prop_assert!(h.msg_len <= MAX_MESSAGE_BYTES && h.data_len <= MAX_DATA);
                prop_assert_eq!(h.encode(), b);
            }
        }
    }
}
