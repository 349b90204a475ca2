//! Sets stored in the peer card's memory (seed 000, claims 13-15), the
//! link side, sans-IO like the rest of the replication code.
//!
//! The origin card's loop takes the [`PeerOp`] the manager left for a host
//! STORE, RESTORE, DELETE or LIST whose endpoint names a peer and gives it
//! to a [`Forwarder`], which makes it one `PEER_STORE`, `PEER_FETCH`,
//! `PEER_DELETE` or `PEER_LIST` link message and holds the host's answer
//! until the peer's `PEER_ANSWER` (a list: its last `PEER_LISTED` page)
//! comes (matched by request number), the deadline passes, or the link
//! goes down. The peer card's loop answers with [`serve`]: the memory
//! manager stores or deletes the set (durable before the answer is sent),
//! reads it back, or lists a page of the sets it holds.
//!
//! These messages are not the replication stream: they carry no epoch and
//! no bracket, a set stored this way is not streamed to anyone (it lives
//! where the host sent it), and the node never sees them.

use crate::manager::peer::{set_info, PeerOp};
use crate::manager::{Controller, MemoryManager};
use hitless_hdl::contract::MAX_TRANSFER;
use hitless_proto::link::{LinkMessage, Role, SetRecord, MAX_LISTED};
use hitless_proto::message::Failure;
use hitless_proto::msg::{Code, SetInfo, TierSel};
use hitless_proto::Response;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The link schema that has the peer-set messages (STORE, RESTORE).
pub const PEER_SET_SCHEMA: u32 = 4;
/// The link schema that has DELETE and LIST on a peer.
pub const PEER_LIST_SCHEMA: u32 = 5;
/// The most sets a host's LIST of a peer takes (both of the peer's
/// tiers full): a peer that pages on past it is refused.
pub const MAX_PEER_LIST: usize = 2 * crate::manager::MAX_SETS;
/// Requests waiting for their peer's answer at most (more are refused).
pub const MAX_WAITING: usize = 64;

/// A host request answered: write `write` to host memory first (a
/// fetch's bytes), then answer with `answer`.
#[derive(Debug)]
pub struct Done<T> {
    pub tag: T,
    pub answer: Result<Response, Failure>,
    pub write: Option<(u64, Vec<u8>)>,
}

#[derive(Debug)]
enum What {
    Store {
        len: u32,
        crc: u32,
    },
    Fetch {
        addr: u64,
        cap: u32,
    },
    Delete,
    /// The pages so far, and what the next page's request needs.
    List {
        app: u32,
        endpoint: u32,
        sets: Vec<SetInfo>,
    },
}

#[derive(Debug)]
struct Waiting<T> {
    tag: T,
    peer: u32,
    until: Instant,
    what: What,
}

/// The origin's requests in flight to peer cards; `T` is what the loop
/// needs to answer the host (its mailbox slot).
#[derive(Debug)]
pub struct Forwarder<T> {
    next: u64,
    waiting: BTreeMap<u64, Waiting<T>>,
    deadline: Duration,
    /// Messages to send that no host request started (a list's next
    /// page): the loop sends them after each `receive`.
    outbox: Vec<(u32, Vec<u8>)>,
}

impl<T> Forwarder<T> {
    /// `deadline`: how long a request waits for its answer.
    pub fn new(deadline: Duration) -> Self {
        Self {
            next: 1,
            waiting: BTreeMap::new(),
            deadline,
            outbox: Vec::new(),
        }
    }

    /// The next message to send that no host request started (a list's
    /// next page), with its peer.
    pub fn poll_transmit(&mut self) -> Option<(u32, Vec<u8>)> {
        if self.outbox.is_empty() {
            None
        } else {
            Some(self.outbox.remove(0))
        }
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Send `op` for the host request `tag`: `Ok` is the peer and the
    /// encoded message to send it; `Err` is the host's answer now (the
    /// link to the peer is down, the peer's schema has no peer sets, too
    /// many waiting), nothing sent, so nothing stored.
    pub fn send(
        &mut self,
        now: Instant,
        op: PeerOp,
        tag: T,
        link_up: bool,
        peer_schema: Option<u32>,
    ) -> Result<(u32, Vec<u8>), Box<Done<T>>> {
        let peer = op.peer();
        let refuse = |tag, detail: String| {
            Box::new(Done {
                tag,
                answer: Err(Failure::new(Code::Device, detail)),
                write: None,
            })
        };
        if !link_up {
            return Err(refuse(
                tag,
                format!("the link to node {peer} is down: nothing was sent to it"),
            ));
        }
        let (needs, what) = match op {
            PeerOp::Store { .. } | PeerOp::Fetch { .. } => {
                (PEER_SET_SCHEMA, "sets stored on a peer need")
            }
            PeerOp::Delete { .. } => (PEER_LIST_SCHEMA, "DELETE on a peer needs"),
            PeerOp::List { .. } => (PEER_LIST_SCHEMA, "LIST on a peer needs"),
        };
        match peer_schema {
            Some(s) if s >= needs => {}
            s => {
                return Err(refuse(
                    tag,
                    format!(
                        "node {peer} speaks link schema {}; {what} {needs} (unsupported there: \
                         nothing was sent, nothing changed)",
                        s.unwrap_or(0)
                    ),
                ))
            }
        }
        if self.waiting.len() >= MAX_WAITING {
            return Err(refuse(
                tag,
                format!("{MAX_WAITING} requests already wait for a peer card"),
            ));
        }
        let request = self.next;
        self.next += 1;
        let (what, msg) = match op {
            PeerOp::Store { set, data, .. } => (
                What::Store {
                    len: data.len() as u32,
                    crc: set.crc,
                },
                LinkMessage::PeerStore { request, set, data },
            ),
            PeerOp::Fetch {
                app,
                object,
                endpoint,
                addr,
                cap,
                ..
            } => (
                What::Fetch { addr, cap },
                // The peer sends the set whatever the host's buffer (the
                // host gets TooSmall with the size it needs); bounded by
                // the largest set a peer stores.
                LinkMessage::PeerFetch {
                    request,
                    app,
                    object,
                    endpoint,
                    cap: MAX_TRANSFER,
                },
            ),
            PeerOp::Delete {
                app,
                object,
                endpoint,
                ..
            } => (
                What::Delete,
                LinkMessage::PeerDelete {
                    request,
                    app,
                    object,
                    endpoint,
                },
            ),
            PeerOp::List { app, endpoint, .. } => (
                What::List {
                    app,
                    endpoint,
                    sets: Vec::new(),
                },
                LinkMessage::PeerList {
                    request,
                    app,
                    endpoint,
                    from: 0,
                },
            ),
        };
        self.waiting.insert(
            request,
            Waiting {
                tag,
                peer,
                until: now + self.deadline,
                what,
            },
        );
        Ok((peer, msg.encode()))
    }

    /// A message from `peer`: the answer to one of ours, if it is one.
    /// An answer from another node than the one asked, or to no request
    /// waiting (late, after its deadline), is dropped. A list page that
    /// is not the last asks for the next one (`poll_transmit`) and keeps
    /// the request waiting, under its first deadline.
    pub fn receive(&mut self, peer: u32, msg: LinkMessage) -> Option<Done<T>> {
        let request = match &msg {
            LinkMessage::PeerAnswer { request, .. } | LinkMessage::PeerListed { request, .. } => {
                *request
            }
            _ => return None,
        };
        if self.waiting.get(&request)?.peer != peer {
            tracing::warn!(
                peer,
                request,
                "a peer-set answer from another node: dropped"
            );
            return None;
        }
        let w = self.waiting.remove(&request)?;
        match msg {
            LinkMessage::PeerAnswer {
                code,
                reason,
                set,
                data,
                ..
            } => Some(answer(w, peer, code, reason, &set, data)),
            LinkMessage::PeerListed { sets, next, .. } => self.page(w, request, sets, next),
            _ => None,
        }
    }

    /// A `PEER_LISTED` page for request `request`: the host's answer
    /// after the last page, else the next page asked for.
    fn page(
        &mut self,
        mut w: Waiting<T>,
        request: u64,
        page: Vec<SetInfo>,
        next: Option<u32>,
    ) -> Option<Done<T>> {
        let peer = w.peer;
        let What::List {
            app,
            endpoint,
            sets,
        } = &mut w.what
        else {
            return Some(protocol(
                w,
                format!("node {peer} sent a list page for another request"),
            ));
        };
        let (app, endpoint) = (*app, *endpoint);
        // Each page goes on from the last (object ids ascending), holds
        // only this application's sets, and the whole is bounded.
        let after = sets.last().map(|s| s.object);
        let in_order = page
            .iter()
            .zip(page.iter().skip(1))
            .all(|(a, b)| a.object < b.object)
            && page.first().zip(after).is_none_or(|(f, a)| f.object > a)
            && next.zip(page.last()).is_none_or(|(n, l)| n > l.object)
            && !(page.is_empty() && next.is_some());
        if page.len() > MAX_LISTED
            || !in_order
            || page.iter().any(|s| s.app != app)
            || sets.len() + page.len() > MAX_PEER_LIST
        {
            return Some(protocol(
                w,
                format!("node {peer} sent a list page out of order, of another application or over the bound"),
            ));
        }
        sets.extend(page);
        match next {
            None => {
                let What::List { sets, .. } = w.what else {
                    return None;
                };
                Some(Done {
                    tag: w.tag,
                    answer: Ok(Response::Sets {
                        sets,
                        data_len: None,
                    }),
                    write: None,
                })
            }
            Some(from) => {
                let msg = LinkMessage::PeerList {
                    request,
                    app,
                    endpoint,
                    from,
                };
                self.outbox.push((peer, msg.encode()));
                self.waiting.insert(request, w);
                None
            }
        }
    }

    /// The requests whose deadline passed: failed. The peer may still
    /// store the set (whole or not at all); the host is told it is not
    /// known.
    pub fn expire(&mut self, now: Instant) -> Vec<Done<T>> {
        let late: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, w)| now >= w.until)
            .map(|(r, _)| *r)
            .collect();
        let deadline = self.deadline;
        self.fail_all(late, |w| {
            format!(
                "node {} did not answer within {deadline:?}: the set may or may not be stored there",
                w.peer
            )
        })
    }

    /// The link to `peer` went down: its requests fail now.
    pub fn link_down(&mut self, peer: u32) -> Vec<Done<T>> {
        let gone: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.peer == peer)
            .map(|(r, _)| *r)
            .collect();
        self.fail_all(gone, |w| {
            format!(
                "the link to node {} went down before it answered: the set may or may not be stored there",
                w.peer
            )
        })
    }

    /// Every request waiting, failed with `why` (the card stops).
    pub fn drain(&mut self, why: &str) -> Vec<Done<T>> {
        let all: Vec<u64> = self.waiting.keys().copied().collect();
        self.fail_all(all, |_| why.to_string())
    }

    fn fail_all(&mut self, ids: Vec<u64>, why: impl Fn(&Waiting<T>) -> String) -> Vec<Done<T>> {
        ids.into_iter()
            .filter_map(|r| self.waiting.remove(&r))
            .map(|w| {
                let detail = why(&w);
                Done {
                    tag: w.tag,
                    answer: Err(Failure::new(Code::Device, detail)),
                    write: None,
                }
            })
            .collect()
    }
}

/// A request answered with something it cannot be the answer to.
fn protocol<T>(w: Waiting<T>, detail: String) -> Done<T> {
    Done {
        tag: w.tag,
        answer: Err(Failure::new(Code::Device, detail)),
        write: None,
    }
}

/// The host's answer to a request `peer` answered.
fn answer<T>(
    w: Waiting<T>,
    peer: u32,
    code: u32,
    reason: String,
    set: &SetRecord,
    data: Vec<u8>,
) -> Done<T> {
    let done = |answer, write| Done {
        tag: w.tag,
        answer,
        write,
    };
    if code != Code::Ok as u32 {
        let code = Code::from_u32(code)
            .filter(|c| *c != Code::Ok && *c != Code::NotMaster)
            .unwrap_or(Code::Device);
        return done(
            Err(Failure::new(code, format!("node {peer}: {reason}"))),
            None,
        );
    }
    match w.what {
        What::Store { len, crc } => {
            if set.crc != crc {
                return done(
                    Err(Failure::new(
                        Code::Device,
                        format!(
                            "node {peer} stored a set of CRC {:#010x}, not {crc:#010x}",
                            set.crc
                        ),
                    )),
                    None,
                );
            }
            done(Ok(Response::Stored { len, crc }), None)
        }
        What::Delete => done(Ok(Response::Done), None),
        What::List { .. } => done(
            Err(Failure::new(
                Code::Device,
                format!("node {peer} answered a LIST without its sets"),
            )),
            None,
        ),
        What::Fetch { addr, cap } => {
            let len = data.len() as u32;
            if hitless_hdl::contract::crc32c(&data) != set.crc {
                return done(
                    Err(Failure::new(
                        Code::Lost,
                        format!("the set node {peer} sent fails its CRC"),
                    )),
                    None,
                );
            }
            if len > cap {
                return done(Err(Failure::too_small(len.into())), None);
            }
            let info = set_info(set, len);
            done(
                Ok(Response::Sets {
                    sets: vec![info],
                    data_len: None,
                }),
                Some((addr, data)),
            )
        }
    }
}

/// The peer's side: answer a `PEER_STORE`, `PEER_FETCH`, `PEER_DELETE`
/// or `PEER_LIST` from another card with this card's memory manager
/// (`role`: this card's). `None`: not a peer-set request. A master
/// refuses: a master stores only its own hosts' sets (the sender is a
/// stale master or a misconfigured pair).
pub fn serve<C: Controller>(
    mm: &mut MemoryManager<C>,
    role: Role,
    msg: LinkMessage,
) -> Option<LinkMessage> {
    let request = match &msg {
        LinkMessage::PeerStore { request, .. }
        | LinkMessage::PeerFetch { request, .. }
        | LinkMessage::PeerDelete { request, .. }
        | LinkMessage::PeerList { request, .. } => *request,
        _ => return None,
    };
    if role == Role::Master {
        return Some(refused(request, master_refuses()));
    }
    let result = match msg {
        LinkMessage::PeerStore { set, data, .. } => {
            mm.store_held(&set, &data).map(|s| (s, Vec::new()))
        }
        LinkMessage::PeerFetch {
            app, object, cap, ..
        } => mm.fetch_held(app, object, cap.min(MAX_TRANSFER)),
        LinkMessage::PeerDelete { app, object, .. } => mm
            .delete_held(app, object)
            .map(|()| (empty_set(), Vec::new())),
        LinkMessage::PeerList { app, from, .. } => {
            let (sets, next) = mm.list_held(app, from);
            return Some(LinkMessage::PeerListed {
                request,
                sets,
                next,
            });
        }
        _ => return None,
    };
    Some(match result {
        Ok((set, data)) => LinkMessage::PeerAnswer {
            request,
            code: Code::Ok as u32,
            reason: String::new(),
            set,
            data,
        },
        Err(f) => refused(request, f),
    })
}

fn refused(request: u64, f: Failure) -> LinkMessage {
    tracing::info!(request, code = ?f.code, "a peer's set request refused: {}", f.detail);
    LinkMessage::PeerAnswer {
        request,
        code: f.code as u32,
        reason: f.detail,
        set: empty_set(),
        data: Vec::new(),
    }
}

fn master_refuses() -> Failure {
    Failure::new(
        Code::Device,
        "this card is its pair's master: it stores only its own hosts' sets",
    )
}

fn empty_set() -> SetRecord {
    SetRecord {
        app: 0,
        object: 0,
        endpoint: 0,
        stage: 0,
        tier: TierSel::Warm as u32,
        version: 0,
        crc: 0,
        stored_us: 0,
    }
}
