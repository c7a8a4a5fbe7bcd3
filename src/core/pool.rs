//! The agent's core, without I/O: which workers a service has, their states, how long
//! each status has stood, and the one-line summary systemd shows.
//!
//! A [`Pool`] is fed [`scoreboard::Snapshot`]s with the time they were taken; it
//! answers with what changed, a [`Summary`], and per-worker details. Rendering the
//! `STATUS=` text, and making it safe to send, happens once, in [`status_line`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use scoreboard::Snapshot;

use crate::config::{Service, StateRule};

/// One worker as the agent knows it.
#[derive(Debug, Clone)]
struct Tracked {
    status: Vec<u8>,
    state: String,
    /// When the status last changed (or the worker first appeared).
    changed_at: Instant,
}

/// What the agent keeps per service.
#[derive(Debug)]
pub struct Pool {
    rule: StateRule,
    idle_states: Vec<String>,
    stuck_after: Option<Duration>,
    workers: BTreeMap<String, Tracked>,
    /// Status bytes the pool may keep for workers not read in a pass (see
    /// [`Pool::observe`]): the service's byte budget.
    max_status_bytes: usize,
    /// See [`Pool::access`].
    access: Option<crate::bus::privacy::DirAccess>,
    /// Change times saved by an earlier agent, used for workers seen again with the same
    /// status (see [`Pool::remember`]).
    remembered: HashMap<String, (u64, Instant)>,
}

/// What a restarted agent needs to keep stuck timers running: per worker id, a
/// fingerprint of its status and the wall-clock time that status was first seen.
pub type History = BTreeMap<String, (u64, SystemTime)>;

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
    /// Workers seen for the first time.
    pub added: Vec<String>,
    /// Workers gone: reaped, or exited and removed their file.
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

/// The pool at a glance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// How many workers there are.
    pub total: usize,
    /// Workers per state, stuck ones excluded, largest first (then by name).
    pub counts: Vec<(String, usize)>,
    /// Workers stuck in a non-idle state.
    pub stuck: usize,
}

/// One worker's details, for `scoreboardctl` and the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerView {
    /// The worker id.
    pub id: String,
    /// Its state, as the service's rule derives it.
    pub state: String,
    /// The status text (lossy UTF-8).
    pub status: String,
    /// How long the status has stood.
    pub unchanged_for: Duration,
    /// Whether it counts as stuck.
    pub stuck: bool,
}

impl Pool {
    /// An empty pool for `service`.
    pub fn new(service: &Service) -> Self {
        Pool {
            rule: service.state.clone(),
            idle_states: service.idle_states.clone(),
            stuck_after: service.stuck_after,
            workers: BTreeMap::new(),
            max_status_bytes: service.max_status_bytes,
            access: None,
            remembered: HashMap::new(),
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
    /// The statuses are moved out of the snapshot into the pool, not copied.
    pub fn observe(&mut self, snapshot: &mut Snapshot, now: Instant) -> Changes {
        let mut changes = Changes::default();
        let unreadable: HashSet<&str> = snapshot.unread.iter().map(String::as_str).collect();
        let mut kept_bytes: usize = snapshot.workers.iter().map(|w| w.status.len()).sum();
        let mut previous = std::mem::take(&mut self.workers);
        for worker in &mut snapshot.workers {
            let tracked = match previous.remove(&worker.id) {
                Some(mut tracked) => {
                    if tracked.status != worker.status {
                        tracked.state = derive_state(&self.rule, &worker.status);
                        tracked.status = std::mem::take(&mut worker.status);
                        tracked.changed_at = now;
                        changes.updated += 1;
                    }
                    tracked
                }
                None => {
                    changes.added.push(worker.id.clone());
                    let remembered = self
                        .remembered
                        .remove(&worker.id)
                        .filter(|(print, _)| *print == fingerprint(&worker.status));
                    Tracked {
                        state: derive_state(&self.rule, &worker.status),
                        status: std::mem::take(&mut worker.status),
                        changed_at: remembered.map_or(now, |(_, at)| at),
                    }
                }
            };
            self.workers.insert(worker.id.clone(), tracked);
        }
        // Live but not read, and not known before: counted, status unknown.
        for id in &snapshot.unread {
            if !self.workers.contains_key(id) && !previous.contains_key(id) {
                changes.added.push(id.clone());
                self.workers.insert(
                    id.clone(),
                    Tracked {
                        state: "unknown".to_owned(),
                        status: Vec::new(),
                        changed_at: now,
                    },
                );
            }
        }
        for (id, mut tracked) in previous {
            if unreadable.contains(&id.as_str()) {
                kept_bytes += tracked.status.len();
                if kept_bytes > self.max_status_bytes {
                    kept_bytes -= tracked.status.len();
                    tracked.status = Vec::new();
                    tracked.state = "unknown".to_owned();
                }
                self.workers.insert(id, tracked);
            } else {
                changes.removed.push(id);
            }
        }
        // What an earlier agent remembered is for the workers of its time: once they
        // have been seen (or not), it is of no further use.
        self.remembered.clear();
        changes
    }

    /// Each worker's status fingerprint and the wall-clock time its status last changed,
    /// `now` being `wall`.
    pub fn history(&self, now: Instant, wall: SystemTime) -> History {
        self.workers
            .iter()
            .map(|(id, tracked)| {
                let age = now.saturating_duration_since(tracked.changed_at);
                (id.clone(), (fingerprint(&tracked.status), wall - age))
            })
            .collect()
    }

    /// Takes in a history saved by an earlier agent (`now` being `wall`): a worker the
    /// next snapshot shows for the first time, with the status it had then, keeps the
    /// time its status last changed, so a restart does not reset its stuck timer.
    pub fn remember(&mut self, history: History, now: Instant, wall: SystemTime) {
        self.remembered = history
            .into_iter()
            .filter_map(|(id, (print, changed))| {
                let age = wall.duration_since(changed).unwrap_or_default();
                Some((id, (print, now.checked_sub(age)?)))
            })
            .collect();
    }

    /// Forgets every worker (the directory is gone); returns their ids.
    pub fn clear(&mut self) -> Vec<String> {
        std::mem::take(&mut self.workers).into_keys().collect()
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether there are no workers.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    fn is_stuck(&self, tracked: &Tracked, now: Instant) -> bool {
        self.stuck_after.is_some_and(|after| {
            !self.idle_states.contains(&tracked.state)
                && now.saturating_duration_since(tracked.changed_at) >= after
        })
    }

    /// The summary at `now` (stuck-ness depends on the time).
    pub fn summary(&self, now: Instant) -> Summary {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut stuck = 0;
        for tracked in self.workers.values() {
            if self.is_stuck(tracked, now) {
                stuck += 1;
            } else {
                *counts.entry(&tracked.state).or_default() += 1;
            }
        }
        let mut counts: Vec<(String, usize)> = counts
            .into_iter()
            .map(|(state, n)| (state.to_owned(), n))
            .collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Summary {
            total: self.workers.len(),
            counts,
            stuck,
        }
    }

    /// Every worker's details at `now`, sorted by id.
    pub fn workers(&self, now: Instant) -> Vec<WorkerView> {
        self.workers
            .keys()
            .filter_map(|id| self.worker(id, now))
            .collect()
    }

    /// The ids of every worker, without building their views.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.workers.keys().map(String::as_str)
    }

    /// The scoreboard directory's owner, group and mode, as its last sweep found the
    /// very directory it read (`None` while it is not being read): who may see
    /// per-worker details is decided on this, not on whatever the path names by then.
    pub fn access(&self) -> Option<crate::bus::privacy::DirAccess> {
        self.access
    }

    /// Records the directory's owner, group and mode (see [`Pool::access`]).
    pub fn set_access(&mut self, access: Option<crate::bus::privacy::DirAccess>) {
        self.access = access;
    }

    /// One worker's details at `now`.
    pub fn worker(&self, id: &str, now: Instant) -> Option<WorkerView> {
        let tracked = self.workers.get(id)?;
        Some(WorkerView {
            id: id.to_owned(),
            state: tracked.state.clone(),
            status: String::from_utf8_lossy(&tracked.status).into_owned(),
            unchanged_for: now.saturating_duration_since(tracked.changed_at),
            stuck: self.is_stuck(tracked, now),
        })
    }

    /// When the next worker becomes stuck if nothing changes, so the summary can be
    /// re-sent then rather than at the next sampling tick. A time past what an `Instant`
    /// can hold is never: the configuration bounds `stuck_after`, but the core does not
    /// rely on it to stay free of panics.
    pub fn next_stuck_at(&self, now: Instant) -> Option<Instant> {
        let after = self.stuck_after?;
        self.workers
            .values()
            .filter(|t| !self.idle_states.contains(&t.state) && !self.is_stuck(t, now))
            .filter_map(|t| t.changed_at.checked_add(after))
            .min()
    }
}

/// A worker's state from its status, by the service's rule, at most [`MAX_STATE_LEN`]
/// bytes. A status the rule cannot read has the state `unknown`; an empty first word is
/// `empty`.
pub fn derive_state(rule: &StateRule, status: &[u8]) -> String {
    let mut state = state_by_rule(rule, status);
    if state.len() > MAX_STATE_LEN {
        let mut cut = MAX_STATE_LEN;
        while !state.is_char_boundary(cut) {
            cut -= 1;
        }
        state.truncate(cut);
    }
    state
}

/// A state is a word, cut at this many bytes: one worker's first word may be a MiB
/// long, and a state is kept per worker, counted, listed on the bus and in metrics.
pub const MAX_STATE_LEN: usize = 64;

fn state_by_rule(rule: &StateRule, status: &[u8]) -> String {
    match rule {
        StateRule::FirstWord => {
            let text = String::from_utf8_lossy(status);
            match text.split_whitespace().next() {
                Some(word) => word.to_owned(),
                None => "empty".to_owned(),
            }
        }
        StateRule::JsonPointer(pointer) => serde_json::from_slice::<serde_json::Value>(status)
            .ok()
            .and_then(|value| match value.pointer(pointer)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            })
            .unwrap_or_else(|| "unknown".to_owned()),
    }
}

/// Placeholders a summary template may use.
const PLACEHOLDERS: [&str; 4] = ["total", "counts", "stuck", "unit"];

/// Refuses a template with an unknown or unclosed placeholder.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("unclosed {{ in summary template {template:?}"));
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} in summary template {template:?}; use {}",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// The longest `STATUS=` text we send. systemd takes datagrams up to 4 KiB; a status line
/// is one line of `systemctl status`.
pub const MAX_STATUS_LINE: usize = 256;

/// How many distinct states are listed before the rest are folded into "N other".
const MAX_LISTED_STATES: usize = 6;

/// Renders `template` for `summary`: the text systemd will show.
///
/// State names come from worker statuses, so anything may be in them; the result holds
/// no control characters (a status `busy\nMAINPID=1` cannot become a second
/// assignment), is valid UTF-8 and is at most [`MAX_STATUS_LINE`] bytes.
pub fn status_line(summary: &Summary, template: &str, unit: &str) -> String {
    let mut parts: Vec<String> = summary
        .counts
        .iter()
        .take(MAX_LISTED_STATES)
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    let folded: usize = summary
        .counts
        .iter()
        .skip(MAX_LISTED_STATES)
        .map(|(_, n)| n)
        .sum();
    if folded > 0 {
        parts.push(format!("{folded} other"));
    }
    if summary.stuck > 0 {
        parts.push(format!("{} stuck", summary.stuck));
    }
    let counts = if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    };
    let rendered = template
        .replace("{total}", &summary.total.to_string())
        .replace("{stuck}", &summary.stuck.to_string())
        .replace("{unit}", unit)
        .replace("{counts}", &counts);
    sanitize(&rendered, MAX_STATUS_LINE)
}

/// Control characters become spaces, runs of whitespace one space; the text is cut at a
/// character boundary to fit `max` bytes, ending in "…" when cut.
pub fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    let mut last_space = false;
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
    }
    let out = out.trim().to_owned();
    if out.len() <= max {
        return out;
    }
    let mut cut = max - '…'.len_utf8();
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &out[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use scoreboard::Worker;

    fn service(stuck_after: Option<Duration>) -> Service {
        Service {
            source: "web.toml".into(),
            unit: "web.service".into(),
            directory: "/run/web/scoreboard".into(),
            state: StateRule::FirstWord,
            idle_states: vec!["idle".into()],
            stuck_after,
            summary: crate::config::DEFAULT_SUMMARY.into(),
            notify: crate::config::NotifyMode::None,
            max_workers: scoreboard::DEFAULT_MAX_WORKERS,
            max_status_bytes: crate::config::SERVICE_MAX_STATUS_BYTES,
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
        let summary = pool.summary(t1);
        assert_eq!(
            status_line(&summary, crate::config::DEFAULT_SUMMARY, "web.service"),
            "12 workers: 8 busy, 3 idle, 1 stuck"
        );
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
        assert!(views[0].stuck && !views[1].stuck);
        assert_eq!(views[0].unchanged_for, Duration::from_secs(10));
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
        assert!(!pool.worker("w1", now).unwrap().stuck);
    }

    #[test]
    fn a_restarted_agent_keeps_stuck_timers_for_unchanged_statuses() {
        let service = service(Some(Duration::from_secs(60)));
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut before = Pool::new(&service);
        before.observe(
            &mut snapshot(&[("a", "busy GET /slow"), ("b", "busy GET /x")]),
            t0,
        );
        let saved = before.history(t0 + Duration::from_secs(50), wall);

        // Ten seconds later, a new agent; worker b has moved on meanwhile.
        let t1 = t0 + Duration::from_secs(1000);
        let mut after = Pool::new(&service);
        after.remember(saved, t1, wall + Duration::from_secs(10));
        after.observe(
            &mut snapshot(&[("a", "busy GET /slow"), ("b", "busy GET /y")]),
            t1,
        );
        let views = after.workers(t1);
        assert_eq!(views[0].unchanged_for, Duration::from_secs(60));
        assert!(views[0].stuck);
        assert_eq!(views[1].unchanged_for, Duration::ZERO);
        assert_eq!(after.summary(t1).stuck, 1);
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
        assert_eq!(derive_state(&rule, br#"{"other":1}"#), "unknown");
        assert_eq!(derive_state(&rule, b"not json"), "unknown");
    }

    #[test]
    fn nothing_a_worker_writes_can_inject_an_assignment_or_overflow() {
        let summary = Summary {
            total: 2,
            counts: vec![("busy\nMAINPID=1".into(), 1), ("\u{1b}[2J\r\0x".into(), 1)],
            stuck: 0,
        };
        let line = status_line(&summary, "{total} workers: {counts}", "web.service");
        assert_eq!(line, "2 workers: 1 busy MAINPID=1, 1 [2J x");
        assert!(!line.chars().any(char::is_control));

        let long = Summary {
            total: 1,
            counts: vec![("é".repeat(400), 1)],
            stuck: 0,
        };
        let line = status_line(&long, "{counts}", "u");
        assert!(
            line.len() <= MAX_STATUS_LINE && line.ends_with('…'),
            "{}",
            line.len()
        );
    }

    #[test]
    fn many_states_are_folded() {
        let summary = Summary {
            total: 8,
            counts: (0..8).map(|i| (format!("s{i}"), 1)).collect(),
            stuck: 0,
        };
        assert_eq!(
            status_line(&summary, "{counts}", "u"),
            "1 s0, 1 s1, 1 s2, 1 s3, 1 s4, 1 s5, 2 other"
        );
        let empty = Summary {
            total: 0,
            counts: vec![],
            stuck: 0,
        };
        assert_eq!(
            status_line(&empty, "{unit}: {total} workers: {counts}", "web.service"),
            "web.service: 0 workers: none"
        );
    }

    #[test]
    fn templates_are_checked() {
        assert!(check_template("{total} workers: {counts} ({stuck} stuck) {unit}").is_ok());
        assert!(check_template("{total").unwrap_err().contains("unclosed"));
        assert!(
            check_template("{nope}")
                .unwrap_err()
                .contains("unknown placeholder {nope}")
        );
    }
}
