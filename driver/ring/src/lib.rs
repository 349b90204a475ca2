//! The controller's rings, driven once for everybody: the host driver's
//! `Card`, the card firmware's controller path inside `hitless-sim`, and
//! the simulator's test harness all submit descriptors and take
//! completions through [`Rings`].
//!
//! What it owns (the contract's ring semantics, `ARCHITECTURE.md`):
//! - the descriptor ring: slot `i mod 2^DQ_SIZE_LOG2`, one doorbell
//!   (`DQ_TAIL`) per batch, never more in flight than either ring holds;
//! - the completion ring: a slot is new when its phase bit is
//!   `!((index >> CQ_SIZE_LOG2) & 1)`; every slot is first given the phase
//!   its next write will not have, so a stale or blank slot is never
//!   taken for a new completion (after a controller reset too);
//! - completions the controller posts for a refused doorbell
//!   (`RING_OVERFLOW`, tag `TAG_CONTROLLER`), which match no descriptor;
//! - every wait bounded by a timeout, on the transport's own clock.
//!
//! What it does not own: where ring memory is (the [`RingIo`] says how to
//! reach it) and how time passes (a real card sleeps on its interrupt, a
//! simulated one is clocked).
#![forbid(unsafe_code)]

use hitless_hdl::contract::{
    self, ctrl, flags, irq, reg, status, Completion, Descriptor, Status, CPL_BYTES, DESC_BYTES,
};
use std::collections::HashMap;
use std::time::Duration;

/// The ring engine's own failures; a transport's errors are its own type
/// ([`RingIo::Error`]), which takes these in through `From`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RingError {
    /// A wait ran out of time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: &'static str, after: Duration },
    /// More descriptors than the rings have room for.
    #[error("{wanted} descriptors, {free} ring slots free")]
    Full { wanted: usize, free: usize },
    /// Ring sizes the contract does not allow.
    #[error("ring sizes 2^{dq_log2} / 2^{cq_log2} (at most 2^{max}, CQ at least DQ)")]
    Size {
        dq_log2: u32,
        cq_log2: u32,
        max: u32,
    },
    /// A completion that does not answer the descriptor it is for.
    #[error("completion for index {index} has opcode {opcode} tag {tag}, expected {want_opcode} {want_tag}")]
    Mismatch {
        index: u16,
        opcode: u8,
        tag: u16,
        want_opcode: u8,
        want_tag: u16,
    },
}

/// What the engine needs of a transport: the controller's registers, the
/// memory the rings are in (by controller address), and time.
pub trait RingIo {
    /// The transport's error; the engine's own errors convert into it.
    type Error: From<RingError>;
    fn read32(&mut self, offset: u32) -> Result<u32, Self::Error>;
    fn write32(&mut self, offset: u32, value: u32) -> Result<(), Self::Error>;
    /// Copy `data` into ring memory at controller address `addr`.
    fn mem_write(&mut self, addr: u64, data: &[u8]) -> Result<(), Self::Error>;
    /// Copy ring memory at controller address `addr` into `buf`.
    fn mem_read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// Let at most `slice` pass with nothing to do: sleep on the interrupt
    /// (`Ok(true)` if one came) or clock a simulated card.
    fn idle(&mut self, slice: Duration) -> Result<bool, Self::Error>;
    /// A monotonic clock, as the transport counts time (wall time, or a
    /// simulated card's cycles).
    fn now(&self) -> Duration;
}

/// Where the rings are and how large.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Controller address of the descriptor ring (`DESC_BYTES << dq_log2`).
    pub dq_base: u64,
    /// Controller address of the completion ring (`CPL_BYTES << cq_log2`).
    pub cq_base: u64,
    pub dq_log2: u32,
    pub cq_log2: u32,
    /// `IRQ_MASK` to enable with the controller.
    pub irq_mask: u32,
}

impl RingConfig {
    /// Bytes of the descriptor ring.
    pub fn dq_bytes(&self) -> u64 {
        (DESC_BYTES as u64) << self.dq_log2
    }
    /// Bytes of the completion ring.
    pub fn cq_bytes(&self) -> u64 {
        (CPL_BYTES as u64) << self.cq_log2
    }
}

/// The host side of the rings.
#[derive(Debug)]
pub struct Rings {
    cfg: RingConfig,
    tail: u16,
    cq_tail: u16,
    in_flight: usize,
    done: HashMap<u16, Completion>,
    /// Completions for doorbells this engine did not ring (refused by the
    /// controller as `RING_OVERFLOW`).
    foreign: u32,
}

impl Rings {
    /// Take over the rings: the controller must be idle (`CTRL.ENABLE`
    /// clear, not busy). Descriptors a previous driver left unprocessed are
    /// dropped; the completion ring is given stale phases; the ring
    /// registers are programmed; pending interrupt causes are cleared; the
    /// controller is enabled with interrupts.
    pub fn start<I: RingIo>(io: &mut I, cfg: RingConfig) -> Result<Self, I::Error> {
        if cfg.dq_log2 > contract::RING_MAX_LOG2
            || cfg.cq_log2 > contract::RING_MAX_LOG2
            || cfg.cq_log2 < cfg.dq_log2
        {
            return Err(RingError::Size {
                dq_log2: cfg.dq_log2,
                cq_log2: cfg.cq_log2,
                max: contract::RING_MAX_LOG2,
            }
            .into());
        }
        let head = io.read32(reg::DQ_HEAD)? as u16;
        let cq_head = io.read32(reg::CQ_HEAD)? as u16;
        let rings = Self {
            cfg,
            tail: head,
            cq_tail: cq_head,
            in_flight: 0,
            done: HashMap::new(),
            foreign: 0,
        };
        rings.init_cq_phases(io)?;
        io.write32(reg::DQ_BASE_LO, cfg.dq_base as u32)?;
        io.write32(reg::DQ_BASE_HI, (cfg.dq_base >> 32) as u32)?;
        io.write32(reg::DQ_SIZE_LOG2, cfg.dq_log2)?;
        io.write32(reg::CQ_BASE_LO, cfg.cq_base as u32)?;
        io.write32(reg::CQ_BASE_HI, (cfg.cq_base >> 32) as u32)?;
        io.write32(reg::CQ_SIZE_LOG2, cfg.cq_log2)?;
        io.write32(reg::DQ_TAIL, head as u32)?;
        io.write32(reg::CQ_TAIL, cq_head as u32)?;
        io.write32(
            reg::IRQ_STATUS,
            irq::COMPLETION | irq::ERROR | irq::BOOT_DONE,
        )?;
        io.write32(reg::IRQ_MASK, cfg.irq_mask)?;
        io.write32(reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE)?;
        Ok(rings)
    }

    /// Wait (at most `boot_timeout`) for the controller's boot scan, stop
    /// it taking new descriptors and wait (at most `idle_timeout`) for the
    /// one it is running, then [`Rings::start`]: what every owner of the
    /// controller does first.
    pub fn take_over<I: RingIo>(
        io: &mut I,
        cfg: RingConfig,
        boot_timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<Self, I::Error> {
        wait_status(io, status::BOOT_DONE, true, "the boot scan", boot_timeout)?;
        io.write32(reg::CTRL, 0)?;
        wait_status(
            io,
            status::BUSY,
            false,
            "the controller to go idle",
            idle_timeout,
        )?;
        Self::start(io, cfg)
    }

    /// Give every completion slot the phase its next write will not have.
    fn init_cq_phases<I: RingIo>(&self, io: &mut I) -> Result<(), I::Error> {
        let n = 1u32 << self.cfg.cq_log2;
        for k in 0..n {
            let index = self.cq_tail.wrapping_add(k as u16);
            let next_phase = (index >> self.cfg.cq_log2) & 1 == 0;
            let stale = Completion {
                phase: !next_phase,
                ..Default::default()
            };
            let w = stale.to_words();
            let mut b = [0u8; CPL_BYTES as usize];
            b[..8].copy_from_slice(&w[0].to_le_bytes());
            b[8..].copy_from_slice(&w[1].to_le_bytes());
            io.mem_write(self.cq_slot(index), &b)?;
        }
        Ok(())
    }

    fn cq_slot(&self, index: u16) -> u64 {
        let mask = (1u64 << self.cfg.cq_log2) - 1;
        self.cfg.cq_base + (index as u64 & mask) * CPL_BYTES as u64
    }

    /// The configuration.
    pub fn config(&self) -> RingConfig {
        self.cfg
    }

    /// The next descriptor index (the `DQ_TAIL` this engine wrote).
    pub fn tail(&self) -> u16 {
        self.tail
    }

    /// The next completion index (the `CQ_TAIL` this engine wrote).
    pub fn cq_tail(&self) -> u16 {
        self.cq_tail
    }

    /// Descriptors submitted and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Completions seen for doorbells this engine did not ring.
    pub fn foreign_completions(&self) -> u32 {
        self.foreign
    }

    /// Ring slots free for new descriptors.
    pub fn free(&self) -> usize {
        let size = (1usize << self.cfg.dq_log2).min(1usize << self.cfg.cq_log2);
        size.saturating_sub(self.in_flight)
    }

    /// Queue descriptors with one doorbell; returns their ring indices
    /// (matched by the completions' `desc_index`). Never overfills either
    /// ring: with too little room nothing is queued.
    pub fn submit<I: RingIo>(
        &mut self,
        io: &mut I,
        descs: &[Descriptor],
    ) -> Result<Vec<u16>, I::Error> {
        let free = self.free();
        if descs.len() > free {
            return Err(RingError::Full {
                wanted: descs.len(),
                free,
            }
            .into());
        }
        self.submit_unchecked(io, descs)
    }

    /// [`Rings::submit`] without the room check: for tests of the
    /// controller itself (a full completion ring must stall it; a doorbell
    /// past the descriptor ring must be refused). A driver never needs it.
    pub fn submit_unchecked<I: RingIo>(
        &mut self,
        io: &mut I,
        descs: &[Descriptor],
    ) -> Result<Vec<u16>, I::Error> {
        let mask = (1u64 << self.cfg.dq_log2) - 1;
        let mut indices = Vec::with_capacity(descs.len());
        let mut tail = self.tail;
        for d in descs {
            let at = self.cfg.dq_base + (tail as u64 & mask) * DESC_BYTES as u64;
            io.mem_write(at, &d.to_bytes())?;
            indices.push(tail);
            tail = tail.wrapping_add(1);
        }
        self.tail = tail;
        self.in_flight += descs.len();
        io.write32(reg::DQ_TAIL, self.tail as u32)?;
        Ok(indices)
    }

    /// The next completion in ring order, if the controller has posted it
    /// (taken off the ring and `CQ_TAIL` advanced). Refused-doorbell
    /// completions are returned too; they match no descriptor.
    pub fn poll<I: RingIo>(&mut self, io: &mut I) -> Result<Option<Completion>, I::Error> {
        let at = self.cq_slot(self.cq_tail);
        // The controller writes word 0, then word 1 (with the phase bit in
        // its last byte), each word whole. Read word 1 first; once its phase
        // says the entry is new, both words are written, so read them again
        // for the values: reading in address order can pair a new phase
        // with older bytes (a transport that reads byte by byte, like the
        // UART bridge, or a CPU load racing the DMA).
        let mut w = [0u8; 8];
        io.mem_read(at + 8, &mut w)?;
        let expect = (self.cq_tail >> self.cfg.cq_log2) & 1 == 0;
        if Completion::from_words([0, u64::from_le_bytes(w)]).phase != expect {
            return Ok(None);
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        let mut b = [0u8; CPL_BYTES as usize];
        io.mem_read(at, &mut b)?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        let c = Completion::from_words([word(0), word(1)]);
        self.cq_tail = self.cq_tail.wrapping_add(1);
        io.write32(reg::CQ_TAIL, self.cq_tail as u32)?;
        if is_foreign(&c) {
            self.foreign = self.foreign.wrapping_add(1);
        } else {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        Ok(Some(c))
    }

    /// Take every new completion off the ring into the done set; refused
    /// doorbells are logged and dropped (nothing of ours was lost).
    fn reap<I: RingIo>(&mut self, io: &mut I) -> Result<usize, I::Error> {
        let mut n = 0;
        // At most a ring's worth per call: a device that keeps showing new
        // phases (broken, or hostile) cannot hold the caller here; its
        // wait still ends at its timeout.
        for _ in 0..1usize << self.cfg.cq_log2 {
            let Some(c) = self.poll(io)? else {
                break;
            };
            n += 1;
            if is_foreign(&c) {
                tracing::warn!(tail = c.desc_index, "controller refused a foreign doorbell");
                continue;
            }
            self.done.insert(c.desc_index, c);
        }
        Ok(n)
    }

    /// Wait for the completion of the descriptor at ring index `index`.
    pub fn wait<I: RingIo>(
        &mut self,
        io: &mut I,
        index: u16,
        timeout: Duration,
    ) -> Result<Completion, I::Error> {
        let start = io.now();
        loop {
            if let Some(c) = self.done.remove(&index) {
                return Ok(c);
            }
            let reaped = self.reap(io)?;
            if self.done.contains_key(&index) {
                continue;
            }
            // The deadline holds whatever the ring shows (completions for
            // other descriptors, or garbage that looks new).
            let left = timeout.saturating_sub(io.now().saturating_sub(start));
            if left.is_zero() {
                return Err(RingError::Timeout {
                    what: "a completion",
                    after: timeout,
                }
                .into());
            }
            if reaped > 0 {
                continue;
            }
            if io.idle(left.min(Duration::from_millis(2)))? {
                io.write32(reg::IRQ_STATUS, irq::COMPLETION | irq::ERROR)?;
            }
        }
    }

    /// The next `n` completions in ring order (refused doorbells
    /// included), for callers that check the ring itself.
    pub fn wait_next<I: RingIo>(
        &mut self,
        io: &mut I,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Completion>, I::Error> {
        let start = io.now();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if let Some(c) = self.poll(io)? {
                out.push(c);
                continue;
            }
            let left = timeout.saturating_sub(io.now().saturating_sub(start));
            if left.is_zero() {
                return Err(RingError::Timeout {
                    what: "the expected completions",
                    after: timeout,
                }
                .into());
            }
            io.idle(left.min(Duration::from_millis(2)))?;
        }
        Ok(out)
    }

    /// Submit one descriptor and wait for its completion, whatever its
    /// status. It asks for an interrupt, so the transport can sleep on it.
    pub fn execute<I: RingIo>(
        &mut self,
        io: &mut I,
        mut d: Descriptor,
        timeout: Duration,
    ) -> Result<Completion, I::Error> {
        d.flags |= flags::IRQ;
        let index = self.submit(io, &[d])?[0];
        let c = self.wait(io, index, timeout)?;
        if c.opcode != d.opcode || c.tag != d.tag {
            return Err(RingError::Mismatch {
                index,
                opcode: c.opcode,
                tag: c.tag,
                want_opcode: d.opcode,
                want_tag: d.tag,
            }
            .into());
        }
        Ok(c)
    }
}

/// Wait (at most `timeout`) until `STATUS & bit` is set (`set`) or clear.
fn wait_status<I: RingIo>(
    io: &mut I,
    bit: u32,
    set: bool,
    what: &'static str,
    timeout: Duration,
) -> Result<(), I::Error> {
    let start = io.now();
    while (io.read32(reg::STATUS)? & bit != 0) != set {
        if io.now().saturating_sub(start) > timeout {
            return Err(RingError::Timeout {
                what,
                after: timeout,
            }
            .into());
        }
        io.idle(Duration::from_millis(1))?;
    }
    Ok(())
}

/// A completion for a doorbell the controller refused.
fn is_foreign(c: &Completion) -> bool {
    c.tag == contract::TAG_CONTROLLER && c.status() == Some(Status::RingOverflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitless_hdl::contract::DEFAULT_GEOMETRY;
    use hitless_hdl::model::{HostMemory, Model, PagedMemory};

    /// The reference model behind the engine, clocked by `idle`.
    struct ModelIo {
        model: Model,
        host: PagedMemory,
        ticks: u64,
    }

    #[derive(Debug, PartialEq)]
    enum E {
        Ring(RingError),
    }
    impl From<RingError> for E {
        fn from(e: RingError) -> Self {
            E::Ring(e)
        }
    }

    impl RingIo for ModelIo {
        type Error = E;
        fn read32(&mut self, offset: u32) -> Result<u32, E> {
            Ok(self.model.read_reg(offset))
        }
        fn write32(&mut self, offset: u32, value: u32) -> Result<(), E> {
            self.model.write_reg(offset, value);
            self.model.process_rings(&mut self.host);
            Ok(())
        }
        fn mem_write(&mut self, addr: u64, data: &[u8]) -> Result<(), E> {
            self.host.write(addr, data);
            Ok(())
        }
        fn mem_read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), E> {
            // Time passes while the host reads, as on a real bus.
            self.ticks += 1;
            self.host.read(addr, buf);
            Ok(())
        }
        fn idle(&mut self, _slice: Duration) -> Result<bool, E> {
            self.ticks += 1;
            self.model.process_rings(&mut self.host);
            Ok(false)
        }
        fn now(&self) -> Duration {
            Duration::from_micros(self.ticks)
        }
    }

    fn io() -> ModelIo {
        let mut model = Model::new(DEFAULT_GEOMETRY);
        model.boot_scan();
        ModelIo {
            model,
            host: PagedMemory::default(),
            ticks: 0,
        }
    }

    const CFG: RingConfig = RingConfig {
        dq_base: 0x1000,
        cq_base: 0x2000,
        dq_log2: 2,
        cq_log2: 3,
        irq_mask: irq::COMPLETION | irq::ERROR,
    };

    #[test]
    fn descriptors_complete_across_many_ring_laps() {
        let mut io = io();
        let mut rings = Rings::start(&mut io, CFG).unwrap();
        // 40 operations through a 4-entry ring: ten laps of the DQ, five of
        // the CQ (its phase flips every lap).
        for i in 0..40u16 {
            let d = Descriptor {
                opcode: 0,
                tag: i,
                ..Default::default()
            };
            let c = rings.execute(&mut io, d, Duration::from_secs(1)).unwrap();
            assert_eq!((c.tag, c.status()), (i, Some(Status::Ok)));
        }
        assert_eq!(rings.in_flight(), 0);
        // A full batch: exactly the ring's size goes, one more is refused
        // before anything is queued.
        let batch = vec![Descriptor::default(); 4];
        let ix = rings.submit(&mut io, &batch).unwrap();
        assert_eq!(
            rings.submit(&mut io, &batch[..1]),
            Err(E::Ring(RingError::Full { wanted: 1, free: 0 }))
        );
        let done = rings.wait_next(&mut io, 4, Duration::from_secs(1)).unwrap();
        let got: Vec<u16> = done.iter().map(|c| c.desc_index).collect();
        assert_eq!(got, ix);
    }

    #[test]
    fn a_refused_doorbell_is_reported_and_does_not_count_as_ours() {
        let mut io = io();
        let mut rings = Rings::start(&mut io, CFG).unwrap();
        let bad = rings.tail().wrapping_add(5) as u32; // the ring has 4 slots
        io.write32(reg::DQ_TAIL, bad).unwrap();
        let c = rings.wait_next(&mut io, 1, Duration::from_secs(1)).unwrap();
        assert_eq!(c[0].status(), Some(Status::RingOverflow));
        assert_eq!(rings.foreign_completions(), 1);
        assert_eq!(rings.in_flight(), 0);
        // Our next descriptor still completes.
        let d = Descriptor {
            tag: 9,
            ..Default::default()
        };
        assert_eq!(
            rings
                .execute(&mut io, d, Duration::from_secs(1))
                .unwrap()
                .tag,
            9
        );
    }

    #[test]
    fn a_card_that_never_answers_times_out() {
        let mut io = io();
        let mut rings = Rings::start(&mut io, CFG).unwrap();
        io.write32(reg::CTRL, 0).unwrap(); // disabled: nothing is processed
        let e = rings
            .execute(&mut io, Descriptor::default(), Duration::from_millis(5))
            .unwrap_err();
        assert!(matches!(e, E::Ring(RingError::Timeout { .. })), "{e:?}");
    }

    #[test]
    fn take_over_waits_for_the_boot_scan_and_gives_up_in_time() {
        let mut io = io();
        let rings = Rings::take_over(&mut io, CFG, Duration::from_secs(1), Duration::from_secs(1));
        assert!(rings.is_ok());
        // A controller whose boot scan never finishes.
        let mut io = ModelIo {
            model: Model::new(DEFAULT_GEOMETRY),
            host: PagedMemory::default(),
            ticks: 0,
        };
        let e = Rings::take_over(
            &mut io,
            CFG,
            Duration::from_millis(3),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(
            e,
            E::Ring(RingError::Timeout {
                what: "the boot scan",
                after: Duration::from_millis(3)
            })
        );
    }

    /// A device whose every completion slot always looks new (for a
    /// descriptor nobody submitted): the engine must still give up at the
    /// deadline, not spin taking garbage forever.
    struct Garbage {
        inner: ModelIo,
        cq_tail: u16,
    }

    impl RingIo for Garbage {
        type Error = E;
        fn read32(&mut self, offset: u32) -> Result<u32, E> {
            self.inner.read32(offset)
        }
        fn write32(&mut self, offset: u32, value: u32) -> Result<(), E> {
            if offset == reg::CQ_TAIL {
                self.cq_tail = value as u16;
            }
            self.inner.write32(offset, value)
        }
        fn mem_write(&mut self, addr: u64, data: &[u8]) -> Result<(), E> {
            self.inner.mem_write(addr, data)
        }
        fn mem_read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), E> {
            self.inner.mem_read(addr, buf)?;
            if (CFG.cq_base..CFG.cq_base + CFG.cq_bytes()).contains(&addr) {
                let c = Completion {
                    desc_index: 0xBAD,
                    phase: (self.cq_tail >> CFG.cq_log2) & 1 == 0,
                    ..Default::default()
                };
                let w = c.to_words();
                let mut entry = [0u8; 16];
                entry[..8].copy_from_slice(&w[0].to_le_bytes());
                entry[8..].copy_from_slice(&w[1].to_le_bytes());
                let off = (addr % 16) as usize;
                buf.copy_from_slice(&entry[off..off + buf.len()]);
            }
            Ok(())
        }
        fn idle(&mut self, slice: Duration) -> Result<bool, E> {
            self.inner.idle(slice)
        }
        fn now(&self) -> Duration {
            self.inner.now()
        }
    }

    #[test]
    fn a_ring_of_garbage_that_looks_new_ends_at_the_timeout() {
        let mut io = Garbage {
            inner: io(),
            cq_tail: 0,
        };
        let mut rings = Rings::start(&mut io, CFG).unwrap();
        io.write32(reg::CTRL, 0).unwrap();
        let index = rings.submit(&mut io, &[Descriptor::default()]).unwrap()[0];
        let e = rings
            .wait(&mut io, index, Duration::from_millis(20))
            .unwrap_err();
        assert!(matches!(e, E::Ring(RingError::Timeout { .. })), "{e:?}");
        assert!(rings.in_flight() <= 1);
    }

    #[test]
    fn ring_sizes_outside_the_contract_are_refused() {
        let mut io = io();
        let bad = RingConfig {
            dq_log2: 4,
            cq_log2: 3,
            ..CFG
        };
        assert!(matches!(
            Rings::start(&mut io, bad),
            Err(E::Ring(RingError::Size { .. }))
        ));
    }
}
