//! Reading and reaping a scoreboard directory.
//!
//! A scan lists `status_*`, opens each entry relative to the directory, and takes a
//! non-blocking exclusive `flock`: refused means a live owner holds it, so the frame is
//! read; granted means the owner died, so the file is reaped. [`read_dir`] does that
//! once, opening and closing every file; a [`DirReader`] keeps files open between
//! sweeps, so a sweep of an unchanged directory costs one `flock` and one `pread` per
//! worker.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::hash::BuildHasherDefault;
use std::io;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::fs::FileType;

use crate::dir::{self, Access, Name, OpenFailure, Reaped, ScoreDir};
use crate::error::Result;
use crate::frame::{self, Undecodable};

/// How many times a frame whose digest does not match is read again before the file is
/// skipped, as Parallel::Scoreboard does: a mismatch is nearly always a read that raced
/// with a write.
pub const TORN_READ_ATTEMPTS: u32 = 10;

/// The default cap on a status's length: 1 MiB.
pub const DEFAULT_MAX_STATUS_LEN: u32 = 1 << 20;

/// One live worker as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// The worker id: whatever follows `status_` in the file name.
    pub id: String,
    /// The status bytes, exactly as written.
    pub status: Vec<u8>,
    /// When the status was read.
    pub read_at: Instant,
}

impl Worker {
    /// The status as text, with invalid UTF-8 replaced.
    pub fn status_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.status)
    }
}

/// An entry that looked like a worker's file but could not be read.
#[derive(Debug)]
pub struct Skipped {
    /// The entry's path.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// Why a [`Skipped`] entry was skipped.
#[derive(Debug)]
#[non_exhaustive]
pub enum SkipReason {
    /// A symlink, FIFO, directory, device or socket: never followed, opened or read.
    NotRegularFile(&'static str),
    /// A live worker whose id (file name) is not UTF-8.
    NonUtf8Name,
    /// The length field exceeds the reader's cap.
    TooLong {
        /// What the file claims.
        len: u32,
        /// The reader's cap.
        max: u32,
    },
    /// The digest never matched in [`TORN_READ_ATTEMPTS`] reads.
    Torn,
    /// A syscall failed.
    Io {
        /// The syscall.
        operation: &'static str,
        /// Its error.
        error: io::Error,
    },
}

impl SkipReason {
    /// A short stable name for the kind of problem, for metrics labels and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            SkipReason::NotRegularFile(_) => "not_regular_file",
            SkipReason::NonUtf8Name => "non_utf8_name",
            SkipReason::TooLong { .. } => "too_long",
            SkipReason::Torn => "torn",
            SkipReason::Io { .. } => "io",
        }
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.reason {
            SkipReason::NotRegularFile(what) => {
                write!(
                    f,
                    "skipping {path}: a {what}, not a regular file; not followed"
                )
            }
            SkipReason::NonUtf8Name => write!(f, "skipping {path}: worker id is not UTF-8"),
            SkipReason::TooLong { len, max } => write!(
                f,
                "skipping {path}: length field says {len} bytes, over the {max}-byte cap"
            ),
            SkipReason::Torn => write!(
                f,
                "skipping {path}: checksum mismatch in {TORN_READ_ATTEMPTS} consecutive reads"
            ),
            SkipReason::Io { operation, error } => {
                write!(f, "skipping {path}: {operation}: {error}")
            }
        }
    }
}

/// What one scan of the directory found.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Live workers and their statuses, sorted by id.
    pub workers: Vec<Worker>,
    /// Ids of dead workers whose files this scan removed.
    pub reaped: Vec<String>,
    /// Entries skipped with a reason worth a warning.
    pub skipped: Vec<Skipped>,
}

/// Settings shared by every reader.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Statuses longer than this are skipped with [`SkipReason::TooLong`]; nothing of the
    /// claimed size is allocated. Default [`DEFAULT_MAX_STATUS_LEN`].
    pub max_status_len: u32,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_status_len: DEFAULT_MAX_STATUS_LEN,
        }
    }
}

/// Reads every live worker's status in `dir` once and reaps dead workers' files.
///
/// What the CLI and a worker's occasional look use. For a process that sweeps the same
/// directory again and again, a [`DirReader`] is several times cheaper.
pub fn read_dir(dir: impl AsRef<Path>) -> Result<Snapshot> {
    let dir = ScoreDir::open(dir.as_ref())?;
    Scan::new(&dir, ReadOptions::default(), None).run(Mode::ReadOnce)
}

/// What a scan does with each live entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Open, test, read, close.
    ReadOnce,
    /// Open, test, close: reap only.
    Cleanup,
}

/// One pass over a directory, shared by the one-shot reader, the reaper and the
/// owner's `read_all`.
pub(crate) struct Scan<'a> {
    dir: &'a ScoreDir,
    /// The caller's own id: its file is live by definition and is read without a lock
    /// test (the test would fail anyway, but an own file left by a previous process with
    /// the same id must not be reaped under the caller).
    own_id: Option<&'a [u8]>,
    collector: Collector,
}

impl<'a> Scan<'a> {
    pub(crate) fn new(dir: &'a ScoreDir, options: ReadOptions, own_id: Option<&'a [u8]>) -> Self {
        Scan {
            dir,
            own_id,
            collector: Collector::new(options),
        }
    }

    pub(crate) fn run(self, mode: Mode) -> Result<Snapshot> {
        let Scan {
            dir,
            own_id,
            mut collector,
        } = self;
        let mut listing = Vec::new();
        dir.for_each_entry(&mut listing, |name, file_type, _ino| {
            let Some(id) = collector.status_entry(dir, name, file_type) else {
                return;
            };
            let file = match dir::open_entry(dir, name, Access::ReadWrite, file_type) {
                Ok(file) => file,
                Err(failure) => return collector.open_failed(dir, name, failure),
            };
            let alive = own_id == Some(id) || collector.lock_test_and_reap(dir, name, id, &file);
            if alive && mode == Mode::ReadOnce {
                collector.read_worker(dir, name, id, &file, None);
            }
        })?;
        Ok(collector.finish())
    }
}

/// What a scan or sweep accumulates, and the steps both take on each entry.
struct Collector {
    snapshot: Snapshot,
    options: ReadOptions,
    /// Scratch space for frames, kept between files.
    buf: Vec<u8>,
    /// One clock reading per pass: every status in it was read within the pass.
    read_at: Instant,
}

impl Collector {
    fn new(options: ReadOptions) -> Self {
        Collector {
            snapshot: Snapshot::default(),
            options,
            buf: Vec::new(),
            read_at: Instant::now(),
        }
    }

    fn start(&mut self) {
        self.snapshot = Snapshot::default();
        self.read_at = Instant::now();
    }

    fn finish(&mut self) -> Snapshot {
        let mut snapshot = std::mem::take(&mut self.snapshot);
        snapshot.workers.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        snapshot
    }

    fn skip(&mut self, dir: &ScoreDir, name: &CStr, reason: SkipReason) {
        self.snapshot.skipped.push(Skipped {
            path: dir.join(name),
            reason,
        });
    }

    /// The worker id when the entry is a status file worth opening. Cleans up abandoned
    /// graves on the way; `d_type` refuses non-regular entries without opening them
    /// (opening a device can have side effects); for `DT_UNKNOWN`, `open_entry` asks
    /// `fstat`.
    fn status_entry<'n>(
        &mut self,
        dir: &ScoreDir,
        name: &'n CStr,
        file_type: FileType,
    ) -> Option<&'n [u8]> {
        match Name::classify(name.to_bytes()) {
            Name::Status { id } => match file_type {
                FileType::RegularFile | FileType::Unknown => Some(id),
                other => {
                    self.skip(
                        dir,
                        name,
                        SkipReason::NotRegularFile(dir::file_type_name(other)),
                    );
                    None
                }
            },
            Name::Grave => {
                dir::remove_abandoned_grave(dir, name);
                None
            }
            Name::Tmp | Name::Other => None,
        }
    }

    /// Records why an entry could not be opened; one removed before we got to it is
    /// normal and not recorded.
    fn open_failed(&mut self, dir: &ScoreDir, name: &CStr, failure: OpenFailure) {
        let reason = match failure {
            OpenFailure::Gone => return,
            OpenFailure::NotRegular(what) => SkipReason::NotRegularFile(what),
            OpenFailure::Io(operation, error) => SkipReason::Io { operation, error },
        };
        self.skip(dir, name, reason);
    }

    /// The lock test: `flock(LOCK_EX | LOCK_NB)` granted means nobody holds the lock,
    /// so the owner has died; reap. Returns whether the owner lives.
    fn lock_test_and_reap(&mut self, dir: &ScoreDir, name: &CStr, id: &[u8], file: &File) -> bool {
        let problem = match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) => return true,
            Err(std::fs::TryLockError::Error(error)) => Skipped {
                path: dir.join(name),
                reason: SkipReason::Io {
                    operation: "flock",
                    error,
                },
            },
            Ok(()) => match dir::reap(dir, name, file) {
                Ok(Reaped::Removed) => {
                    self.snapshot
                        .reaped
                        .push(String::from_utf8_lossy(id).into_owned());
                    return false;
                }
                Ok(Reaped::NotOurs) => return false,
                Err(error) => Skipped {
                    path: error.path().to_owned(),
                    reason: SkipReason::Io {
                        operation: error.operation(),
                        error: error.into(),
                    },
                },
            },
        };
        self.snapshot.skipped.push(problem);
        false
    }

    /// Reads a live worker's frame into the snapshot, or records why it could not.
    fn read_worker(
        &mut self,
        dir: &ScoreDir,
        name: &CStr,
        id: &[u8],
        file: &File,
        verified: Option<&mut Vec<u8>>,
    ) {
        let max = self.options.max_status_len;
        let reason = match read_frame(file, &mut self.buf, max, verified) {
            Ok(Some(status)) => match std::str::from_utf8(id) {
                Ok(id) => {
                    self.snapshot.workers.push(Worker {
                        id: id.to_owned(),
                        status,
                        read_at: self.read_at,
                    });
                    return;
                }
                Err(_) => SkipReason::NonUtf8Name,
            },
            // A file created but not yet written: skipped silently, as upstream does.
            Ok(None) => return,
            Err(reason) => reason,
        };
        self.skip(dir, name, reason);
    }
}

/// Reads the frame at offset 0 with `pread`, retrying torn reads.
///
/// `buf` is the caller's scratch buffer, kept between files so a sweep allocates only
/// the statuses it returns. One `pread` reads the whole file in the common case, as the
/// kernel copies at most the file's size however large the buffer.
///
/// `verified`, when given, holds the last frame this file yielded: bytes equal to it
/// need no md5 (a long-lived reader mostly finds statuses unchanged), and a newly
/// verified frame replaces it.
fn read_frame(
    file: &File,
    buf: &mut Vec<u8>,
    max_status_len: u32,
    verified: Option<&mut Vec<u8>>,
) -> Result<Option<Vec<u8>>, SkipReason> {
    const INITIAL: usize = 4096;
    if buf.len() < INITIAL {
        buf.resize(INITIAL, 0);
    }
    let mut torn = 0;
    while torn < TORN_READ_ATTEMPTS {
        let n = rustix::io::pread(file, &mut buf[..], 0).map_err(|errno| SkipReason::Io {
            operation: "pread",
            error: errno.into(),
        })?;
        let read = &buf[..n];
        if let Some(last) = verified.as_deref()
            && !last.is_empty()
            && read.starts_with(last)
        {
            return Ok(Some(last[frame::HEADER_LEN..].to_vec()));
        }
        match frame::decode(read, max_status_len) {
            Ok(status) => {
                if let Some(last) = verified {
                    last.clear();
                    last.extend_from_slice(&read[..frame::frame_len(status.len())]);
                }
                return Ok(Some(status.to_vec()));
            }
            Err(Undecodable::Short) => return Ok(None),
            Err(Undecodable::TooLong { len }) => {
                return Err(SkipReason::TooLong {
                    len,
                    max: max_status_len,
                });
            }
            // The buffer was filled: the rest of the frame is there, read it all.
            Err(Undecodable::Truncated { needed }) if n == buf.len() => buf.resize(needed, 0),
            Err(Undecodable::Truncated { .. } | Undecodable::DigestMismatch) => {
                torn += 1;
                if torn < TORN_READ_ATTEMPTS {
                    back_off(torn);
                }
            }
        }
    }
    Err(SkipReason::Torn)
}

/// Pauses before the next read of a torn frame.
///
/// A writer storing into its mapping can be preempted mid-frame and leave it torn for a
/// time slice, so immediate re-reads alone would give up on a live, healthy worker on a
/// loaded machine. The first retries are immediate (the common race is nanoseconds
/// wide), then the pauses double from 100 µs, outlasting a few time slices: a frame
/// that never checks out costs about 6 ms in all.
fn back_off(attempt: u32) {
    match attempt {
        0..=2 => {}
        3 => std::thread::yield_now(),
        _ => std::thread::sleep(std::time::Duration::from_micros(100 << (attempt - 4))),
    }
}

/// A file kept open by a [`DirReader`] between sweeps.
struct Held {
    file: File,
    /// The last frame read from the file and found whole.
    verified: Vec<u8>,
    /// The sweep that last saw the name, to close files whose names have gone.
    seen: u64,
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
pub struct DirReader {
    dir: ScoreDir,
    held: HashMap<u64, Held, BuildHasherDefault<InoHasher>>,
    sweeps: u64,
    /// The `getdents64` buffer, kept between sweeps.
    listing: Vec<MaybeUninit<u8>>,
    collector: Collector,
}

impl DirReader {
    /// Opens `dir` for repeated sweeps.
    pub fn open(dir: impl AsRef<Path>, options: ReadOptions) -> Result<Self> {
        Ok(DirReader {
            dir: ScoreDir::open(dir.as_ref())?,
            held: HashMap::default(),
            sweeps: 0,
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

    /// Reads every live worker and reaps dead ones, reusing open files.
    pub fn sweep(&mut self) -> Result<Snapshot> {
        self.sweeps += 1;
        let DirReader {
            dir,
            held,
            sweeps,
            listing,
            collector,
        } = self;
        let sweep = *sweeps;
        collector.start();
        dir.for_each_entry(listing, |name, file_type, ino| {
            let Some(id) = collector.status_entry(dir, name, file_type) else {
                return;
            };
            // Keyed by the listing's inode number: a name replaced by a new file (a
            // restart under a reused pid) shows a new number and is opened afresh. If
            // the name is replaced between the listing and the open, the entry holds
            // the newer file under the older number; the next sweep finds neither
            // mismatch harmful: the older number is not listed and is dropped.
            let entry = match held.entry(ino) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(vacant) => {
                    match dir::open_entry(dir, name, Access::ReadOnly, file_type) {
                        Ok(file) => vacant.insert(Held {
                            file,
                            verified: Vec::new(),
                            seen: sweep,
                        }),
                        Err(failure) => return collector.open_failed(dir, name, failure),
                    }
                }
            };
            entry.seen = sweep;
            if collector.lock_test_and_reap(dir, name, id, &entry.file) {
                collector.read_worker(dir, name, id, &entry.file, Some(&mut entry.verified));
            } else {
                // Reaped or unusable: close it now, reopen if the name comes back.
                held.remove(&ino);
            }
        })?;
        held.retain(|_, held| held.seen == sweep);
        Ok(collector.finish())
    }
}

/// Hashes inode numbers, which are already well spread, with one multiplication.
#[derive(Default)]
struct InoHasher(u64);

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
