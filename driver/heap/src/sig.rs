//! The Mprotect tracking mode: a process-wide SIGSEGV handler that hands
//! faults on a heap's range to that heap's resolver thread.
//!
//! Async-signal-safety: the handler only
//! - loads atomics of a static slot table (lock-free, no allocation),
//! - calls write(2) on a pipe, futex(2) to wait with a timeout, and
//!   sigaction(2) / raise(3) to give up — all async-signal-safe system calls,
//! - saves and restores errno around them.
//!
//! It takes no lock and allocates nothing, so it cannot deadlock with code
//! it interrupted (the resolver thread does the store I/O and takes the
//! heap's lock). It can wait for a thread that is itself blocked on the heap
//! lock held by the interrupted thread only if that thread touched an
//! inaccessible heap page while holding the lock, which the library's own
//! code never does (it faults pages in before copying); the wait is bounded
//! (the heap's `fault_timeout`) and ends in SIGBUS rather than a hang.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicI64, AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use tracing::error;

use crate::error::{HeapError, Result};
use crate::heap::Shared;
use crate::table::PageState;

const SLOTS: usize = 16;
const WAIT_STEP_MS: i64 = 100;

struct SlotData {
    in_use: AtomicBool,
    base: AtomicUsize,
    len: AtomicUsize,
    page_shift: AtomicU32,
    states: AtomicPtr<AtomicU8>,
    pages: AtomicUsize,
    req_fd: AtomicI32,
    gen: AtomicU32,
    poisoned: AtomicBool,
    /// How long a faulting thread waits for an answer (ns).
    give_up_ns: AtomicI64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: SlotData = SlotData {
    in_use: AtomicBool::new(false),
    base: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    page_shift: AtomicU32::new(0),
    states: AtomicPtr::new(std::ptr::null_mut()),
    pages: AtomicUsize::new(0),
    req_fd: AtomicI32::new(-1),
    gen: AtomicU32::new(0),
    poisoned: AtomicBool::new(false),
    give_up_ns: AtomicI64::new(0),
};

static TABLE: [SlotData; SLOTS] = [EMPTY; SLOTS];
static OLD_ACTION: OnceLock<libc::sigaction> = OnceLock::new();
static INSTALLED: OnceLock<std::result::Result<(), i32>> = OnceLock::new();

/// A registered heap's slot.
#[derive(Debug)]
pub(crate) struct Slot {
    index: usize,
    _req: OwnedFd,
}

fn install_handler() -> Result<()> {
    let r = INSTALLED.get_or_init(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value;
        // the handler below is an `extern "C"` function with the SA_SIGINFO
        // signature; the old action is saved for chaining.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_segv as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGSEGV, &sa, &mut old) != 0 {
                return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
            }
            let _ = OLD_ACTION.set(old);
        }
        Ok(())
    });
    r.map_err(|errno| HeapError::Sys {
        call: "sigaction(SIGSEGV)",
        source: std::io::Error::from_raw_os_error(errno),
    })
}

/// Register a heap: install the SIGSEGV handler (once per process), take a
/// slot, and start the resolver thread.
pub(crate) fn register(shared: Arc<Shared>) -> Result<(Slot, JoinHandle<()>)> {
    install_handler()?;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(HeapError::sys("pipe2"));
    }
    // SAFETY: fresh fds we own.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let index = TABLE
        .iter()
        .position(|s| {
            s.in_use
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
        .ok_or_else(|| HeapError::Unsupported {
            mode: "Mprotect",
            reason: format!("at most {SLOTS} Mprotect heaps per process"),
        })?;
    let s = &TABLE[index];
    {
        let inner = shared.lock()?;
        let states = inner.table.atomic_states();
        s.states
            .store(states.as_ptr() as *mut AtomicU8, Ordering::Release);
        s.pages.store(states.len(), Ordering::Release);
    }
    s.len.store(shared.region.len, Ordering::Release);
    s.page_shift
        .store(shared.page_size.trailing_zeros(), Ordering::Release);
    s.req_fd.store(wr.as_raw_fd(), Ordering::Release);
    s.poisoned.store(false, Ordering::Release);
    s.give_up_ns.store(
        shared.fault_timeout.as_nanos().min(i64::MAX as u128) as i64,
        Ordering::Release,
    );
    // Publishing the base makes the slot live for the handler.
    s.base.store(shared.region.base, Ordering::Release);
    let handle = std::thread::Builder::new()
        .name("heap-sigsegv".into())
        .spawn(move || resolver(shared, index, rd))
        .map_err(|e| {
            clear(index);
            HeapError::Sys {
                call: "spawn resolver thread",
                source: e,
            }
        })?;
    Ok((Slot { index, _req: wr }, handle))
}

fn clear(index: usize) {
    let s = &TABLE[index];
    s.base.store(0, Ordering::Release);
    s.req_fd.store(-1, Ordering::Release);
    s.states.store(std::ptr::null_mut(), Ordering::Release);
    s.in_use.store(false, Ordering::Release);
}

/// Take the heap's slot out of the table (before its memory goes away).
pub(crate) fn unregister(slot: Slot) {
    clear(slot.index);
}

fn resolver(shared: Arc<Shared>, index: usize, rd: OwnedFd) {
    let s = &TABLE[index];
    let mut buf = [0u8; 16 * 64];
    loop {
        if shared_stopped(&shared) {
            return;
        }
        let mut pfd = libc::pollfd {
            fd: rd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; 50 ms timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 50) };
        if n <= 0 {
            continue;
        }
        // SAFETY: reading into our own buffer from our non-blocking pipe.
        let r = unsafe {
            libc::read(
                rd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if r <= 0 {
            continue;
        }
        // Requests are 16 bytes, written atomically (< PIPE_BUF).
        for req in buf[..r as usize].chunks_exact(16) {
            let mut a = [0u8; 8];
            a.copy_from_slice(&req[..8]);
            let addr = u64::from_ne_bytes(a);
            let write = req[8] != 0;
            if !shared.resolve(addr, write, None) {
                s.poisoned.store(true, Ordering::Release);
                error!(
                    addr,
                    "Mprotect fault not resolved; faulting thread gets SIGBUS"
                );
            }
        }
        s.gen.fetch_add(1, Ordering::AcqRel);
        // SAFETY: FUTEX_WAKE on a static atomic word.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                s.gen.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
            )
        };
    }
}

fn shared_stopped(shared: &Shared) -> bool {
    shared.is_stopping()
}

extern "C" fn on_segv(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    for s in TABLE.iter() {
        let base = s.base.load(Ordering::Acquire);
        if base == 0 || addr < base || addr - base >= s.len.load(Ordering::Acquire) {
            continue;
        }
        // SAFETY: errno is thread-local; saved and restored around our calls.
        let errno = unsafe { *libc::__errno_location() };
        handle_heap_fault(s, addr - base, addr, ctx);
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
        return;
    }
    chain(sig, info, ctx);
}

fn satisfied(state: u8, write: bool) -> bool {
    let st = PageState::from_u8(state);
    if write {
        st == PageState::Dirty
    } else {
        st != PageState::NotResident
    }
}

fn now_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime is async-signal-safe and fills our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Whether the fault was a write: the x86-64 page-fault error code says so;
/// elsewhere a fault on a resident (read-only) page can only be a write.
fn fault_was_write(ctx: *mut libc::c_void, state: u8) -> bool {
    #[cfg(target_arch = "x86_64")]
    if !ctx.is_null() {
        // SAFETY: for SA_SIGINFO handlers the third argument is the
        // interrupted context, a ucontext_t.
        let err = unsafe {
            (*(ctx as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_ERR as usize]
        };
        return err & 2 != 0;
    }
    let _ = ctx;
    state != PageState::NotResident as u8
}

/// Ask the resolver for the page and wait until it is accessible as needed
/// or the resolver has answered a batch of requests (then return: the
/// instruction runs again and faults again if that batch was not ours or the
/// page was evicted meanwhile).
fn handle_heap_fault(s: &SlotData, off: usize, addr: usize, ctx: *mut libc::c_void) {
    let page = off >> s.page_shift.load(Ordering::Acquire);
    let states = s.states.load(Ordering::Acquire);
    if states.is_null() || page >= s.pages.load(Ordering::Acquire) {
        return give_up();
    }
    // SAFETY: `states` points at the heap's page-state array of `pages`
    // atomics, alive while the slot is registered (the heap unregisters
    // before freeing it).
    let state = unsafe { &*states.add(page) };
    let write = fault_was_write(ctx, state.load(Ordering::Acquire));
    if satisfied(state.load(Ordering::Acquire), write) {
        return;
    }
    let mut req = [0u8; 16];
    req[..8].copy_from_slice(&(addr as u64).to_ne_bytes());
    req[8] = write as u8;
    let deadline = now_ns().saturating_add(s.give_up_ns.load(Ordering::Acquire));
    let gen = s.gen.load(Ordering::Acquire);
    let mut sent = false;
    loop {
        if s.poisoned.load(Ordering::Acquire) || now_ns() > deadline {
            return give_up();
        }
        if !sent {
            let fd = s.req_fd.load(Ordering::Acquire);
            // SAFETY: write(2) of our 16-byte buffer to the heap's pipe
            // (atomic: less than PIPE_BUF); EAGAIN when full: retried.
            let r = unsafe { libc::write(fd, req.as_ptr() as *const libc::c_void, 16) };
            sent = r == 16;
        }
        if satisfied(state.load(Ordering::Acquire), write)
            || (sent && s.gen.load(Ordering::Acquire) != gen)
        {
            return;
        }
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: WAIT_STEP_MS * 1_000_000,
        };
        // SAFETY: FUTEX_WAIT on a static atomic word with a timeout; returns
        // at once if the word is no longer `gen`.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                s.gen.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                gen,
                &ts as *const libc::timespec,
            )
        };
    }
}

/// The fault cannot be resolved: die of SIGBUS, as on an I/O error of a
/// mapped file.
fn give_up() {
    // SAFETY: sigaction and raise are async-signal-safe; a zeroed sigaction
    // with SIG_DFL restores the default action.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
        libc::raise(libc::SIGBUS);
    }
}

/// Not a heap address: hand the signal to the previous handler (Rust's
/// stack-overflow handler, usually), or restore the default action so the
/// faulting instruction kills the process as it would have.
fn chain(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let old = OLD_ACTION.get();
    let handler = old.map(|o| o.sa_sigaction).unwrap_or(libc::SIG_DFL);
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // SAFETY: restoring the default action with an async-signal-safe call.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
        }
        return;
    }
    let siginfo = old
        .map(|o| o.sa_flags & libc::SA_SIGINFO != 0)
        .unwrap_or(false);
    // SAFETY: `handler` is the previous handler's address as the kernel
    // would call it: with the SA_SIGINFO signature if that flag was set,
    // else with the signal number alone.
    unsafe {
        if siginfo {
            let f: extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(handler);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(i32) = std::mem::transmute(handler);
            f(sig);
        }
    }
}
