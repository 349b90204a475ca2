//! The card-to-card link over TCP (tokio): the transport under the
//! replication state machine. It moves link frames ([`hitless_proto::link`]
//! messages) through the secure channel
//! ([`hitless_firmware::replication::channel`]: Noise NNpsk0 keyed by the
//! pair's pre-shared key) and nothing else: what the frames mean is the
//! firmware's business.
//!
//! Bounds: connecting, the handshake and every write have a deadline
//! ([`LinkLimits`]); a read gives at most one Noise message (64 KiB) at a
//! time and a frame is at most [`MAX_FRAME`] bytes, refused before it is
//! all buffered; a peer that does not have the key, sends garbage or says
//! nothing is refused and counted ([`LinkListener::refused`]), and the
//! listener goes on accepting. Waiting for the peer's next message is the
//! caller's choice of deadline (the heartbeat rule), so [`SecureLink::recv`]
//! is cancel-safe: bytes already read stay buffered for the next call.

use hitless_firmware::replication::channel::{
    Channel, ChannelError, Handshake, NoiseReader, Step, PSK_BYTES,
};
use hitless_proto::link::{LinkError, LinkMessage, MAX_FRAME};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

/// Why the link failed. Every variant but `Refused` ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum LinkIoError {
    #[error("connecting to the peer at {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: no progress within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("the link's socket failed")]
    Io(#[from] std::io::Error),
    #[error("the peer closed the link")]
    Closed,
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error("a link frame that is not a link message")]
    Message(#[from] LinkError),
}

/// Deadlines of the link.
#[derive(Clone, Debug)]
pub struct LinkLimits {
    /// TCP connect.
    pub connect: Duration,
    /// The whole Noise handshake, from the first byte either way.
    pub handshake: Duration,
    /// One frame written (the peer must take it).
    pub write: Duration,
}

impl Default for LinkLimits {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            handshake: Duration::from_secs(2),
            write: Duration::from_secs(2),
        }
    }
}

/// Bytes asked of the socket per read: one largest Noise message with its
/// length prefix.
const READ: usize = 2 + hitless_firmware::replication::channel::MAX_NOISE;

/// An authenticated link to the peer card.
pub struct SecureLink {
    stream: TcpStream,
    chan: Channel,
    noise: NoiseReader,
    buf: Box<[u8]>,
    peer: SocketAddr,
    limits: LinkLimits,
}

/// Read the next whole Noise message (without its length prefix) before
/// `deadline`.
async fn next_noise(
    stream: &mut TcpStream,
    noise: &mut NoiseReader,
    buf: &mut [u8],
    deadline: Instant,
    what: &'static str,
    after: Duration,
) -> Result<Vec<u8>, LinkIoError> {
    loop {
        if let Some(m) = noise.next_message() {
            return Ok(m);
        }
        let n = tokio::time::timeout_at(deadline, stream.read(buf))
            .await
            .map_err(|_| LinkIoError::Timeout { what, after })??;
        if n == 0 {
            return Err(LinkIoError::Closed);
        }
        noise.push(&buf[..n]);
    }
}

impl SecureLink {
    /// Connect to the peer at `addr` and run the handshake as initiator.
    pub async fn connect(
        addr: SocketAddr,
        psk: &[u8; PSK_BYTES],
        limits: &LinkLimits,
    ) -> Result<Self, LinkIoError> {
        let stream = timeout(limits.connect, TcpStream::connect(addr))
            .await
            .map_err(|_| LinkIoError::Timeout {
                what: "connecting to the peer",
                after: limits.connect,
            })?
            .map_err(|source| LinkIoError::Connect { addr, source })?;
        let (hs, first) = Handshake::initiate(psk)?;
        Self::handshake(stream, hs, first, limits).await
    }

    /// Run the handshake as responder on an accepted connection.
    pub async fn accept(
        stream: TcpStream,
        psk: &[u8; PSK_BYTES],
        limits: &LinkLimits,
    ) -> Result<Self, LinkIoError> {
        let hs = Handshake::respond(psk)?;
        Self::handshake(stream, hs, Vec::new(), limits).await
    }

    async fn handshake(
        mut stream: TcpStream,
        hs: Handshake,
        first: Vec<u8>,
        limits: &LinkLimits,
    ) -> Result<Self, LinkIoError> {
        // Frames are small and latency-bound (heartbeats, acks).
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let deadline = Instant::now() + limits.handshake;
        let timed_out = || LinkIoError::Timeout {
            what: "the link handshake",
            after: limits.handshake,
        };
        if !first.is_empty() {
            tokio::time::timeout_at(deadline, stream.write_all(&first))
                .await
                .map_err(|_| timed_out())??;
        }
        let mut noise = NoiseReader::default();
        let mut buf = vec![0u8; READ].into_boxed_slice();
        // NNpsk0 is two messages: the initiator's, then the responder's;
        // each side is done after reading the one it gets.
        let m = next_noise(
            &mut stream,
            &mut noise,
            &mut buf,
            deadline,
            "the link handshake",
            limits.handshake,
        )
        .await?;
        let Step::Done(out, chan) = hs.read(&m)? else {
            return Err(ChannelError::BadMessage(m.len()).into());
        };
        if !out.is_empty() {
            tokio::time::timeout_at(deadline, stream.write_all(&out))
                .await
                .map_err(|_| timed_out())??;
        }
        Ok(Self {
            stream,
            chan,
            noise,
            buf,
            peer,
            limits: limits.clone(),
        })
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Send one link frame (an encoded link message).
    pub async fn send_frame(&mut self, frame: &[u8]) -> Result<(), LinkIoError> {
        let bytes = self.chan.seal(frame)?;
        timeout(self.limits.write, self.stream.write_all(&bytes))
            .await
            .map_err(|_| LinkIoError::Timeout {
                what: "sending to the peer",
                after: self.limits.write,
            })??;
        Ok(())
    }

    /// Send a link message in this code's schema.
    pub async fn send(&mut self, m: &LinkMessage) -> Result<(), LinkIoError> {
        self.send_frame(&m.encode()).await
    }

    /// The next link frame. Cancel-safe: wrap it in the caller's deadline.
    pub async fn recv_frame(&mut self) -> Result<Vec<u8>, LinkIoError> {
        loop {
            while let Some(m) = self.noise.next_message() {
                if let Some(frame) = self.chan.open(&m)? {
                    return Ok(frame);
                }
            }
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                return Err(LinkIoError::Closed);
            }
            self.noise.push(&self.buf[..n]);
        }
    }

    /// The next link message (decoded). Cancel-safe.
    pub async fn recv(&mut self) -> Result<LinkMessage, LinkIoError> {
        let frame = self.recv_frame().await?;
        if frame.len() > MAX_FRAME {
            return Err(LinkError::FrameTooLarge(frame.len()).into());
        }
        Ok(LinkMessage::decode(&frame)?)
    }
}

/// The listening side of the link: accepts only peers that have the key.
pub struct LinkListener {
    listener: TcpListener,
    psk: [u8; PSK_BYTES],
    limits: LinkLimits,
    refused: Arc<AtomicU64>,
}

impl LinkListener {
    /// Listen on `addr` (port 0: any free port, see [`Self::local_addr`]).
    pub async fn bind(
        addr: SocketAddr,
        psk: [u8; PSK_BYTES],
        limits: LinkLimits,
    ) -> Result<Self, LinkIoError> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            psk,
            limits,
            refused: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, LinkIoError> {
        Ok(self.listener.local_addr()?)
    }

    /// The refusal counter, shared (the pair's own refusals add to it).
    pub fn refused_counter(&self) -> Arc<AtomicU64> {
        self.refused.clone()
    }

    /// Connections refused so far (no key, garbage, silence, a broken
    /// handshake).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The next peer that completes the handshake; the others are refused,
    /// counted and logged. Only a failure of the listening socket itself is
    /// an error.
    pub async fn accept(&self) -> Result<SecureLink, LinkIoError> {
        loop {
            let (stream, from) = self.listener.accept().await?;
            match SecureLink::accept(stream, &self.psk, &self.limits).await {
                Ok(link) => {
                    tracing::info!(peer = %from, "link up");
                    return Ok(link);
                }
                Err(e) => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = %from, error = %e, "link refused");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitless_proto::link::Role;

    const KEY: [u8; 32] = [7; 32];

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn hello(node: u32) -> LinkMessage {
        LinkMessage::Hello {
            node,
            schema: hitless_proto::link::SCHEMA,
            epoch: 3,
            role: Role::Master,
            applied: 9,
            applied_epoch: 3,
        }
    }

    async fn listener() -> (LinkListener, SocketAddr) {
        let l = LinkListener::bind(
            "127.0.0.1:0".parse().unwrap(),
            KEY,
            LinkLimits {
                handshake: Duration::from_millis(300),
                ..LinkLimits::default()
            },
        )
        .await
        .unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    }

    #[test]
    fn peers_with_the_key_exchange_messages_and_large_frames() {
        rt().block_on(async {
            let (l, addr) = listener().await;
            let server = tokio::spawn(async move {
                let mut s = l.accept().await.unwrap();
                let m = s.recv().await.unwrap();
                s.send(&hello(2)).await.unwrap();
                let big = s.recv_frame().await.unwrap();
                s.send_frame(&big).await.unwrap();
                m
            });
            let mut c = SecureLink::connect(addr, &KEY, &LinkLimits::default())
                .await
                .unwrap();
            c.send(&hello(1)).await.unwrap();
            assert_eq!(c.recv().await.unwrap(), hello(2));
            // A frame of many Noise messages comes back whole.
            let big: Vec<u8> = (0..MAX_FRAME).map(|i| (i * 31 % 251) as u8).collect();
            c.send_frame(&big).await.unwrap();
            assert_eq!(c.recv_frame().await.unwrap(), big);
            assert_eq!(server.await.unwrap(), hello(1));
        });
    }

    #[test]
    fn a_wrong_key_garbage_or_silence_is_refused_and_counted() {
        rt().block_on(async {
            let (l, addr) = listener().await;
            let l = Arc::new(l);
            let l2 = l.clone();
            let server = tokio::spawn(async move {
                let mut s = l2.accept().await.unwrap();
                s.recv().await.unwrap()
            });
            // The wrong key: refused at the first message.
            let wrong = SecureLink::connect(addr, &[8; 32], &LinkLimits::default()).await;
            assert!(wrong.is_err(), "a peer without the key got a link");
            // Garbage: a Noise length and bytes that are no handshake.
            let mut g = TcpStream::connect(addr).await.unwrap();
            g.write_all(&[0, 40]).await.unwrap();
            g.write_all(&[0xAB; 40]).await.unwrap();
            // Silence: connects, says nothing (the handshake deadline).
            let _quiet = TcpStream::connect(addr).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            // The listener still accepts the peer with the key.
            let mut c = SecureLink::connect(addr, &KEY, &LinkLimits::default())
                .await
                .unwrap();
            c.send(&hello(5)).await.unwrap();
            let got = timeout(Duration::from_secs(5), server)
                .await
                .expect("the listener stopped accepting")
                .unwrap();
            assert_eq!(got, hello(5));
            assert_eq!(l.refused(), 3);
        });
    }

    #[test]
    fn recv_is_cancel_safe_and_a_closed_peer_is_an_error() {
        rt().block_on(async {
            let (l, addr) = listener().await;
            let server = tokio::spawn(async move {
                let mut s = l.accept().await.unwrap();
                // Half a message, a pause longer than the reader's
                // deadline, then the rest.
                let frame = hello(4).encode();
                let sealed = s.chan.seal(&frame).unwrap();
                let (a, b) = sealed.split_at(sealed.len() / 2);
                s.stream.write_all(a).await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
                s.stream.write_all(b).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
            let mut c = SecureLink::connect(addr, &KEY, &LinkLimits::default())
                .await
                .unwrap();
            assert!(timeout(Duration::from_millis(100), c.recv()).await.is_err());
            let m = timeout(Duration::from_secs(5), c.recv()).await.unwrap();
            assert_eq!(m.unwrap(), hello(4));
            server.await.unwrap();
            assert!(matches!(
                timeout(Duration::from_secs(5), c.recv()).await.unwrap(),
                Err(LinkIoError::Closed | LinkIoError::Io(_))
            ));
        });
    }
}
