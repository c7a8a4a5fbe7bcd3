//! inotify on scoreboard directories: learning at once that a worker joined, left or
//! died, without waking up for status writes.
//!
//! Writers rename their file into place (`IN_MOVED_TO`), remove it on exit
//! (`IN_DELETE`), and a dying worker's kernel closes it (`IN_CLOSE_WRITE`, raised for
//! any descriptor open for writing). Writes into a mapping raise nothing and `pwrite`s
//! raise `IN_MODIFY`, which we do not ask for: statuses are sampled on a timer.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use tokio::io::unix::AsyncFd;

/// What an event means for a watched directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirEvent {
    /// A worker's file appeared or disappeared.
    Membership,
    /// A worker's file was closed by a writer: the worker may have died. Its lock is
    /// released a moment *after* the event is queued (the kernel notifies before it
    /// drops the lock), so a lock test right away may still find it held.
    Closed,
    /// The directory itself is gone (a stopped service's RuntimeDirectory=).
    Gone,
    /// Events were lost: sweep everything.
    Overflow,
}

/// Classifies one inotify event. `name` is the entry's name, if the event has one.
pub fn classify(mask: ReadFlags, name: Option<&[u8]>) -> Option<DirEvent> {
    if mask.contains(ReadFlags::QUEUE_OVERFLOW) {
        return Some(DirEvent::Overflow);
    }
    if mask.intersects(ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF | ReadFlags::IGNORED) {
        return Some(DirEvent::Gone);
    }
    let name = name?;
    if !scoreboard::is_worker_file(name) {
        return None;
    }
    if mask.intersects(ReadFlags::MOVED_TO | ReadFlags::MOVED_FROM | ReadFlags::DELETE) {
        Some(DirEvent::Membership)
    } else if mask.contains(ReadFlags::CLOSE_WRITE) {
        Some(DirEvent::Closed)
    } else {
        None
    }
}

/// Events read per batch at most (a few 64 KiB reads), before the loop gets its turn.
pub const MAX_EVENTS_PER_BATCH: usize = 8_192;

/// One inotify instance for all watched directories.
pub struct Watcher {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<MaybeUninit<u8>>,
}

impl Watcher {
    /// A new instance; must be created inside the tokio runtime.
    pub fn new() -> io::Result<Watcher> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        Ok(Watcher {
            // SAFETY: the OwnedFd is moved in and only ever closed by AsyncFd's drop.
            fd: unsafe { AsyncFd::register(fd)? },
            buf: vec![MaybeUninit::uninit(); 64 * 1024],
        })
    }

    /// Starts watching the directory open as `dir`; returns the watch descriptor events
    /// will carry.
    ///
    /// The watch is placed through `/proc/self/fd/N`, the kernel's link to the very
    /// directory we hold, not through its path: whatever the path leads to by now (its
    /// owner may have swapped it), events come from the directory we read.
    pub fn watch(&self, dir: BorrowedFd<'_>) -> io::Result<i32> {
        use std::os::fd::AsRawFd as _;
        let by_fd = format!("/proc/self/fd/{}", dir.as_raw_fd());
        let flags = WatchFlags::MOVED_TO
            | WatchFlags::MOVED_FROM
            | WatchFlags::DELETE
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF
            | WatchFlags::ONLYDIR;
        Ok(inotify::add_watch(
            self.fd.get_ref(),
            by_fd.as_str(),
            flags,
        )?)
    }

    /// Stops watching; a descriptor the kernel already dropped is not an error.
    pub fn unwatch(&self, wd: i32) {
        let _ = inotify::remove_watch(self.fd.get_ref(), wd);
    }

    /// Waits until events are queued, then returns every meaningful one with its watch
    /// descriptor (repeats of the same one folded), emptying the queue — or after
    /// [`MAX_EVENTS_PER_BATCH`] events, so that a directory's owner producing events as fast
    /// as we read them cannot keep the caller here; the rest come with the next batch.
    pub async fn next_batch(&mut self) -> io::Result<Vec<(i32, DirEvent)>> {
        let mut guard = self.fd.readable().await?;
        let mut reader = inotify::Reader::new(guard.get_inner(), &mut self.buf);
        let mut batch: Vec<(i32, DirEvent)> = Vec::new();
        let mut events = 0usize;
        loop {
            if reader.is_buffer_empty() && events >= MAX_EVENTS_PER_BATCH {
                return Ok(batch);
            }
            match reader.next() {
                Ok(event) => {
                    events += 1;
                    let name = event.file_name().map(|n| n.to_bytes());
                    if let Some(kind) = classify(event.events(), name)
                        && !batch.contains(&(event.wd(), kind))
                    {
                        batch.push((event.wd(), kind));
                    }
                }
                Err(rustix::io::Errno::AGAIN) => {
                    guard.clear_ready();
                    return Ok(batch);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_worker_files_and_the_directory_matter() {
        let c = |mask, name: &str| classify(mask, Some(name.as_bytes()));
        assert_eq!(
            c(ReadFlags::MOVED_TO, "status_1"),
            Some(DirEvent::Membership)
        );
        assert_eq!(c(ReadFlags::DELETE, "status_1"), Some(DirEvent::Membership));
        assert_eq!(
            c(ReadFlags::MOVED_FROM, "status_1"),
            Some(DirEvent::Membership)
        );
        assert_eq!(
            c(ReadFlags::CLOSE_WRITE, "status_1"),
            Some(DirEvent::Closed)
        );
        assert_eq!(c(ReadFlags::CLOSE_WRITE, "status_1.tmp"), None);
        assert_eq!(c(ReadFlags::MOVED_TO, ".scoreboard-reap.1.2"), None);
        assert_eq!(classify(ReadFlags::DELETE_SELF, None), Some(DirEvent::Gone));
        assert_eq!(classify(ReadFlags::IGNORED, None), Some(DirEvent::Gone));
        assert_eq!(
            classify(ReadFlags::QUEUE_OVERFLOW, None),
            Some(DirEvent::Overflow)
        );
    }
}
