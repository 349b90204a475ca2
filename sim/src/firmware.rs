//! The card's firmware running inside `hitless-sim`: a thread that owns
//! the controller's rings (in card-local RAM), serves the mailbox page of
//! BAR0 and runs the memory manager. It drives the controller through the
//! firmware's own `RingController` (the ring engine the host driver uses
//! too), over the in-process register path instead of a bus.

use crate::image::{self, CardImage};
use crate::local::{LocalMemory, LOCAL_BASE};
use crate::service::{CardService, ServiceError};
use hitless_firmware::mailbox::{self, Mailbox, Pending};
use hitless_firmware::manager::{AccessError, HostMemory, MemoryManager, SCRATCH_BYTES};
use hitless_firmware::{LocalLayout, RingController};
use hitless_hdl::contract::reg;
use hitless_proto::msg::Code;
use hitless_ring::RingIo;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod replicated;

/// Bytes of local RAM for the firmware's rings (the rest is scratch).
pub(crate) const RING_BYTES: usize = 64 << 10;

/// A reset (or power cut) under a running operation: its completion will
/// never come.
#[derive(Debug, thiserror::Error)]
#[error("the card was reset during the operation")]
struct ResetDuringOperation;

/// The controller's registers and card-local RAM as the card's CPU
/// reaches them.
struct LocalBus {
    svc: CardService,
    local: LocalMemory,
    /// The service's reset count when the firmware took the controller.
    resets: u64,
    epoch: Instant,
}

impl LocalBus {
    fn offset(&self, what: &'static str, addr: u64, len: usize) -> Result<usize, AccessError> {
        addr.checked_sub(LOCAL_BASE)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|o| {
                o.checked_add(len)
                    .is_some_and(|end| end <= self.local.len())
            })
            .ok_or(AccessError::OutOfRange {
                what,
                offset: addr,
                len,
                size: self.local.len(),
            })
    }
}

fn svc_err(what: &'static str) -> impl FnOnce(ServiceError) -> AccessError {
    move |e| AccessError::transport(what, e)
}

impl RingIo for LocalBus {
    type Error = AccessError;
    fn read32(&mut self, offset: u32) -> Result<u32, AccessError> {
        self.svc
            .read32(offset)
            .map_err(svc_err("a controller register read"))
    }
    fn write32(&mut self, offset: u32, value: u32) -> Result<(), AccessError> {
        self.svc
            .write32(offset, value)
            .map_err(svc_err("a controller register write"))
    }
    fn mem_write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        let at = self.offset("a local RAM write", addr, data.len())?;
        if self.local.write(at, data) {
            Ok(())
        } else {
            Err(AccessError::transport("a local RAM write", "refused"))
        }
    }
    fn mem_read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        let at = self.offset("a local RAM read", addr, buf.len())?;
        if self.local.read(at, buf) {
            Ok(())
        } else {
            Err(AccessError::transport("a local RAM read", "refused"))
        }
    }
    fn idle(&mut self, slice: Duration) -> Result<bool, AccessError> {
        // Give up at once rather than at the timeout when the card was
        // reset under the operation.
        if self.svc.resets() != self.resets {
            return Err(AccessError::transport("waiting", ResetDuringOperation));
        }
        // The completion ring is in local RAM: polling it costs nothing.
        std::thread::sleep(slice.min(Duration::from_micros(50)));
        Ok(false)
    }
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// The memory manager's controller.
type LocalController = RingController<LocalBus>;

/// Host memory through the card's DMA mappings.
struct ServiceHost(CardService);

impl HostMemory for ServiceHost {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        let v = self
            .0
            .host_read(addr, buf.len())
            .map_err(svc_err("a host memory read"))?;
        buf.copy_from_slice(&v);
        Ok(())
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        self.0
            .host_write(addr, data.to_vec())
            .map_err(svc_err("a host memory write"))
    }
}

/// What the firmware thread is given to do.
pub enum Input {
    /// A host request (the mailbox's doorbell).
    Request(Pending),
    /// A link frame from a peer card (replicated cards).
    Frame(u32, Vec<u8>),
    /// A link to a peer card is up.
    Connected(u32),
    /// A link to a peer card is down.
    Disconnected(u32),
    /// A remote backup reader's request ([`crate::backup`]).
    Backup(crate::backup::BackupRequest),
    Stop,
}

/// The handle BAR0's mailbox page goes through.
#[derive(Clone)]
pub struct FirmwareHandle {
    mailbox: Arc<Mutex<Mailbox>>,
    tx: Sender<Input>,
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
            let _ = self.tx.send(Input::Request(p));
        }
    }
    /// Queue a remote backup reader's request (answered on its channel;
    /// dropped unanswered when the firmware has stopped).
    pub fn backup(&self, req: crate::backup::BackupRequest) {
        let _ = self.tx.send(Input::Backup(req));
    }
    /// Stop the firmware thread.
    pub fn stop(&self) {
        let _ = self.tx.send(Input::Stop);
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
    start_with_image(svc, None)
}

/// Start the firmware with the card's image manager (`crate::image`): it
/// answers the mailbox's image requests and boots the image again at
/// every card reset.
pub fn start_with_image(
    svc: CardService,
    image: Option<CardImage>,
) -> (FirmwareHandle, FirmwareThread) {
    let mailbox = Arc::new(Mutex::new(Mailbox::default()));
    let (tx, rx) = mpsc::channel();
    let mb = mailbox.clone();
    let thread = std::thread::Builder::new()
        .name("hitless-firmware".into())
        .spawn(move || run(svc, mb, rx, image))
        .map(FirmwareThread)
        .unwrap_or_else(|e| {
            tracing::error!("firmware thread: {e}");
            FirmwareThread(std::thread::spawn(|| {}))
        });
    (FirmwareHandle { mailbox, tx }, thread)
}

/// Start the firmware of a replicated card: its links to the peer cards
/// ([`crate::pair`]) and the loop that runs the replication node, with
/// the card's image manager when it has one (its booted image decides
/// the link schema). Returns the address the links listen on.
pub fn start_replicated(
    svc: CardService,
    pair: crate::pair::PairConfig,
    image: Option<CardImage>,
) -> Result<(FirmwareHandle, FirmwareThread, std::net::SocketAddr), String> {
    let mailbox = Arc::new(Mutex::new(Mailbox::default()));
    let (tx, rx) = mpsc::channel();
    let links = crate::pair::start(
        &pair,
        crate::pair::LinkSetup::for_heartbeat(pair.heartbeat),
        tx.clone(),
    )?;
    let addr = links.local_addr();
    let mb = mailbox.clone();
    let thread = std::thread::Builder::new()
        .name("hitless-firmware".into())
        .spawn(move || replicated::run(svc, mb, rx, pair, links, image))
        .map(FirmwareThread)
        .map_err(|e| format!("firmware thread: {e}"))?;
    Ok((FirmwareHandle { mailbox, tx }, thread, addr))
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
        let bus = LocalBus {
            svc: self.svc.clone(),
            local: self.svc.local().clone(),
            resets: self.resets_seen,
            epoch: Instant::now(),
        };
        let layout = LocalLayout {
            base: LOCAL_BASE,
            ring_bytes: RING_BYTES as u64,
            scratch_bytes: SCRATCH_BYTES,
        };
        let ctl = LocalController::take_over(
            bus,
            layout,
            Duration::from_secs(30),
            Duration::from_secs(10),
        )
        .map_err(|e| hitless_firmware::manager::chain(&e))?;
        let mut mm = MemoryManager::start(ctl, rand::random())
            .map_err(|e| hitless_firmware::manager::chain(&e))?;
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

fn run(
    svc: CardService,
    mailbox: Arc<Mutex<Mailbox>>,
    rx: Receiver<Input>,
    mut image: Option<CardImage>,
) {
    let mut r = Runner {
        svc: svc.clone(),
        mm: None,
        resets_seen: 0,
    };
    // The image manager boots at every card boot: it booted when it was
    // opened (process start), and again after each reset seen here.
    let mut image_resets = r.svc.resets();
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
        let input = rx.recv_timeout(Duration::from_millis(100));
        if let Some(img) = image.as_mut() {
            let resets = r.svc.resets();
            if resets != image_resets {
                image_resets = resets;
                tracing::info!("card reset: booting the image again");
                img.boot();
            }
            img.tick();
        }
        let (p, remote) = match input {
            Ok(Input::Request(p)) => (Some(p), None),
            Ok(Input::Backup(b)) => (None, Some(b)),
            Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => {
                if let Some(img) = image.as_mut() {
                    img.shutdown();
                }
                return;
            }
            Ok(Input::Frame(..) | Input::Connected(_) | Input::Disconnected(_))
            | Err(RecvTimeoutError::Timeout) => continue,
        };
        // Image requests go to the image manager, which does not need
        // the controller (nor the memory manager's tables). Without one,
        // the memory manager answers them "no image manager".
        if let (Some(img), Some(p)) = (image.as_mut(), p.as_ref()) {
            if let Some(kind) = image::image_kind(&mut host, p) {
                let (code, len) = image::run(img, &mut host, p, kind);
                lock(&mailbox).finish(p, code, len);
                img.after_answer();
                continue;
            }
        }
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
        // A remote backup reader's request runs on the same manager,
        // between the host's (the mailbox's challenge is not touched).
        if let Some(b) = remote {
            match r.mm.as_mut() {
                Some(mm) => crate::backup::run(mm, r.svc.local(), b),
                None => b.refuse(
                    Code::Device,
                    &format!("the firmware could not start: {failure}"),
                ),
            }
            if let Some(mm) = &r.mm {
                mailbox::publish(&mut lock(&mailbox), mm);
            }
            continue;
        }
        let Some(p) = p else { continue };
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
