//! The mailbox loop step: read a request from host memory, hand it to
//! the memory manager, write the response back, publish the result. The
//! register block itself is the protocol's ([`hitless_proto::mailbox`]).

use crate::manager::{Controller, HostMemory, MemoryManager};
use hitless_hdl::contract::MAX_MESSAGE;
pub use hitless_proto::mailbox::{Mailbox, Pending};
use hitless_proto::message::Failure;
use hitless_proto::msg::Code;

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
        tracing::warn!("request unreadable: {}", crate::manager::chain(&e));
        return (Code::HostMemory, 0);
    }
    let reply = mm.handle(host, &req);
    let len = reply.message.len() as u32;
    if len > p.resp_cap {
        return (Code::TooSmall, len);
    }
    if let Err(e) = host.write(p.resp_addr, &reply.message) {
        tracing::warn!("response unwritable: {}", crate::manager::chain(&e));
        return (Code::HostMemory, 0);
    }
    (reply.code, len)
}

/// Answer a request the firmware cannot run (it could not start): a
/// response with `code` and `detail`, so the host learns why.
pub fn refuse(host: &mut dyn HostMemory, p: &Pending, code: Code, detail: &str) -> (Code, u32) {
    refuse_with(host, p, &Failure::new(code, detail))
}

/// Answer `p` with the refusal `f` (its code, detail and fields, e.g. the
/// master a `NotMaster` answer names).
pub fn refuse_with(host: &mut dyn HostMemory, p: &Pending, f: &Failure) -> (Code, u32) {
    let code = f.code;
    let mut head = [0u8; 4];
    let kind = if p.req_len >= 4 && host.read(p.req_addr, &mut head).is_ok() {
        head[3]
    } else {
        0
    };
    let message = f.encode(kind).finish();
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
