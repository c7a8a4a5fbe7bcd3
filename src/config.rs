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

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;

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
    /// Health actions: all off unless set.
    pub actions: Actions,
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
    /// Act, or only say what would be done (`actions = "report"`).
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KillSignal {
    /// SIGTERM (the default).
    #[serde(rename = "TERM")]
    Term,
    /// SIGINT.
    #[serde(rename = "INT")]
    Int,
    /// SIGQUIT.
    #[serde(rename = "QUIT")]
    Quit,
    /// SIGHUP.
    #[serde(rename = "HUP")]
    Hup,
    /// SIGUSR1.
    #[serde(rename = "USR1")]
    Usr1,
    /// SIGUSR2.
    #[serde(rename = "USR2")]
    Usr2,
    /// SIGABRT (a core dump of the stuck worker, where enabled).
    #[serde(rename = "ABRT")]
    Abrt,
    /// SIGKILL at once.
    #[serde(rename = "KILL")]
    Kill,
}

impl fmt::Display for KillSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KillSignal::Term => "TERM",
            KillSignal::Int => "INT",
            KillSignal::Quit => "QUIT",
            KillSignal::Hup => "HUP",
            KillSignal::Usr1 => "USR1",
            KillSignal::Usr2 => "USR2",
            KillSignal::Abrt => "ABRT",
            KillSignal::Kill => "KILL",
        })
    }
}

/// What `--check-config` says: [`Config::check_report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// For stdout: the settings, the services, the ignored files; one per line.
    pub out: String,
    /// For stderr, one each: what the agent would run with, but not well.
    pub warnings: Vec<String>,
}

/// What [`Config::check_state_directory`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateDirectoryCheck {
    /// It is a directory.
    Present,
    /// It is the packaged default, `/run/scoreboard`, not made yet: the shipped unit's
    /// `RuntimeDirectory=` makes it when the agent starts.
    MadeByTheUnit,
    /// Missing or not a directory, and why that matters.
    Unusable(String),
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
    actions: Option<ActionMode>,
}

/// The range of `kill_grace`: a worker gets at least a second to stop, at most an hour.
pub const KILL_GRACE_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(60 * 60));

/// `kill_grace`: a duration in [`KILL_GRACE_RANGE`].
#[derive(Debug, Clone, Copy)]
struct KillGrace(Duration);

impl<'de> Deserialize<'de> for KillGrace {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text, KILL_GRACE_RANGE)
            .map(KillGrace)
            .map_err(serde::de::Error::custom)
    }
}

/// A count within `MIN..=MAX`, said in the error when it is not.
#[derive(Debug, Clone, Copy)]
struct Bounded<const MIN: usize, const MAX: usize>(usize);

impl<'de, const MIN: usize, const MAX: usize> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(deserializer)?;
        match usize::try_from(n) {
            Ok(n) if (MIN..=MAX).contains(&n) => Ok(Bounded(n)),
            _ => Err(serde::de::Error::custom(format!(
                "{n} is out of range: it must be from {MIN} to {MAX}"
            ))),
        }
    }
}

/// The range of `interval`. At least 10 ms: each tick sweeps every watched directory,
/// and a shorter period would only burn CPU. At most an hour: the interval is also how
/// often a restarted service's new main process is looked up and the safety-net sweep
/// runs, so a longer one would leave a service unfollowed for hours. Both ends keep the
/// agent's `now + interval` far from what an `Instant` can hold.
pub const INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(60 * 60));

/// The range of `stuck_after`. At least a second: statuses are sampled every interval,
/// so a shorter threshold would be noise. At most 30 days: longer than any request a
/// worker could be busy with, and far from what an `Instant` can hold.
pub const STUCK_AFTER_RANGE: (Duration, Duration) = (
    Duration::from_secs(1),
    Duration::from_secs(30 * 24 * 60 * 60),
);

/// `interval`: a duration in [`INTERVAL_RANGE`].
#[derive(Debug, Clone, Copy)]
struct Interval(Duration);

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text, INTERVAL_RANGE)
            .map(Interval)
            .map_err(serde::de::Error::custom)
    }
}

/// `stuck_after`: a duration in [`STUCK_AFTER_RANGE`].
#[derive(Debug, Clone, Copy)]
struct StuckAfter(Duration);

impl<'de> Deserialize<'de> for StuckAfter {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text, STUCK_AFTER_RANGE)
            .map(StuckAfter)
            .map_err(serde::de::Error::custom)
    }
}

/// A duration written as "250ms", "1s", "5m", within `(min, max)` inclusive.
fn parse_duration(text: &str, (min, max): (Duration, Duration)) -> Result<Duration, String> {
    let range = format!(
        "from {} to {}",
        humantime::format_duration(min),
        humantime::format_duration(max)
    );
    let duration = humantime::parse_duration(text).map_err(|e| {
        format!("invalid duration {text:?}: {e} (write e.g. \"250ms\", \"1s\", \"5m\"; {range})")
    })?;
    if duration < min || duration > max {
        return Err(format!(
            "duration {text:?} is out of range: it must be {range}"
        ));
    }
    Ok(duration)
}

/// A systemd unit name; `.service` is implied when no suffix is given.
#[derive(Debug)]
struct UnitName(String);

impl<'de> Deserialize<'de> for UnitName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        normalize_unit(&text)
            .map(UnitName)
            .map_err(serde::de::Error::custom)
    }
}

/// `myservice` → `myservice.service`; refuses names systemd would refuse, so that a unit
/// name can safely become part of a path.
pub fn normalize_unit(text: &str) -> Result<String, String> {
    let unit = if text.contains('.') {
        text.to_owned()
    } else {
        format!("{text}.service")
    };
    let valid = !unit.is_empty()
        && unit.len() <= 255
        && !unit.starts_with('.')
        && unit
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c));
    if !valid {
        return Err(format!("invalid unit name {text:?}"));
    }
    if !unit.ends_with(".service") {
        return Err(format!(
            "unit {unit:?} is not a service: only services have worker pools and a STATUS= line"
        ));
    }
    Ok(unit)
}

impl<'de> Deserialize<'de> for StateRule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == "first-word" {
            return Ok(StateRule::FirstWord);
        }
        match text.strip_prefix("json:") {
            Some(pointer) if pointer.is_empty() || pointer.starts_with('/') => {
                Ok(StateRule::JsonPointer(pointer.to_owned()))
            }
            _ => Err(serde::de::Error::custom(format!(
                "invalid state rule {text:?}: use \"first-word\" or \"json:/pointer\""
            ))),
        }
    }
}

/// A summary template; unknown placeholders are refused when the file is read rather
/// than shown literally in `systemctl status`.
#[derive(Debug)]
struct Template(String);

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        check_template(&text).map_err(serde::de::Error::custom)?;
        Ok(Template(text))
    }
}

/// Placeholders a summary template may use.
pub const PLACEHOLDERS: [&str; 4] = ["total", "counts", "stuck", "unit"];

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

/// `directory`: a scoreboard directory that passed [`check_directory`].
#[derive(Debug)]
struct Directory(PathBuf);

impl<'de> Deserialize<'de> for Directory {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        check_directory(&text).map_err(serde::de::Error::custom)?;
        Ok(Directory(text.into()))
    }
}

/// Directories that are never a scoreboard themselves: the agent renames and removes
/// dead workers' `status_*` files in a scoreboard with its own privileges, so it must
/// not be pointed at a directory the system or every user shares.
const SYSTEM_DIRECTORIES: [&str; 23] = [
    "/",
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    "/root",
    "/home",
    "/var",
    "/run",
    "/tmp",
    "/var/tmp",
    "/srv",
    "/opt",
    "/var/lib",
    "/var/log",
    "/run/user",
    "/run/systemd",
];

/// Trees a scoreboard never lives in, at any depth: the system's own files, kernel
/// interfaces, systemd's runtime state and users' runtime directories. (Every top-level
/// `/lib*` — lib32, lib64, libx32 — counts as well.) A scoreboard lives in a service's
/// own directory, e.g. `/run/<service>/scoreboard` or `/var/lib/<service>/scoreboard`.
const SYSTEM_TREES: [&str; 10] = [
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    "/run/systemd",
    "/run/user",
];

/// Refuses a scoreboard directory that is not absolute, not in normal form (the error
/// says the normal form), or a system directory or inside one (see
/// `SYSTEM_DIRECTORIES` and `SYSTEM_TREES`).
///
/// Normal form is required rather than computed: a directory is compared with others
/// (two services may not share one) and with the system trees as text, and `..` or a
/// doubled slash would make that comparison lie.
pub fn check_directory(text: &str) -> Result<(), String> {
    if !text.starts_with('/') {
        return Err(format!("directory {text:?} must be an absolute path"));
    }
    let normal = lexical_normal(text);
    if normal != text {
        return Err(format!(
            "directory {text:?} is not in normal form (no \".\" or \"..\" components, no \
             repeated or trailing slashes): write {normal:?}"
        ));
    }
    let path = Path::new(text);
    let tree = SYSTEM_TREES
        .iter()
        .copied()
        .find(|tree| path.starts_with(tree))
        .or_else(|| {
            let first = text[1..].split('/').next().unwrap_or("");
            first.starts_with("lib").then(|| &text[..=first.len()])
        });
    if SYSTEM_DIRECTORIES.contains(&text) || tree == Some(text) {
        return Err(format!(
            "directory {text:?} is a system directory; a scoreboard needs a directory of its \
             own, e.g. /run/<service>/scoreboard"
        ));
    }
    if let Some(tree) = tree {
        return Err(format!(
            "directory {text:?} is inside {tree}, where a scoreboard never belongs; use the \
             service's own, e.g. /run/<service>/scoreboard"
        ));
    }
    Ok(())
}

/// The agent unit's file-system protection, as `systemctl show` gives it: what it may
/// write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    /// `ProtectSystem=`: `strict` makes everything but the listed paths read-only.
    pub protect_system: String,
    /// `ReadWritePaths=`, without systemd's `-`/`+` prefixes.
    pub read_write_paths: Vec<std::path::PathBuf>,
}

impl Protection {
    /// Reads `systemctl show -p ProtectSystem -p ReadWritePaths` output.
    pub fn parse(show: &str) -> Protection {
        let mut protection = Protection {
            protect_system: String::new(),
            read_write_paths: Vec::new(),
        };
        for line in show.lines() {
            if let Some(value) = line.strip_prefix("ProtectSystem=") {
                protection.protect_system = value.to_owned();
            } else if let Some(value) = line.strip_prefix("ReadWritePaths=") {
                protection.read_write_paths = value
                    .split_whitespace()
                    .map(|p| std::path::PathBuf::from(p.trim_start_matches(['-', '+'])))
                    .collect();
            }
        }
        protection
    }

    /// Why the agent could never remove a dead worker's file in `directory`, if so:
    /// the unit makes it read-only. The message names the fix.
    pub fn refuses(&self, unit: &str, directory: &Path) -> Option<String> {
        if self.protect_system != "strict"
            || self
                .read_write_paths
                .iter()
                .any(|writable| directory.starts_with(writable))
        {
            return None;
        }
        let writable: Vec<String> = self
            .read_write_paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        Some(format!(
            "{unit}: directory {} is read-only to scoreboard-agent.service (ProtectSystem=strict, \
             ReadWritePaths={}): dead workers' files there could never be removed. Put the \
             scoreboard under /run (e.g. /run/<service>/scoreboard), or let the agent write it: \
             `systemctl edit scoreboard-agent.service` with [Service] ReadWritePaths={}",
            directory.display(),
            writable.join(" "),
            directory.display()
        ))
    }
}

/// `path` with `.` components, repeated and trailing slashes removed and `..` applied
/// lexically (`/run/a/../b` is `/run/b`; `..` at the root stays at the root).
fn lexical_normal(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
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
            && let Some(service) = services.iter().find(|s| s.actions.enabled())
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

    /// Whether `state_directory` can be used, for `--check-config`.
    ///
    /// A missing one is not an error: the agent runs without it (a restart then resets
    /// stuck timers, and its log says so), and a directory the unit makes when it
    /// starts (`RuntimeDirectory=`, `StateDirectory=`) does not exist before. The
    /// packaged default, `/run/scoreboard`, is exactly that: the shipped unit's
    /// `RuntimeDirectory=scoreboard`.
    pub fn check_state_directory(&self) -> StateDirectoryCheck {
        let dir = &self.state_directory;
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => StateDirectoryCheck::Present,
            Ok(_) => StateDirectoryCheck::Unusable(format!(
                "state_directory {} is not a directory: the agent cannot save what it \
                 remembers (its log says so) and a restart resets stuck timers",
                dir.display()
            )),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && dir == Path::new(DEFAULT_STATE_DIRECTORY) =>
            {
                StateDirectoryCheck::MadeByTheUnit
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                StateDirectoryCheck::Unusable(format!(
                    "state_directory {} does not exist and the agent does not create it: \
                     unless the agent's unit makes it when it starts (RuntimeDirectory=, \
                     StateDirectory=), the agent cannot save what it remembers (its log \
                     says so) and a restart resets stuck timers",
                    dir.display()
                ))
            }
            Err(e) => {
                StateDirectoryCheck::Unusable(format!("state_directory {}: {e}", dir.display()))
            }
        }
    }

    /// A warning for `--check-config` when the metrics textfile's directory does not
    /// exist: the agent writes the file, not the directory (node_exporter's textfile
    /// collector has one of its own), and would only say in its log that it cannot.
    pub fn check_textfile(&self) -> Option<String> {
        let textfile = self.metrics.textfile.as_ref()?;
        let dir = textfile.parent().filter(|d| !d.as_os_str().is_empty())?;
        (!dir.is_dir()).then(|| {
            format!(
                "metrics textfile {}: its directory {} does not exist; the agent does not \
                 create it and cannot write the file (its log says so)",
                textfile.display(),
                dir.display()
            )
        })
    }

    /// What `scoreboard-agent --check-config` prints of a configuration that loaded:
    /// the agent's settings (interval, bus, state directory, metrics), each watched
    /// service, and the `services.d/` entries it ignores; and warnings, for stderr,
    /// about what the agent would run with but not well.
    pub fn check_report(&self) -> CheckReport {
        let mut out = format!(
            "{}: OK, interval {:?}, {}, {} service(s)\n",
            self.path.display(),
            self.interval,
            self.bus,
            self.services.len()
        );
        let mut warnings = Vec::new();
        let state = self.state_directory.display();
        match self.check_state_directory() {
            StateDirectoryCheck::Present => out.push_str(&format!("  state_directory {state}\n")),
            StateDirectoryCheck::MadeByTheUnit => out.push_str(&format!(
                "  state_directory {state} (not there yet: the unit's RuntimeDirectory= makes \
                 it when the agent starts)\n"
            )),
            StateDirectoryCheck::Unusable(warning) => {
                out.push_str(&format!("  state_directory {state} (see the warning)\n"));
                warnings.push(warning);
            }
        }
        let metrics = match (&self.metrics.listen, &self.metrics.textfile) {
            (None, None) => "off".to_owned(),
            (listen, textfile) => [
                listen.map(|a| format!("listen {a} (GET /metrics)")),
                textfile
                    .as_ref()
                    .map(|f| format!("textfile {}", f.display())),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
        };
        out.push_str(&format!("  metrics: {metrics}\n"));
        warnings.extend(self.check_textfile());
        for service in &self.services {
            out.push_str(&format!(
                "  {} <- {} (notify: {})\n",
                service.unit,
                service.directory.display(),
                service.notify
            ));
        }
        for path in &self.ignored {
            out.push_str(&format!(
                "  ignored: {} (only *.toml files in services.d/ are read)\n",
                path.display()
            ));
        }
        CheckReport { out, warnings }
    }

    /// The service configured for `unit` (`myservice` or `myservice.service`).
    pub fn service(&self, unit: &str) -> Option<&Service> {
        let unit = normalize_unit(unit).ok()?;
        self.services.iter().find(|s| s.unit == unit)
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
    let actions = Actions {
        wedged_after: raw.wedged_after.map(|d| d.0),
        kill_stuck_after: raw.kill_stuck_after.map(|d| d.0),
        kill_signal: raw.kill_signal.unwrap_or(KillSignal::Term),
        kill_grace: raw.kill_grace.map_or(DEFAULT_KILL_GRACE, |d| d.0),
        mode: raw.actions.unwrap_or(ActionMode::Act),
    };
    let stuck_after = raw.stuck_after.map(|d| d.0);
    if actions.kill_stuck_after.is_some() && stuck_after.is_none() {
        bail!(
            "{}: kill_stuck_after acts on stuck workers: set stuck_after too",
            path.display()
        );
    }
    if let (Some(kill), Some(stuck)) = (actions.kill_stuck_after, stuck_after)
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
        actions,
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

/// Refuses two services sharing a scoreboard directory, or one's inside the other's:
/// the agent would count the same workers twice, or reap in the other's directory.
/// Directories are in normal form ([`check_directory`]), so comparing components is
/// enough; sorted, a directory is followed by everything inside it, so checking
/// neighbours finds every overlap.
fn check_overlaps(services: &[Service]) -> anyhow::Result<()> {
    let mut by_directory: Vec<&Service> = services.iter().collect();
    by_directory.sort_by(|a, b| a.directory.cmp(&b.directory));
    for pair in by_directory.windows(2) {
        let [outer, inner] = pair else { continue };
        if !inner.directory.starts_with(&outer.directory) {
            continue;
        }
        let relation = if inner.directory == outer.directory {
            "is also"
        } else {
            "is inside"
        };
        bail!(
            "{}: directory {} of {} {relation} {}, the directory of {} in {}; each service \
             needs a scoreboard directory of its own",
            inner.source.display(),
            inner.directory.display(),
            inner.unit,
            outer.directory.display(),
            outer.unit,
            outer.source.display()
        );
    }
    Ok(())
}

/// `/run/<unit name without .service>/scoreboard`.
pub fn default_directory(unit: &str) -> PathBuf {
    let name = unit.strip_suffix(".service").unwrap_or(unit);
    Path::new("/run").join(name).join("scoreboard")
}

/// toml's errors carry line, column and the offending text; we add the file.
fn located(path: &Path, error: toml::de::Error) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", path.display(), error.to_string().trim_end())
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
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_directory_the_unit_makes_read_only_is_refused_with_the_fix() {
        let protection =
            Protection::parse("ProtectSystem=strict\nReadWritePaths=/run -/var/lib/x +/srv/y\n");
        assert_eq!(
            protection.read_write_paths,
            [
                Path::new("/run"),
                Path::new("/var/lib/x"),
                Path::new("/srv/y")
            ]
        );
        assert_eq!(
            protection.refuses("web.service", Path::new("/run/web/scoreboard")),
            None
        );
        assert_eq!(
            protection.refuses("web.service", Path::new("/srv/y/scoreboard")),
            None
        );
        let refused = protection
            .refuses("ok.service", Path::new("/srv/ok/scoreboard"))
            .unwrap();
        assert!(
            refused.contains("ReadWritePaths=/srv/ok/scoreboard"),
            "{refused}"
        );
        let open = Protection::parse("ProtectSystem=no\nReadWritePaths=\n");
        assert_eq!(
            open.refuses("ok.service", Path::new("/srv/ok/scoreboard")),
            None
        );
    }

    #[test]
    fn defaults_fill_everything_but_the_unit() {
        let tmp = tempfile::tempdir().unwrap();
        let agent = write(tmp.path(), "agent.toml", "");
        write(tmp.path(), "services.d/web.toml", "unit = \"web\"\n");
        let config = Config::load(&agent).unwrap();
        assert_eq!(config.interval, Duration::from_secs(1));
        assert_eq!(config.bus, Bus::System);
        let web = &config.services[0];
        assert_eq!(web.unit, "web.service");
        assert_eq!(web.directory, Path::new("/run/web/scoreboard"));
        assert_eq!(web.state, StateRule::FirstWord);
        assert_eq!(web.idle_states, ["idle"]);
        assert_eq!(web.stuck_after, None);
        assert_eq!(web.summary, DEFAULT_SUMMARY);
        assert_eq!(web.notify, NotifyMode::MainPid);
        assert!(std::ptr::eq(config.service("web").unwrap(), web));
    }

    #[test]
    fn every_key_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let agent = write(
            tmp.path(),
            "agent.toml",
            "interval = \"250ms\"\nbus = \"session\"\nnotify_socket = \"/tmp/n\"\n\n[metrics]\nlisten = \"127.0.0.1:9464\"\ntextfile = \"/tmp/sb.prom\"\n",
        );
        write(
            tmp.path(),
            "services.d/jobs.toml",
            r#"unit = "jobs.service"
directory = "/srv/jobs/sb"
state = "json:/state"
idle_states = ["idle", "waiting"]
stuck_after = "5m"
summary = "{unit}: {total} ({stuck} stuck)"
notify = "self"
"#,
        );
        let config = Config::load(&agent).unwrap();
        assert_eq!(config.interval, Duration::from_millis(250));
        assert_eq!(config.bus, Bus::Session);
        assert_eq!(config.notify_socket.as_deref(), Some(Path::new("/tmp/n")));
        assert_eq!(
            config.metrics.listen,
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(
            config.metrics.textfile.as_deref(),
            Some(Path::new("/tmp/sb.prom"))
        );
        let jobs = &config.services[0];
        assert_eq!(jobs.state, StateRule::JsonPointer("/state".into()));
        assert_eq!(jobs.idle_states, ["idle", "waiting"]);
        assert_eq!(jobs.stuck_after, Some(Duration::from_secs(300)));
        assert_eq!(jobs.notify, NotifyMode::Itself);
    }

    fn error_of(agent: &str, service: &str) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "agent.toml", agent);
        write(tmp.path(), "services.d/web.toml", service);
        let message = format!("{:#}", Config::load(&path).unwrap_err());
        message.replace(&tmp.path().display().to_string(), "DIR")
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_key() {
        let message = error_of(
            "interval = \"1s\"\n",
            "unit = \"web\"\nstuck_after = \"5 parsecs\"\n",
        );
        assert!(
            message.starts_with("DIR/services.d/web.toml: "),
            "{message}"
        );
        assert!(message.contains("line 2"), "{message}");
        assert!(message.contains("stuck_after"), "{message}");
        assert!(message.contains("invalid duration"), "{message}");

        let message = error_of("intervall = \"1s\"\n", "unit = \"web\"\n");
        assert!(
            message.starts_with("DIR/agent.toml: ") && message.contains("line 1"),
            "{message}"
        );
        assert!(message.contains("unknown field `intervall`"), "{message}");
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        for (service, expected) in [
            (
                "unit = \"web\"\nstate = \"xml\"\n",
                "use \"first-word\" or \"json:/pointer\"",
            ),
            (
                "unit = \"web\"\nsummary = \"{totl}\"\n",
                "unknown placeholder {totl}",
            ),
            (
                "unit = \"web\"\nnotify = \"pid\"\n",
                "unknown variant `pid`",
            ),
            ("unit = \"../etc\"\n", "invalid unit name"),
            ("unit = \"web.socket\"\n", "is not a service"),
            (
                "unit = \"web\"\ndirectory = \"run/web\"\n",
                "must be an absolute path",
            ),
            ("directory = \"/run/x\"\n", "missing field `unit`"),
        ] {
            let message = error_of("", service);
            assert!(message.contains(expected), "{service:?}: {message}");
        }
        let message = error_of("interval = \"0s\"\n", "unit = \"web\"\n");
        assert!(message.contains("out of range"), "{message}");
    }

    /// Loads a configuration; `Ok` holds the interval and the one service's stuck_after.
    fn load(agent: &str, service: &str) -> Result<(Duration, Option<Duration>), String> {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "agent.toml", agent);
        write(tmp.path(), "services.d/web.toml", service);
        Config::load(&path)
            .map(|c| (c.interval, c.services[0].stuck_after))
            .map_err(|e| format!("{e:#}").replace(&tmp.path().display().to_string(), "DIR"))
    }

    /// Loads a configuration with one service; its actions.
    fn actions(agent: &str, service: &str) -> Result<Actions, String> {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "agent.toml", agent);
        write(tmp.path(), "services.d/web.toml", service);
        Config::load(&path)
            .map(|c| c.services[0].actions.clone())
            .map_err(|e| format!("{e:#}").replace(&tmp.path().display().to_string(), "DIR"))
    }

    #[test]
    fn health_actions_are_off_unless_set_and_checked_when_set() {
        let off = actions("", "unit = \"web\"\n").unwrap();
        assert_eq!(off, Actions::default());
        assert!(!off.enabled());

        let on = actions(
            "",
            "unit = \"web\"\nstuck_after = \"1m\"\nwedged_after = \"2m\"\n\
             kill_stuck_after = \"10m\"\nkill_signal = \"QUIT\"\nkill_grace = \"30s\"\n\
             actions = \"report\"\n",
        )
        .unwrap();
        assert_eq!(
            on,
            Actions {
                wedged_after: Some(Duration::from_secs(120)),
                kill_stuck_after: Some(Duration::from_secs(600)),
                kill_signal: KillSignal::Quit,
                kill_grace: Duration::from_secs(30),
                mode: ActionMode::Report,
            }
        );

        for (service, expected) in [
            ("kill_stuck_after = \"10m\"\n", "set stuck_after too"),
            (
                "stuck_after = \"5m\"\nkill_stuck_after = \"1m\"\n",
                "is shorter than stuck_after",
            ),
            ("kill_signal = \"STOP\"\n", "kill_signal"),
            ("kill_grace = \"0s\"\n", "kill_grace"),
            ("actions = \"maybe\"\n", "actions"),
            ("wedged_after = \"1ms\"\n", "wedged_after"),
        ] {
            let message = actions("", &format!("unit = \"web\"\n{service}")).unwrap_err();
            assert!(message.contains(expected), "{service}: {message}");
        }
        let message = actions(
            "bus = \"none\"\n",
            "unit = \"web\"\nnotify = \"none\"\nwedged_after = \"1m\"\n",
        )
        .unwrap_err();
        assert!(message.contains("health actions need the bus"), "{message}");
    }

    #[test]
    fn interval_is_bounded_from_10ms_to_an_hour() {
        let service = "unit = \"web\"\n";
        for (text, expected) in [
            ("10ms", Duration::from_millis(10)),
            ("250ms", Duration::from_millis(250)),
            ("1h", Duration::from_secs(3600)),
        ] {
            let agent = format!("interval = \"{text}\"\n");
            assert_eq!(load(&agent, service).unwrap().0, expected, "{text}");
        }
        for text in ["0s", "9ms", "1h 1ms", "61m", "500000000000y"] {
            let agent = format!("bus = \"session\"\ninterval = \"{text}\"\n");
            let message = load(&agent, service).unwrap_err();
            assert!(message.starts_with("DIR/agent.toml: "), "{message}");
            assert!(
                message.contains("line 2") && message.contains("interval"),
                "{message}"
            );
            assert!(
                message.contains(&format!("duration \"{text}\" is out of range"))
                    && message.contains("from 10ms to 1h"),
                "{message}"
            );
        }
    }

    #[test]
    fn stuck_after_is_bounded_from_a_second_to_30_days() {
        for (text, expected) in [
            ("1s", Duration::from_secs(1)),
            ("5m", Duration::from_secs(300)),
            ("30days", Duration::from_secs(30 * 86_400)),
        ] {
            let service = format!("unit = \"web\"\nstuck_after = \"{text}\"\n");
            assert_eq!(load("", &service).unwrap().1, Some(expected), "{text}");
        }
        for text in ["0s", "999ms", "31days", "500000000000y"] {
            let service = format!("unit = \"web\"\nstuck_after = \"{text}\"\n");
            let message = load("", &service).unwrap_err();
            assert!(
                message.starts_with("DIR/services.d/web.toml: ")
                    && message.contains("line 2")
                    && message.contains("stuck_after"),
                "{message}"
            );
            assert!(
                message.contains("is out of range") && message.contains("from 1s to 30days"),
                "{message}"
            );
        }
        // A duration humantime cannot hold at all is a parse error, still located.
        let service = "unit = \"web\"\nstuck_after = \"99999999999999999999999y\"\n";
        let message = load("", service).unwrap_err();
        assert!(
            message.contains("line 2") && message.contains("invalid duration"),
            "{message}"
        );
    }

    #[test]
    fn a_directory_must_be_absolute_and_in_normal_form() {
        for (text, normal) in [
            ("/run/web/", "/run/web"),
            ("/run//web", "/run/web"),
            ("//run/web", "/run/web"),
            ("/run/./web", "/run/web"),
            ("/run/web/.", "/run/web"),
            ("/run/web/../jobs", "/run/jobs"),
            ("/run/web/..", "/run"),
            ("/../run/web", "/run/web"),
        ] {
            let message = check_directory(text).unwrap_err();
            assert!(
                message.contains("not in normal form")
                    && message.contains(&format!("write {normal:?}")),
                "{text}: {message}"
            );
        }
        for text in ["run/web", "", "./run/web", "~/sb"] {
            let message = check_directory(text).unwrap_err();
            assert!(message.contains("must be an absolute path"), "{message}");
        }
        // Through the file: the file, the line and the key.
        let message = load("", "unit = \"web\"\ndirectory = \"/run/web/../etc\"\n").unwrap_err();
        assert!(
            message.starts_with("DIR/services.d/web.toml: ")
                && message.contains("line 2")
                && message.contains("directory")
                && message.contains("write \"/run/etc\""),
            "{message}"
        );
    }

    #[test]
    fn system_directories_and_what_is_inside_some_are_refused() {
        for text in SYSTEM_DIRECTORIES.into_iter().chain(["/lib32", "/libx32"]) {
            let message = check_directory(text).unwrap_err();
            assert!(
                message.contains("is a system directory"),
                "{text}: {message}"
            );
        }
        for (text, tree) in [
            ("/etc/web", "/etc"),
            ("/etc/scoreboard/services.d", "/etc"),
            ("/usr/lib/web", "/usr"),
            ("/bin/web", "/bin"),
            ("/sbin/web", "/sbin"),
            ("/lib/web", "/lib"),
            ("/lib64/web", "/lib64"),
            ("/lib32/web", "/lib32"),
            ("/boot/web", "/boot"),
            ("/dev/shm/web", "/dev"),
            ("/proc/1/fd", "/proc"),
            ("/sys/fs/cgroup", "/sys"),
            ("/run/systemd/web", "/run/systemd"),
            ("/run/user/1000/web", "/run/user"),
        ] {
            let message = check_directory(text).unwrap_err();
            assert!(
                message.contains(&format!("is inside {tree},")),
                "{text}: {message}"
            );
        }
        for text in [
            "/run/web",
            "/run/web/scoreboard",
            "/run/users/web",
            "/run/systemd-web/sb",
            "/var/lib/web/scoreboard",
            "/var/run-web",
            "/var/log/web/sb",
            "/srv/web",
            "/opt/web/sb",
            "/home/web/sb",
            "/root/sb",
            "/tmp/sb",
            "/var/tmp/web/sb",
            "/etcetera/sb",
            "/usrlocal/sb",
            "/run/web\\x2dpool/scoreboard",
        ] {
            assert_eq!(check_directory(text), Ok(()), "{text}");
        }
        let message = load("", "unit = \"web\"\ndirectory = \"/etc\"\n").unwrap_err();
        assert!(
            message.contains("line 2") && message.contains("is a system directory"),
            "{message}"
        );
    }

    #[test]
    fn a_default_directory_is_checked_too() {
        for unit in ["systemd", "user"] {
            let message = load("", &format!("unit = \"{unit}\"\n")).unwrap_err();
            assert!(
                message.starts_with("DIR/services.d/web.toml: ")
                    && message.contains(&format!("is inside /run/{unit},"))
                    && message.contains(&format!("the default for {unit}.service")),
                "{message}"
            );
        }
    }

    #[test]
    fn services_may_not_share_a_directory_or_nest_one_in_another() {
        let tmp = tempfile::tempdir().unwrap();
        let agent = write(tmp.path(), "agent.toml", "");
        let service = |file: &str, unit: &str, directory: &str| {
            write(
                tmp.path(),
                &format!("services.d/{file}"),
                &format!("unit = \"{unit}\"\ndirectory = \"{directory}\"\n"),
            )
        };
        let a = service("a.toml", "a", "/run/a/scoreboard");
        let b = service("b.toml", "b", "/run/a/scoreboard");
        let message = format!("{:#}", Config::load(&agent).unwrap_err());
        assert!(
            message.starts_with(&format!("{}: ", b.display()))
                && message.contains(&a.display().to_string())
                && message.contains("is also /run/a/scoreboard"),
            "{message}"
        );

        service("b.toml", "b", "/run/a/scoreboard/b");
        let message = format!("{:#}", Config::load(&agent).unwrap_err());
        assert!(
            message.contains(&b.display().to_string())
                && message.contains(&a.display().to_string())
                && message.contains("/run/a/scoreboard/b of b.service is inside /run/a/scoreboard"),
            "{message}"
        );

        // The outer one in the later file: still found, naming both.
        service("a.toml", "a", "/run/a/scoreboard/b/c");
        service("b.toml", "b", "/run/a/scoreboard");
        let message = format!("{:#}", Config::load(&agent).unwrap_err());
        assert!(
            message.starts_with(&format!("{}: ", a.display()))
                && message.contains(&b.display().to_string()),
            "{message}"
        );

        // Neighbours, even with a common prefix of text, are fine.
        service("a.toml", "a", "/run/a/scoreboard");
        service("b.toml", "b", "/run/a/scoreboard-b");
        service("c.toml", "c", "/run/a-c/scoreboard");
        service("d.toml", "d", "/run/a/other");
        assert_eq!(Config::load(&agent).unwrap().services.len(), 4);
    }

    #[test]
    fn main_pid_mode_needs_a_bus() {
        let message = error_of("bus = \"none\"\n", "unit = \"web\"\n");
        assert!(message.contains("needs the bus"), "{message}");
        let tmp = tempfile::tempdir().unwrap();
        let agent = write(tmp.path(), "agent.toml", "bus = \"none\"\n");
        write(
            tmp.path(),
            "services.d/web.toml",
            "unit = \"web\"\nnotify = \"self\"\n",
        );
        assert_eq!(Config::load(&agent).unwrap().bus, Bus::None);
    }

    #[test]
    fn files_in_services_d_not_read_are_listed_as_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let agent = write(tmp.path(), "agent.toml", "");
        write(tmp.path(), "services.d/web.toml", "unit = \"web\"\n");
        // Not *.toml: never read, however broken.
        write(tmp.path(), "services.d/broken.conf", "unit = ");
        write(tmp.path(), "services.d/web.toml.dpkg-old", "unit = ");
        std::fs::create_dir(tmp.path().join("services.d/old")).unwrap();
        let config = Config::load(&agent).unwrap();
        assert_eq!(config.services.len(), 1);
        let services_d = tmp.path().join("services.d");
        assert_eq!(
            config.ignored,
            ["broken.conf", "old", "web.toml.dpkg-old"].map(|name| services_d.join(name))
        );
        let report = config.check_report();
        assert!(
            report.out.contains(&format!(
                "  ignored: {} (only *.toml files in services.d/ are read)\n",
                services_d.join("broken.conf").display()
            )),
            "{}",
            report.out
        );
        assert_eq!(
            report.out.matches("  ignored: ").count(),
            3,
            "{}",
            report.out
        );
    }

    #[test]
    fn a_state_directory_that_cannot_be_used_is_a_warning_but_the_default_is_the_units() {
        let tmp = tempfile::tempdir().unwrap();
        let agent = write(tmp.path(), "agent.toml", "");
        let mut config = Config::load(&agent).unwrap();
        // The packaged default is made by the unit's RuntimeDirectory= at start.
        config.state_directory = DEFAULT_STATE_DIRECTORY.into();
        if !config.state_directory.exists() {
            assert_eq!(
                config.check_state_directory(),
                StateDirectoryCheck::MadeByTheUnit
            );
            let report = config.check_report();
            assert!(report.warnings.is_empty(), "{:?}", report.warnings);
            assert!(
                report.out.contains(
                    "  state_directory /run/scoreboard (not there yet: the unit's \
                     RuntimeDirectory= makes it when the agent starts)\n"
                ),
                "{}",
                report.out
            );
        }
        config.state_directory = tmp.path().to_owned();
        assert_eq!(config.check_state_directory(), StateDirectoryCheck::Present);
        assert!(config.check_report().warnings.is_empty());

        config.state_directory = tmp.path().join("missing");
        let report = config.check_report();
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(
            report.warnings[0].contains("missing does not exist and the agent does not create it")
                && report.warnings[0].contains("a restart resets stuck timers"),
            "{:?}",
            report.warnings
        );
        assert!(
            report.out.contains("missing (see the warning)\n"),
            "{}",
            report.out
        );

        config.state_directory = agent.clone();
        let warnings = config.check_report().warnings;
        assert!(warnings[0].contains("is not a directory"), "{warnings:?}");
    }

    #[test]
    fn the_check_shows_the_metrics_settings() {
        let tmp = tempfile::tempdir().unwrap();
        let agent = write(tmp.path(), "agent.toml", "");
        let report = Config::load(&agent).unwrap().check_report();
        assert!(report.out.contains("\n  metrics: off\n"), "{}", report.out);

        let textfile = tmp.path().join("scoreboard.prom");
        write(
            tmp.path(),
            "agent.toml",
            &format!(
                "[metrics]\nlisten = \"127.0.0.1:9464\"\ntextfile = \"{}\"\n",
                textfile.display()
            ),
        );
        let report = Config::load(&agent).unwrap().check_report();
        assert!(
            report.out.contains(&format!(
                "\n  metrics: listen 127.0.0.1:9464 (GET /metrics), textfile {}\n",
                textfile.display()
            )),
            "{}",
            report.out
        );

        write(
            tmp.path(),
            "agent.toml",
            "[metrics]\ntextfile = \"/nonexistent/node-exporter/scoreboard.prom\"\n",
        );
        let report = Config::load(&agent).unwrap().check_report();
        assert!(
            report
                .out
                .contains("\n  metrics: textfile /nonexistent/node-exporter/scoreboard.prom\n"),
            "{}",
            report.out
        );
        assert!(
            report.warnings.iter().any(|w| w.contains(
                "its directory /nonexistent/node-exporter does not exist; the agent does not create it"
            )),
            "{:?}",
            report.warnings
        );
    }

    #[test]
    fn the_packaged_default_configuration_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/agent.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(
            (config.interval, config.bus),
            (Duration::from_secs(1), Bus::System)
        );
        assert!(config.services.is_empty());
    }

    #[test]
    fn a_unit_configured_twice_is_refused_naming_both_files() {
        let tmp = tempfile::tempdir().unwrap();
        let agent = write(tmp.path(), "agent.toml", "");
        write(tmp.path(), "services.d/a.toml", "unit = \"web\"\n");
        write(tmp.path(), "services.d/b.toml", "unit = \"web.service\"\n");
        let message = Config::load(&agent).unwrap_err().to_string();
        assert!(
            message.contains("b.toml") && message.contains("a.toml"),
            "{message}"
        );
    }

    #[test]
    fn budgets_default_and_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("agent.toml"), "").unwrap();
        std::fs::create_dir(tmp.path().join("services.d")).unwrap();
        let service = tmp.path().join("services.d/web.toml");
        std::fs::write(&service, "unit = \"web\"\n").unwrap();
        let config = Config::load(&tmp.path().join("agent.toml")).unwrap();
        assert_eq!(
            config.services[0].max_workers,
            scoreboard::DEFAULT_MAX_WORKERS
        );
        std::fs::write(
            &service,
            "unit = \"web\"\nmax_workers = 10\nmax_status_bytes = 8192\n",
        )
        .unwrap();
        let config = Config::load(&tmp.path().join("agent.toml")).unwrap();
        assert_eq!(config.services[0].max_workers, 10);
        assert_eq!(config.services[0].max_status_bytes, 8192);
        std::fs::write(&service, "unit = \"web\"\nmax_workers = 0\n").unwrap();
        let error = format!(
            "{:#}",
            Config::load(&tmp.path().join("agent.toml")).unwrap_err()
        );
        assert!(
            error.contains("max_workers") && error.contains("from 1 to 1000000"),
            "{error}"
        );
    }
}
