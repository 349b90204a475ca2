//! Whatever bytes arrive on the card-to-card link or at the witness: the
//! link message decoder (every schema), the stream framing however it is
//! chunked, the Noise framing, the channel's handshake and transport, the
//! witness messages, and the replication node receiving them, as slave
//! and as master, must answer with a value or an error, never panic; a
//! decoded message re-encodes to one that decodes to itself.
//!
//! The peer-set messages (schemas 4, 5) go to a forwarder with requests
//! waiting (a store, a fetch, a delete, a list), as the card's loop gives
//! them.
//!
//! The first byte chooses: raw bytes (every decoder over them), or a
//! sequence of well-formed link messages built from the bytes (so the
//! node's role logic is reached, not only its decoder).
#![no_main]

use hitless_firmware::manager::peer::PeerOp;
use hitless_firmware::replication::channel::{Channel, Handshake, NoiseReader, Step};
use hitless_firmware::replication::peer_sets::Forwarder;
use hitless_firmware::replication::replica::MemReplica;
use hitless_firmware::replication::{Config, LocalArbiter, Mode, Node};
use hitless_proto::link::{self, FrameReader, LinkMessage, RefuseCode, Role, SetRecord};
use hitless_proto::witness::WitnessMessage;
use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const KEY: [u8; 32] = [7u8; 32];

/// One established channel (a handshake per input would cost most of the
/// run): garbage must never open on it.
fn channel() -> &'static Mutex<Channel> {
    static C: OnceLock<Mutex<Channel>> = OnceLock::new();
    C.get_or_init(|| {
        let (a, m1) = Handshake::initiate(&KEY).expect("initiator");
        let b = Handshake::respond(&KEY).expect("responder");
        let mut r = NoiseReader::default();
        r.push(&m1);
        let Ok(Step::Done(m2, _cb)) = b.read(&r.next_message().expect("message 1")) else {
            panic!("NNpsk0 takes two messages");
        };
        r.push(&m2);
        let Ok(Step::Done(_, ca)) = a.read(&r.next_message().expect("message 2")) else {
            panic!("NNpsk0 takes two messages");
        };
        Mutex::new(ca)
    })
}

fn role(b: u8) -> Role {
    match b % 3 {
        0 => Role::Master,
        1 => Role::Slave,
        _ => Role::Standby,
    }
}

/// A well-formed link message from 16 bytes: small epochs and bracket ids
/// so that they meet the node's own.
fn message(b: &[u8; 16]) -> LinkMessage {
    let epoch = u64::from(b[1] % 4);
    let bracket = u64::from(b[2] % 8);
    let small = |i: usize, m: u8| u32::from(b[i] % m);
    let data = b[8..8 + usize::from(b[7] % 8)].to_vec();
    let set = SetRecord {
        app: small(3, 3),
        object: small(4, 4),
        endpoint: small(5, 3),
        stage: small(6, 2),
        tier: small(6, 2),
        version: u64::from(b[3]),
        crc: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        stored_us: 0,
    };
    match b[0] % 19 {
        0 => LinkMessage::Hello {
            node: 2,
            schema: 1 + small(3, 3),
            epoch,
            role: role(b[4]),
            applied: bracket,
            applied_epoch: u64::from(b[5] % 4),
        },
        1 => LinkMessage::Heartbeat {
            epoch,
            bracket,
            time_us: u64::from(b[3]),
            lag: u64::from(b[4] % 4),
            role: (b[5] & 1 == 1).then(|| role(b[6])),
        },
        2 => LinkMessage::Open {
            epoch,
            bracket,
            full: b[3] & 1 == 1,
        },
        3 => LinkMessage::Put {
            bracket,
            set: SetRecord {
                app: small(3, 3),
                object: small(4, 4),
                endpoint: 0,
                stage: small(5, 2),
                tier: small(6, 2),
                version: u64::from(b[3]),
                crc: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
                stored_us: 0,
            },
            data,
        },
        4 => LinkMessage::Delete {
            bracket,
            app: small(3, 3),
            object: small(4, 4),
        },
        5 => LinkMessage::LogAppend {
            bracket,
            app: small(3, 3),
            object: small(4, 4),
            tier: small(5, 2),
            offset: small(6, 64),
            data,
        },
        6 => LinkMessage::LogTrim {
            bracket,
            tier: small(3, 2),
            to: small(4, 64),
        },
        7 => LinkMessage::Secret {
            bracket,
            app: small(3, 3),
            secret: [b[4]; 32],
        },
        8 => LinkMessage::Close {
            epoch,
            bracket,
            changes: small(3, 4),
            digest: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        },
        9 => LinkMessage::Ack { epoch, bracket },
        10 => LinkMessage::Refuse {
            epoch,
            code: match b[3] % 4 {
                0 => RefuseCode::StaleEpoch,
                1 => RefuseCode::Protocol,
                2 => RefuseCode::Apply,
                _ => RefuseCode::Other,
            },
            reason: String::from_utf8_lossy(&b[8..12]).into_owned(),
        },
        11 => LinkMessage::Cause {
            epoch,
            reason: String::from_utf8_lossy(&b[8..12]).into_owned(),
        },
        12 => LinkMessage::Handover { epoch, bracket },
        13 => LinkMessage::PeerStore {
            request: bracket,
            set,
            data,
        },
        14 => LinkMessage::PeerFetch {
            request: bracket,
            app: small(3, 3),
            object: small(4, 4),
            endpoint: small(5, 3),
            cap: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        },
        15 => LinkMessage::PeerDelete {
            request: bracket,
            app: small(3, 3),
            object: small(4, 4),
            endpoint: small(5, 3),
        },
        16 => LinkMessage::PeerList {
            request: bracket,
            app: small(3, 3),
            endpoint: small(5, 3),
            from: small(4, 4),
        },
        17 => LinkMessage::PeerListed {
            request: bracket,
            // Pages of up to three sets of object ids 0..8, in any order,
            // of app 1 or another.
            sets: (0..usize::from(b[6] % 4))
                .map(|i| hitless_proto::msg::SetInfo {
                    app: small(3, 2),
                    object: u32::from(b[8 + i] % 8),
                    endpoint: 2,
                    stage: 0,
                    tier: hitless_proto::msg::TierSel::Warm,
                    len: 0,
                    crc: 0,
                    data_offset: 0,
                })
                .collect(),
            next: (b[5] & 1 == 1).then(|| small(4, 8)),
        },
        _ => LinkMessage::PeerAnswer {
            request: bracket,
            code: small(3, 20),
            reason: String::from_utf8_lossy(&b[12..14]).into_owned(),
            set,
            data,
        },
    }
}

/// Answers (or anything else) from peer 2 to a forwarder with a store, a
/// fetch, a delete and a list waiting: each answers its request once, or
/// nothing; a list's next pages are bounded by what arrives.
fn forward(frames: &[(u8, Vec<u8>)], now: Instant) {
    let mut fwd = Forwarder::<u32>::new(Duration::from_millis(50));
    let op = |i: u32| match i % 4 {
        1 => PeerOp::Fetch {
            peer: 2,
            app: 1,
            object: 1,
            endpoint: 2,
            addr: 0,
            cap: 16,
        },
        2 => PeerOp::Delete {
            peer: 2,
            app: 1,
            object: 1,
            endpoint: 2,
        },
        3 => PeerOp::List {
            peer: 2,
            app: 1,
            endpoint: 2,
        },
        _ => PeerOp::Store {
            peer: 2,
            set: SetRecord {
                app: 1,
                object: 1,
                endpoint: 2,
                stage: 0,
                tier: 0,
                version: 0,
                crc: 0,
                stored_us: 0,
            },
            data: Vec::new(),
        },
    };
    let mut open = 0;
    for i in 0..4u32 {
        if fwd.send(now, op(i), i, true, Some(link::SCHEMA)).is_ok() {
            open += 1;
        }
    }
    let mut answered = 0;
    for (_, f) in frames {
        if let Ok(m) = LinkMessage::decode(f) {
            if let Some(d) = fwd.receive(2, m) {
                answered += 1;
                if let Some((_, bytes)) = d.write {
                    assert!(bytes.len() <= 16, "more than the host's buffer");
                }
            }
            while let Some((to, next)) = fwd.poll_transmit() {
                assert_eq!(to, 2, "a list's next page goes to the node asked");
                LinkMessage::decode(&next).expect("the next page's request decodes");
            }
        }
    }
    let late = fwd.expire(now + Duration::from_millis(50)).len();
    assert_eq!(answered + late, open, "every request answered once");
}

/// Node 1 (peer 2): a slave, or a master bootstrapped by the arbiter.
fn node(master: bool, now: Instant) -> (Node<MemReplica>, LocalArbiter) {
    let mut cfg = Config::new(1, [2]);
    cfg.mode = Mode::Sync;
    let mut n = Node::new(cfg, MemReplica::default(), now);
    let mut arb = LocalArbiter::new([1, 2], Duration::from_millis(100), Duration::from_millis(5));
    n.connected(now, 2);
    if master {
        let _ = n.bootstrap(now, &mut arb);
    }
    (n, arb)
}

/// Feed messages to the node, advancing time, draining its output.
fn drive(
    n: &mut Node<MemReplica>,
    arb: &mut LocalArbiter,
    now: &mut Instant,
    frames: &[(u8, Vec<u8>)],
) {
    for (step, f) in frames {
        *now += Duration::from_millis(u64::from(*step % 32));
        n.receive(*now, 2, f);
        if step & 0x20 != 0 {
            n.tick(*now, arb);
        }
        if step & 0x40 != 0 {
            n.disconnected(*now, 2);
            n.connected(*now, 2);
        }
        while let Some((_, out)) = n.poll_transmit() {
            // What the node sends decodes.
            LinkMessage::decode(&out).expect("the node's own message decodes");
        }
        while n.poll_event().is_some() {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    if mode & 1 == 1 {
        // Well-formed messages, 16 bytes each, to a slave and a master.
        let frames: Vec<(u8, Vec<u8>)> = rest
            .chunks_exact(16)
            .map(|c| {
                let b: &[u8; 16] = c.try_into().expect("16 bytes");
                let m = message(b);
                let bytes = m.encode_as(1 + u32::from(b[15]) % link::SCHEMA);
                (b[14], bytes)
            })
            .collect();
        for master in [false, true] {
            let mut t = now;
            let (mut n, mut arb) = node(master, t);
            drive(&mut n, &mut arb, &mut t, &frames);
        }
        forward(&frames, now);
        return;
    }
    // A link message: a value or an error; a decoded one re-encodes to a
    // message that decodes, and that one re-encodes to itself (the first
    // re-encoding may normalise: a HELLO never claims a schema above the
    // writer's), and it decodes in every schema.
    if let Ok(m) = LinkMessage::decode(rest) {
        let again = LinkMessage::decode(&m.encode()).expect("a re-encoded message decodes");
        assert_eq!(
            LinkMessage::decode(&again.encode()).ok(),
            Some(again.clone())
        );
        assert_eq!(again.kind(), m.kind());
        for schema in 1..=link::SCHEMA {
            let _ = LinkMessage::decode_as(rest, schema);
            let _ = LinkMessage::decode_as(&m.encode_as(schema), schema);
        }
    }
    // The stream framing, chunked as the mode byte says.
    let mut r = FrameReader::default();
    let step = usize::from(mode >> 1) % 64 + 1;
    'stream: for chunk in rest.chunks(step) {
        r.push(chunk);
        loop {
            match r.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.len() <= link::MAX_FRAME);
                    let _ = LinkMessage::decode(&f);
                }
                Ok(None) => break,
                Err(_) => break 'stream,
            }
        }
    }
    // The Noise framing and the channel: garbage never opens.
    let mut nr = NoiseReader::default();
    nr.push(rest);
    let mut c = channel().lock().unwrap_or_else(|p| p.into_inner());
    while let Some(m) = nr.next_message() {
        assert!(c.open(&m).is_err(), "an unauthenticated message opened");
    }
    drop(c);
    // A handshake answered with garbage: an error or a step.
    if let Ok(h) = Handshake::respond(&KEY) {
        let _ = h.read(rest);
    }
    // The witness's messages.
    if let Ok(w) = WitnessMessage::decode(rest) {
        assert_eq!(WitnessMessage::decode(&w.encode()).ok(), Some(w));
    }
    // The node, as slave and as master, receiving the bytes as frames.
    let frames: Vec<(u8, Vec<u8>)> = {
        let mut r = FrameReader::default();
        r.push(rest);
        let mut v = Vec::new();
        while let Ok(Some(f)) = r.next_frame() {
            v.push((mode, f));
        }
        v.push((mode, rest.to_vec()));
        v
    };
    for master in [false, true] {
        let mut t = now;
        let (mut n, mut arb) = node(master, t);
        drive(&mut n, &mut arb, &mut t, &frames);
    }
    forward(&frames, now);
});
