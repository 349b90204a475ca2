//! The card's remote backup reader service (`hitless-sim serve
//! --backup-listen ADDR`; seed 001): backup processes on other hosts read
//! an application's sets and append log over TCP, authenticated with the
//! application's secret, through the same firmware instance as the local
//! host (each request is queued to the firmware thread, between the
//! mailbox's). Frames: [`hitless_proto::backup`]; the client is the
//! driver's `backup:HOST:PORT` ([`hitless_driver::backup`]).
//!
//! Bounds: a request frame is at most one message (64 KiB) and carries no
//! data; a frame, once begun, must arrive whole within
//! [`BackupLimits::frame`]; a connection that says nothing for
//! [`BackupLimits::idle`] is closed; every write has a deadline; a frame
//! the service does not take is answered with an ERROR frame and the
//! connection closed; at most [`BackupLimits::connections`] readers at
//! once. The firmware puts RESTORE and LOG_READ data in a window of
//! card-local RAM ([`window`]) from which the reply's data is copied.

use crate::firmware::FirmwareHandle;
use crate::local::{LocalMemory, LOCAL_BASE};
use hitless_driver::backup::DeadlineReader;
use hitless_firmware::manager::{AccessError, Controller, HostMemory, MemoryManager, Reply};
use hitless_hdl::contract::MAX_MESSAGE;
use hitless_proto::backup::{Frame, Kind, ReadError};
use hitless_proto::msg::kind;
use hitless_proto::tlv::Message;
use hitless_proto::{Code, Response};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Where the window starts in card-local RAM: after the firmware's rings
/// and scratch.
pub const WINDOW_OFFSET: usize =
    crate::firmware::RING_BYTES + hitless_firmware::manager::SCRATCH_BYTES;
/// The window's size: the largest set the driver stores.
pub const WINDOW_BYTES: u32 = hitless_driver::firmware::MAX_SET_BYTES;

/// The window as the controller and the firmware address it.
pub fn window() -> (u64, u32) {
    (LOCAL_BASE + WINDOW_OFFSET as u64, WINDOW_BYTES)
}

/// One remote request for the firmware thread.
pub struct BackupRequest {
    pub message: Vec<u8>,
    /// The connection's challenge the request is signed against.
    pub challenge: u64,
    pub reply: SyncSender<BackupAnswer>,
}

/// The firmware's answer: the result code, the response message and the
/// bytes it put in the window.
pub struct BackupAnswer {
    pub code: Code,
    pub message: Vec<u8>,
    pub data: Vec<u8>,
}

impl BackupRequest {
    /// Answer without running the request.
    pub fn refuse(self, code: Code, detail: &str) {
        self.refuse_with(&hitless_proto::message::Failure::new(code, detail));
    }

    /// Answer with `f` (a `NotMaster` keeps the master it names).
    pub fn refuse_with(self, f: &hitless_proto::message::Failure) {
        let kind = self.message.get(3).copied().unwrap_or(0);
        let _ = self.reply.send(BackupAnswer {
            code: f.code,
            message: f.encode(kind).finish(),
            data: Vec::new(),
        });
    }

    /// Refuse a request that is not 1 to 64 KiB (`None`: refused).
    pub fn sized(self) -> Option<Self> {
        if self.message.is_empty() || self.message.len() > MAX_MESSAGE as usize {
            self.refuse(Code::BadMessage, "a request is 1 to 64 KiB");
            return None;
        }
        Some(self)
    }

    /// Answer with the firmware's `reply` and the window's bytes it
    /// describes.
    pub fn answer(self, local: &LocalMemory, reply: Reply) {
        let data = if reply.code == Code::Ok {
            let len = data_len(self.message[3], &reply.message);
            let mut d = vec![0u8; len];
            if len > 0 && !local.read(WINDOW_OFFSET, &mut d) {
                return self.refuse(Code::Device, "the backup window could not be read");
            }
            d
        } else {
            Vec::new()
        };
        let _ = self.reply.send(BackupAnswer {
            code: reply.code,
            message: reply.message,
            data,
        });
    }
}

/// The window as the firmware's "host memory" (LOG_READ writes there;
/// nothing else is reachable).
pub(crate) struct WindowHost(pub(crate) LocalMemory);

impl WindowHost {
    fn offset(&self, what: &'static str, addr: u64, len: usize) -> Result<usize, AccessError> {
        let (base, size) = window();
        addr.checked_sub(base)
            .filter(|o| o.saturating_add(len as u64) <= u64::from(size))
            .map(|o| WINDOW_OFFSET + o as usize)
            .ok_or(AccessError::OutOfRange {
                what,
                offset: addr,
                len,
                size: size as usize,
            })
    }
}

impl HostMemory for WindowHost {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        let at = self.offset("a backup window read", addr, buf.len())?;
        if self.0.read(at, buf) {
            Ok(())
        } else {
            Err(AccessError::transport("a backup window read", "refused"))
        }
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        let at = self.offset("a backup window write", addr, data.len())?;
        if self.0.write(at, data) {
            Ok(())
        } else {
            Err(AccessError::transport("a backup window write", "refused"))
        }
    }
}

/// Run one remote request on the firmware (in the firmware thread).
pub fn run<C: Controller>(mm: &mut MemoryManager<C>, local: &LocalMemory, req: BackupRequest) {
    let Some(req) = req.sized() else { return };
    let mut host = WindowHost(local.clone());
    let reply = mm.handle_backup(&mut host, &req.message, req.challenge, window());
    req.answer(local, reply);
}

/// The window bytes a response describes.
fn data_len(request_kind: u8, response: &[u8]) -> usize {
    let Ok(m) = Message::decode(response) else {
        return 0;
    };
    let end = match Response::decode(request_kind, &m) {
        Ok(Ok(Response::Sets { sets, .. })) if request_kind == kind::RESTORE => {
            sets.first().map_or(0, |s| u64::from(s.len))
        }
        Ok(Ok(Response::Log { records, .. })) if request_kind == kind::LOG_READ => records
            .iter()
            .map(|r| u64::from(r.data_offset) + u64::from(r.len))
            .max()
            .unwrap_or(0),
        _ => 0,
    };
    end.min(u64::from(WINDOW_BYTES)) as usize
}

/// The service's deadlines and bounds.
#[derive(Clone, Debug)]
pub struct BackupLimits {
    /// A frame, from its first byte to its last.
    pub frame: Duration,
    /// Silence between frames before the connection is closed.
    pub idle: Duration,
    /// One reply written (the reader must take it).
    pub write: Duration,
    /// The firmware's answer to one request.
    pub answer: Duration,
    /// Readers connected at once.
    pub connections: usize,
}

impl Default for BackupLimits {
    fn default() -> Self {
        Self {
            frame: Duration::from_secs(5),
            idle: Duration::from_secs(300),
            write: Duration::from_secs(10),
            answer: Duration::from_secs(30),
            connections: 16,
        }
    }
}

/// The running service; stopped when dropped.
pub struct BackupService {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl BackupService {
    /// Listen on `addr` and serve readers through `fw`.
    pub fn start(
        addr: SocketAddr,
        fw: FirmwareHandle,
        limits: BackupLimits,
    ) -> Result<Self, std::io::Error> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), refused.clone());
        let thread = std::thread::Builder::new()
            .name("hitless-backup-accept".into())
            .spawn(move || accept_loop(listener, fw, limits, s, r))?;
        Ok(Self {
            addr,
            stop,
            refused,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Frames refused and connections dropped (garbage, too large,
    /// stalled, too many readers) since the start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for BackupService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    fw: FirmwareHandle,
    limits: BackupLimits,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
) {
    let live = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_write_timeout(Some(limits.write));
                let _ = stream.set_nodelay(true);
                if live.load(Ordering::SeqCst) >= limits.connections {
                    refused.fetch_add(1, Ordering::SeqCst);
                    tracing::warn!(%peer, "backup reader refused: too many connections");
                    let f = Frame::error(Code::NoSession, "too many backup readers connected");
                    let _ = (&stream).write_all(&f.encode());
                    continue;
                }
                live.fetch_add(1, Ordering::SeqCst);
                let (fw, limits, live, refused) =
                    (fw.clone(), limits.clone(), live.clone(), refused.clone());
                let spawned = std::thread::Builder::new()
                    .name("hitless-backup-reader".into())
                    .spawn(move || {
                        serve_connection(&stream, peer, &fw, &limits, &refused);
                        live.fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
                    tracing::warn!("backup reader thread: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                tracing::warn!("backup reader listener: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Close after an ERROR frame so that the reader gets it: end our side,
/// then take (briefly, boundedly) what it still sends. Closing with its
/// bytes unread would reset the connection and could lose the frame.
fn linger(stream: &TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let mut s = stream;
    for _ in 0..64 {
        match std::io::Read::read(&mut s, &mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Serve one reader until it leaves, goes silent, or sends a frame the
/// service does not take.
fn serve_connection(
    stream: &TcpStream,
    peer: SocketAddr,
    fw: &FirmwareHandle,
    limits: &BackupLimits,
    refused: &AtomicU64,
) {
    let (base, size) = window();
    let mut challenge: u64 = rand::random();
    if (&*stream)
        .write_all(&Frame::hello(challenge, base, size).encode())
        .is_err()
    {
        return;
    }
    tracing::info!(%peer, "backup reader connected");
    let refuse = |code: Code, why: &str| {
        refused.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(%peer, "backup reader: {why}");
        let _ = (&*stream).write_all(&Frame::error(code, why).encode());
        linger(stream);
    };
    loop {
        // Wait for the next frame to begin (idle), then take it whole
        // within the frame deadline.
        let mut first = [0u8; 1];
        let _ = stream.set_read_timeout(Some(limits.idle));
        match stream.peek(&mut first) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) {
                    refuse(Code::BadMessage, "no request within the idle limit");
                }
                break;
            }
        }
        let f = match Frame::read(&mut DeadlineReader::new(stream, limits.frame), 0) {
            Ok(f) => f,
            Err(ReadError::Frame(e)) => {
                refuse(Code::BadMessage, &e.to_string());
                break;
            }
            Err(ReadError::Io(e)) => {
                let why = match e.kind() {
                    std::io::ErrorKind::TimedOut => {
                        format!("a frame not whole within {:?}", limits.frame)
                    }
                    std::io::ErrorKind::UnexpectedEof => "a truncated frame".to_string(),
                    _ => format!("reading a frame: {e}"),
                };
                refuse(Code::BadMessage, &why);
                break;
            }
        };
        if f.header.kind != Kind::Request {
            refuse(
                Code::BadMessage,
                &format!("a {:?} frame from a reader", f.header.kind),
            );
            break;
        }
        // Every request, good or bad, consumes the challenge.
        let signed_against = challenge;
        challenge = rand::random();
        let (tx, rx) = mpsc::sync_channel(1);
        fw.backup(BackupRequest {
            message: f.message,
            challenge: signed_against,
            reply: tx,
        });
        let answer = match rx.recv_timeout(limits.answer) {
            Ok(a) => a,
            Err(RecvTimeoutError::Timeout) => {
                refuse(Code::Device, "the card did not answer in time");
                break;
            }
            Err(RecvTimeoutError::Disconnected) => {
                refuse(Code::Device, "the card's firmware stopped");
                break;
            }
        };
        let reply = match Frame::new(
            Kind::Reply,
            answer.code as u32,
            challenge,
            answer.message,
            answer.data,
        ) {
            Ok(r) => r,
            Err(e) => {
                refuse(
                    Code::Device,
                    &format!("the answer does not fit a frame: {e}"),
                );
                break;
            }
        };
        if let Err(e) = (&*stream).write_all(&reply.encode()) {
            tracing::info!(%peer, "backup reader: writing the reply: {e}");
            break;
        }
    }
    tracing::info!(%peer, "backup reader disconnected");
}
