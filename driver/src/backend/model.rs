//! In-process card over the reference model (`hitless_hdl::model`): no
//! hardware, no simulator, no process. For fast unit tests of everything
//! above the transport, and for measuring the driver's own overhead.

use crate::error::Result;
use crate::io::{slice_read, slice_write, CardIo, DmaWindow};
use hitless_hdl::contract::NvGeometry;
use hitless_hdl::model::{HostMemory, Model};
use std::time::Duration;

/// Plain memory used as a DMA window.
pub struct VecWindow {
    pub iova: u64,
    pub bytes: Vec<u8>,
}

impl DmaWindow for VecWindow {
    fn iova(&self) -> u64 {
        self.iova
    }
    fn len(&self) -> usize {
        self.bytes.len()
    }
    fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        slice_read(&self.bytes, offset, buf)
    }
    fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        slice_write(&mut self.bytes, offset, data)
    }
}

/// The model's DMA view of the window: accesses outside it behave like an
/// IOMMU fault (reads return zeros, writes are dropped) and are counted.
struct Host<'a> {
    win: &'a mut VecWindow,
    faults: &'a mut u64,
}

impl Host<'_> {
    fn range(&self, addr: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let off = addr.checked_sub(self.win.iova)?;
        let end = off.checked_add(len as u64)?;
        (end <= self.win.bytes.len() as u64).then_some(off as usize..end as usize)
    }
}

impl HostMemory for Host<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) {
        match self.range(addr, buf.len()) {
            Some(r) => buf.copy_from_slice(&self.win.bytes[r]),
            None => buf.fill(0),
        }
    }
    fn write(&mut self, addr: u64, data: &[u8]) {
        match self.range(addr, data.len()) {
            Some(r) => self.win.bytes[r].copy_from_slice(data),
            None => *self.faults += 1,
        }
    }
}

/// A card made of the reference model and a DMA window.
pub struct ModelIo {
    model: Model,
    window: VecWindow,
    irqs_seen: u64,
    faults: u64,
}

impl ModelIo {
    /// A blank card (booted) with a DMA window of `window` bytes at IOVA 4 GiB.
    pub fn new(geometry: NvGeometry, window: usize) -> Self {
        let mut model = Model::new(geometry);
        model.boot_scan();
        Self::with_model(model, window)
    }

    /// A card around an existing model (for example one rebuilt from NV).
    pub fn with_model(model: Model, window: usize) -> Self {
        Self {
            model,
            window: VecWindow {
                iova: 1 << 32,
                bytes: vec![0; window],
            },
            irqs_seen: 0,
            faults: 0,
        }
    }

    /// The model (NV contents, registers).
    pub fn model(&mut self) -> &mut Model {
        &mut self.model
    }

    /// DMA accesses that fell outside the window.
    pub fn dma_faults(&self) -> u64 {
        self.faults
    }
}

impl CardIo for ModelIo {
    fn read32(&mut self, offset: u32) -> Result<u32> {
        Ok(self.model.read_reg(offset))
    }

    fn write32(&mut self, offset: u32, value: u32) -> Result<()> {
        self.model.write_reg(offset, value);
        // The model has no clock: it runs the rings whenever software pokes it.
        let mut host = Host {
            win: &mut self.window,
            faults: &mut self.faults,
        };
        self.model.process_rings(&mut host);
        Ok(())
    }

    fn dma(&mut self) -> &mut dyn DmaWindow {
        &mut self.window
    }

    fn wait_irq(&mut self, timeout: Duration) -> Result<bool> {
        let n = self.model.irq_pulses();
        if n != self.irqs_seen {
            self.irqs_seen = n;
            return Ok(true);
        }
        // Nothing runs in the background here: waiting cannot help.
        let _ = timeout;
        Ok(false)
    }

    fn describe(&self) -> String {
        "in-process reference model".into()
    }
}
