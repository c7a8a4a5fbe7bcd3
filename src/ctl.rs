//! `scoreboardctl status` and `list`: what the configured services' scoreboards say.
//!
//! Until the agent serves its view on D-Bus, these read the directories directly (and,
//! like any reader, remove dead workers' files). Read directly, a status has no history,
//! so the time since it last changed — and with it stuck-ness — is unknown and shown as
//! `-` (`null` in JSON).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::config::{Config, Service};
use crate::summary::{Pool, status_line};
use crate::view;

/// `scoreboardctl` exit statuses, as `systemctl status` uses them.
pub mod exit {
    /// Everything shown.
    pub const OK: u8 = 0;
    /// The configuration or a directory could not be read.
    pub const FAILURE: u8 = 1;
    /// A service's scoreboard directory does not exist: the service is not running.
    pub const NOT_RUNNING: u8 = 3;
    /// No such service in the configuration.
    pub const NO_SUCH_UNIT: u8 = 4;
}

/// One service as `status --json` prints it.
#[derive(Debug, Serialize)]
pub struct ServiceJson {
    /// `web.service`.
    pub unit: String,
    /// Its scoreboard directory.
    pub directory: String,
    /// Whether the directory exists.
    pub running: bool,
    /// The line the agent sends as `STATUS=`.
    pub summary: String,
    /// Workers, sorted by id.
    pub workers: Vec<WorkerDetailJson>,
}

/// One worker in [`ServiceJson`].
#[derive(Debug, Serialize)]
pub struct WorkerDetailJson {
    /// The worker id.
    pub id: String,
    /// Its state by the service's rule.
    pub state: String,
    /// The status, lossy UTF-8.
    pub status: String,
    /// Seconds since the status changed; `null` when read without the agent.
    pub unchanged_seconds: Option<f64>,
    /// Whether it is stuck; `null` when read without the agent.
    pub stuck: Option<bool>,
}

/// A service's scoreboard as read now.
pub struct Reading {
    /// `None` when the directory does not exist.
    pub pool: Option<Pool>,
    /// Warnings to show on stderr.
    pub warnings: Vec<String>,
    /// When it was read.
    pub at: Instant,
}

/// Reads `service`'s directory once.
pub fn read_service(service: &Service) -> anyhow::Result<Reading> {
    let at = Instant::now();
    let snapshot = match scoreboard::read_dir(&service.directory) {
        Ok(snapshot) => snapshot,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && e.path() == service.directory => {
            return Ok(Reading {
                pool: None,
                warnings: Vec::new(),
                at,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let mut warnings: Vec<String> = snapshot
        .skipped
        .iter()
        .map(|s| format!("warning: {s}"))
        .collect();
    warnings.extend(
        snapshot
            .reaped
            .iter()
            .map(|id| format!("removed the file of dead worker {id}")),
    );
    let mut pool = Pool::new(service);
    pool.observe(&snapshot, at);
    Ok(Reading {
        pool: Some(pool),
        warnings,
        at,
    })
}

impl Reading {
    /// The summary line, or why there is none.
    pub fn summary(&self, service: &Service) -> String {
        match &self.pool {
            Some(pool) => status_line(&pool.summary(self.at), &service.summary, &service.unit),
            None => format!("not running (no {})", service.directory.display()),
        }
    }

    /// The JSON view of this reading.
    pub fn json(&self, service: &Service) -> ServiceJson {
        ServiceJson {
            unit: service.unit.clone(),
            directory: service.directory.display().to_string(),
            running: self.pool.is_some(),
            summary: self.summary(service),
            workers: self
                .pool
                .iter()
                .flat_map(|pool| pool.workers(self.at))
                .map(|w| WorkerDetailJson {
                    id: w.id,
                    state: w.state,
                    status: w.status,
                    unchanged_seconds: None,
                    stuck: None,
                })
                .collect(),
        }
    }

    /// The human view: a header line, then `ID STATE UNCHANGED STUCK STATUS` rows.
    pub fn table(&self, service: &Service) -> String {
        let mut out = format!("● {} — {}\n", service.unit, self.summary(service));
        if let Some(pool) = &self.pool {
            out.push_str(&view::worker_table(&pool.workers(self.at), false));
        }
        out
    }
}

/// `status [UNIT] [--json]`: the named service, or every configured one.
pub fn status(
    config: &Config,
    unit: Option<&str>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<u8> {
    let services: Vec<&Service> = match unit {
        Some(unit) => match config.service(unit) {
            Some(service) => vec![service],
            None => {
                writeln!(
                    err,
                    "scoreboardctl: {unit} is not watched: no file in {} names it",
                    services_dir(&config.path).display()
                )?;
                return Ok(exit::NO_SUCH_UNIT);
            }
        },
        None => config.services.iter().collect(),
    };
    let mut code = exit::OK;
    let mut documents = Vec::new();
    for service in services {
        let reading = read_service(service)?;
        for warning in &reading.warnings {
            writeln!(err, "scoreboardctl: {}: {warning}", service.unit)?;
        }
        if reading.pool.is_none() && unit.is_some() {
            code = exit::NOT_RUNNING;
        }
        if json {
            documents.push(reading.json(service));
        } else {
            write!(out, "{}", reading.table(service))?;
        }
    }
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&serde_json::json!({ "services": documents }))?
        )?;
    }
    Ok(code)
}

/// `list [--json]`: every configured service with its worker count and summary.
pub fn list(
    config: &Config,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<u8> {
    let mut rows = Vec::new();
    for service in &config.services {
        let reading = read_service(service)?;
        for warning in &reading.warnings {
            writeln!(err, "scoreboardctl: {}: {warning}", service.unit)?;
        }
        rows.push((
            service,
            reading.pool.as_ref().map(Pool::len),
            reading.summary(service),
        ));
    }
    if json {
        let services: Vec<_> = rows
            .iter()
            .map(|(service, workers, summary)| {
                serde_json::json!({
                    "unit": service.unit,
                    "directory": service.directory,
                    "workers": workers,
                    "summary": summary,
                })
            })
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string(&serde_json::json!({ "services": services }))?
        )?;
        return Ok(exit::OK);
    }
    let unit_width = rows
        .iter()
        .map(|(s, _, _)| s.unit.len())
        .max()
        .unwrap_or(0)
        .max(4);
    writeln!(out, "{:<unit_width$}  WORKERS  SUMMARY", "UNIT")?;
    for (service, workers, summary) in &rows {
        let workers = workers.map_or_else(|| "-".to_owned(), |n| n.to_string());
        writeln!(
            out,
            "{:<unit_width$}  {workers:<7}  {summary}",
            service.unit
        )?;
    }
    Ok(exit::OK)
}

fn services_dir(config: &Path) -> std::path::PathBuf {
    config.with_file_name("services.d")
}
