//! SIGHUP: the configuration read again and its differences applied — services kept,
//! added (recalling what the *new* state directory holds for them) or dropped, the
//! interval and notify socket in force at once; what cannot change without a restart
//! is said so, never silently ignored.

use std::time::Instant;

use tracing::{error, info, warn};

use super::Agent;
use super::service::Watched;
use crate::config::Config;
use crate::io::notify::Message;
use crate::io::state;

impl Agent {
    /// Re-reads the configuration, keeping what we know of unchanged services.
    pub(super) fn reload(&mut self) {
        self.lifecycle(&Message::reloading_now());
        match Config::load(&self.config.path) {
            Ok(config) => self.apply(config),
            Err(e) => error!(
                "keeping the running configuration: {}",
                crate::error_chain::text(&e)
            ),
        }
        let now = Instant::now();
        // The configuration is in force: READY=1 now; the new passes are the loop's.
        self.step_all(now);
        self.send_summaries(now, true);
        self.lifecycle(&Message::Ready);
        self.send_own_status();
    }

    fn apply(&mut self, config: Config) {
        warn_needs_restart(&self.config, &config);
        let on_bus = self.bus.is_some();
        let mut old = std::mem::take(&mut self.services);
        let mut added = Vec::new();
        for service in &config.services {
            let kept = old
                .iter()
                .position(|w| &w.service == service)
                .map(|i| old.swap_remove(i));
            let watched = kept.unwrap_or_else(|| {
                added.push(self.services.len());
                Watched::new(service.clone(), on_bus)
            });
            self.services.push(watched);
        }
        for gone in &mut old {
            gone.unwatch(&self.watcher);
            if config.services.iter().any(|s| s.unit == gone.unit()) {
                // Changed settings: the unit stays, its counters too; its workers are
                // read again by the new settings.
                self.metrics.forget(gone.unit());
            } else {
                self.metrics.unwatch(gone.unit());
                info!(unit = %gone.unit(), "no longer watched");
            }
            state::remove(&self.config.state_directory, gone.unit());
        }
        for index in &added {
            self.metrics.watch(self.services[*index].unit());
        }
        if config.metrics.textfile != self.config.metrics.textfile
            && let Some(old) = &self.config.metrics.textfile
            && let Err(e) = crate::metrics::remove_textfile(old)
        {
            warn!("removing the old metrics textfile {}: {e}", old.display());
        }
        if let Some(bus) = &self.bus {
            // A changed service is removed and added again, with its new settings.
            for gone in &old {
                bus.remove(gone.unit());
            }
            for index in &added {
                let watched = &self.services[*index];
                bus.add(watched.service.clone(), watched.pool.clone());
            }
            bus.follow(self.followed_units());
        }
        if config.notify_socket != self.config.notify_socket {
            self.systemd_socket = None; // opened again, at the new path, on next use
        }
        self.timers.set_interval(config.interval, Instant::now());
        // What a dropped service left behind is in the old state directory; what an
        // added one may find, in the new one.
        self.config = config;
        for index in added {
            self.recall(index);
        }
        info!(services = self.services.len(), "configuration reloaded");
    }
}

/// Settings a reload does not apply, said once each: the bus connection and the metrics
/// listener are set up at start. (Services, `interval`, `notify_socket` and the metrics
/// textfile take effect at once.)
fn warn_needs_restart(running: &Config, loaded: &Config) {
    let mut changed = Vec::new();
    if running.bus != loaded.bus {
        changed.push("bus");
    }
    if running.metrics.listen != loaded.metrics.listen {
        changed.push("metrics.listen");
    }
    if !changed.is_empty() {
        warn!(
            "{} changed in {}: applied at the next restart of the agent, not by a reload",
            changed.join(", "),
            loaded.path.display()
        );
    }
}
