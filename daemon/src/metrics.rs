//! Prometheus metrics (`--metrics ADDR`): requests, errors by code, bytes,
//! latency, refused credentials, the card's boot results and tier fill.
//! Served as the Prometheus text format on `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirLabel {
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabel {
    pub tier: String,
}

/// Every metric the daemon keeps.
pub struct Metrics {
    pub requests: Family<KindLabel, Counter>,
    pub errors: Family<CodeLabel, Counter>,
    pub bytes: Family<DirLabel, Counter>,
    pub latency: Family<KindLabel, Histogram>,
    /// The card's time per request (the card's share of `latency`).
    pub card_time: Family<KindLabel, Histogram>,
    /// Card sessions opened to make room or after a reset.
    pub card_session_opens: Counter,
    /// Card sessions closed to make room for another application's.
    pub card_session_evictions: Counter,
    /// Opens the policy refused, plus the card's own count of refused MACs.
    pub policy_refusals: Counter,
    pub card_auth_failures: Gauge,
    pub card_opens: Counter,
    pub card_reopens: Counter,
    pub connections: Gauge,
    /// The controller's boot result per tier (`BootResult` as a number).
    pub boot_result: Family<TierLabel, Gauge>,
    pub tier_state: Family<TierLabel, Gauge>,
    pub tier_sets: Family<TierLabel, Gauge>,
    pub tier_image_bytes: Family<TierLabel, Gauge>,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("hitlessd");
        let requests = Family::<KindLabel, Counter>::default();
        let errors = Family::<CodeLabel, Counter>::default();
        let bytes = Family::<DirLabel, Counter>::default();
        // 10 µs .. ~80 s: a 16-byte store on a board to a whole stage on
        // the simulated card.
        let latency = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1e-5, 2.0, 24))
        });
        let card_time = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1e-5, 2.0, 24))
        });
        let card_session_opens = Counter::default();
        let card_session_evictions = Counter::default();
        let policy_refusals = Counter::default();
        let card_auth_failures = Gauge::default();
        let card_opens = Counter::default();
        let card_reopens = Counter::default();
        let connections = Gauge::default();
        let boot_result = Family::<TierLabel, Gauge>::default();
        let tier_state = Family::<TierLabel, Gauge>::default();
        let tier_sets = Family::<TierLabel, Gauge>::default();
        let tier_image_bytes = Family::<TierLabel, Gauge>::default();
        registry.register("requests", "Requests served, by kind", requests.clone());
        registry.register(
            "errors",
            "Requests answered with an error, by result code",
            errors.clone(),
        );
        registry.register(
            "bytes",
            "Set and log bytes moved, by direction (in: to the card)",
            bytes.clone(),
        );
        registry.register(
            "request_seconds",
            "Request latency from receipt to answer, by kind",
            latency.clone(),
        );
        registry.register(
            "card_seconds",
            "The card's time per request, by kind (the rest of request_seconds is queueing and the socket)",
            card_time.clone(),
        );
        registry.register(
            "card_session_opens",
            "Card sessions opened (first use, after an eviction or a reset)",
            card_session_opens.clone(),
        );
        registry.register(
            "card_session_evictions",
            "Card sessions closed to make room for another application's (the card has 14)",
            card_session_evictions.clone(),
        );
        registry.register(
            "policy_refusals",
            "Opens refused by the uid policy",
            policy_refusals.clone(),
        );
        registry.register(
            "card_auth_failures",
            "Requests the card refused for credentials (its MB_AUTH_FAILS)",
            card_auth_failures.clone(),
        );
        registry.register(
            "card_opens",
            "Times the card was opened",
            card_opens.clone(),
        );
        registry.register(
            "card_reopens",
            "Times the card was reopened after it was lost (reset, restart, transport error)",
            card_reopens.clone(),
        );
        registry.register(
            "connections",
            "Open application connections",
            connections.clone(),
        );
        registry.register(
            "boot_result",
            "The controller's boot result per tier (0 empty, 1 ok, 2 fell back to the alternate region, 3 lost)",
            boot_result.clone(),
        );
        registry.register(
            "tier_state",
            "The firmware's record table state per tier (0 ready, 1 lost, 2 foreign)",
            tier_state.clone(),
        );
        registry.register("tier_sets", "Sets stored per tier", tier_sets.clone());
        registry.register(
            "tier_image_bytes",
            "Bytes of the record image per tier (the tier's fill)",
            tier_image_bytes.clone(),
        );
        Arc::new(Self {
            requests,
            errors,
            bytes,
            latency,
            card_time,
            card_session_opens,
            card_session_evictions,
            policy_refusals,
            card_auth_failures,
            card_opens,
            card_reopens,
            connections,
            boot_result,
            tier_state,
            tier_sets,
            tier_image_bytes,
            registry,
        })
    }

    /// Record the firmware's status report.
    pub fn card_status(&self, s: &hitless_proto::StatusReport) {
        for (name, t) in [("warm", &s.warm), ("cold", &s.cold)] {
            let l = TierLabel { tier: name.into() };
            self.boot_result.get_or_create(&l).set(t.boot_result.into());
            self.tier_state.get_or_create(&l).set(t.state.into());
            self.tier_sets.get_or_create(&l).set(t.sets.into());
            self.tier_image_bytes
                .get_or_create(&l)
                .set(t.image_bytes.into());
        }
        self.card_auth_failures.set(s.auth_fails.into());
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serve `GET /metrics` on `listener` until the process ends. `refresh`
/// runs before each answer (it asks the card for its status, bounded).
pub fn serve(listener: TcpListener, metrics: Arc<Metrics>, refresh: impl Fn() + Send + 'static) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
            let mut line = String::new();
            let mut reader = BufReader::new(std::io::Read::take(&stream, 8192));
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // Drain the headers (bounded by the take above).
            let mut h = String::new();
            while reader.read_line(&mut h).map(|n| n > 2).unwrap_or(false) {
                h.clear();
            }
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let (status, body, ctype) =
                if line.starts_with("GET ") && (path == "/metrics" || path == "/") {
                    refresh();
                    (
                        "200 OK",
                        metrics.encode(),
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )
                } else {
                    ("404 Not Found", "GET /metrics\n".to_string(), "text/plain")
                };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}
