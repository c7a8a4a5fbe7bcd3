//! Opening a reader's directory so that nobody who owns part of its path can redirect
//! us: systemd's `chase()` with `CHASE_SAFE`, for the one case we have.
//!
//! A reader running as root reaps — removes — files in the directory it opens, and the
//! directory usually belongs to a service's unprivileged user. Opening the path with a
//! plain `open` follows whatever symlinks that user planted, so a reader could be sent
//! to reap in a directory of root's. So the path is resolved one component at a time
//! from `/`, each component opened relative to its parent with `O_PATH|O_NOFOLLOW`
//! (and, where the kernel has it, `openat2` refusing symlinks and magic links), and
//! two rules decide what may be crossed:
//!
//! * A symbolic link is followed only when it is owned by root and sits in a directory
//!   owned by root: `/var/run` → `/run` works, a link a service user made does not.
//! * From a directory not owned by root, the next directory must have the same owner
//!   (systemd's "unsafe transition"): a user's directory cannot lead into root's or
//!   another user's. So the directory reached is owned by root, or by the user who owns
//!   the first non-root directory of the path — the service's user.
//!
//! `..` goes back to the directory we came from (kept open), never to whatever the
//! name `..` means by then.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

use crate::error::{Context, Error, Result};

/// Symbolic links followed in one resolution before giving up, as the kernel's 40.
const MAX_SYMLINKS: usize = 40;

/// Where a directory is: what `stat` says identifies it while it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    /// `st_dev`.
    pub(crate) dev: u64,
    /// `st_ino`.
    pub(crate) ino: u64,
}

impl Identity {
    pub(crate) fn of(stat: &Stat) -> Identity {
        Identity {
            dev: stat.st_dev,
            ino: stat.st_ino,
        }
    }
}

/// Why a path was not followed.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// A symlink owned by someone other than root, or in a directory not root's.
    Symlink {
        at: PathBuf,
        link_owner: u32,
        dir_owner: u32,
    },
    /// A directory owned by `from_owner` (not root) leads to one owned by `to_owner`.
    Transition {
        from: PathBuf,
        from_owner: u32,
        to: PathBuf,
        to_owner: u32,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Symlink {
                at,
                link_owner,
                dir_owner,
            } => write!(
                f,
                "{} is a symbolic link owned by {} in a directory owned by {}; only root's \
                 links in root's directories are followed",
                at.display(),
                crate::User(*link_owner),
                crate::User(*dir_owner)
            ),
            Refusal::Transition {
                from,
                from_owner,
                to,
                to_owner,
            } => write!(
                f,
                "{} (owned by {}) leads to {} (owned by {}); a directory not owned by root \
                 may only lead to its owner's",
                from.display(),
                crate::User(*from_owner),
                to.display(),
                crate::User(*to_owner)
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// A syscall failed on `at`, a component of `path`: the error names both, `path` first.
fn failed(operation: &'static str, path: &Path, at: &Path, errno: Errno) -> Error {
    let source = io::Error::from(errno);
    let message = if at == path {
        source
    } else {
        io::Error::new(source.kind(), format!("{}: {source}", at.display()))
    };
    Error::new(operation, path, message)
}

/// The operation of every error of the safe resolution itself (a component refused, a
/// symbolic link not followed), as opposed to a syscall on the way failing.
pub(crate) const RESOLVE_SAFELY: &str = "resolve safely";

fn refused(path: &Path, refusal: Refusal) -> Error {
    Error::new(
        RESOLVE_SAFELY,
        path,
        io::Error::new(io::ErrorKind::PermissionDenied, refusal),
    )
}

/// One directory on the way: an `O_PATH` descriptor, what `fstat` said, and its path
/// as resolved so far (for messages).
struct Step {
    fd: OwnedFd,
    stat: Stat,
    path: PathBuf,
}

/// Resolves `path` by the rules above and opens the directory it names for reading.
/// A relative path is taken from the current directory's absolute path.
pub(crate) fn open_directory(path: &Path) -> Result<(OwnedFd, Identity)> {
    let last = resolve(path)?;
    // Reopened for reading through the O_PATH descriptor: no name is looked up again.
    let fd = rustix::fs::openat(
        &last.fd,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .context("open directory", || path.to_owned())?;
    Ok((fd, Identity::of(&last.stat)))
}

/// The directory `path` leads to by the rules above, as an `O_PATH` step.
fn resolve(path: &Path) -> Result<Step> {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .context("getcwd", || path.to_owned())?
            .join(path)
    };
    let root = root_step(path)?;
    let mut stack = vec![root];
    // Components still to walk, last first, so a symlink's target can be pushed in.
    let mut todo: Vec<OsString> = components_reversed(&absolute);
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == "/" {
            stack.truncate(1);
            continue;
        }
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let parent = stack.last().expect("the root is never popped");
        let child_path = parent.path.join(&name);
        let fd =
            open_component(parent, &name).map_err(|e| failed("openat2", path, &child_path, e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| failed("fstat", path, &child_path, e))?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Symlink => {
                if stat.st_uid != 0 || parent.stat.st_uid != 0 {
                    return Err(refused(
                        path,
                        Refusal::Symlink {
                            at: child_path,
                            link_owner: stat.st_uid,
                            dir_owner: parent.stat.st_uid,
                        },
                    ));
                }
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::LOOP).context(RESOLVE_SAFELY, || path.to_owned());
                }
                let target = rustix::fs::readlinkat(&fd, c"", Vec::new())
                    .map_err(|e| failed("readlinkat", path, &child_path, e))?;
                let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
                todo.extend(components_reversed(&target));
            }
            FileType::Directory => {
                if unsafe_transition(&parent.stat, &stat) {
                    return Err(refused(
                        path,
                        Refusal::Transition {
                            from: parent.path.clone(),
                            from_owner: parent.stat.st_uid,
                            to: child_path,
                            to_owner: stat.st_uid,
                        },
                    ));
                }
                stack.push(Step {
                    fd,
                    stat,
                    path: child_path,
                });
            }
            _ => return Err(failed(RESOLVE_SAFELY, path, &child_path, Errno::NOTDIR)),
        }
    }
    Ok(stack.pop().expect("the root is never popped"))
}

fn root_step(path: &Path) -> Result<Step> {
    let fd = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .context("open", || PathBuf::from("/"))?;
    let stat = rustix::fs::fstat(&fd).context("fstat", || path.to_owned())?;
    Ok(Step {
        fd,
        stat,
        path: PathBuf::from("/"),
    })
}

/// The path's components, last first; `/` stands for "back to the root".
fn components_reversed(path: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = path
        .components()
        .filter_map(|component| match component {
            Component::RootDir => Some(OsString::from("/")),
            Component::ParentDir => Some(OsString::from("..")),
            Component::Normal(name) => Some(name.to_owned()),
            Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    names.reverse();
    names
}

/// Opens one name in `parent` without following it, as an `O_PATH` descriptor.
///
/// `openat2` with `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH` says in the kernel what we
/// mean (one name, nothing followed, nothing above `parent`); kernels before 5.6 lack
/// it, and `O_NOFOLLOW` on a single name means the same there.
fn open_component(parent: &Step, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if name.as_bytes().contains(&b'/') {
        return Err(Errno::INVAL);
    }
    match rustix::fs::openat2(
        parent.fd.as_fd(),
        name,
        flags,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::BENEATH,
    ) {
        Err(Errno::NOSYS) => rustix::fs::openat(parent.fd.as_fd(), name, flags, Mode::empty()),
        other => other,
    }
}

/// systemd's rule: leaving a directory owned by root is always fine; leaving one owned
/// by someone else is fine only into a directory of the same owner.
fn unsafe_transition(from: &Stat, to: &Stat) -> bool {
    from.st_uid != 0 && from.st_uid != to.st_uid
}

/// Whether `path`, resolved by the same rules now, still leads to `identity`. Gone,
/// refused or elsewhere: false.
pub(crate) fn still_leads_to(path: &Path, identity: Identity) -> bool {
    resolve(path).is_ok_and(|last| Identity::of(&last.stat) == identity)
}

#[cfg(test)]
mod tests;
