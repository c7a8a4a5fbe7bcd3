//! The worker's side: one [`Scoreboard`] handle per process, one status file per worker.

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::dir::{self, Access, ScoreDir, TMP_SUFFIX};
use crate::error::{Context, Error, Result};
use crate::reader::{Mode as ScanMode, ReadOptions, Scan, Snapshot};
use crate::sink::{Sink, WriteMode};

/// How many times the create–lock–rename dance is restarted when something else
/// interferes (a Parallel::Scoreboard 0.08 reader unlinking our `.tmp`) before giving up.
const CREATE_ATTEMPTS: u32 = 16;

/// Where the worker id comes from.
enum IdSource {
    /// The process id, as Parallel::Scoreboard's default `worker_id`.
    Pid,
    /// A caller's closure, formatted into a reused buffer on every update.
    Custom(Box<dyn FnMut(&mut String) + Send>),
}

/// A worker's handle on a scoreboard directory.
///
/// The first [`update`](Scoreboard::update) creates the worker's file; later ones
/// rewrite it in place. Dropping the handle removes the file. See the crate docs for the
/// protocol.
pub struct Scoreboard {
    dir: ScoreDir,
    id_source: IdSource,
    /// The current id, rebuilt on each update for a custom id source.
    id: String,
    file: Option<StatusFile>,
    write_mode: WriteMode,
    read_options: ReadOptions,
}

/// A worker's own status file, locked for as long as it is open.
struct StatusFile {
    /// Holds the `flock(LOCK_EX)` that tells readers we are alive.
    file: File,
    /// `status_<id>`, relative to the directory.
    name: CString,
    id: String,
    /// The process that created the file. A forked child inherits the handle but not
    /// the ownership.
    owner_pid: u32,
    sink: Sink,
}

/// Configures a [`Scoreboard`] before opening it.
pub struct Builder {
    dir: PathBuf,
    id_source: IdSource,
    write_mode: WriteMode,
    read_options: ReadOptions,
}

impl Builder {
    /// Uses `worker_id()` instead of the process id, as Parallel::Scoreboard's
    /// `worker_id` option. It is called on every update, so it must be cheap; an id
    /// that changes makes the next update remove the old file and start a new one. Ids
    /// must be non-empty, must not contain `/` or NUL and must not end in `.tmp`.
    pub fn worker_id<F, T>(mut self, mut worker_id: F) -> Self
    where
        F: FnMut() -> T + Send + 'static,
        T: std::fmt::Display,
    {
        self.id_source = IdSource::Custom(Box::new(move |buf: &mut String| {
            let _ = write!(buf, "{}", worker_id());
        }));
        self
    }

    /// Chooses how updates reach the file; [`WriteMode::Mapped`] unless told otherwise.
    pub fn write_mode(mut self, mode: WriteMode) -> Self {
        self.write_mode = mode;
        self
    }

    /// Settings for [`Scoreboard::read_all`].
    pub fn read_options(mut self, options: ReadOptions) -> Self {
        self.read_options = options;
        self
    }

    /// Creates the directory (and its parents) when missing, then removes a file left
    /// under this worker's id by a dead process.
    pub fn open(self) -> Result<Scoreboard> {
        // create_dir_all treats "already exists" as success at every level, so two
        // workers creating the tree at once both succeed (upstream bug #11).
        std::fs::create_dir_all(&self.dir).context("mkdir", || self.dir.clone())?;
        let mut scoreboard = Scoreboard {
            dir: ScoreDir::open(&self.dir)?,
            id_source: self.id_source,
            id: String::new(),
            file: None,
            write_mode: self.write_mode,
            read_options: self.read_options,
        };
        scoreboard.refresh_id(crate::pid::current());
        scoreboard.remove_stale_own_file()?;
        Ok(scoreboard)
    }
}

impl Scoreboard {
    /// Opens the scoreboard in `dir` with the process id as worker id.
    pub fn open(dir: impl AsRef<Path>) -> Result<Scoreboard> {
        Scoreboard::builder(dir).open()
    }

    /// Starts configuring a scoreboard in `dir`.
    pub fn builder(dir: impl AsRef<Path>) -> Builder {
        Builder {
            dir: dir.as_ref().to_owned(),
            id_source: IdSource::Pid,
            write_mode: WriteMode::default(),
            read_options: ReadOptions::default(),
        }
    }

    /// The scoreboard directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The worker's file, once the first update has created it.
    pub fn status_path(&self) -> Option<PathBuf> {
        self.file.as_ref().map(|file| self.dir.join(&file.name))
    }

    /// How updates reach the file: the mode asked for, unless the filesystem refused to
    /// map the file and updates fell back to `pwrite`.
    pub fn write_mode(&self) -> WriteMode {
        self.file
            .as_ref()
            .map_or(self.write_mode, |file| file.sink.mode())
    }

    /// Publishes `status` as this worker's status.
    ///
    /// After the first call this makes no allocation, and in [`WriteMode::Mapped`] no
    /// syscall but one `futimens` per [`VISIBLE_EVERY`] at most: it checks the (cached)
    /// pid, computes an md5, stores the frame into the file's shared mapping, and keeps
    /// the write visible to readers (see the crate docs) even when the text is the same.
    pub fn update(&mut self, status: impl AsRef<[u8]>) -> Result<()> {
        let status = status.as_ref();
        let pid = crate::pid::current();
        let same_id = match (&self.id_source, &self.file) {
            // Same process, same pid: same id, nothing to format.
            (IdSource::Pid, Some(file)) if file.owner_pid == pid => true,
            _ => {
                self.refresh_id(pid);
                self.file
                    .as_ref()
                    .is_some_and(|file| file.owner_pid == pid && file.id == self.id)
            }
        };
        if !same_id {
            self.replace_file(pid, status)?;
        }
        let file = self.file.as_mut().expect("opened above");
        file.sink
            .write(&file.file, status)
            .map_err(|e| Error::new(e.0, self.dir.join(&file.name), e.1))
    }

    /// Reads every worker's status (this worker's own included) and reaps dead
    /// workers' files, as Parallel::Scoreboard's `read_all`.
    pub fn read_all(&mut self) -> Result<Snapshot> {
        self.scan(ScanMode::ReadOnce)
    }

    /// Reaps dead workers' files without reading statuses; the snapshot's `workers` is
    /// empty.
    pub fn cleanup(&mut self) -> Result<Snapshot> {
        self.scan(ScanMode::Cleanup)
    }

    fn scan(&mut self, mode: ScanMode) -> Result<Snapshot> {
        self.refresh_id(crate::pid::current());
        Scan::new(&self.dir, self.read_options, Some(self.id.as_bytes())).run(mode)
    }

    fn refresh_id(&mut self, pid: u32) {
        self.id.clear();
        match &mut self.id_source {
            IdSource::Pid => {
                let _ = write!(self.id, "{pid}");
            }
            IdSource::Custom(worker_id) => worker_id(&mut self.id),
        }
    }

    /// Gives up the current file (if any) and creates one under the current id
    /// (`self.id`, just refreshed).
    #[cold]
    fn replace_file(&mut self, pid: u32, first_status: &[u8]) -> Result<()> {
        if let Some(old) = self.file.take() {
            if old.owner_pid == pid {
                // Our id changed: the old file is ours to remove.
                self.unlink_own(&old);
            }
            // In a forked child the inherited file is the parent's: closing our copy of
            // the fd releases nothing (the lock belongs to the shared open file
            // description, which the parent still holds), and dropping the sink only
            // unmaps the child's copy of the mapping.
            drop(old);
        }
        validate_id(&self.id).map_err(|e| Error::new("validate worker id", self.dir.path(), e))?;
        self.file = Some(self.create_file(pid, first_status)?);
        Ok(())
    }

    /// Create `status_<id>.tmp`, lock it, write the first frame, rename it into place.
    ///
    /// The lock is taken before the rename so that no reader ever sees an unlocked
    /// `status_<id>` from us (it would reap it), and the first frame is written before
    /// the rename so that no reader ever sees our file empty.
    fn create_file(&self, pid: u32, first_status: &[u8]) -> Result<StatusFile> {
        let name = dir::status_name(&self.id);
        let tmp = dir::tmp_name(&name);
        let tmp_path = || self.dir.join(&tmp);
        for _ in 0..CREATE_ATTEMPTS {
            // A .tmp under our id is a leftover of a process with our id that died
            // mid-create; nobody else writes this name.
            match rustix::fs::unlinkat(self.dir.fd(), &tmp, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(errno) => return Err(errno).context("unlinkat", tmp_path),
            }
            let fd = match rustix::fs::openat(
                self.dir.fd(),
                &tmp,
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            ) {
                Ok(fd) => fd,
                Err(Errno::EXIST) => continue,
                Err(errno) => return Err(errno).context("openat", tmp_path),
            };
            let file = File::from(fd);
            match file.try_lock() {
                Ok(()) => {}
                // A 0.08 reader is testing our unlocked .tmp and will unlink it: start
                // over with a fresh file rather than wait on a lock anyone could hold.
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(e)) => return Err(e).context("flock", tmp_path),
            }
            let mut sink = Sink::new(&file, self.write_mode, first_status.len())
                .map_err(|e| Error::new(e.0, tmp_path(), e.1))?;
            sink.write(&file, first_status)
                .map_err(|e| Error::new(e.0, tmp_path(), e.1))?;
            match rustix::fs::renameat(self.dir.fd(), &tmp, self.dir.fd(), &name) {
                Ok(()) => {
                    return Ok(StatusFile {
                        file,
                        name,
                        id: self.id.clone(),
                        owner_pid: pid,
                        sink,
                    });
                }
                // A 0.08 reader took the lock before us and unlinked the .tmp.
                Err(Errno::NOENT) => continue,
                Err(errno) => return Err(errno).context("renameat", tmp_path),
            }
        }
        Err(Error::new(
            "create status file",
            tmp_path(),
            io::Error::other(format!(
                "another process kept removing or locking it ({CREATE_ATTEMPTS} attempts)"
            )),
        ))
    }

    /// Parallel::Scoreboard unlinks `status_<id>` at `new`; we remove it only when its
    /// lock is free, so a live process that shares our id keeps its file.
    fn remove_stale_own_file(&self) -> Result<()> {
        let name = dir::status_name(&self.id);
        if validate_id(&self.id).is_err() {
            return Ok(()); // reported by the first update
        }
        let Ok(file) = dir::open_entry(&self.dir, &name, Access::ReadWrite, FileType::Unknown)
        else {
            return Ok(());
        };
        if file.try_lock().is_ok() {
            dir::reap(&self.dir, &name, &file)?;
        }
        Ok(())
    }

    /// Removes our own file, unless the name now belongs to another inode.
    fn unlink_own(&self, own: &StatusFile) {
        let (Ok(ours), Ok(named)) = (
            rustix::fs::fstat(&own.file),
            rustix::fs::statat(self.dir.fd(), &own.name, AtFlags::SYMLINK_NOFOLLOW),
        ) else {
            return; // already gone, or the directory is: nothing to remove
        };
        if (ours.st_dev, ours.st_ino) == (named.st_dev, named.st_ino) {
            let _ = rustix::fs::unlinkat(self.dir.fd(), &own.name, AtFlags::empty());
        }
    }
}

impl Drop for Scoreboard {
    /// Removes the worker's file. A directory already deleted is not an error (upstream
    /// t/01destroy), and a forked child that never updated leaves its parent's file alone.
    fn drop(&mut self) {
        if let Some(file) = self.file.take()
            && file.owner_pid == crate::pid::current()
        {
            self.unlink_own(&file);
        }
    }
}

/// Ids become file names: they must stay one name inside the directory and must not
/// look like a writer's temporary file.
fn validate_id(id: &str) -> io::Result<()> {
    let problem = if id.is_empty() {
        "is empty"
    } else if id.contains('/') {
        "contains '/'"
    } else if id.contains('\0') {
        "contains NUL"
    } else if id.as_bytes().ends_with(TMP_SUFFIX) {
        "ends with .tmp"
    } else if id.len() > 200 {
        "is longer than 200 bytes"
    } else {
        return Ok(());
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("worker id {id:?} {problem}"),
    ))
}

#[cfg(test)]
mod tests;
