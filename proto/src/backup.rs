//! The frames of the remote backup reader (seed 001, claims 1, 3, 4, 9,
//! 16-19): a backup process on another host reads an application's sets
//! and append log on the card over TCP (`hitless-sim serve
//! --backup-listen ADDR`, the driver's `backup:HOST:PORT`).
//!
//! The requests are the firmware's own TLV requests, signed with the
//! application's secret exactly as on the mailbox path
//! ([`crate::auth`]); only the challenge differs: each connection has its
//! own (claim 18: the access is bound to the connection), sent in
//! [`Kind::Hello`] and replaced by the one each [`Kind::Reply`] carries, so
//! a remote reader never consumes the local host's challenge. Every
//! request, good or bad, consumes the connection's challenge.
//!
//! The service is read-only: STATUS, OPEN (without WRITE, of an
//! application already registered), CLOSE, LIST, RESTORE, LOG_READ and
//! LOG_TRIM. The `DATA_ADDR`/`CAP` of RESTORE and LOG_READ must name the
//! card's backup window (its address and size are in the hello: claim 22's
//! "address context"); the bytes the card put there come back as the
//! reply's data.
//!
//! ```text
//! offset  size  field
//!      0     4  MAGIC ("HTLB", little-endian)
//!      4     2  VERSION
//!      6     1  kind (HELLO, REQUEST, REPLY, ERROR)
//!      7     1  0
//!      8     4  message length (at most MAX_MESSAGE)
//!     12     4  data length    (REPLY only; at most MAX_DATA)
//!     16     4  code (REPLY, ERROR: a result code)
//!     20     4  0
//!     24     8  challenge (HELLO: the first; REPLY: the next)
//! ```
//!
//! HELLO's message is the window: its address (8 bytes) and size (4
//! bytes). ERROR's message is a UTF-8 reason; the card closes the
//! connection after it (a frame it cannot take leaves no trusted frame
//! boundary).

use hitless_hdl::contract::MAX_MESSAGE;

/// "HTLB" read as a little-endian u32.
pub const MAGIC: u32 = u32::from_le_bytes(*b"HTLB");
/// The frame format version.
pub const VERSION: u16 = 1;
/// Header size in bytes.
pub const HEADER_BYTES: usize = 32;
/// Largest message.
pub const MAX_MESSAGE_BYTES: u32 = MAX_MESSAGE;
/// Largest data of a reply: the largest set the driver stores (48 MiB)
/// with room to spare.
pub const MAX_DATA: u32 = 64 << 20;
/// Bytes of HELLO's message.
pub const HELLO_BYTES: usize = 12;

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Card → reader, once per connection: the first challenge and the
    /// backup window.
    Hello = 1,
    /// Reader → card: one signed request.
    Request = 2,
    /// Card → reader: the result code, the response message, the bytes
    /// the card put in the window, the next challenge.
    Reply = 3,
    /// Card → reader: a frame it would not take; the connection ends.
    Error = 4,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Kind::Hello),
            2 => Some(Kind::Request),
            3 => Some(Kind::Reply),
            4 => Some(Kind::Error),
            _ => None,
        }
    }
}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub msg_len: u32,
    pub data_len: u32,
    pub code: u32,
    pub challenge: u64,
}

/// Why bytes are not a frame this side takes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("not a backup reader frame (magic {0:#010x})")]
    Magic(u32),
    #[error("frame version {found}, this side speaks {VERSION}")]
    Version { found: u16 },
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("message of {0} bytes (at most {MAX_MESSAGE_BYTES})")]
    MessageSize(u32),
    #[error("frame data of {0} bytes (at most {1})")]
    DataSize(u32, u32),
    #[error("a {0:?} frame carries no data")]
    UnexpectedData(Kind),
    #[error("a HELLO of {0} bytes (it has {HELLO_BYTES})")]
    Hello(usize),
}

impl Header {
    /// A header; checked as the receiver will.
    pub fn new(
        kind: Kind,
        msg_len: usize,
        data_len: usize,
        code: u32,
        challenge: u64,
    ) -> Result<Self, FrameError> {
        let h = Self {
            kind,
            msg_len: u32::try_from(msg_len).unwrap_or(u32::MAX),
            data_len: u32::try_from(data_len).unwrap_or(u32::MAX),
            code,
            challenge,
        };
        h.check(MAX_DATA)?;
        Ok(h)
    }

    /// `max_data`: what this side takes (a card takes none).
    fn check(&self, max_data: u32) -> Result<(), FrameError> {
        if self.msg_len > MAX_MESSAGE_BYTES {
            return Err(FrameError::MessageSize(self.msg_len));
        }
        if self.data_len != 0 && self.kind != Kind::Reply {
            return Err(FrameError::UnexpectedData(self.kind));
        }
        if self.data_len > max_data {
            return Err(FrameError::DataSize(self.data_len, max_data));
        }
        if self.kind == Kind::Hello && self.msg_len as usize != HELLO_BYTES {
            return Err(FrameError::Hello(self.msg_len as usize));
        }
        Ok(())
    }

    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[6] = self.kind as u8;
        b[8..12].copy_from_slice(&self.msg_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.data_len.to_le_bytes());
        b[16..20].copy_from_slice(&self.code.to_le_bytes());
        b[24..32].copy_from_slice(&self.challenge.to_le_bytes());
        b
    }

    /// Decode and check a header; frames with more than `max_data` data
    /// bytes are refused before anything is allocated for them.
    pub fn decode(b: &[u8; HEADER_BYTES], max_data: u32) -> Result<Self, FrameError> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let magic = u32_at(0);
        if magic != MAGIC {
            return Err(FrameError::Magic(magic));
        }
        let found = u16::from_le_bytes([b[4], b[5]]);
        if found != VERSION {
            return Err(FrameError::Version { found });
        }
        let kind = Kind::from_u8(b[6]).ok_or(FrameError::Kind(b[6]))?;
        let mut c = [0u8; 8];
        c.copy_from_slice(&b[24..32]);
        let h = Self {
            kind,
            msg_len: u32_at(8),
            data_len: u32_at(12),
            code: u32_at(16),
            challenge: u64::from_le_bytes(c),
        };
        h.check(max_data)?;
        Ok(h)
    }
}

/// A whole frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub message: Vec<u8>,
    pub data: Vec<u8>,
}

impl Frame {
    /// A frame of `kind`; `Err` when a part exceeds its limit.
    pub fn new(
        kind: Kind,
        code: u32,
        challenge: u64,
        message: Vec<u8>,
        data: Vec<u8>,
    ) -> Result<Self, FrameError> {
        let header = Header::new(kind, message.len(), data.len(), code, challenge)?;
        Ok(Self {
            header,
            message,
            data,
        })
    }

    /// The card's hello: the first challenge and the window.
    pub fn hello(challenge: u64, window_addr: u64, window_len: u32) -> Self {
        let mut m = Vec::with_capacity(HELLO_BYTES);
        m.extend_from_slice(&window_addr.to_le_bytes());
        m.extend_from_slice(&window_len.to_le_bytes());
        Self {
            header: Header {
                kind: Kind::Hello,
                msg_len: HELLO_BYTES as u32,
                data_len: 0,
                code: 0,
                challenge,
            },
            message: m,
            data: Vec::new(),
        }
    }

    /// The window a hello names: (address, size).
    pub fn window(&self) -> Option<(u64, u32)> {
        if self.header.kind != Kind::Hello || self.message.len() != HELLO_BYTES {
            return None;
        }
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.message[0..8]);
        let mut l = [0u8; 4];
        l.copy_from_slice(&self.message[8..12]);
        Some((u64::from_le_bytes(a), u32::from_le_bytes(l)))
    }

    /// The card's refusal of a frame (the connection ends after it).
    pub fn error(code: crate::Code, reason: &str) -> Self {
        let mut message = reason.as_bytes().to_vec();
        message.truncate(MAX_MESSAGE_BYTES as usize);
        Self {
            header: Header {
                kind: Kind::Error,
                msg_len: message.len() as u32,
                data_len: 0,
                code: code as u32,
                challenge: 0,
            },
            message,
            data: Vec::new(),
        }
    }

    /// Header, message and data, ready for the socket.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_BYTES + self.message.len() + self.data.len());
        b.extend_from_slice(&self.header.encode());
        b.extend_from_slice(&self.message);
        b.extend_from_slice(&self.data);
        b
    }

    /// Read one frame: a header checked against `max_data` before the
    /// rest is read. A read error (the caller's deadline included) or a
    /// short stream is `Io`; a frame this side does not take is `Frame`.
    pub fn read(r: &mut dyn std::io::Read, max_data: u32) -> Result<Self, ReadError> {
        let mut h = [0u8; HEADER_BYTES];
        r.read_exact(&mut h)?;
        let header = Header::decode(&h, max_data)?;
        let mut message = vec![0u8; header.msg_len as usize];
        r.read_exact(&mut message)?;
        let mut data = vec![0u8; header.data_len as usize];
        r.read_exact(&mut data)?;
        Ok(Self {
            header,
            message,
            data,
        })
    }

    /// Decode a frame held whole in `b` (the fuzzer's way in): the frame
    /// and the bytes after it.
    pub fn decode(b: &[u8], max_data: u32) -> Result<(Self, &[u8]), ReadError> {
        let mut cursor = b;
        let f = Self::read(&mut cursor, max_data)?;
        Ok((f, cursor))
    }
}

/// Why no frame was read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading a frame")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hello_carries_the_window() {
        let h = Frame::hello(7, 1 << 63, 4096);
        let bytes = h.encode();
        let (back, rest) = Frame::decode(&bytes, 0).expect("decodes");
        assert!(rest.is_empty());
        assert_eq!(back.header.challenge, 7);
        assert_eq!(back.window(), Some((1 << 63, 4096)));
    }

    #[test]
    fn limits_are_checked_before_reading_the_body() {
        let f = Frame::new(Kind::Reply, 0, 1, b"m".to_vec(), vec![0; 100]).expect("frame");
        let b = f.encode();
        assert!(matches!(
            Frame::decode(&b, 99),
            Err(ReadError::Frame(FrameError::DataSize(100, 99)))
        ));
        // A request carries no data.
        let mut h = Header::new(Kind::Request, 1, 0, 0, 0).expect("header");
        h.data_len = 1;
        assert_eq!(
            Header::decode(&h.encode(), MAX_DATA),
            Err(FrameError::UnexpectedData(Kind::Request))
        );
        let mut big = Header::new(Kind::Request, 1, 0, 0, 0)
            .expect("header")
            .encode();
        big[8..12].copy_from_slice(&(MAX_MESSAGE_BYTES + 1).to_le_bytes());
        assert_eq!(
            Header::decode(&big, 0),
            Err(FrameError::MessageSize(MAX_MESSAGE_BYTES + 1))
        );
        // A truncated frame is an I/O error, not a frame.
        assert!(matches!(
            Frame::decode(&b[..b.len() - 1], MAX_DATA),
            Err(ReadError::Io(_))
        ));
    }

    proptest! {
        #[test]
        fn frames_round_trip(kind in 2u8..5, code: u32, challenge: u64,
                             message in proptest::collection::vec(any::<u8>(), 0..64),
                             data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let kind = Kind::from_u8(kind).expect("kind");
            let data = if kind == Kind::Reply { data } else { Vec::new() };
            let f = Frame::new(kind, code, challenge, message, data).expect("frame");
            let bytes = f.encode();
            let (back, rest) = Frame::decode(&bytes, MAX_DATA).expect("decodes");
            prop_assert!(rest.is_empty());
            prop_assert_eq!(back, f);
        }

        #[test]
        fn garbage_is_a_value_or_an_error(b in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = Frame::decode(&b, MAX_DATA);
        }
    }
}
