//! The whole served card inside one process, for tests and benchmarks:
//! clock thread, firmware thread and the vfio-user server on a socket in a
//! temporary directory; the client side connects with the real vfio-user
//! transport, so everything between an application and NV is exercised.

use crate::firmware::{self, FirmwareHandle, FirmwareThread};
use crate::serve::SimDevice;
use crate::service::{self, CardService, CardThread, Control, ServiceStatus};
use crate::CardTiming;
use hitless_driver::backend::vfio_user::VfioUserIo;
use hitless_vfio_user::{Limits, Server, StopHandle};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

/// A served card; dropped, it shuts down cleanly (the cold tier is flushed).
pub struct InProcessCard {
    pub socket: PathBuf,
    svc: CardService,
    stop: StopHandle,
    server: Option<JoinHandle<()>>,
    clock: Option<CardThread>,
    fw: Option<(FirmwareHandle, FirmwareThread)>,
}

impl InProcessCard {
    /// Serve a card whose cold tier lives in `state_dir`, with firmware.
    pub fn start(state_dir: &Path) -> Result<Self, String> {
        let (svc, clock) =
            service::start(state_dir, CardTiming::default(), Duration::from_secs(20))
                .map_err(|e| e.to_string())?;
        let socket = state_dir.join("card.sock");
        let server = Server::bind(&socket, Limits::default()).map_err(|e| e.to_string())?;
        let stop = server.stop_handle();
        let (handle, fw_thread) = firmware::start(svc.clone());
        let mut device = SimDevice::with_firmware(svc.clone(), handle.clone());
        let server = std::thread::Builder::new()
            .name("hitless-inproc-server".into())
            .spawn(move || {
                if let Err(e) = server.run(&mut device) {
                    tracing::warn!("in-process server: {e}");
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Self {
            socket,
            svc,
            stop,
            server: Some(server),
            clock: Some(clock),
            fw: Some((handle, fw_thread)),
        })
    }

    /// A client connection with an 8 MiB DMA window.
    pub fn connect(&self) -> Result<VfioUserIo, String> {
        VfioUserIo::connect(&self.socket, 8 << 20, Duration::from_secs(10))
            .map_err(|e| e.to_string())
    }

    /// Fault injection and maintenance (as the control socket).
    pub fn control(&self, c: Control) -> Result<ServiceStatus, String> {
        self.svc.control(c).map_err(|e| e.to_string())
    }

    /// The card service (register access without the socket).
    pub fn service(&self) -> &CardService {
        &self.svc
    }
}

impl Drop for InProcessCard {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
        if let Some((h, t)) = self.fw.take() {
            h.stop();
            t.join();
        }
        self.svc.shutdown();
        if let Some(c) = self.clock.take() {
            let _ = c.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
