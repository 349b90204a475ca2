//! The card's firmware running inside `hitless-sim`: a thread that owns
//! the controller's rings (in card-local RAM), serves the mailbox page of
//! BAR0 and runs the memory manager. It drives the controller through the
//! same driver core the host uses (`hitless_driver::Card`), over the
//! in-process register path instead of a bus.

use crate::local::{LocalMemory, LOCAL_BASE};
use crate::service::CardService;
use hitless_driver::{Card, CardIo, DmaWindow, Options};
use hitless_firmware::mailbox::{self, Mailbox, Pending};
use hitless_firmware::manager::{Controller, HostMemory, MemoryManager, SCRATCH_BYTES};
use hitless_firmware::msg::Code;
use hitless_hdl::contract::{reg, Completion, Descriptor};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes of local RAM for the firmware's rings (the rest is scratch).
const RING_BYTES: usize = 64 << 10;

/// The firmware's window onto local RAM for its rings.
struct RingWindow(LocalMemory);

impl DmaWindow for RingWindow {
    fn iova(&self) -> u64 {
        LOCAL_BASE
    }
    fn len(&self) -> usize {
        RING_BYTES
    }
    fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        offset + buf.len() <= RING_BYTES && self.0.read(offset, buf)
    }
    fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        offset + data.len() <= RING_BYTES && self.0.write(offset, data)
    }
}

/// The controller's registers as the card's CPU reaches them.
struct LocalIo {
    svc: CardService,
    window: RingWindow,
    /// The service's reset count when the firmware took the controller.
    resets: u64,
}

impl CardIo for LocalIo {
    fn read32(&mut self, offset: u32) -> hitless_driver::Result<u32> {
        self.svc
            .read32(offset)
            .map_err(|e| hitless_driver::Error::Transport(e.to_string()))
    }
    fn write32(&mut self, offset: u32, value: u32) -> hitless_driver::Result<()> {
        self.svc
            .write32(offset, value)
            .map_err(|e| hitless_driver::Error::Transport(e.to_string()))
    }
    fn dma(&mut self) -> &mut dyn DmaWindow {
        &mut self.window
    }
    fn wait_irq(&mut self, timeout: Duration) -> hitless_driver::Result<bool> {
        // A reset (or power cut) under a running operation: its completion
        // will never come, give up now rather than at the timeout.
        if self.svc.resets() != self.resets {
            return Err(hitless_driver::Error::Transport(
                "the card was reset during the operation".into(),
            ));
        }
        // The completion ring is in local RAM: polling it costs nothing.
        std::thread::sleep(timeout.min(Duration::from_micros(50)));
        Ok(false)
    }
    fn describe(&self) -> String {
        "card-local controller".into()
    }
}

/// The memory manager's controller: the driver core on local RAM.
pub struct LocalController {
    card: Card<LocalIo>,
    local: LocalMemory,
}

impl Controller for LocalController {
    fn read32(&mut self, offset: u32) -> Result<u32, String> {
        self.card.io().read32(offset).map_err(|e| e.to_string())
    }
    fn write32(&mut self, offset: u32, value: u32) -> Result<(), String> {
        self.card
            .io()
            .write32(offset, value)
            .map_err(|e| e.to_string())
    }
    fn execute(&mut self, d: Descriptor) -> Result<Completion, String> {
        self.card.execute_raw(d).map_err(|e| e.to_string())
    }
    fn scratch(&self) -> (u64, usize) {
        (LOCAL_BASE + RING_BYTES as u64, SCRATCH_BYTES)
    }
    fn scratch_write(&mut self, offset: usize, data: &[u8]) -> Result<(), String> {
        if offset + data.len() <= SCRATCH_BYTES && self.local.write(RING_BYTES + offset, data) {
            Ok(())
        } else {
            Err(format!("scratch write {offset:#x}+{:#x}", data.len()))
        }
    }
    fn scratch_read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), String> {
        if offset + buf.len() <= SCRATCH_BYTES && self.local.read(RING_BYTES + offset, buf) {
            Ok(())
        } else {
            Err(format!("scratch read {offset:#x}+{:#x}", buf.len()))
        }
    }
}

/// Host memory through the card's DMA mappings.
struct ServiceHost(CardService);

impl HostMemory for ServiceHost {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        let v = self
            .0
            .host_read(addr, buf.len())
            .map_err(|e| e.to_string())?;
        buf.copy_from_slice(&v);
        Ok(())
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), String> {
        self.0
            .host_write(addr, data.to_vec())
            .map_err(|e| e.to_string())
    }
}

/// The handle BAR0's mailbox page goes through.
#[derive(Clone)]
pub struct FirmwareHandle {
    mailbox: Arc<Mutex<Mailbox>>,
    tx: Sender<Option<Pending>>,
}

fn lock(m: &Mutex<Mailbox>) -> MutexGuard<'_, Mailbox> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FirmwareHandle {
    pub fn read32(&self, offset: u32) -> u32 {
        lock(&self.mailbox).read32(offset)
    }
    pub fn write32(&self, offset: u32, value: u32) {
        let pending = lock(&self.mailbox).write32(offset, value);
        if let Some(p) = pending {
            let _ = self.tx.send(Some(p));
        }
    }
    /// Stop the firmware thread.
    pub fn stop(&self) {
        let _ = self.tx.send(None);
    }
}

/// The firmware thread; join it after `stop`.
pub struct FirmwareThread(JoinHandle<()>);

impl FirmwareThread {
    pub fn join(self) {
        let _ = self.0.join();
    }
}

/// Start the firmware on a running card service.
pub fn start(svc: CardService) -> (FirmwareHandle, FirmwareThread) {
    let mailbox = Arc::new(Mutex::new(Mailbox::default()));
    let (tx, rx) = mpsc::channel();
    let mb = mailbox.clone();
    let thread = std::thread::Builder::new()
        .name("hitless-firmware".into())
        .spawn(move || run(svc, mb, rx))
        .map(FirmwareThread)
        .unwrap_or_else(|e| {
            tracing::error!("firmware thread: {e}");
            FirmwareThread(std::thread::spawn(|| {}))
        });
    (FirmwareHandle { mailbox, tx }, thread)
}

struct Runner {
    svc: CardService,
    mm: Option<MemoryManager<LocalController>>,
    resets_seen: u64,
}

impl Runner {
    /// (Re)start the manager: take the controller's rings, load the tables.
    fn boot(&mut self, published: u64) -> Result<(), String> {
        self.mm = None;
        self.resets_seen = self.svc.resets();
        let local = self.svc.local().clone();
        let io = LocalIo {
            svc: self.svc.clone(),
            window: RingWindow(local.clone()),
            resets: self.resets_seen,
        };
        let card = Card::open(io, Options::default()).map_err(|e| e.to_string())?;
        let ctl = LocalController { card, local };
        let mut mm = MemoryManager::start(ctl, rand::random()).map_err(|e| e.to_string())?;
        mm.keep_challenge(published);
        self.mm = Some(mm);
        Ok(())
    }

    /// Is the manager still in charge of the controller? A reset clears
    /// the rings and the protection table; a host that opened the
    /// controller directly took the rings over.
    fn current(&mut self) -> bool {
        if self.mm.is_none() || self.svc.resets() != self.resets_seen {
            return false;
        }
        matches!(self.svc.read32(reg::DQ_BASE_HI), Ok(v) if v == (LOCAL_BASE >> 32) as u32)
    }
}

fn run(svc: CardService, mailbox: Arc<Mutex<Mailbox>>, rx: Receiver<Option<Pending>>) {
    let mut r = Runner {
        svc: svc.clone(),
        mm: None,
        resets_seen: 0,
    };
    let mut host = ServiceHost(svc);
    // The firmware takes the controller at its first request, not before:
    // a host that drives the controller directly (`--no-firmware` style)
    // and never uses the mailbox is never disturbed.
    {
        let mut mb = lock(&mailbox);
        mb.nonce = rand::random();
        mb.ready = true;
    }
    let mut failure = String::new();
    loop {
        let p = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(p)) => p,
            Ok(None) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => continue,
        };
        if !r.current() {
            let published = lock(&mailbox).nonce;
            tracing::info!("controller reset or taken over: restarting the firmware");
            // A reset during the restart itself (a power cut) makes it
            // start over; anything else is reported to the host.
            for _ in 0..3 {
                match r.boot(published) {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!("firmware restart: {e}");
                        failure = e;
                        if r.svc.resets() == r.resets_seen {
                            break;
                        }
                    }
                }
            }
        }
        let (code, len) = match r.mm.as_mut() {
            Some(mm) => mailbox::run(mm, &mut host, &p),
            None => mailbox::refuse(
                &mut host,
                &p,
                Code::Device,
                &format!("the firmware could not start: {failure}"),
            ),
        };
        let mut mb = lock(&mailbox);
        if let Some(mm) = &r.mm {
            mailbox::publish(&mut mb, mm);
        }
        mb.finish(&p, code, len);
    }
}
