//! The ring engine (`hitless-ring`, the one the driver and the firmware
//! use) over `SimCard` for tests, benchmarks and the demo: rings in host
//! memory at fixed addresses, time counted in the card's clock cycles.

use crate::card::{SimCard, SimError};
use hitless_hdl::contract::{Completion, Descriptor};
use hitless_hdl::model::HostMemory;
use hitless_ring::{RingConfig, RingError, RingIo};
use std::time::Duration;

/// Host address of the descriptor ring.
pub const DQ_ADDR: u64 = 0x1000_0000;
/// Host address of the completion ring.
pub const CQ_ADDR: u64 = 0x2000_0000;
/// Where test data buffers start in host memory.
pub const DATA_ADDR: u64 = 0x4000_0000;

/// One clock cycle of the simulated card as the ring engine counts time
/// (the design's 100 MHz clock): timeouts given in cycles stay cycles.
pub const CYCLE: Duration = Duration::from_nanos(10);

/// Cycles the card is clocked while the engine waits.
const IDLE_CYCLES: u64 = 32;

impl From<RingError> for SimError {
    fn from(e: RingError) -> Self {
        match e {
            RingError::Timeout { what, after } => SimError::Timeout {
                what,
                cycles: (after.as_nanos() / CYCLE.as_nanos()) as u64,
            },
            other => SimError::Ring(other),
        }
    }
}

/// The card as the ring engine sees it: waiting clocks it.
struct Clocked<'a>(&'a mut SimCard);

impl RingIo for Clocked<'_> {
    type Error = SimError;
    fn read32(&mut self, offset: u32) -> Result<u32, SimError> {
        self.0.read_reg(offset)
    }
    fn write32(&mut self, offset: u32, value: u32) -> Result<(), SimError> {
        self.0.write_reg(offset, value)
    }
    fn mem_write(&mut self, addr: u64, data: &[u8]) -> Result<(), SimError> {
        self.0.host.write(addr, data);
        Ok(())
    }
    fn mem_read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), SimError> {
        self.0.host.read(addr, buf);
        Ok(())
    }
    fn idle(&mut self, _slice: Duration) -> Result<bool, SimError> {
        self.0.run(IDLE_CYCLES);
        Ok(false)
    }
    fn now(&self) -> Duration {
        CYCLE * u32::try_from(self.0.cycle()).unwrap_or(u32::MAX)
    }
}

fn cycles(limit: u64) -> Duration {
    Duration::from_nanos(limit.saturating_mul(CYCLE.as_nanos() as u64))
}

/// The rings of a simulated card.
pub struct Rings(hitless_ring::Rings);

impl Rings {
    /// Program the ring registers and enable the controller with every
    /// interrupt cause unmasked.
    pub fn setup(card: &mut SimCard, dq_log2: u32, cq_log2: u32) -> Result<Self, SimError> {
        let cfg = RingConfig {
            dq_base: DQ_ADDR,
            cq_base: CQ_ADDR,
            dq_log2,
            cq_log2,
            irq_mask: 7,
        };
        hitless_ring::Rings::start(&mut Clocked(card), cfg).map(Self)
    }

    /// The next descriptor index.
    pub fn tail(&self) -> u16 {
        self.0.tail()
    }

    /// The next completion index.
    pub fn cq_tail(&self) -> u16 {
        self.0.cq_tail()
    }

    /// Write descriptors into the ring and ring the doorbell once. No
    /// room check: the tests drive the controller past full rings on
    /// purpose (it must stall, or refuse the doorbell).
    pub fn submit(&mut self, card: &mut SimCard, descs: &[Descriptor]) -> Result<(), SimError> {
        self.0
            .submit_unchecked(&mut Clocked(card), descs)
            .map(|_| ())
    }

    /// Clock until `n` completions have arrived (by phase bit), within
    /// `limit` cycles; consume them, in ring order.
    pub fn wait(
        &mut self,
        card: &mut SimCard,
        n: usize,
        limit: u64,
    ) -> Result<Vec<Completion>, SimError> {
        self.0.wait_next(&mut Clocked(card), n, cycles(limit))
    }

    /// Submit one descriptor and wait for its completion.
    pub fn exec(
        &mut self,
        card: &mut SimCard,
        d: Descriptor,
        limit: u64,
    ) -> Result<Completion, SimError> {
        self.submit(card, &[d])?;
        let mut v = self.wait(card, 1, limit)?;
        Ok(v.remove(0))
    }
}

/// Program protection entry `index` and return its key.
pub fn program_entry(
    card: &mut SimCard,
    index: u32,
    tag: u32,
    base: u32,
    len: u32,
    perm: u32,
) -> Result<u32, SimError> {
    hitless_hdl::contract::program_protection_entry(
        |r, v| card.write_reg(r, v),
        index,
        tag,
        base,
        len,
        perm,
    )
}
