//! The firmware loop of a replicated card: the same mailbox, but the
//! memory manager lives inside the replication [`Node`], every host request
//! goes through [`card::serve`] (fenced: only the master serves), a sync
//! store's answer is held until its bracket is durable on the slaves
//! ([`Event::Durable`]) and failed on [`Event::SyncTimeout`] or
//! [`Event::Abandoned`]; link frames and connections come from the link
//! thread ([`crate::pair`]) and the node's frames go back to it; the node
//! is ticked every half heartbeat, with the witness as its arbiter.
//! Remote backup readers' requests ([`crate::backup`]) run here too, on
//! the node's manager, between whole brackets, and wait while a bracket is
//! not durable (see `backup`).
//!
//! The card's image manager ([`crate::image`]), when it has one, runs on
//! its own thread beside this loop ([`ImageWorker`]): image requests are
//! per card (a card's software is its own, not replicated state), are
//! answered on a slave as on a master, and an install's seconds of flash
//! writes never stall the heartbeats. The link schema the node speaks is
//! the booted image's (`link_schema=` in its firmware component), taken
//! at the card's boot: a rolling upgrade changes it by a reboot.

use super::{lock, Input, Runner, ServiceHost};
use crate::backup::{window as backup_window, BackupRequest, WindowHost};
use crate::etcd::{EtcdArbiter, EtcdConfig};
use crate::image::{self, CardImage};
use crate::local::LocalMemory;
use crate::pair::{Links, PairConfig};
use crate::witness::WitnessArbiter;
use hitless_firmware::mailbox::{self, Mailbox, Pending};
use hitless_firmware::manager::peer::Endpoints;
use hitless_firmware::manager::{HostMemory, Reply};
use hitless_firmware::replication::card::{self, Answer};
use hitless_firmware::replication::peer_sets::{self, Done, Forwarder};
use hitless_firmware::replication::{
    Arbiter, ArbiterError, Config, Event, Inconsistency, NoArbiter, Node, PromoteError, Replica,
    WriteError,
};
use hitless_hdl::contract::MAX_MESSAGE;
use hitless_proto::link::{LinkMessage, Role};
use hitless_proto::message::Failure;
use hitless_proto::msg::{kind, Code};
use hitless_proto::tlv::Message;
use hitless_proto::{LostWarm, PeerNotes, PeerReport, Request, Response};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::mpsc::{self as chan, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The witness call's deadline for a heartbeat interval.
fn witness_deadline(heartbeat: Duration) -> Duration {
    (heartbeat * 2).clamp(Duration::from_millis(20), Duration::from_millis(500))
}

/// Write `reply` as the response of `p`.
fn answer(host: &mut dyn HostMemory, p: &Pending, reply: &Reply) -> (Code, u32) {
    let len = reply.message.len() as u32;
    if len > p.resp_cap {
        return (Code::TooSmall, len);
    }
    if let Err(e) = host.write(p.resp_addr, &reply.message) {
        tracing::warn!(
            "response unwritable: {}",
            hitless_firmware::manager::chain(&e)
        );
        return (Code::HostMemory, 0);
    }
    (reply.code, len)
}

/// The card's image manager on its own thread: it takes the mailbox's
/// image requests, answers them itself, and runs the trial's watchdog.
struct ImageWorker {
    tx: Option<Sender<Pending>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ImageWorker {
    fn start(
        mut img: CardImage,
        svc: crate::service::CardService,
        mailbox: Arc<Mutex<Mailbox>>,
    ) -> Option<ImageWorker> {
        let (tx, rx) = chan::channel::<Pending>();
        let thread = std::thread::Builder::new()
            .name("hitless-image".into())
            .spawn(move || {
                let mut host = ServiceHost(svc);
                loop {
                    match rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(p) => {
                            let kind = image::image_kind(&mut host, &p).unwrap_or(0);
                            let (code, len) = image::run(&mut img, &mut host, &p, kind);
                            lock(&mailbox).finish(&p, code, len);
                            img.after_answer();
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                    img.tick();
                }
                img.shutdown();
            });
        match thread {
            Ok(t) => Some(ImageWorker {
                tx: Some(tx),
                thread: Some(t),
            }),
            Err(e) => {
                tracing::error!("image manager thread: {e}");
                None
            }
        }
    }

    /// Hand `p` to the image manager (it answers the mailbox).
    fn take(&self, p: Pending) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(p).is_ok())
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(super) fn run(
    svc: crate::service::CardService,
    mailbox: Arc<Mutex<Mailbox>>,
    rx: Receiver<Input>,
    pair: PairConfig,
    links: Links,
    image: Option<CardImage>,
) {
    // The booted image decides the link schema this card speaks.
    let schema = image.as_ref().and_then(CardImage::link_schema);
    let version = image.as_ref().map_or(0, CardImage::running_version);
    let mut images = image.and_then(|img| ImageWorker::start(img, svc.clone(), mailbox.clone()));
    let mut r = Runner {
        svc: svc.clone(),
        mm: None,
        resets_seen: 0,
    };
    let mut host = ServiceHost(svc);
    let published: u64 = rand::random();
    // A replicated card takes the controller at once: a slave applies
    // what its master streams whether or not a host talks to it.
    let mut failure = String::new();
    for _ in 0..3 {
        match r.boot(published) {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!("firmware start: {e}");
                failure = e;
            }
        }
    }
    let Some(mut mm) = r.mm.take() else {
        tracing::error!("the replicated firmware could not start: {failure}");
        {
            let mut mb = lock(&mailbox);
            mb.nonce = published;
            mb.ready = true;
        }
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Input::Request(p)) => device(
                    &mut host,
                    &mailbox,
                    &p,
                    &format!("the firmware could not start: {failure}"),
                ),
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                _ => {}
            }
        }
    };
    set_endpoints(&mut mm, &pair);
    let mut cfg = Config::new(pair.node, pair.peers.iter().map(|p| p.0));
    if let Some(v) = schema {
        cfg.schema = v;
    }
    let own_schema = cfg.schema;
    tracing::info!(
        node = pair.node,
        schema = own_schema,
        image_version = version,
        "link schema of the booted image"
    );
    cfg.mode = pair.mode;
    cfg.heartbeat = pair.heartbeat;
    // A sync store waits for the slave's ack; a witness call may take its
    // deadline inside a tick.
    cfg.sync_deadline = cfg
        .sync_deadline
        .max(cfg.silence() * 2 + witness_deadline(pair.heartbeat));
    let mut node = Node::new(cfg, mm, Instant::now());
    let mut arbiter: Box<dyn Arbiter> = match (pair.witness, &pair.etcd) {
        (Some(addr), _) => Box::new(WitnessArbiter::new(
            addr,
            pair.psk,
            witness_deadline(pair.heartbeat),
            pair.heartbeat.max(Duration::from_millis(5)),
        )),
        (None, Some(e)) => {
            let members: std::collections::BTreeSet<u32> = std::iter::once(pair.node)
                .chain(pair.peers.iter().map(|p| p.0))
                .collect();
            Box::new(EtcdArbiter::new(EtcdConfig {
                url: e.url.clone(),
                prefix: e
                    .prefix
                    .clone()
                    .unwrap_or_else(|| EtcdConfig::default_prefix(&members)),
                members,
                ttl: e.ttl,
                deadline: witness_deadline(pair.heartbeat),
                skew: pair.heartbeat.max(Duration::from_millis(5)),
            }))
        }
        (None, None) => Box::new(NoArbiter),
    };
    {
        let mut mb = lock(&mailbox);
        mailbox::publish(&mut mb, node.replica());
    }
    tracing::info!(node = pair.node, "replicated firmware running");
    let tick_every = (pair.heartbeat / 2).max(Duration::from_millis(1));
    let mut next_tick = Instant::now();
    // Sync answers waiting for their bracket: (epoch, bracket) → request.
    let mut held: Held = HashMap::new();
    // Backup readers' requests (seed 001) wait while a bracket is not
    // durable: a reader on the master reads only what every in-sync slave
    // holds, so what it read is still there after a takeover.
    let mut backups: VecDeque<BackupRequest> = VecDeque::new();
    let local = host.0.local().clone();
    let hold_limit = node_hold_limit(pair.heartbeat);
    // A switchover in progress (its request's answer held).
    let mut switch: Option<Switch> = None;
    // The cause the node that took over from this card sent (claim 18).
    let mut heard: Option<(u32, String)> = None;
    // Host requests waiting for a peer card's answer (sets stored in its
    // memory), and the peers whose link is up.
    let mut forwarder: Forwarder<PeerWait> = Forwarder::new(peer_deadline(pair.heartbeat));
    let mut up: HashSet<u32> = HashSet::new();
    // Why the manager is not running after a card reset (its restart
    // failed: tried again at every step; hosts are refused meanwhile).
    let mut down: Option<String> = None;
    'run: loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        let mut input = match rx.recv_timeout(wait) {
            Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(i) => Some(i),
            Err(RecvTimeoutError::Timeout) => None,
        };
        // Take everything already queued before the tick: after a long
        // request, the peer's frames that arrived meanwhile count before
        // its silence is judged (bounded, so a flood cannot starve it).
        for n in 0..256 {
            let now = Instant::now();
            if down.is_some() || r.svc.resets() != r.resets_seen {
                let restarted = after_reset(&mut r, &mut node, &pair, &mailbox, &up, now);
                // Nothing waits on the manager that was reset: its held
                // answers fail now (the host retries, or asks the master).
                for (_, (w, _, _)) in held.drain() {
                    fail(&mut host, &mailbox, &node, w, "the card was reset");
                }
                if let Some(sw) = switch.take() {
                    device(
                        &mut host,
                        &mailbox,
                        &sw.pending,
                        "switchover: the card was reset",
                    );
                }
                down = restarted.err();
            }
            if let Some(why) = &down {
                // The card is down: no host is served, no frame applied
                // (its HELLO at the restart asks for what it missed).
                match input.take() {
                    Some(Input::Request(p)) => device(
                        &mut host,
                        &mailbox,
                        &p,
                        &format!("the card is restarting after a reset: {why}"),
                    ),
                    Some(Input::Connected(peer)) => {
                        up.insert(peer);
                    }
                    Some(Input::Disconnected(peer)) => {
                        up.remove(&peer);
                    }
                    Some(Input::Backup(b)) => b.refuse(Code::Device, "the card is restarting"),
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(20));
                break;
            }
            match input.take() {
                Some(Input::Request(p))
                    if images.is_some() && image::image_kind(&mut host, &p).is_some() =>
                {
                    if !images.as_ref().is_some_and(|w| w.take(p)) {
                        let (code, len) = mailbox::refuse(
                            &mut host,
                            &p,
                            Code::Device,
                            "the card's image manager stopped",
                        );
                        lock(&mailbox).finish(&p, code, len);
                    }
                }
                Some(Input::Request(p)) => {
                    let ctx = Ctx {
                        heard: &heard,
                        switch: &mut switch,
                        forwarder: &mut forwarder,
                        up: &up,
                        links: &links,
                        schema: own_schema,
                        arbiter: arbiter.as_mut(),
                    };
                    if let Some((code, len)) =
                        request(&mut node, &mut host, &p, now, &mut held, ctx)
                    {
                        let mut mb = lock(&mailbox);
                        mailbox::publish(&mut mb, node.replica());
                        mb.finish(&p, code, len);
                    }
                }
                // A card speaking a schema before the peer-set kinds does
                // not know them: the node drops them as unknown.
                Some(Input::Frame(peer, f))
                    if own_schema >= peer_sets::PEER_SET_SCHEMA
                        && f.get(3).is_some_and(|k| LinkMessage::is_peer_set(*k)) =>
                {
                    if let Some(d) = peer_frame(&mut node, &mut forwarder, &links, peer, &f) {
                        finish_peer(&mut host, &mailbox, &node, d)
                    }
                }
                Some(Input::Frame(peer, f)) => node.receive(now, peer, &f),
                Some(Input::Connected(peer)) => {
                    up.insert(peer);
                    node.connected(now, peer)
                }
                Some(Input::Disconnected(peer)) => {
                    up.remove(&peer);
                    for d in forwarder.link_down(peer) {
                        finish_peer(&mut host, &mailbox, &node, d);
                    }
                    node.disconnected(now, peer)
                }
                Some(Input::Backup(b)) => backups.extend(b.sized()),
                Some(Input::Stop) | None => {}
            }
            if n == 255 {
                break; // the rest after the tick
            }
            match rx.try_recv() {
                Ok(Input::Stop) | Err(TryRecvError::Disconnected) => break 'run,
                Ok(i) => input = Some(i),
                Err(TryRecvError::Empty) => break,
            }
        }
        let now = Instant::now();
        if down.is_some() {
            continue;
        }
        if now >= next_tick {
            node.tick(now, arbiter.as_mut());
            next_tick = Instant::now() + tick_every;
        }
        for d in forwarder.expire(now) {
            finish_peer(&mut host, &mailbox, &node, d);
        }
        while let Some((peer, frame)) = node.poll_transmit() {
            links.send(peer, frame);
        }
        while let Some(e) = node.poll_event() {
            if matches!(e, Event::BecameMaster { .. }) {
                // The sets it held for its peer are its own now.
                match node.replica_mut().adopt_held() {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(node = pair.node, n, "held sets adopted"),
                    Err(f) => {
                        tracing::warn!(node = pair.node, "held sets not adopted: {}", f.detail)
                    }
                }
            }
            match e {
                Event::Durable { epoch, bracket } => match held.remove(&(epoch, bracket)) {
                    Some((Waiter::Host(p), reply, _)) => {
                        let (code, len) = answer(&mut host, &p, &reply);
                        let mut mb = lock(&mailbox);
                        mailbox::publish(&mut mb, node.replica());
                        mb.finish(&p, code, len);
                    }
                    Some((Waiter::Backup(b), reply, _)) => b.answer(&local, reply),
                    None => {}
                },
                Event::SyncTimeout { epoch, bracket } | Event::Abandoned { epoch, bracket } => {
                    if let Some((w, _, _)) = held.remove(&(epoch, bracket)) {
                        fail(&mut host, &mailbox, &node, w, &format!("{e:?}"));
                    }
                }
                Event::Cause { from, reason } => {
                    tracing::warn!(node = pair.node, from, %reason, "taken over (claim 18)");
                    heard = Some((from, reason));
                }
                Event::Switchover { to, done, why } => {
                    tracing::info!(node = pair.node, to, done, %why, "switchover");
                    if let Some(sw) = switch.as_mut().filter(|s| s.to == to && s.handed.is_none()) {
                        if done {
                            sw.handed = Some(node.status(now).mark.bracket);
                            sw.handed_at = Some(now);
                        } else {
                            let sw = switch.take().map(|s| s.pending);
                            if let Some(p) = sw {
                                let (code, len) = mailbox::refuse(
                                    &mut host,
                                    &p,
                                    Code::Device,
                                    &format!("switchover to node {to} did not finish: {why}"),
                                );
                                let mut mb = lock(&mailbox);
                                mailbox::publish(&mut mb, node.replica());
                                mb.finish(&p, code, len);
                            }
                        }
                    }
                }
                other => tracing::info!(node = pair.node, event = ?other, "replication"),
            }
        }
        // A handed-over switchover is answered once this card follows the
        // new master in a newer epoch (or, past the wait, without it).
        if let Some(sw) = &switch {
            if let Some(bracket) = sw.handed {
                let st = node.status(now);
                let follows =
                    st.role != Role::Master && st.master == Some(sw.to) && st.epoch > sw.from_epoch;
                let late = now.saturating_duration_since(sw.handed_at.unwrap_or(now))
                    > switch_wait(pair.heartbeat);
                if follows
                    || late
                    || now.saturating_duration_since(sw.started) > switch_limit(pair.heartbeat)
                {
                    let r = Response::Switched {
                        to: sw.to,
                        from_epoch: sw.from_epoch,
                        epoch: follows.then_some(st.epoch),
                        bracket,
                    };
                    let reply = Reply {
                        code: Code::Ok,
                        message: r.encode(kind::SWITCHOVER).finish(),
                    };
                    let p = sw.pending;
                    switch = None;
                    let (code, len) = answer(&mut host, &p, &reply);
                    let mut mb = lock(&mailbox);
                    mailbox::publish(&mut mb, node.replica());
                    mb.finish(&p, code, len);
                }
            } else if now.saturating_duration_since(sw.started) > switch_limit(pair.heartbeat) {
                let p = sw.pending;
                switch = None;
                let (code, len) = mailbox::refuse(
                    &mut host,
                    &p,
                    Code::Device,
                    "switchover: no answer from the node in time",
                );
                let mut mb = lock(&mailbox);
                mailbox::publish(&mut mb, node.replica());
                mb.finish(&p, code, len);
            }
        }

        // Nothing is held forever (the node's deadline should have come).
        let late: Vec<(u64, u64)> = held
            .iter()
            .filter(|(_, (_, _, t))| now.saturating_duration_since(*t) > hold_limit)
            .map(|(k, _)| *k)
            .collect();
        for k in late {
            if let Some((w, _, _)) = held.remove(&k) {
                fail(&mut host, &mailbox, &node, w, "not durable in time");
            }
        }
        while held.is_empty() {
            let Some(b) = backups.pop_front() else { break };
            let ctx = BackupCtx {
                local: &local,
                heard: &heard,
                schema: own_schema,
            };
            backup(&mut node, b, Instant::now(), &mut held, ctx);
        }
    }
    for (_, (w, _, _)) in held.drain() {
        fail(&mut host, &mailbox, &node, w, "the card is stopping");
    }
    for b in backups.drain(..) {
        b.refuse(Code::Device, "the card is stopping");
    }
    for d in forwarder.drain("the card is stopping before its peer answered") {
        finish_peer(&mut host, &mailbox, &node, d);
    }
    if let Some(sw) = switch.take() {
        let (code, len) =
            mailbox::refuse(&mut host, &sw.pending, Code::Device, "the card is stopping");
        lock(&mailbox).finish(&sw.pending, code, len);
    }
    links.stop();
    if let Some(w) = images.as_mut() {
        w.stop();
    }
}

/// How long a host request waits for the peer card that holds its set:
/// below the driver's answer timeout, above a loaded card's cold commit.
fn peer_deadline(heartbeat: Duration) -> Duration {
    (heartbeat * 15).clamp(Duration::from_secs(1), Duration::from_secs(3))
}

/// A host request waiting for a peer card: its mailbox slot and its kind
/// (the answer's).
type PeerWait = (Pending, u8);

/// A peer-set link message from `peer`: a request served with this
/// card's manager (answered at once), or an answer to one of ours (the
/// host request it answers).
fn peer_frame(
    node: &mut ReplNode,
    forwarder: &mut Forwarder<PeerWait>,
    links: &Links,
    peer: u32,
    frame: &[u8],
) -> Option<Done<PeerWait>> {
    let msg = match LinkMessage::decode(frame) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(peer, "a peer-set message that does not decode: {e}");
            return None;
        }
    };
    if matches!(
        msg,
        LinkMessage::PeerAnswer { .. } | LinkMessage::PeerListed { .. }
    ) {
        let done = forwarder.receive(peer, msg);
        // A list page that is not the last: the next page's request.
        while let Some((to, m)) = forwarder.poll_transmit() {
            links.send(to, m);
        }
        return done;
    }
    let role = node.role();
    if let Some(reply) = peer_sets::serve(node.replica_mut(), role, msg) {
        links.send(peer, reply.encode());
    }
    None
}

/// Answer the host request a peer card answered (or that failed).
fn finish_peer(
    host: &mut ServiceHost,
    mailbox: &Mutex<Mailbox>,
    node: &ReplNode,
    d: Done<PeerWait>,
) {
    let (p, k) = d.tag;
    let (code, len) = peer_answer(host, &p, k, d.answer, d.write);
    let mut mb = lock(mailbox);
    mailbox::publish(&mut mb, node.replica());
    mb.finish(&p, code, len);
}

fn peer_answer(
    host: &mut ServiceHost,
    p: &Pending,
    k: u8,
    answer_: Result<Response, Failure>,
    write: Option<(u64, Vec<u8>)>,
) -> (Code, u32) {
    let r = match answer_ {
        Ok(r) => r,
        Err(f) => return mailbox::refuse_with(host, p, &f),
    };
    if let Some((addr, data)) = write {
        if let Err(e) = host.write(addr, &data) {
            let f = Failure::new(Code::HostMemory, hitless_firmware::manager::chain(&e));
            return mailbox::refuse_with(host, p, &f);
        }
    }
    let reply = Reply {
        code: Code::Ok,
        message: r.encode(k).finish(),
    };
    answer(host, p, &reply)
}

fn node_hold_limit(heartbeat: Duration) -> Duration {
    (heartbeat * 50).max(Duration::from_secs(2))
}

/// A switchover whose answer is held.
struct Switch {
    pending: Pending,
    to: u32,
    from_epoch: u64,
    started: Instant,
    /// The last bracket handed over, once `HANDOVER` is sent.
    handed: Option<u64>,
    handed_at: Option<Instant>,
}

/// How long a handed-over switchover waits to hear the new master's epoch
/// before it is answered without it.
fn switch_wait(heartbeat: Duration) -> Duration {
    (heartbeat * 20).clamp(Duration::from_millis(500), Duration::from_secs(3))
}

/// The longest a switchover request is held in all (the node's drain
/// deadline is 1 s; then the wait for the new epoch). Below the driver's
/// answer timeout.
fn switch_limit(heartbeat: Duration) -> Duration {
    Duration::from_secs(1) + switch_wait(heartbeat) + Duration::from_millis(500)
}

/// What a request needs from the loop besides the node.
struct Ctx<'a> {
    heard: &'a Option<(u32, String)>,
    switch: &'a mut Option<Switch>,
    forwarder: &'a mut Forwarder<PeerWait>,
    up: &'a HashSet<u32>,
    links: &'a Links,
    /// The link schema this card speaks.
    schema: u32,
    arbiter: &'a mut dyn Arbiter,
}

/// A refusal of the node as the host sees it: not master (fenced, lease
/// out, draining for a switchover) is `NotMaster` naming the master it
/// knows; anything else is `Device`.
fn refusal(node: &ReplNode, e: &WriteError) -> Failure {
    let detail = format!("replicated card (node {}): {e}", node.node());
    match *e {
        WriteError::NotMaster { epoch, master } => Failure::not_master(master, epoch, detail),
        WriteError::StaleEpoch { epoch, .. } => {
            Failure::not_master(Some(node.node()), epoch, detail)
        }
        WriteError::LeaseExpired | WriteError::Draining => {
            Failure::not_master(None, node.epoch(), detail)
        }
        _ => Failure::new(Code::Device, detail),
    }
}

/// Start a switchover for the request `p` (`None`: answered at once,
/// refused).
fn start_switchover(
    node: &mut ReplNode,
    p: &Pending,
    to: Option<u32>,
    now: Instant,
    switch: &mut Option<Switch>,
) -> Result<(), Failure> {
    if switch.is_some() {
        return Err(Failure::new(
            Code::Invalid,
            "a switchover is already under way",
        ));
    }
    let st = node.status(now);
    if st.role != Role::Master {
        return Err(Failure::not_master(
            st.master,
            st.epoch,
            format!(
                "replicated card (node {}): only the master hands over",
                st.node
            ),
        ));
    }
    let to = match to {
        Some(t) => t,
        None => {
            let slaves: Vec<u32> = st
                .in_sync
                .iter()
                .copied()
                .filter(|n| *n != st.node)
                .collect();
            match slaves.as_slice() {
                [one] => *one,
                [] => {
                    return Err(Failure::new(
                        Code::Invalid,
                        "no slave is in sync: nothing to hand over to",
                    ))
                }
                more => {
                    return Err(Failure::new(
                        Code::Invalid,
                        format!("slaves {more:?} are in sync: name one (--to)"),
                    ))
                }
            }
        }
    };
    node.switchover(now, to)
        .map_err(|e| Failure::new(Code::Invalid, format!("switchover to node {to}: {e}")))?;
    *switch = Some(Switch {
        pending: *p,
        to,
        from_epoch: st.epoch,
        started: now,
        handed: None,
        handed_at: None,
    });
    Ok(())
}

fn fail(
    host: &mut dyn HostMemory,
    mailbox: &Mutex<Mailbox>,
    node: &ReplNode,
    w: Waiter,
    why: &str,
) {
    let p = match w {
        Waiter::Host(p) => p,
        Waiter::Backup(b) => {
            return b.refuse(
                Code::Device,
                &format!("the trim is not durable on the slave: {why}"),
            )
        }
    };
    let p = &p;
    let (code, len) = mailbox::refuse(
        host,
        p,
        Code::Device,
        &format!("the store is not durable on the slave: {why}"),
    );
    let mut mb = lock(mailbox);
    mailbox::publish(&mut mb, node.replica());
    mb.finish(p, code, len);
}

/// Who waits for a bracket to be durable: a host request (its mailbox
/// slot) or a backup reader's trim.
enum Waiter {
    Host(Pending),
    Backup(BackupRequest),
}

/// Answers held until their bracket is durable: (epoch, bracket) → who
/// waits, the answer, since when.
type Held = HashMap<(u64, u64), (Waiter, Reply, Instant)>;

/// What a backup reader's request needs from the loop besides the node.
struct BackupCtx<'a> {
    local: &'a LocalMemory,
    heard: &'a Option<(u32, String)>,
    /// The link schema this card speaks.
    schema: u32,
}

/// Run one backup reader's request (seed 001) on the replicated card's
/// manager: reads on any card, a trim on the master only (streamed,
/// answered when durable); a slave names its master in the refusal.
fn backup(node: &mut ReplNode, b: BackupRequest, now: Instant, held: &mut Held, ctx: BackupCtx) {
    let mut window = WindowHost(ctx.local.clone());
    let status = b.message.get(3) == Some(&kind::STATUS);
    match card::serve_backup(
        node,
        now,
        &mut window,
        &b.message,
        b.challenge,
        backup_window(),
    ) {
        Ok(Answer::Now(reply)) if status => {
            let reply = with_peer(reply, node, now, ctx.heard, ctx.schema);
            b.answer(ctx.local, reply)
        }
        Ok(Answer::Now(reply)) => b.answer(ctx.local, reply),
        Ok(Answer::AtDurable {
            reply,
            epoch,
            bracket,
        }) => {
            held.insert((epoch, bracket), (Waiter::Backup(b), reply, now));
        }
        Err(e) => b.refuse_with(&refusal(node, &e)),
    }
}

type ReplNode = Node<hitless_firmware::manager::MemoryManager<super::LocalController>>;

/// Run one host request; `None`: held until its bracket is durable.
fn request(
    node: &mut ReplNode,
    host: &mut ServiceHost,
    p: &Pending,
    now: Instant,
    held: &mut Held,
    ctx: Ctx<'_>,
) -> Option<(Code, u32)> {
    if p.req_len == 0 || p.req_len > MAX_MESSAGE {
        return Some((Code::BadMessage, 0));
    }
    let mut req = vec![0u8; p.req_len as usize];
    if let Err(e) = host.read(p.req_addr, &mut req) {
        tracing::warn!(
            "request unreadable: {}",
            hitless_firmware::manager::chain(&e)
        );
        return Some((Code::HostMemory, 0));
    }
    let status = req.get(3) == Some(&kind::STATUS);
    if req.get(3) == Some(&kind::SWITCHOVER) {
        let to = match Message::decode(&req).map(|m| Request::decode(&m)) {
            Ok(Ok(Request::Switchover { to })) => to,
            Ok(Err(e)) => return Some(mailbox::refuse(host, p, e.code(), &e.to_string())),
            _ => return Some(mailbox::refuse(host, p, Code::BadMessage, "SWITCHOVER")),
        };
        return match start_switchover(node, p, to, now, ctx.switch) {
            Ok(()) => None,
            Err(f) => Some(mailbox::refuse_with(host, p, &f)),
        };
    }
    if req.get(3) == Some(&kind::PROMOTE) {
        let accept = match Message::decode(&req).map(|m| Request::decode(&m)) {
            Ok(Ok(Request::Promote { accept_lost_warm })) => accept_lost_warm,
            Ok(Err(e)) => return Some(mailbox::refuse(host, p, e.code(), &e.to_string())),
            _ => return Some(mailbox::refuse(host, p, Code::BadMessage, "PROMOTE")),
        };
        let reply = match promote(node, now, accept, ctx.switch.is_some(), ctx.arbiter) {
            Ok(r) => Reply {
                code: Code::Ok,
                message: r.encode(kind::PROMOTE).finish(),
            },
            Err(f) => return Some(mailbox::refuse_with(host, p, &f)),
        };
        return Some(answer(host, p, &reply));
    }
    match card::serve(node, now, host, &req) {
        Ok(Answer::Now(reply)) if status => {
            let reply = with_peer(reply, node, now, ctx.heard, ctx.schema);
            Some(answer(host, p, &reply))
        }
        Ok(Answer::Now(reply)) => match node.replica_mut().take_peer_op() {
            // A STORE, RESTORE, DELETE or LIST for a peer card's memory:
            // sent to it, the
            // host answered when it answers (or at once, refused).
            Some(op) => {
                let peer = op.peer();
                let k = req.get(3).copied().unwrap_or(0);
                // Both ends must speak the peer-set kinds.
                let schema = node.peer_schema(peer).map(|s| s.min(ctx.schema));
                match ctx
                    .forwarder
                    .send(now, op, (*p, k), ctx.up.contains(&peer), schema)
                {
                    Ok((to, msg)) => {
                        ctx.links.send(to, msg);
                        None
                    }
                    Err(d) => Some(peer_answer(host, p, k, d.answer, d.write)),
                }
            }
            None => Some(answer(host, p, &reply)),
        },
        Ok(Answer::AtDurable {
            reply,
            epoch,
            bracket,
        }) => {
            held.insert((epoch, bracket), (Waiter::Host(*p), reply, now));
            None
        }
        Err(e) => Some(mailbox::refuse_with(host, p, &refusal(node, &e))),
    }
}

/// Refuse the host request `p` with `Device` and the reason.
fn device(host: &mut ServiceHost, mailbox: &Mutex<Mailbox>, p: &Pending, why: &str) {
    let (code, len) = mailbox::refuse(host, p, Code::Device, why);
    lock(mailbox).finish(p, code, len);
}

/// The operator's promotion of this card (`hitless peer promote`).
fn promote(
    node: &mut ReplNode,
    now: Instant,
    accept_lost_warm: bool,
    switching: bool,
    arbiter: &mut dyn Arbiter,
) -> Result<Response, Failure> {
    let me = node.node();
    if switching {
        return Err(Failure::new(
            Code::Invalid,
            format!("node {me}: a switchover is under way"),
        ));
    }
    match node.promote(now, arbiter, accept_lost_warm) {
        Ok(p) => {
            tracing::warn!(node = me, epoch = p.epoch, lost = ?p.lost_warm, "promoted by the operator");
            Ok(Response::Promoted {
                node: me,
                epoch: p.epoch,
                from_epoch: p.from_epoch,
                lost_warm: p.lost_warm.and_then(|i| match i {
                    Inconsistency::LostWarm { sets, log } => Some(LostWarm { sets, log }),
                    Inconsistency::MixedBrackets => None,
                }),
            })
        }
        Err(e) => {
            let detail = format!("node {me}: {e}");
            Err(match e {
                PromoteError::Arbiter(ArbiterError::Held { holder, epoch, .. }) => {
                    Failure::not_master(Some(holder), epoch, detail)
                }
                PromoteError::Arbiter(ArbiterError::Unreachable) | PromoteError::Accept(_) => {
                    Failure::new(Code::Device, detail)
                }
                _ => Failure::new(Code::Invalid, detail),
            })
        }
    }
}

/// A host's STORE/RESTORE endpoint: 0 or this node is this card, a
/// peer's node id that peer's memory (000 claims 13-15).
fn set_endpoints(
    mm: &mut hitless_firmware::manager::MemoryManager<super::LocalController>,
    pair: &PairConfig,
) {
    mm.set_endpoints(Endpoints {
        own: pair.node,
        peers: pair.peers.iter().map(|p| p.0).collect(),
    });
}

/// The card was reset (a warm reset or a power cycle: the simulator's
/// reset count moved): the manager is rebuilt from NV, as at a card boot,
/// and the node restarts on it ([`Node::restart`]: standby at its mark,
/// dirty if the power cycle lost warm sets; a master steps down). `Err`:
/// the manager could not start (the loop tries again).
fn after_reset(
    r: &mut Runner,
    node: &mut ReplNode,
    pair: &PairConfig,
    mailbox: &Mutex<Mailbox>,
    up: &HashSet<u32>,
    now: Instant,
) -> Result<(), String> {
    let published = lock(mailbox).nonce;
    tracing::warn!(
        node = pair.node,
        "card reset: restarting the firmware on its NV state"
    );
    let mut failure = String::from("not started");
    for _ in 0..3 {
        match r.boot(published) {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(node = pair.node, "firmware restart: {e}");
                failure = e;
            }
        }
    }
    let Some(mut mm) = r.mm.take() else {
        return Err(failure);
    };
    set_endpoints(&mut mm, pair);
    let up: Vec<u32> = up.iter().copied().collect();
    drop(node.restart(now, mm, &up));
    let st = node.status(now);
    tracing::warn!(
        node = pair.node,
        mark = ?st.mark,
        inconsistency = ?node.replica().inconsistency(),
        epoch = st.epoch,
        "restarted after the reset"
    );
    mailbox::publish(&mut lock(mailbox), node.replica());
    Ok(())
}

/// A STATUS answer with the card's replication state added (`PEER`).
fn with_peer(
    reply: Reply,
    node: &ReplNode,
    now: Instant,
    heard: &Option<(u32, String)>,
    schema: u32,
) -> Reply {
    if reply.code != Code::Ok {
        return reply;
    }
    let Ok(m) = Message::decode(&reply.message) else {
        return reply;
    };
    let Ok(Ok(Response::Status(mut s))) = Response::decode(kind::STATUS, &m) else {
        return reply;
    };
    let st = node.status(now);
    s.peer = Some(PeerReport {
        node: st.node,
        role: st.role as u32,
        epoch: st.epoch,
        master: st.master,
        in_sync: st.in_sync.iter().filter(|n| **n != st.node).count() as u32,
        lag_brackets: u32::try_from(st.lag.brackets).unwrap_or(u32::MAX),
        mark_epoch: st.mark.epoch,
        mark_bracket: st.mark.bracket,
    });
    s.peer_notes = PeerNotes {
        lag_bytes: (st.role == Role::Master).then_some(st.lag.bytes),
        cause: st.cause.clone(),
        cause_heard: heard.clone(),
        link_schema: Some(schema),
    };
    Reply {
        code: Code::Ok,
        message: Response::Status(s).encode(kind::STATUS).finish(),
    }
}
