//! The remote backup reader (`backup:HOST:PORT`): a backup process on
//! another host reads an application's sets and append log on a card over
//! TCP (`hitless-sim serve --backup-listen ADDR`; seed 001: the backup
//! process's direct reads, the previously unread log after the primary
//! fails). Frames: [`hitless_proto::backup`].
//!
//! The requests are signed with the application's secret as on the local
//! path; the challenge is the connection's (sent by the card in its hello
//! and renewed by every reply). The service is read-only: [`BackupClient`]
//! refuses STORE, DELETE, FORMAT, LOG_APPEND, reboot stages and the image
//! operations itself, naming the service, and the card refuses them too.
//! Sessions are opened for reading and the log (`WRITE` is dropped), and
//! only for an application already registered with its secret.
//!
//! ```no_run
//! # fn demo(secret: hitless_driver::firmware::Secret) -> hitless_driver::Result<()> {
//! use hitless_driver::firmware::{Firmware, OpenFlags};
//! let mut fw = hitless_driver::open_firmware("backup:10.0.0.2:7100", std::time::Duration::from_secs(5))?;
//! let (s, _) = fw.open_app(7, OpenFlags::all(), Some(&secret))?;
//! let log = fw.log_read(&s, false)?;
//! fw.log_trim(&s, false, log.head)?;
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use crate::firmware::{
    check_set_size, checked_set, tier_flag, Firmware, FwStatus, LogRead, OpenFlags, Secret,
    Session, Switched,
};
use hitless_hdl::contract::MAX_MESSAGE;
use hitless_proto::auth;
use hitless_proto::backup::{Frame, Kind, ReadError, MAX_DATA};
use hitless_proto::message::Request;
use hitless_proto::msg::{flags, tag, Code, SetInfo};
use hitless_proto::tlv::Message;
use hitless_proto::Response;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Reads from a socket that give up at `deadline` (each read waits at
/// most what is left): a peer that stalls mid-frame cannot hold the
/// reader longer than the frame's deadline, however it trickles bytes.
pub struct DeadlineReader<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl<'a> DeadlineReader<'a> {
    pub fn new(stream: &'a TcpStream, within: Duration) -> Self {
        Self {
            stream,
            deadline: Instant::now() + within,
        }
    }
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut s = self.stream;
        match s.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Err(std::io::ErrorKind::TimedOut.into())
            }
            other => other,
        }
    }
}

/// A card's backup reader service, reached over TCP.
pub struct BackupClient {
    stream: TcpStream,
    peer: SocketAddr,
    challenge: u64,
    window: (u64, u32),
    timeout: Duration,
}

fn read_only(what: &str) -> Error {
    Error::InvalidArgument(format!(
        "{what}: the backup reader service (backup:) is read-only; write through the card's \
         host (vfio-user:, vfio:, uio:, uart: or daemon:)"
    ))
}

fn unexpected(r: &Response) -> Error {
    Error::BadCompletion(format!("unexpected backup reader response {r:?}"))
}

impl BackupClient {
    /// Connect to `addr` (`HOST:PORT`) and take the card's hello; every
    /// wait (connect, each frame) is bounded by `timeout`.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Self> {
        let peer = addr
            .to_socket_addrs()
            .map_err(|e| Error::transport(format!("backup reader address {addr:?}"), e))?
            .next()
            .ok_or_else(|| {
                Error::InvalidArgument(format!("backup reader address {addr:?}: no address"))
            })?;
        let stream = TcpStream::connect_timeout(&peer, timeout).map_err(|e| {
            Error::transport(format!("connecting to the backup reader at {peer}"), e)
        })?;
        stream.set_write_timeout(Some(timeout))?;
        let _ = stream.set_nodelay(true);
        let hello = Self::read_frame(&stream, timeout, peer)?;
        let window = match (hello.header.kind, hello.window()) {
            (Kind::Hello, Some(w)) => w,
            (Kind::Error, _) => return Err(Self::refused(&hello)),
            (k, _) => {
                return Err(Error::BadCompletion(format!(
                    "the backup reader at {peer} began with a {k:?} frame"
                )))
            }
        };
        Ok(Self {
            stream,
            peer,
            challenge: hello.header.challenge,
            window,
            timeout,
        })
    }

    fn read_frame(stream: &TcpStream, timeout: Duration, peer: SocketAddr) -> Result<Frame> {
        Frame::read(&mut DeadlineReader::new(stream, timeout), MAX_DATA).map_err(|e| match e {
            ReadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => Error::Timeout {
                what: "the backup reader's answer",
                after: timeout,
            },
            ReadError::Io(e) => {
                Error::transport(format!("reading from the backup reader at {peer}"), e)
            }
            ReadError::Frame(f) => Error::BadCompletion(format!("backup reader at {peer}: {f}")),
        })
    }

    fn refused(f: &Frame) -> Error {
        Error::Firmware {
            code: Code::from_u32(f.header.code).unwrap_or(Code::Device),
            detail: format!(
                "the backup reader closed the connection: {}",
                String::from_utf8_lossy(&f.message)
            ),
            needed: None,
        }
    }

    /// The card's backup window (address, bytes): where RESTORE and
    /// LOG_READ put their data on the card.
    pub fn window(&self) -> (u64, u32) {
        self.window
    }

    /// Send one request (signed for `session` when given) and return the
    /// response and the data the card put in the window. A result other
    /// than OK is an error, as on the local path.
    pub fn request(
        &mut self,
        r: &Request,
        session: Option<&Session>,
    ) -> Result<(Response, Vec<u8>)> {
        let kind = r.kind();
        let m = r.encode();
        let bytes = match session {
            Some(s) => {
                let m = if Request::needs_session(kind) {
                    m.u32(tag::HANDLE, s.handle)
                } else {
                    m
                };
                auth::sign(m.finish(), s.secret(), self.challenge)
            }
            None => m.finish(),
        };
        self.exchange(kind, bytes)
    }

    /// Send signed or unsigned request bytes; `kind` decodes the answer.
    fn exchange(&mut self, kind: u8, bytes: Vec<u8>) -> Result<(Response, Vec<u8>)> {
        if bytes.len() > MAX_MESSAGE as usize {
            return Err(Error::InvalidArgument(format!(
                "request of {} bytes (at most {MAX_MESSAGE})",
                bytes.len()
            )));
        }
        let f = Frame::new(Kind::Request, 0, 0, bytes, Vec::new())
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        (&self.stream).write_all(&f.encode()).map_err(|e| {
            Error::transport(format!("writing to the backup reader at {}", self.peer), e)
        })?;
        let reply = Self::read_frame(&self.stream, self.timeout, self.peer)?;
        match reply.header.kind {
            Kind::Reply => {}
            Kind::Error => return Err(Self::refused(&reply)),
            k => {
                return Err(Error::BadCompletion(format!(
                    "the backup reader answered with a {k:?} frame"
                )))
            }
        }
        self.challenge = reply.header.challenge;
        let code = Code::from_u32(reply.header.code).ok_or_else(|| {
            Error::BadCompletion(format!("backup reader result {}", reply.header.code))
        })?;
        if reply.message.is_empty() {
            return Err(Error::Firmware {
                code,
                detail: String::new(),
                needed: None,
            });
        }
        let m =
            Message::decode(&reply.message).map_err(hitless_proto::message::ResponseError::from)?;
        match Response::decode(kind, &m)? {
            Ok(r) => Ok((r, reply.data)),
            Err(f) => Err(f.into()),
        }
    }

    fn signed(&mut self, s: &Session, r: &Request) -> Result<Response> {
        Ok(self.request(r, Some(s))?.0)
    }

    /// A piece of the reply's data, as the response places it.
    fn piece(data: &[u8], at: u32, len: u32) -> Result<Vec<u8>> {
        let (at, len) = (at as usize, len as usize);
        data.get(at..at.saturating_add(len))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                Error::BadCompletion(format!(
                    "the backup reader sent {} bytes, the response places {len} at {at}",
                    data.len()
                ))
            })
    }
}

impl Firmware for BackupClient {
    fn status(&mut self) -> Result<FwStatus> {
        match self.request(&Request::Status, None)?.0 {
            Response::Status(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    /// A session for reading and the log (`WRITE` is dropped: the service
    /// is read-only); the application's secret is required (a backup
    /// reader never registers an application).
    fn open_app(
        &mut self,
        app: u32,
        what: OpenFlags,
        secret: Option<&Secret>,
    ) -> Result<(Session, Option<Secret>)> {
        let secret = secret.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "the backup reader needs application {app}'s secret (from the host that \
                 registered it)"
            ))
        })?;
        let r = Request::Open {
            app,
            flags: what.0 & !flags::WRITE,
        };
        // OPEN is signed without a handle.
        let unsigned = Session::with_secret(app, 0, 0, *secret);
        match self.request(&r, Some(&unsigned))?.0 {
            Response::Opened { handle, key, .. } => {
                Ok((Session::with_secret(app, handle, key, *secret), None))
            }
            other => Err(unexpected(&other)),
        }
    }

    fn close(&mut self, s: &Session) -> Result<()> {
        match self.signed(s, &Request::Close)? {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn store(
        &mut self,
        _s: &Session,
        _object: u32,
        _endpoint: u32,
        _stage: u32,
        _cold: bool,
        data: &[u8],
    ) -> Result<()> {
        check_set_size(data.len())?;
        Err(read_only("STORE"))
    }

    fn delete(&mut self, _s: &Session, _object: u32) -> Result<()> {
        Err(read_only("DELETE"))
    }

    fn restore(&mut self, s: &Session, object: u32) -> Result<(SetInfo, Vec<u8>)> {
        let (addr, cap) = self.window;
        let (r, data) = self.request(
            &Request::Restore {
                object,
                endpoint: 0,
                addr,
                cap,
            },
            Some(s),
        )?;
        let Response::Sets { sets, .. } = r else {
            return Err(unexpected(&r));
        };
        let info = *sets
            .first()
            .ok_or_else(|| Error::BadCompletion("RESTORE without the set's record".into()))?;
        checked_set(&info, Self::piece(&data, 0, info.len)?)
    }

    fn list(&mut self, s: &Session) -> Result<Vec<SetInfo>> {
        match self.signed(s, &Request::List { endpoint: 0 })? {
            Response::Sets { sets, .. } => Ok(sets),
            other => Err(unexpected(&other)),
        }
    }

    fn announce(&mut self, _stage: u32) -> Result<Vec<SetInfo>> {
        Err(read_only("announcing a reboot stage"))
    }

    fn fetch(&mut self, _s: &Session, _stage: u32) -> Result<Vec<(SetInfo, Vec<u8>)>> {
        Err(Error::InvalidArgument(
            "FETCH of a reboot stage: the backup reader serves RESTORE of each set (list, then \
             restore)"
                .into(),
        ))
    }

    fn log_append(
        &mut self,
        _s: &Session,
        _object: u32,
        _cold: bool,
        _overwrite: bool,
        _data: &[u8],
    ) -> Result<u32> {
        Err(read_only("LOG_APPEND"))
    }

    fn log_read(&mut self, s: &Session, cold: bool) -> Result<LogRead> {
        let (addr, cap) = self.window;
        let r = Request::LogRead {
            flags: tier_flag(cold),
            addr,
            cap,
        };
        let (r, data) = self.request(&r, Some(s))?;
        let Response::Log {
            records: infos,
            head,
            tail,
        } = r
        else {
            return Err(unexpected(&r));
        };
        let mut records = Vec::with_capacity(infos.len());
        for li in infos {
            let bytes = Self::piece(&data, li.data_offset, li.len)?;
            records.push((li, bytes));
        }
        Ok(LogRead {
            records,
            head,
            tail,
        })
    }

    fn log_trim(&mut self, s: &Session, cold: bool, to: u32) -> Result<()> {
        let r = Request::LogTrim {
            flags: tier_flag(cold),
            to: Some(to),
        };
        match self.signed(s, &r)? {
            Response::Log { .. } => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn format(&mut self, _s: &Session, _cold: bool) -> Result<()> {
        Err(read_only("FORMAT"))
    }

    fn auth_failures(&mut self) -> Result<u32> {
        Ok(self.status()?.auth_fails)
    }

    fn switchover(&mut self, _to: Option<u32>) -> Result<Switched> {
        Err(read_only("SWITCHOVER"))
    }

    fn describe(&self) -> String {
        format!("backup:{}", self.peer)
    }
}
