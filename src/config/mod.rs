//! The agent's configuration: `agent.toml` plus one file per watched service in the
//! `services.d/` beside it, parsed with serde, then validated into a typed [`Config`]
//! before anything starts.
//!
//! Values that can be wrong (durations, enumerations, JSON pointers, directories) are
//! checked while deserializing, so a mistake is reported by toml with the file, line,
//! column and the offending key and value in view.
//!
//! The agent runs privileged while the files it reads come from packages and the
//! directories it reaps in belong to services' users, so every value is bounded:
//! durations have a range ([`INTERVAL_RANGE`], [`STUCK_AFTER_RANGE`]), and a scoreboard
//! directory is absolute, in normal form, outside the system's own directories
//! ([`check_directory`]) and not shared with another service.
//!
//! One file per reason to change: the typed configuration here; the value types and
//! what each accepts in `values.rs`; the rules for scoreboard directories in
//! `directory.rs`; reading the files in `load.rs`; and what `--check-config` reports
//! beyond that (`check.rs`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

mod check;
mod directory;
mod load;
mod values;

pub use check::{
    AgentPrivileges, CheckReport, KILL_GRANT_COMMAND, Protection, StateDirectoryCheck,
    check_config, refusals, unactionable,
};
pub use directory::{check_directory, default_directory};
pub use load::parse_service;
pub use values::{
    INTERVAL_RANGE, KILL_GRACE_RANGE, PLACEHOLDERS, STUCK_AFTER_RANGE, check_template,
    normalize_unit,
};

/// Where the packaged configuration lives.
pub const DEFAULT_CONFIG: &str = "/etc/scoreboard/agent.toml";

/// Where the packaged agent keeps its state (the unit's RuntimeDirectory=).
pub const DEFAULT_STATE_DIRECTORY: &str = "/run/scoreboard";

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from (`services.d/` is beside it).
    pub path: PathBuf,
    /// How often statuses are sampled and directories swept.
    pub interval: Duration,
    /// Which bus to use for systemd and for serving details.
    pub bus: Bus,
    /// Where `STATUS=` datagrams go; `$NOTIFY_SOCKET` of the agent when unset, else
    /// systemd's `/run/systemd/notify`.
    pub notify_socket: Option<PathBuf>,
    /// Prometheus metrics, off unless asked for.
    pub metrics: MetricsConfig,
    /// Where the agent remembers stuck timers across restarts.
    pub state_directory: PathBuf,
    /// The watched services, sorted by unit.
    pub services: Vec<Service>,
    /// Entries of `services.d/` that are not read, not being `*.toml` files
    /// (`web.conf`, `web.toml.dpkg-old`, an editor's `web.toml~`), sorted.
    pub ignored: Vec<PathBuf>,
}

/// `[metrics]` in agent.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` here, e.g. "127.0.0.1:9464".
    pub listen: Option<std::net::SocketAddr>,
    /// Write the metrics here every interval, for node_exporter's textfile collector.
    pub textfile: Option<PathBuf>,
}

/// One watched service.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// The file it was read from.
    pub source: PathBuf,
    /// `myservice.service`.
    pub unit: String,
    /// The scoreboard directory.
    pub directory: PathBuf,
    /// How a worker's state is found in its status.
    pub state: StateRule,
    /// States that count as idle (never stuck).
    pub idle_states: Vec<String>,
    /// A non-idle worker whose status has not changed for this long is stuck.
    pub stuck_after: Option<Duration>,
    /// The `STATUS=` template: `{total}`, `{counts}`, `{stuck}`, `{unit}`.
    pub summary: String,
    /// Who sends the summary to systemd.
    pub notify: NotifyMode,
    /// At most this many worker files are read in the directory (`max_workers`).
    pub max_workers: usize,
    /// At most this many status bytes are read from the directory per sweep
    /// (`max_status_bytes`).
    pub max_status_bytes: usize,
    /// Health actions: all off unless set (`actions` in the file is their
    /// [`Actions::mode`]).
    pub health_actions: Actions,
}

/// A service's health actions (`wedged_after`, `kill_stuck_after`, `kill_signal`,
/// `kill_grace`, `actions`): off unless one of the two thresholds is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actions {
    /// Workers seen, every one stuck, this long while the unit is active: the pool is
    /// wedged, and the unit's watchdog is triggered (an empty pool never is).
    pub wedged_after: Option<Duration>,
    /// A worker stuck this long is signalled (only if its id is a pid of the unit that
    /// holds its file).
    pub kill_stuck_after: Option<Duration>,
    /// The first signal; SIGKILL follows after `kill_grace`.
    pub kill_signal: KillSignal,
    /// How long a signalled worker has before SIGKILL.
    pub kill_grace: Duration,
    /// Act, or only say what would be done: the key `actions` (`actions = "report"`).
    pub mode: ActionMode,
}

impl Default for Actions {
    fn default() -> Self {
        Actions {
            wedged_after: None,
            kill_stuck_after: None,
            kill_signal: KillSignal::Term,
            kill_grace: DEFAULT_KILL_GRACE,
            mode: ActionMode::Act,
        }
    }
}

impl Actions {
    /// Whether any action is configured.
    pub fn enabled(&self) -> bool {
        self.wedged_after.is_some() || self.kill_stuck_after.is_some()
    }
}

/// The default `kill_grace`.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

/// `actions`: whether the agent acts on what it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionMode {
    /// Do it (the default once a threshold is set).
    Act,
    /// Dry run: log and show what would be done, do nothing.
    Report,
}

/// `kill_signal`: the signals a worker may be asked to stop with. SIGKILL always
/// follows after the grace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillSignal {
    /// SIGTERM (the default).
    Term,
    /// SIGINT.
    Int,
    /// SIGQUIT.
    Quit,
    /// SIGHUP.
    Hup,
    /// SIGUSR1.
    Usr1,
    /// SIGUSR2.
    Usr2,
    /// SIGABRT (a core dump of the stuck worker, where enabled).
    Abrt,
    /// SIGKILL at once.
    Kill,
}

/// Every `kill_signal`: its name in the configuration (and in `SIG…` messages), and
/// the signal sent. The one table of them.
const KILL_SIGNALS: [(KillSignal, &str, rustix::process::Signal); 8] = {
    use rustix::process::Signal;
    [
        (KillSignal::Term, "TERM", Signal::TERM),
        (KillSignal::Int, "INT", Signal::INT),
        (KillSignal::Quit, "QUIT", Signal::QUIT),
        (KillSignal::Hup, "HUP", Signal::HUP),
        (KillSignal::Usr1, "USR1", Signal::USR1),
        (KillSignal::Usr2, "USR2", Signal::USR2),
        (KillSignal::Abrt, "ABRT", Signal::ABORT),
        (KillSignal::Kill, "KILL", Signal::KILL),
    ]
};

/// The names of [`KILL_SIGNALS`], for "expected one of" in an error.
const KILL_SIGNAL_NAMES: [&str; KILL_SIGNALS.len()] = {
    let mut names = [""; KILL_SIGNALS.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = KILL_SIGNALS[i].1;
        i += 1;
    }
    names
};

impl KillSignal {
    fn entry(self) -> &'static (KillSignal, &'static str, rustix::process::Signal) {
        KILL_SIGNALS
            .iter()
            .find(|(signal, ..)| *signal == self)
            .expect("every kill signal is in the table")
    }

    /// The signal sent.
    pub fn signal(self) -> rustix::process::Signal {
        self.entry().2
    }
}

/// The configuration's name: `TERM`, `KILL`, …
impl fmt::Display for KillSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.entry().1)
    }
}

impl<'de> Deserialize<'de> for KillSignal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        KILL_SIGNALS
            .iter()
            .find(|(_, name, _)| *name == text)
            .map(|(signal, ..)| *signal)
            .ok_or_else(|| serde::de::Error::unknown_variant(&text, &KILL_SIGNAL_NAMES))
    }
}

/// Which message bus the agent talks on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    /// The system bus (the default).
    System,
    /// The user's session bus, for development.
    Session,
    /// No bus: `notify = "main-pid"` is unavailable.
    None,
}

/// How a worker's state is derived from its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateRule {
    /// The status up to the first whitespace: `busy GET /` is `busy`.
    FirstWord,
    /// A JSON pointer into a JSON status: `json:/state`.
    JsonPointer(String),
}

/// Who sends the service's `STATUS=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyMode {
    /// The agent, on behalf of the service's main process (needs `NotifyAccess=main`).
    MainPid,
    /// The agent as a process of the service itself, through its `NOTIFY_SOCKET`.
    #[serde(rename = "self")]
    Itself,
    /// Nobody: the summary is only shown by `scoreboardctl`.
    None,
}

/// The default `interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The default `max_status_bytes` of a service: 4 MiB read per sweep (16,384 statuses of
/// 256 bytes; real statuses are a line). What the agent keeps of a directory is a few
/// times this at most (statuses read, statuses kept, a bus answer), which must stay well
/// inside the unit's `MemoryMax=64M` whatever a directory's owner writes.
pub const SERVICE_MAX_STATUS_BYTES: usize = 4 << 20;

/// The default summary template.
pub const DEFAULT_SUMMARY: &str = "{total} workers: {counts}";

impl Config {
    /// The service configured for `unit` (`myservice` or `myservice.service`).
    pub fn service(&self, unit: &str) -> Option<&Service> {
        let unit = normalize_unit(unit).ok()?;
        self.services.iter().find(|s| s.unit == unit)
    }
}

/// The bus as users know it: "system bus", "session bus" ("no bus" for `none`).
impl fmt::Display for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bus::System => "system bus",
            Bus::Session => "session bus",
            Bus::None => "no bus",
        })
    }
}

impl fmt::Display for NotifyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotifyMode::MainPid => "main-pid",
            NotifyMode::Itself => "self",
            NotifyMode::None => "none",
        })
    }
}

#[cfg(test)]
mod tests;
