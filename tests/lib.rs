//! Shared pieces for end-to-end tests: the driver on the Verilated card,
//! in-process (no socket): a contiguous DMA window that is both the card's
//! host memory and the driver's DMA window.
#![forbid(unsafe_code)]

use hitless_driver::{CardIo, DmaWindow, Error, Result};
use hitless_sim::memory::WordStore;
use hitless_sim::{CardTiming, NvStore, SimCard};
use std::time::{Duration, Instant};

/// Host memory the card reaches at `iova`. Outside it, reads return all
/// ones (as an unmapped PCIe read does) and writes are dropped and counted.
pub struct Window {
    pub iova: u64,
    pub bytes: Vec<u8>,
    pub faults: u64,
}

impl Window {
    pub fn new(iova: u64, len: usize) -> Self {
        Self {
            iova,
            bytes: vec![0; len],
            faults: 0,
        }
    }
    fn at(&self, addr: u64) -> Option<usize> {
        let off = addr.checked_sub(self.iova)?;
        (off.checked_add(8)? <= self.bytes.len() as u64).then_some(off as usize)
    }
}

impl WordStore for Window {
    fn read_word(&self, addr: u64) -> u64 {
        match self.at(addr) {
            Some(o) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.bytes[o..o + 8]);
                u64::from_le_bytes(b)
            }
            None => u64::MAX,
        }
    }
    fn write_word(&mut self, addr: u64, value: u64, strobe: u8) {
        match self.at(addr) {
            Some(o) => {
                for i in 0..8 {
                    if strobe & (1 << i) != 0 {
                        self.bytes[o + i] = (value >> (8 * i)) as u8;
                    }
                }
            }
            None => self.faults += 1,
        }
    }
}

impl DmaWindow for Window {
    fn iova(&self) -> u64 {
        self.iova
    }
    fn len(&self) -> usize {
        self.bytes.len()
    }
    fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        match offset
            .checked_add(buf.len())
            .and_then(|e| self.bytes.get(offset..e))
        {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
    fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        match offset
            .checked_add(data.len())
            .and_then(|e| self.bytes.get_mut(offset..e))
        {
            Some(dst) => {
                dst.copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}

/// The Verilated card as a driver transport, clocked by the driver's waits.
pub struct SimIo {
    pub card: SimCard<Window>,
    irqs_seen: u64,
}

impl SimIo {
    /// A blank card with a DMA window of `window` bytes at IOVA 16 GiB.
    pub fn new(window: usize) -> Self {
        let g = hitless_hdl::contract::DEFAULT_GEOMETRY;
        Self::with_nv(
            NvStore::new(g.total() as usize),
            NvStore::new(g.total() as usize),
            window,
        )
    }

    pub fn with_nv(warm: NvStore, cold: NvStore, window: usize) -> Self {
        let host = Window::new(1 << 34, window);
        Self {
            card: SimCard::with_host(CardTiming::default(), warm, cold, host),
            irqs_seen: 0,
        }
    }
}

fn sim_err(e: hitless_sim::SimError) -> Error {
    Error::transport("the simulated card", e)
}

impl CardIo for SimIo {
    fn read32(&mut self, offset: u32) -> Result<u32> {
        self.card.read_reg(offset).map_err(sim_err)
    }
    fn write32(&mut self, offset: u32, value: u32) -> Result<()> {
        self.card.write_reg(offset, value).map_err(sim_err)
    }
    fn dma(&mut self) -> &mut dyn DmaWindow {
        &mut self.card.host
    }
    fn wait_irq(&mut self, timeout: Duration) -> Result<bool> {
        // Simulated time advances only while someone waits: clock the card
        // in slices until an interrupt or the wall-clock timeout.
        let start = Instant::now();
        loop {
            self.card.run(512);
            let n = self.card.irq_count();
            if n != self.irqs_seen {
                self.irqs_seen = n;
                return Ok(true);
            }
            if start.elapsed() >= timeout {
                return Ok(false);
            }
        }
    }
    fn describe(&self) -> String {
        "in-process Verilated card".into()
    }
}

/// A workspace binary, next to the test executable (`cargo test
/// --workspace`, as `cargo xtask test` runs it, builds them all).
pub fn bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the target directory");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo test --workspace` (or `cargo xtask test`)",
        p.display()
    );
    p
}
