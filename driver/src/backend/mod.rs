//! Transports. Each implements [`crate::CardIo`].

use crate::io::{volatile_read, volatile_write, DmaWindow};

/// A DMA window that is a memory mapping shared with a device (UIO's DMA
/// buffer, VFIO's IOMMU-mapped memory): copies are volatile.
pub(crate) struct MmapWindow {
    pub iova: u64,
    pub map: memmap2::MmapMut,
}

impl DmaWindow for MmapWindow {
    fn iova(&self) -> u64 {
        self.iova
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        // SAFETY: the pointer and length describe the live mapping.
        unsafe { volatile_read(self.map.as_ptr(), self.map.len(), offset, buf) }
    }
    fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        let len = self.map.len();
        // SAFETY: the pointer and length describe the live, writable mapping.
        unsafe { volatile_write(self.map.as_mut_ptr(), len, offset, data) }
    }
}

pub mod model;
pub mod uart;
pub mod uio;
#[cfg(feature = "vfio")]
pub mod vfio;
#[cfg(feature = "vfio-user")]
pub mod vfio_user;
