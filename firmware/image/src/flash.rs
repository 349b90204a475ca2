//! The NVS flash simulation: a NOR-like device (seed 002, claims 8, 9).
//!
//! Erase sets a whole block to `0xFF`; program can only clear bits (a
//! program that would turn a 0 into a 1 is refused, as real NOR cannot do
//! it) and never crosses a page. [`SimFlash`] keeps its bytes in memory or
//! in a file; all devices of a card share one [`PowerRail`], which counts
//! program and erase operations and can cut the power at any one of them:
//! that operation is torn (half the page programmed, half the block
//! erased) and every later access fails with [`ImageError::PowerCut`]
//! until [`PowerRail::power_on`].
//!
//! A board's SPI flash implements [`Nvs`] over its bus (4 KiB sectors,
//! 256-byte pages, the shape simulated here).

use crate::ImageError;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// A device's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Geometry {
    /// Bytes per erase block.
    pub block_size: u32,
    /// Bytes per program page (a divisor of `block_size`).
    pub page_size: u32,
    /// Number of erase blocks.
    pub blocks: u32,
}

impl Geometry {
    /// Total bytes.
    pub fn total(&self) -> u64 {
        u64::from(self.block_size) * u64::from(self.blocks)
    }

    fn check(&self) -> Result<(), ImageError> {
        if self.page_size == 0
            || self.block_size == 0
            || !self.block_size.is_multiple_of(self.page_size)
        {
            return Err(ImageError::BadGeometry(
                "block size must be a multiple of the page size",
            ));
        }
        Ok(())
    }
}

/// A non-volatile storage device as the image manager sees it.
pub trait Nvs: Send {
    /// The device's geometry.
    fn geometry(&self) -> Geometry;
    /// Read `buf.len()` bytes at `offset`.
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ImageError>;
    /// Program `data` at `offset`, within one page; only clears bits.
    fn program(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError>;
    /// Erase block `block` to `0xFF`.
    fn erase(&mut self, block: u32) -> Result<(), ImageError>;
}

#[derive(Debug, Default)]
struct Rail {
    ops: u64,
    cut_at: Option<u64>,
    down: bool,
}

/// The card's power: shared by its devices, counts program/erase
/// operations and injects power cuts.
#[derive(Clone, Debug, Default)]
pub struct PowerRail(Arc<Mutex<Rail>>);

impl PowerRail {
    /// A powered rail with no cut armed.
    pub fn new() -> Self {
        Self::default()
    }
    fn lock(&self) -> MutexGuard<'_, Rail> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Program and erase operations started since creation (torn one included).
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }
    /// Cut the power during the `k`-th program/erase from now (0 = the next).
    pub fn cut_at(&self, k: u64) {
        let mut r = self.lock();
        r.cut_at = Some(r.ops + k);
    }
    /// Restore power and disarm any cut.
    pub fn power_on(&self) {
        let mut r = self.lock();
        r.down = false;
        r.cut_at = None;
    }
    /// Whether a cut happened and power is not back.
    pub fn is_down(&self) -> bool {
        self.lock().down
    }
    /// Ok(true): the operation runs whole; Ok(false): it is torn.
    fn start_op(&self) -> Result<bool, ImageError> {
        let mut r = self.lock();
        if r.down {
            return Err(ImageError::PowerCut);
        }
        let idx = r.ops;
        r.ops += 1;
        if r.cut_at == Some(idx) {
            r.down = true;
            return Ok(false);
        }
        Ok(true)
    }
    fn check_read(&self) -> Result<(), ImageError> {
        if self.lock().down {
            return Err(ImageError::PowerCut);
        }
        Ok(())
    }
}

#[derive(Debug)]
enum Store {
    Memory(Vec<u8>),
    File(File),
}

#[derive(Debug)]
struct Inner {
    geometry: Geometry,
    store: Store,
    ops: u64,
}

impl Inner {
    fn get(&self, off: u64, buf: &mut [u8]) -> Result<(), ImageError> {
        match &self.store {
            Store::Memory(v) => {
                let s = usize::try_from(off).map_err(|_| ImageError::OutOfRange { offset: off })?;
                let src = v
                    .get(s..s + buf.len())
                    .ok_or(ImageError::OutOfRange { offset: off })?;
                buf.copy_from_slice(src);
                Ok(())
            }
            Store::File(f) => Ok(f.read_exact_at(buf, off)?),
        }
    }
    fn put(&mut self, off: u64, data: &[u8]) -> Result<(), ImageError> {
        match &mut self.store {
            Store::Memory(v) => {
                let s = usize::try_from(off).map_err(|_| ImageError::OutOfRange { offset: off })?;
                let dst = v
                    .get_mut(s..s + data.len())
                    .ok_or(ImageError::OutOfRange { offset: off })?;
                dst.copy_from_slice(data);
                Ok(())
            }
            Store::File(f) => Ok(f.write_all_at(data, off)?),
        }
    }
}

/// A simulated NOR device; clones share the same device (a test keeps
/// one to corrupt it or to open the card again after a power cut).
#[derive(Clone, Debug)]
pub struct SimFlash {
    inner: Arc<Mutex<Inner>>,
    rail: PowerRail,
}

impl SimFlash {
    /// An erased in-memory device.
    pub fn memory(geometry: Geometry, rail: PowerRail) -> Result<Self, ImageError> {
        geometry.check()?;
        let len =
            usize::try_from(geometry.total()).map_err(|_| ImageError::BadGeometry("too large"))?;
        Ok(Self::wrap(geometry, Store::Memory(vec![0xFF; len]), rail))
    }

    /// A file-backed device: an existing file of the right size is used as
    /// it is, otherwise the file is created erased.
    pub fn file(path: &Path, geometry: Geometry, rail: PowerRail) -> Result<Self, ImageError> {
        geometry.check()?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if f.metadata()?.len() != geometry.total() {
            f.set_len(0)?;
            let block = vec![0xFF; geometry.block_size as usize];
            for b in 0..geometry.blocks {
                f.write_all_at(&block, u64::from(b) * u64::from(geometry.block_size))?;
            }
        }
        Ok(Self::wrap(geometry, Store::File(f), rail))
    }

    fn wrap(geometry: Geometry, store: Store, rail: PowerRail) -> Self {
        SimFlash {
            inner: Arc::new(Mutex::new(Inner {
                geometry,
                store,
                ops: 0,
            })),
            rail,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Program and erase operations this device has started.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// The power rail this device is on.
    pub fn rail(&self) -> &PowerRail {
        &self.rail
    }

    /// Flip one bit, bypassing the flash rules (a corruption).
    pub fn flip_bit(&self, offset: u64, bit: u8) -> Result<(), ImageError> {
        let mut g = self.lock();
        let mut b = [0u8];
        g.get(offset, &mut b)?;
        b[0] ^= 1 << (bit & 7);
        g.put(offset, &b)
    }

    /// A copy of the whole device contents.
    pub fn snapshot(&self) -> Result<Vec<u8>, ImageError> {
        let g = self.lock();
        let mut v = vec![0u8; g.geometry.total() as usize];
        g.get(0, &mut v)?;
        Ok(v)
    }

    /// Replace the whole contents (the size must match).
    pub fn restore(&self, data: &[u8]) -> Result<(), ImageError> {
        let mut g = self.lock();
        if data.len() as u64 != g.geometry.total() {
            return Err(ImageError::OutOfRange {
                offset: data.len() as u64,
            });
        }
        g.put(0, data)
    }
}

impl Nvs for SimFlash {
    fn geometry(&self) -> Geometry {
        self.lock().geometry
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ImageError> {
        self.rail.check_read()?;
        let g = self.lock();
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > g.geometry.total())
        {
            return Err(ImageError::OutOfRange { offset });
        }
        g.get(offset, buf)
    }

    fn program(&mut self, offset: u64, data: &[u8]) -> Result<(), ImageError> {
        let mut g = self.lock();
        let page = u64::from(g.geometry.page_size);
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(ImageError::OutOfRange { offset })?;
        if end > g.geometry.total() {
            return Err(ImageError::OutOfRange { offset });
        }
        if !data.is_empty() && offset / page != (end - 1) / page {
            return Err(ImageError::CrossesPage {
                offset,
                len: data.len(),
            });
        }
        let mut old = vec![0u8; data.len()];
        g.get(offset, &mut old)?;
        if let Some(i) = old.iter().zip(data).position(|(o, n)| n & !o != 0) {
            return Err(ImageError::ProgramSetsBits {
                offset: offset + i as u64,
            });
        }
        g.ops += 1;
        let whole = self.rail.start_op()?;
        let n = if whole { data.len() } else { data.len() / 2 };
        g.put(offset, &data[..n])?;
        if whole {
            Ok(())
        } else {
            Err(ImageError::PowerCut)
        }
    }

    fn erase(&mut self, block: u32) -> Result<(), ImageError> {
        let mut g = self.lock();
        if block >= g.geometry.blocks {
            return Err(ImageError::OutOfRange {
                offset: u64::from(block),
            });
        }
        g.ops += 1;
        let whole = self.rail.start_op()?;
        let bs = g.geometry.block_size as usize;
        let n = if whole { bs } else { bs / 2 };
        let off = u64::from(block) * bs as u64;
        g.put(off, &vec![0xFF; n])?;
        if whole {
            Ok(())
        } else {
            Err(ImageError::PowerCut)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Geometry = Geometry {
        block_size: 4096,
        page_size: 256,
        blocks: 4,
    };

    #[test]
    fn program_only_clears_bits_and_erase_sets_ff() {
        let mut f = SimFlash::memory(G, PowerRail::new()).unwrap();
        f.program(0, &[0x0F]).unwrap();
        assert!(matches!(
            f.program(0, &[0xF0]),
            Err(ImageError::ProgramSetsBits { offset: 0 })
        ));
        f.program(0, &[0x05]).unwrap();
        let mut b = [0u8; 2];
        f.read(0, &mut b).unwrap();
        assert_eq!(b, [0x05, 0xFF]);
        assert!(matches!(
            f.program(250, &[0; 10]),
            Err(ImageError::CrossesPage { .. })
        ));
        f.erase(0).unwrap();
        f.read(0, &mut b).unwrap();
        assert_eq!(b, [0xFF, 0xFF]);
        assert_eq!(f.ops(), 3);
    }

    #[test]
    fn power_cut_tears_the_op_and_fails_later_ones() {
        let rail = PowerRail::new();
        let mut f = SimFlash::memory(G, rail.clone()).unwrap();
        rail.cut_at(1);
        f.program(0, &[0; 16]).unwrap();
        assert!(matches!(
            f.program(256, &[0; 16]),
            Err(ImageError::PowerCut)
        ));
        assert!(matches!(f.erase(1), Err(ImageError::PowerCut)));
        let mut b = [0u8; 1];
        assert!(matches!(f.read(0, &mut b), Err(ImageError::PowerCut)));
        rail.power_on();
        let mut page = [0u8; 16];
        f.read(256, &mut page).unwrap();
        assert_eq!(&page[..8], &[0; 8], "first half programmed");
        assert_eq!(&page[8..], &[0xFF; 8], "second half not");
        // torn erase: half the block
        f.program(4096 + 4095, &[0]).unwrap();
        f.program(4096, &[0]).unwrap();
        rail.cut_at(0);
        assert!(f.erase(1).is_err());
        rail.power_on();
        let (mut a, mut z) = ([0u8], [0u8]);
        f.read(4096, &mut a).unwrap();
        f.read(4096 + 4095, &mut z).unwrap();
        assert_eq!((a[0], z[0]), (0xFF, 0));
    }

    #[test]
    fn file_backed_device_persists() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nvs0.bin");
        {
            let mut f = SimFlash::file(&p, G, PowerRail::new()).unwrap();
            f.program(300, &[1, 2, 3]).unwrap();
        }
        let mut f = SimFlash::file(&p, G, PowerRail::new()).unwrap();
        let mut b = [0u8; 4];
        f.read(299, &mut b).unwrap();
        assert_eq!(b, [0xFF, 1, 2, 3]);
    }
}
