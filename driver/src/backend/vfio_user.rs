//! vfio-user transport: the simulated card (`hitless-sim serve`) or any
//! device served over the vfio-user protocol. BAR0 accesses are protocol
//! messages, the DMA window is a sealed memfd mapped into the card's
//! address space, and the interrupt is an eventfd the card signals. Every
//! call has a timeout: a dead or hung card process is an error, not a hang.

use crate::error::{Error, Result};
use crate::io::{CardIo, DmaWindow};
use hitless_vfio_user::{card, Client, DmaBuffer, IrqEvent};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the DMA window appears in the card's address space.
pub const WINDOW_IOVA: u64 = 1 << 32;

struct Window {
    buf: DmaBuffer,
}

impl DmaWindow for Window {
    fn iova(&self) -> u64 {
        WINDOW_IOVA
    }
    fn len(&self) -> usize {
        self.buf.len()
    }
    fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        self.buf.read(offset, buf)
    }
    fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        self.buf.write(offset, data)
    }
}

/// A card served over vfio-user.
pub struct VfioUserIo {
    client: Client,
    window: Window,
    irq: IrqEvent,
    path: PathBuf,
}

fn vu(e: hitless_vfio_user::Error) -> Error {
    match e {
        hitless_vfio_user::Error::Timeout(after) => Error::Timeout {
            what: "the card process",
            after,
        },
        other => Error::transport("vfio-user", other),
    }
}

impl VfioUserIo {
    /// Connect to the card at `socket`, share a DMA window of `window_len`
    /// bytes and route its interrupt to an eventfd. Every protocol call
    /// (this one included) gives up after `timeout`.
    pub fn connect(socket: &Path, window_len: usize, timeout: Duration) -> Result<Self> {
        let mut client = Client::connect(socket, timeout).map_err(|e| match e {
            hitless_vfio_user::Error::Busy => Error::transport_msg(format!(
                "{} already has a client attached (a vfio-user card serves one at a time)",
                socket.display()
            )),
            other => Error::transport(format!("{}", socket.display()), other),
        })?;
        let buf = DmaBuffer::new(window_len).map_err(|e| Error::transport("DMA window", e))?;
        client
            .dma_map(buf.fd(), WINDOW_IOVA, buf.len() as u64, 0)
            .map_err(vu)?;
        let irq = IrqEvent::new().map_err(|e| Error::transport("eventfd", e))?;
        client
            .set_irqs(card::IRQ_INDEX, 0, &[irq.as_fd()])
            .map_err(vu)?;
        Ok(Self {
            client,
            window: Window { buf },
            irq,
            path: socket.to_path_buf(),
        })
    }
}

impl CardIo for VfioUserIo {
    fn read32(&mut self, offset: u32) -> Result<u32> {
        self.client.read32(card::BAR0, offset as u64).map_err(vu)
    }
    fn write32(&mut self, offset: u32, value: u32) -> Result<()> {
        self.client
            .write32(card::BAR0, offset as u64, value)
            .map_err(vu)
    }
    fn dma(&mut self) -> &mut dyn DmaWindow {
        &mut self.window
    }
    fn wait_irq(&mut self, timeout: Duration) -> Result<bool> {
        self.irq
            .wait(timeout)
            .map(|n| n.is_some())
            .map_err(|e| Error::transport("interrupt eventfd", e))
    }
    fn describe(&self) -> String {
        format!("vfio-user {}", self.path.display())
    }
}
