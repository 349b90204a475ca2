//! The firmware loop of a replicated card: the same mailbox, but the
//! memory manager lives inside the replication [`Node`], every host request
//! goes through [`card::serve`] (fenced: only the master serves), a sync
//! store's answer is held until its bracket is durable on the slaves
//! ([`Event::Durable`]) and failed on [`Event::SyncTimeout`] or
//! [`Event::Abandoned`]; link frames and connections come from the link
//! thread ([`crate::pair`]) and the node's frames go back to it; the node
//! is ticked every half heartbeat, with the witness as its arbiter.

use super::{lock, Input, Runner, ServiceHost};
use crate::pair::{Links, PairConfig};
use crate::witness::WitnessArbiter;
use hitless_firmware::mailbox::{self, Mailbox, Pending};
use hitless_firmware::manager::{HostMemory, Reply};
use hitless_firmware::replication::card::{self, Answer};
use hitless_firmware::replication::{Arbiter, Config, Event, NoArbiter, Node};
use hitless_hdl::contract::MAX_MESSAGE;
use hitless_proto::msg::{kind, Code};
use hitless_proto::tlv::Message;
use hitless_proto::{PeerReport, Response};
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
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

pub(super) fn run(
    svc: crate::service::CardService,
    mailbox: Arc<Mutex<Mailbox>>,
    rx: Receiver<Input>,
    pair: PairConfig,
    links: Links,
) {
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
    let Some(mm) = r.mm.take() else {
        tracing::error!("the replicated firmware could not start: {failure}");
        {
            let mut mb = lock(&mailbox);
            mb.nonce = published;
            mb.ready = true;
        }
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Input::Request(p)) => {
                    let (code, len) = mailbox::refuse(
                        &mut host,
                        &p,
                        Code::Device,
                        &format!("the firmware could not start: {failure}"),
                    );
                    lock(&mailbox).finish(&p, code, len);
                }
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                _ => {}
            }
        }
    };
    let mut cfg = Config::new(pair.node, pair.peers.iter().map(|p| p.0));
    cfg.mode = pair.mode;
    cfg.heartbeat = pair.heartbeat;
    // A sync store waits for the slave's ack; a witness call may take its
    // deadline inside a tick.
    cfg.sync_deadline = cfg
        .sync_deadline
        .max(cfg.silence() * 2 + witness_deadline(pair.heartbeat));
    let mut node = Node::new(cfg, mm, Instant::now());
    let mut arbiter: Box<dyn Arbiter> = match pair.witness {
        Some(addr) => Box::new(WitnessArbiter::new(
            addr,
            pair.psk,
            witness_deadline(pair.heartbeat),
            pair.heartbeat.max(Duration::from_millis(5)),
        )),
        None => Box::new(NoArbiter),
    };
    {
        let mut mb = lock(&mailbox);
        mailbox::publish(&mut mb, node.replica());
    }
    tracing::info!(node = pair.node, "replicated firmware running");
    let tick_every = (pair.heartbeat / 2).max(Duration::from_millis(1));
    let mut next_tick = Instant::now();
    // Sync answers waiting for their bracket: (epoch, bracket) → request.
    let mut held: HashMap<(u64, u64), (Pending, Reply, Instant)> = HashMap::new();
    let hold_limit = node_hold_limit(pair.heartbeat);
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
            match input.take() {
                Some(Input::Request(p)) => {
                    if let Some((code, len)) = request(&mut node, &mut host, &p, now, &mut held) {
                        let mut mb = lock(&mailbox);
                        mailbox::publish(&mut mb, node.replica());
                        mb.finish(&p, code, len);
                    }
                }
                Some(Input::Frame(peer, f)) => node.receive(now, peer, &f),
                Some(Input::Connected(peer)) => node.connected(now, peer),
                Some(Input::Disconnected(peer)) => node.disconnected(now, peer),
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
        if now >= next_tick {
            node.tick(now, arbiter.as_mut());
            next_tick = Instant::now() + tick_every;
        }
        while let Some((peer, frame)) = node.poll_transmit() {
            links.send(peer, frame);
        }
        while let Some(e) = node.poll_event() {
            match e {
                Event::Durable { epoch, bracket } => {
                    if let Some((p, reply, _)) = held.remove(&(epoch, bracket)) {
                        let (code, len) = answer(&mut host, &p, &reply);
                        let mut mb = lock(&mailbox);
                        mailbox::publish(&mut mb, node.replica());
                        mb.finish(&p, code, len);
                    }
                }
                Event::SyncTimeout { epoch, bracket } | Event::Abandoned { epoch, bracket } => {
                    if let Some((p, _, _)) = held.remove(&(epoch, bracket)) {
                        fail(&mut host, &mailbox, &node, &p, &format!("{e:?}"));
                    }
                }
                other => tracing::info!(node = pair.node, event = ?other, "replication"),
            }
        }
        // Nothing is held forever (the node's deadline should have come).
        let late: Vec<(u64, u64)> = held
            .iter()
            .filter(|(_, (_, _, t))| now.saturating_duration_since(*t) > hold_limit)
            .map(|(k, _)| *k)
            .collect();
        for k in late {
            if let Some((p, _, _)) = held.remove(&k) {
                fail(&mut host, &mailbox, &node, &p, "not durable in time");
            }
        }
    }
    for (_, (p, _, _)) in held.drain() {
        fail(&mut host, &mailbox, &node, &p, "the card is stopping");
    }
    links.stop();
}

fn node_hold_limit(heartbeat: Duration) -> Duration {
    (heartbeat * 50).max(Duration::from_secs(2))
}

fn fail(
    host: &mut dyn HostMemory,
    mailbox: &Mutex<Mailbox>,
    node: &ReplNode,
    p: &Pending,
    why: &str,
) {
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

type ReplNode = Node<hitless_firmware::manager::MemoryManager<super::LocalController>>;

/// Run one host request; `None`: held until its bracket is durable.
fn request(
    node: &mut ReplNode,
    host: &mut ServiceHost,
    p: &Pending,
    now: Instant,
    held: &mut HashMap<(u64, u64), (Pending, Reply, Instant)>,
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
    match card::serve(node, now, host, &req) {
        Ok(Answer::Now(reply)) if status => {
            let reply = with_peer(reply, node, now);
            Some(answer(host, p, &reply))
        }
        Ok(Answer::Now(reply)) => Some(answer(host, p, &reply)),
        Ok(Answer::AtDurable {
            reply,
            epoch,
            bracket,
        }) => {
            held.insert((epoch, bracket), (*p, reply, now));
            None
        }
        Err(e) => Some(mailbox::refuse(
            host,
            p,
            Code::Device,
            &format!("replicated card (node {}): {e}", node.node()),
        )),
    }
}

/// A STATUS answer with the card's replication state added (`PEER`).
fn with_peer(reply: Reply, node: &ReplNode, now: Instant) -> Reply {
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
    Reply {
        code: Code::Ok,
        message: Response::Status(s).encode(kind::STATUS).finish(),
    }
}
