//! The agent's memory across restarts, in its runtime directory (`/run/scoreboard`,
//! which systemd makes for the packaged unit's `RuntimeDirectory=scoreboard`, owned by
//! the agent's user): per watched unit, each worker's status fingerprint, file
//! modification time and when it last made progress, so a restarted agent does not
//! reset stuck timers; the watchdog trigger of the unit's current start and the signals
//! sent, so a restarted agent does neither twice. Times are on the boot's own clock
//! (see [`crate::io::boot`]), never the wall clock. Saved every ten intervals, after
//! every action and when the agent stops; a missing or unreadable file just means
//! starting without memory.
//!
//! What is found in the directory is not trusted to be what the agent wrote: a file is
//! read only if it is a regular file (not followed through a symlink, never a FIFO that
//! would block the agent) and at most [`MAX_STATE_FILE`] bytes; a save goes to a fresh
//! name created exclusively, renamed over the old file, so nothing planted under any
//! name is written through.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use scoreboard::Written;

use crate::io::boot::Boot;

/// The most a state file may hold. A worker takes about 60 bytes (its id, a 16-digit
/// fingerprint, a time), so 10,000 workers take ~0.6 MB: 16 MiB is room for any real
/// pool, and keeps a file that is not ours (or runs away) from costing unbounded memory.
pub const MAX_STATE_FILE: u64 = 16 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    /// The boot the times below are on (see [`Boot`]): another boot's state is not read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    boot_id: String,
    #[serde(default)]
    boot_began_ms: u64,
    workers: BTreeMap<String, SavedWorker>,
    /// The start of the unit (`ActiveEnterTimestampMonotonic`, µs) for which the agent
    /// triggered its watchdog: never twice for one start, whatever restarts the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    watchdog_triggered_for: Option<u64>,
    /// Signals sent and not yet answered, per worker id: never sent twice to one
    /// process, and SIGKILL after the grace from the first.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    signalled: BTreeMap<String, SavedSignal>,
}

/// What an agent remembers of a unit, on this boot's clock (see [`crate::io::boot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// The boot these times are on.
    pub boot: Boot,
    /// Per worker id: its status fingerprint, its file's modification time, and when
    /// (time since boot) it was last seen to make progress.
    pub workers: BTreeMap<String, WorkerMemory>,
    /// See [`crate::core::health::Health::triggered_for`].
    pub watchdog_triggered_for: Option<u64>,
    /// Per worker id, the signal sent to it.
    pub signalled: BTreeMap<String, SignalMemory>,
}

/// One worker, as saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerMemory {
    /// Its status's fingerprint.
    pub fingerprint: u64,
    /// Its file's modification time at the last look, if known.
    pub written: Option<Written>,
    /// When it last made progress, as time since boot.
    pub progress_at: Duration,
}

/// One signal sent, as saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalMemory {
    /// The process signalled.
    pub pid: i32,
    /// When that process started (time since boot): names the process, not its pid.
    pub process_started: Duration,
    /// When the first signal went (time since boot).
    pub sent_at: Duration,
    /// Whether nothing more follows (SIGKILL sent, or refused).
    pub killed: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedWorker {
    /// The status fingerprint, in hex (JSON numbers lose precision past 2^53).
    status: String,
    /// The file's modification time, seconds and nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written: Option<(i64, i64)>,
    /// When it last made progress, in milliseconds since boot (`CLOCK_BOOTTIME`).
    progress_boot_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedSignal {
    pid: i32,
    process_started_boot_ms: u64,
    sent_boot_ms: u64,
    killed: bool,
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn file(directory: &Path, unit: &str) -> PathBuf {
    // Unit names are checked to hold only [A-Za-z0-9:-_.\@], so this is one file name.
    directory.join(format!("{unit}.json"))
}

/// Writes what the agent remembers of `unit`, atomically.
pub fn save(directory: &Path, unit: &str, memory: &Memory) -> std::io::Result<()> {
    let saved = Saved {
        boot_id: memory.boot.id.clone().unwrap_or_default(),
        boot_began_ms: memory.boot.began_ms,
        watchdog_triggered_for: memory.watchdog_triggered_for,
        workers: memory
            .workers
            .iter()
            .map(|(id, worker)| {
                let saved = SavedWorker {
                    status: format!("{:016x}", worker.fingerprint),
                    written: worker.written.map(|w| (w.seconds, w.nanoseconds)),
                    progress_boot_ms: ms(worker.progress_at),
                };
                (id.clone(), saved)
            })
            .collect(),
        signalled: memory
            .signalled
            .iter()
            .map(|(id, sent)| {
                let saved = SavedSignal {
                    pid: sent.pid,
                    process_started_boot_ms: ms(sent.process_started),
                    sent_boot_ms: ms(sent.sent_at),
                    killed: sent.killed,
                };
                (id.clone(), saved)
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
    // Only the agent reads it back.
    crate::io::atomic::write(&file(directory, unit), &bytes, 0o600)?;
    Ok(())
}

/// Reads what was saved for `unit`; `Ok(None)` when nothing was. A symlink, anything
/// but a regular file, or a file over [`MAX_STATE_FILE`] bytes is an error naming the
/// file, found without blocking and without reading past the limit.
pub fn load(directory: &Path, unit: &str) -> std::io::Result<Option<Memory>> {
    let path = file(directory, unit);
    let fd = match rustix::fs::open(
        &path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => return Err(refused(&path, "a symbolic link; not following it")),
        Err(errno) => {
            let error = std::io::Error::from(errno);
            return Err(std::io::Error::new(
                error.kind(),
                format!("opening {}: {error}", path.display()),
            ));
        }
    };
    let stat = rustix::fs::fstat(&fd)?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        return Err(refused(
            &path,
            &format!("{}, not a regular file", describe(kind)),
        ));
    }
    let too_big = || {
        refused(
            &path,
            &format!(
                "larger than the {} MiB a state file may hold",
                MAX_STATE_FILE >> 20
            ),
        )
    };
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size > MAX_STATE_FILE {
        return Err(too_big());
    }
    // The size can change after fstat: read one byte past the limit to tell.
    let mut bytes = Vec::with_capacity(size as usize);
    std::fs::File::from(fd)
        .take(MAX_STATE_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_STATE_FILE {
        return Err(too_big());
    }
    let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })?;
    let workers = saved
        .workers
        .into_iter()
        .filter_map(|(id, worker)| {
            let memory = WorkerMemory {
                fingerprint: u64::from_str_radix(&worker.status, 16).ok()?,
                written: worker.written.map(|(seconds, nanoseconds)| Written {
                    seconds,
                    nanoseconds,
                }),
                progress_at: Duration::from_millis(worker.progress_boot_ms),
            };
            Some((id, memory))
        })
        .collect();
    let signalled = saved
        .signalled
        .into_iter()
        .map(|(id, sent)| {
            let memory = SignalMemory {
                pid: sent.pid,
                process_started: Duration::from_millis(sent.process_started_boot_ms),
                sent_at: Duration::from_millis(sent.sent_boot_ms),
                killed: sent.killed,
            };
            (id, memory)
        })
        .collect();
    Ok(Some(Memory {
        boot: Boot {
            id: Some(saved.boot_id).filter(|id| !id.is_empty()),
            began_ms: saved.boot_began_ms,
        },
        workers,
        watchdog_triggered_for: saved.watchdog_triggered_for,
        signalled,
    }))
}

/// Forgets `unit` (no longer watched). unlink(2) removes a symlink itself, never what
/// it points to.
pub fn remove(directory: &Path, unit: &str) {
    let _ = rustix::fs::unlink(file(directory, unit));
}

fn refused(path: &Path, why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {why}", path.display()),
    )
}

/// What an `fstat` file type is, for messages.
fn describe(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown type",
    }
}

#[cfg(test)]
mod tests;
