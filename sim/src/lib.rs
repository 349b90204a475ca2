//! The hitless card as a simulated device: the Verilated controller (built
//! from `hitless-hdl`'s generated Verilog by `build.rs`), host memory, warm
//! and cold NV tiers with configurable latency, and fault injection.

pub mod backup;
pub mod card;
pub mod dma;
pub mod etcd;
pub mod ffi;
pub mod firmware;
pub mod harness;
pub mod image;
pub mod inproc;
pub mod link;
pub mod local;
pub mod memory;
pub mod pair;
pub mod serve;
pub mod service;
pub mod witness;

pub use card::{CardTiming, SimCard, SimError, TornWrites};
pub use memory::{NvStore, PortTiming};
