//! What the agent knows of a pool's directory: seen whole, not yet, or unseen and why.

/// What the agent knows of a pool: three states, never two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sight {
    /// Not looked at yet.
    NotYet,
    /// Read whole by the last pass: the workers are what the directory held (none, if
    /// it held none).
    Seen,
    /// The directory could not be opened, resolved or read: its workers are unknown.
    Unseen(Unseen),
}

/// Why a pool's directory could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unseen {
    /// The kind of failure.
    pub cause: Cause,
    /// The failure as the reader said it (path, operation, error).
    pub detail: String,
}

/// The kinds of failure to read a scoreboard directory: a closed set, whose `Display` is
/// the text of the D-Bus `Unseen` property and the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// No such directory (yet).
    Missing,
    /// The agent may not open or list it.
    PermissionDenied,
    /// Something else than a directory is there.
    NotADirectory,
    /// Resolving it would cross into another user's directory (the safe-path rule).
    Unsafe,
    /// It is on a file system the agent may not write (its unit's `ProtectSystem=strict`
    /// without a `ReadWritePaths=` for it): dead workers could never be removed.
    ReadOnly,
    /// Any other failure.
    Failed,
}

impl Cause {
    /// Every cause, for gauges set up before any is seen.
    pub const ALL: [Cause; 6] = [
        Cause::Missing,
        Cause::PermissionDenied,
        Cause::NotADirectory,
        Cause::Unsafe,
        Cause::ReadOnly,
        Cause::Failed,
    ];
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cause::Missing => "missing",
            Cause::PermissionDenied => "permission_denied",
            Cause::NotADirectory => "not_a_directory",
            Cause::Unsafe => "unsafe_path",
            Cause::ReadOnly => "read_only",
            Cause::Failed => "failed",
        })
    }
}

impl Unseen {
    /// The `STATUS=` line for a pool not seen: what is wrong, in words an operator can
    /// act on, and the fix where there is one.
    pub fn status_line(&self, unit: &str) -> String {
        match self.cause {
            Cause::Missing => "scoreboard not found: no directory yet".to_owned(),
            Cause::PermissionDenied => format!(
                "scoreboard unreadable: permission denied — run: scoreboardctl enable {unit}"
            ),
            Cause::NotADirectory => "scoreboard unreadable: not a directory".to_owned(),
            Cause::Unsafe => {
                "scoreboard refused: unsafe path — see journalctl -u scoreboard-agent".to_owned()
            }
            Cause::ReadOnly => {
                "scoreboard refused: read-only to the agent — see journalctl -u scoreboard-agent"
                    .to_owned()
            }
            Cause::Failed => {
                "scoreboard unreadable — see journalctl -u scoreboard-agent".to_owned()
            }
        }
    }
}
