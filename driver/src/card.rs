//! The driver core: rings, DMA buffers and completions, written once over
//! [`CardIo`], and the operations a host application uses.

use crate::dma::DmaAllocator;
use crate::error::{Error, Result};
use crate::io::CardIo;
use hitless_hdl::contract::{
    self, flags, irq, reg, status, tier_state, BootResult, Completion, Descriptor, NvGeometry,
    Opcode, Status, CPL_BYTES, DESC_BYTES, MAX_TRANSFER,
};
use hitless_ring::{RingConfig, RingIo, Rings};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The ring engine's view of a transport: registers, the DMA window as
/// ring memory (by controller address), the interrupt as the way to wait.
struct RingPort<'a, T: CardIo + ?Sized>(&'a mut T);

impl<T: CardIo + ?Sized> RingPort<'_, T> {
    fn window_offset(&mut self, addr: u64, len: usize) -> Result<usize> {
        let w = self.0.dma();
        addr.checked_sub(w.iova())
            .and_then(|o| usize::try_from(o).ok())
            .filter(|o| o.checked_add(len).is_some_and(|end| end <= w.len()))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "ring access of {len} bytes at {addr:#x} is outside the DMA window"
                ))
            })
    }
}

impl<T: CardIo + ?Sized> RingIo for RingPort<'_, T> {
    type Error = Error;
    fn read32(&mut self, offset: u32) -> Result<u32> {
        self.0.read32(offset)
    }
    fn write32(&mut self, offset: u32, value: u32) -> Result<()> {
        self.0.write32(offset, value)
    }
    fn mem_write(&mut self, addr: u64, data: &[u8]) -> Result<()> {
        let at = self.window_offset(addr, data.len())?;
        if self.0.dma().write(at, data) {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "DMA window write at {at:#x}"
            )))
        }
    }
    fn mem_read(&mut self, addr: u64, buf: &mut [u8]) -> Result<()> {
        let at = self.window_offset(addr, buf.len())?;
        if self.0.dma().read(at, buf) {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "DMA window read at {at:#x}"
            )))
        }
    }
    fn idle(&mut self, slice: Duration) -> Result<bool> {
        self.0.wait_irq(slice)
    }
    fn now(&self) -> Duration {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed()
    }
}

/// Which NV tier an operation addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Fast tier: survives a warm reset, not a power cycle.
    Warm,
    /// Survives a power cycle.
    Cold,
}

impl Tier {
    fn flag(self) -> u8 {
        match self {
            Tier::Warm => 0,
            Tier::Cold => flags::COLD,
        }
    }
}

/// Driver settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// log2 of the descriptor ring entries.
    pub dq_log2: u32,
    /// log2 of the completion ring entries (at least `dq_log2`).
    pub cq_log2: u32,
    /// How long one operation may take before the card is declared hung.
    pub op_timeout: Duration,
    /// How long to wait for the boot scan at open.
    pub boot_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dq_log2: 6,
            cq_log2: 7,
            op_timeout: Duration::from_secs(10),
            boot_timeout: Duration::from_secs(30),
        }
    }
}

/// The committed state of one tier, as the controller reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierStatus {
    pub result: BootResult,
    pub active: u8,
    pub seq: u32,
    pub region_len: [u32; 2],
    pub region_crc: [u32; 2],
    pub log_head: u32,
    pub log_tail: u32,
}

impl TierStatus {
    /// Length and CRC of the image the tier serves.
    pub fn active_image(&self) -> (u32, u32) {
        let a = self.active as usize & 1;
        (self.region_len[a], self.region_crc[a])
    }
}

/// Controller-wide status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CardStatus {
    pub version: u32,
    /// `LIMITS`: what the controller lacks (0: the full controller).
    pub limits: u32,
    pub boot_done: bool,
    pub busy: bool,
    pub ring_error: bool,
    pub ops_ok: u32,
    pub ops_failed: u32,
    pub warm: TierStatus,
    pub cold: TierStatus,
    pub geometry: NvGeometry,
}

/// Result of a checkpoint commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    pub crc: u32,
    pub len: u32,
    pub seq: u32,
}

/// An open card.
pub struct Card<T: CardIo> {
    io: T,
    opts: Options,
    alloc: DmaAllocator,
    rings: Rings,
    geometry: NvGeometry,
    /// `LIMITS`: what the controller lacks.
    limits: u32,
}

impl<T: CardIo> Card<T> {
    /// Open a card: check it is a hitless controller of a compatible
    /// contract version, wait for its boot scan, take over the rings
    /// (descriptors a previous driver left unprocessed are dropped) and
    /// enable it.
    pub fn open(mut io: T, opts: Options) -> Result<Self> {
        if opts.dq_log2 > contract::RING_MAX_LOG2
            || opts.cq_log2 > contract::RING_MAX_LOG2
            || opts.cq_log2 < opts.dq_log2
        {
            return Err(Error::InvalidArgument(format!(
                "ring sizes 2^{} / 2^{} (at most 2^{}, CQ at least DQ)",
                opts.dq_log2,
                opts.cq_log2,
                contract::RING_MAX_LOG2
            )));
        }
        let id = io.read32(reg::ID)?;
        if id != contract::CONTROLLER_ID {
            return Err(Error::NotHitless { id });
        }
        let version = io.read32(reg::VERSION)?;
        if version >> 16 != contract::CONTRACT_VERSION >> 16 {
            return Err(Error::Version {
                found: version,
                expected: contract::CONTRACT_VERSION,
            });
        }
        let geometry = NvGeometry {
            region_size: io.read32(reg::NV_REGION_SIZE)?,
            log_size: io.read32(reg::NV_LOG_SIZE)?,
            data_size: io.read32(reg::NV_DATA_SIZE)?,
        };
        let limits = io.read32(reg::LIMITS)?;
        let window = io.dma().len() as u64;
        let mut alloc = DmaAllocator::new(window);
        let dq = alloc.alloc((DESC_BYTES as u64) << opts.dq_log2, 64)?;
        let cq = alloc.alloc((CPL_BYTES as u64) << opts.cq_log2, 64)?;
        let base = io.dma().iova();
        let cfg = RingConfig {
            dq_base: base + dq.offset,
            cq_base: base + cq.offset,
            dq_log2: opts.dq_log2,
            cq_log2: opts.cq_log2,
            irq_mask: irq::COMPLETION | irq::ERROR,
        };
        // Waits for the boot scan, quiesces the controller, takes the rings.
        let rings = Rings::take_over(
            &mut RingPort(&mut io),
            cfg,
            opts.boot_timeout,
            opts.op_timeout,
        )?;
        let card = Self {
            io,
            opts,
            alloc,
            rings,
            geometry,
            limits,
        };
        tracing::debug!(card = %card.io.describe(), dq = cfg.dq_base, cq = cfg.cq_base, "opened");
        Ok(card)
    }

    /// Copy into the DMA window (a range outside it is a driver bug, reported).
    fn dma_write(&mut self, at: usize, data: &[u8]) -> Result<()> {
        if self.io.dma().write(at, data) {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "DMA window write of {} bytes at {at:#x}",
                data.len()
            )))
        }
    }

    /// Copy out of the DMA window.
    fn dma_read(&mut self, at: usize, buf: &mut [u8]) -> Result<()> {
        if self.io.dma().read(at, buf) {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "DMA window read of {} bytes at {at:#x}",
                buf.len()
            )))
        }
    }

    /// NV geometry the card reports.
    pub fn geometry(&self) -> NvGeometry {
        self.geometry
    }

    /// `LIMITS`: what the controller lacks (`contract::limits`; 0 on the
    /// full controller). Descriptors that need it are refused by `submit`.
    pub fn limits(&self) -> u32 {
        self.limits
    }

    /// The transport.
    pub fn io(&mut self) -> &mut T {
        &mut self.io
    }

    /// Program protection entry `index` and return its key.
    pub fn program_entry(
        &mut self,
        index: u32,
        tag: u32,
        base: u32,
        len: u32,
        perm: u32,
    ) -> Result<u32> {
        if index >= contract::PT_ENTRIES {
            return Err(Error::InvalidArgument(format!("protection entry {index}")));
        }
        let io = &mut self.io;
        contract::program_protection_entry(|r, v| io.write32(r, v), index, tag, base, len, perm)
    }

    /// Queue descriptors; returns their ring indices (matched by the
    /// completions' `desc_index`). Never overfills either ring. Nothing is
    /// queued if one needs what the controller lacks (`Error::Unsupported`).
    pub fn submit(&mut self, descs: &[Descriptor]) -> Result<Vec<u16>> {
        self.refuse_lacking(descs)?;
        self.rings.submit(&mut RingPort(&mut self.io), descs)
    }

    /// What the controller lacks would complete BAD_OPCODE: say why first,
    /// before anything is queued.
    fn refuse_lacking(&self, descs: &[Descriptor]) -> Result<()> {
        match descs.iter().find_map(|d| contract::lacks(self.limits, d)) {
            Some(what) => Err(Error::Unsupported {
                what,
                limits: self.limits,
            }),
            None => Ok(()),
        }
    }

    /// Wait for the completion of the descriptor at ring index `index`.
    pub fn wait(&mut self, index: u16, timeout: Duration) -> Result<Completion> {
        self.rings.wait(&mut RingPort(&mut self.io), index, timeout)
    }

    /// Submit one descriptor and wait for it; an error status is an error.
    pub fn execute(&mut self, d: Descriptor) -> Result<Completion> {
        let c = self.execute_raw(d)?;
        match c.status() {
            Some(Status::Ok) => Ok(c),
            Some(status) => Err(Error::Device { status }),
            None => Err(Error::BadCompletion(format!("status {}", c.status))),
        }
    }

    /// Submit one descriptor and wait for its completion, whatever its
    /// status. The descriptor asks for an interrupt, so the driver sleeps on
    /// it rather than polling.
    pub fn execute_raw(&mut self, d: Descriptor) -> Result<Completion> {
        self.refuse_lacking(&[d])?;
        let timeout = self.op_timeout(d.len);
        self.rings.execute(&mut RingPort(&mut self.io), d, timeout)
    }

    fn op_timeout(&self, len: u32) -> Duration {
        // Base plus one second per MiB: generous for slow simulated cards.
        self.opts.op_timeout + Duration::from_millis(len as u64 / 1024)
    }

    /// Run `f` with a DMA buffer of `len` bytes, freeing it afterwards
    /// whatever `f` returns.
    fn with_buf<R>(
        &mut self,
        len: u64,
        f: impl FnOnce(&mut Self, u64, usize) -> Result<R>,
    ) -> Result<R> {
        let buf = self.alloc.alloc(len.max(1), 64)?;
        let iova = self.io.dma().iova() + buf.offset;
        let r = f(self, iova, buf.offset as usize);
        self.alloc.free(buf);
        r
    }

    /// Write `data` at `nv_offset` of the window `key` opens. With `commit`
    /// (through a region window, offset 0) it becomes the active image.
    /// Returns the CRC-32C the controller computed.
    pub fn write(
        &mut self,
        key: u32,
        tier: Tier,
        nv_offset: u32,
        data: &[u8],
        commit: bool,
    ) -> Result<u32> {
        let c = self.execute_with_data(
            data,
            Descriptor {
                opcode: Opcode::Write as u8,
                flags: tier.flag() | if commit { flags::COMMIT } else { 0 },
                key,
                nv_offset,
                ..Default::default()
            },
        )?;
        Ok(c.crc)
    }

    /// Read `len` bytes at `nv_offset` (through a region window: of the
    /// active region, or the alternate with `alt`).
    pub fn read(
        &mut self,
        key: u32,
        tier: Tier,
        nv_offset: u32,
        len: u32,
        alt: bool,
    ) -> Result<(Vec<u8>, u32)> {
        let len = transfer_len(len as usize)?;
        self.with_buf(len as u64, |card, iova, at| {
            let c = card.execute(Descriptor {
                opcode: Opcode::Read as u8,
                flags: tier.flag() | if alt { flags::ALT } else { 0 },
                key,
                host_addr: iova,
                nv_offset,
                len,
                ..Default::default()
            })?;
            let mut out = vec![0u8; len as usize];
            card.dma_read(at, &mut out)?;
            Ok((out, c.crc))
        })
    }

    /// CRC of `len` bytes at `nv_offset`; with `expected`, a mismatch is
    /// `Error::Device { status: CrcMismatch }`.
    pub fn validate(
        &mut self,
        key: u32,
        tier: Tier,
        nv_offset: u32,
        len: u32,
        expected: Option<u32>,
    ) -> Result<u32> {
        let len = transfer_len(len as usize)?;
        let c = self.execute(Descriptor {
            opcode: Opcode::Validate as u8,
            flags: tier.flag() | if expected.is_some() { flags::CHECK } else { 0 },
            key,
            nv_offset,
            len,
            crc: expected.unwrap_or(0),
            ..Default::default()
        })?;
        Ok(c.crc)
    }

    /// Check the whole committed image of a tier against its CRC: the
    /// image is scanned by VALIDATE in transfers of at most
    /// `MAX_TRANSFER` bytes and their CRCs combined. Returns the image's
    /// length and CRC; a mismatch is `Error::Device { CrcMismatch }`, and
    /// a card that does not answer is a timeout, not a mismatch.
    pub fn validate_image(&mut self, key: u32, tier: Tier) -> Result<(u32, u32)> {
        let (len, want) = self.tier_status(tier)?.active_image();
        let mut crc = contract::crc32c(&[]);
        let mut off = 0u32;
        while off < len {
            let n = (len - off).min(MAX_TRANSFER);
            let part = self.validate(key, tier, off, n, None)?;
            crc = crate::crc::crc32c_combine(crc, part, n.into());
            off += n;
        }
        if crc != want {
            tracing::warn!(?tier, len, crc, want, "image fails its CRC");
            return Err(Error::Device {
                status: Status::CrcMismatch,
            });
        }
        Ok((len, crc))
    }

    /// Commit the first `len` bytes of the alternate region (checked against
    /// `expected` when given); returns the new superblock sequence (low 32).
    pub fn flip(&mut self, key: u32, tier: Tier, len: u32, expected: Option<u32>) -> Result<u32> {
        let c = self.execute(Descriptor {
            opcode: Opcode::Flip as u8,
            flags: tier.flag() | if expected.is_some() { flags::CHECK } else { 0 },
            key,
            len,
            crc: expected.unwrap_or(0),
            ..Default::default()
        })?;
        Ok(c.info)
    }

    /// Checkpoint an image of any size up to the region size through a
    /// region window: one WRITE+COMMIT up to `MAX_TRANSFER`, else WRITEs of
    /// `MAX_TRANSFER` and a FLIP that checks the whole image's CRC.
    pub fn checkpoint(&mut self, key: u32, tier: Tier, data: &[u8]) -> Result<Committed> {
        self.checkpoint_with_progress(key, tier, data, &mut |_, _| {})
    }

    /// [`Card::checkpoint`], calling `progress(done, total)` as bytes reach the card.
    pub fn checkpoint_with_progress(
        &mut self,
        key: u32,
        tier: Tier,
        data: &[u8],
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Committed> {
        let total = data.len() as u64;
        if data.len() as u64 > self.geometry.region_size as u64 {
            return Err(Error::InvalidArgument(format!(
                "{} bytes do not fit a {}-byte region",
                data.len(),
                self.geometry.region_size
            )));
        }
        let crc = contract::crc32c(data);
        if data.len() <= MAX_TRANSFER as usize && !data.is_empty() {
            let got = self.write(key, tier, 0, data, true)?;
            progress(total, total);
            if got != crc {
                return Err(Error::BadCompletion(format!(
                    "card computed CRC {got:#010x}, host {crc:#010x}"
                )));
            }
        } else {
            for (i, chunk) in data.chunks(MAX_TRANSFER as usize).enumerate() {
                let at = i * MAX_TRANSFER as usize;
                self.write(key, tier, at as u32, chunk, false)?;
                progress((at + chunk.len()) as u64, total);
            }
            self.flip(key, tier, data.len() as u32, Some(crc))?;
        }
        let seq = self.tier_status(tier)?.seq;
        Ok(Committed {
            crc,
            len: data.len() as u32,
            seq,
        })
    }

    /// Restore the image a tier serves (through a region window at base 0).
    pub fn restore(&mut self, key: u32, tier: Tier) -> Result<Vec<u8>> {
        self.restore_with_progress(key, tier, &mut |_, _| {})
    }

    /// [`Card::restore`], calling `progress(done, total)` as bytes arrive.
    pub fn restore_with_progress(
        &mut self,
        key: u32,
        tier: Tier,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Vec<u8>> {
        let st = self.tier_status(tier)?;
        if matches!(st.result, BootResult::Lost) {
            return Err(Error::Device {
                status: Status::CrcMismatch,
            });
        }
        let (len, crc) = st.active_image();
        let mut out = Vec::with_capacity(len as usize);
        let mut off = 0u32;
        while off < len {
            let n = (len - off).min(MAX_TRANSFER);
            let (chunk, _) = self.read(key, tier, off, n, false)?;
            out.extend_from_slice(&chunk);
            off += n;
            progress(off as u64, len as u64);
        }
        if contract::crc32c(&out) != crc {
            return Err(Error::Device {
                status: Status::CrcMismatch,
            });
        }
        Ok(out)
    }

    /// Append a record to a tier's log; returns its free-running log offset.
    pub fn append(&mut self, key: u32, tier: Tier, data: &[u8]) -> Result<u32> {
        let c = self.execute_with_data(
            data,
            Descriptor {
                opcode: Opcode::Append as u8,
                flags: tier.flag(),
                key,
                ..Default::default()
            },
        )?;
        Ok(c.info)
    }

    /// Run `d` with `data` staged in a DMA buffer (fills in `host_addr`
    /// and `len`); the buffer is freed whatever happens.
    fn execute_with_data(&mut self, data: &[u8], d: Descriptor) -> Result<Completion> {
        let len = transfer_len(data.len())?;
        self.with_buf(len as u64, |card, iova, at| {
            card.dma_write(at, data)?;
            card.execute(Descriptor {
                host_addr: iova,
                len,
                ..d
            })
        })
    }

    /// Mark the log read up to `new_tail`.
    pub fn trim(&mut self, key: u32, tier: Tier, new_tail: u32) -> Result<()> {
        self.execute(Descriptor {
            opcode: Opcode::LogTrim as u8,
            flags: tier.flag(),
            key,
            aux: new_tail,
            ..Default::default()
        })?;
        Ok(())
    }

    /// The committed state of one tier.
    pub fn tier_status(&mut self, tier: Tier) -> Result<TierStatus> {
        tier_status(&mut self.io, tier)
    }

    /// Controller-wide status.
    pub fn status(&mut self) -> Result<CardStatus> {
        status_of(&mut self.io)
    }
}

/// The committed state of one tier, from the registers alone (no rings
/// taken: safe beside the card's firmware or another driver).
pub fn tier_status<T: CardIo + ?Sized>(io: &mut T, tier: Tier) -> Result<TierStatus> {
    let base = match tier {
        Tier::Warm => reg::WARM_STATE,
        Tier::Cold => reg::COLD_STATE,
    };
    // The per-tier registers are laid out identically for both tiers.
    let mut r = |x: u32| io.read32(base + (x - reg::WARM_STATE));
    let st = r(reg::WARM_STATE)?;
    Ok(TierStatus {
        result: BootResult::from_bits(st),
        active: ((st >> tier_state::ACTIVE_SHIFT) & 1) as u8,
        seq: r(reg::WARM_SEQ)?,
        region_len: [r(reg::WARM_A_LEN)?, r(reg::WARM_B_LEN)?],
        region_crc: [r(reg::WARM_A_CRC)?, r(reg::WARM_B_CRC)?],
        log_head: r(reg::WARM_LOG_HEAD)?,
        log_tail: r(reg::WARM_LOG_TAIL)?,
    })
}

/// Controller-wide status from the registers alone; checks the ID first.
pub fn status_of<T: CardIo + ?Sized>(io: &mut T) -> Result<CardStatus> {
    let id = io.read32(reg::ID)?;
    if id != contract::CONTROLLER_ID {
        return Err(Error::NotHitless { id });
    }
    let s = io.read32(reg::STATUS)?;
    Ok(CardStatus {
        version: io.read32(reg::VERSION)?,
        limits: io.read32(reg::LIMITS)?,
        boot_done: s & status::BOOT_DONE != 0,
        busy: s & status::BUSY != 0,
        ring_error: s & status::RING_ERROR != 0,
        ops_ok: io.read32(reg::OPS_OK)?,
        ops_failed: io.read32(reg::OPS_FAILED)?,
        warm: tier_status(io, Tier::Warm)?,
        cold: tier_status(io, Tier::Cold)?,
        geometry: NvGeometry {
            region_size: io.read32(reg::NV_REGION_SIZE)?,
            log_size: io.read32(reg::NV_LOG_SIZE)?,
            data_size: io.read32(reg::NV_DATA_SIZE)?,
        },
    })
}

fn transfer_len(n: usize) -> Result<u32> {
    if n == 0 || n > MAX_TRANSFER as usize {
        return Err(Error::InvalidArgument(format!(
            "transfer of {n} bytes (1..={MAX_TRANSFER})"
        )));
    }
    Ok(n as u32)
}
