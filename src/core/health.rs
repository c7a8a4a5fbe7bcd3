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

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::config::{ActionMode, Actions};
use crate::core::pool::{Pool, Sight};

/// What systemd says about the unit, as last learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitLife {
    /// The unit's main process, while it has one.
    pub main_pid: Option<u32>,
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
    /// The pid it went to.
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
    /// Stuck workers whose id is not a pid, said once while they stay stuck.
    said_not_a_pid: HashSet<String>,
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
            said_not_a_pid: HashSet::new(),
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
            .filter(move |_| acting)
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
        let main_pid = life.main_pid?;
        if self.triggered_for == Some(start.usec) {
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
            pid: main_pid,
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
        self.said_not_a_pid
            .retain(|id| pool.is_stuck_worker(id, now));
        self.more = false;
        let mut made = 0;
        for (id, stood, status) in pool.stuck_for(after, now) {
            if made == MAX_WORKER_DECISIONS {
                self.more = true;
                break;
            }
            let Some(pid) = pid_of(id) else {
                if self.said_not_a_pid.insert(id.to_owned()) {
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
mod tests;
