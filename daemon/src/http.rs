//! A small HTTP/1.1 server for the store browser ([`crate::browser`]):
//! one request per connection (`Connection: close`), on std's
//! `TcpListener`, every read and write bounded in time and size. It
//! parses what the browser page and its API need and refuses the rest
//! (chunked bodies, oversized heads and bodies, slow clients) with a 4xx.
//!
//! No HTTP crate: the daemon needs a dozen routes on loopback, the metrics
//! endpoint already hand-rolls its one route, and a parser this size is
//! easier to bound (and read) than a general server's configuration.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Limits of one HTTP exchange.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// The request line and headers, at most.
    pub head_bytes: usize,
    /// A request body, at most.
    pub body_bytes: usize,
    /// The whole request must arrive within this of the connection.
    pub read: Duration,
    /// Each write of the answer.
    pub write: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            head_bytes: 16 * 1024,
            body_bytes: 4 * 1024,
            read: Duration::from_secs(5),
            write: Duration::from_secs(5),
        }
    }
}

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query's `name=value` pairs, percent-decoded.
    pub query: Vec<(String, String)>,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("request head over {0} bytes")]
    HeadTooLarge(usize),
    #[error("request body over {0} bytes")]
    BodyTooLarge(usize),
    #[error("the request did not arrive within {0:?}")]
    Slow(Duration),
    #[error("the connection closed mid-request")]
    Closed,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    #[error("reading the request: {0}")]
    Io(#[from] std::io::Error),
}

impl HttpError {
    /// The status to answer with (None: nothing can be answered).
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::HeadTooLarge(_) => Some(431),
            HttpError::BodyTooLarge(_) => Some(413),
            HttpError::Slow(_) => Some(408),
            HttpError::Malformed(_) => Some(400),
            HttpError::Unsupported(_) => Some(501),
            HttpError::Closed | HttpError::Io(_) => None,
        }
    }
}

/// Read into `buf` until `done(buf)` or the limits: each read waits at
/// most what is left of the deadline.
fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    total: Duration,
) -> Result<usize, HttpError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(HttpError::Slow(total));
    }
    stream.set_read_timeout(Some(left))?;
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk) {
        Ok(0) => Err(HttpError::Closed),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(HttpError::Slow(total))
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(HttpError::Io(e)),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Read one request from `stream`.
pub fn read_request(stream: &mut TcpStream, limits: &HttpLimits) -> Result<Request, HttpError> {
    let deadline = Instant::now() + limits.read;
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > limits.head_bytes {
            return Err(HttpError::HeadTooLarge(limits.head_bytes));
        }
        read_some(stream, &mut buf, deadline, limits.read)?;
    };
    if head_end > limits.head_bytes {
        return Err(HttpError::HeadTooLarge(limits.head_bytes));
    }
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| HttpError::Malformed("the head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed("request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Unsupported("this HTTP version"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Malformed("method"));
    }
    if !target.starts_with('/') {
        return Err(HttpError::Malformed("the target must be a path"));
    }
    let mut headers = Vec::new();
    for l in lines {
        let (n, v) = l
            .split_once(':')
            .ok_or(HttpError::Malformed("a header line"))?;
        if n.is_empty() || n.contains(|c: char| c.is_whitespace()) {
            return Err(HttpError::Malformed("a header name"));
        }
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
        if headers.len() > 100 {
            return Err(HttpError::HeadTooLarge(limits.head_bytes));
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let path = percent_decode(path).ok_or(HttpError::Malformed("percent-encoding"))?;
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(n)?, percent_decode(v)?))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or(HttpError::Malformed("percent-encoding"))?;
    let mut req = Request {
        method: method.to_string(),
        path,
        query,
        headers,
        body: Vec::new(),
    };
    if req.header("transfer-encoding").is_some() {
        return Err(HttpError::Unsupported("Transfer-Encoding"));
    }
    let len = match req.header("content-length") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| HttpError::Malformed("Content-Length"))?,
    };
    if len > limits.body_bytes {
        return Err(HttpError::BodyTooLarge(limits.body_bytes));
    }
    let mut body = buf.split_off(head_end + 4);
    while body.len() < len {
        read_some(stream, &mut body, deadline, limits.read)?;
    }
    // Anything past the body (pipelined requests) is ignored: one request
    // per connection.
    body.truncate(len);
    req.body = body;
    Ok(req)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// An answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Extra header lines (`Name: value`).
    pub headers: Vec<String>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        let mut b: String = body.into();
        b.push('\n');
        Self::new(status, "text/plain; charset=utf-8", b)
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Write `r` (with headers that keep browsers from caching, framing or
/// sniffing the answers) and close.
pub fn write_response(
    stream: &mut TcpStream,
    r: &Response,
    limits: &HttpLimits,
) -> std::io::Result<()> {
    stream.set_write_timeout(Some(limits.write))?;
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n\
         Referrer-Policy: no-referrer\r\n\
         Content-Security-Policy: default-src 'none'; script-src 'self' 'unsafe-inline'; \
         style-src 'unsafe-inline'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    for h in &r.headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&r.body)?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Read and drop what the client still sends: at most 64 KiB, for at
/// most a second.
pub fn drain(stream: &mut TcpStream) {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut left = 64 * 1024usize;
    let mut chunk = [0u8; 4096];
    while left > 0 {
        let t = deadline.saturating_duration_since(Instant::now());
        if t.is_zero() || stream.set_read_timeout(Some(t)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn exchange(raw: &[u8], limits: HttpLimits) -> Result<Request, HttpError> {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let raw = raw.to_vec();
        let t = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            let _ = c.write_all(&raw);
            std::thread::sleep(Duration::from_millis(400));
        });
        let (mut s, _) = l.accept().unwrap();
        let r = read_request(&mut s, &limits);
        t.join().unwrap();
        r
    }

    #[test]
    fn requests_parse_and_bad_ones_are_refused() {
        let r = exchange(
            b"POST /api/x%20y?token=ab&v=1+2 HTTP/1.1\r\nHost: h\r\nCookie: a=1; hitless_token=zz\r\nContent-Length: 3\r\n\r\nabc",
            HttpLimits::default(),
        )
        .unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/api/x y"));
        assert_eq!(r.query("token"), Some("ab"));
        assert_eq!(r.query("v"), Some("1 2"));
        assert_eq!(r.cookie("hitless_token"), Some("zz"));
        assert_eq!(r.body, b"abc");
        let small = HttpLimits {
            head_bytes: 64,
            body_bytes: 2,
            read: Duration::from_millis(200),
            ..HttpLimits::default()
        };
        let big = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100));
        assert!(matches!(
            exchange(big.as_bytes(), small),
            Err(HttpError::HeadTooLarge(_))
        ));
        assert!(matches!(
            exchange(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", small),
            Err(HttpError::BodyTooLarge(_))
        ));
        assert!(matches!(
            exchange(b"GET / HTTP/1.1\r\nHost: x", small),
            Err(HttpError::Slow(_))
        ));
        assert!(matches!(
            exchange(b"GET /%zz HTTP/1.1\r\n\r\n", small),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            exchange(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                small
            ),
            Err(HttpError::Unsupported(_))
        ));
        assert!(matches!(
            exchange(b"GET http://x/ HTTP/1.1\r\n\r\n", small),
            Err(HttpError::Malformed(_))
        ));
    }
}
