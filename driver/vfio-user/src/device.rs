//! The server's view of a device: the [`Device`] trait the card implements,
//! its static [`DeviceDescription`], and helpers for DMA memory
//! ([`DmaSpace`], [`FdMemory`]) and interrupts ([`IrqFd`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::Instant;

use rustix::event::PollFlags;
use rustix::fs::SealFlags;
use rustix::io::Errno;

pub use crate::config::PciIdentity;
pub use crate::error::Error;
use crate::proto::{device_flags, irq_info_flags, pci, region_flags};

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
/// a memfd) at least `offset + size` bytes long at the time of the map;
/// and, with [`crate::Limits::require_dma_seals`], that the file is sealed
/// against shrinking. Without seals the client may shrink the file later:
/// access it with [`DmaRegion::memory`] / [`DmaSpace`] (which turn that into
/// an error), or check [`DmaRegion::sealed_against_shrinking`] before
/// `mmap`ing it.
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
    /// Access to the memory by `pread`/`pwrite` on the descriptor (see
    /// [`FdMemory`]), readable and writable as the mapping allows.
    pub fn memory(&self) -> io::Result<FdMemory> {
        let fd = self.fd.try_clone()?;
        Ok(FdMemory::new(fd, self.offset, self.size, self.prot.write))
    }

    /// Whether the file is sealed against shrinking (`F_SEAL_SHRINK`). A
    /// device that `mmap`s DMA memory needs that: a client that shrinks the
    /// file would make the next access fault (`SIGBUS`). [`DmaSpace`] and
    /// [`FdMemory`] do not need it.
    pub fn sealed_against_shrinking(&self) -> bool {
        rustix::fs::fcntl_get_seals(&self.fd).is_ok_and(|s| s.contains(SealFlags::SHRINK))
    }
}

/// Memory shared through a file descriptor (a memfd, a shared-memory or
/// hugetlbfs file), accessed with `pread`/`pwrite` rather than `mmap`.
///
/// Why not `mmap`: the other process owns the file and may shrink it at
/// any time (QEMU passes whatever backs guest memory, e.g. a shared file,
/// which need not be sealed). A mapped page past
/// the new end of the file raises `SIGBUS` on access, which would kill the
/// device process. `pread` past the end returns a short count instead, and
/// a `pwrite` is only issued after checking the file is still long enough,
/// so a shrunk file is an I/O error for that one access. The price is a
/// system call per access, which is irrelevant at simulation speeds. (A
/// `pwrite` racing with a concurrent shrink can at worst grow the client's
/// file again — harmless to us.)
#[derive(Debug)]
pub struct FdMemory {
    file: File,
    offset: u64,
    len: u64,
    writable: bool,
}

impl FdMemory {
    /// `len` bytes of `fd` from `offset`, read-only or read-write.
    pub fn new(fd: OwnedFd, offset: u64, len: u64, writable: bool) -> FdMemory {
        FdMemory {
            file: File::from(fd),
            offset,
            len,
            writable,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the memory is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether [`FdMemory::write`] is allowed.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The file offset of `[off, off + len)`, if inside.
    fn at(&self, off: u64, len: usize) -> io::Result<u64> {
        let end = off.checked_add(u64::try_from(len).map_err(|_| out_of_range())?);
        match end {
            Some(end) if end <= self.len => self.offset.checked_add(off).ok_or_else(out_of_range),
            _ => Err(out_of_range()),
        }
    }

    /// Copy `buf.len()` bytes from `off`. A file shrunk below the range
    /// gives `UnexpectedEof`.
    pub fn read(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let at = self.at(off, buf.len())?;
        self.file.read_exact_at(buf, at)
    }

    /// Copy `data` to `off`. Refused when read-only, or when the file is
    /// now shorter than the range (`UnexpectedEof`).
    pub fn write(&self, off: u64, data: &[u8]) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only memory",
            ));
        }
        let at = self.at(off, data.len())?;
        let end = at.saturating_add(data.len() as u64);
        if self.file.metadata()?.len() < end {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file was shrunk below the mapping",
            ));
        }
        self.file.write_all_at(data, at)
    }
}

fn out_of_range() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "access outside the memory")
}

/// The memory behind one DMA mapping, as a [`DmaSpace`] reaches it:
/// offsets are from the mapping's first byte and already checked to lie
/// inside it. [`FdMemory`] (pread/pwrite, safe against a client that
/// shrinks its file) is the default; a device on a hot path may bring its
/// own (for example an in-place mapping of a file sealed against
/// shrinking).
pub trait DmaMemory {
    /// Copy `buf.len()` bytes from `off`.
    fn read(&self, off: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Copy `data` to `off`.
    fn write(&self, off: u64, data: &[u8]) -> io::Result<()>;
}

impl DmaMemory for FdMemory {
    fn read(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        FdMemory::read(self, off, buf)
    }

    fn write(&self, off: u64, data: &[u8]) -> io::Result<()> {
        FdMemory::write(self, off, data)
    }
}

#[derive(Debug)]
struct DmaEntry<M> {
    size: u64,
    mem: M,
    prot: DmaProt,
}

/// The table of a device's DMA mappings: maps, unmaps, and translates
/// bus-address accesses into copies from/to the client's memory.
///
/// A device can implement [`Device::dma_map`] / [`Device::dma_unmap`] by
/// forwarding to a `DmaSpace` and do its DMA with [`DmaSpace::read`] /
/// [`DmaSpace::write`]. An access must lie inside one mapping. The memory
/// behind a mapping is an [`FdMemory`] unless the device chooses another
/// [`DmaMemory`] ([`DmaSpace::insert`]).
#[derive(Debug)]
pub struct DmaSpace<M = FdMemory> {
    maps: BTreeMap<u64, DmaEntry<M>>,
}

impl<M> Default for DmaSpace<M> {
    fn default() -> Self {
        DmaSpace {
            maps: BTreeMap::new(),
        }
    }
}

impl DmaSpace {
    /// An empty table.
    pub fn new() -> DmaSpace {
        DmaSpace::default()
    }

    /// Map a region, reached with `pread`/`pwrite` ([`FdMemory`]):
    /// `InvalidArgument` for an empty or wrapping range, `Exists` if it
    /// overlaps a mapping, `DeviceIo` if the descriptor cannot be
    /// duplicated.
    pub fn map(&mut self, region: DmaRegion) -> Result<(), Error> {
        let mem = region.memory().map_err(|e| {
            tracing::warn!(error = %e, iova = region.iova, "DMA map failed");
            Error::DeviceIo
        })?;
        self.insert(region.iova, region.size, region.prot, mem)
    }
}

impl<M: DmaMemory> DmaSpace<M> {
    /// Whether `[iova, iova + size)` is a valid range that overlaps no
    /// mapping (`InvalidArgument` or `Exists` otherwise).
    fn check_free(&self, iova: u64, size: u64) -> Result<(), Error> {
        let end = iova
            .checked_add(size)
            .ok_or(Error::InvalidArgument("invalid DMA range"))?;
        if size == 0 {
            return Err(Error::InvalidArgument("invalid DMA range"));
        }
        if let Some((&start, e)) = self.maps.range(..end).next_back() {
            if start.saturating_add(e.size) > iova {
                return Err(Error::Exists);
            }
        }
        Ok(())
    }

    /// Map `size` bytes of `mem` at `iova`: `InvalidArgument` for an empty
    /// or wrapping range, `Exists` if it overlaps a mapping.
    pub fn insert(&mut self, iova: u64, size: u64, prot: DmaProt, mem: M) -> Result<(), Error> {
        self.check_free(iova, size)?;
        self.maps.insert(iova, DmaEntry { size, mem, prot });
        Ok(())
    }

    /// Remove the mapping that is exactly `[iova, iova + size)`.
    pub fn unmap(&mut self, iova: u64, size: u64) -> Result<(), Error> {
        match self.maps.get(&iova) {
            Some(e) if e.size == size => {
                self.maps.remove(&iova);
                Ok(())
            }
            _ => Err(Error::NotFound),
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

    fn find(&self, iova: u64, len: usize) -> Option<(&DmaEntry<M>, u64)> {
        let (&start, e) = self.maps.range(..=iova).next_back()?;
        let off = iova.checked_sub(start)?;
        let end = off.checked_add(u64::try_from(len).ok()?)?;
        (end <= e.size).then_some((e, off))
    }

    /// Device reads client memory: copy `buf.len()` bytes from `iova`.
    pub fn read(&self, iova: u64, buf: &mut [u8]) -> Result<(), Error> {
        let len = buf.len();
        let (e, off) = self
            .find(iova, len)
            .ok_or(Error::DmaUnmapped { iova, len })?;
        if !e.prot.read {
            return Err(Error::DmaPermission { iova, len });
        }
        e.mem.read(off, buf).map_err(|err| Error::DmaFault {
            iova,
            len,
            reason: err.to_string(),
        })
    }

    /// Device writes client memory: copy `data` to `iova`.
    pub fn write(&self, iova: u64, data: &[u8]) -> Result<(), Error> {
        let len = data.len();
        let (e, off) = self
            .find(iova, len)
            .ok_or(Error::DmaUnmapped { iova, len })?;
        if !e.prot.write {
            return Err(Error::DmaPermission { iova, len });
        }
        e.mem.write(off, data).map_err(|err| Error::DmaFault {
            iova,
            len,
            reason: err.to_string(),
        })
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
    /// PCI identity. When set, the server presents the device as VFIO-PCI
    /// clients expect: at least 9 regions and 5 IRQ indexes, and it
    /// emulates region 7 (configuration space) and an MSI-X BAR itself
    /// (see [`crate::config`]); the device is never called for those
    /// regions.
    pub pci: Option<PciIdentity>,
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
/// 8 KiB (the register file, read/write), and one MSI-X vector signalled
/// through an eventfd. The server adds the configuration space (region 7)
/// and the MSI-X table BAR (BAR1, the first free BAR). DMA memory is
/// fd-backed and mapped with `DMA_MAP`.
pub mod card {
    use super::*;

    /// PCI vendor id: 0x1234, a placeholder. It is not assigned to this
    /// project by the PCI-SIG (QEMU uses the same unassigned value for some
    /// emulated devices); a real card needs an assigned vendor id, and this
    /// is the one place to change.
    pub const PCI_VENDOR_ID: u16 = 0x1234;
    /// PCI device id (our choice under the placeholder vendor: "HT").
    pub const PCI_DEVICE_ID: u16 = 0x4854;
    /// Class code: memory controller (0x05), other (0x80), interface 0.
    pub const PCI_CLASS_CODE: u32 = 0x05_80_00;
    /// The card's PCI identity.
    pub const PCI_IDENTITY: PciIdentity = PciIdentity {
        vendor_id: PCI_VENDOR_ID,
        device_id: PCI_DEVICE_ID,
        subsystem_vendor_id: PCI_VENDOR_ID,
        subsystem_id: PCI_DEVICE_ID,
        revision: 1,
        class_code: PCI_CLASS_CODE,
    };
    /// The BAR (region index) of the MSI-X table, emulated by the server.
    pub const MSIX_BAR: u32 = 1;

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
            pci: Some(PCI_IDENTITY),
        }
    }
}

/// A device served over vfio-user.
///
/// Methods return the crate's [`Error`]; the server answers a failed
/// request with an error reply carrying [`Error::errno`] (use
/// [`Error::InvalidArgument`], [`Error::NotSupported`], [`Error::Busy`],
/// [`Error::Exists`], [`Error::NotFound`], [`Error::DeviceIo`] or
/// [`Error::Errno`]) and the connection goes on.
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
    fn region_read(&mut self, region: u32, offset: u64, buf: &mut [u8]) -> Result<(), Error>;

    /// Write `data` to `region` at `offset`.
    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> Result<(), Error>;

    /// Client memory becomes available for DMA (see [`DmaSpace`]).
    fn dma_map(&mut self, region: DmaRegion) -> Result<(), Error>;

    /// A mapping made by `dma_map` (exactly this `iova`/`size`) goes away;
    /// the device must not touch it after returning.
    fn dma_unmap(&mut self, iova: u64, size: u64) -> Result<(), Error>;

    /// Assign (`fds.len() == count`) or deassign (`fds` empty) the
    /// interrupt descriptors of vectors `start .. start + count` of IRQ
    /// `index`. The device signals vector `start + i` with `fds[i].trigger()`.
    fn set_irqs(
        &mut self,
        index: u32,
        start: u32,
        count: u32,
        fds: Vec<IrqFd>,
    ) -> Result<(), Error>;

    /// Reset the device.
    fn reset(&mut self) -> Result<(), Error>;
}
