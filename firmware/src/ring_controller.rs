//! The firmware's [`Controller`] on any platform that reaches its
//! controller's registers and card-local memory: the shared ring engine
//! (`hitless-ring`) over the platform's [`RingIo`], the rings at the start
//! of card-local memory and the firmware's scratch after them. The
//! platform supplies only the bus (inside `hitless-sim`: the Verilated
//! AXI4-Lite port and the card's local RAM; on a Zynq: a UIO mapping).

use crate::manager::{AccessError, Controller};
use hitless_hdl::contract::{irq, Completion, Descriptor, CPL_BYTES, DESC_BYTES};
use hitless_ring::{RingConfig, RingError, RingIo, Rings};
use std::time::Duration;

impl From<RingError> for AccessError {
    fn from(e: RingError) -> Self {
        AccessError::transport("the controller's rings", e)
    }
}

/// Where the firmware's memory is, as the controller addresses it.
#[derive(Clone, Copy, Debug)]
pub struct LocalLayout {
    /// Controller address of card-local memory: the rings go here.
    pub base: u64,
    /// Bytes kept for the rings.
    pub ring_bytes: u64,
    /// Bytes of scratch after the rings.
    pub scratch_bytes: usize,
}

/// Ring sizes the firmware uses (one operation at a time: small rings).
const DQ_LOG2: u32 = 4;
const CQ_LOG2: u32 = 5;

/// The controller as the firmware drives it.
pub struct RingController<B: RingIo<Error = AccessError>> {
    bus: B,
    rings: Rings,
    layout: LocalLayout,
    op_timeout: Duration,
}

impl<B: RingIo<Error = AccessError>> RingController<B> {
    /// Take the controller over (after its boot scan), with the rings at
    /// `layout.base`.
    pub fn take_over(
        mut bus: B,
        layout: LocalLayout,
        boot_timeout: Duration,
        op_timeout: Duration,
    ) -> Result<Self, AccessError> {
        let cfg = RingConfig {
            dq_base: layout.base,
            cq_base: layout.base + ((DESC_BYTES as u64) << DQ_LOG2),
            dq_log2: DQ_LOG2,
            cq_log2: CQ_LOG2,
            irq_mask: irq::COMPLETION | irq::ERROR,
        };
        let needed = cfg.dq_bytes() + cfg.cq_bytes();
        if needed > layout.ring_bytes {
            return Err(AccessError::OutOfRange {
                what: "the rings",
                offset: layout.base,
                len: needed as usize,
                size: layout.ring_bytes as usize,
            });
        }
        debug_assert_eq!(CPL_BYTES, 16);
        let rings = Rings::take_over(&mut bus, cfg, boot_timeout, op_timeout)?;
        Ok(Self {
            bus,
            rings,
            layout,
            op_timeout,
        })
    }

    /// The bus.
    pub fn bus(&mut self) -> &mut B {
        &mut self.bus
    }

    fn scratch_addr(
        &self,
        what: &'static str,
        offset: usize,
        len: usize,
    ) -> Result<u64, AccessError> {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.layout.scratch_bytes)
        {
            return Err(AccessError::OutOfRange {
                what,
                offset: offset as u64,
                len,
                size: self.layout.scratch_bytes,
            });
        }
        Ok(self.layout.base + self.layout.ring_bytes + offset as u64)
    }
}

impl<B: RingIo<Error = AccessError>> Controller for RingController<B> {
    fn read32(&mut self, offset: u32) -> Result<u32, AccessError> {
        self.bus.read32(offset)
    }
    fn write32(&mut self, offset: u32, value: u32) -> Result<(), AccessError> {
        self.bus.write32(offset, value)
    }
    fn execute(&mut self, d: Descriptor) -> Result<Completion, AccessError> {
        // Base plus a second per MiB: generous for a slow simulated card.
        let timeout = self.op_timeout + Duration::from_millis(u64::from(d.len) / 1024);
        self.rings.execute(&mut self.bus, d, timeout)
    }
    fn scratch(&self) -> (u64, usize) {
        (
            self.layout.base + self.layout.ring_bytes,
            self.layout.scratch_bytes,
        )
    }
    fn scratch_write(&mut self, offset: usize, data: &[u8]) -> Result<(), AccessError> {
        let at = self.scratch_addr("scratch write", offset, data.len())?;
        self.bus.mem_write(at, data)
    }
    fn scratch_read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), AccessError> {
        let at = self.scratch_addr("scratch read", offset, buf.len())?;
        self.bus.mem_read(at, buf)
    }
}
