//! A small HTTP/1.1 server for components (RFC 9110, 9112), written on
//! std's `TcpListener`: the server side needs only GET and HEAD of a
//! handful of in-memory files, which is less code to review than a
//! dependency's (and bounds every wait the way this card needs).
//!
//! * `GET`/`HEAD /components/<name>` (percent-decoded): a component of the
//!   running image; `/manifest` (or `/manifest.json`): its manifest as
//!   JSON; `/`: a plain-text list of the components.
//! * `ETag` is the component's SHA-256 in quotes (strong), `Content-Length`
//!   always; `Accept-Ranges: bytes`. One range (`bytes=N-`, `N-M`, `-S`)
//!   gives 206 with `Content-Range`; a range starting past the end gives
//!   416 with `Content-Range: bytes */len`; several ranges, a malformed
//!   `Range` or an `If-Range` that does not match the `ETag` give the whole
//!   file (200), as RFC 9110 allows. `If-None-Match` with the `ETag` gives
//!   304.
//! * 404 (no such component or path), 405 (not GET or HEAD, with `Allow`),
//!   400 (malformed request line or header, HTTP/1.1 without `Host`, a
//!   request body), 431 (head larger than [`HttpOptions::max_head`]), 408
//!   (head not complete within [`HttpOptions::request_timeout`]), 505, 503
//!   (card not booted or NVS busy; or too many connections); each with a
//!   one-line plain-text body saying why.
//! * Persistent connections (HTTP/1.1 unless `Connection: close`; 1.0 with
//!   `keep-alive`); an idle connection is closed after
//!   [`HttpOptions::idle_timeout`]; every write is bounded by
//!   [`HttpOptions::write_timeout`]. Errors close the connection.

use super::{classify, left, lookup, ComponentSource, Failure, Served, ServerHandle, Shared};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Server settings.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Connections served at once; beyond, 503 and close.
    pub max_connections: usize,
    /// Largest request head (request line and headers).
    pub max_head: usize,
    /// Time from a request's first byte to the end of its head.
    pub request_timeout: Duration,
    /// Time a connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time one write to the client may block.
    pub write_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_connections: 32,
            max_head: 8 * 1024,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Start an HTTP server on `addr` (e.g. `127.0.0.1:0`) serving `src`.
pub fn serve_http(
    addr: SocketAddr,
    src: Arc<dyn ComponentSource>,
    opts: HttpOptions,
) -> std::io::Result<ServerHandle> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let shared = Arc::new(Shared::default());
    let sh = shared.clone();
    let thread = std::thread::Builder::new()
        .name(format!("http {local}"))
        .spawn(move || accept_loop(listener, src, opts, sh))?;
    tracing::info!(addr = %local, "HTTP server listening");
    Ok(ServerHandle::new(local, shared, thread, Some(wake)))
}

/// Unblock `accept` after a stop by connecting once.
fn wake(addr: SocketAddr) {
    let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
}

fn accept_loop(
    listener: TcpListener,
    src: Arc<dyn ComponentSource>,
    opts: HttpOptions,
    shared: Arc<Shared>,
) {
    let rejecting = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if shared.stopping() {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "HTTP accept");
                // e.g. EMFILE: do not spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let Some(slot) = shared.try_enter(opts.max_connections) else {
            tracing::warn!(%peer, "HTTP busy: connection refused");
            refuse_busy(stream, &rejecting);
            continue;
        };
        let (src, opts, sh) = (src.clone(), opts.clone(), shared.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("http {peer}"))
            .spawn(move || {
                let _slot = slot;
                if let Err(e) = connection(stream, peer, &*src, &opts, &sh) {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start an HTTP connection thread");
        }
    }
}

/// How long a closing connection drains what the client still sends,
/// and how much: closing a socket with unread input sends a reset, which
/// can destroy the response before the client reads it (the "lingering
/// close" of RFC 9112 section 9.6).
const LINGER: Duration = Duration::from_millis(200);
const LINGER_BYTES: usize = 256 * 1024;
/// Refused connections being answered 503 at once; beyond, dropped.
const MAX_REJECTING: usize = 8;

/// Half-close, then drain the client's input for a short bounded time.
fn linger_close(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let end = Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while let Some(w) = left(end) {
        if stream.set_read_timeout(Some(w)).is_err() {
            break;
        }
        match (&*stream).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                drained += n;
                if drained > LINGER_BYTES {
                    break;
                }
            }
        }
    }
}

/// Answer 503 to a connection beyond the bound, on a short-lived thread
/// (it lingers), at most [`MAX_REJECTING`] at once; beyond, just close.
fn refuse_busy(stream: TcpStream, rejecting: &Arc<AtomicUsize>) {
    if rejecting.fetch_add(1, Ordering::AcqRel) >= MAX_REJECTING {
        rejecting.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let count = rejecting.clone();
    let spawned = std::thread::Builder::new()
        .name("http busy".into())
        .spawn(move || {
            let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
            let mut s = &stream;
            let _ = respond_error(&mut s, 503, "too many connections", false, &[]);
            linger_close(&stream);
            count.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        rejecting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a request head could not be read.
#[derive(Debug)]
enum HeadError {
    TooLarge,
    Timeout,
    /// The peer closed in the middle of a head.
    Truncated,
    Io(std::io::Error),
}

/// Read one request head (through the blank line). `Ok(None)`: the peer
/// closed (or stayed idle, or the server stops) before a request began.
fn read_head(
    r: &mut BufReader<TcpStream>,
    opts: &HttpOptions,
    shared: &Shared,
) -> Result<Option<Vec<u8>>, HeadError> {
    let idle_end = Instant::now() + opts.idle_timeout;
    let mut deadline: Option<Instant> = None;
    let mut head: Vec<u8> = Vec::new();
    loop {
        let end = deadline.unwrap_or(idle_end);
        let Some(wait) = left(end) else {
            return if deadline.is_some() {
                Err(HeadError::Timeout)
            } else {
                Ok(None)
            };
        };
        // Wake at least every 100 ms while idle, to notice a stop.
        let wait = if deadline.is_none() {
            wait.min(Duration::from_millis(100))
        } else {
            wait
        };
        r.get_ref()
            .set_read_timeout(Some(wait))
            .map_err(HeadError::Io)?;
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if deadline.is_none() && shared.stopping() {
                    return Ok(None);
                }
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HeadError::Io(e)),
        };
        if buf.is_empty() {
            return if head.is_empty() && deadline.is_none() {
                Ok(None)
            } else {
                Err(HeadError::Truncated)
            };
        }
        if deadline.is_none() {
            deadline = Some(Instant::now() + opts.request_timeout);
        }
        let mut used = 0;
        let mut done = false;
        for &b in buf {
            used += 1;
            // Blank lines before a request line are ignored (RFC 9112 2.2).
            if head.is_empty() && (b == b'\r' || b == b'\n') {
                continue;
            }
            head.push(b);
            if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
                done = true;
                break;
            }
            if head.len() > opts.max_head {
                r.consume(used);
                return Err(HeadError::TooLarge);
            }
        }
        r.consume(used);
        if done {
            return Ok(Some(head));
        }
    }
}

/// A parsed request head.
#[derive(Debug)]
struct Request {
    method: String,
    target: String,
    http11: bool,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// A request that cannot be served, as a status and a reason.
type Refusal = (u16, String);

fn parse_head(head: &[u8]) -> Result<Request, Refusal> {
    let text = std::str::from_utf8(head).map_err(|_| (400, "request head is not UTF-8".into()))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err((400, format!("malformed request line: {line:?}")));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) || target.is_empty() {
        return Err((400, format!("malformed request line: {line:?}")));
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => {
            return Err((505, format!("HTTP version {v} not supported")))
        }
        _ => return Err((400, format!("malformed request line: {line:?}"))),
    };
    let mut headers = Vec::new();
    for l in lines {
        if l.is_empty() {
            continue;
        }
        if l.starts_with([' ', '\t']) {
            return Err((400, "obsolete header line folding".into()));
        }
        let (name, value) = l
            .split_once(':')
            .ok_or_else(|| (400, format!("malformed header line: {l:?}")))?;
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace() || b < 0x21) {
            return Err((400, format!("malformed header name: {name:?}")));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        http11,
        headers,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A byte range to serve, from `Range` against a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAnswer {
    /// The whole file (no range, or one we ignore).
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// No byte of the range is in the file.
    Unsatisfiable,
}

fn range_for(value: &str, len: u64) -> RangeAnswer {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Whole; // another unit: ignored
    };
    if spec.contains(',') {
        return RangeAnswer::Whole; // several ranges: served whole
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            // Digits beyond u64: as large as can be.
            Some(s.parse().unwrap_or(u64::MAX))
        }
    };
    match (a.trim(), b.trim()) {
        ("", suffix) => match num(suffix) {
            None => RangeAnswer::Whole,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if len == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Part(len - n.min(len), len - 1),
        },
        (first, last) => {
            let Some(first) = num(first) else {
                return RangeAnswer::Whole;
            };
            let last = if last.is_empty() {
                u64::MAX
            } else {
                match num(last) {
                    Some(l) if l >= first => l,
                    _ => return RangeAnswer::Whole, // invalid: ignored
                }
            };
            if first >= len {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Part(first, last.min(len - 1))
            }
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

fn write_head(
    w: &mut impl Write,
    status: u16,
    headers: &[(&str, String)],
    keep: bool,
) -> std::io::Result<()> {
    let mut h = format!(
        "HTTP/1.1 {status} {}\r\nServer: hitless-image\r\n",
        reason(status)
    );
    for (n, v) in headers {
        h.push_str(n);
        h.push_str(": ");
        h.push_str(v);
        h.push_str("\r\n");
    }
    h.push_str(if keep {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    w.write_all(h.as_bytes())
}

fn respond_error(
    w: &mut impl Write,
    status: u16,
    why: &str,
    keep: bool,
    extra: &[(&str, String)],
) -> std::io::Result<()> {
    respond_text(w, status, why, keep, extra, true)
}

fn respond_text(
    w: &mut impl Write,
    status: u16,
    text: &str,
    keep: bool,
    extra: &[(&str, String)],
    body: bool,
) -> std::io::Result<()> {
    let text = format!("{text}\n");
    let mut h = vec![
        ("Content-Type", "text/plain; charset=utf-8".to_string()),
        ("Content-Length", text.len().to_string()),
    ];
    h.extend(extra.iter().cloned());
    write_head(w, status, &h, keep)?;
    if body {
        w.write_all(text.as_bytes())?;
    }
    w.flush()
}

fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    src: &dyn ComponentSource,
    opts: &HttpOptions,
    shared: &Shared,
) -> std::io::Result<()> {
    stream.set_write_timeout(Some(opts.write_timeout))?;
    let _ = stream.set_nodelay(true);
    let mut out = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    loop {
        let head = match read_head(&mut r, opts, shared) {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(HeadError::TooLarge) => {
                respond_error(&mut out, 431, "request head too large", false, &[])?;
                break;
            }
            Err(HeadError::Timeout) => {
                tracing::info!(%peer, "HTTP request head timed out");
                respond_error(
                    &mut out,
                    408,
                    "request head not received in time",
                    false,
                    &[],
                )?;
                break;
            }
            Err(HeadError::Truncated) => break,
            Err(HeadError::Io(e)) => return Err(e),
        };
        let req = match parse_head(&head) {
            Ok(r) => r,
            Err((status, why)) => {
                tracing::info!(%peer, status, why = %why, "HTTP request refused");
                respond_error(&mut out, status, &why, false, &[])?;
                break;
            }
        };
        let keep = !shared.stopping()
            && if req.http11 {
                !req.has_token("connection", "close")
            } else {
                req.has_token("connection", "keep-alive")
            };
        if !answer(&mut out, peer, &req, src, keep)? || !keep {
            break;
        }
    }
    linger_close(&out);
    Ok(())
}

/// Answer one request; `Ok(false)` when the connection must close.
fn answer(
    out: &mut TcpStream,
    peer: SocketAddr,
    req: &Request,
    src: &dyn ComponentSource,
    keep: bool,
) -> std::io::Result<bool> {
    let refuse = |out: &mut TcpStream, status: u16, why: &str, extra: &[(&str, String)]| {
        tracing::info!(%peer, method = %req.method, target = %req.target, status, why, "HTTP request refused");
        respond_error(out, status, why, false, extra).map(|()| false)
    };
    let head_only = match req.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        m => {
            return refuse(
                out,
                405,
                &format!("method {m} not allowed: this server serves GET and HEAD"),
                &[("Allow", "GET, HEAD".into())],
            )
        }
    };
    if req.header("transfer-encoding").is_some()
        || req
            .header("content-length")
            .is_some_and(|v| v.trim() != "0")
    {
        return refuse(out, 400, "a GET or HEAD request takes no body", &[]);
    }
    if req.http11 && req.header("host").is_none() {
        return refuse(out, 400, "HTTP/1.1 request without Host", &[]);
    }
    let path = req.target.split(['?', '#']).next().unwrap_or_default();
    let Some(path) = percent_decode(path) else {
        return refuse(out, 400, "malformed percent-encoding in the path", &[]);
    };
    let what = match path.as_str() {
        "/manifest" | "/manifest.json" => Served::Manifest,
        "/" => return index(out, src, keep, head_only),
        p => match p.strip_prefix("/components/") {
            Some(name) if !name.is_empty() => Served::Component(name),
            _ => {
                respond_error(
                    out,
                    404,
                    &format!("no such path {path}: try /manifest or /components/<name>"),
                    keep,
                    &[],
                )?;
                return Ok(true);
            }
        },
    };
    let file = match lookup(src, what) {
        Ok(f) => f,
        Err(e) => {
            let (status, extra) = match classify(&e) {
                Failure::NotFound => (404, vec![]),
                Failure::Unavailable => (503, vec![("Retry-After", "1".to_string())]),
                Failure::Internal => (500, vec![]),
            };
            tracing::info!(%peer, path = %path, status, error = %e, "HTTP read refused");
            respond_error(out, status, &e.to_string(), keep, &extra)?;
            return Ok(true);
        }
    };
    let etag = format!("\"{}\"", file.sha256.hex());
    let len = file.data.len() as u64;
    let ctype = if file.is_manifest {
        "application/json"
    } else {
        "application/octet-stream"
    };
    let mut h = vec![
        ("ETag", etag.clone()),
        ("Accept-Ranges", "bytes".to_string()),
        ("Cache-Control", "no-cache".to_string()),
    ];
    if req
        .header("if-none-match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        write_head(out, 304, &h, keep)?;
        out.flush()?;
        return Ok(true);
    }
    let range = match req.header("range") {
        Some(v) if req.header("if-range").is_none_or(|ir| ir.trim() == etag) => range_for(v, len),
        _ => RangeAnswer::Whole,
    };
    let (status, body) = match range {
        RangeAnswer::Whole => (200, &file.data[..]),
        RangeAnswer::Part(a, b) => {
            h.push(("Content-Range", format!("bytes {a}-{b}/{len}")));
            let body = file.data.get(a as usize..=b as usize).unwrap_or_default();
            (206, body)
        }
        RangeAnswer::Unsatisfiable => {
            h.push(("Content-Range", format!("bytes */{len}")));
            respond_error(
                out,
                416,
                &format!("range not satisfiable: the file has {len} bytes"),
                keep,
                &h,
            )?;
            return Ok(true);
        }
    };
    h.push(("Content-Type", ctype.to_string()));
    h.push(("Content-Length", body.len().to_string()));
    write_head(out, status, &h, keep)?;
    if !head_only {
        out.write_all(body)?;
    }
    out.flush()?;
    tracing::debug!(%peer, path = %path, status, bytes = body.len(), head_only, "HTTP served");
    Ok(true)
}

fn index(
    out: &mut TcpStream,
    src: &dyn ComponentSource,
    keep: bool,
    head_only: bool,
) -> std::io::Result<bool> {
    let text = match src.manifest() {
        Ok(m) => {
            let mut t = format!("hitless image version {}: /manifest, and\n", m.version);
            for c in &m.components {
                t.push_str(&format!(
                    "/components/{} {} bytes sha256 {}\n",
                    c.name,
                    c.size,
                    c.sha256.hex()
                ));
            }
            t
        }
        Err(e) => {
            respond_error(out, 503, &e.to_string(), keep, &[])?;
            return Ok(true);
        }
    };
    respond_text(out, 200, text.trim_end(), keep, &[], !head_only)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeAnswer::*;
        assert_eq!(range_for("bytes=0-", 10), Part(0, 9));
        assert_eq!(range_for("bytes=3-5", 10), Part(3, 5));
        assert_eq!(range_for("bytes=3-50", 10), Part(3, 9));
        assert_eq!(range_for("bytes=-4", 10), Part(6, 9));
        assert_eq!(range_for("bytes=-40", 10), Part(0, 9));
        assert_eq!(range_for("bytes=10-", 10), Unsatisfiable);
        assert_eq!(
            range_for("bytes=99999999999999999999999-", 10),
            Unsatisfiable
        );
        assert_eq!(range_for("bytes=-0", 10), Unsatisfiable);
        assert_eq!(range_for("bytes=0-", 0), Unsatisfiable);
        assert_eq!(range_for("bytes=5-3", 10), Whole);
        assert_eq!(range_for("bytes=0-1,4-5", 10), Whole);
        assert_eq!(range_for("bytes=x-", 10), Whole);
        assert_eq!(range_for("items=0-1", 10), Whole);
        assert_eq!(range_for("bytes=", 10), Whole);
    }

    #[test]
    fn heads() {
        let r = parse_head(b"GET /components/a%20b HTTP/1.1\r\nHost: x\r\nRange: bytes=1-\r\n\r\n")
            .unwrap();
        assert_eq!(r.method, "GET");
        assert!(r.http11);
        assert_eq!(r.header("RANGE"), Some("bytes=1-"));
        assert_eq!(
            percent_decode("/components/a%20b").unwrap(),
            "/components/a b"
        );
        assert!(percent_decode("/a%2").is_none());
        assert!(percent_decode("/a%zz").is_none());
        assert!(percent_decode("/%ff").is_none());
        assert_eq!(parse_head(b"GET /\r\n\r\n").unwrap_err().0, 400);
        assert_eq!(parse_head(b"GET / HTTP/2.0\r\n\r\n").unwrap_err().0, 505);
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
                .unwrap_err()
                .0,
            400
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\n folded\r\n\r\n")
                .unwrap_err()
                .0,
            400
        );
        assert_eq!(parse_head(b"\xff / HTTP/1.1\r\n\r\n").unwrap_err().0, 400);
        assert_eq!(parse_head(b"G@T / HTTP/1.1\r\n\r\n").unwrap_err().0, 400);
    }
}
