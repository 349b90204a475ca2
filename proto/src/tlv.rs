//! Versioned type-length-value messages: the card's wire format for host
//! requests (and, later, card-to-card replication; seed 004, claims 8-12).
//!
//! A message is a 8-byte header — magic `HM`, format version, message kind,
//! body length (u32 LE) — and a body of fields, each `tag: u16 LE,
//! len: u32 LE, value`. A reader:
//! - skips fields whose tag it does not know (a newer sender's additions);
//! - gives fields it knows but did not receive their default (an older
//!   sender's message): the typed accessors take the default;
//! - rejects a message that is truncated, longer than its header says, over
//!   the size limit, of another format version, or that repeats a field.

use thiserror::Error;

/// Header magic.
pub const MAGIC: [u8; 2] = *b"HM";
/// Format version this code writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Header bytes.
pub const HEADER: usize = 8;
/// Largest body accepted (a 1 MiB set plus its fields).
pub const MAX_BODY: usize = (1 << 20) + 4096;

/// Why a message was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TlvError {
    #[error("message shorter than its header")]
    Truncated,
    #[error("not a hitless message (magic {0:02x?})")]
    BadMagic([u8; 2]),
    #[error("format version {0}, this side speaks {FORMAT_VERSION}")]
    Version(u8),
    #[error("body of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("header says {declared} body bytes, {actual} present")]
    Length { declared: usize, actual: usize },
    #[error("field {tag} runs past the end of the message")]
    FieldTruncated { tag: u16 },
    #[error("field {tag} appears twice")]
    Duplicate { tag: u16 },
    #[error("field {tag} has {len} bytes, expected {expected}")]
    FieldSize {
        tag: u16,
        len: usize,
        expected: usize,
    },
}

/// A decoded message: its kind and its fields, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u8,
    fields: Vec<(u16, &'a [u8])>,
}

impl<'a> Message<'a> {
    /// Decode and check a whole message.
    pub fn decode(buf: &'a [u8]) -> Result<Self, TlvError> {
        if buf.len() < HEADER {
            return Err(TlvError::Truncated);
        }
        if buf[..2] != MAGIC {
            return Err(TlvError::BadMagic([buf[0], buf[1]]));
        }
        if buf[2] != FORMAT_VERSION {
            return Err(TlvError::Version(buf[2]));
        }
        let kind = buf[3];
        let declared = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        if declared > MAX_BODY {
            return Err(TlvError::TooLarge(declared));
        }
        let body = &buf[HEADER..];
        if body.len() != declared {
            return Err(TlvError::Length {
                declared,
                actual: body.len(),
            });
        }
        let mut fields: Vec<(u16, &[u8])> = Vec::new();
        let mut at = 0usize;
        while at < body.len() {
            if body.len() - at < 6 {
                return Err(TlvError::FieldTruncated { tag: 0 });
            }
            let tag = u16::from_le_bytes([body[at], body[at + 1]]);
            let len = u32::from_le_bytes([body[at + 2], body[at + 3], body[at + 4], body[at + 5]])
                as usize;
            at += 6;
            let value = at
                .checked_add(len)
                .and_then(|end| body.get(at..end))
                .ok_or(TlvError::FieldTruncated { tag })?;
            if fields.iter().any(|&(t, _)| t == tag) {
                return Err(TlvError::Duplicate { tag });
            }
            fields.push((tag, value));
            at += len;
        }
        Ok(Self { kind, fields })
    }

    /// The raw value of a field, if present.
    pub fn field(&self, tag: u16) -> Option<&'a [u8]> {
        self.fields
            .iter()
            .find(|&&(t, _)| t == tag)
            .map(|&(_, v)| v)
    }

    /// A u32 field, or `default` when absent.
    pub fn u32_or(&self, tag: u16, default: u32) -> Result<u32, TlvError> {
        match self.field(tag) {
            None => Ok(default),
            Some(v) => {
                <[u8; 4]>::try_from(v)
                    .map(u32::from_le_bytes)
                    .map_err(|_| TlvError::FieldSize {
                        tag,
                        len: v.len(),
                        expected: 4,
                    })
            }
        }
    }

    /// A u64 field, or `default` when absent.
    pub fn u64_or(&self, tag: u16, default: u64) -> Result<u64, TlvError> {
        match self.field(tag) {
            None => Ok(default),
            Some(v) => {
                <[u8; 8]>::try_from(v)
                    .map(u64::from_le_bytes)
                    .map_err(|_| TlvError::FieldSize {
                        tag,
                        len: v.len(),
                        expected: 8,
                    })
            }
        }
    }

    /// Whether a field is present.
    pub fn has(&self, tag: u16) -> bool {
        self.field(tag).is_some()
    }

    /// A byte-string field, or empty when absent.
    pub fn bytes_or_empty(&self, tag: u16) -> &'a [u8] {
        self.field(tag).unwrap_or(&[])
    }

    /// Tags present, in order (unknown ones included).
    pub fn tags(&self) -> impl Iterator<Item = u16> + '_ {
        self.fields.iter().map(|&(t, _)| t)
    }
}

/// Builds a message.
#[derive(Clone, Debug)]
pub struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    pub fn new(kind: u8) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&MAGIC);
        buf.push(FORMAT_VERSION);
        buf.push(kind);
        buf.extend_from_slice(&0u32.to_le_bytes());
        Self { buf }
    }
    pub fn bytes(mut self, tag: u16, value: &[u8]) -> Self {
        self.buf.extend_from_slice(&tag.to_le_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(value);
        self
    }
    pub fn u32(self, tag: u16, value: u32) -> Self {
        self.bytes(tag, &value.to_le_bytes())
    }
    pub fn u64(self, tag: u16, value: u64) -> Self {
        self.bytes(tag, &value.to_le_bytes())
    }
    /// The encoded message.
    pub fn finish(mut self) -> Vec<u8> {
        let body = (self.buf.len() - HEADER) as u32;
        self.buf[4..8].copy_from_slice(&body.to_le_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unknown_fields_skipped_missing_defaulted() {
        let m = Builder::new(7)
            .u32(1, 42)
            .bytes(999, b"from a newer sender")
            .bytes(3, b"data")
            .finish();
        let d = Message::decode(&m).unwrap();
        assert_eq!(d.kind, 7);
        assert_eq!(d.u32_or(1, 0), Ok(42));
        assert_eq!(d.u32_or(2, 5), Ok(5), "missing field takes its default");
        assert_eq!(d.bytes_or_empty(3), b"data");
        assert_eq!(d.tags().collect::<Vec<_>>(), vec![1, 999, 3]);
    }

    #[test]
    fn bad_messages_are_refused_with_a_reason() {
        let good = Builder::new(1).u32(1, 1).finish();
        assert_eq!(Message::decode(&good[..5]), Err(TlvError::Truncated));
        let mut m = good.clone();
        m[0] = b'X';
        assert!(matches!(Message::decode(&m), Err(TlvError::BadMagic(_))));
        let mut m = good.clone();
        m[2] = 9;
        assert_eq!(Message::decode(&m), Err(TlvError::Version(9)));
        let mut m = good.clone();
        m.push(0);
        assert!(matches!(Message::decode(&m), Err(TlvError::Length { .. })));
        let mut m = good.clone();
        m[4..8].copy_from_slice(&(MAX_BODY as u32 + 1).to_le_bytes());
        assert!(matches!(Message::decode(&m), Err(TlvError::TooLarge(_))));
        let m = Builder::new(1).u32(1, 1).u32(1, 2).finish();
        assert_eq!(Message::decode(&m), Err(TlvError::Duplicate { tag: 1 }));
        let m = Builder::new(1).bytes(1, b"abc").finish();
        assert!(matches!(
            Message::decode(&m).unwrap().u32_or(1, 0),
            Err(TlvError::FieldSize { .. })
        ));
        // A field whose length runs past the end.
        let mut m = Builder::new(1).bytes(4, b"abcd").finish();
        m[HEADER + 2..HEADER + 6].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(
            Message::decode(&m),
            Err(TlvError::FieldTruncated { tag: 4 })
        );
    }

    proptest! {
        /// Any byte string decodes to a message or an error, never a panic.
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Message::decode(&bytes);
            let mut framed = Builder::new(1).finish();
            framed.extend_from_slice(&bytes);
            let body = (framed.len() - HEADER) as u32;
            framed[4..8].copy_from_slice(&body.to_le_bytes());
            let _ = Message::decode(&framed);
        }

        /// Whatever fields are written come back.
        #[test]
        fn round_trip(fields in proptest::collection::btree_map(any::<u16>(), proptest::collection::vec(any::<u8>(), 0..40), 0..10)) {
            let mut b = Builder::new(3);
            for (t, v) in &fields {
                b = b.bytes(*t, v);
            }
            let m = b.finish();
            let d = Message::decode(&m).unwrap();
            for (t, v) in &fields {
                prop_assert_eq!(d.field(*t), Some(&v[..]));
            }
        }
    }
}
