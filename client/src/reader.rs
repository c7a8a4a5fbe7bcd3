//! Reading and reaping a scoreboard directory.
//!
//! A scan lists `status_*`, opens each entry relative to the directory, and takes a
//! non-blocking exclusive `flock`: refused means a live owner holds it, so the frame is
//! read; granted means the owner died, so the file is reaped. [`read_dir`] does that
//! once, opening and closing every file; a [`DirReader`] keeps files open between
//! sweeps, so a sweep of an unchanged directory costs one `flock` and one `pread` per
//! worker.

use std::collections::HashSet;
use std::ffi::CStr;
use std::fs::File;
use std::hash::BuildHasherDefault;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::FileType;
use rustix::io::Errno;

use crate::dir::{self, Access, Name, OpenFailure, Reaped, ScoreDir};
use crate::error::Result;
use crate::frame;

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

/// How many dead workers' last frames one pass reads (see [`Snapshot::last_statuses`]):
/// a reader keeps what its caller can use of them, and a directory's owner who makes
/// thousands die does not get them all read.
pub const MAX_LAST_STATUSES: usize = 64;

/// The longest last frame read of a dead worker; a longer one is not read (its status
/// is then unknown, not empty).
pub const MAX_LAST_STATUS_LEN: u32 = 64 << 10;

/// How long one pass may spend pausing for torn frames, all files together: a writer
/// preempted mid-store is waited for, but a directory full of frames that never check
/// out cannot make a pass last seconds.
pub const TORN_BACK_OFF_BUDGET: Duration = Duration::from_millis(20);

mod frame_read;
mod held;
mod snapshot;

use frame_read::*;
pub use held::*;
pub use snapshot::*;

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
        if mode == Mode::Cleanup {
            // Reaping only: nobody asks what the dead were doing.
            collector.last_statuses_left = 0;
        }
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
    /// Dead workers' last frames this pass may still read, from [`MAX_LAST_STATUSES`];
    /// 0 for a pass that only reaps.
    last_statuses_left: usize,
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
            last_statuses_left: MAX_LAST_STATUSES,
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
            *self.snapshot.skip_counts.entry(SkipKind::Io).or_default() += 1;
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
                    if let Some(status) = self.last_status(file) {
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

    /// A reaped file's last frame, read from the still-open file (it outlives the name):
    /// within budgets of its own, so that dead workers cost the live ones nothing — a
    /// few frames, each short, read once (nobody writes a dead worker's file, so a torn
    /// frame stays torn).
    fn last_status(&mut self, file: &File) -> Option<Vec<u8>> {
        if self.last_statuses_left == 0 {
            return None;
        }
        self.last_statuses_left -= 1;
        let mut bytes_left = MAX_LAST_STATUS_LEN as usize + frame::HEADER_LEN;
        let mut back_off_left = Duration::ZERO;
        let budget = Budget {
            max_status_len: MAX_LAST_STATUS_LEN.min(self.options.max_status_len),
            bytes_left: &mut bytes_left,
            back_off_left: &mut back_off_left,
        };
        read_frame(file, &mut self.buf, budget, None).ok().flatten()
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

#[cfg(test)]
mod tests;
