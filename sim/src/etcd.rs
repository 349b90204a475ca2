//! The pair's arbiter in etcd (`hitless-sim serve --node … --etcd URL`):
//! an [`Arbiter`] over etcd's v3 JSON gateway (`/v3/kv/range`,
//! `/v3/kv/txn`, `/v3/lease/grant`, `/v3/lease/keepalive`,
//! `/v3/lease/revoke`), the alternative to the witness process.
//!
//! Keys under the pair's prefix (default `/hitless/pair/<members>/`):
//! - `leader`: `node=N epoch=E`, attached to an etcd lease of `ttl`: the
//!   key exists while the master's lease runs; etcd deletes it when the
//!   lease is not kept alive;
//! - `epoch`: the last epoch granted (decimal), never leased: the epoch
//!   counter, only ever raised by one;
//! - `in_sync`: the in-sync set (comma-separated node ids), written by the
//!   holder; absent: every member (a new pair).
//!
//! A grant is one transaction that compares the `mod_revision` of all
//! three keys with what the card read (a missing key compares as 0) and
//! only then writes the leader (on a fresh lease) and the raised epoch:
//! two cards that read the same state cannot both win, and the epoch only
//! grows. Renewal keeps the etcd lease alive and checks that the leader
//! key is still this card's; an in-sync change is a transaction on the
//! leader's value. Release revokes the lease (the key goes with it).
//!
//! Time: the card's lease ends at its own send time + the TTL etcd
//! granted − a skew margin, so it always ends before etcd deletes the
//! key (etcd counts from when it received the call). Every HTTP call has
//! the one deadline of the arbiter call it serves; past it the answer is
//! `Unreachable` (a master keeps its lease until it runs out, a slave does
//! not take over).

use hitless_firmware::replication::{Arbiter, ArbiterError, Lease};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Why a call to etcd failed (logged; the node sees `Unreachable`).
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("the call's deadline has passed")]
    Deadline,
    #[error("HTTP {path}: {source}")]
    Http {
        path: &'static str,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{path}: answer is not JSON: {source}")]
    Body {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Answer { path: &'static str, what: String },
}

/// Settings of the etcd arbiter.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// The gateway, e.g. `http://127.0.0.1:2379`.
    pub url: String,
    /// The pair's key prefix (ends with `/`).
    pub prefix: String,
    /// Every node of the pair (the in-sync set of a new pair).
    pub members: BTreeSet<u32>,
    /// The etcd lease TTL (whole seconds; etcd's minimum is about 2 s).
    pub ttl: Duration,
    /// Deadline of one arbiter call (all its HTTP calls).
    pub deadline: Duration,
    /// Margin by which the card's lease ends before etcd's.
    pub skew: Duration,
}

impl EtcdConfig {
    /// The default prefix of a pair: `/hitless/pair/1-2/`.
    pub fn default_prefix(members: &BTreeSet<u32>) -> String {
        let m: Vec<String> = members.iter().map(u32::to_string).collect();
        format!("/hitless/pair/{}/", m.join("-"))
    }
}

/// What this card holds at etcd.
#[derive(Clone, Copy, Debug)]
struct Held {
    node: u32,
    epoch: u64,
    lease: i64,
}

/// A key as a range answered it.
#[derive(Clone, Debug, Default)]
struct Kv {
    value: Vec<u8>,
    mod_revision: i64,
}

/// The pair's state in etcd.
#[derive(Clone, Debug, Default)]
struct PairState {
    leader: Option<(Kv, u32, u64)>,
    epoch: (u64, i64),
    in_sync: Option<(BTreeSet<u32>, i64)>,
}

/// The card's [`Arbiter`] over etcd.
pub struct EtcdArbiter {
    cfg: EtcdConfig,
    agent: ureq::Agent,
    held: Option<Held>,
}

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// An int64 of the gateway's JSON (a string, or a number); absent: 0
/// (proto3 leaves defaults out).
fn int(v: &Value, field: &str) -> i64 {
    match v.get(field) {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn leader_value(node: u32, epoch: u64) -> String {
    format!("node={node} epoch={epoch}")
}

fn parse_leader(v: &[u8]) -> Option<(u32, u64)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut node = None;
    let mut epoch = None;
    for part in s.split_whitespace() {
        match part.split_once('=')? {
            ("node", n) => node = n.parse().ok(),
            ("epoch", e) => epoch = e.parse().ok(),
            _ => {}
        }
    }
    Some((node?, epoch?))
}

fn parse_set(v: &[u8]) -> Option<BTreeSet<u32>> {
    let s = std::str::from_utf8(v).ok()?;
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.trim().parse().ok())
        .collect()
}

fn set_value(s: &BTreeSet<u32>) -> String {
    let v: Vec<String> = s.iter().map(u32::to_string).collect();
    v.join(",")
}

/// The key after every key with `prefix` (etcd's `range_end`).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdArbiter {
    pub fn new(cfg: EtcdConfig) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(cfg.deadline)
            .timeout(cfg.deadline)
            .build();
        Self {
            cfg,
            agent,
            held: None,
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.cfg.prefix)
    }

    fn ttl_secs(&self) -> i64 {
        i64::try_from(self.cfg.ttl.as_secs().max(1)).unwrap_or(i64::MAX)
    }

    /// One gateway call within what is left of `deadline`.
    fn post(&self, path: &'static str, body: Value, deadline: Instant) -> Result<Value, EtcdError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(EtcdError::Deadline);
        }
        let url = format!("{}{path}", self.cfg.url.trim_end_matches('/'));
        let r = self
            .agent
            .post(&url)
            .timeout(left)
            .send_json(body)
            .map_err(|e| EtcdError::Http {
                path,
                source: Box::new(e),
            })?;
        r.into_json::<Value>()
            .map_err(|source| EtcdError::Body { path, source })
    }

    fn range(&self, deadline: Instant) -> Result<PairState, EtcdError> {
        let v = self.post(
            "/v3/kv/range",
            json!({
                "key": b64(self.cfg.prefix.as_bytes()),
                "range_end": b64(&prefix_end(&self.cfg.prefix)),
            }),
            deadline,
        )?;
        let mut st = PairState::default();
        let kvs = v
            .get("kvs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for kv in kvs {
            let key = kv
                .get("key")
                .and_then(Value::as_str)
                .and_then(unb64)
                .unwrap_or_default();
            let value = kv
                .get("value")
                .and_then(Value::as_str)
                .and_then(unb64)
                .unwrap_or_default();
            let k = Kv {
                value,
                mod_revision: int(&kv, "mod_revision"),
            };
            let bad = |what: &str| EtcdError::Answer {
                path: "/v3/kv/range",
                what: format!("{what}: {:?}", String::from_utf8_lossy(&k.value)),
            };
            if key == self.key("leader").as_bytes() {
                let (n, e) = parse_leader(&k.value).ok_or_else(|| bad("leader"))?;
                st.leader = Some((k, n, e));
            } else if key == self.key("epoch").as_bytes() {
                let e = std::str::from_utf8(&k.value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad("epoch"))?;
                st.epoch = (e, k.mod_revision);
            } else if key == self.key("in_sync").as_bytes() {
                let s = parse_set(&k.value).ok_or_else(|| bad("in_sync"))?;
                st.in_sync = Some((s, k.mod_revision));
            }
        }
        Ok(st)
    }

    fn in_sync_of(&self, st: &PairState) -> BTreeSet<u32> {
        st.in_sync
            .as_ref()
            .map_or_else(|| self.cfg.members.clone(), |(s, _)| s.clone())
    }

    /// A new etcd lease: (id, TTL granted).
    fn grant(&self, deadline: Instant) -> Result<(i64, i64), EtcdError> {
        let v = self.post(
            "/v3/lease/grant",
            json!({ "TTL": self.ttl_secs().to_string() }),
            deadline,
        )?;
        let id = int(&v, "ID");
        let ttl = int(&v, "TTL");
        if id == 0 || ttl <= 0 {
            return Err(EtcdError::Answer {
                path: "/v3/lease/grant",
                what: format!("no lease granted: {v}"),
            });
        }
        Ok((id, ttl))
    }

    fn revoke(&self, id: i64, deadline: Instant) -> Result<(), EtcdError> {
        self.post(
            "/v3/lease/revoke",
            json!({ "ID": id.to_string() }),
            deadline,
        )
        .map(|_| ())
    }

    /// Keep lease `id` alive: the TTL it has again (0: it has expired).
    fn keepalive(&self, id: i64, deadline: Instant) -> Result<i64, EtcdError> {
        let v = self.post(
            "/v3/lease/keepalive",
            json!({ "ID": id.to_string() }),
            deadline,
        )?;
        // A streaming call: the gateway wraps the answer in "result".
        let r = v.get("result").unwrap_or(&v);
        Ok(int(r, "TTL"))
    }

    fn txn(&self, body: Value, deadline: Instant) -> Result<bool, EtcdError> {
        let v = self.post("/v3/kv/txn", body, deadline)?;
        Ok(v.get("succeeded").and_then(Value::as_bool).unwrap_or(false))
    }

    /// The card's lease end for a TTL etcd granted or renewed at `sent`.
    fn until(&self, sent: Instant, ttl_secs: i64) -> Instant {
        let ttl = Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(0))
            .min(self.cfg.ttl.max(Duration::from_secs(1)));
        sent + ttl.saturating_sub(self.cfg.skew)
    }

    fn unreachable(&self, what: &str, e: &EtcdError) -> ArbiterError {
        tracing::warn!(url = %self.cfg.url, "etcd arbiter: {what}: {e}");
        ArbiterError::Unreachable
    }

    fn not_holder(node: u32, epoch: u64, st: &PairState) -> ArbiterError {
        ArbiterError::NotHolder {
            node,
            epoch,
            holder: st.leader.as_ref().map(|l| l.1),
            current: st.epoch.0,
        }
    }

    fn try_acquire(
        &mut self,
        node: u32,
        now: Instant,
        deadline: Instant,
    ) -> Result<Result<Lease, ArbiterError>, EtcdError> {
        let st = self.range(deadline)?;
        if let Some((_, holder, epoch)) = &st.leader {
            if *holder != node {
                return Ok(Err(ArbiterError::Held {
                    holder: *holder,
                    epoch: *epoch,
                    left: self.cfg.ttl,
                }));
            }
        }
        let in_sync = self.in_sync_of(&st);
        if !in_sync.contains(&node) {
            return Ok(Err(ArbiterError::NotInSync(node)));
        }
        let (lease, ttl) = self.grant(deadline)?;
        let epoch = st.epoch.0 + 1;
        let cmp = |name: &str, rev: i64| {
            json!({
                "key": b64(self.key(name).as_bytes()),
                "target": "MOD",
                "result": "EQUAL",
                "mod_revision": rev.to_string(),
            })
        };
        let body = json!({
            "compare": [
                cmp("leader", st.leader.as_ref().map_or(0, |l| l.0.mod_revision)),
                cmp("epoch", st.epoch.1),
                cmp("in_sync", st.in_sync.as_ref().map_or(0, |s| s.1)),
            ],
            "success": [
                { "request_put": {
                    "key": b64(self.key("leader").as_bytes()),
                    "value": b64(leader_value(node, epoch).as_bytes()),
                    "lease": lease.to_string(),
                } },
                { "request_put": {
                    "key": b64(self.key("epoch").as_bytes()),
                    "value": b64(epoch.to_string().as_bytes()),
                } },
            ],
        });
        let won = match self.txn(body, deadline) {
            Ok(w) => w,
            Err(e) => {
                // Not known whether it committed: the lease is left to
                // expire (its key, if written, goes with it).
                return Err(e);
            }
        };
        if !won {
            if let Err(e) = self.revoke(lease, deadline) {
                tracing::debug!("etcd arbiter: revoking an unused lease: {e}");
            }
            // Someone else changed the pair meanwhile: say who holds it now.
            let st = self.range(deadline)?;
            return Ok(Err(match st.leader {
                Some((_, holder, epoch)) if holder != node => ArbiterError::Held {
                    holder,
                    epoch,
                    left: self.cfg.ttl,
                },
                _ => Self::not_holder(node, st.epoch.0 + 1, &st),
            }));
        }
        if let Some(old) = self.held.take() {
            if old.lease != lease {
                if let Err(e) = self.revoke(old.lease, deadline) {
                    tracing::debug!("etcd arbiter: revoking the previous lease: {e}");
                }
            }
        }
        self.held = Some(Held { node, epoch, lease });
        tracing::info!(node, epoch, lease, "etcd arbiter: granted");
        Ok(Ok(Lease {
            epoch,
            until: Some(self.until(now, ttl)),
            in_sync,
        }))
    }

    fn try_renew(
        &mut self,
        node: u32,
        epoch: u64,
        now: Instant,
        deadline: Instant,
    ) -> Result<Result<Lease, ArbiterError>, EtcdError> {
        let Some(h) = self.held.filter(|h| h.node == node && h.epoch == epoch) else {
            let st = self.range(deadline)?;
            return Ok(Err(Self::not_holder(node, epoch, &st)));
        };
        let ttl = self.keepalive(h.lease, deadline)?;
        let st = self.range(deadline)?;
        let ours = matches!(&st.leader, Some((_, n, e)) if *n == node && *e == epoch);
        if ttl <= 0 || !ours {
            self.held = None;
            return Ok(Err(Self::not_holder(node, epoch, &st)));
        }
        Ok(Ok(Lease {
            epoch,
            until: Some(self.until(now, ttl)),
            in_sync: self.in_sync_of(&st),
        }))
    }

    fn try_set_in_sync(
        &mut self,
        node: u32,
        epoch: u64,
        slaves: &BTreeSet<u32>,
        deadline: Instant,
    ) -> Result<Result<(), ArbiterError>, EtcdError> {
        let mut set = slaves.clone();
        set.insert(node);
        let body = json!({
            "compare": [{
                "key": b64(self.key("leader").as_bytes()),
                "target": "VALUE",
                "result": "EQUAL",
                "value": b64(leader_value(node, epoch).as_bytes()),
            }],
            "success": [{ "request_put": {
                "key": b64(self.key("in_sync").as_bytes()),
                "value": b64(set_value(&set).as_bytes()),
            } }],
        });
        if self.txn(body, deadline)? {
            return Ok(Ok(()));
        }
        let st = self.range(deadline)?;
        Ok(Err(Self::not_holder(node, epoch, &st)))
    }
}

impl Arbiter for EtcdArbiter {
    fn acquire(&mut self, node: u32, now: Instant) -> Result<Lease, ArbiterError> {
        let deadline = Instant::now() + self.cfg.deadline;
        self.try_acquire(node, now, deadline)
            .unwrap_or_else(|e| Err(self.unreachable("acquire", &e)))
    }

    fn renew(&mut self, node: u32, epoch: u64, now: Instant) -> Result<Lease, ArbiterError> {
        let deadline = Instant::now() + self.cfg.deadline;
        self.try_renew(node, epoch, now, deadline)
            .unwrap_or_else(|e| Err(self.unreachable("renew", &e)))
    }

    fn release(&mut self, node: u32, epoch: u64, _now: Instant) -> Result<(), ArbiterError> {
        let deadline = Instant::now() + self.cfg.deadline;
        match self.held.filter(|h| h.node == node && h.epoch == epoch) {
            Some(h) => {
                self.held = None;
                self.revoke(h.lease, deadline)
                    .map_err(|e| self.unreachable("release", &e))
            }
            None => match self.range(deadline) {
                Ok(st) => Err(Self::not_holder(node, epoch, &st)),
                Err(e) => Err(self.unreachable("release", &e)),
            },
        }
    }

    fn set_in_sync(
        &mut self,
        node: u32,
        epoch: u64,
        slaves: &BTreeSet<u32>,
        _now: Instant,
    ) -> Result<(), ArbiterError> {
        let deadline = Instant::now() + self.cfg.deadline;
        self.try_set_in_sync(node, epoch, slaves, deadline)
            .unwrap_or_else(|e| Err(self.unreachable("set in-sync", &e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_bad_ones_are_refused() {
        assert_eq!(
            parse_leader(leader_value(3, 1 << 40).as_bytes()),
            Some((3, 1 << 40))
        );
        assert_eq!(parse_leader(b"node=3"), None);
        assert_eq!(parse_leader(b"garbage"), None);
        let s: BTreeSet<u32> = [1, 2, 7].into();
        assert_eq!(parse_set(set_value(&s).as_bytes()), Some(s));
        assert_eq!(parse_set(b""), Some(BTreeSet::new()));
        assert_eq!(parse_set(b"1,x"), None);
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(unb64(&b64(b"\x00\xffkey")), Some(b"\x00\xffkey".to_vec()));
        assert_eq!(int(&json!({"a": "12", "b": 3}), "a"), 12);
        assert_eq!(int(&json!({"a": "12", "b": 3}), "b"), 3);
        assert_eq!(int(&json!({}), "c"), 0);
    }
}
