//! The controller RTL, written with rust-hdl (feature `rtl`).
//!
//! One block, one job: `axil` (AXI4-Lite to register strobes), `crc`
//! (CRC-32C, 8 bytes/cycle), `mover` (the DMA datapath), `router` (port
//! ownership), `controller` (registers, rings, sequencing, commit, boot scan).

pub mod axil;
pub mod bus;
pub mod controller;
pub mod crc;
pub mod mover;
pub mod router;

use crate::contract::NvGeometry;
use rust_hdl::prelude::*;

/// Elaborate the controller for `geometry` and return its Verilog (module `top`).
pub fn generate_verilog(geometry: &NvGeometry) -> String {
    let mut uut = controller::HitlessController::new(geometry);
    uut.connect_all();
    rust_hdl::core::prelude::generate_verilog(&uut)
}
