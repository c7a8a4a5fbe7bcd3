//! Health actions, decided without I/O: when a service's pool is wedged (workers the
//! agent saw, every one of them stuck, for `wedged_after` while the unit is active), ask
//! systemd to apply the unit's own watchdog handling; when a worker has been stuck for
//! `kill_stuck_after`, signal it (TERM, then KILL after `kill_grace`).
//!
//! Only on what was seen: a pool whose directory the last pass could not read is
//! unknown, and nothing is decided on it; an empty pool is never wedged (an idle server
//! may publish nothing until its first request). Each action is taken at most once per
//! process (or per start of the unit), across agent restarts: the shell saves what
//! [`Health::sent`] and [`Health::triggered_for`] say and gives them back.
//!
//! The core only decides. Whether a worker id is really a signallable process of the
//! unit — alive, in the unit's control group, holding the worker's file — is the shell's
//! check, made on a pidfd between the check and the signal; the core never names a pid it
//! has not parsed from the id. In report mode (`actions = "report"`) the same decisions
//! are made and only said; nothing they remember is saved, so a report never uses up
//! what acting would later do.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::{ActionMode, Actions};
use crate::core::pool::{Pool, Sight};

/// What systemd says about the unit, as last learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitLife {
    /// The unit's main process (0: none).
    pub main_pid: u32,
    /// When the unit last became active; `None` while it is not active.
    pub start: Option<Start>,
}

/// One start of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// `ActiveEnterTimestampMonotonic` as systemd says it (µs): names the start, the same
    /// for every agent of this boot, so it can be saved.
    pub usec: u64,
    /// The same moment as an `Instant`.
    pub at: Instant,
}

/// Which signal a stuck worker gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    /// The first, polite one (the configured `kill_signal`).
    First,
    /// `SIGKILL`, after `kill_grace`.
    Kill,
}

/// What a health action did, or in report mode would have done: a closed set whose
/// `Display` is the journal's `SCOREBOARD_ACTION` (and, in report mode,
/// `SCOREBOARD_WOULD`), the `action` label of `scoreboard_actions_total`, and the bus's
/// `ActionTaken` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `WATCHDOG=trigger` sent on behalf of the unit's main process.
    Watchdog,
    /// The configured first signal (`kill_signal`) sent to a stuck worker.
    Signal,
    /// `SIGKILL` sent to a worker still there after `kill_grace`.
    Kill,
    /// An action was due and the checks before it refused it: nothing was sent.
    Refused,
    /// A stuck worker whose id is not a pid: said, never acted on.
    NotAPid,
    /// Report mode: the action in `SCOREBOARD_WOULD` was due, and only said.
    Reported,
}

impl Action {
    /// Every action, for counters set up at 0.
    pub const ALL: [Action; 6] = [
        Action::Watchdog,
        Action::Signal,
        Action::Kill,
        Action::Refused,
        Action::NotAPid,
        Action::Reported,
    ];

    /// The wire and journal text.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Watchdog => "watchdog",
            Action::Signal => "signal",
            Action::Kill => "kill",
            Action::Refused => "refused",
            Action::NotAPid => "not_a_pid",
            Action::Reported => "reported",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing to do (or, in report-only mode, to say).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// `WATCHDOG=trigger` on behalf of the main process `pid`.
    TriggerWatchdog {
        /// The main process spoken for.
        pid: u32,
        /// How many workers, every one stuck.
        stuck: usize,
        /// How long the pool has been wedged.
        wedged_for: Duration,
    },
    /// Signal the worker whose id is the pid `pid`.
    Signal {
        /// The worker id.
        worker: String,
        /// The pid parsed from it.
        pid: i32,
        /// Which signal.
        escalation: Escalation,
        /// How long its status has stood.
        stood: Duration,
        /// Its last status (lossy UTF-8).
        status: String,
    },
    /// A worker stuck past `kill_stuck_after` whose id is not a pid: said, never acted on.
    NotAPid {
        /// The worker id.
        worker: String,
        /// How long its status has stood.
        stood: Duration,
    },
}

impl Decision {
    /// What acting on it does.
    pub fn action(&self) -> Action {
        match self {
            Decision::TriggerWatchdog { .. } => Action::Watchdog,
            Decision::Signal {
                escalation: Escalation::First,
                ..
            } => Action::Signal,
            Decision::Signal {
                escalation: Escalation::Kill,
                ..
            } => Action::Kill,
            Decision::NotAPid { .. } => Action::NotAPid,
        }
    }
}

/// A signal sent to a worker and not yet answered by its going away: remembered so
/// that it is sent once, and SIGKILL follows `kill_grace` after it — across agent
/// restarts too (the shell saves it with the process's start time, and gives it back
/// only for the same process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The pid it went to (0: a worker id that is not a pid, said once).
    pub pid: i32,
    /// When the first signal went.
    pub at: Instant,
    /// Whether nothing more follows: SIGKILL sent, or the first signal refused.
    pub killed: bool,
}

/// Worker decisions (signals and not-a-pid reports) made at most per call of
/// [`Health::decide`]: a directory's owner who makes thousands of workers stuck at once
/// gets them decided over several turns of the loop, each with its checks, rather than
/// holding up the watchdog and every other service in one.
pub const MAX_WORKER_DECISIONS: usize = 16;

/// How soon the loop comes back for the rest when a turn hit [`MAX_WORKER_DECISIONS`].
const MORE_DECISIONS_AFTER: Duration = Duration::from_millis(100);

/// One service's health bookkeeping.
#[derive(Debug)]
pub struct Health {
    rules: Actions,
    /// The start of the unit for which the watchdog was triggered: at most once per
    /// start, remembered across agent restarts.
    triggered_for: Option<u64>,
    signalled: HashMap<String, Sent>,
    /// The last call stopped at [`MAX_WORKER_DECISIONS`]: more are due.
    more: bool,
}

impl Health {
    /// Bookkeeping for a service with `rules` (its configured [`Actions`]).
    pub fn new(rules: Actions) -> Health {
        Health {
            rules,
            triggered_for: None,
            signalled: HashMap::new(),
            more: false,
        }
    }

    /// Whether the decisions are only to be said (`actions = "report"`).
    pub fn report_only(&self) -> bool {
        self.rules.mode == ActionMode::Report
    }

    /// The rules in force.
    pub fn rules(&self) -> &Actions {
        &self.rules
    }

    /// A start of the unit (its [`Start::usec`]) for which the watchdog was already
    /// triggered, remembered across an agent restart.
    pub fn remember_triggered(&mut self, start_usec: u64) {
        self.triggered_for = Some(start_usec);
    }

    /// The start for which the watchdog was last triggered, to save (never in report
    /// mode: a report does not use up the trigger).
    pub fn triggered_for(&self) -> Option<u64> {
        self.triggered_for.filter(|_| !self.report_only())
    }

    /// The signals sent and not yet answered, to save (none in report mode, and none to
    /// ids that are not pids).
    pub fn sent(&self) -> impl Iterator<Item = (&str, &Sent)> {
        let acting = !self.report_only();
        self.signalled
            .iter()
            .filter(move |(_, sent)| acting && sent.pid > 0)
            .map(|(id, sent)| (id.as_str(), sent))
    }

    /// A signal an earlier agent sent to `worker` (the shell has checked that the
    /// process is the same one): not sent again, and SIGKILL follows the grace from it.
    pub fn remember_sent(&mut self, worker: String, sent: Sent) {
        self.signalled.insert(worker, sent);
    }

    /// The next moment a decision could change if nothing else happens: a wedge's or a
    /// stuck worker's threshold, or a signalled worker's grace running out. The loop
    /// wakes then, so actions are on time rather than at the next tick.
    pub fn next_wake(&self, pool: &Pool, now: Instant) -> Option<Instant> {
        if self.more {
            return Some(now + MORE_DECISIONS_AFTER);
        }
        let mut wake: Option<Instant> = None;
        let mut at = |t: Option<Instant>| {
            if let Some(t) = t.filter(|t| *t > now) {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        };
        if let Some(after) = self.rules.wedged_after {
            at(pool
                .all_stuck_since(now)
                .and_then(|since| since.checked_add(after)));
        }
        if let Some(after) = self.rules.kill_stuck_after {
            at(pool.next_to_stand(after, now));
            for sent in self.signalled.values().filter(|sent| !sent.killed) {
                at(sent.at.checked_add(self.rules.kill_grace));
            }
        }
        wake
    }

    /// The first signal to `worker` was refused by the shell's checks: nothing was sent,
    /// so no SIGKILL follows it (it is not decided again while it stays stuck).
    pub fn refused(&mut self, worker: &str) {
        if let Some(sent) = self.signalled.get_mut(worker) {
            sent.killed = true;
        }
    }

    /// What to do now about the pool: nothing unless the last pass read the directory
    /// whole ([`Sight::Seen`]).
    pub fn decide(&mut self, pool: &Pool, life: Option<UnitLife>, now: Instant) -> Vec<Decision> {
        let mut decisions = Vec::new();
        if *pool.sight() != Sight::Seen {
            return decisions;
        }
        if let Some(decision) = self.wedge(pool, life, now) {
            decisions.push(decision);
        }
        self.stuck_workers(pool, now, &mut decisions);
        decisions
    }

    fn wedge(&mut self, pool: &Pool, life: Option<UnitLife>, now: Instant) -> Option<Decision> {
        let after = self.rules.wedged_after?;
        let life = life?;
        let start = life.start?;
        if life.main_pid == 0 || self.triggered_for == Some(start.usec) {
            return None;
        }
        // Workers seen, every one stuck: an empty pool never is.
        let since = pool.all_stuck_since(now)?;
        // Judged only within this start of the unit, and only once per start.
        let since = since.max(start.at);
        let wedged_for = now.saturating_duration_since(since);
        if wedged_for < after {
            return None;
        }
        self.triggered_for = Some(start.usec);
        Some(Decision::TriggerWatchdog {
            pid: life.main_pid,
            stuck: pool.len(),
            wedged_for,
        })
    }

    fn stuck_workers(&mut self, pool: &Pool, now: Instant, decisions: &mut Vec<Decision>) {
        let Some(after) = self.rules.kill_stuck_after else {
            return;
        };
        // Workers signalled before and gone (or moved on) are forgotten.
        self.signalled.retain(|id, _| pool.is_stuck_worker(id, now));
        self.more = false;
        let mut made = 0;
        for (id, stood, status) in pool.stuck_for(after, now) {
            if made == MAX_WORKER_DECISIONS {
                self.more = true;
                break;
            }
            let Some(pid) = pid_of(id) else {
                if !self.signalled.contains_key(id) {
                    // Said once: remembered as if signalled, with no pid.
                    self.signalled.insert(
                        id.to_owned(),
                        Sent {
                            pid: 0,
                            at: now,
                            killed: true,
                        },
                    );
                    decisions.push(Decision::NotAPid {
                        worker: id.to_owned(),
                        stood,
                    });
                    made += 1;
                }
                continue;
            };
            let escalation = match self.signalled.get_mut(id) {
                None => {
                    self.signalled.insert(
                        id.to_owned(),
                        Sent {
                            pid,
                            at: now,
                            killed: false,
                        },
                    );
                    Escalation::First
                }
                Some(sent)
                    if !sent.killed
                        && sent.pid == pid
                        && now.saturating_duration_since(sent.at) >= self.rules.kill_grace =>
                {
                    sent.killed = true;
                    Escalation::Kill
                }
                Some(_) => continue,
            };
            decisions.push(Decision::Signal {
                worker: id.to_owned(),
                pid,
                escalation,
                stood,
                status: String::from_utf8_lossy(status).into_owned(),
            });
            made += 1;
        }
    }
}

/// The pid a worker id names, if it is one (Parallel::Scoreboard's default id is the
/// worker's pid): a decimal number from 2 up, without sign or leading zeros, within
/// `pid_t`. Nothing else is ever signalled.
pub fn pid_of(id: &str) -> Option<i32> {
    if id.is_empty() || id.starts_with('0') || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse::<i32>().ok().filter(|pid| *pid > 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_SUMMARY, NotifyMode, Service, StateRule};
    use scoreboard::{Snapshot, Worker};

    const SECOND: Duration = Duration::from_secs(1);

    fn pool(stuck_after: u64) -> Pool {
        Pool::new(&Service {
            source: "web.toml".into(),
            unit: "web.service".into(),
            directory: "/run/web/scoreboard".into(),
            state: StateRule::FirstWord,
            idle_states: vec!["idle".into()],
            stuck_after: Some(Duration::from_secs(stuck_after)),
            summary: DEFAULT_SUMMARY.into(),
            notify: NotifyMode::MainPid,
            max_workers: scoreboard::DEFAULT_MAX_WORKERS,
            max_status_bytes: 1 << 20,
            health_actions: Default::default(),
        })
    }

    fn observe(pool: &mut Pool, workers: &[(&str, &str)], now: Instant) {
        let mut snapshot = Snapshot {
            workers: workers
                .iter()
                .map(|(id, status)| Worker {
                    id: id.to_string(),
                    status: status.as_bytes().to_vec(),
                    read_at: now,
                    inode: 0,
                })
                .collect(),
            ..Snapshot::default()
        };
        pool.observe(&mut snapshot, now);
    }

    fn rules() -> Actions {
        Actions {
            wedged_after: Some(3 * SECOND),
            kill_stuck_after: None,
            kill_grace: 10 * SECOND,
            ..Actions::default()
        }
    }

    /// The unit active since `t0` (named by its offset from a fixed base, in µs).
    fn life(t0: Instant) -> Option<UnitLife> {
        let base = *BASE.get_or_init(Instant::now);
        Some(UnitLife {
            main_pid: 100,
            start: Some(Start {
                usec: t0.saturating_duration_since(base).as_micros() as u64 + 1,
                at: t0,
            }),
        })
    }

    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

    #[test]
    fn a_pool_all_stuck_for_wedged_after_triggers_the_watchdog_once_per_start() {
        BASE.get_or_init(Instant::now);
        let t0 = Instant::now();
        let mut pool = pool(5);
        let workers = [("101", "busy a"), ("102", "busy b"), ("103", "busy c")];
        observe(&mut pool, &workers, t0);
        let mut health = Health::new(rules());
        // All stuck from t0 + 5 s; wedged 3 s later.
        assert!(health.decide(&pool, life(t0), t0 + 7 * SECOND).is_empty());
        let decisions = health.decide(&pool, life(t0), t0 + 8 * SECOND);
        assert_eq!(
            decisions,
            [Decision::TriggerWatchdog {
                pid: 100,
                stuck: 3,
                wedged_for: 3 * SECOND
            }]
        );
        assert!(health.decide(&pool, life(t0), t0 + 60 * SECOND).is_empty());
        // The unit restarted (a new start): judged afresh, from that start.
        let t1 = t0 + 61 * SECOND;
        assert!(health.decide(&pool, life(t1), t1 + 2 * SECOND).is_empty());
        assert_eq!(health.decide(&pool, life(t1), t1 + 3 * SECOND).len(), 1);
    }

    #[test]
    fn one_live_worker_or_an_idle_pool_is_never_wedged() {
        let t0 = Instant::now();
        let mut pool = pool(5);
        observe(&mut pool, &[("101", "busy a"), ("102", "idle")], t0);
        let mut health = Health::new(rules());
        assert!(health.decide(&pool, life(t0), t0 + 600 * SECOND).is_empty());
        let mut idle = self::pool(5);
        observe(&mut idle, &[("101", "idle"), ("102", "idle")], t0);
        assert!(health.decide(&idle, life(t0), t0 + 600 * SECOND).is_empty());
    }

    /// An idle server may publish nothing until its first request: an empty pool is
    /// never wedged, however long it stays empty.
    #[test]
    fn an_empty_pool_is_never_wedged() {
        let t0 = Instant::now();
        let mut pool = pool(5);
        observe(&mut pool, &[], t0);
        let mut health = Health::new(rules());
        for seconds in [0, 3, 10, 600] {
            assert!(
                health
                    .decide(&pool, life(t0), t0 + seconds * SECOND)
                    .is_empty()
            );
        }
        assert_eq!(health.next_wake(&pool, t0), None);
    }

    /// A pool the agent could not read is unknown, not empty and not stuck: nothing is
    /// decided on it, whatever was seen before.
    #[test]
    fn nothing_is_decided_on_a_pool_not_seen() {
        use crate::core::pool::{Cause, Unseen};
        let t0 = Instant::now();
        let mut pool = pool(1);
        let mut health = Health::new(Actions {
            wedged_after: Some(SECOND),
            kill_stuck_after: Some(SECOND),
            ..Actions::default()
        });
        // Never looked at.
        assert!(health.decide(&pool, life(t0), t0 + 60 * SECOND).is_empty());
        observe(&mut pool, &[("101", "busy a"), ("102", "busy b")], t0);
        pool.unseen(Unseen {
            cause: Cause::PermissionDenied,
            detail: "open directory /run/w/scoreboard: Permission denied".into(),
        });
        assert!(health.decide(&pool, life(t0), t0 + 60 * SECOND).is_empty());
        assert!(pool.status_line(t0).contains("permission denied"));
    }

    /// Report mode decides as acting would, but saves nothing: switching to acting
    /// finds the trigger and the signals still to do.
    #[test]
    fn a_report_uses_up_nothing_acting_would_do() {
        let t0 = Instant::now();
        let mut pool = pool(1);
        observe(&mut pool, &[("101", "busy")], t0);
        let mut report = Health::new(Actions {
            mode: ActionMode::Report,
            wedged_after: Some(SECOND),
            kill_stuck_after: Some(SECOND),
            kill_grace: SECOND,
            ..Actions::default()
        });
        let decided: Vec<Action> = report
            .decide(&pool, life(t0), t0 + 3 * SECOND)
            .iter()
            .map(Decision::action)
            .collect();
        assert_eq!(decided, [Action::Watchdog, Action::Signal]);
        let kill: Vec<Action> = report
            .decide(&pool, life(t0), t0 + 5 * SECOND)
            .iter()
            .map(Decision::action)
            .collect();
        assert_eq!(kill, [Action::Kill], "a would-be SIGKILL is a kill");
        assert_eq!(report.triggered_for(), None);
        assert_eq!(report.sent().count(), 0);
    }

    /// A signal an earlier agent sent is not sent again; SIGKILL follows the grace from
    /// that first signal.
    #[test]
    fn a_signal_sent_before_an_agent_restart_is_not_sent_again() {
        let t0 = Instant::now();
        let mut pool = pool(1);
        observe(&mut pool, &[("101", "busy")], t0);
        let rules = Actions {
            kill_stuck_after: Some(2 * SECOND),
            kill_grace: 15 * SECOND,
            ..Actions::default()
        };
        let mut before = Health::new(rules.clone());
        let first = before.decide(&pool, life(t0), t0 + 2 * SECOND);
        assert_eq!(first[0].action(), Action::Signal);
        let saved: Vec<(String, Sent)> = before
            .sent()
            .map(|(id, sent)| (id.to_owned(), *sent))
            .collect();
        assert_eq!(saved.len(), 1);
        let mut after = Health::new(rules);
        for (id, sent) in saved {
            after.remember_sent(id, sent);
        }
        assert!(after.decide(&pool, life(t0), t0 + 5 * SECOND).is_empty());
        assert!(after.decide(&pool, life(t0), t0 + 16 * SECOND).is_empty());
        let kill = after.decide(&pool, life(t0), t0 + 17 * SECOND);
        assert_eq!(kill.len(), 1);
        assert_eq!(kill[0].action(), Action::Kill);
    }

    #[test]
    fn nothing_is_triggered_for_an_inactive_unit_or_without_a_main_process() {
        let t0 = Instant::now();
        let mut pool = pool(5);
        // Every worker stuck, long enough: only the unit's state stands in the way.
        observe(&mut pool, &[("101", "busy")], t0);
        let mut health = Health::new(rules());
        let later = t0 + 600 * SECOND;
        health.decide(&pool, None, t0);
        assert!(health.decide(&pool, None, later).is_empty());
        let inactive = Some(UnitLife {
            main_pid: 100,
            start: None,
        });
        assert!(health.decide(&pool, inactive, later).is_empty());
        let no_main = Some(UnitLife {
            main_pid: 0,
            ..life(t0).unwrap()
        });
        assert!(health.decide(&pool, no_main, later).is_empty());
    }

    #[test]
    fn a_restarted_agent_does_not_trigger_twice_for_the_same_start() {
        let t0 = Instant::now();
        let mut pool = pool(1);
        observe(&mut pool, &[("101", "busy")], t0);
        let mut before = Health::new(rules());
        assert_eq!(before.decide(&pool, life(t0), t0 + 4 * SECOND).len(), 1);
        let mut after = Health::new(rules());
        after.remember_triggered(before.triggered_for().unwrap());
        assert!(after.decide(&pool, life(t0), t0 + 5 * SECOND).is_empty());
    }

    #[test]
    fn stuck_workers_get_the_signal_then_sigkill_after_the_grace() {
        let t0 = Instant::now();
        let mut pool = pool(1);
        observe(
            &mut pool,
            &[("101", "busy slow"), ("102", "idle"), ("103", "busy")],
            t0,
        );
        // 103 finishes at t0 + 1.5 s; 101 does not.
        observe(
            &mut pool,
            &[("101", "busy slow"), ("102", "idle"), ("103", "idle")],
            t0 + 1500 * Duration::from_millis(1),
        );
        let mut health = Health::new(Actions {
            wedged_after: None,
            kill_stuck_after: Some(2 * SECOND),
            kill_grace: 10 * SECOND,
            ..Actions::default()
        });
        assert!(health.decide(&pool, life(t0), t0 + SECOND).is_empty());
        let first = health.decide(&pool, life(t0), t0 + 2 * SECOND);
        assert_eq!(
            first,
            [Decision::Signal {
                worker: "101".into(),
                pid: 101,
                escalation: Escalation::First,
                stood: 2 * SECOND,
                status: "busy slow".into()
            }]
        );
        assert!(health.decide(&pool, life(t0), t0 + 5 * SECOND).is_empty());
        let kill = health.decide(&pool, life(t0), t0 + 12 * SECOND);
        assert!(matches!(
            kill.as_slice(),
            [Decision::Signal {
                escalation: Escalation::Kill,
                pid: 101,
                ..
            }]
        ));
        assert!(health.decide(&pool, life(t0), t0 + 60 * SECOND).is_empty());
    }

    #[test]
    fn a_stuck_worker_whose_id_is_not_a_pid_is_reported_once_never_signalled() {
        let t0 = Instant::now();
        let mut pool = pool(1);
        observe(
            &mut pool,
            &[("web-1", "busy"), ("0042", "busy"), ("1", "busy")],
            t0,
        );
        let mut health = Health::new(Actions {
            wedged_after: None,
            kill_stuck_after: Some(SECOND),
            kill_grace: SECOND,
            ..Actions::default()
        });
        let decisions = health.decide(&pool, life(t0), t0 + 2 * SECOND);
        assert_eq!(decisions.len(), 3);
        assert!(
            decisions
                .iter()
                .all(|d| matches!(d, Decision::NotAPid { .. }))
        );
        assert!(health.decide(&pool, life(t0), t0 + 9 * SECOND).is_empty());
    }

    #[test]
    fn the_loop_is_woken_when_a_threshold_is_reached_not_at_the_next_tick() {
        let t0 = Instant::now();
        let mut pool = pool(1);
        observe(&mut pool, &[("101", "busy a"), ("102", "busy b")], t0);
        let mut health = Health::new(Actions {
            wedged_after: Some(3 * SECOND),
            kill_stuck_after: Some(2 * SECOND),
            kill_grace: 5 * SECOND,
            ..Actions::default()
        });
        // Before anyone is stuck: the first kill threshold (the wedge needs all stuck,
        // which the pool's own next_stuck_at wakes for).
        assert_eq!(health.next_wake(&pool, t0), Some(t0 + 2 * SECOND));
        // All stuck since t0 + 1 s: the wedge at t0 + 4 s; the kill thresholds passed.
        let t = t0 + 2 * SECOND;
        assert_eq!(health.decide(&pool, life(t0), t).len(), 2);
        assert_eq!(health.next_wake(&pool, t), Some(t0 + 4 * SECOND));
        let t = t0 + 4 * SECOND;
        assert_eq!(health.decide(&pool, life(t0), t).len(), 1);
        // Then the grace of the signalled ones.
        assert_eq!(health.next_wake(&pool, t), Some(t0 + 7 * SECOND));
    }

    /// A directory's owner making thousands of workers stuck at once gets them decided a
    /// few per turn, the loop coming back soon for the rest; each once.
    #[test]
    fn many_stuck_workers_are_decided_a_few_per_turn_each_once() {
        let t0 = Instant::now();
        let mut pool = pool(1);
        let ids: Vec<String> = (0..1000).map(|n| format!("w{n}")).collect();
        let workers: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), "busy")).collect();
        observe(&mut pool, &workers, t0);
        let mut health = Health::new(Actions {
            kill_stuck_after: Some(SECOND),
            ..Actions::default()
        });
        let mut now = t0 + 3 * SECOND;
        let mut decided = 0;
        for _ in 0..200 {
            let decisions = health.decide(&pool, life(t0), now);
            assert!(decisions.len() <= MAX_WORKER_DECISIONS);
            decided += decisions.len();
            if decisions.is_empty() {
                break;
            }
            // While there are more, the loop is asked back soon (the last batch may
            // be full too, with nothing after it).
            if decided < 1000 {
                assert_eq!(
                    health.next_wake(&pool, now),
                    Some(now + MORE_DECISIONS_AFTER)
                );
            }
            now += MORE_DECISIONS_AFTER;
        }
        assert_eq!(decided, 1000);
    }

    #[test]
    fn only_plain_decimal_pids_from_two_up_are_pids() {
        assert_eq!(pid_of("4242"), Some(4242));
        for id in [
            "",
            "0",
            "1",
            "-5",
            "+5",
            "007",
            "12a",
            "99999999999",
            " 12",
            "١٢",
        ] {
            assert_eq!(pid_of(id), None, "{id:?}");
        }
    }
}
