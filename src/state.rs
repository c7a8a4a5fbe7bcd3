//! The agent's memory across restarts, in its runtime directory (`/run/scoreboard`,
//! made by the shipped tmpfiles.d snippet): per watched unit, each worker's status
//! fingerprint and when that status was first seen, so a restarted agent does not
//! reset stuck timers. Saved every ten intervals and when the agent stops; a missing
//! or unreadable file just means starting without memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::summary::History;

/// Where the packaged agent keeps its state.
pub const DEFAULT_STATE_DIRECTORY: &str = "/run/scoreboard";

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    workers: BTreeMap<String, SavedWorker>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedWorker {
    /// The status fingerprint, in hex (JSON numbers lose precision past 2^53).
    status: String,
    /// When that status was first seen, in milliseconds since the Unix epoch.
    since_ms: u64,
}

fn file(directory: &Path, unit: &str) -> PathBuf {
    // Unit names are checked to hold only [A-Za-z0-9:-_.\@], so this is one file name.
    directory.join(format!("{unit}.json"))
}

/// Writes `history` for `unit`, atomically.
pub fn save(directory: &Path, unit: &str, history: &History) -> std::io::Result<()> {
    let saved = Saved {
        workers: history
            .iter()
            .map(|(id, (print, since))| {
                let since_ms = since
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as u64;
                (
                    id.clone(),
                    SavedWorker {
                        status: format!("{print:016x}"),
                        since_ms,
                    },
                )
            })
            .collect(),
    };
    let path = file(directory, unit);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(&saved).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, &path)
}

/// Reads what was saved for `unit`; `Ok(None)` when nothing was.
pub fn load(directory: &Path, unit: &str) -> std::io::Result<Option<History>> {
    let bytes = match std::fs::read(file(directory, unit)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let saved: Saved = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
    let history = saved
        .workers
        .into_iter()
        .filter_map(|(id, worker)| {
            let print = u64::from_str_radix(&worker.status, 16).ok()?;
            Some((
                id,
                (print, UNIX_EPOCH + Duration::from_millis(worker.since_ms)),
            ))
        })
        .collect();
    Ok(Some(history))
}

/// Forgets `unit` (no longer watched).
pub fn remove(directory: &Path, unit: &str) {
    let _ = std::fs::remove_file(file(directory, unit));
}

/// Milliseconds are what is saved: compare at that precision.
pub fn truncated(time: SystemTime) -> SystemTime {
    UNIX_EPOCH
        + Duration::from_millis(
            time.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let now = truncated(SystemTime::now());
        let history: History = [
            ("w1".to_owned(), (u64::MAX - 7, now)),
            ("w2".to_owned(), (3, now - Duration::from_secs(90))),
        ]
        .into();
        save(tmp.path(), "web.service", &history).unwrap();
        assert_eq!(load(tmp.path(), "web.service").unwrap(), Some(history));
        assert_eq!(load(tmp.path(), "other.service").unwrap(), None);
        std::fs::write(tmp.path().join("bad.service.json"), "{").unwrap();
        assert!(load(tmp.path(), "bad.service").is_err());
        remove(tmp.path(), "web.service");
        assert_eq!(load(tmp.path(), "web.service").unwrap(), None);
    }
}
