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
mod tests {
    use super::*;

    fn remembered(workers: BTreeMap<String, WorkerMemory>) -> Memory {
        Memory {
            boot: Boot {
                id: Some("b".into()),
                began_ms: 1,
            },
            workers,
            ..Memory::default()
        }
    }

    #[test]
    fn memory_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let worker = |fingerprint, written, ms| WorkerMemory {
            fingerprint,
            written,
            progress_at: Duration::from_millis(ms),
        };
        let memory = Memory {
            boot: Boot {
                id: Some("5e7c3e1a-0000-4000-8000-000000000001".into()),
                began_ms: 1_764_000_000_000,
            },
            workers: [
                ("w1".to_owned(), worker(u64::MAX - 7, None, 90_000)),
                (
                    "w2".to_owned(),
                    worker(
                        3,
                        Some(Written {
                            seconds: 1_764_000_000,
                            nanoseconds: 999_999_999,
                        }),
                        1,
                    ),
                ),
            ]
            .into(),
            watchdog_triggered_for: Some(123_456_789),
            signalled: [(
                "4242".to_owned(),
                SignalMemory {
                    pid: 4242,
                    process_started: Duration::from_millis(5_000),
                    sent_at: Duration::from_millis(60_000),
                    killed: false,
                },
            )]
            .into(),
        };
        save(tmp.path(), "web.service", &memory).unwrap();
        assert_eq!(load(tmp.path(), "web.service").unwrap(), Some(memory));
        assert_eq!(load(tmp.path(), "other.service").unwrap(), None);
        std::fs::write(tmp.path().join("bad.service.json"), "{").unwrap();
        assert!(load(tmp.path(), "bad.service").is_err());
        remove(tmp.path(), "web.service");
        assert_eq!(load(tmp.path(), "web.service").unwrap(), None);
    }

    fn history() -> BTreeMap<String, WorkerMemory> {
        [(
            "w1".to_owned(),
            WorkerMemory {
                fingerprint: 7,
                written: None,
                progress_at: Duration::from_secs(1),
            },
        )]
        .into()
    }

    #[test]
    fn a_fifo_is_refused_at_once_rather_than_waited_on() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("web.service.json");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        let directory = tmp.path().to_owned();
        // In a thread, so that a regression fails the test instead of hanging it.
        std::thread::spawn(move || {
            let _ = sender.send(load(&directory, "web.service").map_err(|e| e.to_string()));
        });
        let message = receiver
            .recv_timeout(Duration::from_secs(5))
            .expect("load blocked on a FIFO")
            .unwrap_err();
        assert!(
            message.contains(&fifo.display().to_string()) && message.contains("a FIFO"),
            "{message}"
        );
    }

    #[test]
    fn a_directory_at_the_name_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("web.service.json")).unwrap();
        let message = load(tmp.path(), "web.service").unwrap_err().to_string();
        assert!(
            message.contains("a directory, not a regular file"),
            "{message}"
        );
    }

    #[test]
    fn a_symlink_at_the_final_name_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        save(&elsewhere, "web.service", &remembered(history())).unwrap();
        let target = elsewhere.join("web.service.json");
        let planted = tmp.path().join("web.service.json");
        std::os::unix::fs::symlink(&target, &planted).unwrap();

        let message = load(tmp.path(), "web.service").unwrap_err().to_string();
        assert!(
            message.contains(&planted.display().to_string()) && message.contains("symbolic link"),
            "{message}"
        );

        // Saving replaces the link itself; its target is untouched.
        let before = std::fs::read(&target).unwrap();
        save(tmp.path(), "web.service", &Memory::default()).unwrap();
        assert!(std::fs::symlink_metadata(&planted).unwrap().is_file());
        assert_eq!(std::fs::read(&target).unwrap(), before);
        assert_eq!(
            load(tmp.path(), "web.service").unwrap(),
            Some(Memory::default())
        );

        // So does removing it.
        std::fs::remove_file(&planted).unwrap();
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        remove(tmp.path(), "web.service");
        assert!(std::fs::symlink_metadata(&planted).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), before);
    }

    #[test]
    fn a_symlink_at_the_old_temporary_name_is_not_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("precious");
        std::fs::write(&target, "precious").unwrap();
        for name in ["web.service.json.tmp", "web.service.tmp"] {
            std::os::unix::fs::symlink(&target, tmp.path().join(name)).unwrap();
        }
        let memory = remembered(history());
        save(tmp.path(), "web.service", &memory).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        assert_eq!(load(tmp.path(), "web.service").unwrap(), Some(memory));
        // Nothing but the state file and what was planted is left behind.
        let mut names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "precious",
                "web.service.json",
                "web.service.json.tmp",
                "web.service.tmp"
            ]
        );
    }

    #[test]
    fn a_file_over_the_limit_is_refused_without_reading_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("web.service.json");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_STATE_FILE + 1).unwrap();
        let message = load(tmp.path(), "web.service").unwrap_err().to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains("16 MiB"),
            "{message}"
        );
        // At the limit it is read (and is not JSON).
        file.set_len(MAX_STATE_FILE).unwrap();
        let message = load(tmp.path(), "web.service").unwrap_err().to_string();
        assert!(!message.contains("16 MiB"), "{message}");
    }
}
