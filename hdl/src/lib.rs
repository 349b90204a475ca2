//! hitless controller: the hardware contract, the reference model and (with
//! the `rtl` feature) the rust-hdl RTL.
#![forbid(unsafe_code)]

pub mod contract;
pub mod logring;
pub mod model;

#[cfg(feature = "rtl")]
pub mod rtl;

#[cfg(feature = "verilate")]
pub mod verilate;
