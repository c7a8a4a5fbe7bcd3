//! [`DirReader`]: a directory read again and again, its worker files held open between
//! sweeps.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ffi::CStr;
use std::fs::File;
use std::hash::BuildHasherDefault;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::Instant;

use rustix::fs::FileType;

use crate::chase::{self, Identity};
use crate::dir::{self, Access, OpenFailure, ScoreDir};
use crate::error::Result;

use super::*;

/// A file kept open by a [`DirReader`] between sweeps.
pub(super) struct Held {
    file: File,
    /// The last frame read from the file and found whole.
    verified: Vec<u8>,
    /// The pass that last saw the name, to close files whose names have gone and to
    /// notice a second name for the same inode within a pass.
    seen: u64,
    /// Set when the file turned out to have more than one name: it is held (so it is
    /// not opened again at every pass) but never read or reaped.
    links: Option<u64>,
}

/// Whether a [`DirReader::sweep_until`] finished its pass.
#[derive(Debug)]
pub enum Progress {
    /// The pass is complete.
    Done(Snapshot),
    /// The deadline came first; call again to go on where it stopped.
    Partial,
}

/// A long-lived reader that keeps each worker's file open between sweeps.
///
/// Made for the agent, which sweeps the same directory every second: an unchanged
/// worker costs one `flock` test and one `pread` per sweep, instead of
/// `openat`+`fstat`+`flock`+`pread`+`close`. New and replaced files are found from the
/// inode numbers in the directory listing, so a worker whose file was replaced under
/// the same name (a restart with a reused pid) is never read through a stale fd.
///
/// Files are held read-only: the lock test works on any fd, and a reader that opened
/// files for writing would raise `IN_CLOSE_WRITE` on every close, which an inotify
/// watcher uses to learn that a *worker* closed its file.
///
/// What the directory's owner puts in it cannot become the reader's cost: the budgets
/// of [`ReadOptions`] bound files held open and bytes read per pass, a pass can be
/// taken in steps ([`sweep_until`](DirReader::sweep_until)), a file whose name went
/// away is closed by the end of the pass that no longer lists it, and a file with two
/// names is never read.
pub struct DirReader {
    dir: ScoreDir,
    /// What the directory was when opened, to tell whether its path still leads to it.
    identity: Identity,
    held: HashMap<u64, Held, BuildHasherDefault<InoHasher>>,
    /// Passes started; the current one when `in_pass`.
    sweeps: u64,
    in_pass: bool,
    /// The `getdents64` buffer, kept between sweeps.
    listing: Vec<MaybeUninit<u8>>,
    collector: Collector,
}

impl DirReader {
    /// Opens `dir` for repeated sweeps.
    ///
    /// The path is resolved like systemd's `chase()` with `CHASE_SAFE`: one component at
    /// a time from `/`, following only root's symbolic links in root's directories, and
    /// never from a directory not owned by root into one of another owner. So a reader
    /// running as root cannot be sent, by whoever owns part of the path, to reap files
    /// in a directory of someone else's.
    pub fn open(dir: impl AsRef<Path>, options: ReadOptions) -> Result<Self> {
        let (dir, identity) = ScoreDir::open_safely(dir.as_ref())?;
        Ok(DirReader {
            dir,
            identity,
            held: HashMap::default(),
            sweeps: 0,
            in_pass: false,
            listing: Vec::new(),
            collector: Collector::new(options),
        })
    }

    /// The directory being read.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// How many files are held open.
    pub fn open_files(&self) -> usize {
        self.held.len()
    }

    /// Whether the path, resolved safely again, still leads to the directory this
    /// reader holds. False once the directory was removed, renamed away or replaced:
    /// then the reader should be dropped and the path opened again.
    pub fn still_at_path(&self) -> bool {
        chase::still_leads_to(self.dir.path(), self.identity)
    }

    /// The device and inode of worker `id`'s file as the directory holds it now
    /// (`fstatat` without following a symlink): what tells whose lock is on it (the
    /// `dev:ino` of `/proc/locks`), without trusting the path.
    pub fn worker_file(&self, id: &str) -> std::io::Result<(u64, u64)> {
        if id.contains('/') || id.contains('\0') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{id:?} cannot be a worker id"),
            ));
        }
        let stat = rustix::fs::statat(
            self.as_fd(),
            dir::status_name(id).as_c_str(),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile
            || stat.st_nlink != 1
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the file of worker {id:?} is not a regular file with one name"),
            ));
        }
        Ok((stat.st_dev, stat.st_ino))
    }

    /// When the file of a worker this reader returned (by its [`Worker::inode`]) was last
    /// written: one `fstat` of the file it holds, never a path lookup. `None` when the
    /// reader no longer holds it (gone, or replaced since).
    pub fn written(&self, inode: u64) -> Option<std::io::Result<Written>> {
        let held = self.held.get(&inode)?;
        Some(
            rustix::fs::fstat(&held.file)
                .map(|stat| Written::of(&stat))
                .map_err(Into::into),
        )
    }

    /// Reads every live worker and reaps dead ones, reusing open files: one whole pass.
    pub fn sweep(&mut self) -> Result<Snapshot> {
        loop {
            if let Progress::Done(snapshot) = self.sweep_until(None)? {
                return Ok(snapshot);
            }
        }
    }

    /// Goes on with the current pass (or starts one) until it is done or `deadline`
    /// passes, checked every 16 entries (each costs at most one frame read, itself
    /// bounded by the byte budget). A caller that must stay responsive — to a watchdog, to
    /// signals — takes a pass over a huge directory in steps.
    pub fn sweep_until(&mut self, deadline: Option<Instant>) -> Result<Progress> {
        let DirReader {
            dir,
            identity: _,
            held,
            sweeps,
            in_pass,
            listing,
            collector,
        } = self;
        if !*in_pass {
            dir.rewind()?;
            *sweeps += 1;
            *in_pass = true;
            collector.start();
        }
        let sweep = *sweeps;
        // Entries listed in this pass, steps together: a directory whose owner adds names
        // faster than they are listed (tmpfs gives new names ever larger offsets) must not
        // keep a pass from ending.
        let listed = std::cell::Cell::new(collector.listed);
        let limit = collector.options.max_workers.saturating_mul(8).max(1 << 17);
        let finished = dir.for_each_entry(
            listing,
            // The clock is read every 16 entries: an entry costs at most one frame read.
            |visited| {
                listed.get() >= limit
                    || (visited.is_multiple_of(16)
                        && deadline.is_some_and(|at| Instant::now() >= at))
            },
            |name, file_type, ino| {
                listed.set(listed.get() + 1);
                let Some(id) = collector.status_entry(dir, name, file_type) else {
                    return;
                };
                let entry = match held.entry(ino) {
                    Entry::Occupied(entry) => {
                        let entry = entry.into_mut();
                        if entry.seen == sweep {
                            // Seen already in this pass: a second name, or the same name
                            // listed again after the directory changed between steps.
                            // Only the link count tells; either way, not read twice.
                            #[allow(clippy::useless_conversion)] // u32 on some targets
                            let links = rustix::fs::fstat(&entry.file)
                                .map_or(2, |stat| u64::from(stat.st_nlink));
                            if links > 1 {
                                entry.links = Some(links);
                                return collector.skip(dir, name, SkipReason::HardLinked { links });
                            }
                            return;
                        }
                        entry
                    }
                    Entry::Vacant(vacant) => {
                        if !collector.may_open(dir, name) {
                            return;
                        }
                        match open_held(dir, name, file_type, ino) {
                            Ok(held) => vacant.insert(held),
                            Err(failure) => return collector.open_failed(dir, name, failure),
                        }
                    }
                };
                entry.seen = sweep;
                if let Some(links) = entry.links {
                    entry.verified = Vec::new();
                    return collector.skip(dir, name, SkipReason::HardLinked { links });
                }
                if collector.lock_test_and_reap(dir, name, id, &entry.file) {
                    collector.read_worker(
                        dir,
                        name,
                        (id, ino),
                        &entry.file,
                        Some(&mut entry.verified),
                    );
                } else {
                    // Reaped or unusable: close it now, reopen if the name comes back.
                    held.remove(&ino);
                }
            },
        )?;
        collector.listed = listed.get();
        if !finished && collector.listed < limit {
            return Ok(Progress::Partial);
        }
        *in_pass = false;
        // Names not listed in this pass are gone (removed, renamed away by another
        // reaper): their files are closed now.
        held.retain(|_, held| held.seen == sweep);
        Ok(Progress::Done(collector.finish()))
    }
}

impl AsFd for DirReader {
    /// The directory itself, for watching it (inotify through `/proc/self/fd`).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.fd()
    }
}

/// Opens a new entry for holding: `fstat` says what it is, whatever the listing said,
/// because a held file is read for as long as it lives. One with more than one name is
/// held as refused, so it is not opened again at every pass.
pub(super) fn open_held(
    dir: &ScoreDir,
    name: &CStr,
    file_type: FileType,
    ino: u64,
) -> Result<Held, OpenFailure> {
    let file = dir::open_entry(dir, name, Access::ReadOnly, file_type)?;
    let stat = rustix::fs::fstat(&file).map_err(|errno| OpenFailure::Io("fstat", errno.into()))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(OpenFailure::NotRegular(dir::file_type_name(
            FileType::from_raw_mode(stat.st_mode),
        )));
    }
    if stat.st_ino != ino {
        // Replaced between the listing and the open: the next pass sees the new one.
        return Err(OpenFailure::Gone);
    }
    #[allow(clippy::useless_conversion)] // st_nlink is u32 on some targets
    let links = u64::from(stat.st_nlink);
    Ok(Held {
        file,
        verified: Vec::new(),
        seen: 0,
        links: (links > 1).then_some(links),
    })
}

/// Hashes inode numbers, which are already well spread, with one multiplication.
#[derive(Default)]
pub(super) struct InoHasher(u64);

impl std::hash::Hasher for InoHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: spreads sequential numbers over the high bits the table uses.
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
