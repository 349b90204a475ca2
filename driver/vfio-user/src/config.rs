//! The PCI configuration space (region 7, `VFIO_PCI_CONFIG_REGION_INDEX`)
//! and the MSI-X table BAR, which the server emulates for a device whose
//! [`DeviceDescription::pci`] is set. The [`crate::Device`] never sees
//! these accesses.
//!
//! The configuration space is a type-0 header of 256 bytes:
//!
//! | offset | field | behaviour |
//! |---|---|---|
//! | 0x00 | vendor / device id | [`PciIdentity`], read-only |
//! | 0x04 | command | memory space (bit 1) and bus master (bit 2) writable, rest 0 |
//! | 0x06 | status | capability list (bit 4) set, read-only |
//! | 0x08 | revision, class code | [`PciIdentity`], read-only |
//! | 0x0e | header type | 0 (type 0, single function) |
//! | 0x10-0x24 | BAR0-5 | one 32-bit non-prefetchable memory BAR per present region 0-5: writable address bits, so writing all ones reads back the size mask; absent BARs read 0 |
//! | 0x2c | subsystem vendor / id | [`PciIdentity`], read-only |
//! | 0x30 | expansion ROM | 0 (none) |
//! | 0x34 | capability pointer | 0x40 if there is an MSI-X capability, else 0 |
//! | 0x3c | interrupt line | writable scratch byte; interrupt pin 0 (no INTx) |
//! | 0x40 | MSI-X capability | table size from the MSI-X IRQ index; function mask (bit 14) and enable (bit 15) writable; table and PBA in the MSI-X BAR |
//!
//! Everything else reads as zero and ignores writes; status bits are not
//! write-one-to-clear (none is ever set).
//!
//! The MSI-X table and PBA live in a BAR of their own, the first of BAR1-5
//! the device does not use (its region index is that BAR's), 4 KiB: the
//! table at offset 0 (16 bytes per vector, stored and read back, only the
//! mask bit of the vector control word writable), the PBA at 0x800 (read
//! as zeros). Interrupts are still delivered through the eventfds of
//! `DEVICE_SET_IRQS`, as with every VFIO device: a VFIO client emulates the
//! table itself and programs vectors through `SET_IRQS`; the server does
//! not apply the table's mask bits. A device with no MSI-X vectors, or no
//! free BAR, gets no MSI-X capability.
//!
//! The emulated state starts at its power-on value for every connection
//! and returns to it on `DEVICE_RESET`.

use crate::device::{DeviceDescription, RegionDesc};
use crate::proto::{pci, region_flags};

/// What a PCI device says about itself in its configuration header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciIdentity {
    /// Vendor id (offset 0x00).
    pub vendor_id: u16,
    /// Device id (offset 0x02).
    pub device_id: u16,
    /// Subsystem vendor id (offset 0x2c).
    pub subsystem_vendor_id: u16,
    /// Subsystem id (offset 0x2e).
    pub subsystem_id: u16,
    /// Revision id (offset 0x08).
    pub revision: u8,
    /// Class code, 24 bits: base class, subclass, programming interface
    /// (offsets 0x0b, 0x0a, 0x09).
    pub class_code: u32,
}

/// Size of the emulated configuration space (a conventional PCI header and
/// capabilities; no extended space).
pub const CONFIG_SPACE_SIZE: u64 = 256;
/// Offset of the MSI-X capability in configuration space.
pub const MSIX_CAP_OFFSET: usize = 0x40;
/// Size of the MSI-X BAR.
pub const MSIX_BAR_SIZE: u64 = 4096;
/// Offset of the MSI-X table in the MSI-X BAR.
pub const MSIX_TABLE_OFFSET: u32 = 0;
/// Offset of the MSI-X pending bit array in the MSI-X BAR.
pub const MSIX_PBA_OFFSET: u32 = 0x800;
/// Most MSI-X vectors the emulated table holds (0x800 / 16).
pub const MSIX_MAX_VECTORS: u32 = 128;

/// PCI command register bits that are writable.
pub const COMMAND_WRITABLE: u16 = COMMAND_MEMORY | COMMAND_BUS_MASTER;
/// Command register: memory space enable.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: bus master enable.
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Status register: capability list present.
pub const STATUS_CAP_LIST: u16 = 1 << 4;
/// Capability id of MSI-X.
pub const CAP_ID_MSIX: u8 = 0x11;

/// A byte image with a per-byte mask of writable bits.
#[derive(Debug, Clone)]
struct Image {
    power_on: Vec<u8>,
    bytes: Vec<u8>,
    wmask: Vec<u8>,
}

impl Image {
    fn new(len: usize) -> Image {
        Image {
            power_on: vec![0; len],
            bytes: vec![0; len],
            wmask: vec![0; len],
        }
    }

    fn set(&mut self, off: usize, value: &[u8], wmask: &[u8]) {
        for (i, (&v, &m)) in value.iter().zip(wmask).enumerate() {
            let Some(at) = off.checked_add(i) else { return };
            if let (Some(b), Some(w)) = (self.power_on.get_mut(at), self.wmask.get_mut(at)) {
                *b = v;
                *w = m;
            }
        }
        self.bytes.clone_from(&self.power_on);
    }

    fn read(&self, off: u64, buf: &mut [u8]) -> bool {
        match range(off, buf.len(), self.bytes.len()).and_then(|r| self.bytes.get(r)) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }

    fn write(&mut self, off: u64, data: &[u8]) -> bool {
        let Some(r) = range(off, data.len(), self.bytes.len()) else {
            return false;
        };
        let (Some(bytes), Some(wmask)) = (self.bytes.get_mut(r.clone()), self.wmask.get(r)) else {
            return false;
        };
        for ((b, &m), &d) in bytes.iter_mut().zip(wmask).zip(data) {
            *b = (*b & !m) | (d & m);
        }
        true
    }

    fn reset(&mut self) {
        self.bytes.clone_from(&self.power_on);
    }
}

fn range(off: u64, len: usize, size: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(off).ok()?;
    let end = start.checked_add(len)?;
    (end <= size).then_some(start..end)
}

/// Configuration-space offset of BAR `bar` (0-5).
fn bar_offset(bar: u32) -> usize {
    0x10usize.saturating_add((bar as usize).saturating_mul(4))
}

/// The size a BAR decodes for a region of `size` bytes: the next power of
/// two, at least 16; `None` if that does not fit a 32-bit BAR.
fn bar_size(size: u64) -> Option<u32> {
    let s = size.max(16).checked_next_power_of_two()?;
    u32::try_from(s).ok().filter(|&s| s <= 1 << 31)
}

/// The emulated configuration space and MSI-X BAR of one connection.
#[derive(Debug, Clone)]
pub(crate) struct PciEmulation {
    config: Image,
    msix: Option<(u32, Image)>,
}

impl PciEmulation {
    /// The emulation for `desc` and the description the server then
    /// presents: at least the 9 VFIO-PCI regions and 5 IRQ indexes, region
    /// 7 the configuration space, and the MSI-X BAR if there is one.
    /// `None` if `desc` has no [`DeviceDescription::pci`].
    pub(crate) fn new(desc: &DeviceDescription) -> Option<(PciEmulation, DeviceDescription)> {
        let id = desc.pci?;
        let mut out = desc.clone();
        let num_regions = pci::NUM_REGIONS as usize;
        if out.regions.len() < num_regions {
            out.regions.resize(num_regions, RegionDesc::default());
        }
        let num_irqs = pci::NUM_IRQS as usize;
        if out.irqs.len() < num_irqs {
            out.irqs.resize(num_irqs, Default::default());
        }
        let rw = region_flags::READ | region_flags::WRITE;
        let vectors = out
            .irq(pci::MSIX_IRQ_INDEX)
            .map(|i| i.count)
            .filter(|&n| n <= MSIX_MAX_VECTORS);
        let msix_bar = match vectors {
            Some(_) => (1..6u32).find(|&b| out.region(b).is_none()),
            None => None,
        };
        if let Some(b) = msix_bar {
            if let Some(r) = out.regions.get_mut(b as usize) {
                *r = RegionDesc {
                    size: MSIX_BAR_SIZE,
                    flags: rw,
                };
            }
        }
        if let Some(r) = out.regions.get_mut(pci::CONFIG_REGION_INDEX as usize) {
            *r = RegionDesc {
                size: CONFIG_SPACE_SIZE,
                flags: rw,
            };
        }

        let mut c = Image::new(CONFIG_SPACE_SIZE as usize);
        let ro = |n: usize| vec![0u8; n];
        c.set(0x00, &id.vendor_id.to_le_bytes(), &ro(2));
        c.set(0x02, &id.device_id.to_le_bytes(), &ro(2));
        c.set(0x04, &0u16.to_le_bytes(), &COMMAND_WRITABLE.to_le_bytes());
        let status = if msix_bar.is_some() {
            STATUS_CAP_LIST
        } else {
            0
        };
        c.set(0x06, &status.to_le_bytes(), &ro(2));
        let class = id.class_code.to_le_bytes();
        c.set(0x08, &[id.revision, class[0], class[1], class[2]], &ro(4));
        for bar in 0..6u32 {
            let size = out.region(bar).and_then(|r| bar_size(r.size));
            if let Some(size) = size {
                // 32-bit, non-prefetchable memory BAR: bits 0-3 are 0 and
                // read-only; the address bits below the size are read-only.
                let mask = !size.wrapping_sub(1) & !0xf;
                c.set(bar_offset(bar), &[0; 4], &mask.to_le_bytes());
            }
        }
        c.set(0x2c, &id.subsystem_vendor_id.to_le_bytes(), &ro(2));
        c.set(0x2e, &id.subsystem_id.to_le_bytes(), &ro(2));
        c.set(0x3c, &[0], &[0xff]);
        let msix = match (msix_bar, vectors) {
            (Some(bar), Some(n)) => {
                c.set(0x34, &[MSIX_CAP_OFFSET as u8], &ro(1));
                // Message control: table size N-1 (RO), function mask (bit
                // 14) and enable (bit 15) writable.
                let control = (n.saturating_sub(1) as u16) & 0x7ff;
                let mut cap = vec![CAP_ID_MSIX, 0];
                cap.extend_from_slice(&control.to_le_bytes());
                cap.extend_from_slice(&(MSIX_TABLE_OFFSET | bar).to_le_bytes());
                cap.extend_from_slice(&(MSIX_PBA_OFFSET | bar).to_le_bytes());
                let mut wm = vec![0u8; 12];
                if let Some(b) = wm.get_mut(3) {
                    *b = 0xc0;
                }
                c.set(MSIX_CAP_OFFSET, &cap, &wm);

                let mut t = Image::new(MSIX_BAR_SIZE as usize);
                for v in 0..n {
                    // Address (8), data (4): writable; vector control: only
                    // the mask bit; vectors start masked.
                    let entry = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
                    let mut m = [0xffu8; 16];
                    m[12..16].copy_from_slice(&[1, 0, 0, 0]);
                    let at = MSIX_TABLE_OFFSET.saturating_add(v.saturating_mul(16));
                    t.set(at as usize, &entry, &m);
                }
                Some((bar, t))
            }
            _ => None,
        };
        Some((PciEmulation { config: c, msix }, out))
    }

    /// Whether accesses to `region` are served here.
    pub(crate) fn handles(&self, region: u32) -> bool {
        region == pci::CONFIG_REGION_INDEX || self.msix.as_ref().is_some_and(|(b, _)| *b == region)
    }

    fn image(&mut self, region: u32) -> Option<&mut Image> {
        if region == pci::CONFIG_REGION_INDEX {
            return Some(&mut self.config);
        }
        match &mut self.msix {
            Some((b, t)) if *b == region => Some(t),
            _ => None,
        }
    }

    /// Read (the server has range-checked the access). `false`: not ours
    /// or out of range.
    pub(crate) fn read(&mut self, region: u32, off: u64, buf: &mut [u8]) -> bool {
        self.image(region).is_some_and(|i| i.read(off, buf))
    }

    /// Write, keeping read-only bits. `false`: not ours or out of range.
    pub(crate) fn write(&mut self, region: u32, off: u64, data: &[u8]) -> bool {
        self.image(region).is_some_and(|i| i.write(off, data))
    }

    /// Back to the power-on state.
    pub(crate) fn reset(&mut self) {
        self.config.reset();
        if let Some((_, t)) = &mut self.msix {
            t.reset();
        }
    }
}
