//! The memory manager (seed 000, claims 1-12, 16-24; seed 001, claims 5,
//! 6, 9, 13-20): it owns the controller, keeps a record table per tier,
//! and turns requests into the controller's operations.
//!
//! Storing a set in tier T:
//! 1. build the new image in T's alternate region: WRITE the new table
//!    head, COPY every unchanged set from the active region (shifted when an
//!    earlier set changed size), WRITE the new set from the host buffer;
//!    every piece is checked against its CRC by the controller (`CHECK`);
//! 2. FLIP: the alternate becomes active (superblock written last);
//! 3. mirror: COPY the new active image to the new alternate and FLIP again
//!    with the image CRC, so both regions hold the same table (claim 5) and
//!    an active region that later fails its integrity test falls back to an
//!    identical copy.
//!
//! Recovery rules (applied when the firmware starts, after every reset):
//! - a tier whose active region fails the boot scan is served from the
//!   alternate (the controller's FELL_BACK), then re-mirrored;
//! - a tier whose two regions disagree (a cut between FLIP and mirror) is
//!   re-mirrored from the active one;
//! - a set found in both tiers (a cut between storing it in one and
//!   deleting it from the other) is taken from the higher store version;
//! - a set whose bytes fail their CRC at read time is read from the
//!   alternate region instead.

use crate::auth::{self, SECRET_BYTES};
use crate::msg::{self, flags, kind, tag, Code, LogInfo, SetInfo, TierSel};
use crate::records::{align8, head_len, plan, Entry, SetKey, Step, Table, HEADER};
use crate::tlv::{Builder, Message};
use hitless_hdl::contract::{
    self, crc32c, flags as dflags, perm, reg, tier_state, BootResult, Completion, Descriptor,
    NvGeometry, Opcode, Status, MAX_TRANSFER, PT_ENTRIES,
};
use hitless_hdl::model::parse_log;
use rand::{Rng, RngCore, SeedableRng};
use std::collections::BTreeMap;

/// The firmware's view of the controller: its registers, its descriptor
/// path, and some card-local memory the controller can DMA from and to.
/// Implemented by the simulator (in-process, over the Verilated AXI4-Lite
/// port), by a UIO mapping on a Zynq board, or by the host itself over the
/// UART bridge on boards without a CPU.
pub trait Controller {
    fn read32(&mut self, offset: u32) -> Result<u32, String>;
    fn write32(&mut self, offset: u32, value: u32) -> Result<(), String>;
    /// Run one descriptor to completion (any status); errors are transport
    /// failures or timeouts.
    fn execute(&mut self, d: Descriptor) -> Result<Completion, String>;
    /// Controller-visible address and size of the firmware's scratch memory.
    fn scratch(&self) -> (u64, usize);
    fn scratch_write(&mut self, offset: usize, data: &[u8]) -> Result<(), String>;
    fn scratch_read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), String>;
}

/// The requesting host's memory (request messages, responses, log data).
pub trait HostMemory {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), String>;
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), String>;
}

/// Why the firmware itself could not run (not a request's failure).
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("controller: {0}")]
    Controller(String),
    #[error("controller refused {what}: {status:?}")]
    Refused { what: &'static str, status: Status },
}

/// The protection entry the firmware uses for region operations.
const FW_REGION_ENTRY: u32 = 0;
/// The protection entry of the append-log window.
const FW_LOG_ENTRY: u32 = 1;
/// Application id the firmware keeps its own records under (secrets).
pub const SYSTEM_APP: u32 = 0;
/// Reboot stage of records never delivered (the firmware's own).
pub const NEVER: u32 = u32::MAX;
/// Most sets a tier's table holds (keeps the head under 200 KiB).
pub const MAX_SETS: usize = 4096;
/// Bytes of the tag the firmware puts before a log payload: app, object, 0.
const LOG_TAG: usize = 16;
/// Scratch layout: table heads and reads at 0, data the firmware itself
/// sends (secrets, tagged log records) from here.
const STAGING: usize = 256 * 1024;
/// Scratch memory the firmware needs.
pub const SCRATCH_BYTES: usize = STAGING + MAX_TRANSFER as usize;

/// An unread log record with the firmware's tag taken off.
struct Tagged {
    offset: u32,
    seq: u64,
    app: u32,
    object: u32,
    payload: Vec<u8>,
}

/// A request's failure: its code and a detail for the response.
#[derive(Debug)]
struct Fail(Code, String);

type R<T> = Result<T, Fail>;

fn fail<T>(code: Code, detail: impl Into<String>) -> R<T> {
    Err(Fail(code, detail.into()))
}

fn ctl(e: String) -> Fail {
    Fail(Code::Device, format!("controller: {e}"))
}

/// A tier as the firmware sees it.
#[derive(Clone, Debug)]
enum TierView {
    Ready(Table),
    /// Both regions failed their integrity test: nothing to read; the next
    /// store starts an empty table.
    Lost,
    /// The active image is not a record table (written raw by `Card`).
    Foreign(String),
}

#[derive(Clone, Copy, Debug)]
struct Session {
    handle: u32,
    app: u32,
    perms: u32,
    key: u32,
    /// Request count when it was last used (least recently used goes first).
    used: u32,
}

/// Counters the STATUS request reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u32,
    pub auth_fails: u32,
    pub stores: u32,
    pub sessions: u32,
}

/// What a handled request leaves for the mailbox.
#[derive(Debug)]
pub struct Reply {
    pub code: Code,
    pub message: Vec<u8>,
}

/// The memory manager.
pub struct MemoryManager<C: Controller> {
    ctl: C,
    geometry: NvGeometry,
    tiers: [TierView; 2],
    version: u64,
    sessions: [Option<Session>; PT_ENTRIES as usize],
    opened: u32,
    secrets: BTreeMap<u32, [u8; SECRET_BYTES]>,
    announced: Option<u32>,
    nonce: u64,
    rng: rand::rngs::StdRng,
    fw_key: u32,
    log_key: u32,
    pub counters: Counters,
}

fn tier_flag(t: TierSel) -> u8 {
    match t {
        TierSel::Warm => 0,
        TierSel::Cold => dflags::COLD,
    }
}

fn other(t: TierSel) -> TierSel {
    match t {
        TierSel::Warm => TierSel::Cold,
        TierSel::Cold => TierSel::Warm,
    }
}

/// A tier's committed state as the controller's registers show it.
#[derive(Clone, Copy, Debug)]
struct TierRegs {
    result: BootResult,
    active: usize,
    len: [u32; 2],
    crc: [u32; 2],
    log_head: u32,
    log_tail: u32,
}

impl<C: Controller> MemoryManager<C> {
    /// Start the firmware on a controller whose boot scan is done: program
    /// its protection entries and load both tiers' tables (healing them).
    pub fn start(mut ctl: C, seed: u64) -> Result<Self, FirmwareError> {
        if ctl.scratch().1 < SCRATCH_BYTES {
            return Err(FirmwareError::Controller(format!(
                "{} bytes of scratch memory, the firmware needs {SCRATCH_BYTES}",
                ctl.scratch().1
            )));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let geometry = NvGeometry {
            region_size: ctl
                .read32(reg::NV_REGION_SIZE)
                .map_err(FirmwareError::Controller)?,
            log_size: ctl
                .read32(reg::NV_LOG_SIZE)
                .map_err(FirmwareError::Controller)?,
        };
        let all_tiers = perm::VALID | perm::WARM | perm::COLD;
        let fw_key = program(
            &mut ctl,
            FW_REGION_ENTRY,
            rng.gen(),
            0,
            geometry.region_size,
            all_tiers | perm::READ | perm::WRITE | perm::COMMIT | perm::REGION,
        )?;
        let log_key = program(
            &mut ctl,
            FW_LOG_ENTRY,
            rng.gen(),
            geometry.log_base(),
            geometry.log_size,
            all_tiers | perm::READ | perm::LOG,
        )?;
        // Session entries start invalid (a warm reset cleared them; a
        // firmware restart without one must not leave old keys usable).
        for i in 2..PT_ENTRIES {
            program(&mut ctl, i, 0, 0, 0, 0)?;
        }
        let nonce = rng.gen();
        let mut mm = Self {
            ctl,
            geometry,
            tiers: [TierView::Lost, TierView::Lost],
            version: 0,
            sessions: [None; PT_ENTRIES as usize],
            opened: 0,
            secrets: BTreeMap::new(),
            announced: None,
            nonce,
            rng,
            fw_key,
            log_key,
            counters: Counters::default(),
        };
        for t in [TierSel::Warm, TierSel::Cold] {
            let view = mm
                .load(t)
                .map_err(|Fail(_, d)| FirmwareError::Controller(d))?;
            mm.tiers[t as usize] = view;
        }
        mm.load_secrets();
        tracing::info!(
            warm = ?mm.describe(TierSel::Warm),
            cold = ?mm.describe(TierSel::Cold),
            "firmware started"
        );
        Ok(mm)
    }

    /// Give back the controller (to restart the firmware on it).
    pub fn into_controller(self) -> C {
        self.ctl
    }

    /// The challenge the next authenticated request must be signed with.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// Keep the challenge a previous run of the firmware published (a
    /// restart triggered by a request must accept that request's MAC).
    pub fn keep_challenge(&mut self, nonce: u64) {
        self.nonce = nonce;
    }

    pub fn geometry(&self) -> NvGeometry {
        self.geometry
    }

    fn describe(&self, t: TierSel) -> String {
        match &self.tiers[t as usize] {
            TierView::Ready(tab) => format!("{} sets, {} bytes", tab.sets.len(), tab.end()),
            TierView::Lost => "lost".into(),
            TierView::Foreign(d) => format!("foreign image ({d})"),
        }
    }

    // ---- controller operations -------------------------------------

    /// Run one descriptor; a status other than OK is `DEVICE`.
    fn op(&mut self, d: Descriptor, what: &str) -> R<Completion> {
        self.op_with(d, what, |_| None)
    }

    /// Run one descriptor; `special` turns the statuses a caller expects
    /// into their own failures, any other status but OK is `DEVICE`.
    fn op_with(
        &mut self,
        d: Descriptor,
        what: &str,
        special: impl Fn(Status) -> Option<Fail>,
    ) -> R<Completion> {
        let c = self.ctl.execute(d).map_err(ctl)?;
        match c.status() {
            Some(Status::Ok) => Ok(c),
            Some(s) => Err(special(s).unwrap_or_else(|| {
                Fail(Code::Device, format!("{what}: {s:?} ({})", s.describe()))
            })),
            None => fail(Code::Device, format!("{what}: status {}", c.status)),
        }
    }

    fn tier_regs(&mut self, t: TierSel) -> R<TierRegs> {
        let base = match t {
            TierSel::Warm => reg::WARM_STATE,
            TierSel::Cold => reg::COLD_STATE,
        };
        let mut r = |x: u32| self.ctl.read32(base + (x - reg::WARM_STATE)).map_err(ctl);
        let st = r(reg::WARM_STATE)?;
        Ok(TierRegs {
            result: BootResult::from_bits(st),
            active: ((st >> tier_state::ACTIVE_SHIFT) & 1) as usize,
            len: [r(reg::WARM_A_LEN)?, r(reg::WARM_B_LEN)?],
            crc: [r(reg::WARM_A_CRC)?, r(reg::WARM_B_CRC)?],
            log_head: r(reg::WARM_LOG_HEAD)?,
            log_tail: r(reg::WARM_LOG_TAIL)?,
        })
    }

    /// READ `len` bytes of a tier's region (active, or alternate with
    /// `alt`) into scratch at 0 and return them.
    fn read_region(&mut self, t: TierSel, off: u32, len: u32, alt: bool) -> R<Vec<u8>> {
        let (base, size) = self.ctl.scratch();
        if len as usize > size {
            return fail(
                Code::Invalid,
                format!("{len} bytes exceed the scratch memory"),
            );
        }
        self.op(
            Descriptor {
                opcode: Opcode::Read as u8,
                flags: tier_flag(t) | if alt { dflags::ALT } else { 0 },
                key: self.fw_key,
                host_addr: base,
                nv_offset: off,
                len,
                ..Default::default()
            },
            "read the table",
        )?;
        let mut out = vec![0u8; len as usize];
        self.ctl.scratch_read(0, &mut out).map_err(ctl)?;
        Ok(out)
    }

    /// Read a tier's table head from its active region.
    fn load(&mut self, t: TierSel) -> R<TierView> {
        let st = self.tier_regs(t)?;
        let (len, crc) = (st.len[st.active], st.crc[st.active]);
        let view = match st.result {
            BootResult::Lost => return Ok(TierView::Lost),
            BootResult::Empty => return Ok(TierView::Ready(Table::default())),
            _ if len == 0 => TierView::Ready(Table::default()),
            _ if (len as usize) < HEADER => TierView::Foreign(format!("an image of {len} bytes")),
            _ => {
                let first = self.read_region(t, 0, HEADER as u32, false)?;
                match Table::count(&first) {
                    Err(e) => TierView::Foreign(e.to_string()),
                    Ok(n) if head_len(n) > len as usize || n > MAX_SETS => {
                        TierView::Foreign(format!("a head of {n} sets in {len} bytes"))
                    }
                    Ok(n) => {
                        let head = self.read_region(t, 0, head_len(n) as u32, false)?;
                        match Table::decode_head(&head, len as usize) {
                            Ok(tab) => TierView::Ready(tab),
                            Err(e) => TierView::Foreign(e.to_string()),
                        }
                    }
                }
            }
        };
        if let TierView::Ready(tab) = &view {
            self.version = tab
                .sets
                .values()
                .map(|e| e.version)
                .fold(self.version, u64::max);
            let other = st.active ^ 1;
            if st.result == BootResult::FellBack || (st.len[other], st.crc[other]) != (len, crc) {
                tracing::warn!(tier = t.name(), result = ?st.result, "regions differ: re-mirroring");
                self.mirror(t, len, crc)?;
            }
        }
        Ok(view)
    }

    fn load_secrets(&mut self) {
        let Some(TierView::Ready(tab)) = self.tiers.get(TierSel::Cold as usize).cloned() else {
            return;
        };
        for (k, e) in tab.sets.range(
            SetKey {
                app: SYSTEM_APP,
                object: 0,
            }..=SetKey {
                app: SYSTEM_APP,
                object: u32::MAX,
            },
        ) {
            if e.len as usize != SECRET_BYTES {
                continue;
            }
            match self.read_set(TierSel::Cold, e) {
                Ok(bytes) => {
                    let mut s = [0u8; SECRET_BYTES];
                    s.copy_from_slice(&bytes);
                    self.secrets.insert(k.object, s);
                }
                Err(Fail(_, d)) => tracing::warn!(app = k.object, "secret unreadable: {d}"),
            }
        }
    }

    /// Copy the active image to the alternate region and commit it there
    /// too, checked against the image CRC (claim 5).
    fn mirror(&mut self, t: TierSel, len: u32, crc: u32) -> R<()> {
        let mut off = 0;
        while off < len {
            let n = (len - off).min(MAX_TRANSFER);
            self.op(
                Descriptor {
                    opcode: Opcode::Copy as u8,
                    flags: tier_flag(t)
                        | if t == TierSel::Cold {
                            dflags::SRC_COLD
                        } else {
                            0
                        },
                    key: self.fw_key,
                    nv_offset: off,
                    aux: off,
                    len: n,
                    ..Default::default()
                },
                "mirror copy",
            )?;
            off += n;
        }
        self.op(
            Descriptor {
                opcode: Opcode::Flip as u8,
                flags: tier_flag(t) | dflags::CHECK,
                key: self.fw_key,
                len,
                crc,
                ..Default::default()
            },
            "mirror commit",
        )?;
        Ok(())
    }

    /// Build `new` in tier `t`'s alternate region from the active `old`
    /// plus the changed set's bytes at `data` (through protection key
    /// `data_key`), flip, mirror.
    fn commit(
        &mut self,
        t: TierSel,
        old: &Table,
        new: &Table,
        changed: Option<SetKey>,
        data: (u64, u32),
    ) -> R<()> {
        let end = new.end() as u32;
        let src_cold = if t == TierSel::Cold {
            dflags::SRC_COLD
        } else {
            0
        };
        for step in plan(old, new, changed) {
            let d = match step {
                Step::Head { bytes } => {
                    if new.sets.is_empty() {
                        continue;
                    }
                    self.ctl.scratch_write(0, &bytes).map_err(ctl)?;
                    Descriptor {
                        opcode: Opcode::Write as u8,
                        flags: tier_flag(t) | dflags::CHECK,
                        key: self.fw_key,
                        host_addr: self.ctl.scratch().0,
                        len: bytes.len() as u32,
                        crc: crc32c(&bytes),
                        ..Default::default()
                    }
                }
                Step::Copy { src, dst, len, crc } => Descriptor {
                    opcode: Opcode::Copy as u8,
                    flags: tier_flag(t) | src_cold | dflags::CHECK,
                    key: self.fw_key,
                    nv_offset: dst,
                    aux: src,
                    len,
                    crc,
                    ..Default::default()
                },
                Step::Data { dst, len, crc } => Descriptor {
                    opcode: Opcode::Write as u8,
                    flags: tier_flag(t) | dflags::CHECK,
                    key: data.1,
                    host_addr: data.0,
                    nv_offset: dst,
                    len,
                    crc,
                    ..Default::default()
                },
            };
            let copy = d.opcode == Opcode::Copy as u8;
            self.op_with(d, "building the image", |st| match st {
                Status::CrcMismatch if copy => Some(Fail(
                    Code::Device,
                    "a stored set failed its CRC while being copied; the active region \
                     is damaged (reset the card to fall back to the alternate)"
                        .into(),
                )),
                Status::CrcMismatch => Some(Fail(
                    Code::Invalid,
                    "the data's CRC does not match DATA_CRC (changed or corrupted in transit)"
                        .into(),
                )),
                _ => None,
            })?;
        }
        let c = self.op(
            Descriptor {
                opcode: Opcode::Flip as u8,
                flags: tier_flag(t),
                key: self.fw_key,
                len: end,
                ..Default::default()
            },
            "commit",
        )?;
        self.counters.stores += 1;
        // The new image is committed: the table is `new` whatever the
        // mirror does (a failed mirror is redone at the next start).
        self.tiers[t as usize] = TierView::Ready(new.clone());
        self.mirror(t, end, c.crc)
    }

    /// Store (or replace) one set in tier `t`; the other tier's copy, if
    /// any, is deleted after.
    fn store(&mut self, t: TierSel, key: SetKey, mut e: Entry, data: (u64, u32)) -> R<()> {
        let old = match &self.tiers[t as usize] {
            TierView::Ready(tab) => tab.clone(),
            TierView::Lost => Table::default(),
            TierView::Foreign(d) => {
                return fail(
                    Code::Foreign,
                    format!(
                        "the {} tier holds a foreign image ({d}); FORMAT it first",
                        t.name()
                    ),
                )
            }
        };
        if e.len > MAX_TRANSFER {
            return fail(
                Code::Invalid,
                format!("a set is at most {MAX_TRANSFER} bytes, this one {}", e.len),
            );
        }
        self.version += 1;
        e.version = self.version;
        let mut new = old.clone();
        new.sets.insert(key, e);
        if new.sets.len() > MAX_SETS {
            return fail(
                Code::NoSpace,
                format!("a tier holds at most {MAX_SETS} sets"),
            );
        }
        if new.relayout() > self.geometry.region_size as usize {
            return fail(
                Code::NoSpace,
                format!(
                    "the {} tier's image would be {} bytes, the region holds {}",
                    t.name(),
                    new.end(),
                    self.geometry.region_size
                ),
            );
        }
        self.commit(t, &old, &new, Some(key), data)?;
        self.remove(other(t), key)
    }

    /// Remove a set from one tier (no-op when it is not there).
    fn remove(&mut self, t: TierSel, key: SetKey) -> R<()> {
        let TierView::Ready(old) = &self.tiers[t as usize] else {
            return Ok(());
        };
        if !old.sets.contains_key(&key) {
            return Ok(());
        }
        let old = old.clone();
        let mut new = old.clone();
        new.sets.remove(&key);
        new.relayout();
        self.commit(t, &old, &new, None, (0, 0))
    }

    /// Where a set lives now: the newer copy when both tiers have one.
    fn lookup(&self, key: SetKey) -> Option<(TierSel, Entry)> {
        [TierSel::Warm, TierSel::Cold]
            .into_iter()
            .filter_map(|t| match &self.tiers[t as usize] {
                TierView::Ready(tab) => tab.sets.get(&key).map(|e| (t, *e)),
                _ => None,
            })
            .max_by_key(|(_, e)| e.version)
    }

    /// All current sets of one application (newest copy of each).
    fn sets_of(&self, app: u32) -> Vec<(SetKey, TierSel, Entry)> {
        let mut out: BTreeMap<SetKey, (TierSel, Entry)> = BTreeMap::new();
        for t in [TierSel::Warm, TierSel::Cold] {
            if let TierView::Ready(tab) = &self.tiers[t as usize] {
                for (k, e) in tab.sets.range(
                    SetKey { app, object: 0 }..=SetKey {
                        app,
                        object: u32::MAX,
                    },
                ) {
                    if out.get(k).is_none_or(|(_, o)| o.version < e.version) {
                        out.insert(*k, (t, *e));
                    }
                }
            }
        }
        out.into_iter().map(|(k, (t, e))| (k, t, e)).collect()
    }

    /// READ a set into `addr` with the controller checking its CRC; from
    /// the alternate region when the active copy fails (claim 8).
    fn deliver(&mut self, t: TierSel, e: &Entry, addr: u64, key: u32) -> R<()> {
        if e.len == 0 {
            return Ok(());
        }
        for alt in [false, true] {
            let read = Descriptor {
                opcode: Opcode::Read as u8,
                flags: tier_flag(t) | dflags::CHECK | if alt { dflags::ALT } else { 0 },
                key,
                host_addr: addr,
                nv_offset: e.offset,
                len: e.len,
                crc: e.crc,
                ..Default::default()
            };
            match self.op_with(read, "read", |st| {
                (st == Status::CrcMismatch).then(|| Fail(Code::Lost, String::new()))
            }) {
                Ok(_) => {
                    if alt {
                        tracing::warn!(tier = t.name(), "set served from the alternate region");
                    }
                    return Ok(());
                }
                Err(Fail(Code::Lost, _)) => continue,
                Err(f) => return Err(f),
            }
        }
        fail(
            Code::Lost,
            "the set failed its CRC in both regions".to_string(),
        )
    }

    /// A set's bytes, through scratch (the firmware's own records).
    fn read_set(&mut self, t: TierSel, e: &Entry) -> R<Vec<u8>> {
        let (base, _) = self.ctl.scratch();
        self.deliver(t, e, base, self.fw_key)?;
        let mut out = vec![0u8; e.len as usize];
        self.ctl.scratch_read(0, &mut out).map_err(ctl)?;
        Ok(out)
    }

    // ---- requests --------------------------------------------------

    /// Handle one request message; the reply goes back through the mailbox.
    /// Every request, good or bad, consumes the challenge.
    pub fn handle(&mut self, host: &mut dyn HostMemory, req: &[u8]) -> Reply {
        self.counters.requests = self.counters.requests.wrapping_add(1);
        let challenge = self.nonce;
        self.nonce = self.rng.gen();
        let kind = req.get(3).copied().unwrap_or(0);
        let (code, b) = match Message::decode(req) {
            Err(e) => (
                Code::BadMessage,
                msg::response(kind, Code::BadMessage).bytes(tag::ERROR, e.to_string().as_bytes()),
            ),
            Ok(m) => match self.dispatch(host, &m, req, challenge) {
                Ok(b) => (Code::Ok, b),
                Err(Fail(code, detail)) => {
                    if code == Code::AuthFailed {
                        self.counters.auth_fails = self.counters.auth_fails.wrapping_add(1);
                    }
                    tracing::debug!(kind = m.kind, ?code, "{detail}");
                    (
                        code,
                        msg::response(m.kind, code).bytes(tag::ERROR, detail.as_bytes()),
                    )
                }
            },
        };
        Reply {
            code,
            message: b.finish(),
        }
    }

    fn dispatch(
        &mut self,
        host: &mut dyn HostMemory,
        m: &Message<'_>,
        raw: &[u8],
        challenge: u64,
    ) -> R<Builder> {
        let bad = |e: crate::tlv::TlvError| Fail(Code::BadMessage, e.to_string());
        let ok = msg::response(m.kind, Code::Ok);
        match m.kind {
            kind::STATUS => Ok(self.status(ok)),
            kind::STAGE => {
                let stage = m.u32_or(tag::STAGE, 0).map_err(bad)?;
                self.announced = Some(stage);
                let mut sets = Vec::new();
                for t in [TierSel::Warm, TierSel::Cold] {
                    if let TierView::Ready(tab) = &self.tiers[t as usize] {
                        for (k, _) in tab.at_stage(stage) {
                            if k.app == SYSTEM_APP {
                                continue;
                            }
                            if let Some((tt, e)) = self.lookup(*k) {
                                if tt == t && e.stage == stage {
                                    sets.extend_from_slice(&info(k, t, &e, 0).to_bytes());
                                }
                            }
                        }
                    }
                }
                tracing::info!(
                    stage,
                    sets = sets.len() / SetInfo::BYTES,
                    "reboot stage announced"
                );
                Ok(ok.bytes(tag::SETS, &sets))
            }
            kind::OPEN => self.open(m, raw, challenge, ok),
            _ => {
                let s = self.authenticate(m, raw, challenge)?;
                self.session_request(host, m, s, ok)
            }
        }
    }

    fn status(&mut self, mut b: Builder) -> Builder {
        let mut tiers = Vec::new();
        for t in [TierSel::Warm, TierSel::Cold] {
            let regs = self.tier_regs(t).ok();
            let (state, n, end) = match &self.tiers[t as usize] {
                TierView::Ready(tab) => (0u32, tab.sets.len() as u32, tab.end() as u32),
                TierView::Lost => (1, 0, 0),
                TierView::Foreign(_) => (2, 0, 0),
            };
            for v in [
                state,
                regs.map_or(0, |r| r.result as u32),
                n,
                end,
                regs.map_or(0, |r| r.log_head),
                regs.map_or(0, |r| r.log_tail),
            ] {
                tiers.extend_from_slice(&v.to_le_bytes());
            }
        }
        let c = self.counters;
        let mut counters = Vec::new();
        for v in [c.requests, c.auth_fails, c.stores, self.opened] {
            counters.extend_from_slice(&v.to_le_bytes());
        }
        b = b.bytes(tag::TIERS, &tiers).bytes(tag::COUNTERS, &counters);
        if let Some(s) = self.announced {
            b = b.u32(tag::ANNOUNCED, s);
        }
        b
    }

    fn open(&mut self, m: &Message<'_>, raw: &[u8], challenge: u64, ok: Builder) -> R<Builder> {
        let bad = |e: crate::tlv::TlvError| Fail(Code::BadMessage, e.to_string());
        let app = m.u32_or(tag::APP, SYSTEM_APP).map_err(bad)?;
        let want = m
            .u32_or(tag::FLAGS, flags::READ | flags::WRITE | flags::LOG)
            .map_err(bad)?;
        if app == SYSTEM_APP {
            return fail(Code::Invalid, "application id 0 is the firmware's own");
        }
        if want & !flags::ALL != 0 {
            return fail(Code::Invalid, format!("unknown flags {want:#x}"));
        }
        // A free entry, else the application's own least recently used
        // session (a client that died without CLOSE must not lock its
        // application out; other applications' sessions are never taken).
        let free = (2..PT_ENTRIES as usize).find(|&i| self.sessions[i].is_none());
        let reuse = (2..PT_ENTRIES as usize)
            .filter_map(|i| {
                self.sessions[i]
                    .filter(|s| s.app == app)
                    .map(|s| (s.used, i))
            })
            .min()
            .map(|(_, i)| i);
        let Some(index) = free.or(reuse) else {
            return fail(
                Code::NoSession,
                "every protection entry is in use by other applications; CLOSE a session",
            );
        };
        let mut new_secret = None;
        match self.secrets.get(&app) {
            Some(secret) => {
                if !auth::verify(raw, secret, challenge) {
                    return fail(
                        Code::AuthFailed,
                        format!("OPEN of application {app}: wrong MAC"),
                    );
                }
            }
            None => {
                // First open: the card makes the application's secret and
                // keeps it in the cold tier (it must outlive power cycles).
                let mut s = [0u8; SECRET_BYTES];
                self.rng.fill_bytes(&mut s);
                self.ctl.scratch_write(STAGING, &s).map_err(ctl)?;
                let e = Entry {
                    endpoint: 0,
                    stage: NEVER,
                    flags: flags::COLD,
                    len: SECRET_BYTES as u32,
                    crc: crc32c(&s),
                    offset: 0,
                    version: 0,
                };
                let (base, _) = self.ctl.scratch();
                let fw_key = self.fw_key;
                self.store(
                    TierSel::Cold,
                    SetKey {
                        app: SYSTEM_APP,
                        object: app,
                    },
                    e,
                    (base + STAGING as u64, fw_key),
                )?;
                self.secrets.insert(app, s);
                new_secret = Some(s);
            }
        }
        let mut perms = perm::VALID | perm::WARM | perm::COLD | perm::REGION;
        if want & flags::READ != 0 {
            perms |= perm::READ;
        }
        if want & flags::WRITE != 0 {
            perms |= perm::WRITE | perm::COMMIT;
        }
        if want & flags::LOG != 0 {
            perms |= perm::LOG;
        }
        let tag_bits: u32 = self.rng.gen::<u32>() >> contract::PT_INDEX_BITS;
        let key = program(
            &mut self.ctl,
            index as u32,
            tag_bits,
            0,
            self.geometry.region_size,
            perms,
        )
        .map_err(|e| Fail(Code::Device, e.to_string()))?;
        self.opened = self.opened.wrapping_add(1);
        let handle = (self.opened << contract::PT_INDEX_BITS) | index as u32;
        if let Some(old) = self.sessions[index] {
            tracing::info!(
                app,
                handle = old.handle,
                "session replaced (least recently used)"
            );
        }
        self.sessions[index] = Some(Session {
            handle,
            app,
            perms: want,
            key,
            used: self.counters.requests,
        });
        tracing::info!(app, handle, "session opened");
        let mut b = ok
            .u32(tag::HANDLE, handle)
            .u32(tag::KEY, key)
            .u32(tag::APP, app);
        if let Some(s) = new_secret {
            b = b.bytes(tag::SECRET, &s);
        }
        Ok(b)
    }

    fn authenticate(&mut self, m: &Message<'_>, raw: &[u8], challenge: u64) -> R<Session> {
        let handle = m
            .u32_or(tag::HANDLE, u32::MAX)
            .map_err(|e| Fail(Code::BadMessage, e.to_string()))?;
        let index = (handle & (PT_ENTRIES - 1)) as usize;
        let Some(s) = self.sessions[index].filter(|s| s.handle == handle) else {
            return fail(
                Code::AuthFailed,
                format!("no session with handle {handle:#x}"),
            );
        };
        let Some(secret) = self.secrets.get(&s.app) else {
            return fail(Code::AuthFailed, "the application has no credentials");
        };
        if !auth::verify(raw, secret, challenge) {
            return fail(
                Code::AuthFailed,
                "wrong MAC (wrong secret or stale challenge)",
            );
        }
        let used = self.counters.requests;
        if let Some(live) = self.sessions[index].as_mut() {
            live.used = used;
        }
        Ok(s)
    }

    fn need(s: &Session, f: u32, what: &str) -> R<()> {
        if s.perms & f == 0 {
            return fail(
                Code::Permission,
                format!("the session was not opened for {what}"),
            );
        }
        Ok(())
    }

    fn session_request(
        &mut self,
        host: &mut dyn HostMemory,
        m: &Message<'_>,
        s: Session,
        ok: Builder,
    ) -> R<Builder> {
        let bad = |e: crate::tlv::TlvError| Fail(Code::BadMessage, e.to_string());
        let object = m.u32_or(tag::OBJECT, 0).map_err(bad)?;
        let f = m.u32_or(tag::FLAGS, 0).map_err(bad)?;
        let addr = m.u64_or(tag::DATA_ADDR, 0).map_err(bad)?;
        let cap = m.u32_or(tag::DATA_CAP, 0).map_err(bad)?;
        let key = SetKey { app: s.app, object };
        match m.kind {
            kind::CLOSE => {
                let index = s.handle & (PT_ENTRIES - 1);
                program(&mut self.ctl, index, 0, 0, 0, 0)
                    .map_err(|e| Fail(Code::Device, e.to_string()))?;
                self.sessions[index as usize] = None;
                Ok(ok)
            }
            kind::STORE => {
                Self::need(&s, flags::WRITE, "writing")?;
                let len = m.u32_or(tag::DATA_LEN, 0).map_err(bad)?;
                let crc = m.u32_or(tag::DATA_CRC, crc32c(&[])).map_err(bad)?;
                if len == 0 && crc != crc32c(&[]) {
                    return fail(Code::Invalid, "an empty set has CRC 0");
                }
                let e = Entry {
                    endpoint: m.u32_or(tag::ENDPOINT, 0).map_err(bad)?,
                    stage: m.u32_or(tag::STAGE, 0).map_err(bad)?,
                    flags: f & flags::COLD,
                    len,
                    crc,
                    offset: 0,
                    version: 0,
                };
                self.store(TierSel::of_flags(f), key, e, (addr, s.key))?;
                Ok(ok.u32(tag::DATA_LEN, len).u32(tag::DATA_CRC, crc))
            }
            kind::DELETE => {
                Self::need(&s, flags::WRITE, "writing")?;
                if self.lookup(key).is_none() {
                    return fail(Code::NotFound, format!("no set {}/{}", s.app, object));
                }
                self.remove(TierSel::Warm, key)?;
                self.remove(TierSel::Cold, key)?;
                Ok(ok)
            }
            kind::LIST => {
                Self::need(&s, flags::READ, "reading")?;
                let mut sets = Vec::new();
                for (k, t, e) in self.sets_of(s.app) {
                    sets.extend_from_slice(&info(&k, t, &e, 0).to_bytes());
                }
                Ok(ok.bytes(tag::SETS, &sets))
            }
            kind::RESTORE => {
                Self::need(&s, flags::READ, "reading")?;
                let Some((t, e)) = self.lookup(key) else {
                    return self.missing(key);
                };
                if e.len > cap {
                    return Err(Fail(Code::TooSmall, format!("{} bytes needed", e.len)));
                }
                self.deliver(t, &e, addr, s.key)?;
                Ok(ok.bytes(tag::SETS, &info(&key, t, &e, 0).to_bytes()))
            }
            kind::FETCH => {
                Self::need(&s, flags::READ, "reading")?;
                let stage = m.u32_or(tag::STAGE, 0).map_err(bad)?;
                match self.announced {
                    Some(a) if a >= stage => {}
                    _ => {
                        return fail(
                            Code::NotYet,
                            format!("reboot stage {stage} has not been announced"),
                        )
                    }
                }
                let sets: Vec<_> = self
                    .sets_of(s.app)
                    .into_iter()
                    .filter(|(_, _, e)| e.stage == stage)
                    .collect();
                let needed: usize = sets.iter().map(|(_, _, e)| align8(e.len as usize)).sum();
                if needed > cap as usize {
                    return Err(Fail(Code::TooSmall, format!("{needed} bytes needed")));
                }
                let mut at = 0u32;
                let mut infos = Vec::new();
                for (k, t, e) in sets {
                    let to = addr.checked_add(at as u64).ok_or_else(|| {
                        Fail(
                            Code::Invalid,
                            "the data buffer wraps the address space".into(),
                        )
                    })?;
                    self.deliver(t, &e, to, s.key)?;
                    infos.extend_from_slice(&info(&k, t, &e, at).to_bytes());
                    at += align8(e.len as usize) as u32;
                }
                Ok(ok.bytes(tag::SETS, &infos).u32(tag::DATA_LEN, at))
            }
            kind::LOG_APPEND => {
                Self::need(&s, flags::LOG, "the append log")?;
                let len = m.u32_or(tag::DATA_LEN, 0).map_err(bad)?;
                self.log_append(host, s.app, object, TierSel::of_flags(f), f, addr, len, ok)
            }
            kind::LOG_READ => {
                Self::need(&s, flags::LOG, "the append log")?;
                self.log_read(host, s.app, TierSel::of_flags(f), addr, cap, ok)
            }
            kind::LOG_TRIM => {
                Self::need(&s, flags::LOG, "the append log")?;
                let t = TierSel::of_flags(f);
                let st = self.tier_regs(t)?;
                let to = m.u32_or(tag::TO, st.log_head).map_err(bad)?;
                self.log_trim_checked(t, s.app, to)?;
                let st = self.tier_regs(t)?;
                Ok(ok
                    .u32(tag::LOG_HEAD, st.log_head)
                    .u32(tag::LOG_TAIL, st.log_tail))
            }
            kind::FORMAT => {
                Self::need(&s, flags::WRITE, "writing")?;
                let t = TierSel::of_flags(f);
                // Keep the firmware's own records of a readable table; a
                // foreign or lost tier starts empty.
                let old = match &self.tiers[t as usize] {
                    TierView::Ready(tab) => tab.clone(),
                    _ => Table::default(),
                };
                let mut new = old.clone();
                new.sets.retain(|k, _| k.app == SYSTEM_APP);
                new.relayout();
                self.commit(t, &old, &new, None, (0, 0))?;
                tracing::warn!(tier = t.name(), app = s.app, "tier formatted");
                Ok(ok)
            }
            other => fail(Code::UnknownRequest, format!("request kind {other}")),
        }
    }

    fn missing(&self, key: SetKey) -> R<Builder> {
        let lost: Vec<&str> = [TierSel::Warm, TierSel::Cold]
            .into_iter()
            .filter(|t| matches!(self.tiers[*t as usize], TierView::Lost))
            .map(|t| t.name())
            .collect();
        if lost.is_empty() {
            fail(Code::NotFound, format!("no set {}/{}", key.app, key.object))
        } else {
            fail(
                Code::NotFound,
                format!(
                    "no set {}/{} (the {} tier was lost)",
                    key.app,
                    key.object,
                    lost.join(" and ")
                ),
            )
        }
    }

    // ---- append log ------------------------------------------------

    /// The unread records of a tier's log: (record, app, object, payload).
    fn log_records(&mut self, t: TierSel) -> R<(Vec<Tagged>, TierRegs)> {
        let st = self.tier_regs(t)?;
        let size = self.geometry.log_size;
        let g0 = NvGeometry {
            region_size: 0,
            log_size: size,
        };
        let base = g0.log_base() as usize;
        let mut image = vec![0u8; base + size as usize];
        let unread = st.log_head.wrapping_sub(st.log_tail);
        if unread > size {
            return fail(
                Code::Device,
                "log head is beyond its tail by more than the ring",
            );
        }
        // Read [tail, head) in at most two pieces (the ring wraps), in
        // scratch-sized chunks.
        let (_, scratch) = self.ctl.scratch();
        let mut done = 0u32;
        while done < unread {
            let pos = st.log_tail.wrapping_add(done) % size;
            let n = (unread - done)
                .min(size - pos)
                .min(MAX_TRANSFER)
                .min(scratch as u32);
            // READ needs 8-aligned offsets; records are 8-aligned.
            let (sbase, _) = self.ctl.scratch();
            self.op(
                Descriptor {
                    opcode: Opcode::Read as u8,
                    flags: tier_flag(t),
                    key: self.log_key,
                    host_addr: sbase,
                    nv_offset: pos,
                    len: n,
                    ..Default::default()
                },
                "read the log",
            )?;
            let at = base + pos as usize;
            self.ctl
                .scratch_read(0, &mut image[at..at + n as usize])
                .map_err(ctl)?;
            done += n;
        }
        let recs = parse_log(&image, &g0, st.log_head, st.log_tail)
            .map_err(|e| Fail(Code::Device, format!("log damaged: {e}")))?;
        let mut out = Vec::new();
        for r in recs {
            if !r.crc_ok || r.data.len() < LOG_TAG {
                tracing::warn!(offset = r.offset, "log record fails its CRC; skipped");
                continue;
            }
            let u = |i: usize| {
                u32::from_le_bytes([r.data[i], r.data[i + 1], r.data[i + 2], r.data[i + 3]])
            };
            out.push(Tagged {
                offset: r.offset,
                seq: r.seq,
                app: u(0),
                object: u(4),
                payload: r.data[LOG_TAG..].to_vec(),
            });
        }
        Ok((out, st))
    }

    #[allow(clippy::too_many_arguments)]
    fn log_append(
        &mut self,
        host: &mut dyn HostMemory,
        app: u32,
        object: u32,
        t: TierSel,
        f: u32,
        addr: u64,
        len: u32,
        ok: Builder,
    ) -> R<Builder> {
        let max = MAX_TRANSFER - LOG_TAG as u32;
        if len == 0 || len > max {
            return fail(Code::Invalid, format!("a log record holds 1..={max} bytes"));
        }
        if f & flags::OVERWRITE != 0 {
            // Overwrite mode may only drop this application's records.
            let (recs, _) = self.log_records(t)?;
            if let Some(r) = recs.iter().find(|r| r.app != app) {
                return fail(
                    Code::Foreign,
                    format!(
                        "overwrite would drop application {}'s record at {}",
                        r.app, r.offset
                    ),
                );
            }
        }
        let mut payload = vec![0u8; LOG_TAG + len as usize];
        payload[0..4].copy_from_slice(&app.to_le_bytes());
        payload[4..8].copy_from_slice(&object.to_le_bytes());
        host.read(addr, &mut payload[LOG_TAG..])
            .map_err(|e| Fail(Code::HostMemory, e))?;
        self.ctl.scratch_write(STAGING, &payload).map_err(ctl)?;
        let append = Descriptor {
            opcode: Opcode::Append as u8,
            flags: tier_flag(t),
            key: self.log_key,
            host_addr: self.ctl.scratch().0 + STAGING as u64,
            len: payload.len() as u32,
            ..Default::default()
        };
        let c = self.op_with(append, "append", |st| {
            (st == Status::LogFull).then(|| {
                Fail(
                    Code::LogFull,
                    "the append log is full: the reader must read and trim first".into(),
                )
            })
        })?;
        let offset = c.info;
        if f & flags::OVERWRITE != 0 {
            self.log_trim(t, offset)?;
        }
        let st = self.tier_regs(t)?;
        Ok(ok
            .u32(tag::TO, offset)
            .u32(tag::LOG_HEAD, st.log_head)
            .u32(tag::LOG_TAIL, st.log_tail))
    }

    fn log_trim(&mut self, t: TierSel, to: u32) -> R<()> {
        self.op(
            Descriptor {
                opcode: Opcode::LogTrim as u8,
                flags: tier_flag(t),
                key: self.log_key,
                aux: to,
                ..Default::default()
            },
            "trim the log",
        )?;
        Ok(())
    }

    fn log_trim_checked(&mut self, t: TierSel, app: u32, to: u32) -> R<()> {
        let (recs, st) = self.log_records(t)?;
        if to.wrapping_sub(st.log_tail) > st.log_head.wrapping_sub(st.log_tail) {
            return fail(
                Code::Invalid,
                format!(
                    "trim to {to:#x} is outside the unread log [{:#x}, {:#x}]",
                    st.log_tail, st.log_head
                ),
            );
        }
        let span = to.wrapping_sub(st.log_tail);
        let starts: Vec<u32> = recs.iter().map(|r| r.offset).collect();
        if to != st.log_head && !starts.contains(&to) {
            return fail(Code::Invalid, format!("{to:#x} is not a record boundary"));
        }
        if let Some(r) = recs
            .iter()
            .find(|r| r.offset.wrapping_sub(st.log_tail) < span && r.app != app)
        {
            return fail(
                Code::Foreign,
                format!(
                    "the range holds application {}'s record at {:#x}",
                    r.app, r.offset
                ),
            );
        }
        self.log_trim(t, to)
    }

    fn log_read(
        &mut self,
        host: &mut dyn HostMemory,
        app: u32,
        t: TierSel,
        addr: u64,
        cap: u32,
        ok: Builder,
    ) -> R<Builder> {
        let (recs, st) = self.log_records(t)?;
        let mine: Vec<_> = recs.into_iter().filter(|r| r.app == app).collect();
        let needed: usize = mine.iter().map(|r| align8(r.payload.len())).sum();
        if needed > cap as usize {
            return Err(Fail(Code::TooSmall, format!("{needed} bytes needed")));
        }
        let mut data = Vec::with_capacity(needed);
        let mut infos = Vec::new();
        for Tagged {
            offset,
            seq,
            object,
            payload,
            ..
        } in mine
        {
            let li = LogInfo {
                object,
                offset,
                seq,
                len: payload.len() as u32,
                data_offset: data.len() as u32,
            };
            infos.extend_from_slice(&li.to_bytes());
            data.extend_from_slice(&payload);
            data.resize(align8(data.len()), 0);
        }
        if !data.is_empty() {
            host.write(addr, &data)
                .map_err(|e| Fail(Code::HostMemory, e))?;
        }
        Ok(ok
            .bytes(tag::RECORDS, &infos)
            .u32(tag::DATA_LEN, data.len() as u32)
            .u32(tag::LOG_HEAD, st.log_head)
            .u32(tag::LOG_TAIL, st.log_tail))
    }
}

fn info(k: &SetKey, t: TierSel, e: &Entry, data_offset: u32) -> SetInfo {
    SetInfo {
        app: k.app,
        object: k.object,
        endpoint: e.endpoint,
        stage: e.stage,
        tier: t,
        len: e.len,
        crc: e.crc,
        data_offset,
    }
}

/// Program protection entry `index`; returns its key. `perm == 0` invalidates it.
fn program<C: Controller>(
    ctl: &mut C,
    index: u32,
    tag_bits: u32,
    base: u32,
    len: u32,
    perms: u32,
) -> Result<u32, FirmwareError> {
    contract::program_protection_entry(
        |r, v| ctl.write32(r, v).map_err(FirmwareError::Controller),
        index,
        tag_bits,
        base,
        len,
        perms,
    )
}
