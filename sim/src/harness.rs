//! A minimal ring driver over `SimCard` for tests, benchmarks and the demo:
//! rings in host memory, descriptor submission, completion polling.
//! (The production driver lives in the `driver` crate.)

use crate::card::{SimCard, SimError};
use hitless_hdl::contract::{ctrl, reg, Completion, Descriptor, CPL_BYTES, DESC_BYTES};

/// Host address of the descriptor ring.
pub const DQ_ADDR: u64 = 0x1000_0000;
/// Host address of the completion ring.
pub const CQ_ADDR: u64 = 0x2000_0000;
/// Where test data buffers start in host memory.
pub const DATA_ADDR: u64 = 0x4000_0000;

/// Ring state on the host side.
pub struct Rings {
    pub dq_log2: u32,
    pub cq_log2: u32,
    pub tail: u16,
    pub cq_tail: u16,
}

impl Rings {
    /// Program the ring registers and enable the controller. The completion
    /// ring is zeroed first: after a controller reset CQ_HEAD restarts at 0
    /// with phase 1, and stale entries from before the reset would look new.
    pub fn setup(card: &mut SimCard, dq_log2: u32, cq_log2: u32) -> Result<Self, SimError> {
        use hitless_hdl::model::HostMemory;
        card.host
            .write(CQ_ADDR, &vec![0u8; (CPL_BYTES as usize) << cq_log2]);
        card.write_reg(reg::DQ_BASE_LO, DQ_ADDR as u32)?;
        card.write_reg(reg::DQ_BASE_HI, (DQ_ADDR >> 32) as u32)?;
        card.write_reg(reg::DQ_SIZE_LOG2, dq_log2)?;
        card.write_reg(reg::CQ_BASE_LO, CQ_ADDR as u32)?;
        card.write_reg(reg::CQ_BASE_HI, (CQ_ADDR >> 32) as u32)?;
        card.write_reg(reg::CQ_SIZE_LOG2, cq_log2)?;
        card.write_reg(reg::IRQ_MASK, 7)?;
        card.write_reg(reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE)?;
        let tail = card.read_reg(reg::DQ_TAIL)? as u16;
        let cq_tail = card.read_reg(reg::CQ_TAIL)? as u16;
        Ok(Self {
            dq_log2,
            cq_log2,
            tail,
            cq_tail,
        })
    }

    /// Write descriptors into the ring and ring the doorbell once.
    pub fn submit(&mut self, card: &mut SimCard, descs: &[Descriptor]) -> Result<(), SimError> {
        use hitless_hdl::model::HostMemory;
        for d in descs {
            let slot = (self.tail as u64) & ((1u64 << self.dq_log2) - 1);
            card.host
                .write(DQ_ADDR + slot * DESC_BYTES as u64, &d.to_bytes());
            self.tail = self.tail.wrapping_add(1);
        }
        card.write_reg(reg::DQ_TAIL, self.tail as u32)
    }

    /// Clock until `n` completions have arrived (by phase bit), consume them.
    pub fn wait(
        &mut self,
        card: &mut SimCard,
        n: usize,
        limit: u64,
    ) -> Result<Vec<Completion>, SimError> {
        let start = card.cycle();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let slot = (self.cq_tail as u64) & ((1u64 << self.cq_log2) - 1);
            let addr = CQ_ADDR + slot * CPL_BYTES as u64;
            let w = [card.host.read_u64(addr), card.host.read_u64(addr + 8)];
            let c = Completion::from_words(w);
            let expect_phase = (self.cq_tail >> self.cq_log2) & 1 == 0;
            if c.phase == expect_phase {
                out.push(c);
                self.cq_tail = self.cq_tail.wrapping_add(1);
                card.write_reg(reg::CQ_TAIL, self.cq_tail as u32)?;
                continue;
            }
            if card.cycle() - start > limit {
                return Err(SimError::Timeout {
                    what: "post the expected completions",
                    cycles: limit,
                });
            }
            card.run(32);
        }
        Ok(out)
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
