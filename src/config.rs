//! The agent's configuration: `agent.toml` plus one file per watched service in the
//! `services.d/` beside it, parsed with serde, then validated into a typed [`Config`]
//! before anything starts.
//!
//! Values that can be wrong (durations, enumerations, JSON pointers) are checked while
//! deserializing, so a mistake is reported by toml with the file, line, column and the
//! offending key and value in view.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// Where the packaged configuration lives.
pub const DEFAULT_CONFIG: &str = "/etc/scoreboard/agent.toml";

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
    interval: Option<HumanDuration>,
    bus: Option<Bus>,
    notify_socket: Option<PathBuf>,
    metrics: Option<MetricsConfig>,
    state_directory: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    unit: UnitName,
    directory: Option<PathBuf>,
    state: Option<StateRule>,
    idle_states: Option<Vec<String>>,
    stuck_after: Option<HumanDuration>,
    summary: Option<Template>,
    notify: Option<NotifyMode>,
}

/// A duration written as "250ms", "1s", "5m".
#[derive(Debug, Clone, Copy)]
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let duration = humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?}: {e} (write e.g. \"250ms\", \"1s\", \"5m\")"
            ))
        })?;
        if duration.is_zero() {
            return Err(serde::de::Error::custom(
                "a duration must be longer than zero",
            ));
        }
        Ok(HumanDuration(duration))
    }
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
        crate::summary::check_template(&text).map_err(serde::de::Error::custom)?;
        Ok(Template(text))
    }
}

/// The default summary template.
pub const DEFAULT_SUMMARY: &str = "{total} workers: {counts}";

impl Config {
    /// Reads `path` and every `*.toml` in `services.d/` beside it.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let raw: RawAgent = toml::from_str(&text).map_err(|e| located(path, e))?;
        let mut services = Vec::new();
        let services_dir = path.with_file_name("services.d");
        match std::fs::read_dir(&services_dir) {
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                    .collect();
                files.sort();
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
        Ok(Config {
            path: path.to_owned(),
            interval: raw.interval.map_or(Duration::from_secs(1), |d| d.0),
            bus,
            notify_socket: raw.notify_socket,
            metrics: raw.metrics.unwrap_or_default(),
            state_directory: raw
                .state_directory
                .unwrap_or_else(|| crate::state::DEFAULT_STATE_DIRECTORY.into()),
            services,
        })
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
    let raw: RawService = toml::from_str(&text).map_err(|e| located(path, e))?;
    let unit = raw.unit.0;
    let directory = raw.directory.unwrap_or_else(|| default_directory(&unit));
    if !directory.is_absolute() {
        bail!(
            "{}: directory {} must be an absolute path",
            path.display(),
            directory.display()
        );
    }
    Ok(Service {
        source: path.to_owned(),
        directory,
        state: raw.state.unwrap_or(StateRule::FirstWord),
        idle_states: raw.idle_states.unwrap_or_else(|| vec!["idle".to_owned()]),
        stuck_after: raw.stuck_after.map(|d| d.0),
        summary: raw
            .summary
            .map_or_else(|| DEFAULT_SUMMARY.to_owned(), |t| t.0),
        notify: raw.notify.unwrap_or(NotifyMode::MainPid),
        unit,
    })
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
        assert!(message.contains("longer than zero"), "{message}");
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
}
