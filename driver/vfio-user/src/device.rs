//! The server's view of a device: the [`Device`] trait the card implements,
//! its static [`DeviceDescription`], and helpers for DMA memory
//! ([`DmaSpace`], [`SharedMemory`]) and interrupts ([`IrqFd`]).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use memmap2::{MmapOptions, MmapRaw};
use rustix::event::PollFlags;
use rustix::io::Errno;

use crate::proto::{device_flags, errno, irq_info_flags, pci, region_flags};

/// An error a [`Device`] returns; the server turns it into an error reply
/// carrying [`DeviceError::errno`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The request is not valid for this device (`EINVAL`).
    #[error("invalid argument")]
    InvalidArgument,
    /// The device does not support the request (`ENOTSUP`).
    #[error("operation not supported")]
    NotSupported,
    /// The device cannot take the request now (`EBUSY`).
    #[error("device busy")]
    Busy,
    /// A DMA mapping overlaps an existing one (`EEXIST`).
    #[error("DMA mapping overlaps an existing one")]
    Exists,
    /// No such DMA mapping (`ENOENT`).
    #[error("no such DMA mapping")]
    NotFound,
    /// The device failed (`EIO`).
    #[error("device I/O error")]
    Io,
    /// Any other errno.
    #[error("errno {0}")]
    Errno(u32),
}

impl DeviceError {
    /// The errno put in the error reply.
    pub fn errno(&self) -> u32 {
        match self {
            DeviceError::InvalidArgument => errno::EINVAL,
            DeviceError::NotSupported => errno::ENOTSUP,
            DeviceError::Busy => errno::EBUSY,
            DeviceError::Exists => errno::EEXIST,
            DeviceError::NotFound => errno::ENOENT,
            DeviceError::Io => errno::EIO,
            DeviceError::Errno(e) => *e,
        }
    }
}

/// Access rights of a DMA mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DmaProt {
    /// The device may read the memory.
    pub read: bool,
    /// The device may write the memory.
    pub write: bool,
}

impl DmaProt {
    /// Read and write.
    pub const READ_WRITE: DmaProt = DmaProt {
        read: true,
        write: true,
    };
}

/// A validated `DMA_MAP` request handed to [`Device::dma_map`].
///
/// The server has already checked: size > 0; iova, offset and size are
/// multiples of [`crate::DMA_PAGE_SIZE`]; no arithmetic overflows; the range
/// overlaps no live mapping of this connection; `fd` is a regular file (e.g.
/// a memfd) at least `offset + size` bytes long; and, with
/// [`crate::Limits::require_dma_seals`], that the file is sealed against
/// shrinking, so mapping it cannot later fault with `SIGBUS`.
#[derive(Debug)]
pub struct DmaRegion {
    /// DMA address (IOVA) of the first byte.
    pub iova: u64,
    /// Size in bytes.
    pub size: u64,
    /// The client's memory.
    pub fd: OwnedFd,
    /// Offset of the first byte in `fd`.
    pub offset: u64,
    /// Access rights.
    pub prot: DmaProt,
}

impl DmaRegion {
    /// Map the memory into this process (shared, so writes reach the client).
    pub fn map(&self) -> io::Result<SharedMemory> {
        let len = usize::try_from(self.size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "DMA size too large"))?;
        SharedMemory::map(self.fd.as_fd(), self.offset, len, self.prot.write)
    }
}

/// Why a DMA access failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DmaError {
    /// No single live mapping covers `[iova, iova + len)`.
    #[error("DMA access {iova:#x}+{len:#x} is not inside one mapping")]
    Unmapped {
        /// First address.
        iova: u64,
        /// Length.
        len: usize,
    },
    /// The mapping does not allow this direction.
    #[error("DMA access {iova:#x}+{len:#x} not permitted by the mapping")]
    Permission {
        /// First address.
        iova: u64,
        /// Length.
        len: usize,
    },
}

/// A shared memory mapping accessed by copying (the other process may change
/// it at any time, so no Rust reference into it is ever handed out).
#[derive(Debug)]
pub struct SharedMemory {
    map: MmapRaw,
    writable: bool,
}

impl SharedMemory {
    /// Map `len` bytes of `fd` from `offset`, read-only or read-write.
    pub fn map(fd: BorrowedFd<'_>, offset: u64, len: usize, writable: bool) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        let mut opts = MmapOptions::new();
        opts.offset(offset).len(len);
        let map = if writable {
            opts.map_raw(&fd)?
        } else {
            opts.map_raw_read_only(&fd)?
        };
        Ok(SharedMemory { map, writable })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never: mappings are at least one byte).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The first byte of the mapping (valid for [`SharedMemory::len`]
    /// bytes while `self` lives; writable only if [`SharedMemory::is_writable`]).
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Whether [`SharedMemory::write`] is allowed.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    fn check(&self, offset: u64, len: usize) -> Option<usize> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.map.len()).then_some(start)
    }

    /// Copy `buf.len()` bytes from `offset`. `false`: out of range.
    #[must_use]
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> bool {
        let Some(start) = self.check(offset, buf.len()) else {
            return false;
        };
        // SAFETY: `check` proved `start + buf.len() <= map.len()`, so the
        // source range lies inside the live mapping (kept alive by `self`).
        // The mapping is shared with another process that may write it
        // concurrently; we only copy bytes out and never form a reference
        // into it. The file was checked (by the server) to be large enough,
        // so the pages exist.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(start),
                buf.as_mut_ptr(),
                buf.len(),
            );
        }
        true
    }

    /// Copy `data` to `offset`. `false`: out of range or read-only.
    #[must_use]
    pub fn write(&self, offset: u64, data: &[u8]) -> bool {
        if !self.writable {
            return false;
        }
        let Some(start) = self.check(offset, data.len()) else {
            return false;
        };
        // SAFETY: as in `read`: the destination range is inside the live,
        // writable (PROT_WRITE, checked by `self.writable`) mapping, and we
        // only copy bytes in without forming references into shared memory.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.as_mut_ptr().add(start),
                data.len(),
            );
        }
        true
    }
}

#[derive(Debug)]
struct DmaEntry {
    size: u64,
    mem: SharedMemory,
    prot: DmaProt,
}

/// The table of a device's DMA mappings: maps, unmaps, and translates
/// bus-address accesses into copies from/to the client's memory.
///
/// A device can implement [`Device::dma_map`] / [`Device::dma_unmap`] by
/// forwarding to a `DmaSpace` and do its DMA with [`DmaSpace::read`] /
/// [`DmaSpace::write`]. An access must lie inside one mapping.
#[derive(Debug, Default)]
pub struct DmaSpace {
    maps: BTreeMap<u64, DmaEntry>,
}

impl DmaSpace {
    /// An empty table.
    pub fn new() -> DmaSpace {
        DmaSpace::default()
    }

    /// Map a region (`Exists` if it overlaps a mapping, `Io` if mmap fails).
    pub fn map(&mut self, region: DmaRegion) -> Result<(), DeviceError> {
        let end = region
            .iova
            .checked_add(region.size)
            .ok_or(DeviceError::InvalidArgument)?;
        if region.size == 0 {
            return Err(DeviceError::InvalidArgument);
        }
        if let Some((&start, e)) = self.maps.range(..end).next_back() {
            if start.saturating_add(e.size) > region.iova {
                return Err(DeviceError::Exists);
            }
        }
        let mem = region.map().map_err(|e| {
            tracing::warn!(error = %e, iova = region.iova, "DMA mmap failed");
            DeviceError::Io
        })?;
        self.maps.insert(
            region.iova,
            DmaEntry {
                size: region.size,
                mem,
                prot: region.prot,
            },
        );
        Ok(())
    }

    /// Remove the mapping that is exactly `[iova, iova + size)`.
    pub fn unmap(&mut self, iova: u64, size: u64) -> Result<(), DeviceError> {
        match self.maps.get(&iova) {
            Some(e) if e.size == size => {
                self.maps.remove(&iova);
                Ok(())
            }
            _ => Err(DeviceError::NotFound),
        }
    }

    /// Remove every mapping.
    pub fn clear(&mut self) {
        self.maps.clear();
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// Whether there are no mappings.
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    fn find(&self, iova: u64, len: usize) -> Option<(&DmaEntry, u64)> {
        let (&start, e) = self.maps.range(..=iova).next_back()?;
        let off = iova.checked_sub(start)?;
        let end = off.checked_add(u64::try_from(len).ok()?)?;
        (end <= e.size).then_some((e, off))
    }

    /// Device reads client memory: copy `buf.len()` bytes from `iova`.
    pub fn read(&self, iova: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let len = buf.len();
        let (e, off) = self
            .find(iova, len)
            .ok_or(DmaError::Unmapped { iova, len })?;
        if !e.prot.read || !e.mem.read(off, buf) {
            return Err(DmaError::Permission { iova, len });
        }
        Ok(())
    }

    /// Device writes client memory: copy `data` to `iova`.
    pub fn write(&self, iova: u64, data: &[u8]) -> Result<(), DmaError> {
        let len = data.len();
        let (e, off) = self
            .find(iova, len)
            .ok_or(DmaError::Unmapped { iova, len })?;
        if !e.prot.write || !e.mem.write(off, data) {
            return Err(DmaError::Permission { iova, len });
        }
        Ok(())
    }
}

/// An interrupt file descriptor passed by the client (normally an eventfd).
///
/// [`IrqFd::trigger`] never blocks: it checks writability with a zero-time
/// poll first, so a hostile client passing a full pipe cannot stall the
/// device.
#[derive(Debug)]
pub struct IrqFd {
    fd: OwnedFd,
}

impl IrqFd {
    /// Wrap a received descriptor.
    pub fn new(fd: OwnedFd) -> IrqFd {
        IrqFd { fd }
    }

    /// Signal the interrupt: add 1 to the eventfd counter. Returns `false`
    /// if it could not be delivered without blocking (a saturated counter:
    /// the interrupt is pending anyway).
    pub fn trigger(&self) -> io::Result<bool> {
        let ready =
            crate::wire::poll_fds(&[(self.fd.as_fd(), PollFlags::OUT)], Some(Instant::now()))?;
        if !ready.first().is_some_and(|r| r.contains(PollFlags::OUT)) {
            return Ok(false);
        }
        match rustix::io::write(&self.fd, &1u64.to_ne_bytes()) {
            Ok(8) => Ok(true),
            Ok(_) | Err(Errno::AGAIN) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for IrqFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// One region of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegionDesc {
    /// Size in bytes (0: the region does not exist).
    pub size: u64,
    /// [`region_flags`] READ / WRITE.
    pub flags: u32,
}

/// One IRQ index of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IrqDesc {
    /// Number of vectors (0: the index is not implemented).
    pub count: u32,
    /// [`irq_info_flags`].
    pub flags: u32,
}

/// What the server tells clients about a device, and validates every
/// request against. Region `i` is `regions[i]`, IRQ index `i` is `irqs[i]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceDescription {
    /// [`device_flags`].
    pub flags: u32,
    /// Regions by index.
    pub regions: Vec<RegionDesc>,
    /// IRQ indexes by index.
    pub irqs: Vec<IrqDesc>,
}

impl DeviceDescription {
    /// Region `index`, if it exists and has a non-zero size.
    pub fn region(&self, index: u32) -> Option<&RegionDesc> {
        self.regions
            .get(usize::try_from(index).ok()?)
            .filter(|r| r.size > 0)
    }

    /// IRQ index `index`, if it exists and has vectors.
    pub fn irq(&self, index: u32) -> Option<&IrqDesc> {
        self.irqs
            .get(usize::try_from(index).ok()?)
            .filter(|i| i.count > 0)
    }
}

/// The hitless card as a vfio-user device: a PCI device with reset, BAR0 of
/// 4 KiB (the register file, read/write), the other standard PCI regions
/// absent, and one MSI-X vector signalled through an eventfd. DMA memory is
/// fd-backed (memfd) and mapped with `DMA_MAP`.
pub mod card {
    use super::*;

    /// BAR0: the register file.
    pub const BAR0: u32 = pci::BAR0_REGION_INDEX;
    /// Size of BAR0: the controller registers and the firmware mailbox.
    /// Equal to `hitless_hdl::contract::BAR0_BYTES` (this crate does not
    /// depend on the contract; `hitless-sim` checks they agree).
    pub const BAR0_SIZE: u64 = 0x2000;
    /// The IRQ index the card signals on (MSI-X).
    pub const IRQ_INDEX: u32 = pci::MSIX_IRQ_INDEX;
    /// Number of vectors on [`IRQ_INDEX`].
    pub const IRQ_VECTORS: u32 = 1;

    /// The card's description.
    pub fn description() -> DeviceDescription {
        let mut regions = vec![RegionDesc::default(); pci::NUM_REGIONS as usize];
        if let Some(r) = regions.get_mut(BAR0 as usize) {
            *r = RegionDesc {
                size: BAR0_SIZE,
                flags: region_flags::READ | region_flags::WRITE,
            };
        }
        let mut irqs = vec![IrqDesc::default(); pci::NUM_IRQS as usize];
        if let Some(i) = irqs.get_mut(IRQ_INDEX as usize) {
            *i = IrqDesc {
                count: IRQ_VECTORS,
                flags: irq_info_flags::EVENTFD | irq_info_flags::NORESIZE,
            };
        }
        DeviceDescription {
            flags: device_flags::PCI | device_flags::RESET,
            regions,
            irqs,
        }
    }
}

/// A device served over vfio-user.
///
/// The server validates every request against [`Device::description`]
/// (taken once per connection) before calling these methods, so an
/// implementation is never called with a region it does not have, an access
/// outside a region, an access size other than 1, 2, 4, 8, ... bytes (a
/// power of two, at most [`crate::Limits::max_data_xfer`]) that is naturally
/// aligned up to 8 bytes, an overlapping or malformed DMA map, an unmap of
/// a range it has not mapped, or IRQ vectors outside an index.
///
/// When a connection ends (for any reason), the server unmaps every DMA
/// mapping of that connection with [`Device::dma_unmap`] and deassigns every
/// IRQ index it assigned with [`Device::set_irqs`] (empty `fds`), as the
/// specification asks; other device state is kept.
pub trait Device {
    /// The device's regions and IRQ indexes.
    fn description(&self) -> DeviceDescription;

    /// Read `buf.len()` bytes from `region` at `offset`.
    fn region_read(&mut self, region: u32, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError>;

    /// Write `data` to `region` at `offset`.
    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> Result<(), DeviceError>;

    /// Client memory becomes available for DMA (see [`DmaSpace`]).
    fn dma_map(&mut self, region: DmaRegion) -> Result<(), DeviceError>;

    /// A mapping made by `dma_map` (exactly this `iova`/`size`) goes away;
    /// the device must not touch it after returning.
    fn dma_unmap(&mut self, iova: u64, size: u64) -> Result<(), DeviceError>;

    /// Assign (`fds.len() == count`) or deassign (`fds` empty) the
    /// interrupt descriptors of vectors `start .. start + count` of IRQ
    /// `index`. The device signals vector `start + i` with `fds[i].trigger()`.
    fn set_irqs(
        &mut self,
        index: u32,
        start: u32,
        count: u32,
        fds: Vec<IrqFd>,
    ) -> Result<(), DeviceError>;

    /// Reset the device.
    fn reset(&mut self) -> Result<(), DeviceError>;
}
