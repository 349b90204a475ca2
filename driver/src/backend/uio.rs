//! UIO transport, for boards where the controller sits on the AXI GP port
//! of a Zynq (PYNQ): the register block is a UIO device (`/dev/uioN`,
//! memory-mapped), the DMA window a physically contiguous buffer the
//! controller reaches at a known bus address (a `u-dma-buf` device or a
//! reserved-memory region), and the interrupt the UIO device's counter.
//!
//! Any file can stand in for the two devices, which is how the tests here
//! exercise the mapping code on a machine without the hardware.

use super::MmapWindow;
use crate::error::{Error, Result};
use crate::io::{CardIo, DmaWindow};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the pieces of the card are.
#[derive(Clone, Debug)]
pub struct UioConfig {
    /// The register device (`/dev/uio0`) or file.
    pub regs: PathBuf,
    /// Offset of the register block in it (UIO: map N is at N × page size).
    pub regs_offset: u64,
    /// The DMA buffer device (`/dev/udmabuf0`) or file.
    pub dma: PathBuf,
    /// Bytes of DMA buffer to use.
    pub dma_len: u64,
    /// The bus address at which the controller sees the DMA buffer.
    pub dma_iova: u64,
    /// Use the register device's interrupt counter (a real UIO device).
    pub irq: bool,
}

/// A card reached through UIO.
pub struct UioIo {
    regs_file: File,
    regs: memmap2::MmapRaw,
    window: MmapWindow,
    irq: bool,
    name: String,
}

/// Size of the register block (the controller's BAR0).
pub const REGS_LEN: u64 = 4096;

fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::transport(format!("{}", path.display()), e))
}

/// The DMA buffer, opened `O_SYNC`: the Zynq's HP port, through which the
/// controller reaches it, is not coherent with the CPU caches, and
/// u-dma-buf maps a buffer opened `O_SYNC` uncached.
fn open_dma(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::SYNC.bits() as i32)
        .open(path)
        .map_err(|e| Error::transport(format!("{}", path.display()), e))
}

impl UioIo {
    /// Map the register block and the DMA buffer.
    pub fn open(cfg: &UioConfig) -> Result<Self> {
        if cfg.dma_len == 0 {
            return Err(Error::InvalidArgument("DMA buffer of 0 bytes".into()));
        }
        let regs_file = open_rw(&cfg.regs)?;
        let regs = memmap2::MmapOptions::new()
            .offset(cfg.regs_offset)
            .len(REGS_LEN as usize)
            .map_raw(&regs_file)
            .map_err(|e| Error::transport(format!("mapping {}", cfg.regs.display()), e))?;
        let dma_file = open_dma(&cfg.dma)?;
        // SAFETY: the DMA buffer is shared with the controller (a device),
        // which writes it by DMA; the driver only touches it between
        // submitting a descriptor and reaping its completion, as with any
        // DMA buffer.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .len(cfg.dma_len as usize)
                .map_mut(&dma_file)
        }
        .map_err(|e| Error::transport(format!("mapping {}", cfg.dma.display()), e))?;
        Ok(Self {
            regs_file,
            regs,
            window: MmapWindow {
                iova: cfg.dma_iova,
                map,
            },
            irq: cfg.irq,
            name: format!("UIO {} + {}", cfg.regs.display(), cfg.dma.display()),
        })
    }

    fn reg_ptr(&self, offset: u32) -> Result<*mut u32> {
        if !offset.is_multiple_of(4) || offset as u64 + 4 > REGS_LEN {
            return Err(Error::InvalidArgument(format!(
                "register offset {offset:#x}"
            )));
        }
        // The offset is inside the 4 KiB mapping and 4-byte aligned (the
        // mapping itself is page aligned).
        Ok(self.regs.as_mut_ptr().wrapping_add(offset as usize) as *mut u32)
    }
}

impl CardIo for UioIo {
    fn read32(&mut self, offset: u32) -> Result<u32> {
        let p = self.reg_ptr(offset)?;
        // SAFETY: `p` is aligned and inside the live register mapping;
        // volatile because it is device memory.
        Ok(u32::from_le(unsafe { std::ptr::read_volatile(p) }))
    }

    fn write32(&mut self, offset: u32, value: u32) -> Result<()> {
        let p = self.reg_ptr(offset)?;
        // SAFETY: as in read32.
        unsafe { std::ptr::write_volatile(p, value.to_le()) };
        Ok(())
    }

    fn dma(&mut self) -> &mut dyn DmaWindow {
        &mut self.window
    }

    fn wait_irq(&mut self, timeout: Duration) -> Result<bool> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        use std::io::{Read, Write};
        if !self.irq {
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
            return Ok(false);
        }
        // UIO: writing 1 unmasks the interrupt; the fd becomes readable
        // (a 4-byte event count) when one has arrived.
        self.regs_file.write_all(&1u32.to_ne_bytes())?;
        let mut fds = [PollFd::new(&self.regs_file, PollFlags::IN)];
        let ts = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: timeout.subsec_nanos() as i64,
        };
        let n = poll(&mut fds, Some(&ts)).map_err(|e| Error::transport("poll", e))?;
        if n == 0 {
            return Ok(false);
        }
        let mut count = [0u8; 4];
        self.regs_file.read_exact(&mut count)?;
        Ok(true)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, len: u64) -> PathBuf {
        let p = std::env::temp_dir().join(format!("hitless-uio-{name}-{}", std::process::id()));
        let f = File::create(&p).unwrap();
        f.set_len(len).unwrap();
        p
    }

    #[test]
    fn registers_and_dma_window_map_files() {
        let regs = temp_file("regs", 8192);
        let dma = temp_file("dma", 1 << 20);
        let cfg = UioConfig {
            regs: regs.clone(),
            regs_offset: 4096,
            dma: dma.clone(),
            dma_len: 1 << 20,
            dma_iova: 0x3000_0000,
            irq: false,
        };
        let mut io = UioIo::open(&cfg).unwrap();
        io.write32(0x18, 0xDEAD_BEEF).unwrap();
        assert_eq!(io.read32(0x18).unwrap(), 0xDEAD_BEEF);
        assert!(io.read32(0x1001).is_err());
        assert!(io.read32(4096).is_err());
        assert_eq!(io.dma().iova(), 0x3000_0000);
        assert!(io.dma().write(100, &[42]));
        assert!(!io.dma().write((1 << 20) - 1, &[1, 2]));
        assert!(!io.wait_irq(Duration::from_millis(1)).unwrap());
        drop(io);
        let r = std::fs::read(&regs).unwrap();
        assert_eq!(&r[4096 + 0x18..4096 + 0x1C], &0xDEAD_BEEFu32.to_le_bytes());
        assert_eq!(std::fs::read(&dma).unwrap()[100], 42);
        let bad = UioConfig {
            regs: "/nonexistent/uio".into(),
            ..cfg
        };
        assert!(matches!(UioIo::open(&bad), Err(Error::Transport { .. })));
        let _ = std::fs::remove_file(regs);
        let _ = std::fs::remove_file(dma);
    }
}
