//! The card as a service: a clock thread owns the Verilated card and runs
//! it whenever it has work; everything else (the vfio-user server, the
//! control channel) talks to it through a channel, with a timeout on every
//! wait. This is what `hitless-sim serve` runs.

use crate::card::{CardTiming, SimCard, TornWrites};
use crate::dma::CardDma;
use crate::local::{CardBus, LocalMemory};
use crate::memory::NvStore;
use hitless_hdl::contract::{ctrl, reg, status, tier_state, BootResult, DEFAULT_GEOMETRY};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Errors of the card service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("the card's clock thread is gone")]
    Gone,
    #[error("the card did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Card(String),
    #[error("state directory: {0}")]
    State(String),
}

/// A fault or maintenance action on the card (the control channel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Reset the controller; both tiers keep their contents.
    WarmReset,
    /// Power off and on now: the warm tier is lost.
    PowerCycle,
    /// Power cut when the card's cycle counter reaches this value.
    CutPowerAt(u64),
    /// Flip `count` random bits in the committed image of a region (the
    /// whole region when nothing is committed there).
    FlipBits {
        cold: bool,
        region: RegionSel,
        count: u32,
        seed: u64,
    },
    /// Flip `count` random bits in `[offset, offset + len)` of a tier's
    /// data area (where set data lives: one copy, checked by its CRC).
    FlipDataBits {
        cold: bool,
        offset: u64,
        len: u64,
        count: u32,
        seed: u64,
    },
    /// Report state.
    Status,
}

/// Which region `FlipBits` damages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionSel {
    A,
    B,
    Active,
    Alternate,
}

/// What the card reports on the control channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceStatus {
    pub cycle: u64,
    pub power_ons: u64,
    pub warm_result: Option<BootResult>,
    pub cold_result: Option<BootResult>,
    pub dma_mappings: usize,
    pub dma_faults: u64,
    pub irqs: u64,
}

type IrqSink = Box<dyn FnMut() + Send>;

/// Cycles a boot scan may take (two full 2 MiB regions per tier is under
/// 2 M cycles).
const BOOT_LIMIT: u64 = 20_000_000;

enum Req {
    Read(u32, SyncSender<Result<u32, String>>),
    Write(u32, u32, SyncSender<Result<(), String>>),
    Map {
        iova: u64,
        len: u64,
        file: File,
        offset: u64,
        writable: bool,
        reply: SyncSender<Result<(), String>>,
    },
    Unmap(u64, u64, SyncSender<Result<(), String>>),
    HostRead(u64, usize, SyncSender<Result<Vec<u8>, String>>),
    HostWrite(u64, Vec<u8>, SyncSender<Result<(), String>>),
    UnmapAll,
    Irq(Option<IrqSink>),
    Control(Control, SyncSender<Result<ServiceStatus, String>>),
    Shutdown,
}

/// Handle to a running card. Cloneable; every call waits at most `timeout`.
#[derive(Clone)]
pub struct CardService {
    tx: Sender<Req>,
    timeout: Duration,
    local: LocalMemory,
    resets: Arc<AtomicU64>,
}

/// The clock thread; join it after `shutdown`.
pub struct CardThread(JoinHandle<Result<(), ServiceError>>);

impl CardThread {
    pub fn join(self) -> Result<(), ServiceError> {
        self.0
            .join()
            .map_err(|_| ServiceError::Card("clock thread panicked".into()))?
    }
}

/// Start a card whose cold tier lives in `state_dir/cold.nv` (created blank
/// if missing) and whose warm tier is in memory.
pub fn start(
    state_dir: &Path,
    timing: CardTiming,
    timeout: Duration,
) -> Result<(CardService, CardThread), ServiceError> {
    std::fs::create_dir_all(state_dir)
        .map_err(|e| ServiceError::State(format!("{}: {e}", state_dir.display())))?;
    let size = DEFAULT_GEOMETRY.total() as usize;
    let cold_path: PathBuf = state_dir.join("cold.nv");
    let cold =
        NvStore::open_file(&cold_path, size).map_err(|e| ServiceError::State(e.to_string()))?;
    let (tx, rx) = mpsc::channel();
    let local = LocalMemory::new(LOCAL_BYTES);
    let resets = Arc::new(AtomicU64::new(0));
    let (l, r) = (local.clone(), resets.clone());
    let thread = std::thread::Builder::new()
        .name("hitless-card-clock".into())
        .spawn(move || clock(rx, timing, cold, l, r))
        .map_err(|e| ServiceError::Card(e.to_string()))?;
    Ok((
        CardService {
            tx,
            timeout,
            local,
            resets,
        },
        CardThread(thread),
    ))
}

impl CardService {
    fn call<T>(
        &self,
        make: impl FnOnce(SyncSender<Result<T, String>>) -> Req,
    ) -> Result<T, ServiceError> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.tx.send(make(reply)).map_err(|_| ServiceError::Gone)?;
        match rx.recv_timeout(self.timeout) {
            Ok(r) => r.map_err(ServiceError::Card),
            Err(RecvTimeoutError::Timeout) => Err(ServiceError::Timeout(self.timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(ServiceError::Gone),
        }
    }

    pub fn read32(&self, offset: u32) -> Result<u32, ServiceError> {
        self.call(|r| Req::Read(offset, r))
    }
    pub fn write32(&self, offset: u32, value: u32) -> Result<(), ServiceError> {
        self.call(|r| Req::Write(offset, value, r))
    }
    pub fn dma_map(
        &self,
        iova: u64,
        len: u64,
        file: File,
        offset: u64,
        writable: bool,
    ) -> Result<(), ServiceError> {
        self.call(|reply| Req::Map {
            iova,
            len,
            file,
            offset,
            writable,
            reply,
        })
    }
    pub fn dma_unmap(&self, iova: u64, len: u64) -> Result<(), ServiceError> {
        self.call(|r| Req::Unmap(iova, len, r))
    }
    /// Read host memory through the card's DMA mappings (the firmware
    /// reading a request).
    pub fn host_read(&self, addr: u64, len: usize) -> Result<Vec<u8>, ServiceError> {
        self.call(|r| Req::HostRead(addr, len, r))
    }
    /// Write host memory through the card's DMA mappings.
    pub fn host_write(&self, addr: u64, data: Vec<u8>) -> Result<(), ServiceError> {
        self.call(|r| Req::HostWrite(addr, data, r))
    }
    /// The card's local RAM (firmware rings and scratch).
    pub fn local(&self) -> &LocalMemory {
        &self.local
    }
    /// Resets (warm resets, power cycles, cuts) since the card started: the
    /// firmware restarts when this changes.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::SeqCst)
    }
    /// Forget every DMA mapping and interrupt sink (the client left).
    pub fn detach(&self) -> Result<(), ServiceError> {
        self.tx
            .send(Req::UnmapAll)
            .map_err(|_| ServiceError::Gone)?;
        self.tx.send(Req::Irq(None)).map_err(|_| ServiceError::Gone)
    }
    /// Where interrupt messages go (`None`: nowhere).
    pub fn set_irq(&self, sink: Option<IrqSink>) -> Result<(), ServiceError> {
        self.tx.send(Req::Irq(sink)).map_err(|_| ServiceError::Gone)
    }
    pub fn control(&self, c: Control) -> Result<ServiceStatus, ServiceError> {
        self.call(|r| Req::Control(c, r))
    }
    /// Stop the clock thread (it flushes the cold tier).
    pub fn shutdown(&self) {
        let _ = self.tx.send(Req::Shutdown);
    }
}

/// Bytes of card-local RAM: the firmware's rings (64 KiB), scratch, and
/// the backup reader's window (`crate::backup`; its pages are touched
/// only when a remote reader uses it).
pub const LOCAL_BYTES: usize = crate::backup::WINDOW_OFFSET + crate::backup::WINDOW_BYTES as usize;

struct Clock {
    resets: Arc<AtomicU64>,
    card: SimCard<CardBus>,
    irq: Option<IrqSink>,
    irqs_seen: u64,
    cut_at: Option<u64>,
    power_ons: u64,
}

impl Clock {
    /// Has the controller anything to do? (Checked between slices.)
    fn busy(&mut self) -> bool {
        let st = self.card.read_reg(reg::STATUS).unwrap_or(0);
        if st & status::BOOT_DONE == 0 || st & status::BUSY != 0 {
            return true;
        }
        let enabled = self.card.read_reg(reg::CTRL).unwrap_or(0) & ctrl::ENABLE != 0;
        enabled && self.card.read_reg(reg::DQ_HEAD).ok() != self.card.read_reg(reg::DQ_TAIL).ok()
    }

    fn deliver_irqs(&mut self) {
        let n = self.card.irq_count();
        if n != self.irqs_seen {
            self.irqs_seen = n;
            if let Some(sink) = self.irq.as_mut() {
                sink();
            }
        }
    }

    fn power_cycle(&mut self, torn: TornWrites) {
        let card = std::mem::replace(&mut self.card, placeholder());
        self.card = card.power_cycle(torn, false);
        self.irqs_seen = 0;
        self.power_ons += 1;
        self.resets.fetch_add(1, Ordering::SeqCst);
        tracing::info!(power_ons = self.power_ons, "power cycle");
    }

    fn status(&mut self) -> ServiceStatus {
        let w = self
            .card
            .read_reg(reg::WARM_STATE)
            .ok()
            .map(BootResult::from_bits);
        let c = self
            .card
            .read_reg(reg::COLD_STATE)
            .ok()
            .map(BootResult::from_bits);
        ServiceStatus {
            cycle: self.card.cycle(),
            power_ons: self.power_ons,
            warm_result: w,
            cold_result: c,
            dma_mappings: self.card.host.dma.len(),
            dma_faults: self.card.host.dma.faults,
            irqs: self.card.irq_count(),
        }
    }

    fn control(&mut self, c: Control) -> Result<ServiceStatus, String> {
        match c {
            // Both return once the card is up again (its boot scan done).
            Control::WarmReset => {
                self.card.warm_reset(TornWrites::Random(self.card.cycle()));
                self.resets.fetch_add(1, Ordering::SeqCst);
                self.card.wait_boot(BOOT_LIMIT).map_err(|e| e.to_string())?;
            }
            Control::PowerCycle => {
                self.power_cycle(TornWrites::Random(self.card.cycle()));
                self.card.wait_boot(BOOT_LIMIT).map_err(|e| e.to_string())?;
            }
            Control::CutPowerAt(n) => self.cut_at = Some(n),
            Control::FlipBits {
                cold,
                region,
                count,
                seed,
            } => {
                let g = self.card.geometry;
                let st = self
                    .card
                    .read_reg(if cold {
                        reg::COLD_STATE
                    } else {
                        reg::WARM_STATE
                    })
                    .map_err(|e| e.to_string())?;
                let active = ((st >> tier_state::ACTIVE_SHIFT) & 1) as u8;
                let r = match region {
                    RegionSel::A => 0,
                    RegionSel::B => 1,
                    RegionSel::Active => active,
                    RegionSel::Alternate => active ^ 1,
                };
                let len_reg = match (cold, r) {
                    (false, 0) => reg::WARM_A_LEN,
                    (false, _) => reg::WARM_B_LEN,
                    (true, 0) => reg::COLD_A_LEN,
                    (true, _) => reg::COLD_B_LEN,
                };
                let committed = self.card.read_reg(len_reg).map_err(|e| e.to_string())?;
                let span = match committed {
                    0 => g.region_size,
                    n => n.min(g.region_size),
                };
                self.card.flip_bits(
                    cold as usize,
                    g.region_base(r) as u64,
                    span as u64,
                    count,
                    seed,
                );
            }
            Control::FlipDataBits {
                cold,
                offset,
                len,
                count,
                seed,
            } => {
                let g = self.card.geometry;
                if offset
                    .checked_add(len)
                    .is_none_or(|e| e > g.data_size as u64)
                {
                    return Err(format!(
                        "[{offset}, +{len}) is outside the data area of {} bytes",
                        g.data_size
                    ));
                }
                self.card.flip_bits(
                    cold as usize,
                    g.data_base() as u64 + offset,
                    len,
                    count,
                    seed,
                );
            }
            Control::Status => {}
        }
        Ok(self.status())
    }
}

/// A card that exists only while the real one is being power-cycled.
fn placeholder() -> SimCard<CardBus> {
    SimCard::with_host(
        CardTiming::default(),
        NvStore::new(0),
        NvStore::new(0),
        CardBus::new(CardDma::default(), LocalMemory::new(0)),
    )
}

fn clock(
    rx: Receiver<Req>,
    timing: CardTiming,
    cold: NvStore,
    local: LocalMemory,
    resets: Arc<AtomicU64>,
) -> Result<(), ServiceError> {
    let g = DEFAULT_GEOMETRY;
    let mut k = Clock {
        resets,
        card: SimCard::with_host(
            timing,
            NvStore::new(g.total() as usize),
            cold,
            CardBus::new(CardDma::default(), local),
        ),
        irq: None,
        irqs_seen: 0,
        cut_at: None,
        power_ons: 1,
    };
    let mut busy = true;
    loop {
        // Serve requests; block briefly only when the controller is idle.
        let first = if busy {
            rx.try_recv().ok()
        } else {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        let mut next = first;
        while let Some(req) = next {
            match req {
                Req::Read(off, reply) => {
                    let _ = reply.send(k.card.read_reg(off).map_err(|e| e.to_string()));
                }
                Req::Write(off, v, reply) => {
                    let _ = reply.send(k.card.write_reg(off, v).map_err(|e| e.to_string()));
                    busy = true;
                }
                Req::Map {
                    iova,
                    len,
                    file,
                    offset,
                    writable,
                    reply,
                } => {
                    let r = k
                        .card
                        .host
                        .dma
                        .map(iova, len, &file, offset, writable)
                        .map_err(|e| e.to_string());
                    let _ = reply.send(r);
                }
                Req::Unmap(iova, len, reply) => {
                    let _ = reply.send(k.card.host.dma.unmap(iova, len).map_err(|e| e.to_string()));
                }
                Req::HostRead(addr, len, reply) => {
                    let mut buf = vec![0u8; len];
                    let r = if k.card.host.dma.read_bytes(addr, &mut buf) {
                        Ok(buf)
                    } else {
                        Err(format!("no host mapping holds {addr:#x}+{len:#x}"))
                    };
                    let _ = reply.send(r);
                }
                Req::HostWrite(addr, data, reply) => {
                    let r = if k.card.host.dma.write_bytes(addr, &data) {
                        Ok(())
                    } else {
                        Err(format!(
                            "no writable host mapping holds {addr:#x}+{:#x}",
                            data.len()
                        ))
                    };
                    let _ = reply.send(r);
                }
                Req::UnmapAll => k.card.host.dma.clear(),
                Req::Irq(sink) => k.irq = sink,
                Req::Control(c, reply) => {
                    let _ = reply.send(k.control(c));
                    busy = true;
                }
                Req::Shutdown => {
                    k.card
                        .cold
                        .flush()
                        .map_err(|e| ServiceError::State(e.to_string()))?;
                    return Ok(());
                }
            }
            next = rx.try_recv().ok();
        }
        if busy {
            // Run a slice; stop exactly at a scheduled power cut.
            let slice = k
                .cut_at
                .map_or(2048, |at| at.saturating_sub(k.card.cycle()).clamp(1, 2048));
            k.card.run(slice);
            k.deliver_irqs();
            if let Some(at) = k.cut_at {
                if k.card.cycle() >= at {
                    k.cut_at = None;
                    k.power_cycle(TornWrites::Random(at));
                }
            }
            busy = k.busy() || k.cut_at.is_some();
            k.deliver_irqs();
        }
    }
    k.card
        .cold
        .flush()
        .map_err(|e| ServiceError::State(e.to_string()))
}
