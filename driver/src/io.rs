//! The one trait between the driver core and a transport.

use crate::error::Result;
use std::time::Duration;

/// Memory the card reaches by DMA: a contiguous window of host memory that
/// the card sees at `iova()`. On VFIO it is IOMMU-mapped; over vfio-user it
/// is a memfd shared with the card process; on UIO it is a physically
/// contiguous buffer; in-process it is plain memory.
pub trait DmaWindow {
    /// The I/O virtual address of byte 0 of the window.
    fn iova(&self) -> u64;
    /// The window's bytes, as the host sees them.
    fn bytes(&mut self) -> &mut [u8];
}

/// A transport to one card: its register BAR, its DMA window, its
/// interrupt. Implemented by the vfio-user client (the simulated card), VFIO
/// (a real PCIe card), UIO (Zynq boards) and the in-process model.
pub trait CardIo {
    /// Read a 32-bit register at a byte offset in BAR0.
    fn read32(&mut self, offset: u32) -> Result<u32>;
    /// Write a 32-bit register.
    fn write32(&mut self, offset: u32, value: u32) -> Result<()>;
    /// The DMA window.
    fn dma(&mut self) -> &mut dyn DmaWindow;
    /// Wait for an interrupt message for at most `timeout`; `Ok(true)` if
    /// one arrived. Transports without interrupts wait a little and return
    /// `Ok(false)`: the caller polls the completion ring either way.
    fn wait_irq(&mut self, timeout: Duration) -> Result<bool>;
    /// Human-readable name of the transport and device, for messages.
    fn describe(&self) -> String;
}
