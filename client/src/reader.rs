//! Reading and reaping a scoreboard directory.
//!
//! A scan lists `status_*`, opens each entry relative to the directory, and takes a
//! non-blocking exclusive `flock`: refused means a live owner holds it, so the frame is
//! read; granted means the owner died, so the file is reaped. [`read_dir`] does that
//! once, opening and closing every file; a [`DirReader`] keeps files open between
//! sweeps, so a sweep of an unchanged directory costs one `flock` and one `pread` per
//! worker.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::hash::BuildHasherDefault;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::FileType;
use rustix::io::Errno;

use crate::chase::{self, Identity};
use crate::dir::{self, Access, Name, OpenFailure, Reaped, ScoreDir};
use crate::error::Result;
use crate::frame::{self, Undecodable};

/// How many times a frame whose digest does not match is read again before the file is
/// skipped, as Parallel::Scoreboard does: a mismatch is nearly always a read that raced
/// with a write.
pub const TORN_READ_ATTEMPTS: u32 = 10;

/// The default cap on a status's length: 1 MiB.
pub const DEFAULT_MAX_STATUS_LEN: u32 = 1 << 20;

/// The default cap on worker files read per directory: far above any real pool (a
/// pre-forking server runs tens to a few thousands of workers), far below what would
/// let a directory's owner make a reader's cost or descriptors grow without bound.
pub const DEFAULT_MAX_WORKERS: usize = 16_384;

/// The default cap on bytes read per directory and pass: 16 MiB, room for 16,384
/// statuses of 1 KiB (real statuses are a line). Without it, many large statuses, or
/// frames that never check out and are read ten times each, would make a pass's cost
/// and the reader's memory grow with what the directory's owner writes.
pub const DEFAULT_MAX_STATUS_BYTES: usize = 16 << 20;

/// How many skipped entries one pass lists individually (with path and reason); the
/// rest are only counted, so 100,000 planted entries cost no more than their listing.
pub const MAX_LISTED_SKIPS: usize = 32;

/// How long one pass may spend pausing for torn frames, all files together: a writer
/// preempted mid-store is waited for, but a directory full of frames that never check
/// out cannot make a pass last seconds.
pub const TORN_BACK_OFF_BUDGET: Duration = Duration::from_millis(20);

/// One live worker as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// The worker id: whatever follows `status_` in the file name. A name that is not
    /// UTF-8 is given escaped as systemd's `cescape` would (`\xNN` for each byte that is
    /// not valid UTF-8, `\\` for a backslash), so every worker is seen and counted.
    pub id: String,
    /// The status bytes, exactly as written.
    pub status: Vec<u8>,
    /// When the status was read.
    pub read_at: Instant,
    /// The file's inode number: names the file for [`DirReader::written`].
    pub inode: u64,
}

/// When a worker's file was last written, as its modification time says. A change
/// detector, never a clock: two looks that find different values know the worker wrote
/// in between (every writer moves it, see the crate docs), but the value itself is the
/// wall clock of the writer's kernel, which steps, and which the file's owner may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Written {
    /// `st_mtime`.
    pub seconds: i64,
    /// `st_mtime_nsec`.
    pub nanoseconds: i64,
}

impl Written {
    fn of(stat: &rustix::fs::Stat) -> Written {
        #[allow(clippy::unnecessary_cast)] // i64 on 64-bit targets, not everywhere
        Written {
            seconds: stat.st_mtime as i64,
            nanoseconds: stat.st_mtime_nsec as i64,
        }
    }
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
    /// The length field exceeds the reader's cap.
    TooLong {
        /// What the file claims.
        len: u32,
        /// The reader's cap.
        max: u32,
    },
    /// The digest never matched in [`TORN_READ_ATTEMPTS`] reads (fewer once the pass
    /// has spent its [`TORN_BACK_OFF_BUDGET`]).
    Torn,
    /// The file has more than one name (`st_nlink > 1`), or the same inode is listed
    /// under two names: a worker's file never is, so neither name is read or reaped.
    HardLinked {
        /// The file's link count.
        links: u64,
    },
    /// Past [`ReadOptions::max_workers`] files in this directory: not opened.
    TooManyFiles {
        /// The cap.
        max: usize,
    },
    /// Reading it would pass [`ReadOptions::max_status_bytes`] for this pass.
    OverByteBudget {
        /// The cap.
        max: usize,
    },
    /// A syscall failed.
    Io {
        /// The syscall.
        operation: &'static str,
        /// Its error.
        error: io::Error,
    },
}

impl SkipReason {
    /// Every value [`SkipReason::kind`] can return, so that a counter per kind can be
    /// set up at 0 before the first entry of that kind is ever skipped.
    pub const KINDS: &'static [&'static str] = &[
        "not_regular_file",
        "too_long",
        "torn",
        "hard_linked",
        "too_many_files",
        "over_byte_budget",
        "io",
    ];

    /// A short stable name for the kind of problem, for metrics labels and counters:
    /// one of [`SkipReason::KINDS`].
    pub fn kind(&self) -> &'static str {
        match self {
            SkipReason::NotRegularFile(_) => "not_regular_file",
            SkipReason::TooLong { .. } => "too_long",
            SkipReason::Torn => "torn",
            SkipReason::HardLinked { .. } => "hard_linked",
            SkipReason::TooManyFiles { .. } => "too_many_files",
            SkipReason::OverByteBudget { .. } => "over_byte_budget",
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
            SkipReason::TooLong { len, max } => write!(
                f,
                "skipping {path}: length field says {len} bytes, over the {max}-byte cap"
            ),
            SkipReason::Torn => write!(f, "skipping {path}: checksum mismatch in every read"),
            SkipReason::HardLinked { links } => write!(
                f,
                "skipping {path}: {links} names for one file (a hard link); a worker's file has one"
            ),
            SkipReason::TooManyFiles { max } => write!(
                f,
                "skipping {path}: more than {max} worker files in the directory"
            ),
            SkipReason::OverByteBudget { max } => write!(
                f,
                "skipping {path}: the directory's statuses pass the {max}-byte budget"
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
    /// The last status each of them had written, by id, when its frame could be read
    /// (within the pass's budgets): what a worker was doing when it died, which may be
    /// newer than anything a reader saw while it lived.
    pub last_statuses: BTreeMap<String, Vec<u8>>,
    /// Entries skipped with a reason worth a warning: the first [`MAX_LISTED_SKIPS`], and
    /// the first of every kind.
    pub skipped: Vec<Skipped>,
    /// How many entries were skipped in all, per [`SkipReason::kind`], listed or not.
    pub skip_counts: BTreeMap<&'static str, usize>,
    /// Ids of live workers whose status was not read in this pass (a frame that never
    /// checked out, or past the byte budget): still alive, status unknown for now.
    pub unread: Vec<String>,
}

impl Snapshot {
    /// How many entries were skipped in all.
    pub fn skipped_total(&self) -> usize {
        self.skip_counts.values().sum()
    }
}

/// Settings shared by every reader: the budgets that keep what a directory's owner
/// puts in it from becoming the reader's cost.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Statuses longer than this are skipped with [`SkipReason::TooLong`]; nothing of the
    /// claimed size is allocated. Default [`DEFAULT_MAX_STATUS_LEN`].
    pub max_status_len: u32,
    /// At most this many `status_*` files are opened per pass (and held open by a
    /// [`DirReader`]); the rest are skipped with [`SkipReason::TooManyFiles`]. Default
    /// [`DEFAULT_MAX_WORKERS`].
    pub max_workers: usize,
    /// At most this many bytes are read from files per pass — every read counts, torn
    /// re-reads included; past it files are skipped with [`SkipReason::OverByteBudget`].
    /// What a reader keeps is bounded by it too. Default [`DEFAULT_MAX_STATUS_BYTES`].
    pub max_status_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_status_len: DEFAULT_MAX_STATUS_LEN,
            max_workers: DEFAULT_MAX_WORKERS,
            max_status_bytes: DEFAULT_MAX_STATUS_BYTES,
        }
    }
}

/// Reads every live worker's status in `dir` once and reaps dead workers' files.
///
/// What the CLI and a worker's occasional look use. For a process that sweeps the same
/// directory again and again, a [`DirReader`] is several times cheaper.
///
/// `dir` is resolved safely (see [`DirReader::open`]), so this may run as root on a
/// directory that another user owns.
pub fn read_dir(dir: impl AsRef<Path>) -> Result<Snapshot> {
    let (dir, _) = ScoreDir::open_safely(dir.as_ref())?;
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
        // Without fstat (the listing vouches for the type, see `open_entry`), a file's
        // link count is unknown here; two names for one inode in the listing are caught.
        let mut inodes: HashSet<u64, BuildHasherDefault<InoHasher>> = HashSet::default();
        dir.rewind()?;
        dir.for_each_entry(
            &mut listing,
            |_| false,
            |name, file_type, ino| {
                let Some(id) = collector.status_entry(dir, name, file_type) else {
                    return;
                };
                if !inodes.insert(ino) {
                    return collector.skip(dir, name, SkipReason::HardLinked { links: 2 });
                }
                if !collector.may_open(dir, name) {
                    return;
                }
                let file = match dir::open_entry(dir, name, Access::ReadWrite, file_type) {
                    Ok(file) => file,
                    Err(failure) => return collector.open_failed(dir, name, failure),
                };
                let alive =
                    own_id == Some(id) || collector.lock_test_and_reap(dir, name, id, &file);
                if alive && mode == Mode::ReadOnce {
                    collector.read_worker(dir, name, (id, ino), &file, None);
                }
            },
        )?;
        Ok(collector.finish())
    }
}

/// What a scan or sweep accumulates, the budgets it spends, and the steps both take on
/// each entry.
struct Collector {
    snapshot: Snapshot,
    options: ReadOptions,
    /// Scratch space for frames, kept between files.
    buf: Vec<u8>,
    /// One clock reading per pass: every status in it was read within the pass.
    read_at: Instant,
    /// `status_*` entries opened (or held) in this pass, against `max_workers`.
    files: usize,
    /// Bytes this pass may still read from files (every `pread`, torn re-reads
    /// included), from `max_status_bytes`.
    bytes_left: usize,
    /// Pausing for torn frames left in this pass.
    back_off_left: Duration,
    /// `EMFILE`/`ENFILE` seen in this pass: no more opening until the next one.
    out_of_descriptors: bool,
    /// Directory entries listed in this pass so far (see [`DirReader::sweep_until`]).
    listed: usize,
}

impl Collector {
    fn new(options: ReadOptions) -> Self {
        Collector {
            snapshot: Snapshot::default(),
            options,
            buf: Vec::new(),
            read_at: Instant::now(),
            files: 0,
            bytes_left: options.max_status_bytes,
            back_off_left: TORN_BACK_OFF_BUDGET,
            out_of_descriptors: false,
            listed: 0,
        }
    }

    fn start(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        // One huge frame last pass is no reason to read a huge buffer's worth from every
        // file in this one.
        buf.truncate(4096);
        buf.shrink_to_fit();
        *self = Collector {
            buf,
            ..Collector::new(self.options)
        };
    }

    fn finish(&mut self) -> Snapshot {
        let mut snapshot = std::mem::take(&mut self.snapshot);
        snapshot.workers.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        snapshot
    }

    /// Counts a skipped entry, and lists it while the list has room or when it is the
    /// first of its kind: past that, a skipped entry costs a counter increment and no
    /// allocation.
    fn skip(&mut self, dir: &ScoreDir, name: &CStr, reason: SkipReason) {
        let count = self.snapshot.skip_counts.entry(reason.kind()).or_default();
        *count += 1;
        if self.snapshot.skipped.len() < MAX_LISTED_SKIPS || *count == 1 {
            self.snapshot.skipped.push(Skipped {
                path: dir.join(name),
                reason,
            });
        }
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
            Name::Grave if !self.out_of_descriptors => {
                dir::remove_abandoned_grave(dir, name);
                None
            }
            Name::Grave | Name::Tmp | Name::Other => None,
        }
    }

    /// Whether one more file may be opened in this pass, by the file-count budget and
    /// the descriptors left; records the skip when not.
    fn may_open(&mut self, dir: &ScoreDir, name: &CStr) -> bool {
        if self.files >= self.options.max_workers {
            let max = self.options.max_workers;
            self.skip(dir, name, SkipReason::TooManyFiles { max });
            return false;
        }
        if self.out_of_descriptors {
            *self.snapshot.skip_counts.entry("io").or_default() += 1;
            return false;
        }
        self.files += 1;
        true
    }

    /// Records why an entry could not be opened; one removed before we got to it is
    /// normal and not recorded. Out of descriptors, the pass stops opening files: trying
    /// every other entry would only fail the same way.
    fn open_failed(&mut self, dir: &ScoreDir, name: &CStr, failure: OpenFailure) {
        let reason = match failure {
            OpenFailure::Gone => return,
            OpenFailure::NotRegular(what) => SkipReason::NotRegularFile(what),
            OpenFailure::Io(operation, error) => {
                let no_descriptors = [Errno::MFILE, Errno::NFILE].map(|e| Some(e.raw_os_error()));
                if no_descriptors.contains(&error.raw_os_error()) {
                    self.out_of_descriptors = true;
                }
                SkipReason::Io { operation, error }
            }
        };
        self.skip(dir, name, reason);
    }

    /// The lock test: `flock(LOCK_EX | LOCK_NB)` granted means nobody holds the lock,
    /// so the owner has died; reap. Returns whether the owner lives.
    fn lock_test_and_reap(&mut self, dir: &ScoreDir, name: &CStr, id: &[u8], file: &File) -> bool {
        let reason = match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) => return true,
            Err(std::fs::TryLockError::Error(error)) => SkipReason::Io {
                operation: "flock",
                error,
            },
            Ok(()) => match dir::reap(dir, name, file) {
                Ok(Reaped::Removed) => {
                    let id = worker_id(id);
                    // The file is still open: its last frame outlives the name.
                    if let Ok(Some(status)) = self.read_frame(file, None) {
                        self.snapshot.last_statuses.insert(id.clone(), status);
                    }
                    self.snapshot.reaped.push(id);
                    return false;
                }
                Ok(Reaped::NotOurs) => return false,
                Err(error) => SkipReason::Io {
                    operation: error.operation(),
                    error: error.into(),
                },
            },
        };
        self.skip(dir, name, reason);
        false
    }

    /// Reads one frame, spending the pass's budgets.
    fn read_frame(
        &mut self,
        file: &File,
        verified: Option<&mut Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, SkipReason> {
        let budget = Budget {
            max_status_len: self.options.max_status_len,
            bytes_left: &mut self.bytes_left,
            back_off_left: &mut self.back_off_left,
        };
        read_frame(file, &mut self.buf, budget, verified)
    }

    /// Reads a live worker's frame into the snapshot, or records why it could not.
    fn read_worker(
        &mut self,
        dir: &ScoreDir,
        name: &CStr,
        (id, inode): (&[u8], u64),
        file: &File,
        verified: Option<&mut Vec<u8>>,
    ) {
        let reason = match self.read_frame(file, verified) {
            Ok(Some(status)) => {
                self.snapshot.workers.push(Worker {
                    id: worker_id(id),
                    status,
                    read_at: self.read_at,
                    inode,
                });
                return;
            }
            // A file created but not yet written: skipped silently, as upstream does.
            Ok(None) => return,
            Err(SkipReason::Torn) => {
                self.snapshot.unread.push(worker_id(id));
                SkipReason::Torn
            }
            Err(SkipReason::OverByteBudget { .. }) => {
                self.snapshot.unread.push(worker_id(id));
                SkipReason::OverByteBudget {
                    max: self.options.max_status_bytes,
                }
            }
            Err(reason) => reason,
        };
        self.skip(dir, name, reason);
    }
}

/// A worker's id from the bytes after `status_`: as they are when UTF-8, escaped when
/// not (see [`Worker::id`]).
fn worker_id(name: &[u8]) -> String {
    match std::str::from_utf8(name) {
        Ok(id) => id.to_owned(),
        Err(_) => {
            let mut id = String::with_capacity(name.len() * 2);
            for chunk in name.utf8_chunks() {
                for c in chunk.valid().chars() {
                    match c {
                        '\\' => id.push_str("\\\\"),
                        c => id.push(c),
                    }
                }
                for byte in chunk.invalid() {
                    id.push_str(&format!("\\x{byte:02x}"));
                }
            }
            id
        }
    }
}

/// Frames a [`DirReader`] keeps to skip the md5 of an unchanged status: up to 4 KiB,
/// which real statuses are.
const MAX_KEPT_FRAME: usize = 4096;

/// What one frame read may spend.
struct Budget<'a> {
    max_status_len: u32,
    /// Bytes the pass may still read; every `pread` is charged here.
    bytes_left: &'a mut usize,
    /// Pausing left for torn frames in the pass; spent here.
    back_off_left: &'a mut Duration,
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
    budget: Budget<'_>,
    mut verified: Option<&mut Vec<u8>>,
) -> Result<Option<Vec<u8>>, SkipReason> {
    let result = read_frame_within(file, buf, budget, verified.as_deref_mut());
    // A frame not returned now is not kept either: what a held file keeps is never more
    // than what the pass returned, so memory stays within the byte budget.
    if !matches!(result, Ok(Some(_)))
        && let Some(last) = verified
    {
        *last = Vec::new();
    }
    result
}

fn read_frame_within(
    file: &File,
    buf: &mut Vec<u8>,
    budget: Budget<'_>,
    verified: Option<&mut Vec<u8>>,
) -> Result<Option<Vec<u8>>, SkipReason> {
    const INITIAL: usize = 4096;
    if buf.len() < INITIAL {
        buf.resize(INITIAL, 0);
    }
    // The cap is filled in by the caller, which knows it.
    let over_budget = || SkipReason::OverByteBudget { max: 0 };
    let mut torn = 0;
    while torn < TORN_READ_ATTEMPTS {
        // Every read is paid for, torn re-reads included: reading and hashing is what a
        // directory full of frames that never check out would cost. Never more is read
        // than the budget has left; a read the budget cut short is over budget.
        let want = buf.len().min(*budget.bytes_left);
        if want == 0 {
            return Err(over_budget());
        }
        let n = rustix::io::pread(file, &mut buf[..want], 0).map_err(|errno| SkipReason::Io {
            operation: "pread",
            error: errno.into(),
        })?;
        *budget.bytes_left -= n;
        let cut_short = n == want && want < buf.len();
        let read = &buf[..n];
        if let Some(last) = verified.as_deref()
            && !last.is_empty()
            && read.starts_with(last)
        {
            return Ok(Some(last[frame::HEADER_LEN..].to_vec()));
        }
        match frame::decode(read, budget.max_status_len) {
            Ok(status) => {
                if let Some(last) = verified {
                    // Kept only when small: a large status is hashed again at each pass
                    // (paid from the byte budget) rather than held twice.
                    last.clear();
                    if frame::frame_len(status.len()) <= MAX_KEPT_FRAME {
                        last.extend_from_slice(&read[..frame::frame_len(status.len())]);
                    } else {
                        last.shrink_to_fit();
                    }
                }
                return Ok(Some(status.to_vec()));
            }
            Err(Undecodable::Short) => return Ok(None),
            Err(Undecodable::TooLong { len }) => {
                return Err(SkipReason::TooLong {
                    len,
                    max: budget.max_status_len,
                });
            }
            Err(Undecodable::Truncated { .. }) if cut_short => return Err(over_budget()),
            // The buffer was filled: the rest of the frame is there, read it all.
            Err(Undecodable::Truncated { needed }) if n == buf.len() => {
                if needed > *budget.bytes_left {
                    return Err(over_budget());
                }
                buf.resize(needed, 0)
            }
            Err(Undecodable::Truncated { .. } | Undecodable::DigestMismatch) => {
                torn += 1;
                if torn < TORN_READ_ATTEMPTS && !back_off(torn, budget.back_off_left) {
                    break;
                }
            }
        }
    }
    Err(SkipReason::Torn)
}

/// Pauses before the next read of a torn frame; false when the pass's budget for
/// pausing is spent, and the frame should be given up on now.
///
/// A writer storing into its mapping can be preempted mid-frame and leave it torn for a
/// time slice, so immediate re-reads alone would give up on a live, healthy worker on a
/// loaded machine. The first retries are immediate (the common race is nanoseconds
/// wide), then the pauses double from 100 µs, outlasting a few time slices: a frame
/// that never checks out costs about 6 ms, and all of a pass's frames together at most
/// [`TORN_BACK_OFF_BUDGET`].
fn back_off(attempt: u32, left: &mut Duration) -> bool {
    match attempt {
        0..=2 => true,
        3 => {
            std::thread::yield_now();
            true
        }
        _ => {
            let pause = Duration::from_micros(100 << (attempt - 4));
            match left.checked_sub(pause) {
                Some(rest) => {
                    *left = rest;
                    std::thread::sleep(pause);
                    true
                }
                None => false,
            }
        }
    }
}

/// A file kept open by a [`DirReader`] between sweeps.
struct Held {
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
fn open_held(
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

#[cfg(test)]
mod tests;
