//! Host memory as the simulated card's DMA port sees it when the host is
//! another process: regions of the client's memory (fds passed over
//! vfio-user) at I/O virtual addresses. Accesses outside every mapping are
//! faults, as with an IOMMU: reads return all ones, writes are dropped,
//! both are counted.
//!
//! A client may shrink an ordinary file under us, and touching a mapping
//! past the new end raises SIGBUS. So only fds sealed against shrinking
//! (`F_SEAL_SHRINK`, as the hitless driver's memfds are) are mapped and
//! accessed in place; any other fd (QEMU passes plain shared memory) is
//! accessed with `pread`/`pwrite`, where a shrunken file is a short read or
//! a refused write: a counted fault, never a crash, and never a write that
//! grows the file back.

use crate::memory::WordStore;
use hitless_vfio_user::{DmaMemory, DmaProt, DmaSpace, FdMemory};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;

/// Why a DMA mapping was refused.
#[derive(Debug, thiserror::Error)]
pub enum DmaError {
    /// Empty, wrapping or overlapping range, or no such mapping to unmap:
    /// the mapping table's own refusal.
    #[error(transparent)]
    Table(#[from] hitless_vfio_user::Error),
    #[error("the fd holds {size} bytes; mapping needs offset {offset:#x} + {len:#x}")]
    TooLarge { size: u64, offset: u64, len: u64 },
    #[error("too many DMA mappings (limit {0})")]
    TooMany(usize),
    #[error("mapping the fd failed")]
    Map(#[source] io::Error),
}

/// How a mapping's bytes are reached.
enum Backing {
    /// Sealed against shrinking: mapped, accessed in place (the Verilated
    /// model's DMA port reads a word at a time: no system call per word).
    Mapped(memmap2::MmapRaw),
    /// Any other fd: `pread`/`pwrite` ([`FdMemory`]).
    File(FdMemory),
}

fn outside() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "access outside the mapping")
}

impl Backing {
    /// Whether `[off, off + n)` lies inside the mapped bytes.
    fn inside(map: &memmap2::MmapRaw, off: u64, n: usize) -> io::Result<usize> {
        let off = usize::try_from(off).map_err(|_| outside())?;
        match off.checked_add(n) {
            Some(end) if end <= map.len() => Ok(off),
            _ => Err(outside()),
        }
    }
}

impl DmaMemory for Backing {
    fn read(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Backing::Mapped(map) => {
                let off = Backing::inside(map, off, buf.len())?;
                for (i, x) in buf.iter_mut().enumerate() {
                    // SAFETY: `off + i < map.len()` (checked by `inside`),
                    // inside a live mapping of a file sealed against
                    // shrinking, so the page cannot go away. Volatile: the
                    // client process writes this memory concurrently.
                    *x = unsafe { std::ptr::read_volatile(map.as_ptr().add(off + i)) };
                }
                Ok(())
            }
            Backing::File(mem) => mem.read(off, buf),
        }
    }

    fn write(&self, off: u64, data: &[u8]) -> io::Result<()> {
        match self {
            Backing::Mapped(map) => {
                let off = Backing::inside(map, off, data.len())?;
                for (i, x) in data.iter().enumerate() {
                    // SAFETY: as in `read`; the table allows writes only
                    // to mappings the client made writable.
                    unsafe { std::ptr::write_volatile(map.as_mut_ptr().add(off + i), *x) };
                }
                Ok(())
            }
            Backing::File(mem) => mem.write(off, data),
        }
    }
}

/// Whether `file` is sealed against shrinking (memfd seals).
fn sealed_against_shrinking(file: &File) -> bool {
    rustix::fs::fcntl_get_seals(file).is_ok_and(|s| s.contains(rustix::fs::SealFlags::SHRINK))
}

/// The I/O virtual address space of the card: the vfio-user crate's
/// mapping table ([`DmaSpace`]) over this card's backings, with the
/// faults counted.
#[derive(Default)]
pub struct CardDma {
    space: DmaSpace<Backing>,
    /// Accesses that hit no mapping (or wrote a read-only one).
    pub faults: u64,
}

/// At most this many mappings (a misbehaving client cannot exhaust us).
pub const MAX_MAPPINGS: usize = 64;

impl CardDma {
    /// Map `len` bytes of `file` from `offset` at `iova`.
    pub fn map(
        &mut self,
        iova: u64,
        len: u64,
        file: &File,
        offset: u64,
        writable: bool,
    ) -> Result<(), DmaError> {
        if self.space.len() >= MAX_MAPPINGS {
            return Err(DmaError::TooMany(MAX_MAPPINGS));
        }
        let size = file.metadata().map_err(DmaError::Map)?.len();
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(DmaError::TooLarge { size, offset, len });
        }
        let backing = if sealed_against_shrinking(file) {
            Backing::Mapped(
                memmap2::MmapOptions::new()
                    .offset(offset)
                    .len(usize::try_from(len).map_err(|_| DmaError::TooLarge {
                        size,
                        offset,
                        len,
                    })?)
                    .map_raw(file)
                    .map_err(DmaError::Map)?,
            )
        } else {
            let fd = OwnedFd::from(file.try_clone().map_err(DmaError::Map)?);
            Backing::File(FdMemory::new(fd, offset, len, writable))
        };
        let prot = DmaProt {
            read: true,
            write: writable,
        };
        Ok(self.space.insert(iova, len, prot, backing)?)
    }

    /// Remove the mapping that is exactly `iova`+`len`.
    pub fn unmap(&mut self, iova: u64, len: u64) -> Result<(), DmaError> {
        Ok(self.space.unmap(iova, len)?)
    }

    /// Remove every mapping (the client went away).
    pub fn clear(&mut self) {
        self.space.clear();
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.space.len()
    }

    /// No mappings.
    pub fn is_empty(&self) -> bool {
        self.space.is_empty()
    }

    /// Copy `buf.len()` bytes at `addr` out of one mapping; `false` (and a
    /// counted fault) when the range is not inside one mapping, or the
    /// client's file no longer holds it.
    pub fn read_bytes(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        let ok = self.space.read(addr, buf).is_ok();
        if !ok {
            self.faults += 1;
        }
        ok
    }

    /// Copy `data` to `addr` inside one writable mapping; `false` (and a
    /// counted fault) otherwise.
    pub fn write_bytes(&mut self, addr: u64, data: &[u8]) -> bool {
        let ok = self.space.write(addr, data).is_ok();
        if !ok {
            self.faults += 1;
        }
        ok
    }
}

impl WordStore for CardDma {
    fn read_word(&self, addr: u64) -> u64 {
        let mut b = [0u8; 8];
        match self.space.read(addr, &mut b) {
            Ok(()) => u64::from_le_bytes(b),
            Err(_) => u64::MAX,
        }
    }

    fn write_word(&mut self, addr: u64, value: u64, strobe: u8) {
        let bytes = value.to_le_bytes();
        // Each run of strobed bytes as one copy: bytes outside the strobe
        // are never written (the client may be writing them).
        let mut ok = true;
        let mut i = 0;
        while i < 8 {
            if strobe & (1 << i) == 0 {
                i += 1;
                continue;
            }
            let start = i;
            while i < 8 && strobe & (1 << i) != 0 {
                i += 1;
            }
            ok &= self
                .space
                .write(addr + start as u64, &bytes[start..i])
                .is_ok();
        }
        if !ok {
            self.faults += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    fn file(len: usize) -> File {
        // One name per call: tests run in parallel threads of one process,
        // and two opening the same path share one file (one test shrinks
        // its file to 100 bytes: the other then failed to map 8192).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("hitless-dma-{}-{len}-{n}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let _ = std::fs::remove_file(&path);
        f.write_all(&vec![0u8; len]).unwrap();
        f
    }

    #[test]
    fn maps_reads_and_writes_through_the_file() {
        let mut f = file(8192);
        let mut d = CardDma::default();
        d.map(0x10_0000, 4096, &f, 4096, true).unwrap();
        d.write_word(0x10_0008, 0x0102_0304_0506_0708, 0xFF);
        assert_eq!(d.read_word(0x10_0008), 0x0102_0304_0506_0708);
        let mut back = vec![0u8; 16];
        f.seek(std::io::SeekFrom::Start(4096 + 8)).unwrap();
        f.read_exact(&mut back).unwrap();
        assert_eq!(&back[..8], &0x0102_0304_0506_0708u64.to_le_bytes());
        // Outside the mapping: fault, all ones.
        assert_eq!(d.read_word(0x10_1000), u64::MAX);
        d.write_word(0x0F_FFF8, 1, 0xFF);
        assert_eq!(d.faults, 1);
    }

    #[test]
    fn bad_mappings_are_refused() {
        let f = file(4096);
        let mut d = CardDma::default();
        assert!(matches!(
            d.map(0, 0, &f, 0, true),
            Err(DmaError::Table(hitless_vfio_user::Error::InvalidArgument(
                _
            )))
        ));
        assert!(matches!(
            d.map(u64::MAX - 8, 4096, &f, 0, true),
            Err(DmaError::Table(hitless_vfio_user::Error::InvalidArgument(
                _
            )))
        ));
        assert!(matches!(
            d.map(0, 8192, &f, 0, true),
            Err(DmaError::TooLarge { .. })
        ));
        assert!(matches!(
            d.map(0, 4096, &f, u64::MAX, true),
            Err(DmaError::TooLarge { .. })
        ));
        d.map(0x1000, 2048, &f, 0, false).unwrap();
        assert!(matches!(
            d.map(0x1400, 2048, &f, 0, true),
            Err(DmaError::Table(hitless_vfio_user::Error::Exists))
        ));
        // Read-only mapping: writes fault.
        d.write_word(0x1000, 5, 0xFF);
        assert_eq!((d.faults, d.read_word(0x1000)), (1, 0));
        assert!(matches!(
            d.unmap(0x1000, 4096),
            Err(DmaError::Table(hitless_vfio_user::Error::NotFound))
        ));
        d.unmap(0x1000, 2048).unwrap();
        assert!(d.is_empty());
    }

    /// A memfd sealed against shrinking, as the hitless driver passes.
    fn sealed(len: usize) -> File {
        use rustix::fs::{memfd_create, MemfdFlags, SealFlags};
        let fd = memfd_create("hitless-dma-test", MemfdFlags::ALLOW_SEALING).unwrap();
        let mut f = File::from(fd);
        f.write_all(&vec![0u8; len]).unwrap();
        rustix::fs::fcntl_add_seals(&f, SealFlags::SHRINK).unwrap();
        f
    }

    #[test]
    fn sealed_and_ordinary_fds_behave_the_same() {
        for f in [sealed(8192), file(8192)] {
            let mut d = CardDma::default();
            d.map(0x2000, 8192, &f, 0, true).unwrap();
            // Strobed bytes only: the others keep what the client wrote.
            d.write_word(0x2000, u64::MAX, 0xFF);
            d.write_word(0x2000, 0, 0b0110_0110);
            assert_eq!(d.read_word(0x2000), 0xFF00_00FF_FF00_00FF);
            let mut b = [0u8; 5];
            assert!(d.write_bytes(0x3000, b"hello"));
            assert!(d.read_bytes(0x3000, &mut b));
            assert_eq!(&b, b"hello");
            assert_eq!(d.faults, 0);
        }
    }

    #[test]
    fn a_client_that_shrinks_its_file_gets_faults_not_a_crash() {
        let f = file(8192);
        let mut d = CardDma::default();
        d.map(0, 8192, &f, 0, true).unwrap();
        d.write_word(4096, 7, 0xFF);
        f.set_len(100).unwrap();
        // Past the new end: all ones, counted faults, and the file is not
        // grown back by a write.
        assert_eq!(d.read_word(4096), u64::MAX);
        let mut buf = [0u8; 8];
        assert!(!d.read_bytes(4096, &mut buf));
        d.write_word(4096, 1, 0xFF);
        assert!(!d.write_bytes(4096, &[1, 2, 3]));
        assert_eq!(d.faults, 3);
        assert_eq!(f.metadata().unwrap().len(), 100);
        // What is left still works.
        d.write_word(8, 0x55, 0x01);
        assert_eq!(d.read_word(8) & 0xFF, 0x55);
    }
}
