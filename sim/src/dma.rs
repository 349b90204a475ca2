//! Host memory as the simulated card's DMA port sees it when the host is
//! another process: regions of the client's memory (memfds passed over
//! vfio-user) mapped at I/O virtual addresses. Accesses outside every
//! mapping are faults, as with an IOMMU: reads return all ones, writes are
//! dropped, both are counted.

use crate::memory::WordStore;
use std::fs::File;

/// Why a DMA mapping was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DmaError {
    #[error("DMA mapping of zero bytes")]
    Empty,
    #[error("DMA range {iova:#x}+{len:#x} wraps the address space")]
    Wraps { iova: u64, len: u64 },
    #[error("DMA range {iova:#x}+{len:#x} overlaps an existing mapping")]
    Overlap { iova: u64, len: u64 },
    #[error("the fd holds {size} bytes; mapping needs offset {offset:#x} + {len:#x}")]
    TooLarge { size: u64, offset: u64, len: u64 },
    #[error("no mapping is exactly {iova:#x}+{len:#x}")]
    NotMapped { iova: u64, len: u64 },
    #[error("too many DMA mappings (limit {0})")]
    TooMany(usize),
    #[error("mapping the fd failed: {0}")]
    Map(String),
}

struct Mapping {
    iova: u64,
    len: u64,
    writable: bool,
    map: memmap2::MmapRaw,
}

/// The I/O virtual address space of the card.
#[derive(Default)]
pub struct DmaSpace {
    maps: Vec<Mapping>,
    /// Accesses that hit no mapping (or wrote a read-only one).
    pub faults: u64,
}

/// At most this many mappings (a misbehaving client cannot exhaust us).
pub const MAX_MAPPINGS: usize = 64;

impl DmaSpace {
    /// Map `len` bytes of `file` from `offset` at `iova`.
    pub fn map(
        &mut self,
        iova: u64,
        len: u64,
        file: &File,
        offset: u64,
        writable: bool,
    ) -> Result<(), DmaError> {
        if len == 0 {
            return Err(DmaError::Empty);
        }
        let end = iova.checked_add(len).ok_or(DmaError::Wraps { iova, len })?;
        if self.maps.len() >= MAX_MAPPINGS {
            return Err(DmaError::TooMany(MAX_MAPPINGS));
        }
        if self
            .maps
            .iter()
            .any(|m| iova < m.iova + m.len && m.iova < end)
        {
            return Err(DmaError::Overlap { iova, len });
        }
        let size = file
            .metadata()
            .map_err(|e| DmaError::Map(e.to_string()))?
            .len();
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(DmaError::TooLarge { size, offset, len });
        }
        let map = memmap2::MmapOptions::new()
            .offset(offset)
            .len(len as usize)
            .map_raw(file)
            .map_err(|e| DmaError::Map(e.to_string()))?;
        let pos = self.maps.partition_point(|m| m.iova < iova);
        self.maps.insert(
            pos,
            Mapping {
                iova,
                len,
                writable,
                map,
            },
        );
        Ok(())
    }

    /// Remove the mapping that is exactly `iova`+`len`.
    pub fn unmap(&mut self, iova: u64, len: u64) -> Result<(), DmaError> {
        match self
            .maps
            .iter()
            .position(|m| m.iova == iova && m.len == len)
        {
            Some(i) => {
                self.maps.remove(i);
                Ok(())
            }
            None => Err(DmaError::NotMapped { iova, len }),
        }
    }

    /// Remove every mapping (the client went away).
    pub fn clear(&mut self) {
        self.maps.clear();
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// No mappings.
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    /// The mapping holding `[addr, addr + n)` and the offset in it.
    fn find(&self, addr: u64, n: u64) -> Option<(&Mapping, usize)> {
        let i = self
            .maps
            .partition_point(|m| m.iova <= addr)
            .checked_sub(1)?;
        let m = &self.maps[i];
        let off = addr - m.iova;
        (off.checked_add(n)? <= m.len).then_some((m, off as usize))
    }
}

impl DmaSpace {
    /// Copy `buf.len()` bytes at `addr` out of one mapping; `false` (and a
    /// counted fault) when the range is not inside one mapping.
    pub fn read_bytes(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        match self.find(addr, buf.len() as u64) {
            Some((m, off)) => {
                for (i, x) in buf.iter_mut().enumerate() {
                    // SAFETY: `off + i < m.len` (checked by `find`), inside a
                    // live mapping; volatile as in `read_word`.
                    *x = unsafe { std::ptr::read_volatile(m.map.as_ptr().add(off + i)) };
                }
                true
            }
            None => {
                self.faults += 1;
                false
            }
        }
    }

    /// Copy `data` to `addr` inside one writable mapping; `false` (and a
    /// counted fault) otherwise.
    pub fn write_bytes(&mut self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len() as u64) {
            Some((m, off)) if m.writable => {
                for (i, x) in data.iter().enumerate() {
                    // SAFETY: as in `read_bytes`; the mapping is writable.
                    unsafe { std::ptr::write_volatile(m.map.as_mut_ptr().add(off + i), *x) };
                }
                true
            }
            _ => {
                self.faults += 1;
                false
            }
        }
    }
}

impl WordStore for DmaSpace {
    fn read_word(&self, addr: u64) -> u64 {
        match self.find(addr, 8) {
            Some((m, off)) => {
                let mut b = [0u8; 8];
                for (i, x) in b.iter_mut().enumerate() {
                    // SAFETY: `off + i < m.len` (checked by `find`), inside a
                    // live mapping. Volatile: the client process writes this
                    // memory concurrently.
                    *x = unsafe { std::ptr::read_volatile(m.map.as_ptr().add(off + i)) };
                }
                u64::from_le_bytes(b)
            }
            None => u64::MAX,
        }
    }

    fn write_word(&mut self, addr: u64, value: u64, strobe: u8) {
        match self.find(addr, 8) {
            Some((m, off)) if m.writable => {
                for i in 0..8 {
                    if strobe & (1 << i) != 0 {
                        // SAFETY: as in read_word; the mapping is writable.
                        unsafe {
                            std::ptr::write_volatile(
                                m.map.as_mut_ptr().add(off + i),
                                (value >> (8 * i)) as u8,
                            )
                        };
                    }
                }
            }
            _ => self.faults += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    fn file(len: usize) -> File {
        let path = std::env::temp_dir().join(format!("hitless-dma-{}-{len}", std::process::id()));
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
        let mut d = DmaSpace::default();
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
        let mut d = DmaSpace::default();
        assert_eq!(d.map(0, 0, &f, 0, true), Err(DmaError::Empty));
        assert!(matches!(
            d.map(u64::MAX - 8, 4096, &f, 0, true),
            Err(DmaError::Wraps { .. })
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
            Err(DmaError::Overlap { .. })
        ));
        // Read-only mapping: writes fault.
        d.write_word(0x1000, 5, 0xFF);
        assert_eq!((d.faults, d.read_word(0x1000)), (1, 0));
        assert!(matches!(
            d.unmap(0x1000, 4096),
            Err(DmaError::NotMapped { .. })
        ));
        d.unmap(0x1000, 2048).unwrap();
        assert!(d.is_empty());
    }
}
