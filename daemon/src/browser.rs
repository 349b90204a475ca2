//! The store browser (`hitlessd --http ADDR`): one HTML page and a JSON
//! API over [`crate::http`] showing the card's status, the applications
//! the daemon knows with their sets, their append logs, the peer and image
//! state, and the operator's actions on them (remove a set, suspend and
//! resume an application, restart from a version). See `docs/daemon.md`,
//! "Store browser".
//!
//! Protection: loopback only unless `--http-allow-remote`; a random token
//! (`STATE_DIR/http-token`, mode 0600) in every request (query, header, or
//! the cookie the page sets from it), else 401; the `Host` header must
//! name the loopback address the daemon listens on (DNS rebinding), a
//! present `Origin` must be the page's own, and state changes are POSTs
//! carrying the token in a header or the query (a cookie alone does not
//! do: cross-site request forgery).

use crate::card::Op;
use crate::heaps::Holder;
use crate::http::{self, HttpLimits, Response};
use crate::server::Shared;
use hitless_driver::credentials::Credentials;
use hitless_proto::message::{Failure, Request};
use hitless_proto::msg::{flags, heap_of_object, Code, HeapVersion, TierSel};
use hitless_proto::Response as CardResponse;
use serde_json::{json, Value};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The page, embedded (no build step: plain HTML and JS).
const PAGE: &str = include_str!("browser.html");
/// The cookie the page's first load sets from the `token` query.
const COOKIE: &str = "hitless_token";
/// Concurrent HTTP connections at most (more get 503).
const MAX_CONNECTIONS: usize = 16;
/// A card call of the browser waits this long at most.
const CARD_WAIT: Duration = Duration::from_secs(10);
/// Log records shown by default, and at most.
const LOG_DEFAULT: usize = 50;
const LOG_MAX: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("--http {addr}: {why}")]
    Address { addr: String, why: String },
    #[error("--http {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("writing the access token {path}: {source}")]
    Token {
        path: String,
        source: std::io::Error,
    },
}

/// Bind `addr`; a non-loopback address only with `allow_remote`.
pub fn bind(addr: &str, allow_remote: bool) -> Result<TcpListener, BrowserError> {
    let bad = |why: String| BrowserError::Address {
        addr: addr.into(),
        why,
    };
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| bad(format!("not an address: {e}")))?
        .collect();
    let Some(first) = addrs.first() else {
        return Err(bad("resolves to no address".into()));
    };
    if !allow_remote {
        if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(bad(format!(
                "{} is not a loopback address: the store browser can remove sets and \
                 suspend applications, so it listens on loopback only unless \
                 --http-allow-remote is given (then put TLS and access control in front)",
                a.ip()
            )));
        }
    }
    TcpListener::bind(first).map_err(|source| BrowserError::Bind {
        addr: addr.into(),
        source,
    })
}

/// A new random token, written to `STATE_DIR/http-token` (mode 0600,
/// replacing the last run's).
pub fn new_token(state_dir: &Path) -> Result<String, BrowserError> {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    let token: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let path = state_dir.join("http-token");
    let err = |source| BrowserError::Token {
        path: path.display().to_string(),
        source,
    };
    // A file of an older run may have another mode: start afresh.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(err)?;
    f.write_all(format!("{token}\n").as_bytes()).map_err(err)?;
    Ok(token)
}

/// What the browser serves from.
pub struct Browser {
    shared: Arc<Shared>,
    /// The daemon's secrets: which applications it has registered.
    credentials: Credentials,
    token: String,
    allow_remote: bool,
    local: SocketAddr,
    limits: HttpLimits,
    active: AtomicUsize,
}

impl Browser {
    pub fn new(
        shared: Arc<Shared>,
        credentials: Credentials,
        token: String,
        allow_remote: bool,
        local: SocketAddr,
    ) -> Arc<Self> {
        Arc::new(Self {
            shared,
            credentials,
            token,
            allow_remote,
            local,
            limits: HttpLimits::default(),
            active: AtomicUsize::new(0),
        })
    }
}

/// Serve the browser on `listener` (a thread per connection, at most
/// [`MAX_CONNECTIONS`]) until the process ends.
pub fn serve(listener: TcpListener, browser: Arc<Browser>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let mut stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("http accept: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let b = browser.clone();
                if b.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    b.active.fetch_sub(1, Ordering::SeqCst);
                    let r = Response::text(503, "too many connections");
                    let _ = http::write_response(&mut stream, &r, &b.limits);
                    continue;
                }
                let spawned =
                    std::thread::Builder::new()
                        .name("http-conn".into())
                        .spawn(move || {
                            b.connection(stream);
                            b.active.fetch_sub(1, Ordering::SeqCst);
                        });
                if let Err(e) = spawned {
                    tracing::warn!("no thread for an http connection: {e}");
                    browser.active.fetch_sub(1, Ordering::SeqCst);
                }
            }
        })
        .map(|_| ())
}

/// Refusal or failure of an API request: status and message.
struct ApiError(u16, String);

type ApiResult = Result<Response, ApiError>;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(400, msg.into())
}

fn json_response(status: u16, v: &Value) -> Response {
    let mut body = v.to_string();
    body.push('\n');
    Response::new(status, "application/json", body)
}

/// A driver error (the shared heap steps') as an HTTP status.
impl From<hitless_driver::Error> for ApiError {
    fn from(e: hitless_driver::Error) -> Self {
        match e {
            hitless_driver::Error::Firmware { code, detail, .. } => {
                ApiError(card_status(code), detail)
            }
            e => ApiError(502, e.chain()),
        }
    }
}

/// A card refusal as an HTTP status.
fn card_error(f: &Failure) -> ApiError {
    let status = card_status(f.code);
    ApiError(status, format!("card: {:?}: {}", f.code, f.detail))
}

fn card_status(code: Code) -> u16 {
    match code {
        Code::NotFound => 404,
        Code::Permission | Code::AuthFailed => 403,
        Code::Invalid | Code::BadMessage => 400,
        Code::NoSession => 503,
        Code::NotMaster => 409,
        _ => 502,
    }
}

/// An application or set id: decimal digits of a u32, nothing else.
fn parse_id(what: &str, s: &str) -> Result<u32, ApiError> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!("{what} {s:?} is not a decimal id")));
    }
    s.parse::<u32>()
        .map_err(|_| bad(format!("{what} {s} is out of range (0..=4294967295)")))
}

/// Constant-time comparison (the token).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn tier_name(t: TierSel) -> &'static str {
    match t {
        TierSel::Warm => "warm",
        TierSel::Cold => "cold",
    }
}

fn boot_name(b: u32) -> &'static str {
    match b {
        0 => "empty",
        1 => "ok",
        2 => "fell back",
        3 => "lost",
        _ => "unknown",
    }
}

impl Browser {
    fn connection(&self, mut stream: TcpStream) {
        let peer = stream.peer_addr().ok();
        let r = match http::read_request(&mut stream, &self.limits) {
            Ok(req) => {
                let r = self.answer(&req);
                tracing::debug!(?peer, method = %req.method, path = %req.path, status = r.status, "http");
                r
            }
            Err(e) => match e.status() {
                Some(s) => {
                    tracing::debug!(?peer, "http: {e}");
                    let r = Response::text(s, e.to_string());
                    if let Err(e) = http::write_response(&mut stream, &r, &self.limits) {
                        tracing::debug!(?peer, "http answer not delivered: {e}");
                    }
                    // What the client still sends is read and dropped
                    // (bounded), so that closing does not reset the
                    // connection before it reads the refusal.
                    http::drain(&mut stream);
                    return;
                }
                None => return,
            },
        };
        if let Err(e) = http::write_response(&mut stream, &r, &self.limits) {
            tracing::debug!(?peer, "http answer not delivered: {e}");
        }
    }

    /// The `Host` header must name where the daemon listens (loopback),
    /// so a page of another site whose name was rebound to 127.0.0.1
    /// gets nothing. With `--http-allow-remote` any host name goes (the
    /// token still guards).
    fn host_ok(&self, host: Option<&str>) -> bool {
        let Some(host) = host else { return false };
        if self.allow_remote {
            return true;
        }
        let port = self.local.port();
        let names = [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            match self.local.ip() {
                IpAddr::V4(ip) => format!("{ip}:{port}"),
                IpAddr::V6(ip) => format!("[{ip}]:{port}"),
            },
        ];
        names.iter().any(|n| n.eq_ignore_ascii_case(host))
    }

    fn answer(&self, req: &http::Request) -> Response {
        let host = req.header("host");
        if !self.host_ok(host) {
            return Response::text(
                421,
                "the Host header must name the address hitlessd listens on \
                 (protection against DNS rebinding)",
            );
        }
        if let Some(origin) = req.header("origin") {
            let own = host.map(|h| format!("http://{h}"));
            if own.as_deref() != Some(origin) {
                return Response::text(403, "cross-origin requests are refused");
            }
        }
        if req.header("sec-fetch-site") == Some("cross-site") {
            return Response::text(403, "cross-site requests are refused");
        }
        let query_token = req.query("token");
        let header_token = req.header("x-hitless-token");
        let cookie_token = req.cookie(COOKIE);
        // The query wins (a fresh URL after a restart of the daemon
        // replaces an old cookie), then the header, then the cookie.
        match query_token.or(header_token).or(cookie_token) {
            None => {
                return Response::text(
                    401,
                    "access token required: open the URL hitlessd logged at start \
                     (the token is in STATE_DIR/http-token)",
                )
            }
            Some(t) if !same(t, &self.token) => return Response::text(401, "wrong access token"),
            Some(_) => {}
        }
        let post = req.method == "POST";
        if post && query_token.is_none() && header_token.is_none() {
            return Response::text(
                403,
                "a POST must carry the token in X-Hitless-Token or the query, not only the cookie",
            );
        }
        let r = if post {
            self.action(req)
        } else if req.method == "GET" {
            self.view(req)
        } else {
            Err(ApiError(405, format!("{} is not allowed", req.method)))
        };
        let mut r = r.unwrap_or_else(|ApiError(status, msg)| {
            json_response(status, &json!({ "error": msg }))
        });
        if query_token.is_some() && cookie_token.is_none_or(|c| !same(c, &self.token)) {
            r.headers.push(format!(
                "Set-Cookie: {COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                self.token
            ));
        }
        r
    }

    fn segments<'a>(&self, req: &'a http::Request) -> Vec<&'a str> {
        req.path.split('/').filter(|s| !s.is_empty()).collect()
    }

    fn view(&self, req: &http::Request) -> ApiResult {
        let seg = self.segments(req);
        let v = match seg.as_slice() {
            [] | ["index.html"] => {
                let page = PAGE.replace("__HITLESS_TOKEN__", &self.token);
                return Ok(Response::new(200, "text/html; charset=utf-8", page));
            }
            ["api", "status"] => self.status()?,
            ["api", "apps"] => self.apps()?,
            ["api", "apps", app] => {
                let app = self.known(app)?;
                self.app_json(app)?
            }
            ["api", "apps", app, "sets"] => {
                let app = self.known(app)?;
                self.sets(app)?
            }
            ["api", "apps", app, "heaps"] => {
                let app = self.known(app)?;
                self.heaps_json(app)?
            }
            ["api", "log"] => self.log(req)?,
            ["api", "peer"] => self.peer()?,
            ["api", "image"] => self.image()?,
            _ if seg.first() == Some(&"api") => {
                return Err(ApiError(404, format!("no such view {}", req.path)))
            }
            _ => return Err(ApiError(404, format!("no page {}", req.path))),
        };
        Ok(json_response(200, &v))
    }

    fn action(&self, req: &http::Request) -> ApiResult {
        let seg = self.segments(req);
        let v = match seg.as_slice() {
            ["api", "apps", app, "sets", set, "remove"] => {
                let app = self.known(app)?;
                let object = parse_id("set", set)?;
                self.call(Op::Run {
                    app,
                    req: Request::Delete {
                        object,
                        endpoint: 0,
                    },
                    data: vec![],
                })?;
                tracing::info!(app, object, "set removed from the store browser");
                json!({ "removed": { "app": app, "set": object } })
            }
            ["api", "apps", app, "suspend"] => {
                let app = self.known(app)?;
                let changed = self.suspend(app, true)?;
                json!({ "app": app, "suspended": true, "changed": changed })
            }
            ["api", "apps", app, "resume"] => {
                let app = self.known(app)?;
                let changed = self.suspend(app, false)?;
                json!({ "app": app, "suspended": false, "changed": changed })
            }
            ["api", "apps", app, "restart"] => {
                let app = self.known(app)?;
                let (heap, version) = restart_request(&req.body)?;
                self.restart(app, heap, version)?
            }
            _ if seg.first() == Some(&"api") => {
                return Err(ApiError(404, format!("no such action {}", req.path)))
            }
            _ => return Err(ApiError(405, "POST is for /api actions".into())),
        };
        Ok(json_response(200, &v))
    }

    fn suspend(&self, app: u32, on: bool) -> Result<bool, ApiError> {
        let changed = self
            .shared
            .suspended
            .set(app, on)
            .map_err(|e| ApiError(500, format!("keeping the suspension: {e}")))?;
        if changed {
            tracing::info!(
                app,
                "application {} from the store browser",
                if on { "suspended" } else { "resumed" }
            );
        }
        Ok(changed)
    }

    fn call(&self, op: Op) -> Result<(CardResponse, Vec<u8>), ApiError> {
        self.shared
            .card
            .call(op, CARD_WAIT)
            .map_err(|f| card_error(&f))
    }

    /// The applications the daemon knows: registered through it (their
    /// secret is in its state directory) or named in its owners file.
    fn known_apps(&self) -> Result<Vec<u32>, ApiError> {
        let mut apps = self
            .credentials
            .apps()
            .map_err(|e| ApiError(500, format!("the daemon's secrets: {e}")))?;
        if let Ok(p) = self.shared.policy.lock() {
            apps.extend(p.owners().keys());
        }
        apps.sort_unstable();
        apps.dedup();
        Ok(apps)
    }

    /// An application id of the path that the daemon has registered (the
    /// browser never registers one: asking the card about an unknown id
    /// would create it).
    fn known(&self, s: &str) -> Result<u32, ApiError> {
        let app = parse_id("application", s)?;
        let registered = self
            .credentials
            .apps()
            .map_err(|e| ApiError(500, format!("the daemon's secrets: {e}")))?;
        if !registered.contains(&app) {
            return Err(ApiError(
                404,
                format!(
                    "hitlessd has not registered application {app} (applications are \
                     registered when they first open through the daemon)"
                ),
            ));
        }
        Ok(app)
    }

    fn app_json(&self, app: u32) -> Result<Value, ApiError> {
        let owner = self
            .shared
            .policy
            .lock()
            .ok()
            .and_then(|p| p.owners().get(&app).copied());
        let registered = self
            .credentials
            .apps()
            .map(|a| a.contains(&app))
            .unwrap_or(false);
        Ok(json!({
            "app": app,
            "owner_uid": owner,
            "registered": registered,
            "suspended": self.shared.suspended.contains(app),
        }))
    }

    fn apps(&self) -> Result<Value, ApiError> {
        let apps = self
            .known_apps()?
            .into_iter()
            .map(|a| self.app_json(a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(json!({ "apps": apps }))
    }

    fn sets(&self, app: u32) -> Result<Value, ApiError> {
        let (r, _) = self.call(Op::Run {
            app,
            req: Request::List { endpoint: 0 },
            data: vec![],
        })?;
        let CardResponse::Sets { mut sets, .. } = r else {
            return Err(ApiError(502, "the card answered LIST oddly".into()));
        };
        // The heap store's roots are shown as heaps, not sets.
        sets.retain(|s| heap_of_object(s.object).is_none());
        sets.sort_by_key(|s| (s.object, s.tier as u32));
        let sets: Vec<Value> = sets
            .iter()
            .map(|s| {
                json!({
                    "set": s.object,
                    "endpoint": s.endpoint,
                    "stage": s.stage,
                    "tier": tier_name(s.tier),
                    "len": s.len,
                    "crc": format!("{:08x}", s.crc),
                })
            })
            .collect();
        Ok(json!({
            "app": app,
            "suspended": self.shared.suspended.contains(app),
            "sets": sets,
        }))
    }

    fn card_status(&self) -> Result<hitless_proto::StatusReport, ApiError> {
        match self.call(Op::Plain(Request::Status))? {
            (CardResponse::Status(s), _) => Ok(s),
            _ => Err(ApiError(502, "the card answered STATUS oddly".into())),
        }
    }

    fn status(&self) -> Result<Value, ApiError> {
        let s = self.card_status()?;
        let tiers: Vec<Value> = [("warm", &s.warm), ("cold", &s.cold)]
            .iter()
            .map(|(name, t)| {
                json!({
                    "tier": name,
                    "state": t.state_name(),
                    "boot_result": boot_name(t.boot_result),
                    "sets": t.sets,
                    "image_bytes": t.image_bytes,
                    "log_bytes": t.log_head.wrapping_sub(t.log_tail),
                })
            })
            .collect();
        Ok(json!({
            "tiers": tiers,
            "requests": s.requests,
            "auth_failures": s.auth_fails,
            "stores": s.stores,
            "sessions_opened": s.sessions_opened,
            "announced_stage": s.announced,
            "suspended": self.shared.suspended.list(),
        }))
    }

    fn log(&self, req: &http::Request) -> Result<Value, ApiError> {
        let app = self.known(req.query("app").ok_or_else(|| bad("app=ID is required"))?)?;
        let cold = match req.query("tier").unwrap_or("warm") {
            "warm" => false,
            "cold" => true,
            other => return Err(bad(format!("tier {other:?}: warm or cold"))),
        };
        let limit = match req.query("limit") {
            None => LOG_DEFAULT,
            Some(l) => {
                let n = parse_id("limit", l)? as usize;
                if n == 0 || n > LOG_MAX {
                    return Err(bad(format!("limit {n}: 1..={LOG_MAX}")));
                }
                n
            }
        };
        let (r, data) = self.call(Op::Run {
            app,
            req: Request::LogRead {
                flags: if cold { flags::COLD } else { 0 },
                addr: 0,
                cap: u32::MAX,
            },
            data: vec![],
        })?;
        let CardResponse::Log {
            records,
            head,
            tail,
        } = r
        else {
            return Err(ApiError(502, "the card answered LOG_READ oddly".into()));
        };
        let total = records.len();
        let shown: Vec<Value> = records
            .iter()
            .skip(total.saturating_sub(limit))
            .map(|r| {
                let start = (r.data_offset as usize).min(data.len());
                let end = start.saturating_add(r.len as usize).min(data.len());
                let bytes = &data[start..end];
                let preview = &bytes[..bytes.len().min(32)];
                json!({
                    "set": r.object,
                    "offset": r.offset,
                    "seq": r.seq,
                    "len": r.len,
                    "hex": preview.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                    "text": preview
                        .iter()
                        .map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' })
                        .collect::<String>(),
                })
            })
            .collect();
        Ok(json!({
            "app": app,
            "tier": if cold { "cold" } else { "warm" },
            "head": head,
            "tail": tail,
            "records_total": total,
            "records": shown,
        }))
    }

    fn peer(&self) -> Result<Value, ApiError> {
        let s = self.card_status()?;
        Ok(match s.peer {
            None => json!({
                "configured": false,
                "detail": "not configured: the card is not replicated",
            }),
            Some(p) => json!({
                "configured": true,
                "node": p.node,
                "role": p.role_name(),
                "epoch": p.epoch,
                "master": p.master,
                "in_sync": p.in_sync,
                "lag_brackets": p.lag_brackets,
                "lag_bytes": s.peer_notes.lag_bytes,
                "mark_epoch": p.mark_epoch,
                "mark_bracket": p.mark_bracket,
                "takeover_cause": s.peer_notes.cause,
            }),
        })
    }

    fn image(&self) -> Result<Value, ApiError> {
        match self
            .shared
            .card
            .call(Op::Plain(Request::ImageStatus), CARD_WAIT)
        {
            Ok((CardResponse::Image(r), _)) => {
                let state = match r.state {
                    hitless_proto::image::ImageReport::RUNNING => "running",
                    hitless_proto::image::ImageReport::NEEDS_FRESH => "needs a fresh install",
                    hitless_proto::image::ImageReport::NOT_BOOTED => "not booted",
                    _ => "unknown",
                };
                let areas: Vec<Value> = r
                    .areas
                    .iter()
                    .enumerate()
                    .flat_map(|(d, dev)| {
                        dev.iter().enumerate().map(move |(a, ar)| {
                            json!({
                                "device": d,
                                "area": a,
                                "state": ar.state_name(),
                                "version": ar.version,
                            })
                        })
                    })
                    .collect();
                Ok(json!({
                    "configured": true,
                    "state": state,
                    "version": r.version,
                    "area": r.area,
                    "trial": r.trial,
                    "boot_count": r.boot_count,
                    "boot_limit": r.boot_limit,
                    "areas": areas,
                    "notes": r.notes,
                }))
            }
            Ok(_) => Err(ApiError(502, "the card answered IMAGE_STATUS oddly".into())),
            Err(f) if matches!(f.code, Code::UnknownRequest | Code::Invalid) => Ok(json!({
                "configured": false,
                "detail": format!("not configured: {}", f.detail),
            })),
            Err(f) => Err(card_error(&f)),
        }
    }
}

/// The heap and version a restart asks for: `{"heap": H, "version": N}`
/// (the heap may be left out when the application has one).
fn restart_request(body: &[u8]) -> Result<(Option<u32>, u64), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(
            "name the version: {\"version\": N} (and {\"heap\": H})",
        ));
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let version = match v.get("version") {
        None | Some(Value::Null) => return Err(bad("name the version: {\"version\": N}")),
        Some(n) => n
            .as_u64()
            .ok_or_else(|| bad("version must be a non-negative integer"))?,
    };
    let heap = match v.get("heap") {
        None | Some(Value::Null) => None,
        Some(n) => Some(
            n.as_u64()
                .and_then(|h| u32::try_from(h).ok())
                .ok_or_else(|| bad("heap must be a heap id (0..=255)"))?,
        ),
    };
    Ok((heap, version))
}

impl Browser {
    /// The heap ids of `app` (from its heap roots in the card's LIST).
    fn heap_ids(&self, app: u32) -> Result<Vec<u32>, ApiError> {
        let (r, _) = self.call(Op::Run {
            app,
            req: Request::List { endpoint: 0 },
            data: vec![],
        })?;
        let CardResponse::Sets { sets, .. } = r else {
            return Err(ApiError(502, "the card answered LIST oddly".into()));
        };
        let mut ids: Vec<u32> = sets
            .iter()
            .filter_map(|s| heap_of_object(s.object))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    fn run(&self, app: u32, req: Request, data: Vec<u8>) -> Result<CardResponse, ApiError> {
        Ok(self.call(Op::Run { app, req, data })?.0)
    }

    /// Run `f` with heap (app, heap) open for the operator, then close it:
    /// the heap must not be held by an application's connection (its
    /// transaction would be disturbed); another operator action is waited
    /// for.
    fn with_heap<T>(
        &self,
        app: u32,
        heap: u32,
        f: impl FnOnce(&Self, Vec<HeapVersion>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let key = (app, heap);
        let took = match self.shared.heaps.holder(key) {
            Some(Holder::Connection { .. }) => false,
            _ => self
                .shared
                .heaps
                .claim(key, Holder::Operator, CARD_WAIT)
                .map_err(|e| ApiError(409, e.to_string()))?,
        };
        if !took {
            return Err(ApiError(
                409,
                format!(
                    "heap {heap} of application {app} is open by a running process of the                      application: stop it (or let it close the heap) first"
                ),
            ));
        }
        let open = Request::HeapOpen {
            heap,
            heap_pages: 0,
            keep: 0,
            flags: 0,
        };
        let r = self.run(app, open, vec![]).and_then(|r| match r {
            CardResponse::HeapVersions { versions } => f(self, versions),
            _ => Err(ApiError(502, "the card answered HEAP_OPEN oddly".into())),
        });
        if let Err(e) = self.run(app, Request::HeapClose { heap }, vec![]) {
            tracing::warn!(
                app,
                heap,
                "closing the heap after the browser's look: {}",
                e.1
            );
        }
        self.shared.heaps.release(key, Holder::Operator);
        r
    }

    /// One heap's versions: through the connection that holds it open, or
    /// opened for the look.
    fn heap_versions(&self, app: u32, heap: u32) -> Result<(bool, Vec<HeapVersion>), ApiError> {
        if let Some(Holder::Connection { .. }) = self.shared.heaps.holder((app, heap)) {
            if let Ok(CardResponse::HeapVersions { versions }) =
                self.run(app, Request::HeapVersions { heap }, vec![])
            {
                return Ok((true, versions));
            }
            // Closed meanwhile: look as the operator.
        }
        Ok((false, self.with_heap(app, heap, |_, v| Ok(v))?))
    }

    fn heaps_json(&self, app: u32) -> Result<Value, ApiError> {
        let mut heaps = Vec::new();
        for heap in self.heap_ids(app)? {
            let (held, versions) = self.heap_versions(app, heap)?;
            let current = versions.last().map(|v| v.version);
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| {
                    json!({
                        "version": v.version,
                        "pages": v.pages,
                        "state_len": v.state_len,
                        "state_crc": format!("{:08x}", v.state_crc),
                        "current": Some(v.version) == current,
                        "restarted_from": self.shared.heaps.restarted_from((app, heap), v.version),
                    })
                })
                .collect();
            heaps.push(json!({
                "heap": heap,
                "open": held,
                "current": current,
                "versions": vs,
            }));
        }
        Ok(json!({ "app": app, "heaps": heaps }))
    }

    /// Restart heap `heap` (the application's only one when `None`) from
    /// `version`: a new newest version with that version's pages and
    /// state (HEAP_CHECKOUT, then HEAP_COMMIT with nothing staged), so the
    /// application's next open starts from it. Refused while a process of
    /// the application holds the heap.
    fn restart(&self, app: u32, heap: Option<u32>, version: u64) -> Result<Value, ApiError> {
        let heap = match heap {
            Some(h) => h,
            None => match self.heap_ids(app)?.as_slice() {
                [] => {
                    return Err(ApiError(
                        409,
                        format!("no versions: application {app} has no heap to restart"),
                    ))
                }
                [one] => *one,
                many => {
                    return Err(bad(format!(
                        "application {app} has heaps {many:?}: name one ({{\"heap\": H}})"
                    )))
                }
            },
        };
        let made = self.with_heap(app, heap, |b, versions| {
            let checkout = |version| {
                let req = Request::HeapCheckout {
                    heap,
                    version,
                    addr: 0,
                    cap: hitless_proto::daemon::MAX_DATA,
                };
                match b.call(Op::Run {
                    app,
                    req,
                    data: vec![],
                })? {
                    (CardResponse::HeapVersion(v), state) => Ok((v, state)),
                    _ => Err(ApiError(
                        502,
                        "the card answered HEAP_CHECKOUT oddly".into(),
                    )),
                }
            };
            let commit = |state: &[u8]| {
                let req = Request::HeapCommit {
                    heap,
                    addr: 0,
                    len: state.len() as u32,
                    crc: hitless_hdl::contract::crc32c(state),
                };
                match b.run(app, req, state.to_vec())? {
                    CardResponse::HeapVersion(n) => Ok(n),
                    _ => Err(ApiError(502, "the card answered HEAP_COMMIT oddly".into())),
                }
            };
            hitless_driver::heaps::heap_restart_steps(heap, version, &versions, checkout, commit)
                .map(|v| v.version)
        })?;
        self.shared.heaps.note_restart((app, heap), made, version);
        tracing::info!(
            app,
            heap,
            from = version,
            version = made,
            "heap restarted from a version in the store browser"
        );
        Ok(json!({
            "app": app,
            "heap": heap,
            "restarted_from": version,
            "version": made,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strict() {
        assert_eq!(parse_id("a", "7").ok(), Some(7));
        assert_eq!(parse_id("a", "4294967295").ok(), Some(u32::MAX));
        for s in [
            "",
            "-1",
            "+1",
            "1e3",
            "4294967296",
            "12345678901",
            "0x10",
            " 1",
        ] {
            assert!(parse_id("a", s).is_err(), "{s:?}");
        }
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        assert!(restart_request(b"").is_err(), "a restart names its version");
        assert_eq!(restart_request(br#"{"version": 3}"#).ok(), Some((None, 3)));
        assert_eq!(
            restart_request(br#"{"heap": 2, "version": 3}"#).ok(),
            Some((Some(2), 3))
        );
        assert!(restart_request(br#"{"version": -3}"#).is_err());
        assert!(restart_request(br#"{"heap": 4294967296, "version": 3}"#).is_err());
        assert!(restart_request(b"nope").is_err());
        assert_eq!(heap_of_object(0xFFFF_0503), Some(5));
        assert_eq!(heap_of_object(12), None);
    }

    #[test]
    fn only_loopback_without_allow_remote() {
        assert!(bind("0.0.0.0:0", false).is_err());
        assert!(bind("127.0.0.1:0", false).is_ok());
        assert!(bind("not an address", false).is_err());
    }
}
