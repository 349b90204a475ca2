//! `hitless status` and `hitless inspect`: one `Serialize` type each,
//! printed as text or as JSON (`--json`) from the same values.

use hitless_driver::card::status_of;
use hitless_driver::firmware::{Client, Firmware, FwStatus, FwTier};
use hitless_driver::{CardIo, CardStatus, Error, TierStatus};
use hitless_hdl::contract::LIMITS_BITS;
use serde::Serialize;
use std::time::Duration;

/// A tier's committed state as the controller reports it.
#[derive(Serialize)]
struct TierView {
    boot_result: String,
    active_region: &'static str,
    seq: u32,
    region_len: [u32; 2],
    region_crc: [u32; 2],
    log_head: u32,
    log_tail: u32,
}

impl From<&TierStatus> for TierView {
    fn from(t: &TierStatus) -> Self {
        Self {
            boot_result: format!("{:?}", t.result),
            active_region: if t.active == 0 { "A" } else { "B" },
            seq: t.seq,
            region_len: t.region_len,
            region_crc: t.region_crc,
            log_head: t.log_head,
            log_tail: t.log_tail,
        }
    }
}

impl TierView {
    fn active(&self) -> usize {
        usize::from(self.active_region == "B")
    }
}

/// A tier's record table as the firmware reports it.
#[derive(Serialize)]
struct TableView {
    state: &'static str,
    sets: u32,
    image_bytes: u32,
}

impl From<&FwTier> for TableView {
    fn from(t: &FwTier) -> Self {
        Self {
            state: t.state_name(),
            sets: t.sets,
            image_bytes: t.image_bytes,
        }
    }
}

/// The firmware's part of the status.
#[derive(Serialize)]
#[serde(untagged)]
enum FirmwareView {
    Ok {
        warm: TableView,
        cold: TableView,
        requests: u32,
        auth_failures: u32,
        stores: u32,
        announced_stage: Option<u32>,
    },
    Failed {
        error: String,
    },
}

impl From<&FwStatus> for FirmwareView {
    fn from(f: &FwStatus) -> Self {
        FirmwareView::Ok {
            warm: (&f.warm).into(),
            cold: (&f.cold).into(),
            requests: f.requests,
            auth_failures: f.auth_fails,
            stores: f.stores,
            announced_stage: f.announced,
        }
    }
}

/// `hitless status`.
#[derive(Serialize)]
struct StatusView {
    card: String,
    version: String,
    limits: u32,
    /// What a reduced controller lacks (empty on the full controller).
    lacks: Vec<&'static str>,
    boot_done: bool,
    busy: bool,
    ring_error: bool,
    ops_ok: u32,
    ops_failed: u32,
    warm: TierView,
    cold: TierView,
    /// `null`: the card has no firmware (a controller only).
    firmware: Option<FirmwareView>,
}

impl StatusView {
    fn new(card: String, s: &CardStatus, fw: Option<Result<FwStatus, Error>>) -> Self {
        Self {
            card,
            version: format!("{}.{}", s.version >> 16, s.version & 0xFFFF),
            limits: s.limits,
            lacks: LIMITS_BITS
                .iter()
                .filter(|(_, bit, _)| s.limits & bit != 0)
                .map(|(_, _, doc)| doc.trim_end_matches('.'))
                .collect(),
            boot_done: s.boot_done,
            busy: s.busy,
            ring_error: s.ring_error,
            ops_ok: s.ops_ok,
            ops_failed: s.ops_failed,
            warm: (&s.warm).into(),
            cold: (&s.cold).into(),
            firmware: fw.map(|r| match r {
                Ok(f) => (&f).into(),
                Err(e) => FirmwareView::Failed { error: e.chain() },
            }),
        }
    }

    fn print_text(&self) {
        println!("card: {} (contract {})", self.card, self.version);
        if !self.lacks.is_empty() {
            println!("controller: reduced ({})", self.lacks.join("; "));
        }
        println!("operations: {} ok, {} failed", self.ops_ok, self.ops_failed);
        for (name, t) in [("warm", &self.warm), ("cold", &self.cold)] {
            let a = t.active();
            println!(
                "{name}: {}; seq {}, active region {}, {} bytes, crc {:#010x}; log {} bytes unread",
                t.boot_result,
                t.seq,
                t.active_region,
                t.region_len[a],
                t.region_crc[a],
                t.log_head.wrapping_sub(t.log_tail)
            );
        }
        match &self.firmware {
            None => println!("firmware: none (controller only)"),
            Some(f) => f.print_text(),
        }
    }
}

impl FirmwareView {
    fn print_text(&self) {
        match self {
            FirmwareView::Failed { error } => println!("firmware: {error}"),
            FirmwareView::Ok {
                warm,
                cold,
                requests,
                auth_failures,
                stores,
                announced_stage,
            } => {
                for (name, t) in [("warm", warm), ("cold", cold)] {
                    println!(
                        "firmware {name} tier: {}, {} sets, {} bytes",
                        t.state, t.sets, t.image_bytes
                    );
                }
                println!(
                    "firmware: {requests} requests, {auth_failures} refused for credentials, \
                     {stores} stores, stage {}",
                    announced_stage.map_or("not announced".to_string(), |s| s.to_string())
                );
            }
        }
    }
}

pub(crate) fn print_json(v: &impl Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| Error::InvalidArgument(format!("JSON output: {e}")))?;
    println!("{text}");
    Ok(())
}

/// `hitless status` through hitlessd: the firmware's part (the daemon
/// gives no register access).
#[derive(Serialize)]
struct FirmwareStatusView {
    card: String,
    firmware: FirmwareView,
}

pub fn firmware_status(mut fw: Box<dyn Firmware>, json: bool) -> Result<(), Error> {
    let view = FirmwareStatusView {
        card: fw.describe(),
        firmware: (&fw.status()?).into(),
    };
    if json {
        return print_json(&view);
    }
    println!("card: {}", view.card);
    view.firmware.print_text();
    Ok(())
}

/// A replicated card's replication state, as `hitless peer status` shows it.
#[derive(Serialize)]
struct PeerView {
    card: String,
    /// False: the card has no peer (not started with `--node`).
    replicated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    master: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_sync_slaves: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag_brackets: Option<u32>,
    /// The last bracket applied (slave) or closed (master): `[epoch, id]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    mark: Option<[u64; 2]>,
    /// A master: bytes not yet acknowledged by every slave.
    #[serde(skip_serializing_if = "Option::is_none")]
    lag_bytes: Option<u64>,
    /// Why this card's takeover was not hitless (claim 18).
    #[serde(skip_serializing_if = "Option::is_none")]
    takeover_cause: Option<String>,
    /// The node that took over from this card and the cause it sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    taken_over_by: Option<TakenOver>,
    /// The link schema the card speaks (its booted image decides it).
    #[serde(skip_serializing_if = "Option::is_none")]
    link_schema: Option<u32>,
}

#[derive(Serialize)]
struct TakenOver {
    node: u32,
    cause: String,
}

pub fn peer_status(mut fw: Box<dyn Firmware>, json: bool) -> Result<(), Error> {
    let card = fw.describe();
    let st = fw.status()?;
    let p = st.peer;
    let notes = st.peer_notes;
    let master = p.filter(|p| p.role == 0);
    let view = PeerView {
        card,
        replicated: p.is_some(),
        node: p.map(|p| p.node),
        role: p.map(|p| p.role_name()),
        epoch: p.map(|p| p.epoch),
        // Whom a slave follows; a master's in-sync set and lag.
        master: p.filter(|p| p.role != 0).and_then(|p| p.master),
        in_sync_slaves: master.map(|p| p.in_sync),
        lag_brackets: master.map(|p| p.lag_brackets),
        mark: p.map(|p| [p.mark_epoch, p.mark_bracket]),
        lag_bytes: master.and(notes.lag_bytes),
        takeover_cause: notes.cause,
        taken_over_by: notes
            .cause_heard
            .map(|(node, cause)| TakenOver { node, cause }),
        link_schema: notes.link_schema,
    };
    if json {
        return print_json(&view);
    }
    println!("card: {}", view.card);
    match p {
        None => println!("not replicated (no peer)"),
        Some(p) => {
            println!("node {}: {} in epoch {}", p.node, p.role_name(), p.epoch);
            if let Some(m) = view.master {
                println!("master: node {m}");
            }
            if let (Some(n), Some(l)) = (view.in_sync_slaves, view.lag_brackets) {
                match view.lag_bytes {
                    Some(b) => println!("in-sync slaves: {n}, lag: {l} brackets, {b} bytes"),
                    None => println!("in-sync slaves: {n}, lag: {l} brackets"),
                }
            }
            println!("last bracket: {}@{}", p.mark_bracket, p.mark_epoch);
            if let Some(v) = view.link_schema {
                println!("link schema: {v}");
            }
            if let Some(c) = &view.takeover_cause {
                println!("took over, not hitless: {c}");
            }
            if let Some(t) = &view.taken_over_by {
                println!("taken over by node {}: {}", t.node, t.cause);
            }
        }
    }
    Ok(())
}

pub fn status(mut io: Box<dyn CardIo>, timeout: Duration, json: bool) -> Result<(), Error> {
    let s = status_of(&mut io)?;
    let fw = match Client::open(&mut io, timeout) {
        Ok(mut c) => Some(c.status()),
        Err(Error::NoFirmware { .. }) => None,
        Err(e) => Some(Err(e)),
    };
    let view = StatusView::new(io.describe(), &s, fw);
    if json {
        return print_json(&view);
    }
    view.print_text();
    Ok(())
}

/// One tier's superblock, as `inspect` shows it.
#[derive(Serialize)]
struct SuperblockView {
    result: String,
    seq: u32,
    active: u8,
    /// `[len, crc]` of regions A and B.
    regions: [[u32; 2]; 2],
    /// `[tail, head]`.
    log: [u32; 2],
}

impl From<&TierStatus> for SuperblockView {
    fn from(t: &TierStatus) -> Self {
        Self {
            result: format!("{:?}", t.result),
            seq: t.seq,
            active: t.active,
            regions: [
                [t.region_len[0], t.region_crc[0]],
                [t.region_len[1], t.region_crc[1]],
            ],
            log: [t.log_tail, t.log_head],
        }
    }
}

#[derive(Serialize)]
struct GeometryView {
    region_size: u32,
    log_size: u32,
    region_a: u32,
    region_b: u32,
    log: u32,
    data: u32,
    data_size: u32,
}

#[derive(Serialize)]
struct Pair<T> {
    warm: T,
    cold: T,
}

/// `hitless inspect`.
#[derive(Serialize)]
struct InspectView {
    geometry: GeometryView,
    superblocks: Pair<SuperblockView>,
    record_tables: Option<Pair<TableView>>,
}

pub fn inspect(mut io: Box<dyn CardIo>, timeout: Duration, json: bool) -> Result<(), Error> {
    let s = status_of(&mut io)?;
    let g = s.geometry;
    let fw = match Client::open(&mut io, timeout) {
        Ok(mut c) => c.status().ok(),
        Err(_) => None,
    };
    let view = InspectView {
        geometry: GeometryView {
            region_size: g.region_size,
            log_size: g.log_size,
            region_a: g.region_a_base(),
            region_b: g.region_b_base(),
            log: g.log_base(),
            data: g.data_base(),
            data_size: g.data_size,
        },
        superblocks: Pair {
            warm: (&s.warm).into(),
            cold: (&s.cold).into(),
        },
        record_tables: fw.map(|f| Pair {
            warm: (&f.warm).into(),
            cold: (&f.cold).into(),
        }),
    };
    if json {
        return print_json(&view);
    }
    let g = &view.geometry;
    println!(
        "geometry: regions of {} bytes at {:#x} and {:#x}, log of {} bytes at {:#x}, \
         data area of {} bytes at {:#x}",
        g.region_size, g.region_a, g.region_b, g.log_size, g.log, g.data_size, g.data
    );
    for (name, t) in [
        ("warm", &view.superblocks.warm),
        ("cold", &view.superblocks.cold),
    ] {
        println!(
            "{name} superblock: {}, seq {}, active {}; A {} bytes crc {:#010x}; B {} bytes crc {:#010x}; log tail {} head {}",
            t.result,
            t.seq,
            if t.active == 0 { 'A' } else { 'B' },
            t.regions[0][0],
            t.regions[0][1],
            t.regions[1][0],
            t.regions[1][1],
            t.log[0],
            t.log[1]
        );
    }
    if let Some(tables) = &view.record_tables {
        for (name, t) in [("warm", &tables.warm), ("cold", &tables.cold)] {
            println!(
                "{name} record table: {}, {} sets in {} bytes",
                t.state, t.sets, t.image_bytes
            );
        }
    }
    Ok(())
}

/// `hitless peer switchover`: what the old master answered.
#[derive(Serialize)]
struct SwitchoverView {
    card: String,
    /// The node that is master now.
    master: u32,
    /// The old master's epoch.
    from_epoch: u64,
    /// The new master's epoch, as the old master heard it (absent: the
    /// role was handed over but the new epoch not heard yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
    /// The last bracket handed over: every one up to it is on the new
    /// master.
    bracket: u64,
}

pub fn peer_switchover(
    mut fw: Box<dyn Firmware>,
    to: Option<u32>,
    json: bool,
) -> Result<(), Error> {
    let card = fw.describe();
    let s = fw.switchover(to)?;
    let view = SwitchoverView {
        card,
        master: s.to,
        from_epoch: s.from_epoch,
        epoch: s.epoch,
        bracket: s.bracket,
    };
    if json {
        return print_json(&view);
    }
    match view.epoch {
        Some(e) => println!(
            "node {} is master in epoch {e} (was epoch {}); this card ({}) is its slave; every bracket up to {} handed over",
            view.master, view.from_epoch, view.card, view.bracket
        ),
        None => println!(
            "handed over to node {} (every bracket up to {} acknowledged by it); its new epoch was not heard yet: check `hitless peer status`",
            view.master, view.bracket
        ),
    }
    Ok(())
}

/// `hitless peer promote`: what the promoted card answered.
#[derive(Serialize)]
struct PromoteView {
    card: String,
    /// The card's node id: the master now.
    master: u32,
    epoch: u64,
    /// The newest epoch the card knew before (equal: it was master).
    from_epoch: u64,
    /// What the operator accepted to lose (absent: nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    lost_warm: Option<LostWarmView>,
}

#[derive(Serialize)]
struct LostWarmView {
    /// Warm sets lost (absent: the card did not count them).
    #[serde(skip_serializing_if = "Option::is_none")]
    sets: Option<u32>,
    log: bool,
}

pub fn peer_promote(
    mut fw: Box<dyn Firmware>,
    accept_lost_warm: bool,
    json: bool,
) -> Result<(), Error> {
    let card = fw.describe();
    let p = fw.promote(accept_lost_warm)?;
    let view = PromoteView {
        card,
        master: p.node,
        epoch: p.epoch,
        from_epoch: p.from_epoch,
        lost_warm: p.lost_warm.map(|l| LostWarmView {
            sets: l.sets,
            log: l.log,
        }),
    };
    if json {
        return print_json(&view);
    }
    if view.epoch == view.from_epoch {
        println!(
            "node {} ({}) is master already, in epoch {}",
            view.master, view.card, view.epoch
        );
        return Ok(());
    }
    println!(
        "node {} ({}) is master in epoch {} (was epoch {}); the old master is fenced",
        view.master, view.card, view.epoch, view.from_epoch
    );
    if let Some(l) = p.lost_warm {
        println!("accepted as lost: {l}; the cold sets are served as of the last bracket");
    }
    Ok(())
}
