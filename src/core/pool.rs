//! A service's workers as the agent knows them: their states, how long each status has
//! stood, who is stuck, and the one-line summary systemd shows.
//!
//! A [`Pool`] is fed [`scoreboard::Snapshot`]s with the time they were taken; it
//! answers with what changed, a [`Summary`], its `STATUS=` line, and per-worker
//! [`WorkerReport`]s.
//!
//! What the agent saw is kept apart from what it did not: a pool whose directory could
//! not be read is [`Sight::Unseen`], never "0 workers" — its line says why, and no
//! health action is taken on it.
//!
//! Progress is any write, not a different text: a worker whose text is the same at two
//! looks has still made progress if it wrote its file in between (its modification
//! time moved, see [`scoreboard::Written`]). So a worker serving the same URL back to
//! back, or a poller republishing one line, is never stuck; "stuck" is "not idle and no
//! write for `stuck_after`".
//!
//! Its cost follows what *changed*, not the pool's size, wherever it can: a sweep of
//! 10,000 unchanged workers is one hash lookup and one comparison each (no allocation,
//! no rebuilt map), the counts per state are kept up to date as statuses change, and
//! the stuck workers are a prefix of the non-idle ones ordered by when their status
//! last changed — so a summary costs the number of states plus the number of stuck
//! workers, and the next moment someone becomes stuck is one ordered-set lookup.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use scoreboard::{Snapshot, Worker, Written};

use crate::config::{Service, StateRule};
use crate::core::status_line::{self, Summary};
use crate::core::worker::WorkerReport;

mod deaths;
mod sight;
mod state;
mod stuck;

pub use deaths::{DeathReport, LastWords, MAX_DEATH_STATUS, MAX_DEATHS_KEPT};
pub use sight::{Cause, Sight, Unseen};
pub use state::{MAX_STATE_LEN, derive_state};
use state::{UNKNOWN, is_idle, state_of};

/// One worker as the agent knows it.
#[derive(Debug, Clone)]
struct Tracked {
    status: Vec<u8>,
    state: String,
    /// When the worker was last seen to make progress: its status changed, its file was
    /// written, or it first appeared.
    changed_at: Instant,
    /// Its file's modification time at the last look that asked (see
    /// [`Pool::observe_writes`]); `None` until one has.
    written: Option<Written>,
    /// The last observation that saw it (see [`Pool::observe`]).
    seen: u64,
}

/// What the agent keeps per service.
#[derive(Debug)]
pub struct Pool {
    unit: String,
    template: String,
    rule: StateRule,
    idle_states: Vec<String>,
    stuck_after: Option<Duration>,
    workers: HashMap<String, Tracked>,
    /// Workers per state, stuck ones included; states nobody is in are removed.
    states: HashMap<String, usize>,
    /// Non-idle workers by when their status last changed (only with `stuck_after`):
    /// the stuck ones are the entries up to `now - stuck_after`.
    waiting: BTreeSet<(Instant, String)>,
    /// Status bytes held, all workers together.
    status_bytes: usize,
    /// Counts observations, to find workers a snapshot no longer lists.
    observations: u64,
    /// Status bytes the pool may keep for workers not read in a pass (see
    /// [`Pool::observe`]): the service's byte budget.
    max_status_bytes: usize,
    /// See [`Pool::access`].
    access: Option<crate::core::privacy::DirAccess>,
    /// See [`Pool::last_action`].
    last_action: Option<String>,
    /// Change times saved by an earlier agent, used for workers seen again with the same
    /// status (see [`Pool::remember`]).
    remembered: HashMap<String, Remembered>,
    /// What the agent knows of the directory.
    sight: Sight,
    /// The last workers seen to die (see [`Pool::deaths`]).
    deaths: deaths::Deaths,
}

/// What an earlier agent saved of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remembered {
    /// Its status's [`fingerprint`].
    pub fingerprint: u64,
    /// Its file's modification time at that agent's last look, if it had one.
    pub written: Option<Written>,
    /// How long before now it was last seen to make progress.
    pub age: Duration,
}

/// What a restarted agent needs to keep stuck timers running, per worker id.
pub type History = std::collections::BTreeMap<String, Remembered>;

/// A 64-bit FNV-1a fingerprint of a status: enough to tell "the same status as before
/// the restart" from any other, without saving statuses themselves.
pub fn fingerprint(status: &[u8]) -> u64 {
    status.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a snapshot changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Workers seen for the first time, sorted.
    pub added: Vec<String>,
    /// Workers gone: reaped, or exited and removed their file; sorted.
    pub removed: Vec<String>,
    /// Workers whose status changed.
    pub updated: usize,
}

impl Changes {
    /// Whether workers came or went; such changes are reported at once.
    pub fn membership(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty()
    }
}

impl Pool {
    /// An empty pool for `service`.
    pub fn new(service: &Service) -> Self {
        Pool {
            unit: service.unit.clone(),
            template: service.summary.clone(),
            rule: service.state.clone(),
            idle_states: service.idle_states.clone(),
            stuck_after: service.stuck_after,
            workers: HashMap::new(),
            states: HashMap::new(),
            waiting: BTreeSet::new(),
            status_bytes: 0,
            observations: 0,
            max_status_bytes: service.max_status_bytes,
            access: None,
            last_action: None,
            remembered: HashMap::new(),
            sight: Sight::NotYet,
            deaths: deaths::Deaths::default(),
        }
    }

    /// Takes in a snapshot taken at `now`.
    ///
    /// A live worker the snapshot could not read (a torn frame that never checked out,
    /// or past the byte budget) stays in the pool rather than flapping out and back,
    /// with its last known status while the statuses kept stay within the service's
    /// byte budget; past it, its status is forgotten (state `unknown`), so the pool's
    /// memory never grows with what alternating unreadable frames could make it keep.
    ///
    /// Statuses that changed are moved out of the snapshot into the pool, not copied.
    ///
    /// Without modification times (see [`Pool::observe_writes`]) only a different text
    /// is progress: for readers that cannot tell.
    pub fn observe(&mut self, snapshot: &mut Snapshot, now: Instant) -> Changes {
        self.observe_writes(snapshot, now, |_| None)
    }

    /// [`Pool::observe`], told by `written` when a worker's file was last written. It is
    /// asked only about workers that could be stuck (not idle) whose text is the same as
    /// at the last look — the rest have made progress or cannot be stuck — so its cost
    /// (an `fstat`) follows the workers standing still, not the pool.
    ///
    /// A worker whose modification time moved has made progress. One whose last look
    /// did not ask (its text had just changed) has no time to compare with: it is taken
    /// to have made progress, so a worker is called stuck only on two looks that found
    /// the same time — a hung worker is found one interval later, a working one never.
    pub fn observe_writes(
        &mut self,
        snapshot: &mut Snapshot,
        now: Instant,
        mut written: impl FnMut(&Worker) -> Option<Written>,
    ) -> Changes {
        self.sight = Sight::Seen;
        self.observations += 1;
        let this = self.observations;
        let mut changes = Changes::default();
        let mut seen = 0;
        for worker in &mut snapshot.workers {
            if let Some(tracked) = self.workers.get_mut(worker.id.as_str()) {
                if tracked.seen != this {
                    tracked.seen = this;
                    seen += 1;
                }
                if tracked.status != worker.status {
                    // Most changes keep the state ("busy GET /a" → "busy GET /b"):
                    // a new state is allocated only when it differs.
                    let state = state_of(&self.rule, &worker.status);
                    let state = (state != tracked.state).then(|| state.into_owned());
                    let status = std::mem::take(&mut worker.status);
                    tracked.written = None;
                    self.change(&worker.id, status, state, now);
                    changes.updated += 1;
                } else if self.stuck_after.is_some() && !is_idle(&self.idle_states, &tracked.state)
                {
                    let Some(now_written) = written(worker) else {
                        continue;
                    };
                    if tracked.written.replace(now_written) != Some(now_written) {
                        // Wrote since the last look (or no earlier time to compare).
                        self.progressed(&worker.id, now);
                    }
                }
                continue;
            }
            let state = derive_state(&self.rule, &worker.status);
            // A worker an earlier agent saw with this status keeps its time, unless its
            // file was written since that agent's last look.
            let remembered = self
                .remembered
                .remove(&worker.id)
                .filter(|memory| memory.fingerprint == fingerprint(&worker.status));
            let (changed_at, now_written) = match remembered {
                Some(memory) => {
                    let now_written = written(worker);
                    let unwritten = memory.written.is_some() && memory.written == now_written;
                    let at = now.checked_sub(memory.age).filter(|_| unwritten);
                    (at.unwrap_or(now), now_written)
                }
                None => (now, None),
            };
            let status = std::mem::take(&mut worker.status);
            seen += 1;
            self.insert(worker.id.clone(), status, state, changed_at);
            if let Some(tracked) = self.workers.get_mut(&worker.id) {
                tracked.written = now_written;
            }
            changes.added.push(worker.id.clone());
        }
        // Live but not read: kept if known (status within the budget), else counted
        // with state unknown.
        let mut kept_unread = Vec::new();
        for id in &snapshot.unread {
            match self.workers.get_mut(id.as_str()) {
                Some(tracked) if tracked.seen == this => {}
                Some(tracked) => {
                    tracked.seen = this;
                    seen += 1;
                    kept_unread.push(id.as_str());
                }
                None => {
                    seen += 1;
                    self.insert(id.clone(), Vec::new(), UNKNOWN.to_owned(), now);
                    changes.added.push(id.clone());
                }
            }
        }
        for id in kept_unread {
            if self.status_bytes <= self.max_status_bytes {
                break;
            }
            self.change(id, Vec::new(), Some(UNKNOWN.to_owned()), None);
        }
        if seen < self.workers.len() {
            let gone: Vec<String> = self
                .workers
                .iter()
                .filter(|(_, tracked)| tracked.seen != this)
                .map(|(id, _)| id.clone())
                .collect();
            for id in gone {
                self.remove(&id);
                changes.removed.push(id);
            }
        }
        changes.added.sort_unstable();
        changes.removed.sort_unstable();
        // What an earlier agent remembered is for the workers of its time: once they
        // have been seen (or not), it is of no further use.
        if !self.remembered.is_empty() {
            self.remembered = HashMap::new();
        }
        changes
    }

    fn is_idle(&self, state: &str) -> bool {
        is_idle(&self.idle_states, state)
    }

    /// Whether a worker in `state` is ordered in [`Pool::waiting`].
    fn may_get_stuck(&self, state: &str) -> bool {
        self.stuck_after.is_some() && !self.is_idle(state)
    }

    fn count_in(&mut self, state: &str) {
        match self.states.get_mut(state) {
            Some(n) => *n += 1,
            None => {
                self.states.insert(state.to_owned(), 1);
            }
        }
    }

    fn count_out(&mut self, state: &str) {
        if let Some(n) = self.states.get_mut(state) {
            *n -= 1;
            if *n == 0 {
                self.states.remove(state);
            }
        }
    }

    fn insert(&mut self, id: String, status: Vec<u8>, state: String, changed_at: Instant) {
        self.count_in(&state);
        if self.may_get_stuck(&state) {
            self.waiting.insert((changed_at, id.clone()));
        }
        self.status_bytes += status.len();
        let seen = self.observations;
        self.workers.insert(
            id,
            Tracked {
                status,
                state,
                changed_at,
                written: None,
                seen,
            },
        );
    }

    /// A known worker's new status and state (`None`: the same state), changed at `at`
    /// (`None`: the status was forgotten, not changed, so its clock goes on). Allocates
    /// only for what changed: a new state's count, a waiting worker's new place.
    fn change(
        &mut self,
        id: &str,
        status: Vec<u8>,
        state: Option<String>,
        at: impl Into<Option<Instant>>,
    ) {
        let Some(tracked) = self.workers.get(id) else {
            return;
        };
        let was_waiting = self.may_get_stuck(&tracked.state);
        let will_wait = state
            .as_deref()
            .map_or(was_waiting, |s| self.may_get_stuck(s));
        let counted = state.clone();
        let tracked = self.workers.get_mut(id).expect("looked up above");
        let old_state = state.map(|state| std::mem::replace(&mut tracked.state, state));
        let old_at = tracked.changed_at;
        let new_at = at.into().unwrap_or(old_at);
        tracked.changed_at = new_at;
        self.status_bytes = self.status_bytes - tracked.status.len() + status.len();
        tracked.status = status;
        if let (Some(old), Some(new)) = (old_state, counted) {
            self.count_out(&old);
            self.count_in(&new);
        }
        if (was_waiting, old_at) != (will_wait, new_at) {
            if was_waiting {
                self.waiting.remove(&(old_at, id.to_owned()));
            }
            if will_wait {
                self.waiting.insert((new_at, id.to_owned()));
            }
        }
    }

    /// A worker made progress at `now` without changing its text: its clock restarts.
    fn progressed(&mut self, id: &str, now: Instant) {
        let Some(tracked) = self.workers.get_mut(id) else {
            return;
        };
        let old = std::mem::replace(&mut tracked.changed_at, now);
        if old != now && self.stuck_after.is_some() && !is_idle(&self.idle_states, &tracked.state) {
            self.waiting.remove(&(old, id.to_owned()));
            self.waiting.insert((now, id.to_owned()));
        }
    }

    fn remove(&mut self, id: &str) {
        let Some(tracked) = self.workers.remove(id) else {
            return;
        };
        self.count_out(&tracked.state);
        if self.may_get_stuck(&tracked.state) {
            self.waiting.remove(&(tracked.changed_at, id.to_owned()));
        }
        self.status_bytes -= tracked.status.len();
    }

    /// Each worker's status fingerprint, last modification time, and how long before
    /// `now` it last made progress.
    pub fn history(&self, now: Instant) -> History {
        self.workers
            .iter()
            .map(|(id, tracked)| {
                let memory = Remembered {
                    fingerprint: fingerprint(&tracked.status),
                    written: tracked.written,
                    age: now.saturating_duration_since(tracked.changed_at),
                };
                (id.clone(), memory)
            })
            .collect()
    }

    /// Takes in a history saved by an earlier agent, ages as of now (the shell has bound
    /// each by what it can vouch for): a worker the next snapshot shows for the first
    /// time, with the status it had then and no write since, keeps its time, so a
    /// restart does not reset its stuck timer.
    pub fn remember(&mut self, history: History) {
        self.remembered = history.into_iter().collect();
    }

    /// What the agent knows of the directory.
    pub fn sight(&self) -> &Sight {
        &self.sight
    }

    /// The directory could not be read: its workers are unknown, and forgotten (the
    /// ids are returned, sorted); the line says why.
    pub fn unseen(&mut self, why: Unseen) -> Vec<String> {
        self.sight = Sight::Unseen(why);
        self.access = None;
        self.clear()
    }

    /// Forgets every worker (the directory is gone); returns their ids, sorted. The
    /// deaths seen there go too: who may see them was decided on that directory.
    pub fn clear(&mut self) -> Vec<String> {
        let mut gone: Vec<String> = std::mem::take(&mut self.workers).into_keys().collect();
        gone.sort_unstable();
        self.states.clear();
        self.waiting.clear();
        self.status_bytes = 0;
        self.deaths = deaths::Deaths::default();
        gone
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether there are no workers.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The summary at `now` (stuck-ness depends on the time): costs the number of
    /// states and of stuck workers, not of workers.
    pub fn summary(&self, now: Instant) -> Summary {
        let mut counts: HashMap<&str, usize> =
            self.states.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        let mut stuck = 0;
        for (_, id) in self.stuck_ones(now) {
            if let Some(tracked) = self.workers.get(id)
                && let Some(n) = counts.get_mut(tracked.state.as_str())
            {
                *n -= 1;
                stuck += 1;
            }
        }
        let mut counts: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(state, n)| (state.to_owned(), n))
            .collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Summary {
            total: self.workers.len(),
            counts,
            stuck,
        }
    }

    /// The `STATUS=` line at `now`, by the service's template: the one way to it.
    pub fn status_line(&self, now: Instant) -> String {
        self.render(&self.summary(now))
    }

    /// The `STATUS=` line for a summary of this pool already taken; for a pool not
    /// seen, what is wrong instead (never "0 workers").
    pub fn render(&self, summary: &Summary) -> String {
        match &self.sight {
            Sight::Unseen(why) => why.status_line(&self.unit),
            Sight::NotYet | Sight::Seen => status_line::render(summary, &self.template, &self.unit),
        }
    }

    /// Every worker at `now`, sorted by id.
    pub fn workers(&self, now: Instant) -> Vec<WorkerReport> {
        let mut ids: Vec<&str> = self.ids().collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.worker(id, now))
            .collect()
    }

    /// The ids of every worker, in no particular order, without building reports.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.workers.keys().map(String::as_str)
    }

    /// The scoreboard directory's owner, group and mode, as its last sweep found the
    /// very directory it read (`None` while it is not being read): who may see
    /// per-worker details is decided on this, not on whatever the path names by then.
    pub fn access(&self) -> Option<crate::core::privacy::DirAccess> {
        self.access
    }

    /// The last health action taken on the service, said as one line with its time.
    pub fn last_action(&self) -> Option<&str> {
        self.last_action.as_deref()
    }

    /// Records the last health action (see [`Pool::last_action`]).
    pub fn set_last_action(&mut self, line: String) {
        self.last_action = Some(line);
    }

    /// Records the directory's owner, group and mode (see [`Pool::access`]).
    pub fn set_access(&mut self, access: Option<crate::core::privacy::DirAccess>) {
        self.access = access;
    }

    /// One worker at `now`.
    pub fn worker(&self, id: &str, now: Instant) -> Option<WorkerReport> {
        let tracked = self.workers.get(id)?;
        Some(WorkerReport {
            id: id.to_owned(),
            state: tracked.state.clone(),
            status: String::from_utf8_lossy(&tracked.status).into_owned(),
            unchanged_seconds: Some(
                now.saturating_duration_since(tracked.changed_at)
                    .as_secs_f64(),
            ),
            stuck: Some(self.is_stuck(tracked, now)),
        })
    }
}

#[cfg(test)]
mod tests;
