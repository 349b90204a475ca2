//! A read-only TFTP server (RFC 1350) with option negotiation (RFC 2347:
//! OACK; RFC 2348 `blksize`; RFC 2349 `timeout` and `tsize`).
//!
//! * Read requests only: a write request gets ERROR 2 (access violation).
//!   Modes `octet` and `netascii` (converted as the RFC says: LF → CR LF,
//!   CR → CR NUL); `mail` or anything else gets ERROR 4.
//! * File names: a component of the running image, or [`MANIFEST_FILE`]
//!   for its manifest; a leading `/` is ignored. Unknown → ERROR 1.
//! * Each transfer runs on its own thread and UDP port (its transfer id),
//!   at most [`TftpOptions::max_transfers`] at a time (beyond: ERROR 0,
//!   "busy"). Every wait for an ACK is bounded by the timeout (the
//!   client's `timeout` option if it sent one), the packet is sent again,
//!   and after [`TftpOptions::retries`] silent timeouts the transfer is
//!   abandoned. A duplicate ACK is not answered (no Sorcerer's
//!   Apprentice); a packet from another address gets ERROR 5 and the
//!   transfer goes on; the block number wraps after 65535, so size is not
//!   capped at 32 MiB.
//! * Malformed, truncated or unexpected packets get ERROR 4 (never to an
//!   ERROR packet: no error loops) and never a panic.
//!
//! [`MANIFEST_FILE`]: super::MANIFEST_FILE

use super::{classify, left, lookup, ComponentSource, Failure, Served, ServerHandle, Shared};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

const OP_RRQ: u16 = 1;
const OP_WRQ: u16 = 2;
const OP_DATA: u16 = 3;
const OP_ACK: u16 = 4;
const OP_ERROR: u16 = 5;
const OP_OACK: u16 = 6;

/// RFC 1350 and 2347 error codes.
pub mod code {
    pub const NOT_DEFINED: u16 = 0;
    pub const FILE_NOT_FOUND: u16 = 1;
    pub const ACCESS_VIOLATION: u16 = 2;
    pub const ILLEGAL_OPERATION: u16 = 4;
    pub const UNKNOWN_TID: u16 = 5;
    pub const OPTION_REFUSED: u16 = 8;
}

/// The default block size (RFC 1350).
pub const DEFAULT_BLKSIZE: usize = 512;
/// The largest block size RFC 2348 allows.
pub const MAX_BLKSIZE: usize = 65464;
/// The largest datagram we accept: a request is far smaller, but reading
/// a whole datagram lets us reject an oversized one instead of truncating.
const RECV_BUF: usize = 65536 + 4;

/// Server settings.
#[derive(Clone, Debug)]
pub struct TftpOptions {
    /// Wait for an ACK before sending again (unless the client's `timeout`
    /// option says otherwise).
    pub timeout: Duration,
    /// Silent timeouts after which a transfer is abandoned.
    pub retries: u32,
    /// Transfers served at once.
    pub max_transfers: usize,
    /// The largest `blksize` granted (a larger request gets this).
    pub max_blksize: usize,
}

impl Default for TftpOptions {
    fn default() -> Self {
        TftpOptions {
            timeout: Duration::from_secs(1),
            retries: 5,
            max_transfers: 16,
            max_blksize: MAX_BLKSIZE,
        }
    }
}

/// Why a packet is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    #[error("packet shorter than its opcode")]
    Short,
    #[error("unknown opcode {0}")]
    Opcode(u16),
    #[error("request string not NUL-terminated")]
    Unterminated,
    #[error("request string not UTF-8")]
    NotUtf8,
    #[error("request without a file name or mode")]
    MissingField,
    #[error("option {0} without a value")]
    OptionWithoutValue(String),
    #[error("{0} packet of the wrong length")]
    Length(&'static str),
}

/// A request (RRQ or WRQ) as sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub write: bool,
    pub file: String,
    pub mode: String,
    /// Option names lowercased, values as sent.
    pub options: Vec<(String, String)>,
}

/// A TFTP packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Request(Request),
    Data { block: u16, data: &'a [u8] },
    Ack { block: u16 },
    Error { code: u16, message: String },
    Oack(Vec<(String, String)>),
}

fn strings(b: &[u8]) -> Result<Vec<String>, PacketError> {
    if b.is_empty() {
        return Ok(Vec::new());
    }
    if b.last() != Some(&0) {
        return Err(PacketError::Unterminated);
    }
    b[..b.len() - 1]
        .split(|&c| c == 0)
        .map(|s| {
            std::str::from_utf8(s)
                .map(str::to_string)
                .map_err(|_| PacketError::NotUtf8)
        })
        .collect()
}

fn pairs(mut s: std::vec::IntoIter<String>) -> Result<Vec<(String, String)>, PacketError> {
    let mut out = Vec::new();
    while let Some(name) = s.next() {
        let value = s
            .next()
            .ok_or_else(|| PacketError::OptionWithoutValue(name.clone()))?;
        out.push((name.to_ascii_lowercase(), value));
    }
    Ok(out)
}

/// Parse one datagram.
pub fn parse(b: &[u8]) -> Result<Packet<'_>, PacketError> {
    let op = match b {
        [h, l, ..] => u16::from_be_bytes([*h, *l]),
        _ => return Err(PacketError::Short),
    };
    let body = &b[2..];
    match op {
        OP_RRQ | OP_WRQ => {
            let mut s = strings(body)?.into_iter();
            let file = s.next().ok_or(PacketError::MissingField)?;
            let mode = s.next().ok_or(PacketError::MissingField)?;
            if file.is_empty() || mode.is_empty() {
                return Err(PacketError::MissingField);
            }
            Ok(Packet::Request(Request {
                write: op == OP_WRQ,
                file,
                mode: mode.to_ascii_lowercase(),
                options: pairs(s)?,
            }))
        }
        OP_DATA => match body {
            [h, l, data @ ..] => Ok(Packet::Data {
                block: u16::from_be_bytes([*h, *l]),
                data,
            }),
            _ => Err(PacketError::Length("DATA")),
        },
        OP_ACK => match body {
            [h, l] => Ok(Packet::Ack {
                block: u16::from_be_bytes([*h, *l]),
            }),
            _ => Err(PacketError::Length("ACK")),
        },
        OP_ERROR => match body {
            [h, l, msg @ ..] => Ok(Packet::Error {
                code: u16::from_be_bytes([*h, *l]),
                message: String::from_utf8_lossy(msg.strip_suffix(&[0]).unwrap_or(msg))
                    .into_owned(),
            }),
            _ => Err(PacketError::Length("ERROR")),
        },
        OP_OACK => Ok(Packet::Oack(pairs(strings(body)?.into_iter())?)),
        other => Err(PacketError::Opcode(other)),
    }
}

fn error_packet(code: u16, msg: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + msg.len());
    p.extend_from_slice(&OP_ERROR.to_be_bytes());
    p.extend_from_slice(&code.to_be_bytes());
    p.extend(msg.bytes().filter(|&c| c != 0));
    p.push(0);
    p
}

fn send_error(sock: &UdpSocket, to: SocketAddr, code: u16, msg: &str) {
    if let Err(e) = sock.send_to(&error_packet(code, msg), to) {
        tracing::debug!(%to, error = %e, "sending a TFTP ERROR");
    }
}

/// Start a TFTP server on `addr` (e.g. `127.0.0.1:0`) serving `src`.
pub fn serve_tftp(
    addr: SocketAddr,
    src: Arc<dyn ComponentSource>,
    opts: TftpOptions,
) -> std::io::Result<ServerHandle> {
    let sock = UdpSocket::bind(addr)?;
    // The listener wakes this often to notice a stop.
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let local = sock.local_addr()?;
    let shared = Arc::new(Shared::default());
    let sh = shared.clone();
    let thread = std::thread::Builder::new()
        .name(format!("tftp {local}"))
        .spawn(move || listen(sock, src, opts, sh))?;
    tracing::info!(addr = %local, "TFTP server listening");
    Ok(ServerHandle::new(local, shared, thread, None))
}

fn listen(sock: UdpSocket, src: Arc<dyn ComponentSource>, opts: TftpOptions, shared: Arc<Shared>) {
    let mut buf = vec![0u8; RECV_BUF];
    while !shared.stopping() {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                // e.g. ICMP port unreachable from an earlier reply: not fatal.
                tracing::debug!(error = %e, "TFTP listener receive");
                continue;
            }
        };
        let pkt = buf.get(..n).unwrap_or_default();
        match parse(pkt) {
            Ok(Packet::Request(r)) if r.write => {
                tracing::info!(%peer, file = %r.file, "TFTP write request refused");
                send_error(
                    &sock,
                    peer,
                    code::ACCESS_VIOLATION,
                    "write refused: this server only serves reads",
                );
            }
            Ok(Packet::Request(r)) => {
                if r.mode != "octet" && r.mode != "netascii" {
                    send_error(
                        &sock,
                        peer,
                        code::ILLEGAL_OPERATION,
                        "unsupported mode: use octet (binary) or netascii",
                    );
                    continue;
                }
                let Some(slot) = shared.try_enter(opts.max_transfers) else {
                    tracing::warn!(%peer, file = %r.file, "TFTP busy: transfer refused");
                    send_error(
                        &sock,
                        peer,
                        code::NOT_DEFINED,
                        "server busy: too many transfers",
                    );
                    continue;
                };
                let (src, opts, sh) = (src.clone(), opts.clone(), shared.clone());
                let ip = sock.local_addr().map(|a| a.ip());
                let spawned = std::thread::Builder::new()
                    .name(format!("tftp {peer}"))
                    .spawn(move || {
                        let _slot = slot;
                        match ip {
                            Ok(ip) => transfer(ip, peer, r, &*src, &opts, &sh),
                            Err(e) => tracing::error!(error = %e, "TFTP local address"),
                        }
                    });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start a TFTP transfer thread");
                    send_error(&sock, peer, code::NOT_DEFINED, "server busy");
                }
            }
            Ok(Packet::Error { .. }) => {} // never answer an error
            Ok(other) => {
                tracing::debug!(%peer, ?other, "TFTP packet for no transfer");
                send_error(&sock, peer, code::UNKNOWN_TID, "unknown transfer id");
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "malformed TFTP packet");
                send_error(
                    &sock,
                    peer,
                    code::ILLEGAL_OPERATION,
                    &format!("malformed packet: {e}"),
                );
            }
        }
    }
}

/// Options granted to a read request.
#[derive(Debug, PartialEq, Eq)]
struct Granted {
    blksize: usize,
    timeout: Duration,
    /// The OACK's pairs (empty: no OACK, DATA 1 directly).
    oack: Vec<(String, String)>,
}

fn negotiate(req: &Request, size: usize, opts: &TftpOptions) -> Granted {
    let mut g = Granted {
        blksize: DEFAULT_BLKSIZE,
        timeout: opts.timeout,
        oack: Vec::new(),
    };
    for (name, value) in &req.options {
        let Ok(v) = value.trim().parse::<u64>() else {
            continue; // an option we cannot read is ignored (RFC 2347)
        };
        match name.as_str() {
            "blksize" if v >= 8 => {
                let b = (v.min(opts.max_blksize.clamp(8, MAX_BLKSIZE) as u64)) as usize;
                g.blksize = b;
                g.oack.push((name.clone(), b.to_string()));
            }
            "timeout" if (1..=255).contains(&v) => {
                g.timeout = Duration::from_secs(v);
                g.oack.push((name.clone(), v.to_string()));
            }
            "tsize" => g.oack.push((name.clone(), size.to_string())),
            _ => {}
        }
    }
    g
}

/// LF → CR LF, CR → CR NUL (RFC 764's NVT ASCII, as TFTP's netascii).
fn to_netascii(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    for &b in data {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            _ => out.push(b),
        }
    }
    out
}

/// Why a transfer ended early.
enum Ended {
    TimedOut,
    ClientError(u16, String),
    Protocol(String),
    Io(std::io::Error),
    Stopped,
}

/// One read transfer on its own socket (its transfer id).
fn transfer(
    ip: std::net::IpAddr,
    peer: SocketAddr,
    req: Request,
    src: &dyn ComponentSource,
    opts: &TftpOptions,
    shared: &Shared,
) {
    let sock = match UdpSocket::bind(SocketAddr::new(ip, 0)) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "TFTP transfer socket");
            return;
        }
    };
    let name = req.file.strip_prefix('/').unwrap_or(&req.file);
    let what = if name == super::MANIFEST_FILE {
        Served::Manifest
    } else {
        Served::Component(name)
    };
    let file = match lookup(src, what) {
        Ok(f) => f,
        Err(e) => {
            let (c, msg) = match classify(&e) {
                Failure::NotFound => (code::FILE_NOT_FOUND, format!("file not found: {name}")),
                Failure::Unavailable => (code::NOT_DEFINED, format!("not available: {e}")),
                Failure::Internal => (code::NOT_DEFINED, format!("cannot read {name}: {e}")),
            };
            tracing::info!(%peer, file = name, error = %e, "TFTP read refused");
            send_error(&sock, peer, c, &msg);
            return;
        }
    };
    let data = if req.mode == "netascii" {
        to_netascii(&file.data)
    } else {
        file.data
    };
    let g = negotiate(&req, data.len(), opts);
    let started = Instant::now();
    match send_file(&sock, peer, &data, &g, opts.retries, shared) {
        Ok(()) => tracing::info!(
            %peer, file = name, bytes = data.len(), blksize = g.blksize,
            ms = started.elapsed().as_millis() as u64, "TFTP transfer done"
        ),
        Err(Ended::ClientError(c, m)) => {
            tracing::info!(%peer, file = name, code = c, message = %m, "TFTP client ended the transfer")
        }
        Err(Ended::Protocol(why)) => {
            tracing::warn!(%peer, file = name, why = %why, "TFTP transfer: protocol error");
            send_error(&sock, peer, code::ILLEGAL_OPERATION, &why);
        }
        Err(Ended::TimedOut) => tracing::warn!(
            %peer, file = name, retries = opts.retries,
            "TFTP transfer abandoned: the client stopped answering"
        ),
        Err(Ended::Io(e)) => {
            tracing::warn!(%peer, file = name, error = %e, "TFTP transfer: socket error")
        }
        Err(Ended::Stopped) => tracing::info!(%peer, file = name, "TFTP transfer: server stopping"),
    }
}

fn send_file(
    sock: &UdpSocket,
    peer: SocketAddr,
    data: &[u8],
    g: &Granted,
    retries: u32,
    shared: &Shared,
) -> Result<(), Ended> {
    if !g.oack.is_empty() {
        let mut p = OP_OACK.to_be_bytes().to_vec();
        for (n, v) in &g.oack {
            p.extend_from_slice(n.as_bytes());
            p.push(0);
            p.extend_from_slice(v.as_bytes());
            p.push(0);
        }
        exchange(sock, peer, &p, 0, g.timeout, retries, shared)?;
    }
    let mut block: u16 = 1;
    let mut off = 0usize;
    let mut pkt = Vec::with_capacity(4 + g.blksize);
    loop {
        let end = (off + g.blksize).min(data.len());
        let chunk = data.get(off..end).unwrap_or_default();
        pkt.clear();
        pkt.extend_from_slice(&OP_DATA.to_be_bytes());
        pkt.extend_from_slice(&block.to_be_bytes());
        pkt.extend_from_slice(chunk);
        exchange(sock, peer, &pkt, block, g.timeout, retries, shared)?;
        if chunk.len() < g.blksize {
            return Ok(());
        }
        off = end;
        block = block.wrapping_add(1);
    }
}

/// Send `pkt` and wait for ACK `block`, sending again after each silent
/// `timeout`, at most `retries` times.
fn exchange(
    sock: &UdpSocket,
    peer: SocketAddr,
    pkt: &[u8],
    block: u16,
    timeout: Duration,
    retries: u32,
    shared: &Shared,
) -> Result<(), Ended> {
    let mut buf = vec![0u8; RECV_BUF];
    for attempt in 0..=retries {
        if shared.stopping() {
            send_error(sock, peer, code::NOT_DEFINED, "server stopping");
            return Err(Ended::Stopped);
        }
        if attempt > 0 {
            tracing::debug!(%peer, block, attempt, "TFTP retransmit");
        }
        sock.send_to(pkt, peer).map_err(Ended::Io)?;
        let deadline = Instant::now() + timeout;
        while let Some(wait) = left(deadline) {
            sock.set_read_timeout(Some(wait)).map_err(Ended::Io)?;
            let (n, from) = match sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    // The client's port is gone (ICMP unreachable).
                    return Err(Ended::Io(e));
                }
                Err(e) => return Err(Ended::Io(e)),
            };
            if from != peer {
                send_error(sock, from, code::UNKNOWN_TID, "unknown transfer id");
                continue;
            }
            match parse(buf.get(..n).unwrap_or_default()) {
                Ok(Packet::Ack { block: b }) if b == block => return Ok(()),
                // A duplicate of an earlier ACK: wait on, do not resend.
                Ok(Packet::Ack { .. }) => continue,
                Ok(Packet::Error { code, message }) => {
                    return Err(Ended::ClientError(code, message))
                }
                Ok(other) => {
                    return Err(Ended::Protocol(format!(
                        "expected ACK {block}, got {}",
                        kind(&other)
                    )))
                }
                Err(e) => return Err(Ended::Protocol(format!("malformed packet: {e}"))),
            }
        }
    }
    Err(Ended::TimedOut)
}

fn kind(p: &Packet<'_>) -> &'static str {
    match p {
        Packet::Request(r) if r.write => "WRQ",
        Packet::Request(_) => "RRQ",
        Packet::Data { .. } => "DATA",
        Packet::Ack { .. } => "ACK",
        Packet::Error { .. } => "ERROR",
        Packet::Oack(_) => "OACK",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_and_rejects_garbage() {
        let p = parse(b"\x00\x01firmware\0octet\0blksize\x001428\0TSIZE\x000\0").unwrap();
        assert_eq!(
            p,
            Packet::Request(Request {
                write: false,
                file: "firmware".into(),
                mode: "octet".into(),
                options: vec![
                    ("blksize".into(), "1428".into()),
                    ("tsize".into(), "0".into())
                ],
            })
        );
        assert_eq!(parse(b""), Err(PacketError::Short));
        assert_eq!(parse(b"\x00"), Err(PacketError::Short));
        assert_eq!(parse(b"\x00\x09"), Err(PacketError::Opcode(9)));
        assert_eq!(parse(b"\x00\x01firm"), Err(PacketError::Unterminated));
        assert_eq!(parse(b"\x00\x01firm\0"), Err(PacketError::MissingField));
        assert_eq!(parse(b"\x00\x01\0octet\0"), Err(PacketError::MissingField));
        assert_eq!(parse(b"\x00\x01\xff\0octet\0"), Err(PacketError::NotUtf8));
        assert!(matches!(
            parse(b"\x00\x01f\0octet\0blksize\0"),
            Err(PacketError::OptionWithoutValue(_))
        ));
        assert_eq!(parse(b"\x00\x04\x00"), Err(PacketError::Length("ACK")));
        assert_eq!(parse(b"\x00\x04\x00\x07"), Ok(Packet::Ack { block: 7 }));
        assert_eq!(parse(b"\x00\x03\x00"), Err(PacketError::Length("DATA")));
        assert_eq!(
            parse(b"\x00\x05\x00\x01no\0"),
            Ok(Packet::Error {
                code: 1,
                message: "no".into()
            })
        );
    }

    #[test]
    fn negotiates_options() {
        let req = |opts: &[(&str, &str)]| Request {
            write: false,
            file: "f".into(),
            mode: "octet".into(),
            options: opts
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        };
        let o = TftpOptions {
            max_blksize: 1024,
            ..TftpOptions::default()
        };
        let g = negotiate(&req(&[]), 10, &o);
        assert_eq!((g.blksize, g.oack.len()), (512, 0));
        let g = negotiate(
            &req(&[("blksize", "9000"), ("tsize", "0"), ("timeout", "3")]),
            10,
            &o,
        );
        assert_eq!(g.blksize, 1024);
        assert_eq!(g.timeout, Duration::from_secs(3));
        assert_eq!(
            g.oack,
            [
                ("blksize".to_string(), "1024".to_string()),
                ("tsize".into(), "10".into()),
                ("timeout".into(), "3".into())
            ]
        );
        // out of range or unreadable values are ignored, unknown options too
        let g = negotiate(
            &req(&[
                ("blksize", "7"),
                ("timeout", "0"),
                ("timeout", "x"),
                ("windowsize", "4"),
            ]),
            10,
            &o,
        );
        assert_eq!((g.blksize, g.oack.len()), (512, 0));
    }

    #[test]
    fn netascii_conversion() {
        assert_eq!(to_netascii(b"a\nb\rc"), b"a\r\nb\r\0c");
    }
}
