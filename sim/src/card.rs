//! The simulated card: the Verilated controller, host memory, the warm and
//! cold NV tiers, and the fault injectors (power cut, warm reset, bit flips).

use crate::ffi::{HlIn, HlOut, Verilated};
use crate::memory::{NvStore, PortModel, PortTiming, WordStore};
use hitless_hdl::contract::{reg, NvGeometry, DEFAULT_GEOMETRY};
use hitless_hdl::model::PagedMemory;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Errors of the simulated card.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("register {what} at {offset:#05x} timed out after {cycles} cycles")]
    CsrTimeout {
        what: &'static str,
        offset: u32,
        cycles: u64,
    },
    #[error("register access at {offset:#05x} answered SLVERR")]
    CsrError { offset: u32 },
    #[error("the controller did not {what} within {cycles} cycles")]
    Timeout { what: &'static str, cycles: u64 },
    /// The ring engine refused (ring full, a mismatched completion).
    #[error(transparent)]
    Ring(hitless_ring::RingError),
}

/// Timing of the three ports.
#[derive(Clone, Copy, Debug)]
pub struct CardTiming {
    pub host: PortTiming,
    pub warm: PortTiming,
    pub cold: PortTiming,
}

impl Default for CardTiming {
    fn default() -> Self {
        Self {
            host: PortTiming::split(128, 4),
            warm: PortTiming::fixed(8),
            cold: PortTiming::fixed(24),
        }
    }
}

/// How a power cut treats NV writes that were accepted but not yet durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TornWrites {
    /// None of them reach memory.
    Drop,
    /// All of them reach memory.
    Apply,
    /// Each reaches memory with probability 1/2, seeded.
    Random(u64),
}

/// The simulated card. `H` is the host memory its DMA port reaches: sparse
/// paged memory by default, or a contiguous DMA window shared with a driver.
pub struct SimCard<H: WordStore = PagedMemory> {
    model: Verilated,
    pub geometry: NvGeometry,
    pub host: H,
    pub warm: NvStore,
    pub cold: NvStore,
    host_port: PortModel,
    warm_port: PortModel,
    cold_port: PortModel,
    timing: CardTiming,
    input: HlIn,
    /// What the design presents in the current cycle (all outputs are registered).
    now: HlOut,
    cycle: u64,
    irqs: u64,
    vcd: Option<String>,
}

impl SimCard<PagedMemory> {
    /// A card with blank NV memories and default timing, held in reset for
    /// a few cycles and then released (the boot scan starts).
    pub fn new(timing: CardTiming) -> Self {
        let g = DEFAULT_GEOMETRY;
        Self::with_nv(
            timing,
            NvStore::new(g.total() as usize),
            NvStore::new(g.total() as usize),
        )
    }

    /// A card booting from the given NV contents.
    pub fn with_nv(timing: CardTiming, warm: NvStore, cold: NvStore) -> Self {
        Self::with_host(timing, warm, cold, PagedMemory::new())
    }
}

impl<H: WordStore> SimCard<H> {
    /// A card booting from the given NV contents, reaching `host` by DMA.
    pub fn with_host(timing: CardTiming, warm: NvStore, cold: NvStore, host: H) -> Self {
        let vcd = std::env::var("HITLESS_VCD").ok();
        if vcd.is_some() && !Verilated::trace_supported() {
            tracing::warn!(
                "HITLESS_VCD is set but the model was built without tracing: \
                 rebuild with HITLESS_TRACE_BUILD=1 to get a waveform"
            );
        }
        let mut model = Verilated::new(vcd.as_deref());
        let now = model.peek();
        let mut card = Self {
            model,
            geometry: DEFAULT_GEOMETRY,
            host,
            warm,
            cold,
            host_port: PortModel::new(timing.host, 1),
            warm_port: PortModel::new(timing.warm, 2),
            cold_port: PortModel::new(timing.cold, 3),
            timing,
            input: HlIn::default(),
            now,
            cycle: 0,
            irqs: 0,
            vcd,
        };
        card.hold_reset(4);
        card
    }

    /// Cycles clocked since this card (this power-on) was created.
    pub fn cycle(&self) -> u64 {
        self.cycle
    }

    /// Interrupt messages seen.
    pub fn irq_count(&self) -> u64 {
        self.irqs
    }

    /// Change port timing (takes effect for new commands).
    pub fn set_timing(&mut self, timing: CardTiming) {
        self.timing = timing;
        self.host_port.timing = timing.host;
        self.warm_port.timing = timing.warm;
        self.cold_port.timing = timing.cold;
    }

    /// Start (or stop) recording NV write timing on both tiers.
    pub fn trace_nv_writes(&mut self, on: bool) {
        self.warm_port.trace = on.then(Vec::new);
        self.cold_port.trace = on.then(Vec::new);
    }

    /// NV writes recorded since `trace_nv_writes(true)`: (tier, event).
    pub fn nv_write_events(&self) -> Vec<(usize, crate::memory::WriteEvent)> {
        let mut v = Vec::new();
        for (tier, port) in [(0, &self.warm_port), (1, &self.cold_port)] {
            for e in port.trace.iter().flatten() {
                v.push((tier, *e));
            }
        }
        v
    }

    /// Commands served by the ports so far: (host reads, host writes, NV reads, NV writes).
    pub fn port_counts(&self) -> (u64, u64, u64, u64) {
        (
            self.host_port.reads,
            self.host_port.writes,
            self.warm_port.reads + self.cold_port.reads,
            self.warm_port.writes + self.cold_port.writes,
        )
    }

    /// Clock one cycle with the current bus inputs; returns what the design
    /// presented during the cycle (a handshake happened at this edge where
    /// a valid and the matching ready were both high in it).
    #[inline]
    pub fn tick(&mut self) -> HlOut {
        let c = self.cycle;
        let h = self.host_port.drive(c, &mut self.host);
        let w = self.warm_port.drive(c, &mut self.warm);
        let k = self.cold_port.drive(c, &mut self.cold);
        let i = &mut self.input;
        i.host_cmd_ready = h.cmd_ready as u8;
        i.host_rsp_valid = h.rsp_valid as u8;
        i.host_rsp_write = h.rsp_write as u8;
        i.host_rsp_data = h.rsp_data;
        i.warm_cmd_ready = w.cmd_ready as u8;
        i.warm_rsp_valid = w.rsp_valid as u8;
        i.warm_rsp_write = w.rsp_write as u8;
        i.warm_rsp_data = w.rsp_data;
        i.cold_cmd_ready = k.cmd_ready as u8;
        i.cold_rsp_valid = k.rsp_valid as u8;
        i.cold_rsp_write = k.rsp_write as u8;
        i.cold_rsp_data = k.rsp_data;
        let o = self.now;
        self.host_port.observe(
            c,
            o.host_cmd_valid != 0,
            o.host_cmd_write != 0,
            o.host_cmd_addr,
            o.host_cmd_wdata,
            o.host_cmd_wstrb,
        );
        self.warm_port.observe(
            c,
            o.warm_cmd_valid != 0,
            o.warm_cmd_write != 0,
            o.warm_cmd_addr,
            o.warm_cmd_wdata,
            o.warm_cmd_wstrb,
        );
        self.cold_port.observe(
            c,
            o.cold_cmd_valid != 0,
            o.cold_cmd_write != 0,
            o.cold_cmd_addr,
            o.cold_cmd_wdata,
            o.cold_cmd_wstrb,
        );
        if o.irq != 0 {
            self.irqs += 1;
        }
        self.now = self.model.step(&self.input);
        self.cycle += 1;
        o
    }

    /// The controller's input pins, for protocol-level tests that drive the
    /// AXI4-Lite channels themselves (`tick` returns the outputs per cycle).
    pub fn pins(&mut self) -> &mut HlIn {
        &mut self.input
    }

    /// Clock `n` cycles.
    pub fn run(&mut self, n: u64) {
        for _ in 0..n {
            self.tick();
        }
    }

    fn csr_timeout(&mut self, what: &'static str, offset: u32, cycles: u64) -> SimError {
        self.input.awvalid = 0;
        self.input.wvalid = 0;
        self.input.arvalid = 0;
        SimError::CsrTimeout {
            what,
            offset,
            cycles,
        }
    }

    fn hold_reset(&mut self, cycles: u64) {
        self.input.reset = 1;
        self.run(cycles);
        self.input.reset = 0;
    }

    /// Write a register through AXI4-Lite.
    pub fn write_reg(&mut self, offset: u32, value: u32) -> Result<(), SimError> {
        const LIMIT: u64 = 64;
        self.input.awvalid = 1;
        self.input.wvalid = 1;
        self.input.awaddr = offset as u16;
        self.input.wdata = value;
        self.input.wstrb = 0xF;
        self.input.bready = 1;
        let mut n = 0;
        while self.input.awvalid != 0 || self.input.wvalid != 0 {
            let o = self.tick();
            n += 1;
            if o.awready != 0 {
                self.input.awvalid = 0;
            }
            if o.wready != 0 {
                self.input.wvalid = 0;
            }
            if n > LIMIT {
                return Err(self.csr_timeout("write", offset, n));
            }
        }
        loop {
            let o = self.tick();
            n += 1;
            if o.bvalid != 0 {
                self.input.bready = 0;
                if o.bresp != 0 {
                    return Err(SimError::CsrError { offset });
                }
                return Ok(());
            }
            if n > LIMIT {
                self.input.bready = 0;
                return Err(self.csr_timeout("write response", offset, n));
            }
        }
    }

    /// Read a register through AXI4-Lite.
    pub fn read_reg(&mut self, offset: u32) -> Result<u32, SimError> {
        const LIMIT: u64 = 64;
        self.input.arvalid = 1;
        self.input.araddr = offset as u16;
        self.input.rready = 1;
        let mut n = 0;
        while self.input.arvalid != 0 {
            let o = self.tick();
            n += 1;
            if o.arready != 0 {
                self.input.arvalid = 0;
            }
            if n > LIMIT {
                return Err(self.csr_timeout("read", offset, n));
            }
        }
        loop {
            let o = self.tick();
            n += 1;
            if o.rvalid != 0 {
                self.input.rready = 0;
                return Ok(o.rdata);
            }
            if n > LIMIT {
                self.input.rready = 0;
                return Err(self.csr_timeout("read data", offset, n));
            }
        }
    }

    /// Clock until `STATUS.BOOT_DONE`.
    pub fn wait_boot(&mut self, limit: u64) -> Result<(), SimError> {
        let start = self.cycle;
        while self.read_reg(reg::STATUS)? & hitless_hdl::contract::status::BOOT_DONE == 0 {
            if self.cycle - start > limit {
                return Err(SimError::Timeout {
                    what: "finish the boot scan",
                    cycles: limit,
                });
            }
            self.run(64);
        }
        Ok(())
    }

    /// Warm reset: the controller restarts, both NV tiers keep their
    /// contents; writes in flight are torn per `torn`.
    pub fn warm_reset(&mut self, torn: TornWrites) {
        self.tear(torn);
        self.host_port.abort();
        self.hold_reset(4);
    }

    /// Power cut now: the controller and the warm tier lose everything
    /// (`keep_warm` models a warm tier with battery or supercap backup);
    /// the cold tier keeps what was durable, plus torn in-flight writes.
    /// Host memory is the host's: it survives the card's power cycle.
    pub fn power_cycle(mut self, torn: TornWrites, keep_warm: bool) -> Self {
        self.tear(torn);
        let g = self.geometry;
        let SimCard {
            model,
            host,
            warm,
            cold,
            timing,
            ..
        } = self;
        drop(model);
        let warm = if keep_warm {
            warm
        } else {
            NvStore::new(g.total() as usize)
        };
        Self::with_host(timing, warm, cold, host)
    }

    fn tear(&mut self, torn: TornWrites) {
        let mut rng = match torn {
            TornWrites::Random(seed) => Some(ChaCha8Rng::seed_from_u64(seed)),
            _ => None,
        };
        for (port, store) in [
            (&mut self.warm_port, &mut self.warm),
            (&mut self.cold_port, &mut self.cold),
        ] {
            for p in port.abort() {
                let apply = match torn {
                    TornWrites::Drop => false,
                    TornWrites::Apply => true,
                    TornWrites::Random(_) => rng.as_mut().is_some_and(|r| r.gen_bool(0.5)),
                };
                if apply {
                    store.write_word(p.addr, p.data, p.strobe);
                }
            }
        }
    }

    /// Flip `count` random bits in `[start, start + len)` of a tier (0 warm, 1 cold).
    pub fn flip_bits(
        &mut self,
        tier: usize,
        start: u64,
        len: u64,
        count: u32,
        seed: u64,
    ) -> Vec<u64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let store = if tier == 0 {
            &mut self.warm
        } else {
            &mut self.cold
        };
        let mut flipped = Vec::new();
        if len == 0 {
            return flipped;
        }
        for _ in 0..count {
            let byte = start + rng.gen_range(0..len);
            let bit = rng.gen_range(0..8u8);
            if store.corrupt(byte as usize, 1 << bit) {
                flipped.push(byte * 8 + bit as u64);
            }
        }
        flipped
    }

    /// The waveform file, if one is being written.
    pub fn vcd(&self) -> Option<&str> {
        self.vcd.as_deref()
    }
}
