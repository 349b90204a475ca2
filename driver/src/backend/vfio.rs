//! VFIO transport for a real PCIe card bound to `vfio-pci`.
//!
//! Crates: `pci-driver` opens the device, maps BAR0, programs the IOMMU and
//! enables MSI-X (its structured API fits a real device best; its traits
//! are sealed, which is why the simulated card has its own transport);
//! `memmap2` provides the page-aligned DMA window; `rustix` the eventfd the
//! MSI-X vector signals.
//!
//! This machine's kernel has no VFIO and no IOMMU: the backend is built and
//! its device-independent parts are tested; `docs/driver.md` explains how
//! to bind a card and run it.

use super::MmapWindow;
use crate::error::{Error, Result};
use crate::io::{CardIo, DmaWindow};
use pci_driver::backends::vfio::VfioPciDevice;
use pci_driver::device::PciDevice;
use pci_driver::regions::{OwningPciRegion, PciRegion, Permissions};
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

/// A PCI address `DDDD:BB:DD.F` (the domain may be omitted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf {
    pub domain: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl std::str::FromStr for Bdf {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidArgument(format!("PCI address {s:?} (expected DDDD:BB:DD.F)"));
        let parts: Vec<&str> = s.split(':').collect();
        let (domain, bus, rest) = match parts.as_slice() {
            [d, b, r] => (u16::from_str_radix(d, 16).map_err(|_| bad())?, *b, *r),
            [b, r] => (0, *b, *r),
            _ => return Err(bad()),
        };
        let (dev, func) = rest.split_once('.').ok_or_else(bad)?;
        let bdf = Bdf {
            domain,
            bus: u8::from_str_radix(bus, 16).map_err(|_| bad())?,
            device: u8::from_str_radix(dev, 16).map_err(|_| bad())?,
            function: u8::from_str_radix(func, 16).map_err(|_| bad())?,
        };
        if bdf.device > 0x1f || bdf.function > 7 || bus.len() != 2 || dev.len() != 2 {
            return Err(bad());
        }
        Ok(bdf)
    }
}

impl std::fmt::Display for Bdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl Bdf {
    /// The device's sysfs directory.
    pub fn sysfs(&self) -> PathBuf {
        PathBuf::from(format!("/sys/bus/pci/devices/{self}"))
    }
}

/// A card behind VFIO.
pub struct VfioIo {
    device: VfioPciDevice,
    bar0: OwningPciRegion,
    window: MmapWindow,
    irq: Option<OwnedFd>,
    name: String,
}

fn vfio_err(what: &str, e: std::io::Error) -> Error {
    Error::transport(what, e)
}

impl VfioIo {
    /// Open the card at `bdf` (bound to `vfio-pci`) with a DMA window of
    /// `window_len` bytes mapped into its IOMMU.
    pub fn open(bdf: Bdf, window_len: usize) -> Result<Self> {
        let path = bdf.sysfs();
        if !path.exists() {
            return Err(Error::transport_msg(format!(
                "no PCI device {bdf} (is the card present and bound to vfio-pci? see docs/driver.md)"
            )));
        }
        let device = VfioPciDevice::open(&path)
            .map_err(|e| vfio_err(&format!("opening {bdf} with VFIO"), e))?;
        let bar0 = device
            .bar(0)
            .ok_or_else(|| Error::transport_msg(format!("{bdf} has no BAR0")))?;
        if bar0.len() < 4096 {
            return Err(Error::transport_msg(format!(
                "{bdf}: BAR0 is {} bytes, need 4096",
                bar0.len()
            )));
        }
        let iommu = device.iommu();
        let align = iommu.alignment().max(4096);
        let len = window_len.next_multiple_of(align);
        let iova = iommu
            .valid_iova_ranges()
            .iter()
            .map(|r| (r.start.next_multiple_of(align as u64), r.end))
            .find(|&(s, e)| s.checked_add(len as u64).is_some_and(|end| end <= e))
            .map(|(s, _)| s)
            .ok_or_else(|| {
                Error::transport_msg(format!("{bdf}: no IOVA range holds {len} bytes"))
            })?;
        let map = memmap2::MmapMut::map_anon(len)
            .map_err(|e| vfio_err("allocating the DMA window", e))?;
        // SAFETY: the window stays mapped (owned by `self.window`) for as
        // long as the IOMMU mapping exists; Drop unmaps the IOMMU first.
        unsafe {
            iommu.map(
                iova,
                len,
                map.as_ptr(),
                Permissions::new(true, true).unwrap_or_else(|| unreachable!()),
            )
        }
        .map_err(|e| vfio_err("IOMMU mapping of the DMA window", e))?;
        let interrupts = device.interrupts();
        let msix = interrupts.msi_x();
        let irq = if msix.max() >= 1 {
            let fd = rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )
            .map_err(|e| Error::transport("eventfd", e))?;
            msix.enable(&[fd.as_raw_fd()])
                .map_err(|e| vfio_err("enabling MSI-X", e))?;
            Some(fd)
        } else {
            None
        };
        Ok(Self {
            device,
            bar0,
            window: MmapWindow { iova, map },
            irq,
            name: format!("VFIO {bdf}"),
        })
    }
}

impl Drop for VfioIo {
    fn drop(&mut self) {
        if self.irq.is_some() {
            let _ = self.device.interrupts().msi_x().disable();
        }
        let len = self.window.map.len();
        if let Err(e) = self.device.iommu().unmap(self.window.iova, len) {
            tracing::error!("IOMMU unmap of the DMA window failed: {e}");
        }
    }
}

impl CardIo for VfioIo {
    fn read32(&mut self, offset: u32) -> Result<u32> {
        self.bar0
            .read_le_u32(offset as u64)
            .map_err(|e| vfio_err("BAR0 read", e))
    }
    fn write32(&mut self, offset: u32, value: u32) -> Result<()> {
        self.bar0
            .write_le_u32(offset as u64, value)
            .map_err(|e| vfio_err("BAR0 write", e))
    }
    fn dma(&mut self) -> &mut dyn DmaWindow {
        &mut self.window
    }
    fn wait_irq(&mut self, timeout: Duration) -> Result<bool> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let Some(fd) = self.irq.as_ref() else {
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
            return Ok(false);
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        let ts = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: timeout.subsec_nanos() as i64,
        };
        if poll(&mut fds, Some(&ts)).map_err(|e| Error::transport("poll", e))? == 0 {
            return Ok(false);
        }
        let mut count = [0u8; 8];
        rustix::io::read(fd.as_fd(), &mut count)
            .map_err(|e| Error::transport("eventfd read", e))?;
        Ok(true)
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_parse_and_print() {
        let b: Bdf = "0000:3b:00.1".parse().unwrap();
        assert_eq!(
            b,
            Bdf {
                domain: 0,
                bus: 0x3b,
                device: 0,
                function: 1
            }
        );
        assert_eq!(b.to_string(), "0000:3b:00.1");
        assert_eq!("3b:00.1".parse::<Bdf>().unwrap(), b);
        assert_eq!(
            b.sysfs(),
            PathBuf::from("/sys/bus/pci/devices/0000:3b:00.1")
        );
        for bad in [
            "",
            "3b",
            "3b:00",
            "zz:00.0",
            "00:20.0",
            "00:00.8",
            "0:00.0",
            "1:2:3:4.5",
        ] {
            assert!(bad.parse::<Bdf>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_device_is_a_clear_error() {
        // This machine has no such device (and no VFIO): an error, no panic.
        match VfioIo::open("0000:ff:1f.7".parse().unwrap(), 1 << 20) {
            Err(e @ Error::Transport { .. }) => {
                let msg = e.chain();
                assert!(msg.contains("0000:ff:1f.7"), "{msg}")
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("opened a device that does not exist"),
        }
    }
}
