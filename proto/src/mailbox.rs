//! The mailbox register block (`contract::mbox`) as the card implements
//! it: the registers the host writes, the doorbell that starts a request,
//! the result the card publishes. The loop step that runs a request is the
//! firmware's (`hitless_firmware::mailbox`).

use crate::msg::Code;
use hitless_hdl::contract::{mb_state, mbox, FIRMWARE_ID, MESSAGE_VERSION};

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
