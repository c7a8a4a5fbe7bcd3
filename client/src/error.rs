//! The one error type of the crate: an operation on a path failed.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// An operation on a scoreboard file or directory failed.
///
/// Carries the path and the failing operation (usually the syscall) so that a
/// message reads `flock /run/app/scoreboard/status_42.tmp: Resource busy`.
///
/// The OS error is part of that message, so it is not also given as the error's
/// [`source`](std::error::Error::source): a caller printing the whole chain (anyhow's
/// `{:#}`) would say it twice. [`kind`](Self::kind) and [`io_error`](Self::io_error)
/// give it back.
#[derive(Debug)]
pub struct Error {
    path: PathBuf,
    operation: &'static str,
    source: io::Error,
}

impl Error {
    pub(crate) fn new(
        operation: &'static str,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> Self {
        Error {
            path: path.into(),
            operation,
            source,
        }
    }

    /// The file or directory the operation was applied to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was being done: a syscall name such as `openat` or `flock`, or a short
    /// phrase such as `validate worker id`.
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The underlying error's kind, for callers that branch on `NotFound` and the like.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }

    /// Whether opening a directory was refused by its safe resolution (a component
    /// owned by another user on the way, or a symbolic link it does not follow), rather
    /// than failing for lack of permission or of the directory.
    pub fn is_unsafe_path(&self) -> bool {
        self.operation == crate::chase::RESOLVE_SAFELY
            && self.kind() != io::ErrorKind::NotADirectory
    }

    /// The underlying error itself (its `raw_os_error`, say).
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.operation,
            self.path.display(),
            self.source
        )
    }
}

/// No `source()`: the message already ends with it (see [`Error`]).
impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(error: Error) -> Self {
        io::Error::new(error.source.kind(), error)
    }
}

/// Result of the crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds the path and operation to a rustix or std error.
pub(crate) trait Context<T> {
    fn context(self, operation: &'static str, path: impl FnOnce() -> PathBuf) -> Result<T>;
}

impl<T> Context<T> for rustix::io::Result<T> {
    fn context(self, operation: &'static str, path: impl FnOnce() -> PathBuf) -> Result<T> {
        self.map_err(|errno| Error::new(operation, path(), errno.into()))
    }
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, operation: &'static str, path: impl FnOnce() -> PathBuf) -> Result<T> {
        self.map_err(|source| Error::new(operation, path(), source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_error_is_said_once_whoever_prints_the_chain() {
        let error = Error::new("openat2", "/nonexistent", io::Error::from_raw_os_error(2));
        let message = error.to_string();
        assert!(message.starts_with("openat2 /nonexistent: "), "{message}");
        assert_eq!(message.matches("(os error 2)").count(), 1, "{message}");
        // What anyhow's `{:#}` and error reporters walk: nothing more to say.
        assert!(std::error::Error::source(&error).is_none());
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert_eq!(error.io_error().raw_os_error(), Some(2));
        // Through an io::Error as well.
        let io_error = io::Error::from(error);
        assert_eq!(io_error.to_string().matches("(os error 2)").count(), 1);
        assert!(std::error::Error::source(&io_error).is_none());
    }
}
