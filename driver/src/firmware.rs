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
use hitless_firmware::auth::{self, SECRET_BYTES};
use hitless_firmware::msg::{self, flags, kind, tag, Code, LogInfo, SetInfo};
use hitless_firmware::tlv::{Builder, Message};
use hitless_hdl::contract::{
    crc32c, mb_state, mbox, FIRMWARE_ID, MAX_MESSAGE, MAX_TRANSFER, MESSAGE_VERSION,
};
use std::time::{Duration, Instant};

/// An application's secret (its credentials; see `hitless_firmware::auth`).
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

/// One tier as the firmware reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FwTier {
    /// 0 ready, 1 lost, 2 foreign image.
    pub state: u32,
    pub boot_result: u32,
    pub sets: u32,
    pub image_bytes: u32,
    pub log_head: u32,
    pub log_tail: u32,
}

impl FwTier {
    pub fn state_name(&self) -> &'static str {
        match self.state {
            0 => "ready",
            1 => "lost",
            _ => "foreign image",
        }
    }
}

/// The firmware's STATUS answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FwStatus {
    pub warm: FwTier,
    pub cold: FwTier,
    pub requests: u32,
    pub auth_fails: u32,
    pub stores: u32,
    pub sessions_opened: u32,
    pub announced: Option<u32>,
}

/// The unread part of a log, as LOG_READ returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRead {
    pub records: Vec<(LogInfo, Vec<u8>)>,
    pub head: u32,
    pub tail: u32,
}

/// A decoded response (owned bytes).
struct Reply(Vec<u8>);

impl Reply {
    fn msg(&self) -> Result<Message<'_>> {
        Message::decode(&self.0)
            .map_err(|e| Error::BadCompletion(format!("firmware response: {e}")))
    }
    fn u32(&self, t: u16) -> Result<Option<u32>> {
        let m = self.msg()?;
        if !m.has(t) {
            return Ok(None);
        }
        m.u32_or(t, 0)
            .map(Some)
            .map_err(|e| Error::BadCompletion(e.to_string()))
    }
    fn need_u32(&self, t: u16) -> Result<u32> {
        self.u32(t)?
            .ok_or_else(|| Error::BadCompletion(format!("firmware response lacks field {t}")))
    }
    fn bytes(&self, t: u16) -> Result<Vec<u8>> {
        Ok(self.msg()?.bytes_or_empty(t).to_vec())
    }
    fn sets(&self) -> Result<Vec<SetInfo>> {
        msg::unpack(
            &self.bytes(tag::SETS)?,
            SetInfo::BYTES,
            SetInfo::from_bytes,
            tag::SETS,
        )
        .map_err(|e| Error::BadCompletion(e.to_string()))
    }
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
        let window = io.dma().len() as u64;
        let mut alloc = DmaAllocator::new(window);
        let req = alloc.alloc(MAX_MESSAGE as u64, 64)?;
        let resp = alloc.alloc(MAX_MESSAGE as u64, 64)?;
        // The data buffer: a whole stage's sets of one application (both
        // tiers' regions) when the window allows, at least one set.
        let room = alloc.free_bytes().saturating_sub(4096);
        let want = (4u64 << 20).min(room);
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

    /// Run one request; signed with `secret` when given. A result other
    /// than OK is `Error::Firmware`.
    fn call(&mut self, m: Builder, secret: Option<&Secret>) -> Result<Reply> {
        let unsigned = m.finish();
        let request_kind = unsigned[3];
        let bytes = match secret {
            Some(s) => {
                let lo = self.io.read32(mbox::MB_NONCE_LO)? as u64;
                let hi = self.io.read32(mbox::MB_NONCE_HI)? as u64;
                auth::sign(unsigned, s, lo | hi << 32)
            }
            None => unsigned,
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
            });
        }
        if len > resp.len as usize {
            return Err(Error::BadCompletion(format!("response of {len} bytes")));
        }
        let reply = Reply(self.get(resp, 0, len)?);
        let m = reply.msg()?;
        if m.kind != kind::RESPONSE | request_kind {
            return Err(Error::BadCompletion(format!(
                "response kind {:#x} to request {request_kind}",
                m.kind
            )));
        }
        let (code, detail) = msg::result_of(&m).map_err(|e| Error::BadCompletion(e.to_string()))?;
        if code != Code::Ok {
            return Err(Error::Firmware { code, detail });
        }
        Ok(reply)
    }

    fn signed(&mut self, s: &Session, m: Builder) -> Result<Reply> {
        self.call(m.u32(tag::HANDLE, s.handle), Some(&s.secret))
    }

    /// Firmware and tier state (no credentials needed).
    pub fn status(&mut self) -> Result<FwStatus> {
        let r = self.call(Builder::new(kind::STATUS), None)?;
        let t = r.bytes(tag::TIERS)?;
        let c = r.bytes(tag::COUNTERS)?;
        if t.len() != 48 || c.len() != 16 {
            return Err(Error::BadCompletion(
                "STATUS fields of the wrong size".into(),
            ));
        }
        let u = |b: &[u8], i: usize| {
            u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
        };
        let tier = |k: usize| FwTier {
            state: u(&t, 6 * k),
            boot_result: u(&t, 6 * k + 1),
            sets: u(&t, 6 * k + 2),
            image_bytes: u(&t, 6 * k + 3),
            log_head: u(&t, 6 * k + 4),
            log_tail: u(&t, 6 * k + 5),
        };
        Ok(FwStatus {
            warm: tier(0),
            cold: tier(1),
            requests: u(&c, 0),
            auth_fails: u(&c, 1),
            stores: u(&c, 2),
            sessions_opened: u(&c, 3),
            announced: r.u32(tag::ANNOUNCED)?,
        })
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
        let m = Builder::new(kind::OPEN)
            .u32(tag::APP, app)
            .u32(tag::FLAGS, what.0);
        let r = self.call(m, secret)?;
        let handle = r.need_u32(tag::HANDLE)?;
        let key = r.need_u32(tag::KEY)?;
        let fresh = r.bytes(tag::SECRET)?;
        let new_secret = match fresh.len() {
            0 => None,
            SECRET_BYTES => {
                let mut s = [0u8; SECRET_BYTES];
                s.copy_from_slice(&fresh);
                Some(s)
            }
            n => return Err(Error::BadCompletion(format!("secret of {n} bytes"))),
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
        self.signed(s, Builder::new(kind::CLOSE)).map(|_| ())
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
        if data.len() > MAX_TRANSFER as usize {
            return Err(Error::InvalidArgument(format!(
                "a set is at most {MAX_TRANSFER} bytes; split {} bytes into objects",
                data.len()
            )));
        }
        let d = self.data;
        self.put(d, 0, data)?;
        let addr = self.iova(d);
        let m = Builder::new(kind::STORE)
            .u32(tag::OBJECT, object)
            .u32(tag::ENDPOINT, endpoint)
            .u32(tag::STAGE, stage)
            .u32(tag::FLAGS, if cold { flags::COLD } else { 0 })
            .u64(tag::DATA_ADDR, addr)
            .u32(tag::DATA_LEN, data.len() as u32)
            .u32(tag::DATA_CRC, crc32c(data));
        self.signed(s, m).map(|_| ())
    }

    /// Delete the set (app, object) from whichever tier holds it.
    pub fn delete(&mut self, s: &Session, object: u32) -> Result<()> {
        self.signed(s, Builder::new(kind::DELETE).u32(tag::OBJECT, object))
            .map(|_| ())
    }

    fn data_request(&mut self, m: Builder) -> Builder {
        let d = self.data;
        let addr = self.iova(d);
        m.u64(tag::DATA_ADDR, addr).u32(tag::DATA_CAP, d.len as u32)
    }

    /// One set's bytes.
    pub fn restore(&mut self, s: &Session, object: u32) -> Result<(SetInfo, Vec<u8>)> {
        let m = self.data_request(Builder::new(kind::RESTORE).u32(tag::OBJECT, object));
        let r = self.signed(s, m)?;
        let info = *r
            .sets()?
            .first()
            .ok_or_else(|| Error::BadCompletion("RESTORE without the set's record".into()))?;
        let d = self.data;
        let bytes = self.get(d, 0, info.len as usize)?;
        if crc32c(&bytes) != info.crc {
            return Err(Error::BadCompletion("restored set fails its CRC".into()));
        }
        Ok((info, bytes))
    }

    /// The session's sets (metadata).
    pub fn list(&mut self, s: &Session) -> Result<Vec<SetInfo>> {
        self.signed(s, Builder::new(kind::LIST))?.sets()
    }

    /// Announce reboot stage `stage`; returns the sets (of every
    /// application) the card holds for it.
    pub fn announce(&mut self, stage: u32) -> Result<Vec<SetInfo>> {
        self.call(Builder::new(kind::STAGE).u32(tag::STAGE, stage), None)?
            .sets()
    }

    /// The session's sets for an announced reboot stage, with their bytes.
    pub fn fetch(&mut self, s: &Session, stage: u32) -> Result<Vec<(SetInfo, Vec<u8>)>> {
        let m = self.data_request(Builder::new(kind::FETCH).u32(tag::STAGE, stage));
        let r = self.signed(s, m)?;
        let d = self.data;
        let mut out = Vec::new();
        for info in r.sets()? {
            let bytes = self.get(d, info.data_offset as usize, info.len as usize)?;
            if crc32c(&bytes) != info.crc {
                return Err(Error::BadCompletion(format!(
                    "set {}/{} fails its CRC",
                    info.app, info.object
                )));
            }
            out.push((info, bytes));
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
        let addr = self.iova(d);
        let f = if cold { flags::COLD } else { 0 } | if overwrite { flags::OVERWRITE } else { 0 };
        let m = Builder::new(kind::LOG_APPEND)
            .u32(tag::OBJECT, object)
            .u32(tag::FLAGS, f)
            .u64(tag::DATA_ADDR, addr)
            .u32(tag::DATA_LEN, data.len() as u32);
        self.signed(s, m)?.need_u32(tag::TO)
    }

    /// Every unread record of the application in a tier's log, at once.
    pub fn log_read(&mut self, s: &Session, cold: bool) -> Result<LogRead> {
        let m = self.data_request(
            Builder::new(kind::LOG_READ).u32(tag::FLAGS, if cold { flags::COLD } else { 0 }),
        );
        let r = self.signed(s, m)?;
        let infos = msg::unpack(
            &r.bytes(tag::RECORDS)?,
            LogInfo::BYTES,
            LogInfo::from_bytes,
            tag::RECORDS,
        )
        .map_err(|e| Error::BadCompletion(e.to_string()))?;
        let d = self.data;
        let mut records = Vec::with_capacity(infos.len());
        for li in infos {
            let bytes = self.get(d, li.data_offset as usize, li.len as usize)?;
            records.push((li, bytes));
        }
        Ok(LogRead {
            records,
            head: r.need_u32(tag::LOG_HEAD)?,
            tail: r.need_u32(tag::LOG_TAIL)?,
        })
    }

    /// Clear the log up to `to` (a record offset or the head from a
    /// LOG_READ): the reader has consumed it.
    pub fn log_trim(&mut self, s: &Session, cold: bool, to: u32) -> Result<()> {
        let m = Builder::new(kind::LOG_TRIM)
            .u32(tag::FLAGS, if cold { flags::COLD } else { 0 })
            .u32(tag::TO, to);
        self.signed(s, m).map(|_| ())
    }

    /// Erase a tier's record table (keeping the firmware's own records).
    pub fn format(&mut self, s: &Session, cold: bool) -> Result<()> {
        self.signed(
            s,
            Builder::new(kind::FORMAT).u32(tag::FLAGS, if cold { flags::COLD } else { 0 }),
        )
        .map(|_| ())
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

    /// Requests refused for bad credentials (the `MB_AUTH_FAILS` register).
    pub fn auth_failures(&mut self) -> Result<u32> {
        self.io.read32(mbox::MB_AUTH_FAILS)
    }

    /// Free bytes left in the DMA window after the client's buffers.
    pub fn free_dma(&self) -> u64 {
        self.alloc.free_bytes()
    }
}
