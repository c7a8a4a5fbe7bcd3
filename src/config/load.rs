//! Reading `agent.toml` and `services.d/*.toml` into a [`Config`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use super::directory::{Directory, check_directory, check_overlaps, default_directory};
use super::values::{Bounded, Interval, KillGrace, StuckAfter, Template, UnitName};
use super::{
    ActionMode, Actions, Bus, Config, DEFAULT_INTERVAL, DEFAULT_KILL_GRACE,
    DEFAULT_STATE_DIRECTORY, DEFAULT_SUMMARY, KillSignal, MetricsConfig, NotifyMode,
    SERVICE_MAX_STATUS_BYTES, Service, StateRule,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    interval: Option<Interval>,
    bus: Option<Bus>,
    notify_socket: Option<PathBuf>,
    metrics: Option<MetricsConfig>,
    state_directory: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    unit: UnitName,
    directory: Option<Directory>,
    state: Option<StateRule>,
    idle_states: Option<Vec<String>>,
    stuck_after: Option<StuckAfter>,
    summary: Option<Template>,
    notify: Option<NotifyMode>,
    max_workers: Option<Bounded<1, 1_000_000>>,
    max_status_bytes: Option<Bounded<4096, { 1 << 30 }>>,
    wedged_after: Option<StuckAfter>,
    kill_stuck_after: Option<StuckAfter>,
    kill_signal: Option<KillSignal>,
    kill_grace: Option<KillGrace>,
    /// `actions`: the mode of the health actions.
    #[serde(rename = "actions")]
    action_mode: Option<ActionMode>,
}

impl Config {
    /// Reads `path` and every `*.toml` in `services.d/` beside it.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let raw: RawAgent = toml::from_str(&text).map_err(|e| located(path, e))?;
        let mut services = Vec::new();
        let mut ignored = Vec::new();
        let services_dir = path.with_file_name("services.d");
        match std::fs::read_dir(&services_dir) {
            Ok(entries) => {
                let (mut files, not_toml): (Vec<PathBuf>, Vec<PathBuf>) = entries
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .partition(|p| p.extension().is_some_and(|e| e == "toml"));
                files.sort();
                ignored = not_toml;
                ignored.sort();
                for file in files {
                    services.push(load_service(&file)?);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", services_dir.display()));
            }
        }
        let mut seen = BTreeSet::new();
        for service in &services {
            if !seen.insert(&service.unit) {
                let first = services
                    .iter()
                    .find(|s| s.unit == service.unit)
                    .expect("seen before");
                bail!(
                    "{}: unit {} is already configured in {}",
                    service.source.display(),
                    service.unit,
                    first.source.display()
                );
            }
        }
        check_overlaps(&services)?;
        services.sort_by(|a, b| a.unit.cmp(&b.unit));
        let bus = raw.bus.unwrap_or(Bus::System);
        if bus == Bus::None
            && let Some(service) = services.iter().find(|s| s.notify == NotifyMode::MainPid)
        {
            bail!(
                "{}: notify = \"main-pid\" needs the bus to find {}'s main process, but {} sets bus = \"none\"",
                service.source.display(),
                service.unit,
                path.display()
            );
        }
        if bus == Bus::None
            && let Some(service) = services.iter().find(|s| s.health_actions.enabled())
        {
            bail!(
                "{}: health actions need the bus to learn {}'s main process and control group, but {} sets bus = \"none\"",
                service.source.display(),
                service.unit,
                path.display()
            );
        }
        Ok(Config {
            path: path.to_owned(),
            interval: raw.interval.map_or(DEFAULT_INTERVAL, |d| d.0),
            bus,
            notify_socket: raw.notify_socket,
            metrics: raw.metrics.unwrap_or_default(),
            state_directory: raw
                .state_directory
                .unwrap_or_else(|| DEFAULT_STATE_DIRECTORY.into()),
            services,
            ignored,
        })
    }
}

fn load_service(path: &Path) -> anyhow::Result<Service> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_service(&text, path)
}

/// A service file's text as the agent will read it from `path`: what `scoreboardctl
/// enable` checks before it writes one.
pub fn parse_service(text: &str, path: &Path) -> anyhow::Result<Service> {
    let raw: RawService = toml::from_str(text).map_err(|e| located(path, e))?;
    let unit = raw.unit.0;
    let directory = match raw.directory {
        Some(directory) => directory.0,
        None => {
            // The default comes from the unit name, which may still name a system
            // directory (`systemd` → /run/systemd/scoreboard).
            let directory = default_directory(&unit);
            if let Err(e) = check_directory(&directory.to_string_lossy()) {
                bail!(
                    "{}: {e} (the default for {unit}; set `directory` to another one)",
                    path.display()
                );
            }
            directory
        }
    };
    let health_actions = Actions {
        wedged_after: raw.wedged_after.map(|d| d.0),
        kill_stuck_after: raw.kill_stuck_after.map(|d| d.0),
        kill_signal: raw.kill_signal.unwrap_or(KillSignal::Term),
        kill_grace: raw.kill_grace.map_or(DEFAULT_KILL_GRACE, |d| d.0),
        mode: raw.action_mode.unwrap_or(ActionMode::Act),
    };
    let stuck_after = raw.stuck_after.map(|d| d.0);
    if health_actions.kill_stuck_after.is_some() && stuck_after.is_none() {
        bail!(
            "{}: kill_stuck_after acts on stuck workers: set stuck_after too",
            path.display()
        );
    }
    if let (Some(kill), Some(stuck)) = (health_actions.kill_stuck_after, stuck_after)
        && kill < stuck
    {
        bail!(
            "{}: kill_stuck_after ({}) is shorter than stuck_after ({}): a worker is only \
             signalled once it is stuck",
            path.display(),
            humantime::format_duration(kill),
            humantime::format_duration(stuck)
        );
    }
    Ok(Service {
        source: path.to_owned(),
        health_actions,
        directory,
        state: raw.state.unwrap_or(StateRule::FirstWord),
        idle_states: raw.idle_states.unwrap_or_else(|| vec!["idle".to_owned()]),
        stuck_after,
        summary: raw
            .summary
            .map_or_else(|| DEFAULT_SUMMARY.to_owned(), |t| t.0),
        notify: raw.notify.unwrap_or(NotifyMode::MainPid),
        max_workers: raw
            .max_workers
            .map_or(scoreboard::DEFAULT_MAX_WORKERS, |n| n.0),
        max_status_bytes: raw
            .max_status_bytes
            .map_or(SERVICE_MAX_STATUS_BYTES, |n| n.0),
        unit,
    })
}

/// toml's errors carry line, column and the offending text; we add the file.
fn located(path: &Path, error: toml::de::Error) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", path.display(), error.to_string().trim_end())
}
