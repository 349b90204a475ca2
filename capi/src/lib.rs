//! libhitless: the firmware client of a hitless card for C (and any
//! language with a C FFI). `include/hitless.h` is generated from this file
//! by cbindgen (`cargo run -p hitless-c --example gen-header`); the doc
//! comments here are the header's documentation.
//!
//! Everything goes through [`hitless_driver::open_firmware`], so a C
//! program reaches a card the way the `hitless` CLI does: `daemon:SOCKET`
//! through hitlessd (which keeps the application secrets), or the card
//! itself (`vfio-user:`, `vfio:`, `uio:`, `uart:`), with the secrets in the
//! local store of [`hitless_driver::credentials::Credentials`].
//!
//! The rules at the boundary: handles are opaque; every pointer is checked
//! for NULL (and alignment) before use; no slice is ever made from a
//! caller's capacity, only from lengths bounded here; no panic crosses into
//! C (each entry point runs under `catch_unwind` and answers
//! `HITLESS_E_PANIC`).

#![deny(unsafe_op_in_unsafe_fn)]
// The exported types carry their C names.
#![allow(non_camel_case_types)]

use hitless_driver::credentials::Credentials;
use hitless_driver::firmware::{Firmware, OpenFlags, Session};
use hitless_driver::Error;
use hitless_hdl::contract::MAX_TRANSFER;
use hitless_proto::msg::{Code, SetInfo, TierSel};
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

// ---- Result codes -------------------------------------------------------

/// Success.
pub const HITLESS_OK: c_int = 0;

// The card's result codes (`hitless_proto::Code`): -(code).

/// The request is not a well-formed message.
pub const HITLESS_E_BAD_MESSAGE: c_int = -1;
/// The card does not know the request kind.
pub const HITLESS_E_UNKNOWN_REQUEST: c_int = -2;
/// Wrong, missing or replayed credentials (the application's secret).
pub const HITLESS_E_AUTH_FAILED: c_int = -3;
/// No such set or session.
pub const HITLESS_E_NOT_FOUND: c_int = -4;
/// The tier has no room for the new image.
pub const HITLESS_E_NO_SPACE: c_int = -5;
/// A buffer is too small; the function's `*_out` sizes say what it needs.
/// Returned by the card (its DMA buffer) and by this library (the caller's
/// buffers).
pub const HITLESS_E_TOO_SMALL: c_int = -6;
/// That reboot stage has not been announced (`hitless_stage_announce`).
pub const HITLESS_E_NOT_YET: c_int = -7;
/// The append log is full: the reader must trim it (`hitless_log_trim`).
pub const HITLESS_E_LOG_FULL: c_int = -8;
/// The log range holds another application's records, or the tier holds
/// an image that is not a record table.
pub const HITLESS_E_FOREIGN: c_int = -9;
/// The controller refused an operation.
pub const HITLESS_E_DEVICE: c_int = -10;
/// Both regions of the tier failed their integrity test.
pub const HITLESS_E_LOST: c_int = -11;
/// No free protection entry for a new session.
pub const HITLESS_E_NO_SESSION: c_int = -12;
/// The card could not reach a host buffer by DMA.
pub const HITLESS_E_HOST_MEMORY: c_int = -13;
/// The session lacks the permission (see `HITLESS_READ`, `HITLESS_WRITE`,
/// `HITLESS_LOG`).
pub const HITLESS_E_PERMISSION: c_int = -14;
/// The card found an argument out of range.
pub const HITLESS_E_INVALID: c_int = -15;
/// A replicated card that is not its pair's master refused the request
/// (the message names the master): use the master's card.
pub const HITLESS_E_NOT_MASTER: c_int = -16;

// This library's own codes.

/// The transport failed (socket, device file, serial line), or the card
/// went away.
pub const HITLESS_E_TRANSPORT: c_int = -100;
/// The card (or hitlessd) did not answer in time.
pub const HITLESS_E_TIMEOUT: c_int = -101;
/// A NULL or misaligned pointer, a length over its bound, an unknown flag,
/// a card spec that does not parse, no place for the application secrets.
pub const HITLESS_E_INVALID_ARGUMENT: c_int = -102;
/// The device is not a hitless card, or has no firmware.
pub const HITLESS_E_NOT_A_CARD: c_int = -103;
/// The card speaks an incompatible version of the contract or messages.
pub const HITLESS_E_VERSION: c_int = -104;
/// The card or hitlessd answered something this library cannot interpret.
pub const HITLESS_E_BAD_RESPONSE: c_int = -105;
/// Not enough DMA memory for the transfer.
pub const HITLESS_E_DMA_EXHAUSTED: c_int = -106;
/// The card lacks a feature the operation needs.
pub const HITLESS_E_UNSUPPORTED: c_int = -107;
/// An internal error of this library (a bug); the message says where.
pub const HITLESS_E_PANIC: c_int = -108;
/// A `pair:` card was lost during a request that is not safe to repeat
/// (a log append, a delete, a first open): it may or may not have been
/// applied; it was not retried on the new master.
pub const HITLESS_E_MAYBE_APPLIED: c_int = -109;

// ---- Flags and other constants ------------------------------------------

/// `hitless_session_open`: the session may read its sets.
pub const HITLESS_READ: u32 = 1 << 2;
/// `hitless_session_open`: the session may store and delete sets.
pub const HITLESS_WRITE: u32 = 1 << 3;
/// `hitless_session_open`: the session may use the append log.
pub const HITLESS_LOG: u32 = 1 << 4;
/// `hitless_session_open`: every permission.
pub const HITLESS_ALL: u32 = HITLESS_READ | HITLESS_WRITE | HITLESS_LOG;

/// The `cold` argument: the warm tier (survives a reset, not a power cut).
pub const HITLESS_WARM: c_int = 0;
/// The `cold` argument: the cold tier (survives a power cycle).
pub const HITLESS_COLD: c_int = 1;

/// The largest set (and log record) in bytes: 1 MiB.
pub const HITLESS_MAX_TRANSFER: usize = 1 << 20;

/// `hitless_tier_status.state`: the tier serves its record table.
pub const HITLESS_TIER_READY: u32 = 0;
/// `hitless_tier_status.state`: both regions failed their integrity test.
pub const HITLESS_TIER_LOST: u32 = 1;
/// `hitless_tier_status.state`: the tier holds an image that is not a
/// record table.
pub const HITLESS_TIER_FOREIGN: u32 = 2;

/// `hitless_tier_status.boot_result`: no valid superblock, a blank tier.
pub const HITLESS_BOOT_EMPTY: u32 = 0;
/// `hitless_tier_status.boot_result`: the active region passed.
pub const HITLESS_BOOT_OK: u32 = 1;
/// `hitless_tier_status.boot_result`: the active region failed, the
/// alternate passed and is served.
pub const HITLESS_BOOT_FELL_BACK: u32 = 2;
/// `hitless_tier_status.boot_result`: both regions failed.
pub const HITLESS_BOOT_LOST: u32 = 3;

/// Card specs (`hitless_open`) longer than this (bytes) are refused.
pub const HITLESS_MAX_SPEC: usize = 4096;

/// `hitless_open` with `timeout_ms` 0 waits at most this long (ms).
pub const HITLESS_DEFAULT_TIMEOUT_MS: u32 = 10_000;

// ---- Types ----------------------------------------------------------------

/// A connection to a card (directly or through hitlessd). Opaque.
///
/// Not thread-safe: a card and its sessions must be used by one thread at
/// a time (one card per thread, or a lock of the caller's around every
/// call on the card and its sessions).
pub struct hitless_card {
    inner: Rc<RefCell<CardInner>>,
}

struct CardInner {
    fw: Box<dyn Firmware>,
    /// Through hitlessd: it keeps the application secrets.
    daemon: bool,
}

/// An open session of one application on a card. Opaque. It keeps its
/// card's connection open: closing the card first is allowed, the
/// connection ends when its last session is closed.
pub struct hitless_session {
    card: Rc<RefCell<CardInner>>,
    s: Session,
}

/// One set, as `hitless_list` and `hitless_stage_fetch` describe it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct hitless_set_info {
    pub app: u32,
    pub object: u32,
    pub endpoint: u32,
    /// The reboot stage it is delivered at.
    pub stage: u32,
    /// 1: the cold tier, 0: the warm tier.
    pub cold: u32,
    /// Its length in bytes.
    pub len: u32,
    /// CRC-32C of its bytes.
    pub crc: u32,
    /// `hitless_stage_fetch`: where its bytes start in the caller's
    /// buffer; 0 elsewhere.
    pub data_offset: usize,
}

/// One append-log record, as `hitless_log_read` describes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct hitless_log_record {
    pub object: u32,
    /// Its free-running log offset (what `hitless_log_trim` takes).
    pub offset: u32,
    /// The log's sequence number of the record.
    pub seq: u64,
    /// Its payload's length in bytes.
    pub len: u32,
    /// Where its payload starts in the caller's buffer.
    pub data_offset: usize,
}

/// One tier's state in `hitless_card_status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct hitless_tier_status {
    /// `HITLESS_TIER_READY`, `HITLESS_TIER_LOST` or `HITLESS_TIER_FOREIGN`.
    pub state: u32,
    /// The controller's boot scan of the tier: `HITLESS_BOOT_*`.
    pub boot_result: u32,
    /// Sets held.
    pub sets: u32,
    /// Bytes of the tier's current image.
    pub image_bytes: u32,
    pub log_head: u32,
    pub log_tail: u32,
}

/// The firmware's state and counters (`hitless_status`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct hitless_card_status {
    pub warm: hitless_tier_status,
    pub cold: hitless_tier_status,
    /// Requests served since the firmware started.
    pub requests: u32,
    /// Requests refused for bad credentials.
    pub auth_fails: u32,
    /// Sets stored.
    pub stores: u32,
    /// Sessions opened.
    pub sessions_opened: u32,
    /// 1 when a reboot stage has been announced (then `announced_stage`
    /// is it), else 0.
    pub has_announced: u32,
    pub announced_stage: u32,
}

// ---- Errors ---------------------------------------------------------------

/// A failure on its way to C: its code and message.
struct Fail {
    code: c_int,
    msg: String,
}

impl Fail {
    fn invalid(msg: impl Into<String>) -> Self {
        Self {
            code: HITLESS_E_INVALID_ARGUMENT,
            msg: format!("invalid argument: {}", msg.into()),
        }
    }
    fn too_small(msg: impl Into<String>) -> Self {
        Self {
            code: HITLESS_E_TOO_SMALL,
            msg: msg.into(),
        }
    }
}

/// The C code of a card result.
fn card_code(c: Code) -> c_int {
    match c {
        // A refusal that says OK: not something the card sends.
        Code::Ok => HITLESS_E_BAD_RESPONSE,
        c => -(c as c_int),
    }
}

/// The C code of a driver error.
fn error_code(e: &Error) -> c_int {
    match e {
        Error::Firmware { code, .. } => card_code(*code),
        Error::NotMaster { .. } | Error::NoMaster { .. } => card_code(Code::NotMaster),
        Error::MaybeApplied { .. } => HITLESS_E_MAYBE_APPLIED,
        Error::Transport { .. } => HITLESS_E_TRANSPORT,
        Error::Timeout { .. } => HITLESS_E_TIMEOUT,
        Error::NotHitless { .. } | Error::NoFirmware { .. } => HITLESS_E_NOT_A_CARD,
        Error::Version { .. } => HITLESS_E_VERSION,
        Error::Device { .. } => HITLESS_E_DEVICE,
        Error::BadCompletion(_) | Error::BadResponse(_) => HITLESS_E_BAD_RESPONSE,
        Error::DmaExhausted { .. } => HITLESS_E_DMA_EXHAUSTED,
        Error::Unsupported { .. } => HITLESS_E_UNSUPPORTED,
        Error::InvalidArgument(_) => HITLESS_E_INVALID_ARGUMENT,
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Self {
            code: error_code(&e),
            msg: e.chain(),
        }
    }
}

type Res<T> = Result<T, Fail>;

thread_local! {
    /// The last failure on this thread: its code and message.
    static LAST: RefCell<(c_int, CString)> = RefCell::new((HITLESS_OK, CString::default()));
}

fn set_last(code: c_int, msg: &str) {
    // A message with a NUL in it is cut there by C anyway; say so instead.
    let msg = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    let _ = LAST.try_with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            *l = (code, msg);
        }
    });
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
}

/// Run an entry point's body: no panic leaves it, a failure is recorded
/// for `hitless_last_error` and answered as its code.
fn guard(f: impl FnOnce() -> Res<()>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => HITLESS_OK,
        Ok(Err(e)) => {
            set_last(e.code, &e.msg);
            e.code
        }
        Err(p) => {
            set_last(
                HITLESS_E_PANIC,
                &format!("internal error in libhitless: {}", panic_message(&*p)),
            );
            HITLESS_E_PANIC
        }
    }
}

// ---- Pointer checks -------------------------------------------------------

fn check_ptr<T>(p: *const T, what: &str) -> Res<()> {
    if p.is_null() {
        return Err(Fail::invalid(format!("{what} is NULL")));
    }
    if !p.is_aligned() {
        return Err(Fail::invalid(format!("{what} is misaligned")));
    }
    Ok(())
}

/// Store `v` at `p` (an out parameter).
///
/// # Safety
/// `p` is NULL or valid for a write of a `T`.
unsafe fn put<T>(p: *mut T, v: T, what: &str) -> Res<()> {
    check_ptr(p, what)?;
    // SAFETY: not NULL and aligned (checked); the caller passes a pointer
    // to a writable `T`.
    unsafe { p.write(v) };
    Ok(())
}

/// Store `v` at `p` unless `p` is NULL (an optional out parameter).
///
/// # Safety
/// As [`put`].
unsafe fn put_opt<T>(p: *mut T, v: T, what: &str) -> Res<()> {
    if p.is_null() {
        return Ok(());
    }
    // SAFETY: forwarded from the caller.
    unsafe { put(p, v, what) }
}

/// The caller's `len` bytes at `p` (at most `max`; NULL allowed when 0).
///
/// # Safety
/// `p` is NULL or valid for reads of `len` bytes for `'a`.
unsafe fn in_bytes<'a>(p: *const u8, len: usize, max: usize, what: &str) -> Res<&'a [u8]> {
    if len > max {
        return Err(Fail::invalid(format!(
            "{what}: {len} bytes (at most {max})"
        )));
    }
    if len == 0 {
        return Ok(&[]);
    }
    check_ptr(p, what)?;
    // SAFETY: not NULL (checked), `len` ≤ `max` ≤ 1 MiB so the slice is
    // far below isize::MAX; the caller passes `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Copy `src` to the caller's buffer at `dst` + `at`; the caller has
/// checked that `at + src.len()` is within the buffer's capacity.
///
/// # Safety
/// `dst` is valid for writes of `at + src.len()` bytes, and does not
/// overlap `src`.
unsafe fn copy_out(dst: *mut u8, at: usize, src: &[u8]) {
    if src.is_empty() {
        return;
    }
    // SAFETY: within the caller's buffer (see above); `src` is this
    // library's memory, never the caller's, so they do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.add(at), src.len()) };
}

/// Write `items` to the caller's array at `dst` (capacity checked by the
/// caller).
///
/// # Safety
/// `dst` is valid for writes of `items.len()` `T`s.
unsafe fn write_array<T: Copy>(dst: *mut T, items: &[T], what: &str) -> Res<()> {
    if items.is_empty() {
        return Ok(());
    }
    check_ptr(dst, what)?;
    // SAFETY: not NULL, aligned (checked); room for `items.len()` (the
    // caller checked the capacity); our memory, no overlap.
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), dst, items.len()) };
    Ok(())
}

/// The card an open call names (`spec`; NULL: `HITLESS_CARD` or the
/// default) and its timeout (`timeout_ms`; 0: the default).
///
/// # Safety
/// `spec` is NULL or a NUL-terminated string.
unsafe fn card_and_timeout(spec: *const c_char, timeout_ms: u32) -> Res<(String, Duration)> {
    let explicit = if spec.is_null() {
        None
    } else {
        // SAFETY: not NULL; a NUL-terminated string (the caller's
        // promise), read up to its bound.
        Some(unsafe { c_str(spec, "spec") }?)
    };
    let ms = if timeout_ms == 0 {
        HITLESS_DEFAULT_TIMEOUT_MS
    } else {
        timeout_ms
    };
    Ok((
        hitless_driver::card_spec(explicit),
        Duration::from_millis(ms.into()),
    ))
}

/// A NUL-terminated string of at most [`HITLESS_MAX_SPEC`] bytes, UTF-8.
///
/// # Safety
/// `p` is NULL or points at a NUL-terminated string (only the bytes up to
/// its NUL, or the bound, are read).
unsafe fn c_str(p: *const c_char, what: &str) -> Res<String> {
    if p.is_null() {
        return Err(Fail::invalid(format!("{what} is NULL")));
    }
    let mut n = 0;
    loop {
        if n > HITLESS_MAX_SPEC {
            return Err(Fail::invalid(format!(
                "{what} longer than {HITLESS_MAX_SPEC} bytes"
            )));
        }
        // SAFETY: bytes 0..n were not NUL, so byte n is still part of the
        // caller's string (or its NUL).
        if unsafe { *p.add(n) } == 0 {
            break;
        }
        n += 1;
    }
    // SAFETY: `p` points at `n` bytes followed by a NUL (just scanned).
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(str::to_owned)
        .map_err(|_| Fail::invalid(format!("{what} is not UTF-8")))
}

/// The card behind a handle.
///
/// # Safety
/// `p` is NULL or a handle from `hitless_open` not yet closed.
unsafe fn card_of<'a>(p: *mut hitless_card) -> Res<&'a hitless_card> {
    check_ptr(p, "card")?;
    // SAFETY: a live handle (the caller's promise), not NULL (checked).
    Ok(unsafe { &*p })
}

/// The session behind a handle.
///
/// # Safety
/// `p` is NULL or a handle from `hitless_session_open` not yet closed.
unsafe fn session_of<'a>(p: *mut hitless_session) -> Res<&'a hitless_session> {
    check_ptr(p, "session")?;
    // SAFETY: a live handle (the caller's promise), not NULL (checked).
    Ok(unsafe { &*p })
}

/// Run `f` on the card's firmware.
fn with_fw<T>(
    card: &Rc<RefCell<CardInner>>,
    f: impl FnOnce(&mut CardInner) -> Result<T, Error>,
) -> Res<T> {
    let mut inner = card.try_borrow_mut().map_err(|_| {
        Fail::invalid("the card is in use by another call (one card used by two threads at once?)")
    })?;
    f(&mut inner).map_err(Fail::from)
}

fn tier(cold: c_int) -> bool {
    cold != 0
}

fn set_info(s: &SetInfo, data_offset: usize) -> hitless_set_info {
    hitless_set_info {
        app: s.app,
        object: s.object,
        endpoint: s.endpoint,
        stage: s.stage,
        cold: u32::from(s.tier == TierSel::Cold),
        len: s.len,
        crc: s.crc,
        data_offset,
    }
}

// ---- Errors, for C --------------------------------------------------------

/// The message of the last failure on the calling thread (the error and
/// its causes on one line); "" when nothing failed yet. The string belongs
/// to the library: do not free it; it is valid until the next call of this
/// library on the same thread.
#[no_mangle]
pub extern "C" fn hitless_last_error() -> *const c_char {
    LAST.try_with(|l| match l.try_borrow() {
        // The CString's buffer stays where it is until the next failure
        // replaces it.
        Ok(l) => l.1.as_ptr(),
        Err(_) => c"".as_ptr(),
    })
    .unwrap_or(c"".as_ptr())
}

/// The code of the last failure on the calling thread (`HITLESS_OK` when
/// nothing failed yet): what `hitless_open` and `hitless_session_open`
/// failed with when they return NULL.
#[no_mangle]
pub extern "C" fn hitless_last_error_code() -> c_int {
    LAST.try_with(|l| l.try_borrow().map(|l| l.0).unwrap_or(HITLESS_OK))
        .unwrap_or(HITLESS_OK)
}

fn strerror_table() -> &'static [(c_int, CString)] {
    static TABLE: std::sync::OnceLock<Vec<(c_int, CString)>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let lib = [
            (HITLESS_E_TRANSPORT, "the transport failed"),
            (HITLESS_E_TIMEOUT, "the card did not answer in time"),
            (HITLESS_E_INVALID_ARGUMENT, "invalid argument"),
            (HITLESS_E_NOT_A_CARD, "not a hitless card, or no firmware"),
            (
                HITLESS_E_VERSION,
                "incompatible contract or message version",
            ),
            (
                HITLESS_E_BAD_RESPONSE,
                "malformed answer from the card or hitlessd",
            ),
            (HITLESS_E_DMA_EXHAUSTED, "DMA window exhausted"),
            (HITLESS_E_UNSUPPORTED, "the card lacks the feature"),
            (HITLESS_E_PANIC, "internal error in libhitless"),
            (
                HITLESS_E_MAYBE_APPLIED,
                "the pair's card was lost during a request not safe to repeat: it may or may not have been applied",
            ),
        ];
        Code::ALL
            .iter()
            .map(|&c| (-(c as c_int), c.describe()))
            .chain(lib)
            .map(|(n, s)| (n, CString::new(s).unwrap_or_default()))
            .collect()
    })
}

/// A fixed description of a result code ("unknown result code" for one
/// this library does not return). Static: do not free.
#[no_mangle]
pub extern "C" fn hitless_strerror(code: c_int) -> *const c_char {
    catch_unwind(|| {
        strerror_table()
            .iter()
            .find(|(n, _)| *n == code)
            .map(|(_, s)| s.as_ptr())
            .unwrap_or(c"unknown result code".as_ptr())
    })
    .unwrap_or(c"unknown result code".as_ptr())
}

// ---- Cards ----------------------------------------------------------------

/// Open a card. `spec` names it as the `hitless` CLI's `--card` does:
/// `daemon:SOCKET` (through hitlessd), `vfio-user:SOCKET` (the simulated
/// card), `vfio:DDDD:BB:DD.F`, `uio:...`, `uart:/dev/ttyUSB0[@BAUD]`; NULL
/// means `$HITLESS_CARD`, else hitlessd's default socket when it exists,
/// else the default simulated card. Every wait on the card is bounded by
/// `timeout_ms` (0: `HITLESS_DEFAULT_TIMEOUT_MS`).
///
/// Returns NULL on failure (`hitless_last_error`, `hitless_last_error_code`
/// say why).
///
/// # Safety
/// `spec` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn hitless_open(spec: *const c_char, timeout_ms: u32) -> *mut hitless_card {
    let mut out = std::ptr::null_mut();
    guard(|| {
        // SAFETY: `spec` is NULL or a NUL-terminated string (the caller's
        // promise).
        let (spec, timeout) = unsafe { card_and_timeout(spec, timeout_ms) }?;
        let fw = hitless_driver::open_firmware(&spec, timeout)?;
        let card = hitless_card {
            inner: Rc::new(RefCell::new(CardInner {
                fw,
                daemon: spec.starts_with("daemon:"),
            })),
        };
        out = Box::into_raw(Box::new(card));
        Ok(())
    });
    out
}

/// Release a card handle (NULL: nothing). Its connection stays open while
/// sessions opened on it are open.
///
/// # Safety
/// `card` is NULL or a handle from `hitless_open` not yet closed; it is
/// invalid afterwards.
#[no_mangle]
pub unsafe extern "C" fn hitless_close(card: *mut hitless_card) {
    if card.is_null() {
        return;
    }
    guard(|| {
        // SAFETY: a live handle from `hitless_open` (made by Box::into_raw),
        // given back once.
        drop(unsafe { Box::from_raw(card) });
        Ok(())
    });
}

/// The firmware's state and counters (no session needed).
///
/// # Safety
/// `card` is NULL or a live handle; `out` is NULL or points at a writable
/// `hitless_card_status`.
#[no_mangle]
pub unsafe extern "C" fn hitless_status(
    card: *mut hitless_card,
    out: *mut hitless_card_status,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let c = unsafe { card_of(card) }?;
        check_ptr(out, "out")?;
        let r = with_fw(&c.inner, |i| i.fw.status())?;
        let t = |t: &hitless_proto::TierReport| hitless_tier_status {
            state: t.state,
            boot_result: t.boot_result,
            sets: t.sets,
            image_bytes: t.image_bytes,
            log_head: t.log_head,
            log_tail: t.log_tail,
        };
        let s = hitless_card_status {
            warm: t(&r.warm),
            cold: t(&r.cold),
            requests: r.requests,
            auth_fails: r.auth_fails,
            stores: r.stores,
            sessions_opened: r.sessions_opened,
            has_announced: u32::from(r.announced.is_some()),
            announced_stage: r.announced.unwrap_or(0),
        };
        // SAFETY: `out` checked above; the caller's writable struct.
        unsafe { put(out, s, "out") }
    })
}

/// Announce reboot stage `stage` to the card (no session needed). With
/// `count_out` not NULL, it receives how many sets (of every application)
/// the card holds for that stage.
///
/// # Safety
/// `card` is NULL or a live handle; `count_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hitless_stage_announce(
    card: *mut hitless_card,
    stage: u32,
    count_out: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let c = unsafe { card_of(card) }?;
        let sets = with_fw(&c.inner, |i| i.fw.announce(stage))?;
        // SAFETY: forwarded from the caller.
        unsafe { put_opt(count_out, sets.len(), "count_out") }
    })
}

// ---- Sessions -------------------------------------------------------------

/// Open a session of application `app` with the permissions `flags`
/// (`HITLESS_READ`, `HITLESS_WRITE`, `HITLESS_LOG`; `HITLESS_ALL`).
///
/// Directly on a card, the application's secret comes from the local
/// secret store (`$HITLESS_CREDENTIALS`, else `$XDG_STATE_HOME/hitless`,
/// else `~/.local/state/hitless`): the first open of an application
/// registers it and saves its new secret there (mode 0600). Through
/// hitlessd (`daemon:`), the daemon keeps the secrets.
///
/// Returns NULL on failure (`hitless_last_error_code`:
/// `HITLESS_E_AUTH_FAILED` when the saved secret is wrong or missing).
///
/// # Safety
/// `card` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hitless_session_open(
    card: *mut hitless_card,
    app: u32,
    flags: u32,
) -> *mut hitless_session {
    let mut out = std::ptr::null_mut();
    guard(|| {
        // SAFETY: forwarded from the caller.
        let c = unsafe { card_of(card) }?;
        if flags == 0 || flags & !HITLESS_ALL != 0 {
            return Err(Fail::invalid(format!(
                "flags {flags:#x}: HITLESS_READ, HITLESS_WRITE and/or HITLESS_LOG"
            )));
        }
        let what = OpenFlags(flags);
        let mut inner = c
            .inner
            .try_borrow_mut()
            .map_err(|_| Fail::invalid("the card is in use by another call"))?;
        let daemon = inner.daemon;
        let s = open_session(&mut *inner.fw, daemon, app, what)?;
        drop(inner);
        out = Box::into_raw(Box::new(hitless_session {
            card: Rc::clone(&c.inner),
            s,
        }));
        Ok(())
    });
    out
}

/// An AUTH_FAILED at open, with where the secret was looked for.
fn auth_hint(e: Error, creds: &Credentials, app: u32, had_secret: bool) -> Fail {
    match e {
        Error::Firmware {
            code: Code::AuthFailed,
            ref detail,
            ..
        } => Fail {
            code: HITLESS_E_AUTH_FAILED,
            msg: format!(
                "the card refused application {app}'s credentials ({}){}",
                if had_secret {
                    format!("{} does not match", creds.path(app).display())
                } else {
                    format!(
                        "the application is registered and {} is missing",
                        creds.path(app).display()
                    )
                },
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            ),
        },
        e => e.into(),
    }
}

/// Close a session (frees its protection entry on the card) and release
/// the handle, which is invalid afterwards even when closing fails. NULL:
/// nothing, `HITLESS_OK`.
///
/// # Safety
/// `session` is NULL or a handle from `hitless_session_open` not yet
/// closed.
#[no_mangle]
pub unsafe extern "C" fn hitless_session_close(session: *mut hitless_session) -> c_int {
    if session.is_null() {
        return HITLESS_OK;
    }
    guard(|| {
        // SAFETY: a live handle from `hitless_session_open` (made by
        // Box::into_raw), given back once.
        let s = unsafe { Box::from_raw(session) };
        with_fw(&s.card, |i| i.fw.close(&s.s))
    })
}

/// Store `len` bytes at `data` (at most `HITLESS_MAX_TRANSFER`) as the set
/// (app, `object`), delivered at reboot stage `stage` to `endpoint`;
/// `cold` nonzero puts it in the cold tier (survives a power cycle). It
/// replaces the object's earlier set atomically.
///
/// # Safety
/// `session` is NULL or a live handle; `data` is NULL or readable for
/// `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hitless_store(
    session: *mut hitless_session,
    object: u32,
    endpoint: u32,
    stage: u32,
    cold: c_int,
    data: *const u8,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let s = unsafe { session_of(session) }?;
        // SAFETY: forwarded from the caller; the length is bounded there.
        let data = unsafe { in_bytes(data, len, MAX_TRANSFER as usize, "data") }?;
        with_fw(&s.card, |i| {
            i.fw.store(&s.s, object, endpoint, stage, tier(cold), data)
        })
    })
}

/// Read the set (app, `object`) into `buf` (capacity `cap`); `*len_out`
/// receives its length. When `cap` is too small: `HITLESS_E_TOO_SMALL`,
/// nothing written to `buf`, `*len_out` the length needed (so `buf` NULL
/// with `cap` 0 asks for the size). A missing set: `HITLESS_E_NOT_FOUND`.
///
/// # Safety
/// `session` is NULL or a live handle; `buf` is NULL or writable for `cap`
/// bytes; `len_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hitless_restore(
    session: *mut hitless_session,
    object: u32,
    buf: *mut u8,
    cap: usize,
    len_out: *mut usize,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { hitless_restore_from(session, object, 0, buf, cap, len_out) }
}

/// `hitless_restore` from the card `endpoint` names: 0 (or the card's own
/// node id) the card the session is on; a replicated card's peer node id:
/// the set stored there with `hitless_store`'s `endpoint`, read back over
/// the card-to-card link. An endpoint that names no card of the pair:
/// `HITLESS_E_INVALID`; the peer unreachable or not answering in time:
/// `HITLESS_E_DEVICE`; a transport that reaches one card only
/// (`backup:`): `HITLESS_E_INVALID_ARGUMENT`.
///
/// # Safety
/// As `hitless_restore`.
#[no_mangle]
pub unsafe extern "C" fn hitless_restore_from(
    session: *mut hitless_session,
    object: u32,
    endpoint: u32,
    buf: *mut u8,
    cap: usize,
    len_out: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let s = unsafe { session_of(session) }?;
        check_ptr(len_out, "len_out")?;
        let (info, bytes) = with_fw(&s.card, |i| i.fw.restore_from(&s.s, object, endpoint))?;
        // SAFETY: checked above; the caller's writable size_t.
        unsafe { put(len_out, bytes.len(), "len_out") }?;
        if bytes.len() > cap {
            return Err(Fail::too_small(format!(
                "set {}/{} is {} bytes, the buffer {cap}",
                info.app,
                info.object,
                bytes.len()
            )));
        }
        if !bytes.is_empty() {
            check_ptr(buf, "buf")?;
            // SAFETY: `buf` is not NULL and has `cap` ≥ `bytes.len()`
            // writable bytes (the caller's promise).
            unsafe { copy_out(buf, 0, &bytes) };
        }
        Ok(())
    })
}

/// Delete the set (app, `object`) from whichever tier holds it
/// (`HITLESS_E_NOT_FOUND` when none does).
///
/// # Safety
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hitless_delete(session: *mut hitless_session, object: u32) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { hitless_delete_from(session, object, 0) }
}

/// `hitless_delete` on the card `endpoint` names (see
/// `hitless_restore_from`): on a peer, `HITLESS_OK` when the peer's
/// delete is durable; a peer whose firmware has no remote delete:
/// `HITLESS_E_DEVICE`, nothing deleted.
///
/// # Safety
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hitless_delete_from(
    session: *mut hitless_session,
    object: u32,
    endpoint: u32,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let s = unsafe { session_of(session) }?;
        with_fw(&s.card, |i| i.fw.delete_from(&s.s, object, endpoint))
    })
}

/// The session's sets: up to `cap` of them into `out`; `*count_out`
/// receives how many there are. When there are more than `cap`:
/// `HITLESS_E_TOO_SMALL`, nothing written to `out`, `*count_out` the count
/// needed.
///
/// # Safety
/// `session` is NULL or a live handle; `out` is NULL or writable for `cap`
/// records; `count_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hitless_list(
    session: *mut hitless_session,
    out: *mut hitless_set_info,
    cap: usize,
    count_out: *mut usize,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { hitless_list_from(session, 0, out, cap, count_out) }
}

/// `hitless_list` of the card `endpoint` names (see
/// `hitless_restore_from`): on a peer, the sets it holds for the
/// session's application (stored with `hitless_store`'s `endpoint`).
///
/// # Safety
/// As `hitless_list`.
#[no_mangle]
pub unsafe extern "C" fn hitless_list_from(
    session: *mut hitless_session,
    endpoint: u32,
    out: *mut hitless_set_info,
    cap: usize,
    count_out: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let s = unsafe { session_of(session) }?;
        check_ptr(count_out, "count_out")?;
        let sets = with_fw(&s.card, |i| i.fw.list_from(&s.s, endpoint))?;
        // SAFETY: checked above.
        unsafe { put(count_out, sets.len(), "count_out") }?;
        if sets.len() > cap {
            return Err(Fail::too_small(format!(
                "{} sets, room for {cap}",
                sets.len()
            )));
        }
        let v: Vec<_> = sets.iter().map(|x| set_info(x, 0)).collect();
        // SAFETY: `out` has room for `cap` ≥ `v.len()` records (the
        // caller's promise; NULL and alignment checked inside).
        unsafe { write_array(out, &v, "out") }
    })
}

/// The session's sets of an announced reboot stage (see
/// `hitless_stage_announce`), with their bytes: the bytes packed one after
/// another into `buf` (capacity `cap`), each set's record (its
/// `data_offset` says where its bytes start) into `sets` (capacity
/// `sets_cap`). `*count_out` and `*len_out` receive the number of sets and
/// the bytes used. When either capacity is too small: `HITLESS_E_TOO_SMALL`,
/// nothing written to `buf` or `sets`, the outs say what is needed. A stage
/// not announced yet: `HITLESS_E_NOT_YET`.
///
/// # Safety
/// `session` is NULL or a live handle; `buf` is NULL or writable for `cap`
/// bytes; `sets` is NULL or writable for `sets_cap` records; `count_out`
/// and `len_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hitless_stage_fetch(
    session: *mut hitless_session,
    stage: u32,
    buf: *mut u8,
    cap: usize,
    sets: *mut hitless_set_info,
    sets_cap: usize,
    count_out: *mut usize,
    len_out: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let s = unsafe { session_of(session) }?;
        check_ptr(count_out, "count_out")?;
        check_ptr(len_out, "len_out")?;
        let got = with_fw(&s.card, |i| i.fw.fetch(&s.s, stage))?;
        let mut infos = Vec::with_capacity(got.len());
        let mut at = 0usize;
        for (info, bytes) in &got {
            infos.push(set_info(info, at));
            at += bytes.len();
        }
        // SAFETY: checked above.
        unsafe { put(count_out, got.len(), "count_out") }?;
        // SAFETY: checked above.
        unsafe { put(len_out, at, "len_out") }?;
        if got.len() > sets_cap || at > cap {
            return Err(Fail::too_small(format!(
                "stage {stage}: {} sets of {at} bytes, room for {sets_cap} sets and {cap} bytes",
                got.len()
            )));
        }
        if at > 0 {
            check_ptr(buf, "buf")?;
        }
        // SAFETY: `sets` has room for `sets_cap` ≥ `infos.len()` records.
        unsafe { write_array(sets, &infos, "sets") }?;
        for (info, (_, bytes)) in infos.iter().zip(&got) {
            // SAFETY: `buf` is not NULL (when any byte is written) and
            // has `cap` ≥ `at` writable bytes; each set lies within
            // `data_offset + len` ≤ `at`.
            unsafe { copy_out(buf, info.data_offset, bytes) };
        }
        Ok(())
    })
}

/// `hitless_log_append` and `hitless_log_overwrite`.
///
/// # Safety
/// As `hitless_log_append`.
unsafe fn append(
    session: *mut hitless_session,
    object: u32,
    cold: c_int,
    overwrite: bool,
    data: *const u8,
    len: usize,
    offset_out: *mut u32,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller (a live handle or NULL).
        let s = unsafe { session_of(session) }?;
        // SAFETY: forwarded from the caller; the length is bounded there.
        let data = unsafe { in_bytes(data, len, MAX_TRANSFER as usize, "data") }?;
        let offset = with_fw(&s.card, |i| {
            i.fw.log_append(&s.s, object, tier(cold), overwrite, data)
        })?;
        // SAFETY: forwarded from the caller (NULL or a writable u32).
        unsafe { put_opt(offset_out, offset, "offset_out") }
    })
}

/// Append `len` bytes at `data` as a record of `object` to a tier's append
/// log (`cold` nonzero: the cold tier's). With `offset_out` not NULL, it
/// receives the record's log offset. A full log: `HITLESS_E_LOG_FULL`.
///
/// # Safety
/// `session` is NULL or a live handle; `data` is NULL or readable for
/// `len` bytes; `offset_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hitless_log_append(
    session: *mut hitless_session,
    object: u32,
    cold: c_int,
    data: *const u8,
    len: usize,
    offset_out: *mut u32,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { append(session, object, cold, false, data, len, offset_out) }
}

/// As `hitless_log_append`, in overwrite mode: the record replaces the
/// application's earlier records in the log.
///
/// # Safety
/// As `hitless_log_append`.
#[no_mangle]
pub unsafe extern "C" fn hitless_log_overwrite(
    session: *mut hitless_session,
    object: u32,
    cold: c_int,
    data: *const u8,
    len: usize,
    offset_out: *mut u32,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { append(session, object, cold, true, data, len, offset_out) }
}

/// Every unread record of the application in a tier's log: payloads
/// packed one after another into `buf` (capacity `cap`), the records
/// (each `data_offset` says where its payload starts) into `records`
/// (capacity `records_cap`). `*count_out` and `*len_out` receive the
/// number of records and the bytes used; `head_out` and `tail_out`, when
/// not NULL, the log's head and tail (trim to the head to consume all).
/// When either capacity is too small: `HITLESS_E_TOO_SMALL`, nothing
/// written to `buf` or `records`, the outs say what is needed.
///
/// # Safety
/// `session` is NULL or a live handle; `buf` is NULL or writable for `cap`
/// bytes; `records` is NULL or writable for `records_cap` records; the
/// outs are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hitless_log_read(
    session: *mut hitless_session,
    cold: c_int,
    buf: *mut u8,
    cap: usize,
    records: *mut hitless_log_record,
    records_cap: usize,
    count_out: *mut usize,
    len_out: *mut usize,
    head_out: *mut u32,
    tail_out: *mut u32,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let s = unsafe { session_of(session) }?;
        check_ptr(count_out, "count_out")?;
        check_ptr(len_out, "len_out")?;
        let log = with_fw(&s.card, |i| i.fw.log_read(&s.s, tier(cold)))?;
        let mut recs = Vec::with_capacity(log.records.len());
        let mut at = 0usize;
        for (li, bytes) in &log.records {
            recs.push(hitless_log_record {
                object: li.object,
                offset: li.offset,
                seq: li.seq,
                len: bytes.len() as u32,
                data_offset: at,
            });
            at += bytes.len();
        }
        // SAFETY: checked above / NULL allowed (the caller's promise).
        unsafe {
            put(count_out, recs.len(), "count_out")?;
            put(len_out, at, "len_out")?;
            put_opt(head_out, log.head, "head_out")?;
            put_opt(tail_out, log.tail, "tail_out")?;
        }
        if recs.len() > records_cap || at > cap {
            return Err(Fail::too_small(format!(
                "{} log records of {at} bytes, room for {records_cap} records and {cap} bytes",
                recs.len()
            )));
        }
        if at > 0 {
            check_ptr(buf, "buf")?;
        }
        // SAFETY: `records` has room for `records_cap` ≥ `recs.len()`.
        unsafe { write_array(records, &recs, "records") }?;
        for (r, (_, bytes)) in recs.iter().zip(&log.records) {
            // SAFETY: `buf` is not NULL (when any byte is written) and has
            // `cap` ≥ `at` writable bytes; each payload lies within
            // `data_offset + len` ≤ `at`.
            unsafe { copy_out(buf, r.data_offset, bytes) };
        }
        Ok(())
    })
}

/// Clear a tier's log up to `to` (a record's offset, or the head from
/// `hitless_log_read`): the reader has consumed it.
///
/// # Safety
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hitless_log_trim(
    session: *mut hitless_session,
    cold: c_int,
    to: u32,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let s = unsafe { session_of(session) }?;
        with_fw(&s.card, |i| i.fw.log_trim(&s.s, tier(cold), to))
    })
}

// ---- The persistent heap --------------------------------------------------

/// `hitless_heap_open` flags: track writes explicitly (`hitless_heap_write`,
/// or `hitless_heap_mark_dirty` before writing through the pointer) instead
/// of write-protecting the mapped heap (the default: userfaultfd
/// write-protect where the kernel has it, else mprotect).
pub const HITLESS_HEAP_EXPLICIT: u32 = 1;

/// A heap's pages are this many bytes.
pub const HITLESS_HEAP_PAGE_BYTES: usize = 4096;

/// A persistent heap of one application on a card (directly or through
/// hitlessd; `docs/heap.md`). Opaque. Its own connection to the card (the
/// heap's fault handler uses it from another thread); its calls may come
/// from any thread.
pub struct hitless_heap {
    heap: hitless_heap_lib::Heap,
}

/// One committed version of a heap (`hitless_heap_versions`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct hitless_heap_version {
    /// Its number (they increase; the newest is the current one).
    pub version: u64,
    /// Pages written in the checkpoint that made it.
    pub pages: u64,
    /// Bytes of the application's state it carries.
    pub state_len: u64,
}

/// A heap library error as a C failure: the card's refusal keeps its code.
fn heap_fail(e: hitless_heap_lib::HeapError) -> Fail {
    use hitless_heap_lib::{CardStoreError, HeapError, StoreError};
    let code = match &e {
        HeapError::Store(StoreError::Backend(b)) => match b.downcast_ref::<CardStoreError>() {
            Some(CardStoreError::Driver(d)) => error_code(d),
            Some(CardStoreError::StagedLost(_)) => HITLESS_E_LOST,
            None => HITLESS_E_DEVICE,
        },
        HeapError::Store(StoreError::NoSuchVersion(_)) => HITLESS_E_NOT_FOUND,
        HeapError::Timeout => HITLESS_E_TIMEOUT,
        HeapError::OutOfRange { .. } | HeapError::Config(_) => HITLESS_E_INVALID_ARGUMENT,
        _ => HITLESS_E_DEVICE,
    };
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    Fail { code, msg }
}

/// Heap `heap` of application `app` on a session `fw` opens (through the
/// daemon: no secret), `(app, heap, heap_pages, keep, cold)`. Generic, not
/// `dyn`: the heap's store must be Send (its fault handler runs on another
/// thread), and each path has its own client type.
fn open_heap<F: Firmware + Send + 'static>(
    mut fw: F,
    daemon: bool,
    (app, heap, heap_pages, keep, cold): (u32, u32, u64, u32, bool),
    config: hitless_heap_lib::HeapConfig,
) -> Res<hitless_heap_lib::Heap> {
    let s = open_session(&mut fw, daemon, app, OpenFlags::all())?;
    let store = hitless_heap_lib::CardStore::open(fw, s, heap, heap_pages, keep, cold)
        .map_err(|e| heap_fail(e.into()))?;
    hitless_heap_lib::Heap::open(store, config).map_err(heap_fail)
}

/// A session of `app` on `fw`: through hitlessd the daemon holds the
/// secret; directly, the local secret store does (registered at the first
/// open).
fn open_session(fw: &mut dyn Firmware, daemon: bool, app: u32, what: OpenFlags) -> Res<Session> {
    if daemon {
        return Ok(fw.open_app(app, what, None)?.0);
    }
    let creds = Credentials::new(None)?;
    let secret = creds.load(app)?;
    let (s, fresh) = fw
        .open_app(app, what, secret.as_ref())
        .map_err(|e| auth_hint(e, &creds, app, secret.is_some()))?;
    if let Some(n) = fresh {
        if let Err(e) = creds.save(app, &n) {
            let _ = fw.close(&s);
            return Err(Fail {
                code: error_code(&e),
                msg: format!(
                    "application {app} is registered but its secret could not be \
                     saved (later opens will be refused): {}",
                    e.chain()
                ),
            });
        }
    }
    Ok(s)
}

/// The heap behind a handle.
///
/// # Safety
/// `p` is NULL or a handle from `hitless_heap_open` not yet closed.
unsafe fn heap_of<'a>(p: *mut hitless_heap) -> Res<&'a hitless_heap> {
    check_ptr(p, "heap")?;
    // SAFETY: a live handle (the caller's promise), not NULL (checked).
    Ok(unsafe { &*p })
}

/// Open heap `heap` (0..=255) of application `app` on the card `spec` names
/// (as `hitless_open`: `daemon:SOCKET` through hitlessd, or the card
/// itself), creating it with `heap_pages` pages of
/// `HITLESS_HEAP_PAGE_BYTES` keeping `keep` versions (0: 4) in the cold
/// (`cold` nonzero, survives a power cycle) or warm tier when it does not
/// exist. At most `resident_pages` pages (0: 256) are in memory at once;
/// the heap's contents are its newest version. `flags`: 0 or
/// `HITLESS_HEAP_EXPLICIT`.
///
/// Through hitlessd one process at a time holds a heap: another opening
/// it gets `HITLESS_E_PERMISSION` until the first closes it or exits; a
/// process that exits (or is killed) without checkpointing loses what it
/// wrote since its last checkpoint, nothing else.
///
/// Returns NULL on failure (`hitless_last_error` says why).
///
/// # Safety
/// `spec` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn hitless_heap_open(
    spec: *const c_char,
    timeout_ms: u32,
    app: u32,
    heap: u32,
    heap_pages: u64,
    keep: u32,
    cold: c_int,
    resident_pages: usize,
    flags: u32,
) -> *mut hitless_heap {
    use hitless_heap_lib::{HeapConfig, Tracking};
    let mut out = std::ptr::null_mut();
    guard(|| {
        // SAFETY: `spec` is NULL or a NUL-terminated string (the caller's
        // promise).
        let (spec, timeout) = unsafe { card_and_timeout(spec, timeout_ms) }?;
        if flags & !HITLESS_HEAP_EXPLICIT != 0 {
            return Err(Fail::invalid(format!(
                "flags {flags:#x}: 0 or HITLESS_HEAP_EXPLICIT"
            )));
        }
        let tracking = if flags & HITLESS_HEAP_EXPLICIT != 0 {
            Tracking::Explicit
        } else if hitless_heap_lib::uffd_wp_available() {
            Tracking::UffdWp
        } else {
            Tracking::Mprotect
        };
        let config = HeapConfig {
            resident_pages: if resident_pages == 0 {
                HeapConfig::default().resident_pages
            } else {
                resident_pages
            },
            tracking,
            ..HeapConfig::default()
        };
        // Each path's own client type: the heap's store must be Send (its
        // fault handler runs on another thread).
        let h = match spec.strip_prefix("daemon:") {
            Some(path) => open_heap(
                hitless_driver::daemon::DaemonClient::connect(std::path::Path::new(path), timeout)?,
                true,
                (app, heap, heap_pages, keep, tier(cold)),
                config,
            )?,
            None => {
                let io = hitless_driver::open_card(&spec, timeout)?;
                open_heap(
                    hitless_driver::firmware::Client::open(io, timeout)?,
                    false,
                    (app, heap, heap_pages, keep, tier(cold)),
                    config,
                )?
            }
        };
        out = Box::into_raw(Box::new(hitless_heap { heap: h }));
        Ok(())
    });
    out
}

/// Close a heap: what was written since the last checkpoint is dropped,
/// the committed versions stay. The handle (and the pointer of
/// `hitless_heap_ptr`) is invalid afterwards. NULL: nothing.
///
/// # Safety
/// `heap` is NULL or a handle from `hitless_heap_open` not yet closed, and
/// no thread uses its memory any more.
#[no_mangle]
pub unsafe extern "C" fn hitless_heap_close(heap: *mut hitless_heap) -> c_int {
    if heap.is_null() {
        return HITLESS_OK;
    }
    guard(|| {
        // SAFETY: a live handle from `hitless_heap_open` (made by
        // Box::into_raw), given back once.
        drop(unsafe { Box::from_raw(heap) });
        Ok(())
    })
}

/// The heap's memory: `*len_out` (when not NULL) receives its size in
/// bytes. Loads and stores through it are tracked (pages fault in from the
/// card on first touch; writes mark pages dirty), except with
/// `HITLESS_HEAP_EXPLICIT`, where only ranges made accessible by
/// `hitless_heap_mark_dirty` may be touched. NULL on failure. Valid until
/// `hitless_heap_close`.
///
/// # Safety
/// `heap` is NULL or a live handle; `len_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hitless_heap_ptr(heap: *mut hitless_heap, len_out: *mut usize) -> *mut u8 {
    let mut out = std::ptr::null_mut();
    guard(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { heap_of(heap) }?;
        // SAFETY: forwarded from the caller.
        unsafe { put_opt(len_out, h.heap.len(), "len_out") }?;
        out = h.heap.as_ptr();
        Ok(())
    });
    out
}

/// Copy `len` bytes of the heap at `offset` into `buf`.
///
/// # Safety
/// `heap` is NULL or a live handle; `buf` is NULL or writable for `len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn hitless_heap_read(
    heap: *mut hitless_heap,
    offset: u64,
    buf: *mut u8,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { heap_of(heap) }?;
        if len == 0 {
            return Ok(());
        }
        if len > h.heap.len() {
            return Err(Fail::invalid(format!(
                "{len} bytes: the heap has {}",
                h.heap.len()
            )));
        }
        check_ptr(buf, "buf")?;
        // SAFETY: not NULL (checked); `len` is at most the heap's size (far
        // below isize::MAX); the caller passes `len` writable bytes that
        // are not the heap's own.
        let b = unsafe { std::slice::from_raw_parts_mut(buf, len) };
        h.heap.read(offset, b).map_err(heap_fail)
    })
}

/// Write `len` bytes from `data` into the heap at `offset` (the pages
/// become dirty).
///
/// # Safety
/// `heap` is NULL or a live handle; `data` is NULL or readable for `len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn hitless_heap_write(
    heap: *mut hitless_heap,
    offset: u64,
    data: *const u8,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { heap_of(heap) }?;
        // SAFETY: forwarded from the caller; bounded by the heap's size.
        let d = unsafe { in_bytes(data, len, h.heap.len(), "data") }?;
        h.heap.write(offset, d).map_err(heap_fail)
    })
}

/// Mark `len` bytes at `offset` dirty before writing them through
/// `hitless_heap_ptr` (needed with `HITLESS_HEAP_EXPLICIT`; harmless
/// otherwise): they are faulted in and made writable.
///
/// # Safety
/// `heap` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hitless_heap_mark_dirty(
    heap: *mut hitless_heap,
    offset: u64,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { heap_of(heap) }?;
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| Fail::invalid("offset + len overflows"))?;
        h.heap.mark_dirty(offset..end).map_err(heap_fail)
    })
}

/// Checkpoint: every dirty page plus the application's own `state` (an
/// opaque blob of `state_len` bytes, at most `HITLESS_MAX_TRANSFER` * 4)
/// become one new version, atomically: after any crash or power cut the
/// version exists whole or not at all. `*version_out` (when not NULL)
/// receives its number.
///
/// # Safety
/// `heap` is NULL or a live handle; `state` is NULL or readable for
/// `state_len` bytes; `version_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hitless_heap_checkpoint(
    heap: *mut hitless_heap,
    state: *const u8,
    state_len: usize,
    version_out: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { heap_of(heap) }?;
        // SAFETY: forwarded from the caller; the length is bounded here.
        let st = unsafe { in_bytes(state, state_len, 4 * HITLESS_MAX_TRANSFER, "state") }?;
        let v = h.heap.checkpoint(st).map_err(heap_fail)?;
        // SAFETY: forwarded from the caller.
        unsafe { put_opt(version_out, v.version, "version_out") }
    })
}

/// The heap's kept versions, oldest first: up to `cap` into `out`;
/// `*count_out` receives how many there are (more than `cap`:
/// `HITLESS_E_TOO_SMALL`, nothing written to `out`).
///
/// # Safety
/// `heap` is NULL or a live handle; `out` is NULL or writable for `cap`
/// records; `count_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hitless_heap_versions(
    heap: *mut hitless_heap,
    out: *mut hitless_heap_version,
    cap: usize,
    count_out: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { heap_of(heap) }?;
        check_ptr(count_out, "count_out")?;
        let vs = h.heap.versions().map_err(heap_fail)?;
        // SAFETY: checked above.
        unsafe { put(count_out, vs.len(), "count_out") }?;
        if vs.len() > cap {
            return Err(Fail::too_small(format!(
                "{} versions, room for {cap}",
                vs.len()
            )));
        }
        let v: Vec<_> = vs
            .iter()
            .map(|v| hitless_heap_version {
                version: v.version,
                pages: v.pages,
                state_len: v.state_len,
            })
            .collect();
        // SAFETY: `out` has room for `cap` ≥ `v.len()` records (the
        // caller's promise; NULL and alignment checked inside).
        unsafe { write_array(out, &v, "out") }
    })
}

/// Restart from `version`: the heap's contents become that version's (what
/// was written since the last checkpoint is dropped) and the next
/// checkpoint builds on it. Its state goes to `state` (capacity `cap`);
/// `*state_len_out` receives its length. When `cap` is too small:
/// `HITLESS_E_TOO_SMALL` (the restart is done; call again with a larger
/// buffer). A version not kept: `HITLESS_E_NOT_FOUND`, nothing changed.
///
/// # Safety
/// `heap` is NULL or a live handle; `state` is NULL or writable for `cap`
/// bytes; `state_len_out` is NULL or writable. No other thread touches
/// the heap's memory meanwhile.
#[no_mangle]
pub unsafe extern "C" fn hitless_heap_restart_from(
    heap: *mut hitless_heap,
    version: u64,
    state: *mut u8,
    cap: usize,
    state_len_out: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let h = unsafe { heap_of(heap) }?;
        check_ptr(state_len_out, "state_len_out")?;
        let st = h.heap.restart_from(version).map_err(heap_fail)?;
        // SAFETY: checked above.
        unsafe { put(state_len_out, st.len(), "state_len_out") }?;
        if st.len() > cap {
            return Err(Fail::too_small(format!(
                "version {version}'s state is {} bytes, the buffer {cap}",
                st.len()
            )));
        }
        if !st.is_empty() {
            check_ptr(state, "state")?;
            // SAFETY: `state` is not NULL and has `cap` ≥ `st.len()`
            // writable bytes (the caller's promise).
            unsafe { copy_out(state, 0, &st) };
        }
        Ok(())
    })
}

/// `hitless_heap_migrate` flags: copy, keeping the heap on the source
/// (default: the source's heap is deleted once the destination committed).
pub const HITLESS_MIGRATE_KEEP_SOURCE: u32 = 1;

/// What `hitless_heap_migrate` did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct hitless_heap_migrated {
    /// The source's version that moved.
    pub source_version: u64,
    /// The version the destination committed with its contents.
    pub destination_version: u64,
    /// Pages sent (those changed since the base, or every written page).
    pub pages: u64,
    /// The base (source version, destination version) it started from;
    /// both 0: a full copy.
    pub base_source: u64,
    /// The destination's side of the base (0 with `base_source` 0).
    pub base_destination: u64,
}

/// Move heap `heap` of the application of session `src` to the card of
/// session `dst` (a session of the same application on another card,
/// opened with `hitless_session_open`), committed on both cards or on
/// neither, sending only the pages changed since a version both hold:
/// `since` NULL finds that base (a previous migration between the two
/// cards recorded it; none and a destination without the heap: a full
/// copy; none and unrelated versions there: `HITLESS_E_INVALID_ARGUMENT`,
/// nothing changed), else `since[0]` (source) and `since[1]`
/// (destination) name two versions with the same contents. A heap the
/// destination lacks is created with the source's size, K = 4, cold
/// tier. `flags`: 0 (move: the source's heap is deleted after the
/// destination committed) or `HITLESS_MIGRATE_KEEP_SOURCE`. No process
/// may hold the heap open meanwhile (through hitlessd: refused,
/// `HITLESS_E_PERMISSION`). `out` (may be NULL) receives what was done.
/// `docs/heap.md`, "Migration".
///
/// # Safety
/// `src` and `dst` are NULL or live session handles; `since` is NULL or
/// readable for two `uint64_t`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hitless_heap_migrate(
    src: *mut hitless_session,
    dst: *mut hitless_session,
    heap: u32,
    since: *const u64,
    flags: u32,
    out: *mut hitless_heap_migrated,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let (a, b) = unsafe { (session_of(src)?, session_of(dst)?) };
        if flags & !HITLESS_MIGRATE_KEEP_SOURCE != 0 {
            return Err(Fail::invalid(format!(
                "flags {flags:#x}: 0 or HITLESS_MIGRATE_KEEP_SOURCE"
            )));
        }
        if Rc::ptr_eq(&a.card, &b.card) {
            return Err(Fail::invalid(
                "the source and destination sessions are on the same card",
            ));
        }
        if a.s.app != b.s.app {
            return Err(Fail::invalid(format!(
                "the sessions are of applications {} and {}: a heap moves within one application",
                a.s.app, b.s.app
            )));
        }
        let since = if since.is_null() {
            None
        } else {
            check_ptr(since, "since")?;
            // SAFETY: not NULL, aligned (checked), readable for two u64
            // (the caller's promise).
            Some(unsafe { (since.read(), since.add(1).read()) })
        };
        let mut sa = a
            .card
            .try_borrow_mut()
            .map_err(|_| Fail::invalid("the source card is in use by another call"))?;
        let mut sb = b
            .card
            .try_borrow_mut()
            .map_err(|_| Fail::invalid("the destination card is in use by another call"))?;
        let moved = hitless_driver::heaps::migrate(
            &mut *sa.fw,
            &a.s,
            &mut *sb.fw,
            &b.s,
            hitless_driver::heaps::MigrateRequest {
                heap,
                since,
                remove: flags & HITLESS_MIGRATE_KEEP_SOURCE == 0,
            },
            &mut |_, _| {},
        )?;
        let (bs, bd) = moved.since.unwrap_or((0, 0));
        let m = moved.migrated;
        let r = hitless_heap_migrated {
            source_version: m.src_version,
            destination_version: m.dst_version,
            pages: m.pages as u64,
            base_source: bs,
            base_destination: bd,
        };
        // SAFETY: forwarded from the caller.
        unsafe { put_opt(out, r, "out") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitless_hdl::contract::BootResult;
    use hitless_proto::msg::flags;
    use hitless_proto::TierReport;

    #[test]
    fn codes_and_flags_are_the_protocols() {
        let named = [
            HITLESS_E_BAD_MESSAGE,
            HITLESS_E_UNKNOWN_REQUEST,
            HITLESS_E_AUTH_FAILED,
            HITLESS_E_NOT_FOUND,
            HITLESS_E_NO_SPACE,
            HITLESS_E_TOO_SMALL,
            HITLESS_E_NOT_YET,
            HITLESS_E_LOG_FULL,
            HITLESS_E_FOREIGN,
            HITLESS_E_DEVICE,
            HITLESS_E_LOST,
            HITLESS_E_NO_SESSION,
            HITLESS_E_HOST_MEMORY,
            HITLESS_E_PERMISSION,
            HITLESS_E_INVALID,
            HITLESS_E_NOT_MASTER,
        ];
        assert_eq!(named.len(), Code::ALL.len() - 1);
        for (c, n) in Code::ALL[1..].iter().zip(named) {
            assert_eq!(card_code(*c), n, "{c:?}");
        }
        assert_eq!(HITLESS_READ, flags::READ);
        assert_eq!(HITLESS_WRITE, flags::WRITE);
        assert_eq!(HITLESS_LOG, flags::LOG);
        assert_eq!(HITLESS_MAX_TRANSFER, MAX_TRANSFER as usize);
        assert_eq!(HITLESS_TIER_READY, TierReport::READY);
        assert_eq!(HITLESS_TIER_LOST, TierReport::LOST);
        assert_eq!(HITLESS_TIER_FOREIGN, TierReport::FOREIGN);
        let boot = [
            HITLESS_BOOT_EMPTY,
            HITLESS_BOOT_OK,
            HITLESS_BOOT_FELL_BACK,
            HITLESS_BOOT_LOST,
        ];
        for (b, n) in BootResult::ALL.iter().zip(boot) {
            assert_eq!(*b as u32, n, "{b:?}");
        }
        // Every code this library returns has a description.
        let lib = [
            HITLESS_E_TRANSPORT,
            HITLESS_E_TIMEOUT,
            HITLESS_E_INVALID_ARGUMENT,
            HITLESS_E_NOT_A_CARD,
            HITLESS_E_VERSION,
            HITLESS_E_BAD_RESPONSE,
            HITLESS_E_DMA_EXHAUSTED,
            HITLESS_E_UNSUPPORTED,
            HITLESS_E_PANIC,
        ];
        for n in named.into_iter().chain(lib) {
            // SAFETY: a static NUL-terminated string.
            let s = unsafe { CStr::from_ptr(hitless_strerror(n)) };
            assert_ne!(s.to_bytes(), b"unknown result code", "{n}");
        }
    }

    fn last() -> (c_int, String) {
        // SAFETY: the library's NUL-terminated string, read at once.
        let msg = unsafe { CStr::from_ptr(hitless_last_error()) };
        (
            hitless_last_error_code(),
            msg.to_string_lossy().into_owned(),
        )
    }

    #[test]
    fn bad_arguments_are_refused_with_a_message() {
        // SAFETY: a NUL-terminated literal.
        let c = unsafe { hitless_open(c"nonsense".as_ptr(), 100) };
        assert!(c.is_null());
        let (code, msg) = last();
        assert_eq!(code, HITLESS_E_INVALID_ARGUMENT);
        assert!(msg.contains("expected KIND:ADDRESS"), "{msg}");
        let long = CString::new("x".repeat(HITLESS_MAX_SPEC + 10)).unwrap();
        // SAFETY: a NUL-terminated string.
        assert!(unsafe { hitless_open(long.as_ptr(), 100) }.is_null());
        assert!(last().1.contains("longer than"), "{}", last().1);
        let missing = c"vfio-user:/nonexistent/hitless-capi.sock";
        // SAFETY: a NUL-terminated literal.
        assert!(unsafe { hitless_open(missing.as_ptr(), 100) }.is_null());
        assert_eq!(last().0, HITLESS_E_TRANSPORT, "{}", last().1);

        // NULL handles and outs.
        let mut n = 0usize;
        let null_s = std::ptr::null_mut();
        // SAFETY: NULL handles are allowed (and refused).
        unsafe {
            assert_eq!(
                hitless_status(std::ptr::null_mut(), std::ptr::null_mut()),
                HITLESS_E_INVALID_ARGUMENT
            );
            assert!(last().1.contains("card is NULL"));
            assert!(hitless_session_open(std::ptr::null_mut(), 1, HITLESS_ALL).is_null());
            assert_eq!(
                hitless_store(null_s, 0, 0, 0, 0, std::ptr::null(), 0),
                HITLESS_E_INVALID_ARGUMENT
            );
            assert_eq!(
                hitless_restore(null_s, 0, std::ptr::null_mut(), 0, &mut n),
                HITLESS_E_INVALID_ARGUMENT
            );
            assert_eq!(hitless_delete(null_s, 0), HITLESS_E_INVALID_ARGUMENT);
            assert_eq!(
                hitless_list(null_s, std::ptr::null_mut(), 0, &mut n),
                HITLESS_E_INVALID_ARGUMENT
            );
            assert_eq!(hitless_log_trim(null_s, 0, 0), HITLESS_E_INVALID_ARGUMENT);
            assert_eq!(hitless_session_close(null_s), HITLESS_OK);
            hitless_close(std::ptr::null_mut());
        }
        // The message of a failure stays until the next one.
        assert!(last().1.contains("session is NULL"), "{}", last().1);
    }

    #[test]
    fn lengths_are_bounded_before_any_slice_is_made() {
        let p = std::ptr::dangling::<u8>(); // never read: the length is refused first
                                            // SAFETY: a length over the bound is refused without touching `p`.
        let e = unsafe { in_bytes(p, usize::MAX, MAX_TRANSFER as usize, "data") }.unwrap_err();
        assert_eq!(e.code, HITLESS_E_INVALID_ARGUMENT);
        // SAFETY: NULL with a length is refused.
        let e = unsafe { in_bytes(std::ptr::null(), 5, 10, "data") }.unwrap_err();
        assert!(e.msg.contains("NULL"));
        let misaligned = std::ptr::dangling_mut::<u32>().wrapping_byte_add(1);
        // SAFETY: a misaligned pointer is refused without a write.
        let e = unsafe { put(misaligned, 1, "out") }.unwrap_err();
        assert!(e.msg.contains("misaligned"));
    }

    #[test]
    fn a_panic_becomes_an_error_code() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let code = guard(|| panic!("boom"));
        std::panic::set_hook(prev);
        assert_eq!(code, HITLESS_E_PANIC);
        assert!(last().1.contains("boom"));
    }
}
