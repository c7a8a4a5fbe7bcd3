//! `scoreboardctl status`, `list` and `watch`: what the watched services' scoreboards
//! say, from the running agent over D-Bus, or — when no agent answers — read from the
//! configured directories directly.
//!
//! Both sources produce the same [`ServiceReport`]s, rendered by the same code. Read
//! directly, a status has no history (and reading removes dead workers' files, as any
//! reader does), so the time since it last changed and stuck-ness are unknown: `-` in
//! tables, `null` in JSON.

use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bus::{ManagerProxy, ServiceProxy, WorkerInfo};
use crate::config::{Bus, Config, Service, normalize_unit};
use crate::core::pool::{Cause, Pool};
pub use crate::core::worker::WorkerReport;
use crate::escape::escape_controls;

pub mod demo;
pub mod enable;
pub mod kill;
pub mod render;
pub mod watch;

use render::{list_table, service_table};

/// The runtime a `scoreboardctl` command asks the bus on: one thread, for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Runs `future` on a [`runtime`] of its own: scoreboardctl asks and exits.
pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    Ok(runtime()?.block_on(future))
}

/// `scoreboardctl` exit statuses, as `systemctl status` uses them.
pub mod exit {
    /// Everything shown.
    pub const OK: u8 = 0;
    /// The configuration or a directory could not be read (by us, or by the agent).
    pub const FAILURE: u8 = 1;
    /// A service's scoreboard directory does not exist: the service is not running.
    pub const NOT_RUNNING: u8 = 3;
    /// No such service is watched.
    pub const NO_SUCH_UNIT: u8 = 4;
}

/// Where a report came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The running agent, over D-Bus: with history.
    Agent,
    /// The scoreboard directories, read by scoreboardctl itself.
    Directory,
}

/// One service, as `status --json` prints it. A stable interface: fields are only
/// ever added.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    /// `web.service`.
    pub unit: String,
    /// Its scoreboard directory.
    pub directory: String,
    /// Whether the scoreboard directory exists (the service is running).
    pub running: bool,
    /// The line the agent sends as `STATUS=`.
    pub summary: String,
    /// Live workers, sorted by id.
    pub workers: Vec<WorkerReport>,
    /// The agent's last health action on the service, with when (`null` when none, or
    /// read without the agent).
    pub last_action: Option<String>,
    /// Why the agent cannot read the scoreboard directory, as "cause: detail" (`null`
    /// while it reads it, or read without the agent): the workers are then unknown.
    pub unseen: Option<String>,
}

/// What the agent over D-Bus, or the directories, say about the watched services.
pub struct Reports {
    /// Where they came from.
    pub source: Source,
    /// One per watched service, sorted by unit.
    pub services: Vec<ServiceReport>,
    /// Warnings to print on stderr (files skipped, dead workers removed, the fallback).
    pub warnings: Vec<String>,
}

/// Asks the agent; when none answers, reads the configured directories.
pub async fn gather(config_path: &std::path::Path) -> anyhow::Result<Reports> {
    Gatherer::default().gather(config_path).await
}

/// [`gather`] again and again (`scoreboardctl watch`), over one bus connection kept for
/// as long as it works.
#[derive(Default)]
pub struct Gatherer {
    connection: Option<zbus::Connection>,
}

impl Gatherer {
    /// Asks the agent; when none answers, reads the configured directories. With
    /// `bus = "none"` no agent is asked: reading directly is then the way, and nothing
    /// is said about it.
    pub async fn gather(&mut self, config_path: &std::path::Path) -> anyhow::Result<Reports> {
        let config = Config::load(config_path);
        let bus = config.as_ref().map_or(Bus::System, |c| c.bus);
        let asked = match bus {
            Bus::None => None,
            Bus::System | Bus::Session => {
                let asked = match self.connection(bus).await {
                    Ok(connection) => from_agent(connection).await,
                    Err(e) => Err(NoAgent::Connect(e)),
                };
                if asked.is_err() {
                    // Connected anew next time: the bus may have been restarted meanwhile.
                    self.connection = None;
                }
                Some(asked)
            }
        };
        finish(config, bus, asked)
    }

    async fn connection(&mut self, bus: Bus) -> anyhow::Result<&zbus::Connection> {
        if self.connection.is_none() {
            let connection = match bus {
                Bus::System => zbus::Connection::system().await?,
                Bus::Session => zbus::Connection::session().await?,
                Bus::None => anyhow::bail!("the configuration sets bus = \"none\""),
            };
            self.connection = Some(connection);
        }
        Ok(self.connection.as_ref().expect("connected above"))
    }
}

/// What the agent said: the services, and warnings.
type AgentAnswer = (Vec<ServiceReport>, Vec<String>);

/// Why the agent gave no answer.
#[derive(Debug)]
enum NoAgent {
    /// The bus itself could not be reached.
    Connect(anyhow::Error),
    /// Nobody owns the agent's name on the bus.
    NotRunning,
    /// The agent did not answer in time.
    Timeout,
    /// Any other failure on the way.
    Failed(anyhow::Error),
}

impl std::fmt::Display for NoAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAgent::Connect(e) => {
                write!(f, "cannot connect to it: {}", crate::error_chain::text(e))
            }
            NoAgent::NotRunning => write!(
                f,
                "nothing owns {} there: scoreboard-agent is not running",
                crate::bus::NAME
            ),
            NoAgent::Timeout => write!(f, "the agent did not answer in 5 s"),
            NoAgent::Failed(e) => f.write_str(&crate::error_chain::text(e)),
        }
    }
}

impl From<zbus::Error> for NoAgent {
    fn from(e: zbus::Error) -> NoAgent {
        const NOT_OWNED: [&str; 2] = [
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "org.freedesktop.DBus.Error.NameHasNoOwner",
        ];
        let not_owned = match &e {
            zbus::Error::FDO(fdo) => matches!(
                **fdo,
                zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
            ),
            zbus::Error::MethodError(name, ..) => NOT_OWNED.contains(&name.as_str()),
            _ => false,
        };
        if not_owned {
            NoAgent::NotRunning
        } else {
            NoAgent::Failed(e.into())
        }
    }
}

/// What to do when neither the agent nor the directory could show a service; `None`
/// when there is nothing to advise.
fn advice(bus: Bus, permission_denied: bool) -> Option<String> {
    let directly =
        "run scoreboardctl as root or as the service's user to read the directory directly";
    let start = match bus {
        Bus::System => "start the agent (systemctl start scoreboard-agent)",
        Bus::Session => "start the agent (scoreboard-agent, on the session bus)",
        Bus::None => {
            return permission_denied.then(|| {
                format!(
                    "with bus = \"none\" there is no agent to ask, so scoreboardctl reads the \
                     directories itself: {directly}"
                )
            });
        }
    };
    Some(if permission_denied {
        format!("{start}, or {directly}")
    } else {
        format!("{start} to see it through the agent")
    })
}

/// The agent's answer, or the directories read directly when there is none (or when
/// the configuration names no bus: `asked` is `None`).
fn finish(
    config: anyhow::Result<Config>,
    bus: Bus,
    asked: Option<Result<AgentAnswer, NoAgent>>,
) -> anyhow::Result<Reports> {
    let why_not = match asked {
        Some(Ok((services, warnings))) => {
            return Ok(Reports {
                source: Source::Agent,
                services,
                warnings,
            });
        }
        Some(Err(e)) => Some(format!("no agent answers on the {bus} ({e})")),
        None => None,
    };
    let config = match (config, &why_not) {
        (Ok(config), _) => config,
        (Err(e), Some(why_not)) => {
            anyhow::bail!(
                "{why_not}, and the configuration cannot be read: {}",
                crate::error_chain::text(&e)
            )
        }
        (Err(e), None) => return Err(e),
    };
    // Without the agent, reading directly needs the directory owner's permission: an
    // unprivileged user must learn first that the agent is not answering, then why the
    // directory could not be read, then what to do.
    let mut reports = match from_directories(&config) {
        Ok(reports) => reports,
        Err(unreadable) => {
            let lines = [
                Some(format!(
                    "cannot read {}'s scoreboard{}: {}",
                    unreadable.unit,
                    if why_not.is_some() { " directly" } else { "" },
                    unreadable.error
                )),
                advice(
                    bus,
                    unreadable.error.kind() == std::io::ErrorKind::PermissionDenied,
                ),
            ];
            let lines = std::iter::once(why_not).chain(lines);
            anyhow::bail!("{}", lines.flatten().collect::<Vec<_>>().join("\n"));
        }
    };
    if let Some(why_not) = why_not {
        reports.warnings.insert(
            0,
            format!("{why_not}; reading the scoreboard directories directly"),
        );
    }
    Ok(reports)
}

/// The agent's reports, and warnings (per-worker details the agent would not show).
async fn from_agent(connection: &zbus::Connection) -> Result<AgentAnswer, NoAgent> {
    let ask = async {
        let manager = ManagerProxy::new(connection).await?;
        let mut reports = Vec::new();
        let mut warnings = Vec::new();
        for (unit, path) in manager.list_services().await? {
            let service = ServiceProxy::builder(connection)
                .path(path)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await?;
            let directory = service.directory().await?;
            // The summary is public; per-worker details only for those who could read
            // the directory themselves, which the agent decides.
            let workers = match service.list_workers().await {
                Ok(workers) => workers.into_iter().map(WorkerInfo::into_report).collect(),
                Err(zbus::Error::FDO(e)) => match *e {
                    zbus::fdo::Error::AccessDenied(message) => {
                        warnings.push(format!("{unit}: per-worker details not shown: {message}"));
                        Vec::new()
                    }
                    other => return Err(zbus::Error::FDO(Box::new(other))),
                },
                Err(e) => return Err(e),
            };
            // An agent from before health actions has no such property: nothing to show.
            let last_action = service
                .last_action()
                .await
                .ok()
                .filter(|line| !line.is_empty());
            let unseen = service.unseen().await.ok().filter(|why| !why.is_empty());
            // The agent's view of the directory, not ours: we may not be allowed to see it.
            let running = match &unseen {
                Some(why) => !why.starts_with(&format!("{}:", Cause::Missing)),
                None => std::path::Path::new(&directory).is_dir(),
            };
            reports.push(ServiceReport {
                last_action,
                unseen,
                running,
                summary: service.summary().await?,
                workers,
                directory,
                unit,
            });
        }
        Ok::<_, zbus::Error>((reports, warnings))
    };
    let (mut reports, warnings) = tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .map_err(|_| NoAgent::Timeout)??;
    reports.sort_by(|a, b| a.unit.cmp(&b.unit));
    Ok((reports, warnings))
}

/// A service's scoreboard directory that could not be read.
#[derive(Debug)]
pub struct Unreadable {
    /// The service.
    pub unit: String,
    /// What reading it said; it names the directory.
    pub error: scoreboard::Error,
}

/// Reads every configured service's directory once.
pub fn from_directories(config: &Config) -> Result<Reports, Unreadable> {
    let mut reports = Reports {
        source: Source::Directory,
        services: Vec::new(),
        warnings: Vec::new(),
    };
    for service in &config.services {
        let at = Instant::now();
        let pool = match scoreboard::read_dir(&service.directory) {
            Ok(mut snapshot) => {
                for skipped in &snapshot.skipped {
                    reports
                        .warnings
                        .push(format!("{}: warning: {skipped}", service.unit));
                }
                for id in &snapshot.reaped {
                    reports.warnings.push(format!(
                        "{}: removed the file of dead worker {id}",
                        service.unit
                    ));
                }
                let mut pool = Pool::new(service);
                pool.observe(&mut snapshot, at);
                Some(pool)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && e.path() == service.directory => {
                None
            }
            Err(error) => {
                return Err(Unreadable {
                    unit: service.unit.clone(),
                    error,
                });
            }
        };
        reports
            .services
            .push(direct_report(service, pool.as_ref(), at));
    }
    Ok(reports)
}

fn direct_report(service: &Service, pool: Option<&Pool>, at: Instant) -> ServiceReport {
    ServiceReport {
        last_action: None,
        unseen: None,
        unit: service.unit.clone(),
        directory: service.directory.display().to_string(),
        running: pool.is_some(),
        summary: match pool {
            Some(pool) => pool.status_line(at),
            None => "not running".to_owned(),
        },
        workers: pool
            .iter()
            .flat_map(|pool| pool.workers(at))
            .map(WorkerReport::without_history)
            .collect(),
    }
}

/// Prints the warnings, one line each: they name files and worker ids, which a
/// service's user chooses (a file name may hold a newline).
fn print_warnings(reports: &Reports, err: &mut dyn Write) -> std::io::Result<()> {
    for warning in &reports.warnings {
        writeln!(err, "scoreboardctl: {}", escape_controls(warning))?;
    }
    Ok(())
}

/// Prints the warnings, then `status [UNIT]`. Returns the exit status.
pub fn status(
    reports: &Reports,
    unit: Option<&str>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<u8> {
    print_warnings(reports, err)?;
    let selected: Vec<ServiceReport> = match unit {
        Some(unit) => {
            let wanted = normalize_unit(unit).unwrap_or_else(|_| unit.to_owned());
            match reports.services.iter().find(|s| s.unit == wanted) {
                Some(report) => vec![report.clone()],
                None => {
                    writeln!(
                        err,
                        "scoreboardctl: {unit} is not watched (see scoreboardctl list; scoreboardctl enable adds it)"
                    )?;
                    return Ok(exit::NO_SUCH_UNIT);
                }
            }
        }
        None => reports.services.clone(),
    };
    if json {
        writeln!(out, "{}", render::document(reports.source, &selected)?)?;
    } else {
        for report in &selected {
            write!(out, "{}", service_table(report))?;
        }
    }
    let not_running = unit.is_some() && selected.iter().any(|s| !s.running);
    let unseen = unit.is_some() && selected.iter().any(|s| s.running && s.unseen.is_some());
    Ok(if unseen {
        exit::FAILURE
    } else if not_running {
        exit::NOT_RUNNING
    } else {
        exit::OK
    })
}

/// Prints the warnings, then `list`: each watched service with its worker count and
/// summary. `--json` prints the `status --json` document without the workers.
pub fn list(
    reports: &Reports,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<u8> {
    print_warnings(reports, err)?;
    if json {
        let services: Vec<ServiceReport> = reports
            .services
            .iter()
            .map(|s| ServiceReport {
                workers: Vec::new(),
                ..s.clone()
            })
            .collect();
        writeln!(out, "{}", render::document(reports.source, &services)?)?;
        return Ok(exit::OK);
    }
    write!(out, "{}", list_table(&reports.services))?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests;
