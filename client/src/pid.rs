//! The current process id without a syscall per call, and correct across `fork`.
//!
//! The default worker id is the process id, evaluated on every update so that a forked
//! child notices it is no longer the owner of the inherited file. glibc stopped caching
//! `getpid` in 2.25, so asking the kernel each time would cost every update a syscall.
//! Instead the pid is cached in a private anonymous page marked `MADV_WIPEONFORK`
//! (Linux 4.14+): the kernel hands a child that page zero-filled, so a child sees "no
//! cached pid" and asks again. Unlike `pthread_atfork`, this also covers a raw
//! `clone(2)` fork that bypasses libc. Where the advice is refused (older kernels), we
//! fall back to calling `getpid` every time.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::mm::{Advice, MapFlags, ProtFlags, madvise, mmap_anonymous};

/// Where the pid is cached, or `None` when the kernel cannot wipe a page on fork.
static CACHE: OnceLock<Option<&'static AtomicU32>> = OnceLock::new();

fn cache() -> Option<&'static AtomicU32> {
    *CACHE.get_or_init(|| {
        const PAGE: usize = 4096;
        // SAFETY: a fresh anonymous mapping; we never unmap it, so the 'static
        // reference below stays valid for the life of the process (and of any child,
        // which inherits the mapping, zero-filled).
        unsafe {
            let page = mmap_anonymous(
                std::ptr::null_mut(),
                PAGE,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
            .ok()?;
            if madvise(page, PAGE, Advice::LinuxWipeOnFork).is_err() {
                let _ = rustix::mm::munmap(page, PAGE);
                return None;
            }
            Some(&*(page as *const AtomicU32))
        }
    })
}

/// The id of the calling process.
pub fn current() -> u32 {
    let Some(cached) = cache() else {
        return rustix::process::getpid().as_raw_nonzero().get() as u32;
    };
    match cached.load(Ordering::Relaxed) {
        0 => {
            let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
            cached.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_the_process_id() {
        assert_eq!(super::current(), std::process::id());
        assert_eq!(super::current(), std::process::id());
    }
}
