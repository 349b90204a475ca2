//! A streaming, resumable HTTP download of a package (`hitless image
//! install URL`, issue 18 item 3), written on std's `TcpStream`: plain
//! `http://` (a package is verified by its signature, not by its
//! transport), one `GET`, `Range` to resume. A client crate (`ureq`)
//! would bring TLS and a dozen crates for what is ~300 lines here, and
//! would still leave the resume logic to us.
//!
//! * The body is written to the target as it arrives (64 KiB reads): a
//!   package is never held whole in memory by the download.
//! * Resume: the bytes already in the target are kept and `Range:
//!   bytes=N-` asks for the rest, with `If-Range: <ETag>` when the ETag
//!   of the earlier bytes is known. A 206 must continue exactly at `N`
//!   (`Content-Range: bytes N-(total-1)/total`), with the same total and
//!   ETag as before; otherwise, or when the server answers 200 (it
//!   ignored the range, or the file changed), the target is truncated and
//!   the download restarts from zero. A 416 whose total equals the bytes
//!   held means the download was already complete.
//! * Interruptions (connection refused or reset, a read timeout, a body
//!   shorter than its `Content-Length`, a 5xx) are retried up to
//!   [`FetchOptions::attempts`], each retry resuming from the bytes held.
//! * Timeouts: [`FetchOptions::connect_timeout`] on connect, and
//!   [`FetchOptions::read_timeout`] on every read and write.
//! * [`fetch_to_file`] keeps the ETag in a side file (`<file>.etag`) so an
//!   interrupted download resumes correctly in a later process too.
//!
//! * [`fetch_components_for`] is a module's boot from the card: the
//!   manifest, then each component the module needs, checked against its
//!   SHA-256.
//!
//! Not supported (typed errors): `https`, redirects, chunked transfer
//! coding, compressed bodies (the request asks for `identity`).

use crate::manifest::{Component, Manifest, Sha};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not an `http://host[:port]/path` URL.
    #[error("bad URL {url}: {why}")]
    BadUrl { url: String, why: &'static str },
    /// The host name does not resolve.
    #[error("cannot resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    /// No address of the host accepted a connection in time.
    #[error("cannot connect to {host}")]
    Connect {
        host: String,
        #[source]
        source: std::io::Error,
    },
    /// The connection failed or timed out while talking to the server.
    #[error("connection to the server")]
    Network(#[source] std::io::Error),
    /// The body ended before its announced length.
    #[error("download interrupted at byte {at} of {total}")]
    Interrupted { at: u64, total: u64 },
    /// A status that is not a success, with the body's first line.
    #[error("server answered {status}: {why}")]
    Status { status: u16, why: String },
    /// Not a response we can read (or one we do not support).
    #[error("bad response: {0}")]
    BadResponse(String),
    /// A resumed response that does not continue what we hold, twice in a
    /// row: the server keeps changing the file.
    #[error("the server's file changed during the download: {0}")]
    Inconsistent(String),
    /// Larger than [`FetchOptions::max_size`].
    #[error("download of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    /// Writing the target (disk full, …).
    #[error("writing the download target")]
    Target(#[source] std::io::Error),
    /// A fetched component does not match the manifest's size and SHA-256.
    #[error("component {component} does not match the manifest's SHA-256")]
    Checksum { component: String },
    /// Every attempt was interrupted; the last error.
    #[error("gave up after {attempts} attempts")]
    GaveUp {
        attempts: u32,
        #[source]
        last: Box<FetchError>,
    },
}

impl FetchError {
    /// Worth another attempt (resuming from the bytes held).
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Connect { .. }
            | FetchError::Network(_)
            | FetchError::Interrupted { .. }
            | FetchError::Inconsistent(_) => true,
            FetchError::Status { status, .. } => matches!(status, 500..=599 | 408 | 429),
            _ => false,
        }
    }
}

/// Download settings.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    pub connect_timeout: Duration,
    /// Bound on every single read or write of the connection.
    pub read_timeout: Duration,
    /// Attempts in all (the first and the resumptions).
    pub attempts: u32,
    /// Pause before a resumption.
    pub retry_delay: Duration,
    /// Largest download accepted.
    pub max_size: u64,
    /// Largest response head.
    pub max_head: usize,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            attempts: 5,
            retry_delay: Duration::from_millis(500),
            max_size: 1 << 30,
            max_head: 16 * 1024,
        }
    }
}

/// What a download did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// The file's length (all of it is in the target now).
    pub total: u64,
    /// The server's ETag, if it sent one.
    pub etag: Option<String>,
    /// Body bytes received over the network by this call.
    pub received: u64,
    /// The offset each resumed request started at (one per `Range`
    /// request that got its 206, or its 416 "already complete").
    pub resumed_from: Vec<u64>,
    /// Times the target was truncated and the download started over.
    pub restarts: u32,
    /// Requests made.
    pub attempts: u32,
}

/// A download target: written in place, and truncated on a restart.
pub trait DownloadTarget: Write + Seek {
    fn truncate_to(&mut self, len: u64) -> std::io::Result<()>;
}

impl DownloadTarget for File {
    fn truncate_to(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
}

impl DownloadTarget for std::io::Cursor<Vec<u8>> {
    fn truncate_to(&mut self, len: u64) -> std::io::Result<()> {
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        self.get_mut().truncate(n);
        Ok(())
    }
}

/// An `http://` URL, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parse `http://host[:port][/path]` (IPv6 hosts in brackets).
    pub fn parse(url: &str) -> Result<Self, FetchError> {
        let bad = |why| FetchError::BadUrl {
            url: url.to_string(),
            why,
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(bad("only http:// is supported"));
        }
        let (auth, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = path.split('#').next().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        if auth.contains('@') {
            return Err(bad("credentials in URLs are not supported"));
        }
        let (host, port) = if let Some(v6) = auth.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match auth.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (auth, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("spaces or control characters in the path"));
        }
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            path,
        })
    }

    fn host_header(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }
}

/// Download `url` into `dest`, resuming after the bytes `dest` already
/// holds (its length), with `If-Range: etag` when `etag` names them.
/// `progress(bytes held, total if known)` is called as bytes arrive.
pub fn fetch<T: DownloadTarget>(
    url: &str,
    dest: &mut T,
    etag: Option<&str>,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<FetchReport, FetchError> {
    fetch_with(url, dest, etag, opts, progress, &mut |_| Ok(()))
}

/// Download `url` into the file at `path`, resuming from what an earlier,
/// interrupted call left there (the ETag kept in `<path>.etag`). On
/// success the side file is removed and the file holds the whole body.
pub fn fetch_to_file(
    url: &str,
    path: &Path,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<FetchReport, FetchError> {
    let side = etag_file(path);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(FetchError::Target)?;
    let held = f.metadata().map_err(FetchError::Target)?.len();
    let etag = if held > 0 {
        std::fs::read_to_string(&side).ok()
    } else {
        None
    };
    let mut keep_etag = |e: Option<&str>| match e {
        Some(e) => std::fs::write(&side, e),
        None => match std::fs::remove_file(&side) {
            Err(x) if x.kind() != std::io::ErrorKind::NotFound => Err(x),
            _ => Ok(()),
        },
    };
    let r = fetch_with(url, &mut f, etag.as_deref(), opts, progress, &mut keep_etag)?;
    f.sync_all().map_err(FetchError::Target)?;
    keep_etag(None).map_err(FetchError::Target)?;
    Ok(r)
}

/// What a module fetched from the card: each component it needs, in a
/// file, checked against the manifest's SHA-256.
#[derive(Clone, Debug)]
pub struct ModuleFetch {
    pub manifest: Manifest,
    /// The components for the module and where each now is.
    pub files: Vec<(Component, PathBuf)>,
    /// Body bytes received over the network (resumed files count less).
    pub received: u64,
}

/// A module's boot from the card (seed 002 claims 2, 33): fetch the
/// running image's manifest from `base` (`http://card:port`), then each
/// component listed for `module` into `dir/<name>` (resuming a partial
/// file left by an interrupted boot), and check each against the
/// manifest's size and SHA-256. A file that does not match is removed.
pub fn fetch_components_for(
    base: &str,
    module: &str,
    dir: &Path,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(&str, u64, Option<u64>),
) -> Result<ModuleFetch, FetchError> {
    let base = base.trim_end_matches('/');
    let mut m = std::io::Cursor::new(Vec::new());
    let mut quiet = |_: u64, _: Option<u64>| {};
    fetch(&format!("{base}/manifest"), &mut m, None, opts, &mut quiet)?;
    let manifest =
        Manifest::from_bytes(m.get_ref()).map_err(|e| FetchError::BadResponse(e.to_string()))?;
    let mut out = ModuleFetch {
        manifest: manifest.clone(),
        files: Vec::new(),
        received: 0,
    };
    for c in manifest.components_for(module) {
        let path = dir.join(local_name(&c.name)?);
        let url = format!("{base}/components/{}", percent_encode(&c.name));
        let r = fetch_to_file(&url, &path, opts, &mut |h, t| progress(&c.name, h, t))?;
        out.received += r.received;
        let data = std::fs::read(&path).map_err(FetchError::Target)?;
        if data.len() as u64 != c.size || Sha::of(&data) != c.sha256 {
            let _ = std::fs::remove_file(&path);
            return Err(FetchError::Checksum {
                component: c.name.clone(),
            });
        }
        tracing::info!(module, component = %c.name, bytes = c.size, "component fetched");
        out.files.push((c.clone(), path));
    }
    Ok(out)
}

/// A component name as a file name: one plain path component, never
/// `..` or a path (names come from the network).
fn local_name(name: &str) -> Result<&str, FetchError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'));
    if ok {
        Ok(name)
    } else {
        Err(FetchError::BadResponse(format!(
            "component name {name:?} is not a safe file name"
        )))
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn etag_file(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".etag");
    PathBuf::from(s)
}

/// Where one attempt stands.
struct State {
    held: u64,
    total: Option<u64>,
    etag: Option<String>,
}

fn fetch_with<T: DownloadTarget>(
    url: &str,
    dest: &mut T,
    etag: Option<&str>,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(u64, Option<u64>),
    on_etag: &mut dyn FnMut(Option<&str>) -> std::io::Result<()>,
) -> Result<FetchReport, FetchError> {
    let url = HttpUrl::parse(url)?;
    let held = dest.seek(SeekFrom::End(0)).map_err(FetchError::Target)?;
    let mut st = State {
        held,
        total: None,
        etag: etag.map(str::to_string),
    };
    let mut report = FetchReport::default();
    let mut inconsistent = 0;
    loop {
        report.attempts += 1;
        let err = match attempt(&url, dest, &mut st, opts, progress, on_etag, &mut report) {
            Ok(()) => {
                report.total = st.held;
                report.etag = st.etag;
                tracing::info!(
                    host = %url.host, path = %url.path, total = report.total,
                    received = report.received, attempts = report.attempts,
                    restarts = report.restarts, "download complete"
                );
                return Ok(report);
            }
            Err(e) => e,
        };
        if let FetchError::Inconsistent(why) = &err {
            // Start over once; a second time means the file keeps changing.
            inconsistent += 1;
            tracing::warn!(why = %why, "resumed response does not match: starting over");
            if inconsistent > 1 {
                return Err(err);
            }
            restart(dest, &mut st, &mut report, on_etag)?;
        }
        if !err.is_transient() {
            return Err(err);
        }
        if report.attempts >= opts.attempts {
            return Err(FetchError::GaveUp {
                attempts: report.attempts,
                last: Box::new(err),
            });
        }
        tracing::warn!(
            error = %err, held = st.held, attempt = report.attempts,
            "download interrupted: resuming"
        );
        std::thread::sleep(opts.retry_delay);
    }
}

fn restart<T: DownloadTarget>(
    dest: &mut T,
    st: &mut State,
    report: &mut FetchReport,
    on_etag: &mut dyn FnMut(Option<&str>) -> std::io::Result<()>,
) -> Result<(), FetchError> {
    dest.truncate_to(0).map_err(FetchError::Target)?;
    dest.seek(SeekFrom::Start(0)).map_err(FetchError::Target)?;
    st.held = 0;
    st.total = None;
    st.etag = None;
    on_etag(None).map_err(FetchError::Target)?;
    report.restarts += 1;
    Ok(())
}

fn connect(url: &HttpUrl, opts: &FetchOptions) -> Result<TcpStream, FetchError> {
    let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|source| FetchError::Resolve {
            host: url.host.clone(),
            source,
        })?
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, opts.connect_timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(FetchError::Connect {
        host: url.host_header(),
        source: last,
    })
}

/// A response head.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_response(r: &mut impl BufRead, max: usize) -> Result<Response, FetchError> {
    let mut head = Vec::new();
    let mut limited = r.take(max as u64 + 1);
    loop {
        let n = limited
            .read_until(b'\n', &mut head)
            .map_err(FetchError::Network)?;
        if n == 0 {
            return Err(if head.is_empty() {
                FetchError::Network(std::io::ErrorKind::UnexpectedEof.into())
            } else {
                FetchError::BadResponse("head cut short".into())
            });
        }
        if head.len() > max {
            return Err(FetchError::BadResponse("response head too large".into()));
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.lines();
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(FetchError::BadResponse(format!(
            "status line {status_line:?}"
        )));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(FetchError::BadResponse(format!(
            "status line {status_line:?}"
        )));
    }
    let status = code
        .parse()
        .map_err(|_| FetchError::BadResponse(format!("status line {status_line:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Response { status, headers })
}

/// `bytes a-b/total` → (a, b, total); `bytes */total` → (None, total).
fn content_range(v: &str) -> Option<(Option<(u64, u64)>, u64)> {
    let v = v.trim().strip_prefix("bytes ")?;
    let (range, total) = v.split_once('/')?;
    let total = total.trim().parse().ok()?;
    if range.trim() == "*" {
        return Some((None, total));
    }
    let (a, b) = range.split_once('-')?;
    Some((
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
        total,
    ))
}

fn attempt<T: DownloadTarget>(
    url: &HttpUrl,
    dest: &mut T,
    st: &mut State,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(u64, Option<u64>),
    on_etag: &mut dyn FnMut(Option<&str>) -> std::io::Result<()>,
    report: &mut FetchReport,
) -> Result<(), FetchError> {
    let stream = connect(url, opts)?;
    stream
        .set_read_timeout(Some(opts.read_timeout))
        .map_err(FetchError::Network)?;
    stream
        .set_write_timeout(Some(opts.read_timeout))
        .map_err(FetchError::Network)?;
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hitless-image/{}\r\nAccept-Encoding: identity\r\nConnection: close\r\n",
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    let ranged = st.held > 0;
    if ranged {
        req.push_str(&format!("Range: bytes={}-\r\n", st.held));
        if let Some(e) = &st.etag {
            req.push_str(&format!("If-Range: {e}\r\n"));
        }
    }
    req.push_str("\r\n");
    (&stream)
        .write_all(req.as_bytes())
        .map_err(FetchError::Network)?;
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    let resp = read_response(&mut r, opts.max_head)?;
    if resp.header("transfer-encoding").is_some() {
        return Err(FetchError::BadResponse(
            "transfer codings (chunked) are not supported".into(),
        ));
    }
    if resp
        .header("content-encoding")
        .is_some_and(|v| !v.eq_ignore_ascii_case("identity"))
    {
        return Err(FetchError::BadResponse(
            "compressed bodies are not supported".into(),
        ));
    }
    let length: Option<u64> = match resp.header("content-length") {
        Some(v) => Some(
            v.trim()
                .parse()
                .map_err(|_| FetchError::BadResponse(format!("Content-Length {v:?}")))?,
        ),
        None => None,
    };
    let new_etag = resp.header("etag").map(str::to_string);
    match resp.status {
        200 => {
            if st.held > 0 {
                tracing::info!(held = st.held, "server sent the whole file: starting over");
                restart(dest, st, report, on_etag)?;
            }
            st.total = length;
            st.etag = new_etag;
            on_etag(st.etag.as_deref()).map_err(FetchError::Target)?;
        }
        206 if ranged => {
            let cr = resp
                .header("content-range")
                .and_then(content_range)
                .ok_or_else(|| {
                    FetchError::BadResponse("206 without a valid Content-Range".into())
                })?;
            let (Some((a, b)), total) = cr else {
                return Err(FetchError::BadResponse(
                    "206 with Content-Range */len".into(),
                ));
            };
            if a != st.held || b.checked_add(1) != Some(total) {
                return Err(FetchError::Inconsistent(format!(
                    "asked for bytes {}-, got {a}-{b}/{total}",
                    st.held
                )));
            }
            if st.total.is_some_and(|t| t != total) {
                return Err(FetchError::Inconsistent(format!(
                    "total changed from {:?} to {total}",
                    st.total
                )));
            }
            if let (Some(old), Some(new)) = (&st.etag, &new_etag) {
                if old != new {
                    return Err(FetchError::Inconsistent(format!("ETag {old} became {new}")));
                }
            }
            if length.is_some_and(|l| l != total - a) {
                return Err(FetchError::BadResponse(
                    "Content-Length does not match Content-Range".into(),
                ));
            }
            report.resumed_from.push(st.held);
            tracing::info!(from = st.held, total, "download resumed");
            st.total = Some(total);
            if st.etag.is_none() {
                st.etag = new_etag;
                on_etag(st.etag.as_deref()).map_err(FetchError::Target)?;
            }
        }
        416 if ranged => {
            let total = resp
                .header("content-range")
                .and_then(content_range)
                .map(|(_, t)| t);
            if total == Some(st.held) {
                report.resumed_from.push(st.held);
                progress(st.held, total);
                return Ok(());
            }
            return Err(FetchError::Inconsistent(format!(
                "416 for bytes {}- (server total {total:?})",
                st.held
            )));
        }
        s => {
            let mut first = String::new();
            let _ = r.take(512).read_line(&mut first);
            return Err(FetchError::Status {
                status: s,
                why: first.trim().to_string(),
            });
        }
    }
    if let Some(t) = st.total {
        if t > opts.max_size {
            return Err(FetchError::TooLarge {
                size: t,
                limit: opts.max_size,
            });
        }
    }
    dest.seek(SeekFrom::Start(st.held))
        .map_err(FetchError::Target)?;
    progress(st.held, st.total);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let want = match st.total {
            Some(t) => (t - st.held).min(buf.len() as u64) as usize,
            None => buf.len(),
        };
        if want == 0 {
            break;
        }
        let n = match r.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                dest.flush().map_err(FetchError::Target)?;
                return Err(FetchError::Network(e));
            }
        };
        if n == 0 {
            dest.flush().map_err(FetchError::Target)?;
            return match st.total {
                Some(total) => Err(FetchError::Interrupted { at: st.held, total }),
                None => {
                    // No length: the end of the connection ends the body.
                    st.total = Some(st.held);
                    Ok(())
                }
            };
        }
        dest.write_all(&buf[..n]).map_err(FetchError::Target)?;
        st.held += n as u64;
        report.received += n as u64;
        if st.held > opts.max_size {
            return Err(FetchError::TooLarge {
                size: st.held,
                limit: opts.max_size,
            });
        }
        progress(st.held, st.total);
    }
    dest.flush().map_err(FetchError::Target)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/pkg/v2.hpkg?x=1#frag").unwrap();
        assert_eq!(
            u,
            HttpUrl {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/pkg/v2.hpkg?x=1".into()
            }
        );
        assert_eq!(u.host_header(), "127.0.0.1:8080");
        let u = HttpUrl::parse("HTTP://[::1]/a").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 80));
        assert_eq!(u.host_header(), "[::1]");
        assert_eq!(HttpUrl::parse("http://card").unwrap().path, "/");
        for bad in [
            "https://x/a",
            "x/a",
            "http:///a",
            "http://x:99999/",
            "http://u@x/",
            "http://[::1/",
            "http://x/a b",
        ] {
            assert!(
                matches!(HttpUrl::parse(bad), Err(FetchError::BadUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn names() {
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
        assert!(local_name("gateware.bit").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", "a b", "/etc"] {
            assert!(local_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range("bytes 5-9/10"), Some((Some((5, 9)), 10)));
        assert_eq!(content_range("bytes */10"), Some((None, 10)));
        assert_eq!(content_range("bytes 5-/10"), None);
        assert_eq!(content_range("items 1-2/3"), None);
    }
}
