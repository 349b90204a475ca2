//! Thin wrappers over the system calls the heap needs: the reserved mapping
//! and the userfaultfd.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use linux_raw_sys::general as g;
use linux_raw_sys::ioctl as ioc;

use crate::error::{HeapError, Result};

const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1;

/// An anonymous private mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Region {
    pub(crate) base: usize,
    pub(crate) len: usize,
}

impl Region {
    /// Reserve `len` bytes with protection `prot` (no swap reservation, no
    /// transparent huge pages: pages are filled and dropped one by one).
    pub(crate) fn new(len: usize, prot: i32) -> Result<Region> {
        // SAFETY: a new anonymous mapping at an address the kernel chooses;
        // it aliases nothing.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(HeapError::sys("mmap"));
        }
        let r = Region {
            base: p as usize,
            len,
        };
        // SAFETY: advice on our own fresh mapping. A failure (THP compiled
        // out) only costs splitting later, so it is ignored.
        unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
        Ok(r)
    }

    pub(crate) fn mprotect(&self, off: usize, len: usize, prot: i32) -> Result<()> {
        debug_assert!(off + len <= self.len);
        // SAFETY: the range lies inside our mapping; changing its protection
        // changes no Rust-visible object (the heap's memory is only reached
        // through raw pointers).
        let r = unsafe { libc::mprotect((self.base + off) as *mut libc::c_void, len, prot) };
        if r != 0 {
            return Err(HeapError::sys("mprotect"));
        }
        Ok(())
    }

    /// Drop the pages of the range (they read back as missing / zero).
    pub(crate) fn dontneed(&self, off: usize, len: usize) -> Result<()> {
        debug_assert!(off + len <= self.len);
        // SAFETY: the range lies inside our private anonymous mapping; its
        // contents were copied out (or are not wanted) before this call.
        let r = unsafe {
            libc::madvise(
                (self.base + off) as *mut libc::c_void,
                len,
                libc::MADV_DONTNEED,
            )
        };
        if r != 0 {
            return Err(HeapError::sys("madvise(MADV_DONTNEED)"));
        }
        Ok(())
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: our mapping, unmapped once; nothing refers to it after the
        // heap is dropped (the handler thread is joined before).
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// A page-aligned scratch buffer (UFFDIO_COPY's source).
#[derive(Debug)]
pub(crate) struct PageBuf {
    region: Region,
}

impl PageBuf {
    pub(crate) fn new(len: usize) -> Result<PageBuf> {
        Ok(PageBuf {
            region: Region::new(len, libc::PROT_READ | libc::PROT_WRITE)?,
        })
    }
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: our own readable and writable mapping of `len` bytes,
        // borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.region.base as *mut u8, self.region.len) }
    }
    pub(crate) fn addr(&self) -> usize {
        self.region.base
    }

    /// Give the buffer protection `prot` and move its pages over `dst` (one
    /// page-aligned range of the same length inside another of our
    /// mappings), atomically replacing what was there. Consumes the buffer.
    pub(crate) fn move_to(self, dst: usize, prot: i32) -> Result<()> {
        let (src, len) = (self.region.base, self.region.len);
        self.region.mprotect(0, len, prot)?;
        // SAFETY: `src` is our buffer mapping of `len` bytes and `dst` a
        // page-aligned range of `len` bytes inside the heap's mapping, whose
        // old pages are not referenced by any Rust object; MREMAP_FIXED
        // replaces them in one step.
        let r = unsafe {
            libc::mremap(
                src as *mut libc::c_void,
                len,
                len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                dst as *mut libc::c_void,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(HeapError::sys("mremap"));
        }
        // The buffer's range is no longer mapped: do not unmap it again.
        std::mem::forget(self);
        Ok(())
    }
}

/// A page fault reported by the userfaultfd.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fault {
    pub(crate) addr: u64,
    pub(crate) write: bool,
    pub(crate) wp: bool,
    pub(crate) tid: u32,
}

/// A userfaultfd with MISSING + WP registration over one range.
#[derive(Debug)]
pub(crate) struct Uffd {
    fd: OwnedFd,
}

fn ioctl<T>(fd: &OwnedFd, req: u32, arg: &mut T, call: &'static str) -> Result<()> {
    // SAFETY: `req` is a userfaultfd ioctl whose argument type is `T` (the
    // callers pair them as in <linux/userfaultfd.h>); `arg` is a valid
    // exclusive reference for the duration of the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg as *mut T) };
    if r != 0 {
        return Err(HeapError::sys(call));
    }
    Ok(())
}

impl Uffd {
    /// Open a userfaultfd (the syscall, else /dev/userfaultfd) and enable the
    /// write-protect feature. Thread ids are reported so that a fault that
    /// cannot be resolved can be turned into a SIGBUS of the faulting thread.
    pub(crate) fn open(wp_async: bool) -> Result<Uffd> {
        let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
        // SAFETY: plain syscall returning a new fd or -1.
        let mut raw = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) } as i32;
        if raw < 0 {
            let first = io::Error::last_os_error();
            raw = open_dev_userfaultfd(flags).map_err(|_| HeapError::Unsupported {
                mode: "UffdWp",
                reason: format!("userfaultfd: {first}"),
            })?;
        }
        // SAFETY: `raw` is a new fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut want = (g::UFFD_FEATURE_PAGEFAULT_FLAG_WP | g::UFFD_FEATURE_THREAD_ID) as u64;
        if wp_async {
            want |= g::UFFD_FEATURE_WP_ASYNC as u64;
        }
        let mut api = g::uffdio_api {
            api: g::UFFD_API as u64,
            features: want,
            ioctls: 0,
        };
        ioctl(&fd, ioc::UFFDIO_API, &mut api, "UFFDIO_API").map_err(|e| {
            HeapError::Unsupported {
                mode: if wp_async { "UffdWpAsync" } else { "UffdWp" },
                reason: format!("write-protect feature: {e}"),
            }
        })?;
        Ok(Uffd { fd })
    }

    pub(crate) fn register(&self, base: usize, len: usize) -> Result<()> {
        let mut reg = g::uffdio_register {
            range: g::uffdio_range {
                start: base as u64,
                len: len as u64,
            },
            mode: (g::UFFDIO_REGISTER_MODE_MISSING | g::UFFDIO_REGISTER_MODE_WP) as u64,
            ioctls: 0,
        };
        ioctl(&self.fd, ioc::UFFDIO_REGISTER, &mut reg, "UFFDIO_REGISTER").map_err(|e| {
            HeapError::Unsupported {
                mode: "UffdWp",
                reason: format!("register MISSING|WP: {e}"),
            }
        })?;
        let need = (1u64 << g::_UFFDIO_COPY) | (1u64 << g::_UFFDIO_WRITEPROTECT);
        if reg.ioctls & need != need {
            return Err(HeapError::Unsupported {
                mode: "UffdWp",
                reason: "UFFDIO_COPY / UFFDIO_WRITEPROTECT not offered for the range".into(),
            });
        }
        Ok(())
    }

    /// Install `len` bytes from `src` at `dst` (write-protected unless
    /// `writable`), waking the faulting threads. Ok(false) if the range was
    /// already populated (EEXIST), which the caller resolves by waking.
    pub(crate) fn copy(&self, dst: usize, src: usize, len: usize, writable: bool) -> Result<bool> {
        let mut c = g::uffdio_copy {
            dst: dst as u64,
            src: src as u64,
            len: len as u64,
            mode: if writable {
                0
            } else {
                g::UFFDIO_COPY_MODE_WP as u64
            },
            copy: 0,
        };
        loop {
            match ioctl(&self.fd, ioc::UFFDIO_COPY, &mut c, "UFFDIO_COPY") {
                Ok(()) => return Ok(true),
                Err(HeapError::Sys { source, .. })
                    if source.raw_os_error() == Some(libc::EEXIST) =>
                {
                    return Ok(false)
                }
                // The mm changed under us (a fork of the process, a remap):
                // the kernel asks to retry.
                Err(HeapError::Sys { source, .. })
                    if source.raw_os_error() == Some(libc::EAGAIN) =>
                {
                    c.copy = 0;
                    std::thread::yield_now();
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Write-protect (`wp`) or un-protect a range; un-protecting wakes the
    /// threads waiting on it.
    pub(crate) fn writeprotect(&self, start: usize, len: usize, wp: bool) -> Result<()> {
        let mut w = g::uffdio_writeprotect {
            range: g::uffdio_range {
                start: start as u64,
                len: len as u64,
            },
            mode: if wp { UFFDIO_WRITEPROTECT_MODE_WP } else { 0 },
        };
        loop {
            match ioctl(
                &self.fd,
                ioc::UFFDIO_WRITEPROTECT,
                &mut w,
                "UFFDIO_WRITEPROTECT",
            ) {
                Err(HeapError::Sys { source, .. })
                    if source.raw_os_error() == Some(libc::EAGAIN) =>
                {
                    std::thread::yield_now();
                }
                r => return r,
            }
        }
    }

    /// Wake the threads waiting on a range.
    pub(crate) fn wake(&self, start: usize, len: usize) -> Result<()> {
        let mut r = g::uffdio_range {
            start: start as u64,
            len: len as u64,
        };
        ioctl(&self.fd, ioc::UFFDIO_WAKE, &mut r, "UFFDIO_WAKE")
    }

    /// Wait up to `timeout` for fault messages; append them to `out`.
    pub(crate) fn poll_faults(&self, timeout: Duration, out: &mut Vec<Fault>) -> Result<()> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(HeapError::Sys {
                call: "poll(userfaultfd)",
                source: e,
            });
        }
        if n == 0 {
            return Ok(());
        }
        const N: usize = 16;
        // SAFETY: uffd_msg is plain old data; all-zero is a valid value.
        let mut msgs: [g::uffd_msg; N] = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<g::uffd_msg>();
        // SAFETY: reading into our own array of N messages; the fd is
        // non-blocking.
        let r = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr() as *mut libc::c_void,
                N * size,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) {
                return Ok(());
            }
            return Err(HeapError::Sys {
                call: "read(userfaultfd)",
                source: e,
            });
        }
        for m in msgs.iter().take(r as usize / size) {
            if m.event as u32 != g::UFFD_EVENT_PAGEFAULT {
                continue;
            }
            let arg = m.arg;
            // SAFETY: the event is PAGEFAULT, so `pagefault` is the union's
            // active member; ptid is reported (UFFD_FEATURE_THREAD_ID).
            let (flags, addr, tid) = unsafe {
                (
                    arg.pagefault.flags,
                    arg.pagefault.address,
                    arg.pagefault.feat.ptid,
                )
            };
            out.push(Fault {
                addr,
                write: flags & g::UFFD_PAGEFAULT_FLAG_WRITE as u64 != 0,
                wp: flags & g::UFFD_PAGEFAULT_FLAG_WP as u64 != 0,
                tid,
            });
        }
        Ok(())
    }
}

fn open_dev_userfaultfd(flags: i32) -> io::Result<i32> {
    // USERFAULTFD_IOC_NEW = _IO(0xAA, 0x00)
    const USERFAULTFD_IOC_NEW: libc::c_ulong = (g::USERFAULTFD_IOC as libc::c_ulong) << 8;
    let dev = std::fs::File::open("/dev/userfaultfd")?;
    // SAFETY: USERFAULTFD_IOC_NEW takes its flags by value and returns a new fd.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), USERFAULTFD_IOC_NEW as _, flags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// Send SIGBUS to one thread of this process (a fault we cannot resolve).
pub(crate) fn sigbus_thread(tid: u32) {
    // SAFETY: tgkill on our own process; a stale tid fails with ESRCH.
    unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            tid as libc::pid_t,
            libc::SIGBUS,
        )
    };
}

/// PAGEMAP_SCAN = _IOWR('f', 16, struct pm_scan_arg) (not in linux-raw-sys's
/// ioctl list).
const PAGEMAP_SCAN: u32 =
    (3 << 30) | ((std::mem::size_of::<g::pm_scan_arg>() as u32) << 16) | ((b'f' as u32) << 8) | 16;
const PM_SCAN_CHECK_WPASYNC: u64 = 2;

/// /proc/self/pagemap, for PAGEMAP_SCAN: which pages of an async
/// write-protected range were written since they were last protected.
#[derive(Debug)]
pub(crate) struct Pagemap {
    file: std::fs::File,
}

impl Pagemap {
    pub(crate) fn open() -> Result<Pagemap> {
        let file =
            std::fs::File::open("/proc/self/pagemap").map_err(|e| HeapError::Unsupported {
                mode: "UffdWpAsync",
                reason: format!("/proc/self/pagemap: {e}"),
            })?;
        Ok(Pagemap { file })
    }

    /// Append the `[start, end)` address ranges of present pages in
    /// `[start, end)` written since they were write-protected.
    pub(crate) fn written(
        &self,
        start: usize,
        end: usize,
        out: &mut Vec<(u64, u64)>,
    ) -> Result<()> {
        const N: usize = 64;
        let mut regions = [g::page_region {
            start: 0,
            end: 0,
            categories: 0,
        }; N];
        let mut at = start as u64;
        while at < end as u64 {
            let mut arg = g::pm_scan_arg {
                size: std::mem::size_of::<g::pm_scan_arg>() as u64,
                flags: PM_SCAN_CHECK_WPASYNC,
                start: at,
                end: end as u64,
                walk_end: 0,
                vec: regions.as_mut_ptr() as u64,
                vec_len: N as u64,
                max_pages: 0,
                category_inverted: 0,
                category_mask: (g::PAGE_IS_WRITTEN | g::PAGE_IS_PRESENT) as u64,
                category_anyof_mask: 0,
                return_mask: g::PAGE_IS_WRITTEN as u64,
            };
            // SAFETY: PAGEMAP_SCAN takes a pm_scan_arg whose `vec` points at
            // `vec_len` page_region entries we own; it writes at most that many.
            let n = unsafe { libc::ioctl(self.file.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
            if n < 0 {
                return Err(HeapError::sys("ioctl(PAGEMAP_SCAN)"));
            }
            for r in regions.iter().take(n as usize) {
                out.push((r.start, r.end));
            }
            if arg.walk_end <= at {
                break;
            }
            at = arg.walk_end;
        }
        Ok(())
    }
}
