//! The card's own RAM (where the firmware keeps its descriptor rings and
//! scratch buffers) and the bus the controller's host port sees: card-local
//! RAM at [`LOCAL_BASE`], the host's DMA mappings everywhere else. A real
//! card decodes the same split in its interconnect.

use crate::dma::CardDma;
use crate::memory::WordStore;
use std::sync::{Arc, Mutex, MutexGuard};

/// Controller-visible address of card-local RAM (far above any IOVA a host
/// hands out).
pub const LOCAL_BASE: u64 = 1 << 63;

/// Card-local RAM, shared by the clock thread (the controller's DMA) and
/// the firmware thread.
#[derive(Clone)]
pub struct LocalMemory(Arc<Mutex<Vec<u8>>>);

impl LocalMemory {
    pub fn new(len: usize) -> Self {
        Self(Arc::new(Mutex::new(vec![0u8; len])))
    }
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic elsewhere cannot leave the bytes inconsistent: use them.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn len(&self) -> usize {
        self.lock().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copy out of `[offset, +buf.len())`; `false` if outside.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        let m = self.lock();
        match offset.checked_add(buf.len()).and_then(|e| m.get(offset..e)) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
    /// Copy into `[offset, +data.len())`; `false` if outside.
    pub fn write(&self, offset: usize, data: &[u8]) -> bool {
        let mut m = self.lock();
        match offset
            .checked_add(data.len())
            .and_then(|e| m.get_mut(offset..e))
        {
            Some(dst) => {
                dst.copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}

/// The controller's host port: local RAM or host DMA by address.
pub struct CardBus {
    pub dma: CardDma,
    pub local: LocalMemory,
    /// Local accesses outside the RAM.
    pub local_faults: u64,
}

impl CardBus {
    pub fn new(dma: CardDma, local: LocalMemory) -> Self {
        Self {
            dma,
            local,
            local_faults: 0,
        }
    }
}

impl WordStore for CardBus {
    fn read_word(&self, addr: u64) -> u64 {
        if addr >= LOCAL_BASE {
            let mut b = [0u8; 8];
            if self.local.read((addr - LOCAL_BASE) as usize, &mut b) {
                return u64::from_le_bytes(b);
            }
            return u64::MAX;
        }
        self.dma.read_word(addr)
    }

    fn write_word(&mut self, addr: u64, value: u64, strobe: u8) {
        if addr < LOCAL_BASE {
            return self.dma.write_word(addr, value, strobe);
        }
        let off = (addr - LOCAL_BASE) as usize;
        let mut b = [0u8; 8];
        if !self.local.read(off, &mut b) {
            self.local_faults += 1;
            return;
        }
        let v = value.to_le_bytes();
        for i in 0..8 {
            if strobe & (1 << i) != 0 {
                b[i] = v[i];
            }
        }
        self.local.write(off, &b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_host_addresses_are_split() {
        let local = LocalMemory::new(64);
        let mut bus = CardBus::new(CardDma::default(), local.clone());
        bus.write_word(LOCAL_BASE + 8, 0x1122_3344_5566_7788, 0x0F);
        let mut b = [0u8; 8];
        assert!(local.read(8, &mut b));
        assert_eq!(u64::from_le_bytes(b), 0x5566_7788);
        assert_eq!(bus.read_word(LOCAL_BASE + 8), 0x5566_7788);
        // Outside local RAM and outside every host mapping: faults.
        assert_eq!(bus.read_word(LOCAL_BASE + 64), u64::MAX);
        bus.write_word(LOCAL_BASE + 64, 1, 0xFF);
        assert_eq!(bus.local_faults, 1);
        assert_eq!(bus.read_word(0x1000), u64::MAX);
        bus.write_word(0x1000, 1, 0xFF);
        assert_eq!(bus.dma.faults, 1);
    }
}
