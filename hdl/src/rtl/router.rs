//! Connects the engine's port and the mover's source and destination ports
//! to the physical ports (host DMA, warm NV, cold NV).
//!
//! While the mover runs it owns the ports it was pointed at; otherwise the
//! engine owns the port it selects. Ownership only changes when the previous
//! owner has no command outstanding, so in-order responses always return to
//! the owner that issued them. When the mover reads and writes the same
//! port (a COPY within a tier) writes go first, and responses are steered by
//! the `rsp_write` echo.

use super::bus::{PmpInitiator, PmpTarget};
use rust_hdl::prelude::*;

/// Port selector value: host DMA port.
pub const SEL_HOST: u64 = 0;
/// Port selector value: warm NV port.
pub const SEL_WARM: u64 = 1;
/// Port selector value: cold NV port.
pub const SEL_COLD: u64 = 2;
/// Port selector value: no port (a CRC scan has no destination).
pub const SEL_NONE: u64 = 3;

/// The port router.
#[derive(LogicBlock)]
pub struct PortRouter {
    /// The engine's own port (descriptors, completions, superblocks, log headers).
    pub eng: PmpTarget<64>,
    /// Which physical port the engine uses (`SEL_*`).
    pub eng_sel: Signal<In, Bits<2>>,
    /// The mover's source port.
    pub src: PmpTarget<64>,
    /// Which physical port the mover reads (`SEL_*`).
    pub src_sel: Signal<In, Bits<2>>,
    /// The mover's destination port.
    pub dst: PmpTarget<64>,
    /// Which physical port the mover writes (`SEL_*`).
    pub dst_sel: Signal<In, Bits<2>>,
    /// The mover owns the ports.
    pub mover_active: Signal<In, Bit>,
    /// Host DMA port.
    pub host: PmpInitiator<64>,
    /// Warm-tier NV port.
    pub warm: PmpInitiator<32>,
    /// Cold-tier NV port.
    pub cold: PmpInitiator<32>,
    k_host: Constant<Bits<2>>,
    k_warm: Constant<Bits<2>>,
    k_cold: Constant<Bits<2>>,
}

impl Default for PortRouter {
    fn default() -> Self {
        Self {
            eng: Default::default(),
            eng_sel: Default::default(),
            src: Default::default(),
            src_sel: Default::default(),
            dst: Default::default(),
            dst_sel: Default::default(),
            mover_active: Default::default(),
            host: Default::default(),
            warm: Default::default(),
            cold: Default::default(),
            k_host: Constant::new(SEL_HOST.into()),
            k_warm: Constant::new(SEL_WARM.into()),
            k_cold: Constant::new(SEL_COLD.into()),
        }
    }
}

impl Logic for PortRouter {
    #[hdl_gen]
    fn update(&mut self) {
        // Idle defaults.
        self.host.cmd_valid.next = false;
        self.host.cmd_write.next = false;
        self.host.cmd_addr.next = 0.into();
        self.host.cmd_wdata.next = 0.into();
        self.host.cmd_wstrb.next = 0.into();
        self.warm.cmd_valid.next = false;
        self.warm.cmd_write.next = false;
        self.warm.cmd_addr.next = 0.into();
        self.warm.cmd_wdata.next = 0.into();
        self.warm.cmd_wstrb.next = 0.into();
        self.cold.cmd_valid.next = false;
        self.cold.cmd_write.next = false;
        self.cold.cmd_addr.next = 0.into();
        self.cold.cmd_wdata.next = 0.into();
        self.cold.cmd_wstrb.next = 0.into();
        self.eng.cmd_ready.next = false;
        self.eng.rsp_valid.next = false;
        self.eng.rsp_write.next = false;
        self.eng.rsp_data.next = 0.into();
        self.src.cmd_ready.next = false;
        self.src.rsp_valid.next = false;
        self.src.rsp_write.next = false;
        self.src.rsp_data.next = 0.into();
        self.dst.cmd_ready.next = false;
        self.dst.rsp_valid.next = false;
        self.dst.rsp_write.next = false;
        self.dst.rsp_data.next = 0.into();

        if !self.mover_active.val() {
            // ---- engine owns its selected port ----
            if self.eng_sel.val() == self.k_host.val() {
                self.host.cmd_valid.next = self.eng.cmd_valid.val();
                self.host.cmd_write.next = self.eng.cmd_write.val();
                self.host.cmd_addr.next = self.eng.cmd_addr.val();
                self.host.cmd_wdata.next = self.eng.cmd_wdata.val();
                self.host.cmd_wstrb.next = self.eng.cmd_wstrb.val();
                self.eng.cmd_ready.next = self.host.cmd_ready.val();
                self.eng.rsp_valid.next = self.host.rsp_valid.val();
                self.eng.rsp_write.next = self.host.rsp_write.val();
                self.eng.rsp_data.next = self.host.rsp_data.val();
            } else if self.eng_sel.val() == self.k_warm.val() {
                self.warm.cmd_valid.next = self.eng.cmd_valid.val();
                self.warm.cmd_write.next = self.eng.cmd_write.val();
                self.warm.cmd_addr.next = self.eng.cmd_addr.val().get_bits::<32>(0);
                self.warm.cmd_wdata.next = self.eng.cmd_wdata.val();
                self.warm.cmd_wstrb.next = self.eng.cmd_wstrb.val();
                self.eng.cmd_ready.next = self.warm.cmd_ready.val();
                self.eng.rsp_valid.next = self.warm.rsp_valid.val();
                self.eng.rsp_write.next = self.warm.rsp_write.val();
                self.eng.rsp_data.next = self.warm.rsp_data.val();
            } else if self.eng_sel.val() == self.k_cold.val() {
                self.cold.cmd_valid.next = self.eng.cmd_valid.val();
                self.cold.cmd_write.next = self.eng.cmd_write.val();
                self.cold.cmd_addr.next = self.eng.cmd_addr.val().get_bits::<32>(0);
                self.cold.cmd_wdata.next = self.eng.cmd_wdata.val();
                self.cold.cmd_wstrb.next = self.eng.cmd_wstrb.val();
                self.eng.cmd_ready.next = self.cold.cmd_ready.val();
                self.eng.rsp_valid.next = self.cold.rsp_valid.val();
                self.eng.rsp_write.next = self.cold.rsp_write.val();
                self.eng.rsp_data.next = self.cold.rsp_data.val();
            }
        } else {
            // ---- mover: source reads ----
            if self.src_sel.val() == self.k_host.val() {
                self.host.cmd_valid.next = self.src.cmd_valid.val();
                self.host.cmd_addr.next = self.src.cmd_addr.val();
                self.src.cmd_ready.next = self.host.cmd_ready.val();
                self.src.rsp_valid.next = self.host.rsp_valid.val() & !self.host.rsp_write.val();
                self.src.rsp_data.next = self.host.rsp_data.val();
            } else if self.src_sel.val() == self.k_warm.val() {
                self.warm.cmd_valid.next = self.src.cmd_valid.val();
                self.warm.cmd_addr.next = self.src.cmd_addr.val().get_bits::<32>(0);
                self.src.cmd_ready.next = self.warm.cmd_ready.val();
                self.src.rsp_valid.next = self.warm.rsp_valid.val() & !self.warm.rsp_write.val();
                self.src.rsp_data.next = self.warm.rsp_data.val();
            } else if self.src_sel.val() == self.k_cold.val() {
                self.cold.cmd_valid.next = self.src.cmd_valid.val();
                self.cold.cmd_addr.next = self.src.cmd_addr.val().get_bits::<32>(0);
                self.src.cmd_ready.next = self.cold.cmd_ready.val();
                self.src.rsp_valid.next = self.cold.rsp_valid.val() & !self.cold.rsp_write.val();
                self.src.rsp_data.next = self.cold.rsp_data.val();
            }
            // ---- mover: destination writes (win over reads on a shared port) ----
            if self.dst_sel.val() == self.k_host.val() {
                self.dst.rsp_valid.next = self.host.rsp_valid.val() & self.host.rsp_write.val();
                self.dst.rsp_write.next = self.host.rsp_write.val();
                if self.dst.cmd_valid.val() {
                    self.host.cmd_valid.next = true;
                    self.host.cmd_write.next = true;
                    self.host.cmd_addr.next = self.dst.cmd_addr.val();
                    self.host.cmd_wdata.next = self.dst.cmd_wdata.val();
                    self.host.cmd_wstrb.next = self.dst.cmd_wstrb.val();
                    self.dst.cmd_ready.next = self.host.cmd_ready.val();
                    if self.src_sel.val() == self.k_host.val() {
                        self.src.cmd_ready.next = false;
                    }
                }
            } else if self.dst_sel.val() == self.k_warm.val() {
                self.dst.rsp_valid.next = self.warm.rsp_valid.val() & self.warm.rsp_write.val();
                self.dst.rsp_write.next = self.warm.rsp_write.val();
                if self.dst.cmd_valid.val() {
                    self.warm.cmd_valid.next = true;
                    self.warm.cmd_write.next = true;
                    self.warm.cmd_addr.next = self.dst.cmd_addr.val().get_bits::<32>(0);
                    self.warm.cmd_wdata.next = self.dst.cmd_wdata.val();
                    self.warm.cmd_wstrb.next = self.dst.cmd_wstrb.val();
                    self.dst.cmd_ready.next = self.warm.cmd_ready.val();
                    if self.src_sel.val() == self.k_warm.val() {
                        self.src.cmd_ready.next = false;
                    }
                }
            } else if self.dst_sel.val() == self.k_cold.val() {
                self.dst.rsp_valid.next = self.cold.rsp_valid.val() & self.cold.rsp_write.val();
                self.dst.rsp_write.next = self.cold.rsp_write.val();
                if self.dst.cmd_valid.val() {
                    self.cold.cmd_valid.next = true;
                    self.cold.cmd_write.next = true;
                    self.cold.cmd_addr.next = self.dst.cmd_addr.val().get_bits::<32>(0);
                    self.cold.cmd_wdata.next = self.dst.cmd_wdata.val();
                    self.cold.cmd_wstrb.next = self.dst.cmd_wstrb.val();
                    self.dst.cmd_ready.next = self.cold.cmd_ready.val();
                    if self.src_sel.val() == self.k_cold.val() {
                        self.src.cmd_ready.next = false;
                    }
                }
            }
        }
    }
}
