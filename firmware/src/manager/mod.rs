//! The memory manager (seed 000, claims 1-12, 16-24; seed 001, claims 5,
//! 6, 9, 13-20): it owns the controller, keeps a record table per tier,
//! and turns requests into the controller's operations.
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | the controller and host-memory traits, start-up and recovery, controller operations, image building (store, splice, flip, mirror) |
//! | `session.rs` | sessions and credentials: OPEN, request authentication, permissions |
//! | `log.rs` | the append log: APPEND with the firmware's tag, LOG_READ, LOG_TRIM |
//! | `dispatch.rs` | requests: decoding, dispatch, responses |
//! | `replica.rs` | replication: the journal of changes, applying brackets, snapshots |
//!
//! Storing a set in tier T (`commit`; the layout in `records.rs`):
//! 1. WRITE the set's bytes from the host into a data-area extent the
//!    committed index does not reference, checked against its CRC;
//! 2. a paged index: WRITE the leaf that changed, two copies, into extents
//!    nothing committed references either;
//! 3. WRITE the new region image (the inline index or the paged root) into
//!    T's alternate region with CHECK and COMMIT (superblock written last);
//! 4. mirror: COPY the image to the new alternate and FLIP with its CRC,
//!    so both regions hold the same root (claim 5) and an active region
//!    that later fails its integrity test falls back to an identical copy.
//!
//! Recovery rules (applied when the firmware starts, after every reset):
//! - a tier whose active region fails the boot scan is served from the
//!   alternate (the controller's FELL_BACK), then re-mirrored;
//! - a tier whose two regions disagree (a cut between FLIP and mirror) is
//!   re-mirrored from the active one;
//! - a set found in both tiers (a cut between storing it in one and
//!   deleting it from the other) is taken from the higher store version;
//! - a leaf copy of a paged index that fails its CRC is read from the
//!   other copy and rewritten; both damaged make the tier foreign;
//! - a set whose bytes fail their CRC at read time is `LOST` (one copy).

mod dispatch;
mod heap;
mod log;
pub mod peer;
mod replica;
mod session;

pub use replica::ReplicaError;

use crate::records::{align8, Entry, Head, LeafRef, SetKey, Table, HEADER};
use hitless_hdl::contract::{
    self, crc32c, crc32c_combine, flags as dflags, perm, reg, tier_state, BootResult, Completion,
    Descriptor, NvGeometry, Opcode, Status, MAX_TRANSFER, PT_ENTRIES,
};
use hitless_proto::auth::SECRET_BYTES;
use hitless_proto::message::Failure;
use hitless_proto::msg::{Code, SetInfo, TierSel};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// A transport's own error, kept as the source of ours.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the path to the controller (or to the host's memory) failed: not a
/// request's fault, and not the controller refusing an operation (that is
/// a completion status).
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The register, descriptor or DMA path failed; the transport's error
    /// is the source.
    #[error("{what} failed")]
    Transport {
        what: &'static str,
        #[source]
        source: BoxError,
    },
    /// A scratch or host range the other side does not have.
    #[error("{what} of {len} bytes at {offset:#x} is outside the {size}-byte window")]
    OutOfRange {
        what: &'static str,
        offset: u64,
        len: usize,
        size: usize,
    },
}

impl AccessError {
    /// The transport failed doing `what`.
    pub fn transport(what: &'static str, source: impl Into<BoxError>) -> Self {
        AccessError::Transport {
            what,
            source: source.into(),
        }
    }
}

/// The error and its sources on one line (for a response's detail).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// The firmware's view of the controller: its registers, its descriptor
/// path, and some card-local memory the controller can DMA from and to.
/// Implemented by the simulator (in-process, over the Verilated AXI4-Lite
/// port, with the shared ring engine `hitless-ring`) and, on a Zynq
/// board, by a UIO mapping.
pub trait Controller {
    fn read32(&mut self, offset: u32) -> Result<u32, AccessError>;
    fn write32(&mut self, offset: u32, value: u32) -> Result<(), AccessError>;
    /// Run one descriptor to completion (any status); errors are transport
    /// failures or timeouts.
    fn execute(&mut self, d: Descriptor) -> Result<Completion, AccessError>;
    /// Controller-visible address and size of the firmware's scratch memory.
    fn scratch(&self) -> (u64, usize);
    fn scratch_write(&mut self, offset: usize, data: &[u8]) -> Result<(), AccessError>;
    fn scratch_read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), AccessError>;
}

/// The requesting host's memory (request messages, responses, log data).
pub trait HostMemory {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError>;
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessError>;
}

/// Why the firmware itself could not run (not a request's failure).
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("controller")]
    Controller(#[from] AccessError),
    #[error("controller refused {what}: {status:?}")]
    Refused { what: &'static str, status: Status },
    #[error("start-up: {0}")]
    Start(String),
}

/// The protection entry the firmware uses for region operations.
const FW_REGION_ENTRY: u32 = 0;
/// The protection entry of the append-log ring and the data area after
/// it (one window: the log at 0, the data area at `log_size`).
const FW_LOG_ENTRY: u32 = 1;
/// Application id the firmware keeps its own records under (secrets).
pub const SYSTEM_APP: u32 = 0;
/// Reboot stage of records never delivered (the firmware's own).
pub const NEVER: u32 = u32::MAX;
/// Most sets a tier's table holds. The index is paged, so a store's cost
/// hardly depends on it; the bound keeps the root (32 bytes a leaf, at
/// most 4 n / LEAF_SETS + 1 leaves: 64 KiB) and the start-up read of the
/// leaves sane.
pub const MAX_SETS: usize = 16384;
/// Bytes of the tag the firmware puts before a log payload: app, object, 0.
const LOG_TAG: usize = 16;
/// Scratch layout: table heads and reads at 0, data the firmware itself
/// sends (secrets, tagged log records) from here.
const STAGING: usize = 256 * 1024;
/// Scratch memory the firmware needs.
pub const SCRATCH_BYTES: usize = STAGING + MAX_TRANSFER as usize;

/// A request's result: its failure is the protocol's (code, detail, and
/// for a buffer too small the bytes needed).
type R<T> = Result<T, Failure>;

fn fail<T>(code: Code, detail: impl Into<String>) -> R<T> {
    Err(Failure::new(code, detail))
}

fn ctl(e: AccessError) -> Failure {
    Failure::new(Code::Device, format!("controller: {}", chain(&e)))
}

fn host_err(e: AccessError) -> Failure {
    Failure::new(Code::HostMemory, chain(&e))
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
    repl: replica::ReplState,
    heaps: heap::HeapStore,
    /// Which endpoint values name this card and its peers.
    endpoints: peer::Endpoints,
    /// A request the last `handle` left for a peer card.
    peer_op: Option<peer::PeerOp>,
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
            return Err(FirmwareError::Controller(AccessError::OutOfRange {
                what: "the firmware's scratch memory",
                offset: 0,
                len: SCRATCH_BYTES,
                size: ctl.scratch().1,
            }));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let geometry = NvGeometry {
            region_size: ctl.read32(reg::NV_REGION_SIZE)?,
            log_size: ctl.read32(reg::NV_LOG_SIZE)?,
            data_size: ctl.read32(reg::NV_DATA_SIZE)?,
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
        if geometry.data_size == 0 {
            return Err(FirmwareError::Start(
                "the controller has no data area (NV_DATA_SIZE 0): the memory manager keeps \
                 set data there"
                    .into(),
            ));
        }
        let log_key = program(
            &mut ctl,
            FW_LOG_ENTRY,
            rng.gen(),
            geometry.log_base(),
            geometry.log_size + geometry.data_size,
            all_tiers | perm::READ | perm::WRITE | perm::LOG,
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
            repl: replica::ReplState::default(),
            heaps: heap::HeapStore::default(),
            endpoints: peer::Endpoints::default(),
            peer_op: None,
        };
        for t in [TierSel::Warm, TierSel::Cold] {
            let view = mm.load(t).map_err(|f| FirmwareError::Start(f.detail))?;
            mm.tiers[t as usize] = view;
        }
        mm.load_secrets();
        mm.load_mark();
        mm.heap_rebuild();
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
            TierView::Ready(tab) => format!(
                "{} sets, {} data bytes, index {} bytes in the region, {} leaves ({} bytes)",
                tab.sets.len(),
                tab.data_bytes(),
                tab.end(),
                tab.leaves.len(),
                tab.leaf_bytes()
            ),
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
        special: impl Fn(Status) -> Option<Failure>,
    ) -> R<Completion> {
        let c = self.ctl.execute(d).map_err(ctl)?;
        match c.status() {
            Some(Status::Ok) => Ok(c),
            Some(s) => Err(special(s).unwrap_or_else(|| {
                Failure::new(Code::Device, format!("{what}: {s:?} ({})", s.describe()))
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
                match Table::head_size(&first) {
                    Err(e) => TierView::Foreign(e.to_string()),
                    Ok(n) if n > len as usize => {
                        TierView::Foreign(format!("a head of {n} bytes in an image of {len}"))
                    }
                    Ok(n) => {
                        let head = self.read_region(t, 0, n as u32, false)?;
                        match Table::decode_head(&head, self.geometry.data_size as usize) {
                            Ok(Head::Inline(tab)) if tab.sets.len() > MAX_SETS => {
                                TierView::Foreign(format!("an index of {} sets", tab.sets.len()))
                            }
                            Ok(Head::Inline(tab)) => TierView::Ready(tab),
                            Ok(Head::Paged(refs)) => self.load_leaves(t, &refs)?,
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

    /// Read the leaves of a paged index: each from its first good copy
    /// (a copy failing its CRC is rewritten from the other), then the
    /// whole table checked. A leaf with both copies damaged makes the tier
    /// foreign: its sets are not dropped, the tier refuses stores until
    /// FORMAT.
    fn load_leaves(&mut self, t: TierSel, refs: &[LeafRef]) -> R<TierView> {
        let mut leaves = Vec::with_capacity(refs.len());
        for (i, r) in refs.iter().enumerate() {
            let mut copies = [None, None];
            for (c, slot) in copies.iter_mut().enumerate() {
                *slot = match self.read_set(t, &extent(r.copies[c], r.len, r.crc)) {
                    Ok(b) if Table::leaf_ok(r, &b) => Some(b),
                    Ok(_) => None,
                    Err(f) if f.code == Code::Lost => None,
                    Err(f) => return Err(f),
                };
            }
            let Some(good) = copies.iter().flatten().next().cloned() else {
                tracing::error!(
                    tier = t.name(),
                    leaf = i,
                    "an index leaf fails its CRC in both copies"
                );
                return Ok(TierView::Foreign(format!(
                    "leaf {i} of the index ({} sets from app {} object {}) fails its CRC in \
                     both copies",
                    r.count, r.first.app, r.first.object
                )));
            };
            for (c, got) in copies.iter().enumerate() {
                if got.is_none() {
                    tracing::warn!(
                        tier = t.name(),
                        leaf = i,
                        copy = c,
                        "index leaf copy damaged: rewriting it"
                    );
                    self.ctl.scratch_write(STAGING, &good).map_err(ctl)?;
                    let (sbase, _) = self.ctl.scratch();
                    self.write_data(
                        t,
                        &extent(r.copies[c], r.len, r.crc),
                        sbase + STAGING as u64,
                    )?;
                }
            }
            leaves.push(good);
        }
        Ok(
            match Table::assemble(refs, &leaves, self.geometry.data_size as usize) {
                Ok(tab) => TierView::Ready(tab),
                Err(e) => TierView::Foreign(e.to_string()),
            },
        )
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
                Err(f) => tracing::warn!(app = k.object, "secret unreadable: {}", f.detail),
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

    /// Commit `new` (the sets of `old` changed) as tier `t`'s table: the
    /// changed set's bytes (if any) from the host at `data` into its
    /// data-area extent, the index leaves that changed (two copies each),
    /// all in space neither `old`, the heap store nor `pending` (extents
    /// the caller wrote for this commit) references; then the region image
    /// (inline index or paged root) into the alternate region with COMMIT,
    /// then the mirror.
    fn commit(
        &mut self,
        t: TierSel,
        old: &Table,
        new: &Table,
        changed: Option<SetKey>,
        data: (u64, u32),
        pending: &[(u64, u64)],
    ) -> R<()> {
        let mut new = new.clone();
        let mut extra = self.heaps.extents(t);
        extra.extend_from_slice(pending);
        let Some(leaves) = new.relayout(old, self.geometry.data_size, &extra) else {
            return fail(
                Code::NoSpace,
                format!(
                    "the {} tier's data area has no room for the index's leaves",
                    t.name()
                ),
            );
        };
        if new.end() > self.geometry.region_size as usize {
            return fail(
                Code::NoSpace,
                format!("the {} tier's index does not fit its region", t.name()),
            );
        }
        if let Some(e) = changed.and_then(|k| new.sets.get(&k)) {
            if e.len > 0 {
                self.write_data(t, e, data.0)?;
            }
        }
        // The leaves, before the root that references them is committed.
        let (sbase, _) = self.ctl.scratch();
        for (off, bytes) in &leaves {
            self.ctl.scratch_write(STAGING, bytes).map_err(ctl)?;
            self.write_data(
                t,
                &extent(*off, bytes.len() as u32, crc32c(bytes)),
                sbase + STAGING as u64,
            )?;
        }
        let end = new.end() as u32;
        let crc = if new.sets.is_empty() {
            // An empty table is an empty image.
            self.op(
                Descriptor {
                    opcode: Opcode::Flip as u8,
                    flags: tier_flag(t),
                    key: self.fw_key,
                    len: 0,
                    ..Default::default()
                },
                "commit",
            )?
            .crc
        } else {
            let head = new.encode_head();
            let crc = crc32c(&head);
            self.ctl.scratch_write(0, &head).map_err(ctl)?;
            self.op_with(
                Descriptor {
                    opcode: Opcode::Write as u8,
                    flags: tier_flag(t) | dflags::CHECK | dflags::COMMIT,
                    key: self.fw_key,
                    host_addr: self.ctl.scratch().0,
                    len: end,
                    crc,
                    ..Default::default()
                },
                "commit the index",
                |st| {
                    (st == Status::CrcMismatch).then(|| {
                        Failure::new(Code::Device, "the index changed on its way to the card")
                    })
                },
            )?;
            crc
        };
        self.counters.stores += 1;
        // The new index is committed: the table is `new` whatever the
        // mirror does (a failed mirror is redone at the next start).
        self.tiers[t as usize] = TierView::Ready(new);
        self.mirror(t, end, crc)
    }

    /// WRITE a set's bytes from the host into its data-area extent,
    /// checked against the set's CRC (`DATA_CRC`).
    fn write_data(&mut self, t: TierSel, e: &Entry, addr: u64) -> R<()> {
        self.move_set(
            t,
            e,
            addr,
            Opcode::Write,
            "write the set",
            data_crc_mismatch,
        )
    }

    /// Move a set's bytes between the host at `addr` and its data-area
    /// extent (`op`: WRITE or READ), in transfers of at most
    /// `MAX_TRANSFER`, checked against the set's CRC: by the controller
    /// for one transfer, by combining the transfers' CRCs for more. A
    /// mismatch is `mismatch()`.
    fn move_set(
        &mut self,
        t: TierSel,
        e: &Entry,
        addr: u64,
        op: Opcode,
        what: &str,
        mismatch: impl Fn() -> Failure,
    ) -> R<()> {
        let one = e.len <= MAX_TRANSFER;
        let mut crc = crc32c(&[]);
        let mut off = 0u32;
        while off < e.len {
            let n = (e.len - off).min(MAX_TRANSFER);
            let c = self.op_with(
                Descriptor {
                    opcode: op as u8,
                    flags: tier_flag(t) | if one { dflags::CHECK } else { 0 },
                    key: self.log_key,
                    host_addr: addr + off as u64,
                    nv_offset: self.geometry.log_size + e.offset + off,
                    len: n,
                    crc: e.crc,
                    ..Default::default()
                },
                what,
                |st| (st == Status::CrcMismatch).then(&mismatch),
            )?;
            crc = crc32c_combine(crc, c.crc, n as u64);
            off += n;
        }
        if crc != e.crc {
            tracing::warn!(tier = t.name(), what, "a set failed its CRC");
            return Err(mismatch());
        }
        Ok(())
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
        let size = self.geometry.data_size;
        // The heap store's blocks are not the table's but are in use too.
        let heap_blocks = self.heaps.extents(t);
        e.offset = match old.allocate(e.len, size, &heap_blocks) {
            Some(off) => off,
            None => {
                return fail(
                    Code::NoSpace,
                    format!(
                        "the {} tier's data area has {} bytes free in one piece, the set needs {} \
                         ({} of {size} bytes in use)",
                        t.name(),
                        old.largest_free(size, &heap_blocks),
                        e.len,
                        old.data_bytes()
                    ),
                )
            }
        };
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
        self.commit(t, &old, &new, Some(key), data, &[])?;
        // A set lives in one tier; the replication mark's key is the
        // exception (the mark in the cold tier, the token in the warm one).
        if key == replica::MARK_KEY {
            return Ok(());
        }
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
        self.commit(t, &old, &new, None, (0, 0), &[])
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

    /// READ a set from its data-area extent into `addr`, checked against
    /// its CRC (by the controller for one transfer, by combining the
    /// transfers' CRCs for more). The bytes have one copy: a mismatch is
    /// `LOST` (detected, not repaired; the index has two).
    fn deliver(&mut self, t: TierSel, e: &Entry, addr: u64) -> R<()> {
        let lost = || {
            Failure::new(
                Code::Lost,
                format!(
                    "the set's bytes in the {} tier's data area fail their CRC",
                    t.name()
                ),
            )
        };
        self.move_set(t, e, addr, Opcode::Read, "read", lost)
    }

    /// A set's bytes, through scratch (the firmware's own records).
    fn read_set(&mut self, t: TierSel, e: &Entry) -> R<Vec<u8>> {
        let (base, _) = self.ctl.scratch();
        self.deliver(t, e, base)?;
        let mut out = vec![0u8; e.len as usize];
        self.ctl.scratch_read(0, &mut out).map_err(ctl)?;
        Ok(out)
    }
}

/// A piece of the data area as an entry (for `move_set`).
fn extent(off: u32, len: u32, crc: u32) -> Entry {
    Entry {
        endpoint: 0,
        stage: NEVER,
        flags: 0,
        len,
        crc,
        offset: off,
        version: 0,
    }
}

fn data_crc_mismatch() -> Failure {
    Failure::new(
        Code::Invalid,
        "the data's CRC does not match DATA_CRC (changed or corrupted in transit)",
    )
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
