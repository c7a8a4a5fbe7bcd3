//! Prometheus metrics: an explicit registry of `scoreboard_*` families, labelled by
//! unit (never part of a name), encoded as OpenMetrics text by the prometheus-client
//! crate, served over HTTP `GET /metrics` and/or written atomically to a file for
//! node_exporter's textfile collector.
//!
//! The `state` label is the one whose values workers choose: each is escaped and cut to
//! [`MAX_STATE_LABEL`] bytes, and a unit has at most [`MAX_STATES_PER_UNIT`] state
//! series plus [`OTHER_STATE`], so what a service's user writes cannot grow the
//! exposition without bound.
//!
//! Every family but the per-state gauge has its series for a unit from the moment the
//! unit is watched ([`Metrics::watch`]), counters at 0 and a `kind` series for each of
//! [`scoreboard::SkipKind::ALL`], so that `rate()`, `increase()` and alerts see the
//! first increment; [`Metrics::unwatch`] takes them all away. `scoreboard_pool_workers`
//! is the whole pool: the `scoreboard_workers` of every state plus
//! `scoreboard_stuck_workers` add up to it, also when every worker is stuck and no
//! state series is left.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::core::health::Action;
use crate::core::pool::Cause;
use crate::core::status_line::Summary;
use crate::escape;
use crate::lock::lock;

mod http;
pub use http::serve;

/// The longest `state` label value, in bytes. States come from what workers write (a
/// first word may be as long as a whole status, 1 MiB); longer ones are cut, ending in "…".
pub const MAX_STATE_LABEL: usize = 64;

/// Distinct `state` series per unit. Workers in further states are counted under
/// [`OTHER_STATE`], so a pool whose workers put a request id in the first word does not
/// make one series per request.
pub const MAX_STATES_PER_UNIT: usize = 16;

/// The `state` label of workers beyond [`MAX_STATES_PER_UNIT`] states: one no state can
/// be, so a worker whose state is literally `other` keeps a series of its own.
pub const OTHER_STATE: &str = crate::core::status_line::FOLDED_STATES;

/// `unit="web.service"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnitLabel {
    /// The systemd unit.
    pub unit: String,
}

/// `unit`, `state`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// The systemd unit.
    pub unit: String,
    /// A worker state, as the unit's rule derives it.
    pub state: String,
}

/// `unit`, `action`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// The systemd unit.
    pub unit: String,
    /// One of [`ACTIONS`].
    pub action: Action,
}

/// An action's label value is its wire text, as on the bus and in the journal.
impl EncodeLabelValue for Action {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// The `action` label values of `scoreboard_actions_total`: the unit's watchdog
/// triggered, a stuck worker sent its signal, sent SIGKILL after the grace, a signal
/// refused by the checks, a stuck worker whose id is not a pid, and (dry run) an action
/// only reported.
pub const ACTIONS: [Action; 6] = Action::ALL;

/// `unit`, `cause`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnseenLabels {
    /// The systemd unit.
    pub unit: String,
    /// Why its directory could not be read.
    pub cause: Cause,
}

/// A cause's label value is its text, as in the `Unseen` property.
impl EncodeLabelValue for Cause {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_fmt(encoder, format_args!("{self}"))
    }
}

/// `unit`, `kind`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The systemd unit.
    pub unit: String,
    /// What went wrong: one of [`scoreboard::SkipKind::ALL`].
    pub kind: String,
}

/// The agent's metrics.
pub struct Metrics {
    registry: Registry,
    workers: Family<StateLabels, Gauge>,
    stuck: Family<UnitLabel, Gauge>,
    reaped: Family<UnitLabel, Counter>,
    read_errors: Family<ErrorLabels, Counter>,
    sweep_duration: Family<UnitLabel, Histogram>,
    notify_errors: Family<UnitLabel, Counter>,
    actions: Family<ActionLabels, Counter>,
    pool: Family<UnitLabel, Gauge>,
    last_sweep: Family<UnitLabel, Gauge<f64, AtomicU64>>,
    unseen: Family<UnseenLabels, Gauge>,
    /// States last exported per unit, so a state nobody is in any more disappears.
    states: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

fn sweep_histogram() -> Histogram {
    // 50 µs to ~1.6 s: one worker to many thousands.
    Histogram::new(exponential_buckets(0.000_05, 4.0, 8))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every family registered (and no samples yet).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let workers = Family::<StateLabels, Gauge>::default();
        let stuck = Family::<UnitLabel, Gauge>::default();
        let reaped = Family::<UnitLabel, Counter>::default();
        let read_errors = Family::<ErrorLabels, Counter>::default();
        let sweep_duration = Family::<UnitLabel, Histogram>::new_with_constructor(
            sweep_histogram as fn() -> Histogram,
        );
        let notify_errors = Family::<UnitLabel, Counter>::default();
        let actions = Family::<ActionLabels, Counter>::default();
        let pool = Family::<UnitLabel, Gauge>::default();
        let last_sweep = Family::<UnitLabel, Gauge<f64, AtomicU64>>::default();
        let unseen = Family::<UnseenLabels, Gauge>::default();
        registry.register(
            "scoreboard_pool_unseen",
            "1 while the unit's scoreboard directory cannot be read, by cause: its workers are unknown (not 0)",
            unseen.clone(),
        );
        registry.register(
            "scoreboard_workers",
            "Live workers by unit and state (stuck ones excluded)",
            workers.clone(),
        );
        registry.register(
            "scoreboard_pool_workers",
            "Live workers by unit: the workers of every state plus the stuck ones",
            pool.clone(),
        );
        registry.register(
            "scoreboard_stuck_workers",
            "Workers stuck in a non-idle state",
            stuck.clone(),
        );
        registry.register(
            "scoreboard_reaped",
            "Dead workers' files removed by the agent",
            reaped.clone(),
        );
        registry.register(
            "scoreboard_read_errors",
            "Scoreboard entries that could not be read, by kind",
            read_errors.clone(),
        );
        registry.register_with_unit(
            "scoreboard_sweep_duration",
            "Time to sweep one scoreboard directory",
            Unit::Seconds,
            sweep_duration.clone(),
        );
        registry.register(
            "scoreboard_notify_errors",
            "STATUS= datagrams that could not be sent",
            notify_errors.clone(),
        );
        registry.register(
            "scoreboard_actions",
            "Health actions taken (or, in report mode, reported), by unit and action",
            actions.clone(),
        );
        registry.register_with_unit(
            "scoreboard_last_sweep_timestamp",
            "When the unit's directory was last read through, or found absent (Unix time)",
            Unit::Seconds,
            last_sweep.clone(),
        );
        Metrics {
            registry,
            workers,
            stuck,
            reaped,
            read_errors,
            sweep_duration,
            notify_errors,
            actions,
            pool,
            last_sweep,
            unseen,
            states: Mutex::default(),
        }
    }

    /// A unit now watched: every family but the per-state gauge gets its series at 0
    /// (read errors one per kind the client crate reports), so that counters are there
    /// before their first increment. Series the unit has already are left as they are.
    pub fn watch(&self, unit: &str) {
        let label = UnitLabel {
            unit: unit.to_owned(),
        };
        // A series exists once asked for; the guard is dropped at once.
        drop(self.stuck.get_or_create(&label));
        drop(self.pool.get_or_create(&label));
        drop(self.reaped.get_or_create(&label));
        drop(self.notify_errors.get_or_create(&label));
        drop(self.sweep_duration.get_or_create(&label));
        for action in ACTIONS {
            drop(self.actions.get_or_create(&ActionLabels {
                unit: unit.to_owned(),
                action,
            }));
        }
        for cause in Cause::ALL {
            drop(self.unseen.get_or_create(&UnseenLabels {
                unit: unit.to_owned(),
                cause,
            }));
        }
        for kind in scoreboard::SkipKind::ALL {
            drop(self.read_errors.get_or_create(&ErrorLabels {
                unit: unit.to_owned(),
                kind: kind.to_string(),
            }));
        }
    }

    /// A unit no longer watched: every series of it goes away.
    pub fn unwatch(&self, unit: &str) {
        self.forget(unit);
        let label = UnitLabel {
            unit: unit.to_owned(),
        };
        self.stuck.remove(&label);
        self.pool.remove(&label);
        self.reaped.remove(&label);
        self.notify_errors.remove(&label);
        self.sweep_duration.remove(&label);
        self.last_sweep.remove(&label);
        for action in ACTIONS {
            self.actions.remove(&ActionLabels {
                unit: unit.to_owned(),
                action,
            });
        }
        for cause in Cause::ALL {
            self.unseen.remove(&UnseenLabels {
                unit: unit.to_owned(),
                cause,
            });
        }
        for kind in scoreboard::SkipKind::ALL {
            self.read_errors.remove(&ErrorLabels {
                unit: unit.to_owned(),
                kind: kind.to_string(),
            });
        }
        lock(&self.states).remove(unit);
    }

    /// Records one sweep of `unit`'s directory, completed at `wall`.
    pub fn sweep(
        &self,
        unit: &str,
        took: Duration,
        summary: &Summary,
        reaped: usize,
        errors: &std::collections::BTreeMap<scoreboard::SkipKind, usize>,
        wall: SystemTime,
    ) {
        let label = UnitLabel {
            unit: unit.to_owned(),
        };
        self.swept_at(&label, wall);
        self.set_unseen(unit, None);
        self.sweep_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        if reaped > 0 {
            self.reaped.get_or_create(&label).inc_by(reaped as u64);
        }
        for (kind, n) in errors {
            let labels = ErrorLabels {
                unit: unit.to_owned(),
                kind: kind.to_string(),
            };
            self.read_errors.get_or_create(&labels).inc_by(*n as u64);
        }
        self.set_counts(unit, summary);
    }

    /// A pass that could not read the directory at `wall`: the workers are unknown, so
    /// their gauges go (never a 0 that was not seen), and `scoreboard_pool_unseen` says
    /// why; the unit's data is as fresh as after a sweep.
    pub fn unseen(&self, unit: &str, cause: Cause, wall: SystemTime) {
        self.forget(unit);
        let label = UnitLabel {
            unit: unit.to_owned(),
        };
        self.pool.remove(&label);
        self.stuck.remove(&label);
        self.set_unseen(unit, Some(cause));
        self.swept_at(
            &UnitLabel {
                unit: unit.to_owned(),
            },
            wall,
        );
    }

    fn set_unseen(&self, unit: &str, now: Option<Cause>) {
        for cause in Cause::ALL {
            let labels = UnseenLabels {
                unit: unit.to_owned(),
                cause,
            };
            self.unseen
                .get_or_create(&labels)
                .set(i64::from(now == Some(cause)));
        }
    }

    fn swept_at(&self, label: &UnitLabel, wall: SystemTime) {
        let seconds = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.last_sweep.get_or_create(label).set(seconds);
    }

    /// Sets the per-state gauges, dropping states that no worker is in any more. The
    /// labels are cut to [`MAX_STATE_LABEL`] bytes, at most [`MAX_STATES_PER_UNIT`] of them
    /// per unit, the rest under [`OTHER_STATE`].
    pub fn set_counts(&self, unit: &str, summary: &Summary) {
        let label = UnitLabel {
            unit: unit.to_owned(),
        };
        self.stuck.get_or_create(&label).set(summary.stuck as i64);
        self.pool.get_or_create(&label).set(summary.total as i64);
        let series = state_series(&summary.counts);
        let now: BTreeSet<String> = series.keys().cloned().collect();
        let mut states = lock(&self.states);
        let before = states.entry(unit.to_owned()).or_default();
        for gone in before.difference(&now) {
            self.workers.remove(&StateLabels {
                unit: unit.to_owned(),
                state: gone.clone(),
            });
        }
        for (state, n) in series {
            let labels = StateLabels {
                unit: unit.to_owned(),
                state,
            };
            self.workers.get_or_create(&labels).set(n as i64);
        }
        *before = now;
    }

    /// The unit has no workers now (its directory went away): its per-state series go,
    /// its pool and stuck gauges are 0; counters are kept.
    pub fn forget(&self, unit: &str) {
        self.set_counts(
            unit,
            &Summary {
                total: 0,
                counts: Vec::new(),
                stuck: 0,
            },
        );
    }

    /// Counts one health action (one of [`ACTIONS`]).
    pub fn action(&self, unit: &str, action: Action) {
        self.actions
            .get_or_create(&ActionLabels {
                unit: unit.to_owned(),
                action,
            })
            .inc();
    }

    /// Counts a `STATUS=` datagram that could not be sent.
    pub fn notify_error(&self, unit: &str) {
        self.notify_errors
            .get_or_create(&UnitLabel {
                unit: unit.to_owned(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition, as prometheus-client encodes it.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// The Prometheus text format (0.0.4), for node_exporter's textfile collector,
    /// promtool, and scrapers that do not ask for OpenMetrics.
    pub fn encode_prometheus_text(&self) -> String {
        to_prometheus_text(&self.encode())
    }

    /// Writes the exposition to `path` atomically (a temporary file beside it, then a
    /// rename), as node_exporter's textfile collector requires.
    pub fn write_textfile(&self, path: &Path) -> std::io::Result<()> {
        // Readable by node_exporter, which runs as its own user, whatever the agent's
        // umask (the unit's UMask=0077); node_exporter reads only `*.prom`, so never
        // the temporary file.
        crate::io::atomic::write(
            path,
            self.encode_prometheus_text().as_bytes(),
            TEXTFILE_MODE,
        )
    }
}

/// The textfile's mode: the metrics are no secret (the bus shows the same counts to
/// anyone), and node_exporter reads them as its own user.
pub const TEXTFILE_MODE: u32 = 0o644;

/// Removes the textfile written to `path` (when the agent stops cleanly, or writes it
/// elsewhere from now on), so that node_exporter does not serve its last values as if
/// they were current. A file already gone is not an error.
pub fn remove_textfile(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The `state` label values of a unit and the workers under each, from its counts
/// (largest first, as [`Summary::counts`] has them).
///
/// A label is the state made [`escape::printable_capped`] to [`MAX_STATE_LABEL`]
/// bytes: control characters, backslashes and invalid UTF-8 as `\n`, `\\`, `\xNN`, so
/// the label is the state as `scoreboardctl` shows it. The exposition format then
/// escapes `"`, `\` and newline once more, as it must: a state `a\b` is the label value
/// `a\\b`, written `state="a\\\\b"`. States alike in their first bytes share a label,
/// and their workers add up. The first [`MAX_STATES_PER_UNIT`] labels get a series
/// each; the workers of all further ones add up under [`OTHER_STATE`].
fn state_series(counts: &[(String, usize)]) -> BTreeMap<String, usize> {
    let mut series: BTreeMap<String, usize> = BTreeMap::new();
    let mut other = 0;
    for (state, n) in counts {
        let label = escape::printable_capped(state.as_bytes(), MAX_STATE_LABEL);
        let room = series.len() < MAX_STATES_PER_UNIT;
        match series.get_mut(label.as_ref()) {
            Some(total) => *total += n,
            None if room => {
                series.insert(label.into_owned(), *n);
            }
            None => other += n,
        }
    }
    if other > 0 {
        *series.entry(OTHER_STATE.to_owned()).or_default() += other;
    }
    series
}

/// The same exposition in the older Prometheus text format. prometheus-client writes
/// only OpenMetrics, whose counter families are named without `_total` (their samples
/// carry it) and which adds `# UNIT` and `# EOF` lines; the Prometheus format names a
/// family by its samples and knows neither line. Nothing else differs for the metric
/// types used here, so the conversion renames counter families and drops those lines.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        text.push_str(renamed.as_deref().unwrap_or(line));
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests;
