//! What a pass returns — live workers, dead ones, what was skipped and why — and the
//! budgets it reads within.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Instant;

use super::*;

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
    pub(super) fn of(stat: &rustix::fs::Stat) -> Written {
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
    /// The kind of problem, for counters and metrics labels.
    pub fn kind(&self) -> SkipKind {
        match self {
            SkipReason::NotRegularFile(_) => SkipKind::NotRegularFile,
            SkipReason::TooLong { .. } => SkipKind::TooLong,
            SkipReason::Torn => SkipKind::Torn,
            SkipReason::HardLinked { .. } => SkipKind::HardLinked,
            SkipReason::TooManyFiles { .. } => SkipKind::TooManyFiles,
            SkipReason::OverByteBudget { .. } => SkipKind::OverByteBudget,
            SkipReason::Io { .. } => SkipKind::Io,
        }
    }
}

/// What kind of problem made an entry skipped: a closed set whose `Display` is the
/// stable label metrics and logs use (`not_regular_file`, `too_long`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipKind {
    /// [`SkipReason::NotRegularFile`].
    NotRegularFile,
    /// [`SkipReason::TooLong`].
    TooLong,
    /// [`SkipReason::Torn`].
    Torn,
    /// [`SkipReason::HardLinked`].
    HardLinked,
    /// [`SkipReason::TooManyFiles`].
    TooManyFiles,
    /// [`SkipReason::OverByteBudget`].
    OverByteBudget,
    /// [`SkipReason::Io`].
    Io,
}

impl SkipKind {
    /// Every kind, so that a counter per kind can be set up at 0 before the first
    /// entry of that kind is ever skipped.
    pub const ALL: [SkipKind; 7] = [
        SkipKind::NotRegularFile,
        SkipKind::TooLong,
        SkipKind::Torn,
        SkipKind::HardLinked,
        SkipKind::TooManyFiles,
        SkipKind::OverByteBudget,
        SkipKind::Io,
    ];

    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipKind::NotRegularFile => "not_regular_file",
            SkipKind::TooLong => "too_long",
            SkipKind::Torn => "torn",
            SkipKind::HardLinked => "hard_linked",
            SkipKind::TooManyFiles => "too_many_files",
            SkipKind::OverByteBudget => "over_byte_budget",
            SkipKind::Io => "io",
        }
    }
}

impl fmt::Display for SkipKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    /// The last status each of them had written, by id, when its frame could be read:
    /// what a worker was doing when it died, which may be newer than anything a reader
    /// saw while it lived. At most [`MAX_LAST_STATUSES`](crate::MAX_LAST_STATUSES) per
    /// pass, each at most [`MAX_LAST_STATUS_LEN`](crate::MAX_LAST_STATUS_LEN) bytes,
    /// read within budgets of their own (live workers' reads are not charged).
    pub last_statuses: BTreeMap<String, Vec<u8>>,
    /// Entries skipped with a reason worth a warning: the first [`MAX_LISTED_SKIPS`], and
    /// the first of every kind.
    pub skipped: Vec<Skipped>,
    /// How many entries were skipped in all, per [`SkipReason::kind`], listed or not.
    pub skip_counts: BTreeMap<SkipKind, usize>,
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
