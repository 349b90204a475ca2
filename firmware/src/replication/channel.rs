//! The secure channel between two cards: the Noise protocol
//! `Noise_NNpsk0_25519_ChaChaPoly_SHA256` (through `snow`, the maintained
//! Rust implementation) keyed by the pair's pre-shared key. Mutual
//! authentication: a side without the key cannot finish the handshake, and
//! the responder finds out at the first message. Each connection gets
//! fresh ephemeral keys (forward secrecy), and the transport's nonces make
//! a replayed, reordered or altered message fail to open, so a link
//! message (with an application's credential in it) never travels in
//! clear and is never accepted twice.
//!
//! Sans-IO: the caller moves bytes; this module turns link frames into
//! Noise messages and back. On the wire every Noise message has a 2-byte
//! big-endian length first (Noise's own framing); a link frame of up to
//! [`MAX_FRAME`] bytes is cut into chunks, each one Noise message whose
//! first plaintext byte says whether more chunks follow.

use hitless_proto::link::MAX_FRAME;

/// The Noise pattern and primitives.
pub const PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";
/// Bytes of the pre-shared key.
pub const PSK_BYTES: usize = 32;
/// Largest Noise message (the Noise specification's limit).
pub const MAX_NOISE: usize = 65535;
/// AEAD tag bytes per Noise transport message.
const TAG: usize = 16;
/// Plaintext bytes per chunk after the continuation byte.
const CHUNK: usize = MAX_NOISE - TAG - 1;

/// Why the channel failed. Every variant ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The peer does not have our key (or the handshake was tampered with).
    #[error("handshake refused: the peer does not have the pair's key ({0})")]
    Handshake(snow::Error),
    /// A transport message did not open: altered, replayed or reordered.
    #[error("a link message failed authentication ({0})")]
    Open(snow::Error),
    #[error("the channel could not seal a message ({0})")]
    Seal(snow::Error),
    #[error("a Noise message of {0} bytes is not one the channel sends")]
    BadMessage(usize),
    #[error("a link frame of more than {MAX_FRAME} bytes")]
    FrameTooLarge,
    #[error("the pre-shared key must be {PSK_BYTES} bytes, not {0}")]
    KeyLength(usize),
}

/// A pair's key from its hex text (64 hex digits), as kept in a file.
pub fn parse_psk(text: &str) -> Result<[u8; PSK_BYTES], ChannelError> {
    let t = text.trim();
    let mut k = [0u8; PSK_BYTES];
    if t.len() != 2 * PSK_BYTES || !t.is_ascii() {
        return Err(ChannelError::KeyLength(t.len() / 2));
    }
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16)
            .map_err(|_| ChannelError::KeyLength(t.len() / 2))?;
    }
    Ok(k)
}

/// One side of the handshake. The side that connected is the initiator.
pub struct Handshake {
    state: snow::HandshakeState,
}

/// What a handshake step gives.
pub enum Step {
    /// Send these bytes (a length-prefixed Noise message), then keep reading.
    Send(Vec<u8>),
    /// Send these bytes (may be empty); the channel is up.
    Done(Vec<u8>, Channel),
}

fn prefixed(msg: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + msg.len());
    v.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    v.extend_from_slice(msg);
    v
}

impl Handshake {
    fn new(psk: &[u8; PSK_BYTES], initiator: bool) -> Result<Self, ChannelError> {
        let params = PATTERN
            .parse()
            .map_err(|e: snow::Error| ChannelError::Handshake(e))?;
        let b = snow::Builder::new(params)
            .psk(0, psk)
            .map_err(ChannelError::Handshake)?;
        let state = if initiator {
            b.build_initiator()
        } else {
            b.build_responder()
        }
        .map_err(ChannelError::Handshake)?;
        Ok(Self { state })
    }

    /// The connecting side: its first message to send.
    pub fn initiate(psk: &[u8; PSK_BYTES]) -> Result<(Self, Vec<u8>), ChannelError> {
        let mut h = Self::new(psk, true)?;
        let mut buf = vec![0u8; MAX_NOISE];
        let n = h
            .state
            .write_message(&[], &mut buf)
            .map_err(ChannelError::Handshake)?;
        Ok((h, prefixed(&buf[..n])))
    }

    /// The accepting side, before the peer's first message.
    pub fn respond(psk: &[u8; PSK_BYTES]) -> Result<Self, ChannelError> {
        Self::new(psk, false)
    }

    /// Take the peer's next handshake message (without its length prefix).
    pub fn read(mut self, msg: &[u8]) -> Result<Step, ChannelError> {
        let mut buf = vec![0u8; MAX_NOISE];
        self.state
            .read_message(msg, &mut buf)
            .map_err(ChannelError::Handshake)?;
        let mut out = Vec::new();
        if self.state.is_my_turn() && !self.state.is_handshake_finished() {
            let n = self
                .state
                .write_message(&[], &mut buf)
                .map_err(ChannelError::Handshake)?;
            out = prefixed(&buf[..n]);
        }
        if self.state.is_handshake_finished() {
            let t = self
                .state
                .into_transport_mode()
                .map_err(ChannelError::Handshake)?;
            return Ok(Step::Done(
                out,
                Channel {
                    t,
                    partial: Vec::new(),
                },
            ));
        }
        Ok(Step::Send(out))
    }
}

/// The established channel.
pub struct Channel {
    t: snow::TransportState,
    partial: Vec<u8>,
}

impl Channel {
    /// The bytes that carry one link frame (any length up to [`MAX_FRAME`]).
    pub fn seal(&mut self, frame: &[u8]) -> Result<Vec<u8>, ChannelError> {
        if frame.len() > MAX_FRAME {
            return Err(ChannelError::FrameTooLarge);
        }
        let mut out = Vec::with_capacity(frame.len() + frame.len() / CHUNK * 19 + 19);
        let mut chunks = frame.chunks(CHUNK).peekable();
        let mut plain = Vec::with_capacity(CHUNK + 1);
        let mut sealed = vec![0u8; MAX_NOISE];
        loop {
            let c = chunks.next().unwrap_or(&[]);
            let last = chunks.peek().is_none();
            plain.clear();
            plain.push(u8::from(!last));
            plain.extend_from_slice(c);
            let n = self
                .t
                .write_message(&plain, &mut sealed)
                .map_err(ChannelError::Seal)?;
            out.extend_from_slice(&(n as u16).to_be_bytes());
            out.extend_from_slice(&sealed[..n]);
            if last {
                return Ok(out);
            }
        }
    }

    /// Open one Noise message (without its length prefix); a whole link
    /// frame when it was the last chunk of one.
    pub fn open(&mut self, msg: &[u8]) -> Result<Option<Vec<u8>>, ChannelError> {
        if msg.len() <= TAG {
            return Err(ChannelError::BadMessage(msg.len()));
        }
        let mut plain = vec![0u8; msg.len()];
        let n = self
            .t
            .read_message(msg, &mut plain)
            .map_err(ChannelError::Open)?;
        let (more, body) = match plain[..n].split_first() {
            Some((&m, b)) if m <= 1 => (m == 1, b),
            _ => return Err(ChannelError::BadMessage(msg.len())),
        };
        if self.partial.len() + body.len() > MAX_FRAME {
            self.partial.clear();
            return Err(ChannelError::FrameTooLarge);
        }
        self.partial.extend_from_slice(body);
        if more {
            Ok(None)
        } else {
            Ok(Some(std::mem::take(&mut self.partial)))
        }
    }
}

/// Splits a byte stream into Noise messages (the 2-byte length framing).
#[derive(Debug, Default)]
pub struct NoiseReader {
    buf: Vec<u8>,
}

impl NoiseReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
    /// The next whole Noise message, if any.
    pub fn next_message(&mut self) -> Option<Vec<u8>> {
        let len = u16::from_be_bytes([*self.buf.first()?, *self.buf.get(1)?]) as usize;
        if self.buf.len() < 2 + len {
            return None;
        }
        let m = self.buf[2..2 + len].to_vec();
        self.buf.drain(..2 + len);
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a handshake over an in-memory pipe.
    fn connect(a_key: &[u8; 32], b_key: &[u8; 32]) -> Result<(Channel, Channel), ChannelError> {
        let (a, m1) = Handshake::initiate(a_key)?;
        let b = Handshake::respond(b_key)?;
        let mut ra = NoiseReader::default();
        let mut rb = NoiseReader::default();
        rb.push(&m1);
        let Step::Done(m2, cb) = b.read(&rb.next_message().ok_or(ChannelError::BadMessage(0))?)?
        else {
            panic!("NNpsk0 takes two messages");
        };
        ra.push(&m2);
        let Step::Done(rest, ca) =
            a.read(&ra.next_message().ok_or(ChannelError::BadMessage(0))?)?
        else {
            panic!("NNpsk0 takes two messages");
        };
        assert!(rest.is_empty());
        Ok((ca, cb))
    }

    fn deliver(to: &mut Channel, bytes: &[u8]) -> Result<Vec<Vec<u8>>, ChannelError> {
        let mut r = NoiseReader::default();
        r.push(bytes);
        let mut frames = Vec::new();
        while let Some(m) = r.next_message() {
            if let Some(f) = to.open(&m)? {
                frames.push(f);
            }
        }
        Ok(frames)
    }

    #[test]
    fn frames_of_any_size_cross_the_channel_both_ways() {
        let k = [7u8; 32];
        let (mut a, mut b) = connect(&k, &k).unwrap();
        for len in [
            0usize,
            1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 5,
            MAX_FRAME,
        ] {
            let f: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let sealed = a.seal(&f).unwrap();
            assert_ne!(&sealed[2..], &f[..], "sealed in clear");
            assert_eq!(deliver(&mut b, &sealed).unwrap(), vec![f.clone()]);
            let back = b.seal(&f).unwrap();
            assert_eq!(deliver(&mut a, &back).unwrap(), vec![f]);
        }
        assert!(matches!(
            a.seal(&vec![0; MAX_FRAME + 1]),
            Err(ChannelError::FrameTooLarge)
        ));
    }

    #[test]
    fn a_peer_with_another_key_cannot_connect() {
        let e = connect(&[1u8; 32], &[2u8; 32]).err().expect("connected");
        assert!(matches!(e, ChannelError::Handshake(_)), "{e}");
    }

    #[test]
    fn altered_replayed_and_reordered_messages_are_refused() {
        let k = [9u8; 32];
        let (mut a, mut b) = connect(&k, &k).unwrap();
        let m1 = a.seal(b"first").unwrap();
        // Reordered: the second before the first.
        let (mut a2, mut b2) = connect(&k, &k).unwrap();
        let _ = a2.seal(b"first").unwrap();
        let n2 = a2.seal(b"second").unwrap();
        assert!(matches!(deliver(&mut b2, &n2), Err(ChannelError::Open(_))));
        // Altered.
        let mut bad = m1.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(deliver(&mut b, &bad), Err(ChannelError::Open(_))));
        // Replayed (after the good one).
        let (mut a3, mut b3) = connect(&k, &k).unwrap();
        let p = a3.seal(b"once").unwrap();
        assert_eq!(deliver(&mut b3, &p).unwrap(), vec![b"once".to_vec()]);
        assert!(matches!(deliver(&mut b3, &p), Err(ChannelError::Open(_))));
        // A message too short to hold a tag.
        assert!(matches!(b3.open(&[0; 5]), Err(ChannelError::BadMessage(5))));
    }

    #[test]
    fn keys_parse_from_hex_and_bad_ones_are_refused() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
        assert_eq!(parse_psk(hex).unwrap()[1], 0x11);
        assert!(parse_psk("abcd").is_err());
        assert!(parse_psk(&"zz".repeat(32)).is_err());
    }
}
