//! The driver core: rings, DMA buffers and completions, written once over
//! [`CardIo`], and the operations a host application uses.

use crate::dma::{DmaAllocator, DmaBuf};
use crate::error::{Error, Result};
use crate::io::CardIo;
use hitless_hdl::contract::{
    self, ctrl, flags, irq, reg, status, tier_state, BootResult, Completion, Descriptor,
    NvGeometry, Opcode, Status, CPL_BYTES, DESC_BYTES, MAX_TRANSFER,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};

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
    dq: DmaBuf,
    cq: DmaBuf,
    tail: u16,
    cq_tail: u16,
    in_flight: usize,
    done: HashMap<u16, Completion>,
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
        let start = Instant::now();
        while io.read32(reg::STATUS)? & status::BOOT_DONE == 0 {
            if start.elapsed() > opts.boot_timeout {
                return Err(Error::Timeout {
                    what: "the boot scan",
                    after: opts.boot_timeout,
                });
            }
            io.wait_irq(Duration::from_millis(1))?;
        }
        let geometry = NvGeometry {
            region_size: io.read32(reg::NV_REGION_SIZE)?,
            log_size: io.read32(reg::NV_LOG_SIZE)?,
        };
        let limits = io.read32(reg::LIMITS)?;
        // Quiesce: no new descriptors, let the current one finish.
        io.write32(reg::CTRL, 0)?;
        let start = Instant::now();
        while io.read32(reg::STATUS)? & status::BUSY != 0 {
            if start.elapsed() > opts.op_timeout {
                return Err(Error::Timeout {
                    what: "the controller to go idle",
                    after: opts.op_timeout,
                });
            }
            io.wait_irq(Duration::from_millis(1))?;
        }
        let window = io.dma().len() as u64;
        let mut alloc = DmaAllocator::new(window);
        let dq = alloc.alloc((DESC_BYTES as u64) << opts.dq_log2, 64)?;
        let cq = alloc.alloc((CPL_BYTES as u64) << opts.cq_log2, 64)?;
        let head = io.read32(reg::DQ_HEAD)? as u16;
        let cq_head = io.read32(reg::CQ_HEAD)? as u16;
        let mut card = Self {
            io,
            opts,
            alloc,
            dq,
            cq,
            tail: head,
            cq_tail: cq_head,
            in_flight: 0,
            done: HashMap::new(),
            geometry,
            limits,
        };
        card.init_cq_phases()?;
        let base = card.io.dma().iova();
        let (dq_iova, cq_iova) = (base + card.dq.offset, base + card.cq.offset);
        let io = &mut card.io;
        io.write32(reg::DQ_BASE_LO, dq_iova as u32)?;
        io.write32(reg::DQ_BASE_HI, (dq_iova >> 32) as u32)?;
        io.write32(reg::DQ_SIZE_LOG2, card.opts.dq_log2)?;
        io.write32(reg::CQ_BASE_LO, cq_iova as u32)?;
        io.write32(reg::CQ_BASE_HI, (cq_iova >> 32) as u32)?;
        io.write32(reg::CQ_SIZE_LOG2, card.opts.cq_log2)?;
        io.write32(reg::DQ_TAIL, head as u32)?;
        io.write32(reg::CQ_TAIL, cq_head as u32)?;
        io.write32(
            reg::IRQ_STATUS,
            irq::COMPLETION | irq::ERROR | irq::BOOT_DONE,
        )?;
        io.write32(reg::IRQ_MASK, irq::COMPLETION | irq::ERROR)?;
        io.write32(reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE)?;
        tracing::debug!(card = %card.io.describe(), dq = dq_iova, cq = cq_iova, "opened");
        Ok(card)
    }

    /// Give every completion slot the phase its next write will not have,
    /// so a stale or blank slot is never taken for a new completion.
    fn init_cq_phases(&mut self) -> Result<()> {
        let n = 1u32 << self.opts.cq_log2;
        let cq = self.cq;
        let cq_tail = self.cq_tail;
        let log2 = self.opts.cq_log2;
        for k in 0..n {
            let index = cq_tail.wrapping_add(k as u16);
            let slot = (index as u32 & (n - 1)) as u64;
            let next_phase = (index >> log2) & 1 == 0;
            let stale = Completion {
                phase: !next_phase,
                ..Default::default()
            };
            let at = (cq.offset + slot * CPL_BYTES as u64) as usize;
            let w = stale.to_words();
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&w[0].to_le_bytes());
            b[8..].copy_from_slice(&w[1].to_le_bytes());
            self.dma_write(at, &b)?;
        }
        Ok(())
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
        // What the controller lacks would complete BAD_OPCODE: say why first.
        if let Some(what) = descs.iter().find_map(|d| contract::lacks(self.limits, d)) {
            return Err(Error::Unsupported {
                what,
                limits: self.limits,
            });
        }
        let room = (1usize << self.opts.dq_log2).min(1usize << self.opts.cq_log2) - self.in_flight;
        if descs.len() > room {
            return Err(Error::InvalidArgument(format!(
                "{} descriptors, {room} ring slots free",
                descs.len()
            )));
        }
        let mask = (1u64 << self.opts.dq_log2) - 1;
        let dq = self.dq.offset;
        let mut indices = Vec::with_capacity(descs.len());
        for d in descs {
            let at = (dq + (self.tail as u64 & mask) * DESC_BYTES as u64) as usize;
            self.dma_write(at, &d.to_bytes())?;
            indices.push(self.tail);
            self.tail = self.tail.wrapping_add(1);
        }
        self.in_flight += descs.len();
        self.io.write32(reg::DQ_TAIL, self.tail as u32)?;
        Ok(indices)
    }

    /// Take every new completion off the ring.
    fn reap(&mut self) -> Result<usize> {
        let mask = (1u64 << self.opts.cq_log2) - 1;
        let mut n = 0;
        loop {
            let at = (self.cq.offset + (self.cq_tail as u64 & mask) * CPL_BYTES as u64) as usize;
            // The controller writes word 0, then word 1 (with the phase bit
            // in its last byte), each word whole. Read word 1 first; once
            // its phase says the entry is new, both words are written, so
            // read them again for the values: reading in address order can
            // pair a new phase with older bytes (a transport that reads byte
            // by byte, like the UART bridge, or a CPU load racing the DMA).
            let mut w = [0u8; 8];
            self.dma_read(at + 8, &mut w)?;
            if Completion::from_words([0, u64::from_le_bytes(w)]).phase
                != ((self.cq_tail >> self.opts.cq_log2) & 1 == 0)
            {
                break;
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            let mut b = [0u8; 16];
            self.dma_read(at, &mut b)?;
            let word = |i: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&b[i * 8..i * 8 + 8]);
                u64::from_le_bytes(w)
            };
            let c = Completion::from_words([word(0), word(1)]);
            self.cq_tail = self.cq_tail.wrapping_add(1);
            n += 1;
            if c.tag == contract::TAG_CONTROLLER && c.status() == Some(Status::RingOverflow) {
                // This driver never overfills the ring: another writer did,
                // or a doorbell from before a reset reached the reset
                // controller. The doorbell was refused, nothing of ours was
                // lost: note it and go on.
                tracing::warn!(tail = c.desc_index, "controller refused a foreign doorbell");
                continue;
            }
            self.in_flight = self.in_flight.saturating_sub(1);
            self.done.insert(c.desc_index, c);
        }
        if n > 0 {
            self.io.write32(reg::CQ_TAIL, self.cq_tail as u32)?;
        }
        Ok(n)
    }

    /// Wait for the completion of the descriptor at ring index `index`.
    pub fn wait(&mut self, index: u16, timeout: Duration) -> Result<Completion> {
        let start = Instant::now();
        loop {
            if let Some(c) = self.done.remove(&index) {
                return Ok(c);
            }
            if self.reap()? > 0 {
                continue;
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(Error::Timeout {
                    what: "a completion",
                    after: timeout,
                });
            }
            if self.io.wait_irq(left.min(Duration::from_millis(2)))? {
                self.io
                    .write32(reg::IRQ_STATUS, irq::COMPLETION | irq::ERROR)?;
            }
        }
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
    pub fn execute_raw(&mut self, mut d: Descriptor) -> Result<Completion> {
        d.flags |= flags::IRQ;
        let timeout = self.op_timeout(d.len);
        let index = self.submit(&[d])?[0];
        let c = self.wait(index, timeout)?;
        if c.opcode != d.opcode || c.tag != d.tag {
            return Err(Error::BadCompletion(format!(
                "completion for index {index} has opcode {} tag {}, expected {} {}",
                c.opcode, c.tag, d.opcode, d.tag
            )));
        }
        Ok(c)
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
