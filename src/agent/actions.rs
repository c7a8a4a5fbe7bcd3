//! Health actions, carried out: the core ([`crate::core::health`]) decides; here each
//! decision is checked against the system (the unit's main process, start and control
//! group as systemd last said them; the worker's process and file), done — or, with
//! `actions = "report"`, only said — and then said everywhere once: the journal (fields
//! `SCOREBOARD_UNIT`, `SCOREBOARD_WORKER`, `SCOREBOARD_ACTION`, `SCOREBOARD_STATUS`,
//! `SCOREBOARD_STOOD`; in report mode `SCOREBOARD_ACTION=reported` and what acting would
//! do in `SCOREBOARD_WOULD`), the bus (`ActionTaken`, `LastAction`), and
//! `scoreboard_actions_total{unit,action}`.

use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use super::Agent;
use crate::core::health::{Action, Decision, Escalation, Start, UnitLife};
use crate::escape::Escaped;
use crate::io::notify::Message;
use crate::io::signal::{Refused, Target, signal_worker};
use crate::io::systemd::{MainProcess, NotifyAccess};

impl Agent {
    /// Decides and carries out the health actions of every service that has any.
    pub(super) fn act(&mut self, now: Instant) {
        for index in 0..self.services.len() {
            if !self.services[index].service.health_actions.enabled() {
                continue;
            }
            let main = self
                .bus
                .as_ref()
                .and_then(|bus| bus.main_process(self.services[index].unit()));
            let life = main.as_ref().map(|main| UnitLife {
                main_pid: main.pid,
                start: start(main.active_since_usec, now),
            });
            let watched = &mut self.services[index];
            let decisions = {
                let pool = crate::lock::lock(&watched.pool);
                watched.health.decide(&pool, life, now)
            };
            for decision in decisions {
                self.carry_out(index, decision, main.as_ref());
            }
        }
    }

    /// Carries out one decision, or only says it in report mode.
    fn carry_out(&mut self, index: usize, decision: Decision, main: Option<&MainProcess>) {
        if self.services[index].health.report_only() {
            return self.report(index, &decision);
        }
        match decision {
            Decision::TriggerWatchdog {
                pid,
                stuck,
                wedged_for,
            } => {
                let why = format!("all {stuck} workers stuck for {}", secs(wedged_for));
                self.trigger_watchdog(index, pid, &why, main);
            }
            Decision::Signal {
                worker,
                pid,
                escalation,
                stood,
                status,
            } => {
                let stuck = Stuck {
                    worker: &worker,
                    pid,
                    stood,
                    status: &status,
                };
                self.signal_stuck(index, &stuck, escalation, main);
            }
            Decision::NotAPid { worker, stood } => self.not_a_pid(index, &worker, stood, None),
        }
    }

    /// A wedged pool: its unit's watchdog triggered on behalf of its main process, once
    /// per start of the unit.
    fn trigger_watchdog(&mut self, index: usize, pid: u32, why: &str, main: Option<&MainProcess>) {
        let unit = self.services[index].unit().to_owned();
        // The pid systemd gave is checked again right before it is spoken for: a
        // remembered main process whose pid was reused by another unit's process
        // must never be credited with a trigger.
        let checked = match main {
            Some(main) if main.notify_access == NotifyAccess::None => Err(std::io::Error::other(
                "the unit has NotifyAccess=none: systemd would ignore it",
            )),
            Some(main) if main.pid == Some(pid) && main.in_unit_now() => Ok(()),
            _ => Err(std::io::Error::other(format!(
                "main process {pid} is no longer in the unit's control group"
            ))),
        };
        let sent = checked.and_then(|()| {
            self.systemd_socket()
                .and_then(|socket| socket.send_as(&Message::WatchdogTrigger, pid))
        });
        match sent {
            Ok(()) => {
                warn!(unit = %unit, action = %Action::Watchdog, "{unit} is wedged ({why}): triggered its watchdog on behalf of main process {pid}; systemd applies the unit's watchdog handling");
                self.record(
                    index,
                    Action::Watchdog,
                    "",
                    &format!("triggered the watchdog: {why}"),
                );
                // Never twice for this start, whatever happens to the agent next.
                self.save_state();
            }
            Err(e) => {
                warn!(unit = %unit, action = %Action::Refused, "{unit} is wedged ({why}), but triggering its watchdog failed: {e}");
                self.record(
                    index,
                    Action::Refused,
                    "",
                    &format!("could not trigger the watchdog ({why}): {e}"),
                );
            }
        }
    }

    /// A stuck worker: the escalation's signal sent to its process once the checks
    /// pass (its file, its process in the unit, the directory's owner), or refused.
    fn signal_stuck(
        &mut self,
        index: usize,
        stuck: &Stuck<'_>,
        escalation: Escalation,
        main: Option<&MainProcess>,
    ) {
        let Stuck {
            worker,
            pid,
            stood,
            status,
        } = *stuck;
        let unit = self.services[index].unit().to_owned();
        let control_group = main.map_or("", |main| main.control_group.as_str());
        let signal = self.signal_for(index, escalation);
        let action = match escalation {
            Escalation::First => Action::Signal,
            Escalation::Kill => Action::Kill,
        };
        let shown = Escaped::str(worker);
        let status_shown = crate::escape::escape_controls(status).into_owned();
        let stood_shown = secs(stood);
        let owner = self.services[index]
            .pool()
            .access()
            .map(|access| access.uid);
        let checked = self.services[index]
            .worker_file(worker)
            .map_err(|e| Refused::Unchecked(format!("its file: {e}")))
            .and_then(|file| {
                let owner = owner.ok_or_else(|| {
                    Refused::Unchecked("the directory's owner is not known".to_owned())
                })?;
                let target = Target {
                    pid,
                    control_group,
                    file,
                    owner,
                };
                signal_worker(&target, signal.signal())
            });
        match checked {
            Ok(()) => {
                warn!(unit = %unit, worker = %shown, action = %action, status = %status_shown, stood = %stood_shown, "{unit}: worker {shown} stuck for {stood_shown} (status {status_shown:?}): sent SIG{signal} to pid {pid}");
                self.record(
                    index,
                    action,
                    worker,
                    &format!("sent SIG{signal} to pid {pid}: stuck for {stood_shown}"),
                );
                // Once per process, whatever happens to the agent next.
                self.save_state();
            }
            Err(refused) => {
                // Nothing was sent: no SIGKILL follows.
                self.services[index].health.refused(worker);
                // As many as the directory's owner makes up: said once per quiet
                // period per unit and kind (every one is counted, and the last is
                // on the bus).
                if self
                    .warnings
                    .allow_hashed(("refused", &unit, refused.kind()), Instant::now())
                {
                    warn!(unit = %unit, worker = %shown, action = %Action::Refused, status = %status_shown, stood = %stood_shown, "{unit}: worker {shown} stuck for {stood_shown}: not signalled: {refused}");
                }
                self.record(
                    index,
                    Action::Refused,
                    worker,
                    &format!("not signalled: {refused}"),
                );
            }
        }
    }

    /// Report mode: the decision said as acting would say it (the journal's
    /// `SCOREBOARD_ACTION=reported`, what acting would do in `SCOREBOARD_WOULD`),
    /// nothing done and nothing saved.
    fn report(&mut self, index: usize, decision: &Decision) {
        let unit = self.services[index].unit().to_owned();
        let would = decision.action();
        match decision {
            Decision::TriggerWatchdog {
                stuck, wedged_for, ..
            } => {
                let why = format!("all {stuck} workers stuck for {}", secs(*wedged_for));
                info!(unit = %unit, action = %Action::Reported, would = %would, "{unit} is wedged ({why}); would trigger its watchdog (actions = \"report\")");
                self.record(
                    index,
                    Action::Reported,
                    "",
                    &format!("would trigger the watchdog: {why}"),
                );
            }
            Decision::Signal {
                worker,
                pid,
                escalation,
                stood,
                status,
            } => {
                let signal = self.signal_for(index, *escalation);
                let shown = Escaped::str(worker);
                let status_shown = crate::escape::escape_controls(status).into_owned();
                let stood_shown = secs(*stood);
                info!(unit = %unit, worker = %shown, action = %Action::Reported, would = %would, status = %status_shown, stood = %stood_shown, "{unit}: worker {shown} stuck for {stood_shown} (status {status_shown:?}); would send SIG{signal} to pid {pid} (actions = \"report\")");
                self.record(
                    index,
                    Action::Reported,
                    worker,
                    &format!("would send SIG{signal} to pid {pid}: stuck for {stood_shown}"),
                );
            }
            Decision::NotAPid { worker, stood } => {
                self.not_a_pid(index, worker, *stood, Some(would))
            }
        }
    }

    /// A stuck worker whose id is not a pid: said (once per quiet period per unit),
    /// never acted on.
    fn not_a_pid(&mut self, index: usize, worker: &str, stood: Duration, would: Option<Action>) {
        let unit = self.services[index].unit().to_owned();
        let shown = Escaped::str(worker);
        let stood_shown = secs(stood);
        let action = if would.is_some() {
            Action::Reported
        } else {
            Action::NotAPid
        };
        if self
            .warnings
            .allow_hashed(("not_a_pid", &unit), Instant::now())
        {
            let would = would.map(|would| would.to_string());
            warn!(unit = %unit, worker = %shown, action = %action, would = would, stood = %stood_shown, "{unit}: worker {shown} stuck for {stood_shown}: its id is not a pid, so it is never signalled");
        }
        self.record(
            index,
            action,
            worker,
            &format!("stuck for {stood_shown}; its id is not a pid"),
        );
    }

    /// The signal an escalation sends for the service at `index`.
    fn signal_for(&self, index: usize, escalation: Escalation) -> crate::config::KillSignal {
        match escalation {
            Escalation::First => self.services[index].service.health_actions.kill_signal,
            Escalation::Kill => crate::config::KillSignal::Kill,
        }
    }

    /// The action said on the bus, counted, and kept as the service's last action.
    fn record(&mut self, index: usize, action: Action, worker: &str, detail: &str) {
        let unit = self.services[index].unit().to_owned();
        self.metrics.action(&unit, action);
        if let Some(bus) = &self.bus {
            bus.action_taken(&unit, action, worker, detail);
        }
        let when = humantime::format_rfc3339_seconds(SystemTime::now());
        let line = if worker.is_empty() {
            format!("{when} {action}: {detail}")
        } else {
            format!("{when} {action} {worker}: {detail}")
        };
        self.services[index].pool().set_last_action(line);
    }
}

/// A stuck worker a signal decision is about.
#[derive(Clone, Copy)]
struct Stuck<'a> {
    worker: &'a str,
    pid: i32,
    stood: Duration,
    status: &'a str,
}

/// A unit's start as systemd gives it (µs of CLOCK_MONOTONIC; none when not active), on
/// the clock of `now`.
fn start(usec: Option<u64>, now: Instant) -> Option<Start> {
    let usec = usec?;
    let now_usec = crate::io::boot::monotonic_usec();
    let at = now.checked_sub(Duration::from_micros(now_usec.saturating_sub(usec)))?;
    Some(Start { usec, at })
}

/// "12.5s".
fn secs(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}
