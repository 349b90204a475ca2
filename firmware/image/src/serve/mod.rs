//! Serving the running image's components to other modules (seed 002,
//! claims 2–4 and 33: the software management processor uploads software
//! to the processor modules; the card's other processes boot from it).
//!
//! Two standard protocols, so a module's stock boot loader or a shell
//! fetches with a standard client:
//!
//! * [`tftp`]: RFC 1350 read requests with the RFC 2347–2349 options
//!   (`blksize`, `tsize`, `timeout`), the protocol of U-Boot's `tftpboot`
//!   and of PXE; file names are component names, plus
//!   [`MANIFEST_FILE`] for the manifest;
//! * [`http`]: HTTP/1.1 `GET` and `HEAD` with byte ranges and the
//!   component's SHA-256 as its `ETag`; `/components/<name>` and
//!   `/manifest`.
//!
//! Both read through a [`ComponentSource`]: the [`ImageManager`] is one
//! (each read is its own read-of-the-current transaction, claims 57–61,
//! checked against the manifest's SHA-256), [`FixedSource`] serves fixed
//! bytes (tests, or a host serving packages). A transfer reads its file
//! once, when it starts, and serves that snapshot: an activation during a
//! transfer never mixes two images in one file.
//!
//! Both servers bind the address they are given (port 0 picks one; the
//! handle tells which), run on their own threads (one per transfer or
//! connection, bounded in number), bound every wait by a timeout, answer
//! malformed input with a protocol error, never a panic, and stop when
//! their handle is stopped or dropped.

pub mod http;
pub mod tftp;

use crate::flash::Nvs;
use crate::manifest::{Component, ComponentKind, Manifest, Sha};
use crate::txn::Access;
use crate::{ImageError, ImageManager};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The TFTP file name of the running image's manifest (HTTP: `/manifest`).
pub const MANIFEST_FILE: &str = "manifest.json";

/// Where the servers read what they serve: the running image's manifest and
/// its components.
pub trait ComponentSource: Send + Sync {
    /// The running image's manifest.
    fn manifest(&self) -> Result<Manifest, ImageError>;
    /// A component of the running image, checked against its SHA-256.
    /// [`ImageError::NoComponent`] when the image has none of that name.
    fn component(&self, name: &str) -> Result<Vec<u8>, ImageError>;
}

impl<D: Nvs + Send> ComponentSource for ImageManager<D> {
    fn manifest(&self) -> Result<Manifest, ImageError> {
        self.status()
            .booted
            .map(|b| b.manifest)
            .ok_or(ImageError::NotBooted)
    }

    fn component(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let txn = self.begin(Access::ReadCurrent)?;
        let read = self.read_component(txn, name);
        if let Err(e) = self.abort(txn) {
            tracing::warn!(error = %e, "ending a read transaction");
        }
        read
    }
}

/// Fixed files served as components: a manifest made from them (kind
/// `other`, version 0), and their bytes.
#[derive(Clone, Debug)]
pub struct FixedSource {
    manifest: Manifest,
    files: Vec<Vec<u8>>,
}

impl FixedSource {
    /// Serve `files` (name, bytes) under their names.
    pub fn new<N: Into<String>>(files: impl IntoIterator<Item = (N, Vec<u8>)>) -> Self {
        let mut components = Vec::new();
        let mut data = Vec::new();
        for (name, bytes) in files {
            components.push(Component {
                name: name.into(),
                kind: ComponentKind::Other,
                version: "0".into(),
                size: bytes.len() as u64,
                sha256: Sha::of(&bytes),
                modules: Vec::new(),
            });
            data.push(bytes);
        }
        FixedSource {
            manifest: Manifest {
                version: 0,
                expires: u64::MAX,
                components,
            },
            files: data,
        }
    }
}

impl ComponentSource for FixedSource {
    fn manifest(&self) -> Result<Manifest, ImageError> {
        Ok(self.manifest.clone())
    }

    fn component(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        self.manifest
            .components
            .iter()
            .position(|c| c.name == name)
            .and_then(|i| self.files.get(i).cloned())
            .ok_or_else(|| ImageError::NoComponent(name.to_string()))
    }
}

/// One file as a transfer serves it: a snapshot of its bytes.
#[derive(Clone, Debug)]
pub struct ServedFile {
    pub data: Vec<u8>,
    /// SHA-256 of `data` (the component's, from the manifest).
    pub sha256: Sha,
    /// The manifest (JSON) rather than a component.
    pub is_manifest: bool,
}

/// Look up what a transfer serves: the manifest, or a component checked
/// against the manifest's size and SHA-256.
pub fn lookup(src: &dyn ComponentSource, what: Served<'_>) -> Result<ServedFile, ImageError> {
    match what {
        Served::Manifest => {
            let data = src.manifest()?.to_bytes();
            Ok(ServedFile {
                sha256: Sha::of(&data),
                data,
                is_manifest: true,
            })
        }
        Served::Component(name) => {
            let data = src.component(name)?;
            let sha256 = Sha::of(&data);
            // The source checks; a wrong answer here is still never served.
            if let Some(c) = src.manifest()?.component(name) {
                if c.sha256 != sha256 {
                    return Err(ImageError::ComponentChecksum {
                        name: name.to_string(),
                    });
                }
            }
            Ok(ServedFile {
                data,
                sha256,
                is_manifest: false,
            })
        }
    }
}

/// What a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served<'a> {
    Manifest,
    Component(&'a str),
}

/// How a source's error is reported to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No such component (TFTP error 1, HTTP 404).
    NotFound,
    /// Not now: not booted, no valid image, the NVS busy (HTTP 503).
    Unavailable,
    /// The card could not read a good copy (HTTP 500).
    Internal,
}

pub(crate) fn classify(e: &ImageError) -> Failure {
    match e {
        ImageError::NoComponent(_) => Failure::NotFound,
        ImageError::NotBooted | ImageError::NeedsFreshDownload | ImageError::Busy => {
            Failure::Unavailable
        }
        _ => Failure::Internal,
    }
}

/// A running server: its address, its live transfers, and stop.
#[derive(Debug)]
pub struct ServerHandle {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    wake: Option<fn(std::net::SocketAddr)>,
}

/// What a server's threads share with its handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub stop: AtomicBool,
    /// Transfers (TFTP) or connections (HTTP) being served.
    pub active: AtomicUsize,
    /// Transfers or connections refused because the bound was reached.
    pub refused: AtomicUsize,
    /// Transfers or connections served to their end (success or error).
    pub finished: AtomicUsize,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Take a slot if fewer than `max` are active.
    pub(crate) fn try_enter(self: &Arc<Self>, max: usize) -> Option<Slot> {
        let mut n = self.active.load(Ordering::Acquire);
        loop {
            if n >= max {
                self.refused.fetch_add(1, Ordering::AcqRel);
                return None;
            }
            match self
                .active
                .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Slot(self.clone())),
                Err(m) => n = m,
            }
        }
    }
}

/// An active transfer or connection; released on drop (also on unwinding).
pub(crate) struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.finished.fetch_add(1, Ordering::AcqRel);
    }
}

/// How long [`ServerHandle::stop`] waits for live transfers to notice.
const STOP_GRACE: Duration = Duration::from_secs(3);

impl ServerHandle {
    pub(crate) fn new(
        addr: std::net::SocketAddr,
        shared: Arc<Shared>,
        thread: JoinHandle<()>,
        wake: Option<fn(std::net::SocketAddr)>,
    ) -> Self {
        ServerHandle {
            addr,
            shared,
            thread: Some(thread),
            wake,
        }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Transfers (TFTP) or connections (HTTP) being served now.
    pub fn active(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Transfers or connections refused at the concurrency bound so far.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::Acquire)
    }

    /// Transfers or connections that have ended so far.
    pub fn finished(&self) -> usize {
        self.shared.finished.load(Ordering::Acquire)
    }

    /// Stop listening, let live transfers notice (each checks between
    /// packets or requests), and wait for them a few seconds at most.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(wake) = self.wake {
            wake(self.addr);
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!(addr = %self.addr, "server thread panicked");
            }
        }
        let end = Instant::now() + STOP_GRACE;
        while self.active() > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::info!(addr = %self.addr, left = self.active(), "server stopped");
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
        }
    }
}

/// A time left until `deadline`, never zero (a zero socket timeout means
/// "block forever" to some calls and is refused by others).
pub(crate) fn left(deadline: Instant) -> Option<Duration> {
    let now = Instant::now();
    if now >= deadline {
        None
    } else {
        Some((deadline - now).max(Duration::from_millis(1)))
    }
}
