//! The scoreboard directory: file names, opening entries without following anything,
//! and removing a dead worker's file without ever removing a live one.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::chase::{self, Identity};
use crate::error::{Context, Result};

/// Every worker's file is `status_<id>`.
pub(crate) const STATUS_PREFIX: &[u8] = b"status_";
/// A writer creates `status_<id>.tmp`, locks it, then renames it into place.
pub(crate) const TMP_SUFFIX: &[u8] = b".tmp";
/// A reaper renames a dead file to a private name before unlinking it; see [`reap`].
/// The leading dot keeps it out of Parallel::Scoreboard's `glob "status_*"`.
const GRAVE_PREFIX: &[u8] = b".scoreboard-reap.";

/// What a directory entry's name makes it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Name<'a> {
    /// `status_<id>`: a worker's status file.
    Status { id: &'a [u8] },
    /// `status_<id>.tmp`: a writer between create and rename. Never read, never
    /// removed (upstream 0.09, bug #12): its writer may not hold the lock yet.
    Tmp,
    /// A reaper's private name, left behind only if a reaper died mid-reap.
    Grave,
    /// Anything else is none of our business.
    Other,
}

impl<'a> Name<'a> {
    pub(crate) fn classify(name: &'a [u8]) -> Self {
        if let Some(id) = name.strip_prefix(STATUS_PREFIX) {
            if id.ends_with(TMP_SUFFIX) {
                Name::Tmp
            } else {
                Name::Status { id }
            }
        } else if name.starts_with(GRAVE_PREFIX) {
            Name::Grave
        } else {
            Name::Other
        }
    }
}

/// Whether a directory entry named `name` is a worker's status file, `status_<id>` —
/// not a writer's `.tmp` nor a reaper's private name: what a watcher of the directory
/// reacts to. The naming scheme lives here alone.
pub fn is_worker_file(name: &[u8]) -> bool {
    matches!(Name::classify(name), Name::Status { .. })
}

/// `status_<id>` for a worker id.
pub(crate) fn status_name(id: &str) -> CString {
    let mut name = Vec::with_capacity(STATUS_PREFIX.len() + id.len() + TMP_SUFFIX.len() + 1);
    name.extend_from_slice(STATUS_PREFIX);
    name.extend_from_slice(id.as_bytes());
    CString::new(name).expect("worker ids are validated to hold no NUL")
}

/// `status_<id>.tmp` for a worker's `status_<id>`.
pub(crate) fn tmp_name(status_name: &CStr) -> CString {
    let mut name = status_name.to_bytes().to_vec();
    name.extend_from_slice(TMP_SUFFIX);
    CString::new(name).expect("built from a CStr")
}

/// An open scoreboard directory. Entries are opened relative to it, so a directory
/// renamed or replaced under its path does not redirect us mid-scan.
#[derive(Debug)]
pub(crate) struct ScoreDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl ScoreDir {
    /// For a worker: its own directory, followed as its path says (the worker's service
    /// owns it and may make it a symlink).
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .context("open directory", || path.to_owned())?;
        Ok(ScoreDir {
            path: path.to_owned(),
            fd,
        })
    }

    /// For a reader, which may be root and reaps what it finds: resolved by the rules
    /// of [`chase`](crate::chase), so nobody owning part of the path can redirect it.
    /// Also returns the directory's identity, to tell later whether its path still
    /// leads to it ([`chase::still_leads_to`]).
    pub(crate) fn open_safely(path: &Path) -> Result<(Self, Identity)> {
        let (fd, identity) = chase::open_directory(path)?;
        let dir = ScoreDir {
            path: path.to_owned(),
            fd,
        };
        Ok((dir, identity))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The full path of an entry, for messages.
    pub(crate) fn join(&self, name: &CStr) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        self.path.join(std::ffi::OsStr::from_bytes(name.to_bytes()))
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Starts the next [`for_each_entry`](Self::for_each_entry) at the first entry.
    pub(crate) fn rewind(&self) -> Result<()> {
        rustix::fs::seek(&self.fd, rustix::fs::SeekFrom::Start(0))
            .context("lseek", || self.path.clone())?;
        Ok(())
    }

    /// Calls `visit` with the name, `d_type` and inode number of each entry, from where
    /// the last call stopped (see [`rewind`](Self::rewind)). Returns true at the end of
    /// the directory; false when `stop`, asked after each entry with the number visited
    /// so far, said to stop — then the directory's offset is set just past that entry
    /// (the kernel's cookie for it), and the next call goes on from there.
    ///
    /// Reads with `getdents64` straight into `buf` (64 KiB: some 2,000 entries per
    /// call), allocating nothing per entry.
    pub(crate) fn for_each_entry(
        &self,
        buf: &mut Vec<MaybeUninit<u8>>,
        mut stop: impl FnMut(usize) -> bool,
        mut visit: impl FnMut(&CStr, FileType, u64),
    ) -> Result<bool> {
        const LISTING_BUFFER: usize = 64 * 1024;
        buf.resize(LISTING_BUFFER, MaybeUninit::uninit());
        let mut entries = rustix::fs::RawDir::new(&self.fd, buf);
        let mut visited = 0;
        while let Some(entry) = entries.next() {
            let entry = entry.context("getdents64", || self.path.clone())?;
            visit(entry.file_name(), entry.file_type(), entry.ino());
            visited += 1;
            if stop(visited) {
                let cookie = entry.next_entry_cookie();
                rustix::fs::seek(&self.fd, rustix::fs::SeekFrom::Start(cookie))
                    .context("lseek", || self.path.clone())?;
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Why an entry could not be opened as a status file.
#[derive(Debug)]
pub(crate) enum OpenFailure {
    /// Removed between listing and open: a reaper or its owner got there first.
    Gone,
    /// Not a regular file; the string names what it is instead.
    NotRegular(&'static str),
    /// Some other failure of `openat` or `fstat`.
    Io(&'static str, io::Error),
}

/// Opens an entry for the lock test and reading.
///
/// `O_NOFOLLOW` refuses a symlink (`ELOOP`) so a link named `status_x` never leads us
/// to a file elsewhere; `O_NONBLOCK` keeps a FIFO from blocking the open; `O_NOCTTY`
/// keeps a terminal from becoming ours. Only a regular file can be a scoreboard entry,
/// so anything else is refused: by `fstat`, unless the directory listing (`d_type`)
/// already said "regular file". Trusting the listing saves a syscall per worker — the
/// one-shot reader's budget is 1.3× a bare open+flock+pread+close loop, and `fstat`
/// alone is a fifth of that — and it gives nothing away: a name swapped between the
/// listing and the open, by someone who may write the directory, is refused by the open
/// itself (symlink: `ELOOP`, directory: `EISDIR`, socket: `ENXIO`) or is a FIFO, which
/// opens without blocking and fails `pread` with `ESPIPE`; device nodes need
/// `CAP_MKNOD`.
pub(crate) fn open_entry(
    dir: &ScoreDir,
    name: &CStr,
    access: Access,
    listed_as: FileType,
) -> Result<File, OpenFailure> {
    let flags = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let opened = match access {
        // Read-write as Parallel::Scoreboard does (`+<`); a reader without write
        // permission can still take the lock test on a read-only fd.
        Access::ReadWrite => {
            match rustix::fs::openat(dir.fd(), name, flags | OFlags::RDWR, Mode::empty()) {
                Err(Errno::ACCESS | Errno::ROFS) => {
                    rustix::fs::openat(dir.fd(), name, flags | OFlags::RDONLY, Mode::empty())
                }
                other => other,
            }
        }
        Access::ReadOnly => {
            rustix::fs::openat(dir.fd(), name, flags | OFlags::RDONLY, Mode::empty())
        }
    };
    let fd = match opened {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Err(OpenFailure::Gone),
        Err(Errno::LOOP) => return Err(OpenFailure::NotRegular("symbolic link")),
        Err(Errno::ISDIR) => return Err(OpenFailure::NotRegular("directory")),
        Err(Errno::NXIO) => return Err(OpenFailure::NotRegular("socket")),
        Err(errno) => return Err(OpenFailure::Io("openat", errno.into())),
    };
    if listed_as != FileType::RegularFile {
        let stat =
            rustix::fs::fstat(&fd).map_err(|errno| OpenFailure::Io("fstat", errno.into()))?;
        let actual = FileType::from_raw_mode(stat.st_mode);
        if actual != FileType::RegularFile {
            return Err(OpenFailure::NotRegular(file_type_name(actual)));
        }
    }
    Ok(File::from(fd))
}

/// How to open an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// As Parallel::Scoreboard does, falling back to read-only without write permission.
    ReadWrite,
    /// For files held open between sweeps: closing a read-only fd raises no
    /// `IN_CLOSE_WRITE`, the event a watcher uses to learn that a worker died.
    ReadOnly,
}

/// What a `d_type` or `st_mode` says an entry is, for messages.
pub(crate) fn file_type_name(file_type: FileType) -> &'static str {
    match file_type {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "file of unknown type",
    }
}

/// The outcome of removing a dead worker's file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reaped {
    /// We removed the dead file.
    Removed,
    /// Someone else removed it first, or a new owner's file had replaced it (and was
    /// left in place).
    NotOurs,
}

/// Removes the file named `name` given `dead`, an open file on which we hold the
/// exclusive lock — proof that its owner died.
///
/// Unlinking `name` directly would race with a new owner: between our lock test and
/// the unlink, a process that reused the dead worker's pid may have renamed its own
/// fresh, locked `status_<id>` over the name, and we would delete a live worker's file.
/// So the name is first *renamed* to a grave name that only this call uses
/// (`RENAME_NOREPLACE`, so no other grave is clobbered) and the inode now under the
/// grave name is compared with the one we hold the lock on. Same inode: it is the dead
/// file, unlink the grave. Different inode: we moved a live file — move it back
/// (`RENAME_NOREPLACE` again, so nothing newer is overwritten). The live file is out of
/// sight for those few microseconds, but never loses its data or its lock.
pub(crate) fn reap(dir: &ScoreDir, name: &CStr, dead: &File) -> Result<Reaped> {
    static GRAVES: AtomicU64 = AtomicU64::new(0);
    let dead_stat = rustix::fs::fstat(dead).context("fstat", || dir.join(name))?;

    let grave = loop {
        let grave = CString::new(format!(
            "{}{}.{}",
            String::from_utf8_lossy(GRAVE_PREFIX),
            crate::pid::current(),
            GRAVES.fetch_add(1, Ordering::Relaxed)
        ))
        .expect("no NUL in a formatted number");
        match rustix::fs::renameat_with(dir.fd(), name, dir.fd(), &grave, RenameFlags::NOREPLACE) {
            Ok(()) => break grave,
            Err(Errno::EXIST) => continue,
            Err(Errno::NOENT) => return Ok(Reaped::NotOurs),
            Err(Errno::INVAL | Errno::NOSYS) => {
                return reap_without_noreplace(dir, name, &dead_stat);
            }
            Err(errno) => return Err(errno).context("renameat2", || dir.join(name)),
        }
    };

    let moved = rustix::fs::statat(dir.fd(), &grave, AtFlags::SYMLINK_NOFOLLOW)
        .context("fstatat", || dir.join(&grave))?;
    if (moved.st_dev, moved.st_ino) == (dead_stat.st_dev, dead_stat.st_ino) {
        // Unlinked while we still hold the lock, so no other reaper can mistake the
        // grave for an abandoned one.
        rustix::fs::unlinkat(dir.fd(), &grave, AtFlags::empty())
            .context("unlinkat", || dir.join(&grave))?;
        Ok(Reaped::Removed)
    } else {
        rustix::fs::renameat_with(dir.fd(), &grave, dir.fd(), name, RenameFlags::NOREPLACE)
            .context("renameat2 (restoring a live file)", || dir.join(&grave))?;
        Ok(Reaped::NotOurs)
    }
}

/// For filesystems without `renameat2(RENAME_NOREPLACE)`: compare, then unlink. This
/// leaves a window of two syscalls in which a pid-reusing newcomer could be removed;
/// tmpfs (/run), ext4, xfs and btrfs all support the safe path above.
fn reap_without_noreplace(dir: &ScoreDir, name: &CStr, dead: &rustix::fs::Stat) -> Result<Reaped> {
    match rustix::fs::statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(now) if (now.st_dev, now.st_ino) == (dead.st_dev, dead.st_ino) => {
            match rustix::fs::unlinkat(dir.fd(), name, AtFlags::empty()) {
                Ok(()) => Ok(Reaped::Removed),
                Err(Errno::NOENT) => Ok(Reaped::NotOurs),
                Err(errno) => Err(errno).context("unlinkat", || dir.join(name)),
            }
        }
        Ok(_) | Err(Errno::NOENT) => Ok(Reaped::NotOurs),
        Err(errno) => Err(errno).context("fstatat", || dir.join(name)),
    }
}

/// Removes a grave left by a reaper that died between its rename and its unlink. A
/// grave whose lock is held belongs to a reaper at work and is left alone; nobody else
/// ever renames onto an existing grave name, so the name still holds the inode we
/// locked when we unlink it.
pub(crate) fn remove_abandoned_grave(dir: &ScoreDir, name: &CStr) {
    if let Ok(file) = open_entry(dir, name, Access::ReadOnly, FileType::Unknown)
        && file.try_lock().is_ok()
    {
        let _ = rustix::fs::unlinkat(dir.fd(), name, AtFlags::empty());
    }
}

#[cfg(test)]
mod tests;
