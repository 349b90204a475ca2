//! The roles driven by a simulated clock and an in-memory network that can
//! drop, delay, cut and crash; the unit tests, and the randomized fault
//! test in the Jepsen spirit (`fault.rs`).

mod fault;
mod manager;
mod net;
mod peer_sets;
mod unit;
mod version;
