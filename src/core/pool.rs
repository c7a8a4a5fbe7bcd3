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

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::time::{Duration, Instant};

use scoreboard::{Snapshot, Worker, Written};

use crate::config::{Service, StateRule};
use crate::core::status_line::{self, Summary};
use crate::core::worker::WorkerReport;

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

/// A state no rule produces for a status it could read: the worker is alive but its
/// status is not known (not read in a pass, or forgotten to stay within the budget).
const UNKNOWN: &str = "unknown";

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
}

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

    /// Forgets every worker (the directory is gone); returns their ids, sorted.
    pub fn clear(&mut self) -> Vec<String> {
        let mut gone: Vec<String> = std::mem::take(&mut self.workers).into_keys().collect();
        gone.sort_unstable();
        self.states.clear();
        self.waiting.clear();
        self.status_bytes = 0;
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

    /// The latest change time at which a waiting worker is stuck at `now`.
    fn stuck_cutoff(&self, now: Instant) -> Option<Instant> {
        now.checked_sub(self.stuck_after?)
    }

    /// The waiting workers stuck at `now`.
    fn stuck_ones(&self, now: Instant) -> impl Iterator<Item = &(Instant, String)> {
        let cutoff = self.stuck_cutoff(now);
        self.waiting
            .iter()
            .take_while(move |(at, _)| cutoff.is_some_and(|cutoff| *at <= cutoff))
    }

    fn is_stuck(&self, tracked: &Tracked, now: Instant) -> bool {
        self.may_get_stuck(&tracked.state)
            && self
                .stuck_cutoff(now)
                .is_some_and(|cutoff| tracked.changed_at <= cutoff)
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

    /// Since when every worker has been stuck (the last one to get stuck got stuck
    /// then), or `None` when some worker is not stuck or there are none.
    pub fn all_stuck_since(&self, now: Instant) -> Option<Instant> {
        let after = self.stuck_after?;
        let cutoff = self.stuck_cutoff(now)?;
        // Idle workers are never stuck, so all stuck means all waiting; the waiting set is
        // ordered by change time, its last entry changed last.
        let (last_changed, _) = self.waiting.last()?;
        (self.waiting.len() == self.workers.len() && *last_changed <= cutoff)
            .then(|| *last_changed + after)
    }

    /// The workers stuck for at least `at_least` at `now`: id, how long the status has
    /// stood, the status. Costs the number of such workers, and allocates nothing.
    pub fn stuck_for(
        &self,
        at_least: Duration,
        now: Instant,
    ) -> impl Iterator<Item = (&str, Duration, &[u8])> {
        let stuck = self.stuck_cutoff(now).is_some();
        let cutoff = now.checked_sub(at_least);
        self.waiting
            .iter()
            .take_while(move |(at, _)| stuck && cutoff.is_some_and(|cutoff| *at <= cutoff))
            .filter_map(move |(at, id)| {
                let tracked = self.workers.get(id)?;
                self.is_stuck(tracked, now).then(|| {
                    (
                        id.as_str(),
                        now.saturating_duration_since(*at),
                        tracked.status.as_slice(),
                    )
                })
            })
    }

    /// Whether the worker `id` is there and stuck at `now`.
    pub fn is_stuck_worker(&self, id: &str, now: Instant) -> bool {
        self.workers
            .get(id)
            .is_some_and(|tracked| self.is_stuck(tracked, now))
    }

    /// When the next worker becomes stuck if nothing changes, so the summary can be
    /// re-sent then rather than at the next sampling tick. A time past what an `Instant`
    /// can hold is never: the configuration bounds `stuck_after`, but the core does not
    /// rely on it to stay free of panics.
    pub fn next_stuck_at(&self, now: Instant) -> Option<Instant> {
        self.next_to_stand(self.stuck_after?, now)
    }

    /// When the next non-idle worker's status will have stood for `age` if nothing
    /// changes (one ordered-set lookup): when the next one becomes stuck, or reaches a
    /// health action's threshold.
    pub fn next_to_stand(&self, age: Duration, now: Instant) -> Option<Instant> {
        let first_not_yet = match now.checked_sub(age) {
            Some(cutoff) => {
                // Instants count nanoseconds: "after the cutoff" is "from cutoff + 1 ns".
                let from = cutoff.checked_add(Duration::from_nanos(1))?;
                self.waiting
                    .range((Bound::Included((from, String::new())), Bound::Unbounded))
                    .next()
            }
            None => self.waiting.iter().next(),
        };
        first_not_yet.and_then(|(at, _)| at.checked_add(age))
    }
}

fn is_idle(idle_states: &[String], state: &str) -> bool {
    idle_states.iter().any(|idle| idle == state)
}

/// A worker's state from its status, by the service's rule, at most [`MAX_STATE_LEN`]
/// bytes. A status the rule cannot read has the state `unknown`; an empty first word is
/// `empty`.
pub fn derive_state(rule: &StateRule, status: &[u8]) -> String {
    state_of(rule, status).into_owned()
}

/// [`derive_state`], borrowed from the status where it can be.
fn state_of<'a>(rule: &StateRule, status: &'a [u8]) -> Cow<'a, str> {
    match state_by_rule(rule, status) {
        Cow::Borrowed(state) => Cow::Borrowed(&state[..cut_at(state)]),
        Cow::Owned(mut state) => {
            state.truncate(cut_at(&state));
            Cow::Owned(state)
        }
    }
}

/// Where a state is cut to fit [`MAX_STATE_LEN`], at a character boundary.
fn cut_at(state: &str) -> usize {
    let mut cut = state.len().min(MAX_STATE_LEN);
    while !state.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// A state is one word: whitespace in a JSON state becomes `_` (`"in progress"` is
/// `in_progress`), so that a label with a space ([`crate::core::status_line::FOLDED_STATES`])
/// is never a state; an empty one is `empty`, as an empty first word is.
fn one_word(state: &str) -> String {
    if state.trim().is_empty() {
        return "empty".to_owned();
    }
    state
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

/// A state is a word, cut at this many bytes: one worker's first word may be a MiB
/// long, and a state is kept per worker, counted, listed on the bus and in metrics.
pub const MAX_STATE_LEN: usize = 64;

fn state_by_rule<'a>(rule: &StateRule, status: &'a [u8]) -> Cow<'a, str> {
    match rule {
        StateRule::FirstWord => match String::from_utf8_lossy(status) {
            Cow::Borrowed(text) => Cow::Borrowed(text.split_whitespace().next().unwrap_or("empty")),
            Cow::Owned(text) => {
                Cow::Owned(text.split_whitespace().next().unwrap_or("empty").to_owned())
            }
        },
        StateRule::JsonPointer(pointer) => serde_json::from_slice::<serde_json::Value>(status)
            .ok()
            .and_then(|value| match value.pointer(pointer)? {
                serde_json::Value::String(s) => Some(one_word(s)),
                serde_json::Value::Null => None,
                other => Some(one_word(&other.to_string())),
            })
            .map_or(Cow::Borrowed(UNKNOWN), Cow::Owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_SUMMARY;
    use scoreboard::Worker;

    fn service(stuck_after: Option<Duration>) -> Service {
        Service {
            source: "web.toml".into(),
            unit: "web.service".into(),
            directory: "/run/web/scoreboard".into(),
            state: StateRule::FirstWord,
            idle_states: vec!["idle".into()],
            stuck_after,
            summary: DEFAULT_SUMMARY.into(),
            notify: crate::config::NotifyMode::None,
            max_workers: scoreboard::DEFAULT_MAX_WORKERS,
            max_status_bytes: crate::config::SERVICE_MAX_STATUS_BYTES,
            health_actions: Default::default(),
        }
    }

    fn snapshot(workers: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            workers: workers
                .iter()
                .map(|(id, status)| Worker {
                    id: id.to_string(),
                    status: status.as_bytes().to_vec(),
                    read_at: Instant::now(),
                    inode: 0,
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn the_default_line_reads_like_the_readme() {
        let mut pool = Pool::new(&service(Some(Duration::from_secs(60))));
        let t0 = Instant::now();
        let mut workers: Vec<(String, String)> = Vec::new();
        for i in 0..8 {
            workers.push((format!("b{i}"), format!("busy GET /{i}")));
        }
        for i in 0..3 {
            workers.push((format!("i{i}"), "idle".into()));
        }
        workers.push(("s".into(), "busy GET /slow".into()));
        let refs: Vec<(&str, &str)> = workers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        pool.observe(&mut snapshot(&refs), t0);
        // A minute later every busy worker but the slow one has moved on.
        let t1 = t0 + Duration::from_secs(61);
        for (id, status) in workers.iter_mut().filter(|(id, _)| id.starts_with('b')) {
            *status = format!("busy POST /{id}");
        }
        let refs: Vec<(&str, &str)> = workers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let changes = pool.observe(&mut snapshot(&refs), t1);
        assert_eq!(changes.updated, 8);
        assert!(!changes.membership());
        assert_eq!(pool.status_line(t1), "12 workers: 8 busy, 3 idle, 1 stuck");
    }

    #[test]
    fn membership_changes_are_reported_by_id() {
        let mut pool = Pool::new(&service(None));
        let now = Instant::now();
        let changes = pool.observe(&mut snapshot(&[("1", "idle"), ("2", "idle")]), now);
        assert_eq!(changes.added, ["1", "2"]);
        let changes = pool.observe(&mut snapshot(&[("2", "idle"), ("3", "busy")]), now);
        assert_eq!(changes.added, ["3"]);
        assert_eq!(changes.removed, ["1"]);
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.clear(), ["2", "3"]);
        assert!(pool.is_empty());
    }

    #[test]
    fn a_torn_read_keeps_the_worker_with_its_last_status() {
        let mut pool = Pool::new(&service(None));
        let now = Instant::now();
        pool.observe(&mut snapshot(&[("7", "busy")]), now);
        let mut torn = snapshot(&[]);
        torn.unread.push("7".to_owned());
        assert_eq!(pool.observe(&mut torn, now), Changes::default());
        assert_eq!(pool.workers(now)[0].status, "busy");
    }

    /// A directory whose owner makes a different set of workers readable at each pass
    /// cannot make the pool keep every status it ever read: kept statuses of unread
    /// workers stay within the byte budget, the rest are counted with state `unknown`.
    #[test]
    fn statuses_kept_for_unread_workers_stay_within_the_byte_budget() {
        let mut service = service(None);
        service.max_status_bytes = 3000;
        let mut pool = Pool::new(&service);
        let now = Instant::now();
        let big = "busy ".to_owned() + &"x".repeat(995);
        let ids: Vec<String> = (0..10).map(|n| n.to_string()).collect();
        for round in 0..5 {
            let read: Vec<(&str, &str)> = ids[round * 2..round * 2 + 2]
                .iter()
                .map(|id| (id.as_str(), big.as_str()))
                .collect();
            let mut snapshot = snapshot(&read);
            snapshot.unread = ids
                .iter()
                .filter(|id| !read.iter().any(|(r, _)| r == id))
                .cloned()
                .collect();
            pool.observe(&mut snapshot, now);
            let kept: usize = pool.workers(now).iter().map(|w| w.status.len()).sum();
            assert!(kept <= 3000, "round {round}: {kept} bytes kept");
            assert_eq!(pool.len(), 10, "unread workers are still counted");
        }
        assert!(
            pool.summary(now)
                .counts
                .iter()
                .any(|(state, _)| state == "unknown")
        );
    }

    #[test]
    fn a_state_is_cut_to_a_word() {
        let state = derive_state(&StateRule::FirstWord, "é".repeat(100).as_bytes());
        assert!(state.len() <= MAX_STATE_LEN && state.chars().all(|c| c == 'é'));
    }

    #[test]
    fn stuck_needs_a_non_idle_state_unchanged_for_long_enough() {
        let mut pool = Pool::new(&service(Some(Duration::from_secs(10))));
        let t0 = Instant::now();
        pool.observe(&mut snapshot(&[("a", "busy x"), ("b", "idle")]), t0);
        assert_eq!(pool.summary(t0 + Duration::from_secs(9)).stuck, 0);
        assert_eq!(pool.next_stuck_at(t0), Some(t0 + Duration::from_secs(10)));
        let later = t0 + Duration::from_secs(10);
        assert_eq!(pool.summary(later).stuck, 1);
        let views = pool.workers(later);
        assert_eq!((views[0].stuck, views[1].stuck), (Some(true), Some(false)));
        assert_eq!(views[0].unchanged_seconds, Some(10.0));
        // A new status resets the clock.
        pool.observe(&mut snapshot(&[("a", "busy y"), ("b", "idle")]), later);
        assert_eq!(pool.summary(later).stuck, 0);
    }

    #[test]
    fn a_stuck_after_past_what_an_instant_holds_is_never_not_a_panic() {
        let mut pool = Pool::new(&service(Some(Duration::MAX)));
        let now = Instant::now();
        pool.observe(&mut snapshot(&[("w1", "busy GET /")]), now);
        assert_eq!(pool.next_stuck_at(now), None);
        assert_eq!(pool.summary(now).stuck, 0);
        assert_eq!(pool.worker("w1", now).unwrap().stuck, Some(false));
    }

    fn stamp(n: i64) -> Option<Written> {
        Some(Written {
            seconds: 1_764_000_000 + n,
            nanoseconds: 0,
        })
    }

    #[test]
    fn a_restarted_agent_keeps_stuck_timers_for_workers_that_did_not_write() {
        let service = service(Some(Duration::from_secs(60)));
        let t0 = Instant::now();
        let mut before = Pool::new(&service);
        let workers = [
            ("a", "busy GET /slow"),
            ("b", "busy GET /x"),
            ("c", "busy GET /c"),
        ];
        before.observe_writes(&mut snapshot(&workers), t0, |_| stamp(0));
        // A second look with the same text and the same modification time: the baseline.
        before.observe_writes(&mut snapshot(&workers), t0, |_| stamp(0));
        let saved = before.history(t0 + Duration::from_secs(50));
        assert_eq!(saved["a"].age, Duration::from_secs(50));

        // Ten seconds later, a new agent; b has moved on, c wrote the same text again.
        let t1 = t0 + Duration::from_secs(1000);
        let mut after = Pool::new(&service);
        after.remember(
            saved
                .into_iter()
                .map(|(id, r)| {
                    let age = r.age + Duration::from_secs(10);
                    (id, Remembered { age, ..r })
                })
                .collect(),
        );
        let now = [
            ("a", "busy GET /slow"),
            ("b", "busy GET /y"),
            ("c", "busy GET /c"),
        ];
        after.observe_writes(&mut snapshot(&now), t1, |w| {
            stamp(if w.id == "c" { 9 } else { 0 })
        });
        let views = after.workers(t1);
        assert_eq!(views[0].unchanged_seconds, Some(60.0));
        assert_eq!(views[0].stuck, Some(true));
        assert_eq!(views[1].unchanged_seconds, Some(0.0));
        assert_eq!(views[2].unchanged_seconds, Some(0.0), "c wrote since");
        assert_eq!(after.summary(t1).stuck, 1);
    }

    /// Same text is not no progress: a worker that wrote between two looks (its
    /// modification time moved) made progress, whatever the text; one that did not, did
    /// not. Idle workers and workers whose text changed are not asked about.
    #[test]
    fn a_write_with_the_same_text_is_progress() {
        let mut pool = Pool::new(&service(Some(Duration::from_secs(5))));
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let asked = std::cell::RefCell::new(Vec::new());
        let look = |pool: &mut Pool, at: Instant, stamps: &[(&str, i64)]| {
            let workers = [
                ("flip", "busy GET /health"),
                ("hung", "busy GET /slow"),
                ("rest", "idle"),
            ];
            pool.observe_writes(&mut snapshot(&workers), at, |w| {
                asked.borrow_mut().push(w.id.clone());
                stamps
                    .iter()
                    .find(|(id, _)| *id == w.id)
                    .and_then(|(_, n)| stamp(*n))
            });
        };
        look(&mut pool, t0, &[]);
        assert!(asked.borrow().is_empty(), "new workers are not asked about");
        // No earlier time to compare with: taken as progress.
        look(&mut pool, t0 + second, &[("flip", 1), ("hung", 1)]);
        assert_eq!(
            *asked.borrow(),
            ["flip", "hung"],
            "idle ones are not asked about"
        );
        for n in 2..=10 {
            look(
                &mut pool,
                t0 + n as u32 * second,
                &[("flip", n), ("hung", 1)],
            );
        }
        let at = t0 + 10 * second;
        let views = pool.workers(at);
        assert_eq!(
            (views[0].id.as_str(), views[0].stuck),
            ("flip", Some(false))
        );
        assert_eq!(views[0].unchanged_seconds, Some(0.0));
        assert_eq!((views[1].id.as_str(), views[1].stuck), ("hung", Some(true)));
        assert_eq!(views[1].unchanged_seconds, Some(9.0));
        assert_eq!(pool.summary(at).stuck, 1);
        // A reader that cannot tell (no modification time): only the text counts.
        look(&mut pool, t0 + 11 * second, &[]);
        assert_eq!(
            pool.workers(t0 + 11 * second)[1].unchanged_seconds,
            Some(10.0)
        );
    }

    #[test]
    fn a_pool_not_seen_says_why_never_zero_workers() {
        let mut pool = Pool::new(&service(None));
        let now = Instant::now();
        pool.observe(&mut snapshot(&[("1", "idle")]), now);
        let gone = pool.unseen(Unseen {
            cause: Cause::PermissionDenied,
            detail: "open directory /run/w/scoreboard: Permission denied (os error 13)".into(),
        });
        assert_eq!(gone, ["1"]);
        assert_eq!(
            pool.status_line(now),
            "scoreboard unreadable: permission denied — run: scoreboardctl enable web.service"
        );
        assert!(!pool.status_line(now).contains("0 workers"));
        // Read again: seen, counted.
        pool.observe(&mut snapshot(&[]), now);
        assert_eq!(pool.status_line(now), "0 workers: none");
        assert_eq!(*pool.sight(), Sight::Seen);
    }

    #[test]
    fn fingerprints_tell_statuses_apart() {
        assert_eq!(fingerprint(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fingerprint(b"busy GET /a"), fingerprint(b"busy GET /b"));
    }

    #[test]
    fn states_come_from_the_first_word_or_a_json_pointer() {
        assert_eq!(derive_state(&StateRule::FirstWord, b"busy GET /"), "busy");
        assert_eq!(derive_state(&StateRule::FirstWord, b"  \t"), "empty");
        let rule = StateRule::JsonPointer("/state".into());
        assert_eq!(
            derive_state(&rule, br#"{"state":"busy","req":"/"}"#),
            "busy"
        );
        assert_eq!(derive_state(&rule, br#"{"state":3}"#), "3");
        assert_eq!(
            derive_state(&rule, br#"{"state":"other states"}"#),
            "other_states",
            "no state can be the folded label"
        );
        assert_eq!(derive_state(&rule, br#"{"state":" "}"#), "empty");
        assert_eq!(derive_state(&rule, br#"{"other":1}"#), "unknown");
        assert_eq!(derive_state(&rule, b"not json"), "unknown");
    }

    /// The counts and stuck workers kept up to date change by change are what counting
    /// every worker afresh gives, through joins, changes, forgetting, leaving and time.
    #[test]
    fn incremental_counts_agree_with_counting_afresh() {
        let mut pool = Pool::new(&service(Some(Duration::from_secs(5))));
        let t0 = Instant::now();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let states = ["busy a", "busy b", "idle", "write x", "", "read y"];
        for round in 0..300u64 {
            let now = t0 + Duration::from_secs(round);
            let mut workers: Vec<(String, String)> = Vec::new();
            for id in 0..40 {
                if next(10) < 8 {
                    let status = states[(next(states.len() as u64)) as usize];
                    workers.push((format!("w{id}"), status.to_owned()));
                }
            }
            let refs: Vec<(&str, &str)> = workers
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            let mut snap = snapshot(&refs);
            // Some workers alive but unread this pass.
            for id in 40..40 + next(3) {
                snap.unread.push(format!("w{id}"));
            }
            pool.observe(&mut snap, now);
            let at = now + Duration::from_millis(next(8000));
            let reports = pool.workers(at);
            let mut expected: std::collections::BTreeMap<String, usize> = Default::default();
            let mut stuck = 0;
            for w in &reports {
                if w.stuck == Some(true) {
                    stuck += 1;
                } else {
                    *expected.entry(w.state.clone()).or_default() += 1;
                }
            }
            let summary = pool.summary(at);
            assert_eq!(summary.total, reports.len(), "round {round}");
            assert_eq!(summary.stuck, stuck, "round {round}");
            let counted: std::collections::BTreeMap<String, usize> =
                summary.counts.into_iter().collect();
            assert_eq!(counted, expected, "round {round}");
            let next_stuck = reports
                .iter()
                .filter(|w| w.stuck == Some(false) && w.state != "idle")
                .map(|w| {
                    at + Duration::from_secs(5)
                        - Duration::from_secs_f64(w.unchanged_seconds.unwrap())
                })
                .min();
            let diff = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
                (Some(a), Some(b)) => (a.max(b) - a.min(b)) < Duration::from_micros(1),
                (a, b) => a == b,
            };
            assert!(diff(pool.next_stuck_at(at), next_stuck), "round {round}");
        }
    }
}
