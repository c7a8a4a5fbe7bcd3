//! How a frame gets into the worker's file: a store into a shared mapping, or one
//! `pwrite`.
//!
//! Why a mapping is safe for readers: a `MAP_SHARED` mapping of a regular file *is* the
//! file's page cache, so `read`/`pread` in any other process — Parallel::Scoreboard's
//! buffered reads included — see our stores as soon as they are made, with no `msync`.
//! A reader can catch a store half-done; the md5 in the frame turns that into a retry,
//! exactly as for a half-done `write`. The file is sized with `ftruncate` to a capacity
//! and never shrunk, so readers always find the frame at offset 0 followed by slack
//! (zeros, or the tail of a longer old status) that they ignore.
//!
//! Every update is visible as a write, whatever the text: a store into a mapping does
//! not move the file's modification time (tmpfs never does; disk filesystems only when
//! a clean page is first dirtied), and an update that republishes the same status is
//! skipped. So the sink sets the modification time itself (`futimens`) whenever
//! [`VISIBLE_EVERY`] has passed since it last moved — a reader comparing modification
//! times between two looks then knows the worker wrote in between, even when the text
//! it finds is the same. Between two such moves at most [`VISIBLE_EVERY`] of writes go
//! unseen, which is far below the agent's one-second resolution for `stuck_after`; the
//! cost is one coarse clock reading per update (vDSO, no syscall) and one syscall per
//! [`VISIBLE_EVERY`] at most.
//!
//! One hazard is accepted: a process with write access to our file that truncates it
//! would make our next store fault (`SIGBUS`). Only the owner writes status files in
//! this protocol, and the directory's permissions decide who else could.

use std::fs::File;
use std::io;
use std::ptr::NonNull;

use rustix::fs::{Timestamps, UTIME_NOW, UTIME_OMIT};
use rustix::mm::{MapFlags, MremapFlags, ProtFlags};
use rustix::time::{ClockId, Timespec};

use crate::frame::{self, frame_len};

/// Failing operation and its error; the caller adds the path.
pub(crate) type SinkError = (&'static str, io::Error);

/// How updates reach the status file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// Map the file `MAP_SHARED` and store frames into the mapping: no syscall per
    /// update. Falls back to [`WriteMode::Pwrite`] where the filesystem cannot map.
    #[default]
    Mapped,
    /// One `pwrite` of the whole frame at offset 0 per update.
    Pwrite,
}

/// The smallest file capacity for a mapped status file: a 64-byte status with room to
/// grow, in one cache-friendly read for readers.
const MIN_CAPACITY: usize = 256;

/// Frames up to this size (statuses up to 108 bytes) are staged on the stack and copied
/// into the mapping at once.
const STAGED_FRAME: usize = 128;

/// How often at most an update moves the file's modification time itself (see the
/// module docs): 100 ms, a tenth of the agent's finest `stuck_after`.
pub const VISIBLE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

pub(crate) struct Sink {
    target: Target,
    /// Whether a frame has been written. Until then the file's zeros must not pass for
    /// an already published empty status.
    wrote_frame: bool,
    /// When the file's modification time last moved (`CLOCK_MONOTONIC_COARSE`): the
    /// file's creation, a `pwrite`, or our own `futimens`.
    visible_at: Timespec,
}

enum Target {
    Mapped(Mapping),
    /// The frame is assembled here, then written in one `pwrite`; grows, never shrinks.
    Pwrite(Vec<u8>),
}

pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    /// Bytes mapped: `capacity` rounded up to whole pages.
    mapped: usize,
    /// The file's size, and so how much of the mapping is backed by the file.
    capacity: usize,
}

// SAFETY: the mapping is owned by exactly one Sink and only touched through `&mut self`.
unsafe impl Send for Mapping {}

impl Sink {
    /// Prepares `file` (freshly created, empty) for frames of `status_len` bytes.
    pub(crate) fn new(file: &File, mode: WriteMode, status_len: usize) -> Result<Sink, SinkError> {
        let target = match mode {
            WriteMode::Pwrite => Target::Pwrite(Vec::new()),
            WriteMode::Mapped => {
                let capacity = capacity_for(status_len)?;
                rustix::fs::ftruncate(file, capacity as u64)
                    .map_err(|e| ("ftruncate", e.into()))?;
                match Mapping::new(file, capacity) {
                    Ok(mapping) => Target::Mapped(mapping),
                    // Filesystems without mmap support (some FUSE and network ones).
                    Err(_) => Target::Pwrite(Vec::new()),
                }
            }
        };
        Ok(Sink {
            target,
            wrote_frame: false,
            visible_at: coarse_now(),
        })
    }

    /// Makes this update visible as a write when [`VISIBLE_EVERY`] has passed since the
    /// modification time last moved: `futimens(UTIME_NOW)` on the modification time
    /// (the access time left alone).
    #[inline]
    fn keep_visible(&mut self, file: &File) -> Result<(), SinkError> {
        let now = coarse_now();
        if !elapsed_at_least(self.visible_at, now, VISIBLE_EVERY) {
            return Ok(());
        }
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_NOW,
            },
        };
        rustix::fs::futimens(file, &times).map_err(|e| ("futimens", e.into()))?;
        self.visible_at = now;
        Ok(())
    }

    /// Writes the frame for `status` at offset 0 in one step.
    #[inline]
    pub(crate) fn write(&mut self, file: &File, status: &[u8]) -> Result<(), SinkError> {
        let wrote_frame = std::mem::replace(&mut self.wrote_frame, true);
        match &mut self.target {
            Target::Mapped(mapping) => {
                let len = frame_len(status.len());
                if len > mapping.capacity {
                    mapping.grow(file, capacity_for(status.len())?)?;
                }
                let dst = mapping.frame(len);
                // Republishing the status already there (a worker saying "idle" on every
                // loop) costs a comparison, not an md5.
                if wrote_frame && frame::carries(dst, status) {
                    return self.keep_visible(file);
                }
                // Stores into a mapping can be preempted halfway, leaving the frame torn
                // for a whole time slice, where a write(2) of a small frame cannot be. So
                // a small frame is built on the stack and lands in one short memcpy,
                // a window of a few instructions; readers back off between retries to
                // ride out the rare preemption that still hits it.
                if len <= STAGED_FRAME {
                    let mut staged = [0u8; STAGED_FRAME];
                    frame::encode_into(&mut staged[..len], status);
                    dst.copy_from_slice(&staged[..len]);
                } else {
                    frame::encode_into(dst, status);
                }
                self.keep_visible(file)
            }
            Target::Pwrite(buf) => {
                let len = frame_len(status.len());
                check_len(status.len())?;
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                // `buf` holds the last frame written: skip the write when it is the same.
                if wrote_frame && frame::carries(&buf[..len], status) {
                    return self.keep_visible(file);
                }
                frame::encode_into(&mut buf[..len], status);
                let written = pwrite_all(file, &buf[..len]);
                // A failed write must not let the next identical status be skipped.
                self.wrote_frame = written.is_ok();
                if written.is_ok() {
                    // pwrite(2) moved the modification time.
                    self.visible_at = coarse_now();
                }
                written
            }
        }
    }

    /// Which way this sink writes, after any fallback.
    pub(crate) fn mode(&self) -> WriteMode {
        match self.target {
            Target::Mapped(_) => WriteMode::Mapped,
            Target::Pwrite(_) => WriteMode::Pwrite,
        }
    }
}

impl Mapping {
    fn new(file: &File, capacity: usize) -> rustix::io::Result<Mapping> {
        let mapped = round_to_pages(capacity);
        // SAFETY: a new mapping chosen by the kernel; nothing else refers to it.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                mapped,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                file,
                0,
            )?
        };
        Ok(Mapping {
            ptr: NonNull::new(ptr.cast()).expect("mmap never returns NULL on success"),
            mapped,
            capacity,
        })
    }

    /// The first `len` bytes of the file, through the mapping.
    fn frame(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= self.capacity);
        // SAFETY: `len` bytes lie within the mapping and within the file (capacity), so
        // stores reach the page cache instead of faulting; `&mut self` makes this the
        // only reference into the mapping in this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), len) }
    }

    #[cold]
    fn grow(&mut self, file: &File, capacity: usize) -> Result<(), SinkError> {
        // Extend the file first: a store past its end would fault.
        rustix::fs::ftruncate(file, capacity as u64).map_err(|e| ("ftruncate", e.into()))?;
        let mapped = round_to_pages(capacity);
        if mapped > self.mapped {
            // SAFETY: the old range is ours and unborrowed (`&mut self`); MAYMOVE lets
            // the kernel place the larger mapping anywhere, and we take its address.
            let ptr = unsafe {
                rustix::mm::mremap(
                    self.ptr.as_ptr().cast(),
                    self.mapped,
                    mapped,
                    MremapFlags::MAYMOVE,
                )
            }
            .map_err(|e| ("mremap", e.into()))?;
            self.ptr = NonNull::new(ptr.cast()).expect("mremap never returns NULL on success");
            self.mapped = mapped;
        }
        self.capacity = capacity;
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by us and no reference into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.mapped) };
    }
}

fn coarse_now() -> Timespec {
    rustix::time::clock_gettime(ClockId::MonotonicCoarse)
}

/// Whether at least `interval` lies between `then` and `now` (a monotonic clock).
fn elapsed_at_least(then: Timespec, now: Timespec, interval: std::time::Duration) -> bool {
    let nanos = |t: Timespec| i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
    nanos(now) - nanos(then) >= interval.as_nanos() as i128
}

fn check_len(status_len: usize) -> Result<(), SinkError> {
    if u32::try_from(status_len).is_err() || frame_len(status_len) > isize::MAX as usize {
        return Err((
            "encode frame",
            io::Error::new(io::ErrorKind::InvalidInput, "status longer than 4 GiB"),
        ));
    }
    Ok(())
}

/// File size for a frame holding `status_len` bytes: a power of two, so a status that
/// keeps growing costs a logarithmic number of remaps.
fn capacity_for(status_len: usize) -> Result<usize, SinkError> {
    check_len(status_len)?;
    Ok(frame_len(status_len).next_power_of_two().max(MIN_CAPACITY))
}

fn round_to_pages(len: usize) -> usize {
    let page = rustix::param::page_size();
    len.div_ceil(page) * page
}

fn pwrite_all(file: &File, mut frame: &[u8]) -> Result<(), SinkError> {
    let mut offset = 0;
    while !frame.is_empty() {
        match rustix::io::pwrite(file, frame, offset) {
            Ok(0) => return Err(("pwrite", io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                frame = &frame[n..];
                offset += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(errno) => return Err(("pwrite", errno.into())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
