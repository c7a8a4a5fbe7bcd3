//! What `scoreboard-agent --check-config` says beyond "it loads": whether the state
//! directory and the metrics textfile's directory can be used, whether the agent's unit
//! lets it write each scoreboard, and whether it lets it carry out each service's
//! health actions.

use std::path::Path;

use super::{ActionMode, Config, DEFAULT_STATE_DIRECTORY, Service};
use crate::io::systemd::{AGENT_UNIT, AgentUnit, Systemd};

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

impl Config {
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
}

/// The agent unit's file-system protection, as systemd reports it: what it may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    /// `ProtectSystem=`: `strict` makes everything but the listed paths read-only.
    pub protect_system: String,
    /// `ReadWritePaths=`, without systemd's `-`/`+` prefixes.
    pub read_write_paths: Vec<std::path::PathBuf>,
}

impl Protection {
    /// From the unit's `ProtectSystem=` and `ReadWritePaths=` (with or without
    /// systemd's `-`/`+` prefixes).
    pub fn new(protect_system: &str, read_write_paths: &[String]) -> Protection {
        Protection {
            protect_system: protect_system.to_owned(),
            read_write_paths: read_write_paths
                .iter()
                .map(|p| std::path::PathBuf::from(p.trim_start_matches(['-', '+'])))
                .collect(),
        }
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

/// `CAP_KILL`'s number (linux/capability.h): its bit in a capability mask.
const CAP_KILL: u32 = 5;

/// What the agent may do to a stuck worker, another user's process: what
/// `kill_stuck_after` needs beyond the shipped unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentPrivileges {
    /// `CAP_KILL`, to signal another user's process: in the capability bounding set and
    /// the ambient set, the agent not being root.
    pub cap_kill: bool,
    /// Other users' processes in `/proc` (`ProtectProc=default`, `ProcSubset=all`),
    /// where the agent checks a worker's cgroup, user and lock before signalling it.
    pub sees_processes: bool,
}

impl AgentPrivileges {
    /// What a unit with these settings grants the agent.
    pub fn of_unit(
        capability_bounding_set: u64,
        ambient_capabilities: u64,
        protect_proc: &str,
        proc_subset: &str,
    ) -> AgentPrivileges {
        let has_kill = |mask: u64| mask & (1 << CAP_KILL) != 0;
        AgentPrivileges {
            cap_kill: has_kill(capability_bounding_set) && has_kill(ambient_capabilities),
            sees_processes: protect_proc == "default" && proc_subset == "all",
        }
    }

    /// What a process with the effective capability mask `effective` and `/proc`
    /// mounted with `proc_options` (its super options, as `/proc/self/mountinfo` shows
    /// them) may do: the agent's view of itself.
    pub fn of_process(effective: u64, proc_options: &str) -> AgentPrivileges {
        let hidden = proc_options.split(',').any(|option| {
            matches!(
                option,
                "hidepid=invisible" | "hidepid=2" | "hidepid=noaccess" | "hidepid=1" | "subset=pid"
            )
        });
        AgentPrivileges {
            cap_kill: effective & (1 << CAP_KILL) != 0,
            sees_processes: !hidden,
        }
    }
}

/// The one command that gives the agent what `kill_stuck_after` needs.
pub const KILL_GRANT_COMMAND: &str = "scoreboardctl grant-kill";

/// One sentence per service whose health actions cannot be carried out with
/// `privileges`: `kill_stuck_after` set (acting, not reporting) while the agent lacks
/// `CAP_KILL` or cannot see other users' processes. Each names what is missing and the
/// command that fixes it; what `--check-config` refuses and the agent logs at start.
pub fn unactionable(services: &[Service], privileges: AgentPrivileges) -> Vec<String> {
    let mut missing = Vec::new();
    if !privileges.cap_kill {
        missing.push("CAP_KILL (AmbientCapabilities=, CapabilityBoundingSet=)");
    }
    if !privileges.sees_processes {
        missing.push("other users' processes in /proc (ProtectProc=default, ProcSubset=all)");
    }
    if missing.is_empty() {
        return Vec::new();
    }
    services
        .iter()
        .filter(|s| {
            s.health_actions.kill_stuck_after.is_some() && s.health_actions.mode == ActionMode::Act
        })
        .map(|s| {
            format!(
                "{}: kill_stuck_after is set, but {AGENT_UNIT} lacks {}: stuck workers would \
                 be refused, never signalled. Run: {KILL_GRANT_COMMAND}",
                s.unit,
                missing.join(" and ")
            )
        })
        .collect()
}

/// `scoreboard-agent --check-config` of a configuration that loaded: the report on
/// stdout, warnings and refusals on stderr. Refused: a scoreboard the agent's unit makes
/// read-only, and health actions it does not let the agent carry out — where systemd
/// can say how it would start the agent (installed, on the system bus). Returns whether
/// nothing was refused.
pub fn check_config(config: &Config) -> bool {
    let report = config.check_report();
    print!("{}", report.out);
    for warning in &report.warnings {
        eprintln!("scoreboard-agent: warning: {warning}");
    }
    let refused = match agent_unit() {
        Ok(Some(unit)) => refusals(config, &unit),
        // Not installed, or no systemd here: nothing starts the agent as a unit.
        Ok(None) => Vec::new(),
        Err(e) => {
            // Unknown is not fine: said, so that a clean report is not read as checked.
            eprintln!(
                "scoreboard-agent: warning: {e:#}: read-only scoreboards and what                  kill_stuck_after needs are not checked"
            );
            Vec::new()
        }
    };
    for refusal in &refused {
        eprintln!("scoreboard-agent: error: {refusal}");
    }
    refused.is_empty()
}

/// What `--check-config` refuses, given how systemd would start the agent.
pub fn refusals(config: &Config, unit: &AgentUnit) -> Vec<String> {
    let protection = Protection::new(&unit.protect_system, &unit.read_write_paths);
    let privileges = AgentPrivileges::of_unit(
        unit.capability_bounding_set,
        unit.ambient_capabilities,
        &unit.protect_proc,
        &unit.proc_subset,
    );
    config
        .services
        .iter()
        .filter_map(|s| protection.refuses(&s.unit, &s.directory))
        .chain(unactionable(&config.services, privileges))
        .collect()
}

/// The agent's unit as systemd would start it; `None` where nothing would (the unit not
/// installed, or the system not booted with systemd); an error where systemd runs but
/// could not be asked.
fn agent_unit() -> anyhow::Result<Option<AgentUnit>> {
    // sd_booted(3): systemd is the init system.
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let systemd = Systemd::system()
            .await
            .map_err(|e| anyhow::anyhow!("connecting to the system bus: {e}"))?;
        systemd.agent_unit().await
    })
}
