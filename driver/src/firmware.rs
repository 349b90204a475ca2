//! The firmware client: what a host application uses on a card whose
//! firmware runs the memory manager (records, reboot stages, warm/cold
//! tiers, the append log, credentials). Requests go through the mailbox
//! page of BAR0; set data moves by DMA between the application's buffer
//! and NV, checked by the controller against the CRC computed here.
//!
//! ```no_run
//! use hitless_driver::firmware::{Client, OpenFlags};
//! # fn demo(io: Box<dyn hitless_driver::CardIo>) -> hitless_driver::Result<()> {
//! let mut fw = Client::open(io, std::time::Duration::from_secs(10))?;
//! let (session, secret) = fw.open_app(7, OpenFlags::all(), None)?;
//! // Keep `secret`: later opens of application 7 (and its backup) need it.
//! fw.store(&session, 0, 0, 1, true, b"state for reboot stage 1")?;
//! # let _ = secret; Ok(()) }
//! ```

use crate::dma::{DmaAllocator, DmaBuf};
use crate::error::{Error, Result};
use crate::io::CardIo;
use hitless_hdl::contract::{
    crc32c, mb_state, mbox, FIRMWARE_ID, MAX_MESSAGE, MAX_TRANSFER, MESSAGE_VERSION,
};
use hitless_proto::auth::{self, SECRET_BYTES};
use hitless_proto::message::Request;
pub use hitless_proto::msg::HeapVersion;
use hitless_proto::msg::{flags, Code, LogInfo, SetInfo, HEAP_PAGE_BYTES, HEAP_REQUEST_PAGES};
use hitless_proto::tlv::Message;
use hitless_proto::Response;
use std::time::{Duration, Instant};

pub use hitless_proto::image::{AreaReport, ImageReport, InstallProgress, Installed};
pub use hitless_proto::{StatusReport as FwStatus, TierReport as FwTier};

/// Package bytes one IMAGE_INSTALL request moves (the card takes up to
/// 4 MiB; 1 MiB keeps progress reports frequent).
pub const IMAGE_CHUNK: u64 = 1 << 20;

/// An application's secret (its credentials; see `hitless_proto::auth`).
pub type Secret = [u8; SECRET_BYTES];

/// An open session: the protection entry the card allocated and the
/// credentials that sign its requests.
#[derive(Clone)]
pub struct Session {
    pub app: u32,
    pub handle: u32,
    /// The controller key of the session's protection entry.
    pub key: u32,
    secret: Secret,
}

impl Session {
    /// A session of `hitlessd`'s (the daemon signs for it; the handle is
    /// the connection's, not the card's).
    pub(crate) fn through_daemon(app: u32, handle: u32, key: u32) -> Self {
        Self {
            app,
            handle,
            key,
            secret: [0; SECRET_BYTES],
        }
    }

    /// A session the caller signs itself (the backup reader's).
    pub(crate) fn with_secret(app: u32, handle: u32, key: u32, secret: Secret) -> Self {
        Self {
            app,
            handle,
            key,
            secret,
        }
    }

    /// The credentials that sign the session's requests.
    pub(crate) fn secret(&self) -> &Secret {
        &self.secret
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Session")
            .field("app", &self.app)
            .field("handle", &self.handle)
            .field("key", &format_args!("{:#010x}", self.key))
            .finish()
    }
}

/// What a session may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFlags(pub u32);

impl OpenFlags {
    pub fn all() -> Self {
        Self(flags::READ | flags::WRITE | flags::LOG)
    }
    pub fn read_only() -> Self {
        Self(flags::READ)
    }
}

/// The unread part of a log, as LOG_READ returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRead {
    pub records: Vec<(LogInfo, Vec<u8>)>,
    pub head: u32,
    pub tail: u32,
}

pub(crate) fn tier_flag(cold: bool) -> u32 {
    if cold {
        flags::COLD
    } else {
        0
    }
}

/// The largest set the API takes: the card keeps sets in its data area
/// (512 MiB per tier on the simulated card), the host moves a set through
/// one DMA buffer of this size (a transport with a smaller DMA window
/// refuses smaller sets, saying so).
pub const MAX_SET_BYTES: u32 = 48 << 20;

/// A set's size as the API takes it (the same check on every path).
pub(crate) fn check_set_size(len: usize) -> Result<()> {
    if len > MAX_SET_BYTES as usize {
        return Err(Error::InvalidArgument(format!(
            "a set is at most {MAX_SET_BYTES} bytes; split {len} bytes into objects"
        )));
    }
    Ok(())
}

/// A delivered set's bytes, checked against the CRC its record carries.
pub(crate) fn checked_set(info: &SetInfo, bytes: Vec<u8>) -> Result<(SetInfo, Vec<u8>)> {
    if crc32c(&bytes) != info.crc {
        return Err(Error::BadCompletion(format!(
            "set {}/{} fails its CRC",
            info.app, info.object
        )));
    }
    Ok((*info, bytes))
}

/// Every page HEAP_CHANGED names, asking from page `first` on until an
/// answer is not full (the same on the card's and the daemon's path).
pub(crate) fn changed_pages(mut ask: impl FnMut(u32) -> Result<Response>) -> Result<Vec<u32>> {
    let mut out: Vec<u32> = Vec::new();
    let mut first = 0u32;
    loop {
        let pages = match ask(first)? {
            Response::HeapChanged { pages } => pages,
            other => return Err(unexpected(&other)),
        };
        let full = pages.len() == hitless_proto::msg::HEAP_CHANGED_MAX;
        let last = pages.last().copied();
        out.extend(pages);
        match (full, last) {
            (true, Some(l)) if l < u32::MAX => first = l + 1,
            _ => return Ok(out),
        }
    }
}

fn unexpected(r: &Response) -> Error {
    Error::BadCompletion(format!("unexpected firmware response {r:?}"))
}

/// A card's firmware, over any transport.
pub struct Client<T: CardIo> {
    io: T,
    alloc: DmaAllocator,
    req: DmaBuf,
    resp: DmaBuf,
    data: DmaBuf,
    seq: u32,
    timeout: Duration,
}

impl<T: CardIo> Client<T> {
    /// Connect to the firmware: check it is there and speaks this message
    /// format, wait (at most `timeout`) until it has loaded its tables.
    pub fn open(mut io: T, timeout: Duration) -> Result<Self> {
        let id = io.read32(mbox::MB_ID)?;
        if id != FIRMWARE_ID {
            return Err(Error::NoFirmware { id });
        }
        let version = io.read32(mbox::MB_VERSION)?;
        if version >> 16 != MESSAGE_VERSION >> 16 {
            return Err(Error::Version {
                found: version,
                expected: MESSAGE_VERSION,
            });
        }
        let start = Instant::now();
        while io.read32(mbox::MB_STATE)? & mb_state::READY == 0 {
            if start.elapsed() > timeout {
                return Err(Error::Timeout {
                    what: "the firmware to load its tables",
                    after: timeout,
                });
            }
            io.wait_irq(Duration::from_millis(5))?;
        }
        // A client that died (kill -9) with a request running leaves the
        // mailbox busy: its answer would carry the sequence number this
        // client's first doorbell uses (ignored while busy), and this
        // client would take that answer for its own. Start once it is in.
        while io.read32(mbox::MB_STATE)? & mb_state::BUSY != 0 {
            if start.elapsed() > timeout {
                return Err(Error::Timeout {
                    what: "an earlier client's request to finish",
                    after: timeout,
                });
            }
            io.wait_irq(Duration::from_millis(1))?;
        }
        let window = io.dma().len() as u64;
        let mut alloc = DmaAllocator::new(window);
        let req = alloc.alloc(MAX_MESSAGE as u64, 64)?;
        let resp = alloc.alloc(MAX_MESSAGE as u64, 64)?;
        // The data buffer: a whole stage's sets of one application (both
        // tiers' regions) when the window allows, at least one set.
        let room = alloc.free_bytes().saturating_sub(4096);
        let want = (MAX_SET_BYTES as u64).min(room);
        if want < MAX_TRANSFER as u64 {
            return Err(Error::DmaExhausted {
                wanted: MAX_TRANSFER as u64,
                free: room,
            });
        }
        let data = alloc.alloc(want, 64)?;
        let seq = io.read32(mbox::MB_DONE)?;
        Ok(Self {
            io,
            alloc,
            req,
            resp,
            data,
            seq,
            timeout,
        })
    }

    /// The transport.
    pub fn io(&mut self) -> &mut T {
        &mut self.io
    }

    fn iova(&mut self, b: DmaBuf) -> u64 {
        self.io.dma().iova() + b.offset
    }

    fn put(&mut self, b: DmaBuf, at: usize, data: &[u8]) -> Result<()> {
        if at + data.len() > b.len as usize || !self.io.dma().write(b.offset as usize + at, data) {
            return Err(Error::InvalidArgument(format!(
                "{} bytes do not fit a {}-byte DMA buffer",
                data.len(),
                b.len
            )));
        }
        Ok(())
    }

    fn get(&mut self, b: DmaBuf, at: usize, len: usize) -> Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        if at + len > b.len as usize || !self.io.dma().read(b.offset as usize + at, &mut out) {
            return Err(Error::BadCompletion(format!(
                "firmware answered {len} bytes at {at} of a {}-byte buffer",
                b.len
            )));
        }
        Ok(out)
    }

    /// Run one request; signed with `secret` (with the session's handle)
    /// when given. A result other than OK is `Error::Firmware`.
    fn call(&mut self, r: &Request, session: Option<(u32, &Secret)>) -> Result<Response> {
        let request_kind = r.kind();
        let m = r.encode();
        let bytes = match session {
            Some((handle, s)) => {
                let m = if Request::needs_session(request_kind) {
                    m.u32(hitless_proto::msg::tag::HANDLE, handle)
                } else {
                    m
                };
                let lo = self.io.read32(mbox::MB_NONCE_LO)? as u64;
                let hi = self.io.read32(mbox::MB_NONCE_HI)? as u64;
                auth::sign(m.finish(), s, lo | hi << 32)
            }
            None => m.finish(),
        };
        if bytes.len() > MAX_MESSAGE as usize {
            return Err(Error::InvalidArgument(format!(
                "request of {} bytes (at most {MAX_MESSAGE})",
                bytes.len()
            )));
        }
        let (code, len) = self.exchange(&bytes)?;
        let resp = self.resp;
        if len == 0 {
            // No response message (the request was unreadable, or the
            // response did not fit): the code says why.
            return Err(Error::Firmware {
                code,
                detail: String::new(),
                needed: None,
            });
        }
        if len > resp.len as usize {
            return Err(Error::BadCompletion(format!("response of {len} bytes")));
        }
        let raw = self.get(resp, 0, len)?;
        let m = Message::decode(&raw).map_err(hitless_proto::message::ResponseError::from)?;
        match Response::decode(request_kind, &m)? {
            Ok(r) => Ok(r),
            Err(f) => Err(f.into()),
        }
    }

    fn signed(&mut self, s: &Session, r: &Request) -> Result<Response> {
        self.call(r, Some((s.handle, &s.secret)))
    }

    fn sets(r: Response) -> Result<(Vec<SetInfo>, Option<u32>)> {
        match r {
            Response::Sets { sets, data_len } => Ok((sets, data_len)),
            other => Err(unexpected(&other)),
        }
    }

    fn done(r: Response) -> Result<()> {
        match r {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    // ---- the heap store (issue 20; docs/heap.md) -------------------

    fn heap_version(r: Response) -> Result<HeapVersion> {
        match r {
            Response::HeapVersion(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    fn heap_versions_of(r: Response) -> Result<Vec<HeapVersion>> {
        match r {
            Response::HeapVersions { versions } => Ok(versions),
            other => Err(unexpected(&other)),
        }
    }

    /// Open heap `heap` of the session's application: created with
    /// `heap_pages` pages of 4096 bytes and `keep` versions (0: the
    /// card's default, 4) in the cold or warm tier if it does not exist;
    /// an existing heap must have `heap_pages` (0: any). Its versions.
    pub fn heap_open(
        &mut self,
        s: &Session,
        heap: u32,
        heap_pages: u32,
        keep: u32,
        cold: bool,
    ) -> Result<Vec<HeapVersion>> {
        let r = Request::HeapOpen {
            heap,
            heap_pages,
            keep,
            flags: tier_flag(cold),
        };
        Self::heap_versions_of(self.signed(s, &r)?)
    }

    /// Drop the heap's staged pages and close it.
    pub fn heap_close(&mut self, s: &Session, heap: u32) -> Result<()> {
        Self::done(self.signed(s, &Request::HeapClose { heap })?)
    }

    /// Write pages (number, 4096 bytes each) to the card's free space:
    /// staged, in no version until [`Client::heap_commit`]. Sent in
    /// requests of at most 256 pages (or the DMA window); returns the
    /// bytes that crossed the DMA.
    pub fn heap_stage(&mut self, s: &Session, heap: u32, pages: &[(u32, &[u8])]) -> Result<u64> {
        let d = self.data;
        let per = HEAP_REQUEST_PAGES.min(d.len as usize / HEAP_PAGE_BYTES);
        if per == 0 {
            return Err(Error::InvalidArgument(
                "the DMA window holds no heap page".into(),
            ));
        }
        let mut sent = 0u64;
        for chunk in pages.chunks(per) {
            let mut numbers = Vec::with_capacity(chunk.len());
            let mut crcs = Vec::with_capacity(chunk.len());
            for (i, (p, data)) in chunk.iter().enumerate() {
                if data.len() != HEAP_PAGE_BYTES {
                    return Err(Error::InvalidArgument(format!(
                        "page {p} has {} bytes, not {HEAP_PAGE_BYTES}",
                        data.len()
                    )));
                }
                self.put(d, i * HEAP_PAGE_BYTES, data)?;
                numbers.push(*p);
                crcs.push(crc32c(data));
            }
            let r = Request::HeapStage {
                heap,
                pages: numbers,
                crcs,
                addr: self.iova(d),
            };
            Self::done(self.signed(s, &r)?)?;
            sent += (chunk.len() * HEAP_PAGE_BYTES) as u64;
        }
        Ok(sent)
    }

    /// Commit the staged pages and the application's non-heap `state` as
    /// a new version (all or nothing; the oldest beyond K goes with it).
    pub fn heap_commit(&mut self, s: &Session, heap: u32, state: &[u8]) -> Result<HeapVersion> {
        let d = self.data;
        if state.len() as u64 > d.len {
            return Err(Error::InvalidArgument(format!(
                "{} bytes of state exceed the {}-byte DMA window",
                state.len(),
                d.len
            )));
        }
        self.put(d, 0, state)?;
        let r = Request::HeapCommit {
            heap,
            addr: self.iova(d),
            len: state.len() as u32,
            crc: crc32c(state),
        };
        Self::heap_version(self.signed(s, &r)?)
    }

    /// Drop the staged pages.
    pub fn heap_abort(&mut self, s: &Session, heap: u32) -> Result<()> {
        Self::done(self.signed(s, &Request::HeapAbort { heap })?)
    }

    /// Read pages: the staged copy if any, else the base version's;
    /// `None` for a page never written.
    pub fn heap_read(
        &mut self,
        s: &Session,
        heap: u32,
        pages: &[u32],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let (addr, cap) = self.data_buffer();
        let per = HEAP_REQUEST_PAGES
            .min(cap as usize / HEAP_PAGE_BYTES)
            .max(1);
        let mut out = Vec::with_capacity(pages.len());
        for chunk in pages.chunks(per) {
            let r = Request::HeapRead {
                heap,
                pages: chunk.to_vec(),
                addr,
                cap,
            };
            let absent = match self.signed(s, &r)? {
                Response::HeapPages { absent } => absent,
                other => return Err(unexpected(&other)),
            };
            let d = self.data;
            for (i, p) in chunk.iter().enumerate() {
                if absent.contains(p) {
                    out.push(None);
                } else {
                    out.push(Some(self.get(d, i * HEAP_PAGE_BYTES, HEAP_PAGE_BYTES)?));
                }
            }
        }
        Ok(out)
    }

    /// The heap's committed versions, oldest first.
    pub fn heap_versions(&mut self, s: &Session, heap: u32) -> Result<Vec<HeapVersion>> {
        Self::heap_versions_of(self.signed(s, &Request::HeapVersions { heap })?)
    }

    /// Make `version` the base of reads and the next commit (staged pages
    /// are dropped); its application state.
    pub fn heap_checkout(
        &mut self,
        s: &Session,
        heap: u32,
        version: u64,
    ) -> Result<(HeapVersion, Vec<u8>)> {
        let (addr, cap) = self.data_buffer();
        let r = Request::HeapCheckout {
            heap,
            version,
            addr,
            cap,
        };
        let v = Self::heap_version(self.signed(s, &r)?)?;
        let d = self.data;
        let state = self.get(d, 0, v.state_len as usize)?;
        if crc32c(&state) != v.state_crc {
            return Err(Error::BadCompletion(
                "the heap version's state failed its CRC on the way".into(),
            ));
        }
        Ok((v, state))
    }

    /// The pages of the base version that differ from version `since`
    /// (0: every written page), ascending.
    pub fn heap_changed(&mut self, s: &Session, heap: u32, since: u64) -> Result<Vec<u32>> {
        changed_pages(|first| self.signed(s, &Request::HeapChanged { heap, since, first }))
    }

    /// Delete every version of the heap (one commit).
    pub fn heap_delete(&mut self, s: &Session, heap: u32) -> Result<()> {
        Self::done(self.signed(s, &Request::HeapDelete { heap })?)
    }

    /// Firmware and tier state (no credentials needed).
    pub fn status(&mut self) -> Result<FwStatus> {
        match self.call(&Request::Status, None)? {
            Response::Status(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    /// Open a session for `app`. The first open of an application returns
    /// its new secret (keep it: it is shown once); later opens must present
    /// it.
    pub fn open_app(
        &mut self,
        app: u32,
        what: OpenFlags,
        secret: Option<&Secret>,
    ) -> Result<(Session, Option<Secret>)> {
        let r = Request::Open { app, flags: what.0 };
        let r = self.call(&r, secret.map(|s| (0, s)))?;
        let Response::Opened {
            handle,
            key,
            secret: fresh,
            ..
        } = r
        else {
            return Err(unexpected(&r));
        };
        let new_secret = match fresh {
            None => None,
            Some(b) if b.len() == SECRET_BYTES => {
                let mut s = [0u8; SECRET_BYTES];
                s.copy_from_slice(&b);
                Some(s)
            }
            Some(b) => return Err(Error::BadCompletion(format!("secret of {} bytes", b.len()))),
        };
        let secret = match (new_secret, secret) {
            (Some(s), _) => s,
            (None, Some(s)) => *s,
            (None, None) => {
                return Err(Error::BadCompletion(
                    "the card opened an unauthenticated session without a secret".into(),
                ))
            }
        };
        Ok((
            Session {
                app,
                handle,
                key,
                secret,
            },
            new_secret,
        ))
    }

    /// Close a session (frees its protection entry).
    pub fn close(&mut self, s: &Session) -> Result<()> {
        Self::done(self.signed(s, &Request::Close)?)
    }

    /// Store `data` as the set (app, object), delivered at reboot stage
    /// `stage`; `cold` makes it survive a power cycle.
    pub fn store(
        &mut self,
        s: &Session,
        object: u32,
        endpoint: u32,
        stage: u32,
        cold: bool,
        data: &[u8],
    ) -> Result<()> {
        check_set_size(data.len())?;
        let d = self.data;
        if data.len() as u64 > d.len {
            return Err(Error::InvalidArgument(format!(
                "a set is at most {} bytes through this transport's DMA window; split {} bytes \
                 into objects",
                d.len,
                data.len()
            )));
        }
        self.put(d, 0, data)?;
        let r = Request::Store {
            object,
            endpoint,
            stage,
            flags: tier_flag(cold),
            addr: self.iova(d),
            len: data.len() as u32,
            crc: crc32c(data),
        };
        match self.signed(s, &r)? {
            Response::Stored { .. } => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Delete the set (app, object) from whichever tier holds it.
    pub fn delete(&mut self, s: &Session, object: u32) -> Result<()> {
        self.delete_from(s, object, 0)
    }

    /// Delete the set (app, object) from the card `endpoint` names (0:
    /// this card; a replicated card's peer node: deleted there over the
    /// link, answered when the peer's delete is durable).
    pub fn delete_from(&mut self, s: &Session, object: u32, endpoint: u32) -> Result<()> {
        Self::done(self.signed(s, &Request::Delete { object, endpoint })?)
    }

    /// The data buffer's address and capacity.
    fn data_buffer(&mut self) -> (u64, u32) {
        let d = self.data;
        (self.iova(d), d.len as u32)
    }

    /// One set's bytes.
    pub fn restore(&mut self, s: &Session, object: u32) -> Result<(SetInfo, Vec<u8>)> {
        self.restore_from(s, object, 0)
    }

    /// One set's bytes from the card `endpoint` names (0: this card; a
    /// replicated card's peer node: fetched from the peer over the link).
    pub fn restore_from(
        &mut self,
        s: &Session,
        object: u32,
        endpoint: u32,
    ) -> Result<(SetInfo, Vec<u8>)> {
        let (addr, cap) = self.data_buffer();
        let r = self.signed(
            s,
            &Request::Restore {
                object,
                endpoint,
                addr,
                cap,
            },
        )?;
        let info = *Self::sets(r)?
            .0
            .first()
            .ok_or_else(|| Error::BadCompletion("RESTORE without the set's record".into()))?;
        let d = self.data;
        let bytes = self.get(d, 0, info.len as usize)?;
        checked_set(&info, bytes)
    }

    /// The session's sets (metadata).
    pub fn list(&mut self, s: &Session) -> Result<Vec<SetInfo>> {
        self.list_from(s, 0)
    }

    /// The session's sets on the card `endpoint` names (0: this card; a
    /// replicated card's peer node: the sets it holds for this
    /// application).
    pub fn list_from(&mut self, s: &Session, endpoint: u32) -> Result<Vec<SetInfo>> {
        Ok(Self::sets(self.signed(s, &Request::List { endpoint })?)?.0)
    }

    /// Announce reboot stage `stage`; returns the sets (of every
    /// application) the card holds for it.
    pub fn announce(&mut self, stage: u32) -> Result<Vec<SetInfo>> {
        Ok(Self::sets(self.call(&Request::Stage { stage }, None)?)?.0)
    }

    /// The session's sets for an announced reboot stage, with their bytes.
    pub fn fetch(&mut self, s: &Session, stage: u32) -> Result<Vec<(SetInfo, Vec<u8>)>> {
        let (addr, cap) = self.data_buffer();
        let r = self.signed(s, &Request::Fetch { stage, addr, cap })?;
        let d = self.data;
        let mut out = Vec::new();
        for info in Self::sets(r)?.0 {
            let bytes = self.get(d, info.data_offset as usize, info.len as usize)?;
            out.push(checked_set(&info, bytes)?);
        }
        Ok(out)
    }

    /// Append a checkpoint set to a tier's log; with `overwrite`, it
    /// replaces the application's earlier records. Returns its log offset.
    pub fn log_append(
        &mut self,
        s: &Session,
        object: u32,
        cold: bool,
        overwrite: bool,
        data: &[u8],
    ) -> Result<u32> {
        let d = self.data;
        self.put(d, 0, data)?;
        let r = Request::LogAppend {
            object,
            flags: tier_flag(cold) | if overwrite { flags::OVERWRITE } else { 0 },
            addr: self.iova(d),
            len: data.len() as u32,
        };
        match self.signed(s, &r)? {
            Response::Appended { offset } => Ok(offset),
            other => Err(unexpected(&other)),
        }
    }

    /// Every unread record of the application in a tier's log, at once.
    pub fn log_read(&mut self, s: &Session, cold: bool) -> Result<LogRead> {
        let (addr, cap) = self.data_buffer();
        let r = Request::LogRead {
            flags: tier_flag(cold),
            addr,
            cap,
        };
        let Response::Log {
            records: infos,
            head,
            tail,
        } = self.signed(s, &r)?
        else {
            return Err(Error::BadCompletion(
                "LOG_READ answered without records".into(),
            ));
        };
        let d = self.data;
        let mut records = Vec::with_capacity(infos.len());
        for li in infos {
            let bytes = self.get(d, li.data_offset as usize, li.len as usize)?;
            records.push((li, bytes));
        }
        Ok(LogRead {
            records,
            head,
            tail,
        })
    }

    /// Clear the log up to `to` (a record offset or the head from a
    /// LOG_READ): the reader has consumed it.
    pub fn log_trim(&mut self, s: &Session, cold: bool, to: u32) -> Result<()> {
        self.log_trim_to(s, cold, Some(to)).map(|_| ())
    }

    /// Clear the log up to `to` (`None`: up to its head); returns the log's
    /// head and new tail.
    pub fn log_trim_to(&mut self, s: &Session, cold: bool, to: Option<u32>) -> Result<(u32, u32)> {
        let r = Request::LogTrim {
            flags: tier_flag(cold),
            to,
        };
        match self.signed(s, &r)? {
            Response::Log { head, tail, .. } => Ok((head, tail)),
            other => Err(unexpected(&other)),
        }
    }

    /// Erase a tier's record table (keeping the firmware's own records).
    pub fn format(&mut self, s: &Session, cold: bool) -> Result<()> {
        Self::done(self.signed(
            s,
            &Request::Format {
                flags: tier_flag(cold),
            },
        )?)
    }

    fn image(r: Response) -> Result<ImageReport> {
        match r {
            Response::Image(i) => Ok(*i),
            other => Err(unexpected(&other)),
        }
    }

    /// The card's software images: running version, trial state, both
    /// NVS devices' health (seed 002; no credentials needed).
    pub fn image_status(&mut self) -> Result<ImageReport> {
        Self::image(self.call(&Request::ImageStatus, None)?)
    }

    /// Stream a signed package of `total` bytes from `package` to the
    /// card in chunks through the DMA data buffer; the card verifies it
    /// whole before it writes anything, then installs it in the alternate
    /// context area of both NVS devices. `force` installs a version lower
    /// than the running one. `progress(sent, total)` after each chunk.
    pub fn image_install(
        &mut self,
        package: &mut dyn std::io::Read,
        total: u64,
        force: bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Installed> {
        if total == 0 {
            return Err(Error::InvalidArgument("an empty package".into()));
        }
        let d = self.data;
        let chunk = IMAGE_CHUNK.min(d.len);
        let mut buf = vec![0u8; chunk as usize];
        let mut offset = 0u64;
        while offset < total {
            let n = chunk.min(total - offset) as usize;
            package
                .read_exact(&mut buf[..n])
                .map_err(|e| Error::InvalidArgument(format!("reading the package: {e}")))?;
            self.put(d, 0, &buf[..n])?;
            let r = Request::ImageInstall {
                total,
                offset,
                addr: self.iova(d),
                len: n as u32,
                force,
            };
            let p = match self.call(&r, None)? {
                Response::ImageInstall(p) => *p,
                other => return Err(unexpected(&other)),
            };
            offset += n as u64;
            if p.received != offset {
                return Err(Error::BadCompletion(format!(
                    "the card holds {} package bytes, {offset} were sent",
                    p.received
                )));
            }
            progress(offset, total);
            if let Some(i) = p.installed {
                return Ok(i);
            }
        }
        Err(Error::BadCompletion(
            "the card took the whole package but reported no install".into(),
        ))
    }

    /// Activate the installed image: the card's next boot is a trial boot.
    pub fn image_activate(&mut self) -> Result<ImageReport> {
        Self::image(self.call(&Request::ImageActivate, None)?)
    }

    /// Mark the trial image good: it becomes current.
    pub fn image_mark_good(&mut self) -> Result<ImageReport> {
        Self::image(self.call(&Request::ImageMarkGood, None)?)
    }

    /// Abandon a trial, or make the previous image current again.
    pub fn image_rollback(&mut self) -> Result<ImageReport> {
        Self::image(self.call(&Request::ImageRollback, None)?)
    }

    /// Reboot the card: it answers (the image state before the reboot),
    /// then goes down and boots its image again (an activated image on
    /// trial). This client's connection ends with it: reconnect.
    pub fn image_reboot(&mut self) -> Result<ImageReport> {
        Self::image(self.call(&Request::ImageReboot, None)?)
    }

    /// Make the card serve its running image's components over HTTP and
    /// TFTP on these addresses (`host:port`, port 0: any); neither: stop.
    pub fn image_serve(
        &mut self,
        http: Option<String>,
        tftp: Option<String>,
    ) -> Result<ImageReport> {
        Self::image(self.call(&Request::ImageServe { http, tftp }, None)?)
    }

    /// Send raw request bytes (tests of the firmware's input checking);
    /// returns the result code and the response bytes.
    pub fn raw(&mut self, bytes: &[u8]) -> Result<(Code, Vec<u8>)> {
        let (code, len) = self.exchange(bytes)?;
        let resp = self.resp;
        let len = len.min(resp.len as usize);
        Ok((code, self.get(resp, 0, len)?))
    }

    /// Put `bytes` in the request buffer (as much as fits; the length
    /// register says all of it, so an oversized request is the firmware's
    /// to refuse), ring the doorbell, wait for the answer. Returns the
    /// result code and the response length.
    fn exchange(&mut self, bytes: &[u8]) -> Result<(Code, usize)> {
        let (req, resp) = (self.req, self.resp);
        let n = bytes.len().min(req.len as usize);
        self.put(req, 0, &bytes[..n])?;
        let (ra, pa) = (self.iova(req), self.iova(resp));
        let io = &mut self.io;
        io.write32(mbox::MB_REQ_LO, ra as u32)?;
        io.write32(mbox::MB_REQ_HI, (ra >> 32) as u32)?;
        io.write32(mbox::MB_REQ_LEN, bytes.len() as u32)?;
        io.write32(mbox::MB_RESP_LO, pa as u32)?;
        io.write32(mbox::MB_RESP_HI, (pa >> 32) as u32)?;
        io.write32(mbox::MB_RESP_CAP, resp.len as u32)?;
        self.seq = self.seq.wrapping_add(1);
        io.write32(mbox::MB_DOORBELL, self.seq)?;
        let start = Instant::now();
        let mut nap = Duration::from_micros(50);
        while io.read32(mbox::MB_DONE)? != self.seq {
            if start.elapsed() > self.timeout {
                return Err(Error::Timeout {
                    what: "the firmware's answer",
                    after: self.timeout,
                });
            }
            io.wait_irq(nap)?;
            nap = (nap * 2).min(Duration::from_millis(1));
        }
        let result = io.read32(mbox::MB_RESULT)?;
        let len = io.read32(mbox::MB_RESP_LEN)? as usize;
        let code = Code::from_u32(result)
            .ok_or_else(|| Error::BadCompletion(format!("firmware result {result}")))?;
        Ok((code, len))
    }

    /// Replicated card: hand the master role to node `to` (`None`: the
    /// only slave in sync), hitless: the card stops taking stores, waits
    /// until `to` has acknowledged every bracket, then hands it the role
    /// (claim 44). Ask the master's card; any other refuses with
    /// [`Error::NotMaster`].
    pub fn switchover(&mut self, to: Option<u32>) -> Result<Switched> {
        switched(self.call(&Request::Switchover { to }, None)?)
    }

    /// Replicated card: the operator's promotion of this card to master
    /// in a new epoch, which fences the old master (its answer names the
    /// epoch). The card refuses (`Invalid`, with the reason) a state cut
    /// while applying a bracket, and a state whose power cycle lost warm
    /// sets unless `accept_lost_warm`; with an arbiter, the arbiter
    /// decides (another master holding the lease: `NotMaster` naming it).
    pub fn promote(&mut self, accept_lost_warm: bool) -> Result<Promoted> {
        promoted(self.call(&Request::Promote { accept_lost_warm }, None)?)
    }

    /// Requests refused for bad credentials (the `MB_AUTH_FAILS` register).
    pub fn auth_failures(&mut self) -> Result<u32> {
        self.io.read32(mbox::MB_AUTH_FAILS)
    }

    /// Free bytes left in the DMA window after the client's buffers.
    pub fn free_dma(&self) -> u64 {
        self.alloc.free_bytes()
    }
}

/// A finished switchover (`Client::switchover`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switched {
    /// The node that holds the master role now.
    pub to: u32,
    /// The old master's epoch.
    pub from_epoch: u64,
    /// The new master's epoch, once the old master heard it (`None`: the
    /// role was handed over but the new epoch not heard before the answer).
    pub epoch: Option<u64>,
    /// The last bracket handed over (every one up to it acknowledged by
    /// `to`).
    pub bracket: u64,
}

pub(crate) fn switched(r: Response) -> Result<Switched> {
    match r {
        Response::Switched {
            to,
            from_epoch,
            epoch,
            bracket,
        } => Ok(Switched {
            to,
            from_epoch,
            epoch,
            bracket,
        }),
        other => Err(unexpected(&other)),
    }
}

/// A finished promotion (`Client::promote`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promoted {
    /// The card's node id.
    pub node: u32,
    /// The epoch it is master in.
    pub epoch: u64,
    /// The newest epoch it knew before (equal: it was master already).
    pub from_epoch: u64,
    /// What the operator accepted to lose (`accept_lost_warm`).
    pub lost_warm: Option<hitless_proto::LostWarm>,
}

pub(crate) fn promoted(r: Response) -> Result<Promoted> {
    match r {
        Response::Promoted {
            node,
            epoch,
            from_epoch,
            lost_warm,
        } => Ok(Promoted {
            node,
            epoch,
            from_epoch,
            lost_warm,
        }),
        other => Err(unexpected(&other)),
    }
}

/// The firmware API a host application uses, whichever way it reaches the
/// card: directly ([`Client`] over a [`CardIo`] transport) or through the
/// host daemon (`crate::daemon::DaemonClient`, which keeps the secrets:
/// its `open_app` ignores `secret` and never returns a new one). The
/// operations and their errors are the same on both paths.
pub trait Firmware {
    /// Firmware and tier state.
    fn status(&mut self) -> Result<FwStatus>;
    /// Open a session for `app` (see [`Client::open_app`]).
    fn open_app(
        &mut self,
        app: u32,
        what: OpenFlags,
        secret: Option<&Secret>,
    ) -> Result<(Session, Option<Secret>)>;
    /// Close a session.
    fn close(&mut self, s: &Session) -> Result<()>;
    /// Store `data` as the set (app, object) (see [`Client::store`]).
    fn store(
        &mut self,
        s: &Session,
        object: u32,
        endpoint: u32,
        stage: u32,
        cold: bool,
        data: &[u8],
    ) -> Result<()>;
    /// Delete a set.
    fn delete(&mut self, s: &Session, object: u32) -> Result<()>;
    /// Delete a set from the card `endpoint` names (0: this card; see
    /// [`Firmware::restore_from`] for which transports reach a peer).
    fn delete_from(&mut self, s: &Session, object: u32, endpoint: u32) -> Result<()> {
        if endpoint == 0 {
            return self.delete(s, object);
        }
        Err(only_this_card("deletes from", endpoint))
    }
    /// One set's bytes.
    fn restore(&mut self, s: &Session, object: u32) -> Result<(SetInfo, Vec<u8>)>;
    /// One set's bytes from the card `endpoint` names (0: this card). Only
    /// a direct client reaches a replicated card's peer; the others serve
    /// this card only.
    fn restore_from(
        &mut self,
        s: &Session,
        object: u32,
        endpoint: u32,
    ) -> Result<(SetInfo, Vec<u8>)> {
        if endpoint == 0 {
            return self.restore(s, object);
        }
        Err(only_this_card("restores from", endpoint))
    }
    /// The session's sets.
    fn list(&mut self, s: &Session) -> Result<Vec<SetInfo>>;
    /// The session's sets on the card `endpoint` names (0: this card).
    fn list_from(&mut self, s: &Session, endpoint: u32) -> Result<Vec<SetInfo>> {
        if endpoint == 0 {
            return self.list(s);
        }
        Err(only_this_card("lists", endpoint))
    }
    /// Announce a reboot stage.
    fn announce(&mut self, stage: u32) -> Result<Vec<SetInfo>>;
    /// The session's sets of an announced stage, with their bytes.
    fn fetch(&mut self, s: &Session, stage: u32) -> Result<Vec<(SetInfo, Vec<u8>)>>;
    /// Append to a tier's log; returns the record's log offset.
    fn log_append(
        &mut self,
        s: &Session,
        object: u32,
        cold: bool,
        overwrite: bool,
        data: &[u8],
    ) -> Result<u32>;
    /// The unread log records.
    fn log_read(&mut self, s: &Session, cold: bool) -> Result<LogRead>;
    /// Clear the log up to `to`.
    fn log_trim(&mut self, s: &Session, cold: bool, to: u32) -> Result<()>;
    /// Erase a tier's record table.
    fn format(&mut self, s: &Session, cold: bool) -> Result<()>;
    /// Requests the card refused for bad credentials.
    fn auth_failures(&mut self) -> Result<u32>;
    /// Replicated card: hand the master role to a slave (see
    /// [`Client::switchover`]).
    fn switchover(&mut self, to: Option<u32>) -> Result<Switched>;
    /// Replicated card: the operator's promotion of this card (see
    /// [`Client::promote`]). Only a path to one card carries it.
    fn promote(&mut self, _accept_lost_warm: bool) -> Result<Promoted> {
        Err(Error::InvalidArgument(format!(
            "a promotion names one card; it is not available through {}",
            self.describe()
        )))
    }
    /// Where the firmware is reached, for messages.
    fn describe(&self) -> String;
    // The image operations (seed 002) are the card operator's. Their
    // defaults refuse with `images_refused`, so a path that does not carry
    // them (a test fake, a future transport) says so instead of failing to
    // build; `Client` implements them, `DaemonClient` and `PairClient`
    // give their own reason by overriding `images_refused` alone.
    /// Why this path refuses the image operations.
    fn images_refused(&self) -> Error {
        no_images(self.describe())
    }
    /// The card's software images (see [`Client::image_status`]).
    fn image_status(&mut self) -> Result<ImageReport> {
        Err(self.images_refused())
    }
    /// Install a signed package (see [`Client::image_install`]).
    fn image_install(
        &mut self,
        _package: &mut dyn std::io::Read,
        _total: u64,
        _force: bool,
        _progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Installed> {
        Err(self.images_refused())
    }
    /// Activate the installed image (trial boot at the next card boot).
    fn image_activate(&mut self) -> Result<ImageReport> {
        Err(self.images_refused())
    }
    /// Mark the trial image good.
    fn image_mark_good(&mut self) -> Result<ImageReport> {
        Err(self.images_refused())
    }
    /// Abandon a trial or go back to the previous image.
    fn image_rollback(&mut self) -> Result<ImageReport> {
        Err(self.images_refused())
    }
    /// Serve the running image's components (neither address: stop).
    fn image_serve(&mut self, _http: Option<String>, _tftp: Option<String>) -> Result<ImageReport> {
        Err(self.images_refused())
    }
    /// Reboot the card (see [`Client::image_reboot`]).
    fn image_reboot(&mut self) -> Result<ImageReport> {
        Err(self.images_refused())
    }
    // The heap store (issue 20; docs/heap.md). `Client` and
    // `DaemonClient` implement these; the defaults refuse, as the image
    // operations' do, for a path that does not carry them.
    /// Open (or create) a heap of the session's application (see
    /// [`Client::heap_open`]); its versions.
    fn heap_open(
        &mut self,
        _s: &Session,
        _heap: u32,
        _heap_pages: u32,
        _keep: u32,
        _cold: bool,
    ) -> Result<Vec<HeapVersion>> {
        Err(no_heaps(self.describe()))
    }
    /// Drop the heap's staged pages and close it.
    fn heap_close(&mut self, _s: &Session, _heap: u32) -> Result<()> {
        Err(no_heaps(self.describe()))
    }
    /// Stage pages (see [`Client::heap_stage`]); the bytes sent.
    fn heap_stage(&mut self, _s: &Session, _heap: u32, _pages: &[(u32, &[u8])]) -> Result<u64> {
        Err(no_heaps(self.describe()))
    }
    /// Commit the staged pages and `state` as a new version.
    fn heap_commit(&mut self, _s: &Session, _heap: u32, _state: &[u8]) -> Result<HeapVersion> {
        Err(no_heaps(self.describe()))
    }
    /// Drop the staged pages.
    fn heap_abort(&mut self, _s: &Session, _heap: u32) -> Result<()> {
        Err(no_heaps(self.describe()))
    }
    /// Read pages: the staged copy, else the base version's; `None` for a
    /// page never written.
    fn heap_read(
        &mut self,
        _s: &Session,
        _heap: u32,
        _pages: &[u32],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        Err(no_heaps(self.describe()))
    }
    /// The heap's committed versions, oldest first.
    fn heap_versions(&mut self, _s: &Session, _heap: u32) -> Result<Vec<HeapVersion>> {
        Err(no_heaps(self.describe()))
    }
    /// Make `version` the base (staged pages dropped); its state.
    fn heap_checkout(
        &mut self,
        _s: &Session,
        _heap: u32,
        _version: u64,
    ) -> Result<(HeapVersion, Vec<u8>)> {
        Err(no_heaps(self.describe()))
    }
    /// The base version's pages that differ from version `since`.
    fn heap_changed(&mut self, _s: &Session, _heap: u32, _since: u64) -> Result<Vec<u32>> {
        Err(no_heaps(self.describe()))
    }
    /// Delete every version of the heap.
    fn heap_delete(&mut self, _s: &Session, _heap: u32) -> Result<()> {
        Err(no_heaps(self.describe()))
    }
}

fn no_heaps(path: String) -> Error {
    Error::InvalidArgument(format!("the heap store is not available through {path}"))
}

/// A transport that reaches one card only, asked for another endpoint.
fn only_this_card(what: &str, endpoint: u32) -> Error {
    Error::InvalidArgument(format!(
        "endpoint {endpoint}: this transport {what} the card it reaches only (endpoint 0)"
    ))
}

fn no_images(path: String) -> Error {
    Error::InvalidArgument(format!("image management is not available through {path}"))
}

impl<T: CardIo> Firmware for Client<T> {
    fn status(&mut self) -> Result<FwStatus> {
        Client::status(self)
    }
    fn open_app(
        &mut self,
        app: u32,
        what: OpenFlags,
        secret: Option<&Secret>,
    ) -> Result<(Session, Option<Secret>)> {
        Client::open_app(self, app, what, secret)
    }
    fn close(&mut self, s: &Session) -> Result<()> {
        Client::close(self, s)
    }
    fn store(
        &mut self,
        s: &Session,
        object: u32,
        endpoint: u32,
        stage: u32,
        cold: bool,
        data: &[u8],
    ) -> Result<()> {
        Client::store(self, s, object, endpoint, stage, cold, data)
    }
    fn delete(&mut self, s: &Session, object: u32) -> Result<()> {
        Client::delete(self, s, object)
    }
    fn delete_from(&mut self, s: &Session, object: u32, endpoint: u32) -> Result<()> {
        Client::delete_from(self, s, object, endpoint)
    }
    fn restore(&mut self, s: &Session, object: u32) -> Result<(SetInfo, Vec<u8>)> {
        Client::restore(self, s, object)
    }
    fn restore_from(
        &mut self,
        s: &Session,
        object: u32,
        endpoint: u32,
    ) -> Result<(SetInfo, Vec<u8>)> {
        Client::restore_from(self, s, object, endpoint)
    }
    fn list(&mut self, s: &Session) -> Result<Vec<SetInfo>> {
        Client::list(self, s)
    }
    fn list_from(&mut self, s: &Session, endpoint: u32) -> Result<Vec<SetInfo>> {
        Client::list_from(self, s, endpoint)
    }
    fn announce(&mut self, stage: u32) -> Result<Vec<SetInfo>> {
        Client::announce(self, stage)
    }
    fn fetch(&mut self, s: &Session, stage: u32) -> Result<Vec<(SetInfo, Vec<u8>)>> {
        Client::fetch(self, s, stage)
    }
    fn log_append(
        &mut self,
        s: &Session,
        object: u32,
        cold: bool,
        overwrite: bool,
        data: &[u8],
    ) -> Result<u32> {
        Client::log_append(self, s, object, cold, overwrite, data)
    }
    fn log_read(&mut self, s: &Session, cold: bool) -> Result<LogRead> {
        Client::log_read(self, s, cold)
    }
    fn log_trim(&mut self, s: &Session, cold: bool, to: u32) -> Result<()> {
        Client::log_trim(self, s, cold, to)
    }
    fn format(&mut self, s: &Session, cold: bool) -> Result<()> {
        Client::format(self, s, cold)
    }
    fn auth_failures(&mut self) -> Result<u32> {
        Client::auth_failures(self)
    }
    fn switchover(&mut self, to: Option<u32>) -> Result<Switched> {
        Client::switchover(self, to)
    }
    fn promote(&mut self, accept_lost_warm: bool) -> Result<Promoted> {
        Client::promote(self, accept_lost_warm)
    }
    fn describe(&self) -> String {
        self.io.describe()
    }
    fn image_status(&mut self) -> Result<ImageReport> {
        Client::image_status(self)
    }
    fn image_install(
        &mut self,
        package: &mut dyn std::io::Read,
        total: u64,
        force: bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Installed> {
        Client::image_install(self, package, total, force, progress)
    }
    fn image_activate(&mut self) -> Result<ImageReport> {
        Client::image_activate(self)
    }
    fn image_mark_good(&mut self) -> Result<ImageReport> {
        Client::image_mark_good(self)
    }
    fn image_rollback(&mut self) -> Result<ImageReport> {
        Client::image_rollback(self)
    }
    fn image_serve(&mut self, http: Option<String>, tftp: Option<String>) -> Result<ImageReport> {
        Client::image_serve(self, http, tftp)
    }
    fn image_reboot(&mut self) -> Result<ImageReport> {
        Client::image_reboot(self)
    }
    fn heap_open(
        &mut self,
        s: &Session,
        heap: u32,
        heap_pages: u32,
        keep: u32,
        cold: bool,
    ) -> Result<Vec<HeapVersion>> {
        Client::heap_open(self, s, heap, heap_pages, keep, cold)
    }
    fn heap_close(&mut self, s: &Session, heap: u32) -> Result<()> {
        Client::heap_close(self, s, heap)
    }
    fn heap_stage(&mut self, s: &Session, heap: u32, pages: &[(u32, &[u8])]) -> Result<u64> {
        Client::heap_stage(self, s, heap, pages)
    }
    fn heap_commit(&mut self, s: &Session, heap: u32, state: &[u8]) -> Result<HeapVersion> {
        Client::heap_commit(self, s, heap, state)
    }
    fn heap_abort(&mut self, s: &Session, heap: u32) -> Result<()> {
        Client::heap_abort(self, s, heap)
    }
    fn heap_read(&mut self, s: &Session, heap: u32, pages: &[u32]) -> Result<Vec<Option<Vec<u8>>>> {
        Client::heap_read(self, s, heap, pages)
    }
    fn heap_versions(&mut self, s: &Session, heap: u32) -> Result<Vec<HeapVersion>> {
        Client::heap_versions(self, s, heap)
    }
    fn heap_checkout(
        &mut self,
        s: &Session,
        heap: u32,
        version: u64,
    ) -> Result<(HeapVersion, Vec<u8>)> {
        Client::heap_checkout(self, s, heap, version)
    }
    fn heap_changed(&mut self, s: &Session, heap: u32, since: u64) -> Result<Vec<u32>> {
        Client::heap_changed(self, s, heap, since)
    }
    fn heap_delete(&mut self, s: &Session, heap: u32) -> Result<()> {
        Client::heap_delete(self, s, heap)
    }
}

/// What [`heap_migrate`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migrated {
    /// The version the destination committed.
    pub dst_version: u64,
    /// The source version it holds.
    pub src_version: u64,
    /// Pages sent (only those changed since the common version).
    pub pages: usize,
    /// The source's version as its card lists it.
    pub source: HeapVersion,
    /// The destination's new version as its card lists it.
    pub destination: HeapVersion,
}

/// Move (or copy) heap `heap` from one card to another, sending only the
/// pages the source's newest version changed since a version both cards
/// have (`since = Some((source version, destination version))`; `None`:
/// every written page). Both sessions must have the heap open (the
/// destination's with the same page count).
///
/// Committed on both or on neither: the destination's HEAP_COMMIT is the
/// one commit point (the hardware's atomic index commit on that card).
/// Before it, the source is untouched and the destination has only
/// staged pages, which it drops (abort, or a reset). After it, the
/// destination holds the source's version byte for byte; with `remove`
/// the source's heap is then deleted (one index commit on the source).
/// A failure between the two leaves the heap committed on both cards,
/// identical: running the migration again finds nothing changed since
/// (`since` = the pair just made), commits an identical version and
/// deletes the source: the step is redone, never half done.
#[allow(clippy::too_many_arguments)]
pub fn heap_migrate<A: Firmware + ?Sized, B: Firmware + ?Sized>(
    src: &mut A,
    ss: &Session,
    dst: &mut B,
    ds: &Session,
    heap: u32,
    since: Option<(u64, u64)>,
    remove: bool,
) -> Result<Migrated> {
    heap_migrate_with(src, ss, dst, ds, heap, since, remove, &mut |_, _| {})
}

/// [`heap_migrate`], telling `progress(pages sent, pages to send)` after
/// each batch staged on the destination (the CLI's progress bar).
#[allow(clippy::too_many_arguments)]
pub fn heap_migrate_with<A: Firmware + ?Sized, B: Firmware + ?Sized>(
    src: &mut A,
    ss: &Session,
    dst: &mut B,
    ds: &Session,
    heap: u32,
    since: Option<(u64, u64)>,
    remove: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Migrated> {
    let newest = src
        .heap_versions(ss, heap)?
        .last()
        .map(|v| v.version)
        .ok_or_else(|| Error::InvalidArgument(format!("heap {heap} has no version to move")))?;
    let (source, state) = src.heap_checkout(ss, heap, newest)?;
    let pages = src.heap_changed(ss, heap, since.map_or(0, |s| s.0))?;
    match since {
        Some((_, d)) => {
            dst.heap_checkout(ds, heap, d)?;
        }
        None => {
            if !dst.heap_versions(ds, heap)?.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "the destination's heap {heap} has versions: name the one both cards have"
                )));
            }
            dst.heap_abort(ds, heap)?
        }
    }
    let mut sent = 0;
    progress(0, pages.len());
    let moved = (|| -> Result<HeapVersion> {
        for chunk in pages.chunks(HEAP_REQUEST_PAGES) {
            let got = src.heap_read(ss, heap, chunk)?;
            let mut data = Vec::with_capacity(chunk.len());
            for (p, g) in chunk.iter().zip(got) {
                let g = g.ok_or_else(|| {
                    Error::BadCompletion(format!("page {p} changed but the source has none"))
                })?;
                data.push((*p, g));
            }
            let refs: Vec<(u32, &[u8])> = data.iter().map(|(p, d)| (*p, &d[..])).collect();
            dst.heap_stage(ds, heap, &refs)?;
            sent += chunk.len();
            progress(sent, pages.len());
        }
        dst.heap_commit(ds, heap, &state)
    })();
    let v = match moved {
        Ok(v) => v,
        Err(e) => {
            // Nothing committed on the destination: drop its staged pages.
            if let Err(a) = dst.heap_abort(ds, heap) {
                tracing::warn!("migration: the destination's abort failed too: {a}");
            }
            return Err(e);
        }
    };
    if remove {
        src.heap_delete(ss, heap)?;
    }
    Ok(Migrated {
        dst_version: v.version,
        src_version: newest,
        pages: pages.len(),
        source,
        destination: v,
    })
}
