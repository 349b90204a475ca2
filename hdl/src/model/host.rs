//! Host memory as the controller's DMA engine sees it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Host memory as the controller's DMA sees it. Byte addressed, sparse.
///
/// Addresses are 64-bit and wrap modulo 2^64 (a transfer that runs past
/// `u64::MAX` continues at 0), so no address can make an implementation panic.
pub trait HostMemory {
    /// Fill `buf` from `[addr, addr + buf.len())`.
    fn read(&self, addr: u64, buf: &mut [u8]);
    /// Store `data` at `[addr, addr + data.len())`.
    fn write(&mut self, addr: u64, data: &[u8]);
}

impl<T: HostMemory + ?Sized> HostMemory for &mut T {
    fn read(&self, addr: u64, buf: &mut [u8]) {
        (**self).read(addr, buf)
    }
    fn write(&mut self, addr: u64, data: &[u8]) {
        (**self).write(addr, data)
    }
}

/// Page size of [`PagedMemory`].
pub const PAGE_BYTES: usize = 4096;
const PAGE_SHIFT: u32 = 12;
const PAGE_MASK: u64 = PAGE_BYTES as u64 - 1;

type Page = Box<[u8; PAGE_BYTES]>;

/// A multiplicative hasher for page numbers (the default SipHash is several
/// times slower and the keys are not attacker controlled).
#[derive(Default, Clone, Copy)]
pub struct PageHasher(u64);

impl Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Sparse paged host memory: 4 KiB pages allocated on first write; unmapped
/// reads return zeros.
#[derive(Clone, Default)]
pub struct PagedMemory {
    pages: HashMap<u64, Page, BuildHasherDefault<PageHasher>>,
}

impl std::fmt::Debug for PagedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagedMemory")
            .field("pages", &self.pages.len())
            .finish()
    }
}

impl PagedMemory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of pages allocated so far.
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// Drop every page (all memory reads zero again).
    pub fn clear(&mut self) {
        self.pages.clear();
    }

    fn page_mut(&mut self, pn: u64) -> &mut [u8; PAGE_BYTES] {
        self.pages
            .entry(pn)
            .or_insert_with(|| Box::new([0u8; PAGE_BYTES]))
    }

    /// Read the little-endian word at `addr`. Fast path for 8-byte aligned
    /// addresses (one page lookup); unaligned addresses are served bytewise.
    pub fn read_u64(&self, addr: u64) -> u64 {
        if addr & 7 == 0 {
            match self.pages.get(&(addr >> PAGE_SHIFT)) {
                Some(p) => {
                    let o = (addr & PAGE_MASK) as usize;
                    let mut le = [0u8; 8];
                    le.copy_from_slice(&p[o..o + 8]);
                    u64::from_le_bytes(le)
                }
                None => 0,
            }
        } else {
            let mut le = [0u8; 8];
            self.read(addr, &mut le);
            u64::from_le_bytes(le)
        }
    }

    /// Write the little-endian word `value` at `addr`, only the bytes whose
    /// bit is set in `strobe` (bit `i` enables byte `addr + i`), as an AXI
    /// write beat does. A zero strobe allocates nothing.
    pub fn write_u64_masked(&mut self, addr: u64, value: u64, strobe: u8) {
        if strobe == 0 {
            return;
        }
        let bytes = value.to_le_bytes();
        if addr & 7 == 0 {
            let o = (addr & PAGE_MASK) as usize;
            let p = self.page_mut(addr >> PAGE_SHIFT);
            if strobe == 0xFF {
                p[o..o + 8].copy_from_slice(&bytes);
            } else {
                for (i, b) in bytes.iter().enumerate() {
                    if strobe & (1 << i) != 0 {
                        p[o + i] = *b;
                    }
                }
            }
        } else {
            for (i, b) in bytes.iter().enumerate() {
                if strobe & (1 << i) != 0 {
                    self.write(addr.wrapping_add(i as u64), std::slice::from_ref(b));
                }
            }
        }
    }

    /// Write a full little-endian word at `addr`.
    pub fn write_u64(&mut self, addr: u64, value: u64) {
        self.write_u64_masked(addr, value, 0xFF)
    }
}

impl HostMemory for PagedMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) {
        let mut a = addr;
        let mut done = 0usize;
        while done < buf.len() {
            let o = (a & PAGE_MASK) as usize;
            let n = (PAGE_BYTES - o).min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            match self.pages.get(&(a >> PAGE_SHIFT)) {
                Some(p) => dst.copy_from_slice(&p[o..o + n]),
                None => dst.fill(0),
            }
            done += n;
            a = a.wrapping_add(n as u64);
        }
    }

    fn write(&mut self, addr: u64, data: &[u8]) {
        let mut a = addr;
        let mut done = 0usize;
        while done < data.len() {
            let o = (a & PAGE_MASK) as usize;
            let n = (PAGE_BYTES - o).min(data.len() - done);
            self.page_mut(a >> PAGE_SHIFT)[o..o + n].copy_from_slice(&data[done..done + n]);
            done += n;
            a = a.wrapping_add(n as u64);
        }
    }
}
