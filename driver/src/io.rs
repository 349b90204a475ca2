//! The one trait between the driver core and a transport.

use crate::error::Result;
use std::time::Duration;

/// Memory the card reaches by DMA: a contiguous window of host memory that
/// the card sees at `iova()`. On VFIO it is IOMMU-mapped; over vfio-user it
/// is a memfd shared with the card process; on UIO it is a physically
/// contiguous buffer; in-process it is plain memory.
///
/// Access is by copy, never by reference: the card writes this memory
/// concurrently (completions, READ data), so implementations over shared
/// memory copy with volatile accesses.
pub trait DmaWindow {
    /// The I/O virtual address of byte 0 of the window.
    fn iova(&self) -> u64;
    /// Size of the window in bytes.
    fn len(&self) -> usize;
    /// A window of no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copy `buf.len()` bytes from `offset`; `false` (and nothing copied)
    /// if the range is not inside the window.
    fn read(&self, offset: usize, buf: &mut [u8]) -> bool;
    /// Copy `data` to `offset`; `false` (and nothing written) if the range
    /// is not inside the window.
    fn write(&mut self, offset: usize, data: &[u8]) -> bool;
}

/// Forwards every call to the transport behind a pointer: a boxed
/// transport (the CLI picks one at run time) or a borrowed one (a client
/// used for one call, the transport kept).
macro_rules! forward_card_io {
    ($ty:ty) => {
        impl<T: CardIo + ?Sized> CardIo for $ty {
            fn read32(&mut self, offset: u32) -> Result<u32> {
                (**self).read32(offset)
            }
            fn write32(&mut self, offset: u32, value: u32) -> Result<()> {
                (**self).write32(offset, value)
            }
            fn dma(&mut self) -> &mut dyn DmaWindow {
                (**self).dma()
            }
            fn wait_irq(&mut self, timeout: Duration) -> Result<bool> {
                (**self).wait_irq(timeout)
            }
            fn describe(&self) -> String {
                (**self).describe()
            }
        }
    };
}
forward_card_io!(Box<T>);
forward_card_io!(&mut T);

/// `read`/`write` for windows that are plain memory of this process.
pub(crate) fn slice_read(mem: &[u8], offset: usize, buf: &mut [u8]) -> bool {
    match offset
        .checked_add(buf.len())
        .and_then(|end| mem.get(offset..end))
    {
        Some(src) => {
            buf.copy_from_slice(src);
            true
        }
        None => false,
    }
}

/// See [`slice_read`].
pub(crate) fn slice_write(mem: &mut [u8], offset: usize, data: &[u8]) -> bool {
    match offset
        .checked_add(data.len())
        .and_then(|end| mem.get_mut(offset..end))
    {
        Some(dst) => {
            dst.copy_from_slice(data);
            true
        }
        None => false,
    }
}

/// `read`/`write` for windows shared with a device or another process:
/// byte-wise volatile copies (the other side writes concurrently).
///
/// # Safety
/// `base` must point to a live mapping of at least `len` bytes.
pub(crate) unsafe fn volatile_read(
    base: *const u8,
    len: usize,
    offset: usize,
    buf: &mut [u8],
) -> bool {
    if offset.checked_add(buf.len()).is_none_or(|end| end > len) {
        return false;
    }
    for (i, b) in buf.iter_mut().enumerate() {
        // SAFETY: offset + i < len, inside the mapping (caller's contract).
        *b = unsafe { std::ptr::read_volatile(base.add(offset + i)) };
    }
    true
}

/// See [`volatile_read`].
///
/// # Safety
/// `base` must point to a live, writable mapping of at least `len` bytes.
pub(crate) unsafe fn volatile_write(base: *mut u8, len: usize, offset: usize, data: &[u8]) -> bool {
    if offset.checked_add(data.len()).is_none_or(|end| end > len) {
        return false;
    }
    for (i, b) in data.iter().enumerate() {
        // SAFETY: offset + i < len, inside the mapping (caller's contract).
        unsafe { std::ptr::write_volatile(base.add(offset + i), *b) };
    }
    true
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
