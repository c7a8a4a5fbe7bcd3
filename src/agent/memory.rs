//! What a restarted agent picks up: progress times, the watchdog trigger and the
//! signals sent, saved per service on the boot clock (see `io::state`).

use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::Agent;
use crate::core::health::{self, Sent};
use crate::core::pool::Remembered;
use crate::io::{boot, state};

impl Agent {
    /// Picks up what an earlier agent saved for the service at `index`, from the
    /// configuration in force: only what was saved on this boot, each time bounded by
    /// what the agent can vouch for.
    pub(super) fn recall(&mut self, index: usize) {
        let unit = self.services[index].service.unit.clone();
        let memory = match state::load(&self.config.state_directory, &unit) {
            Ok(Some(memory)) => memory,
            Ok(None) => return,
            Err(e) => {
                warn!(unit = %unit, "ignoring the saved state in {}: {e}", self.config.state_directory.display());
                return;
            }
        };
        if !boot::Boot::now().is(&memory.boot) {
            info!(unit = %unit, "the saved state is of another boot; starting without it");
            return;
        }
        debug!(unit = %unit, workers = memory.workers.len(), "remembering progress times");
        let since_boot = boot::since_boot();
        let now = Instant::now();
        let history = memory
            .workers
            .into_iter()
            .map(|(id, worker)| {
                // Nothing about a process is older than the process: a saved time that
                // says otherwise (a file not ours, a bug) is cut to its start.
                let started = health::pid_of(&id).and_then(boot::process_started);
                let since = started.map_or(worker.progress_at, |s| s.max(worker.progress_at));
                let remembered = Remembered {
                    fingerprint: worker.fingerprint,
                    written: worker.written,
                    age: since_boot.saturating_sub(since),
                };
                (id, remembered)
            })
            .collect();
        let watched = &mut self.services[index];
        watched.pool().remember(history);
        if let Some(start) = memory.watchdog_triggered_for {
            watched.health.remember_triggered(start);
        }
        for (id, sent) in memory.signalled {
            // The same process (pid and start), or it was answered already.
            if boot::process_started(sent.pid) != Some(sent.process_started) {
                continue;
            }
            let Some(at) = now.checked_sub(since_boot.saturating_sub(sent.sent_at)) else {
                continue;
            };
            let remembered = Sent {
                pid: sent.pid,
                at,
                killed: sent.killed,
            };
            watched.health.remember_sent(id, remembered);
        }
    }

    /// Saves, per service, what a restarted agent needs: progress times, the watchdog
    /// trigger, the signals sent.
    pub(super) fn save_state(&mut self) {
        let boot = boot::Boot::now();
        let now = Instant::now();
        let since_boot = boot::since_boot();
        let at = |age: Duration| since_boot.saturating_sub(age);
        for watched in &self.services {
            let workers = watched
                .pool()
                .history(now)
                .into_iter()
                .map(|(id, remembered)| {
                    let worker = state::WorkerMemory {
                        fingerprint: remembered.fingerprint,
                        written: remembered.written,
                        progress_at: at(remembered.age),
                    };
                    (id, worker)
                })
                .collect();
            let signalled = watched
                .health
                .sent()
                .filter_map(|(id, sent)| {
                    let memory = state::SignalMemory {
                        pid: sent.pid,
                        process_started: boot::process_started(sent.pid)?,
                        sent_at: at(now.saturating_duration_since(sent.at)),
                        killed: sent.killed,
                    };
                    Some((id.to_owned(), memory))
                })
                .collect();
            let memory = state::Memory {
                boot: boot.clone(),
                workers,
                watchdog_triggered_for: watched.health.triggered_for(),
                signalled,
            };
            if let Err(e) =
                state::save(&self.config.state_directory, &watched.service.unit, &memory)
                && self.warnings.allow("state", now)
            {
                warn!(
                    "saving state in {}: {e}; a restart will reset stuck timers",
                    self.config.state_directory.display()
                );
            }
        }
    }
}
