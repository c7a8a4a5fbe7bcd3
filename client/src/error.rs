//! The one error type of the crate: an operation on a path failed.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// An operation on a scoreboard file or directory failed.
///
/// Carries the path and the failing operation (usually the syscall) so that a
/// message reads `flock /run/app/scoreboard/status_42.tmp: Resource busy`.
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

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

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
