//! The mailbox register block (`contract::mbox`) and the loop step that
//! runs one request: read it from host memory, hand it to the memory
//! manager, write the response back, publish the result.

use crate::manager::{Controller, HostMemory, MemoryManager};
use crate::msg::Code;
use hitless_hdl::contract::{mb_state, mbox, FIRMWARE_ID, MAX_MESSAGE, MESSAGE_VERSION};

/// The mailbox registers as the host sees them.
#[derive(Clone, Debug, Default)]
pub struct Mailbox {
    req_addr: u64,
    req_len: u32,
    resp_addr: u64,
    resp_cap: u32,
    done: u32,
    result: u32,
    resp_len: u32,
    pub ready: bool,
    pub busy: bool,
    pub nonce: u64,
    pub auth_fails: u32,
    pub requests: u32,
}

/// A request the doorbell started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    pub seq: u32,
    pub req_addr: u64,
    pub req_len: u32,
    pub resp_addr: u64,
    pub resp_cap: u32,
}

impl Mailbox {
    /// A register read (unknown offsets read 0).
    pub fn read32(&self, offset: u32) -> u32 {
        match offset {
            mbox::MB_ID => FIRMWARE_ID,
            mbox::MB_VERSION => MESSAGE_VERSION,
            mbox::MB_STATE => {
                (if self.ready { mb_state::READY } else { 0 })
                    | if self.busy { mb_state::BUSY } else { 0 }
            }
            mbox::MB_REQ_LO => self.req_addr as u32,
            mbox::MB_REQ_HI => (self.req_addr >> 32) as u32,
            mbox::MB_REQ_LEN => self.req_len,
            mbox::MB_RESP_LO => self.resp_addr as u32,
            mbox::MB_RESP_HI => (self.resp_addr >> 32) as u32,
            mbox::MB_RESP_CAP => self.resp_cap,
            mbox::MB_DONE => self.done,
            mbox::MB_RESULT => self.result,
            mbox::MB_RESP_LEN => self.resp_len,
            mbox::MB_NONCE_LO => self.nonce as u32,
            mbox::MB_NONCE_HI => (self.nonce >> 32) as u32,
            mbox::MB_AUTH_FAILS => self.auth_fails,
            mbox::MB_REQUESTS => self.requests,
            _ => 0,
        }
    }

    /// A register write; a doorbell returns the request to run (none while
    /// one is running: the doorbell is ignored and the host times out).
    pub fn write32(&mut self, offset: u32, value: u32) -> Option<Pending> {
        let lo = |a: u64| (a & !0xFFFF_FFFF) | value as u64;
        let hi = |a: u64| (a & 0xFFFF_FFFF) | (value as u64) << 32;
        match offset {
            mbox::MB_REQ_LO => self.req_addr = lo(self.req_addr),
            mbox::MB_REQ_HI => self.req_addr = hi(self.req_addr),
            mbox::MB_REQ_LEN => self.req_len = value,
            mbox::MB_RESP_LO => self.resp_addr = lo(self.resp_addr),
            mbox::MB_RESP_HI => self.resp_addr = hi(self.resp_addr),
            mbox::MB_RESP_CAP => self.resp_cap = value,
            mbox::MB_DOORBELL if !self.busy => {
                self.busy = true;
                return Some(Pending {
                    seq: value,
                    req_addr: self.req_addr,
                    req_len: self.req_len,
                    resp_addr: self.resp_addr,
                    resp_cap: self.resp_cap,
                });
            }
            _ => {}
        }
        None
    }

    /// Publish a finished request.
    pub fn finish(&mut self, p: &Pending, code: Code, resp_len: u32) {
        self.result = code as u32;
        self.resp_len = resp_len;
        self.done = p.seq;
        self.busy = false;
    }
}

/// Run one request: returns the result code and the response length
/// (with `TooSmall`, the length the response buffer would need).
pub fn run<C: Controller>(
    mm: &mut MemoryManager<C>,
    host: &mut dyn HostMemory,
    p: &Pending,
) -> (Code, u32) {
    if p.req_len == 0 || p.req_len > MAX_MESSAGE {
        return (Code::BadMessage, 0);
    }
    let mut req = vec![0u8; p.req_len as usize];
    if let Err(e) = host.read(p.req_addr, &mut req) {
        tracing::warn!("request unreadable: {e}");
        return (Code::HostMemory, 0);
    }
    let reply = mm.handle(host, &req);
    let len = reply.message.len() as u32;
    if len > p.resp_cap {
        return (Code::TooSmall, len);
    }
    if let Err(e) = host.write(p.resp_addr, &reply.message) {
        tracing::warn!("response unwritable: {e}");
        return (Code::HostMemory, 0);
    }
    (reply.code, len)
}

/// Answer a request the firmware cannot run (it could not start): a
/// response with `code` and `detail`, so the host learns why.
pub fn refuse(host: &mut dyn HostMemory, p: &Pending, code: Code, detail: &str) -> (Code, u32) {
    let mut head = [0u8; 4];
    let kind = if p.req_len >= 4 && host.read(p.req_addr, &mut head).is_ok() {
        head[3]
    } else {
        0
    };
    let message = crate::msg::response(kind, code)
        .bytes(crate::msg::tag::ERROR, detail.as_bytes())
        .finish();
    let len = message.len() as u32;
    if len > p.resp_cap || host.write(p.resp_addr, &message).is_err() {
        return (code, 0);
    }
    (code, len)
}

/// Copy the manager's counters and challenge into the registers.
pub fn publish<C: Controller>(mb: &mut Mailbox, mm: &MemoryManager<C>) {
    mb.nonce = mm.nonce();
    mb.auth_fails = mm.counters.auth_fails;
    mb.requests = mm.counters.requests;
    mb.ready = true;
}
