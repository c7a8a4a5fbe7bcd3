//! The last workers seen to die and what each was doing: the agent's answer to "which
//! request was it in when it died", kept for the bus after the journal line.

use std::collections::VecDeque;
use std::time::Instant;

use serde::Serialize;

use super::Pool;

/// How many deaths a pool keeps, the newest last: enough for the last burst an
/// operator asks about; a directory's owner who makes thousands die costs no more.
pub const MAX_DEATHS_KEPT: usize = 32;

/// The most of a dead worker's status kept, in bytes (cut at a character boundary):
/// 32 statuses of up to a MiB each are not worth keeping whole.
pub const MAX_DEATH_STATUS: usize = 4096;

/// One dead worker as the pool recorded it.
#[derive(Debug, Clone)]
struct Death {
    id: String,
    last: Option<LastWords>,
    at: Instant,
}

/// What a worker was doing when it died: its last status (from its file, else as the
/// pool last saw it) and how long that status had stood, when the pool saw it stand.
#[derive(Debug, Clone, PartialEq)]
pub struct LastWords {
    /// The status, invalid UTF-8 replaced, at most [`MAX_DEATH_STATUS`] bytes.
    pub status: String,
    /// Seconds the status had stood, when the pool saw this same status.
    pub stood_seconds: Option<f64>,
}

/// One dead worker as the bus and `scoreboardctl` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeathReport {
    /// The worker id.
    pub id: String,
    /// Its last status; `None` when its file held none the reader could use.
    pub status: Option<String>,
    /// Seconds its last status had stood, when known.
    pub stood_seconds: Option<f64>,
    /// Seconds since its file was removed.
    pub seconds_ago: f64,
}

/// The deaths a pool keeps.
#[derive(Debug, Default)]
pub(super) struct Deaths(VecDeque<Death>);

impl Pool {
    /// What worker `id` was doing when it died: `final_status`, the last frame its file
    /// held, when there was one, else its status as the pool last saw it.
    pub fn last_words(
        &self,
        id: &str,
        final_status: Option<&[u8]>,
        now: Instant,
    ) -> Option<LastWords> {
        // Looked at in place: a status may be a MiB, and only 4 KiB of it is kept.
        let seen = self.workers.get(id);
        let stood = |tracked: &super::Tracked| {
            now.saturating_duration_since(tracked.changed_at)
                .as_secs_f64()
        };
        let (status, stood_seconds) = match final_status {
            Some(status) => {
                let same = seen.filter(|tracked| tracked.status == status);
                (status, same.map(stood))
            }
            None => {
                let tracked = seen?;
                (tracked.status.as_slice(), Some(stood(tracked)))
            }
        };
        Some(LastWords {
            status: decoded_within(status),
            stood_seconds,
        })
    }

    /// Keeps worker `id`'s death, dropping the oldest past [`MAX_DEATHS_KEPT`].
    pub fn record_death(&mut self, id: &str, last: Option<LastWords>, now: Instant) {
        let deaths = &mut self.deaths.0;
        if deaths.len() == MAX_DEATHS_KEPT {
            deaths.pop_front();
        }
        deaths.push_back(Death {
            id: id.to_owned(),
            last,
            at: now,
        });
    }

    /// The deaths kept, the newest last.
    pub fn deaths(&self, now: Instant) -> Vec<DeathReport> {
        self.deaths
            .0
            .iter()
            .map(|death| DeathReport {
                id: death.id.clone(),
                status: death.last.as_ref().map(|last| last.status.clone()),
                stood_seconds: death.last.as_ref().and_then(|last| last.stood_seconds),
                seconds_ago: now.saturating_duration_since(death.at).as_secs_f64(),
            })
            .collect()
    }
}

/// At most [`MAX_DEATH_STATUS`] bytes of `status` as text (invalid UTF-8 replaced), cut
/// at a character boundary; only what is kept is decoded (a replaced byte grows to
/// three).
fn decoded_within(status: &[u8]) -> String {
    let kept = &status[..status.len().min(MAX_DEATH_STATUS)];
    let mut text = String::from_utf8_lossy(kept).into_owned();
    if text.len() > MAX_DEATH_STATUS {
        let mut cut = MAX_DEATH_STATUS;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.shrink_to_fit();
    }
    text
}

impl Pool {
    /// How many deaths are kept: what answering for them costs.
    pub fn deaths_len(&self) -> usize {
        self.deaths.0.len()
    }
}
