//! What the agent and `scoreboardctl` ask systemd over D-Bus, through `#[proxy]`
//! traits of its Manager, Unit and Service interfaces: a service's main process and
//! whether it accepts notifications from it; a unit's settings for `enable`; what the
//! agent's own unit lets it do.

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use zbus::Connection;
use zbus::OwnedObjectPath;
use zbus::proxy::CacheProperties;

/// How long a D-Bus call may take before the agent moves on without its answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// systemd's manager: units by name.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    /// The object of a loaded unit; `org.freedesktop.systemd1.NoSuchUnit` otherwise.
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    /// The object of a unit, loading it from disk if it is not loaded.
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
}

/// What every unit has.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait Unit {
    /// `loaded`, `not-found`, `masked`, …
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    /// `active`, `reloading`, `inactive`, …
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    /// CLOCK_MONOTONIC µs when the unit last became active.
    #[zbus(property)]
    fn active_enter_timestamp_monotonic(&self) -> zbus::Result<u64>;
}

/// What a service unit has besides.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
trait Service {
    /// 0 while the service has no main process.
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;
    /// `none`, `main`, `exec` or `all`.
    #[zbus(property)]
    fn notify_access(&self) -> zbus::Result<String>;
    /// E.g. `/system.slice/demo.service`; empty while it has none.
    #[zbus(property)]
    fn control_group(&self) -> zbus::Result<String>;
    /// `User=`, empty for root.
    #[zbus(property)]
    fn user(&self) -> zbus::Result<String>;
    /// `Group=`, empty for the user's primary group.
    #[zbus(property)]
    fn group(&self) -> zbus::Result<String>;
    /// `ProtectSystem=`: `no`, `yes`, `full` or `strict`.
    #[zbus(property)]
    fn protect_system(&self) -> zbus::Result<String>;
    /// `ReadWritePaths=`, each with systemd's `-`/`+` prefixes.
    #[zbus(property)]
    fn read_write_paths(&self) -> zbus::Result<Vec<String>>;
    /// `CapabilityBoundingSet=`, a mask of capability numbers.
    #[zbus(property)]
    fn capability_bounding_set(&self) -> zbus::Result<u64>;
    /// `AmbientCapabilities=`, a mask of capability numbers.
    #[zbus(property)]
    fn ambient_capabilities(&self) -> zbus::Result<u64>;
    /// `ProtectProc=`: `default`, `invisible`, `ptraceable` or `noaccess`.
    #[zbus(property)]
    fn protect_proc(&self) -> zbus::Result<String>;
    /// `ProcSubset=`: `all` or `pid`.
    #[zbus(property)]
    fn proc_subset(&self) -> zbus::Result<String>;
}

/// A connection to systemd's manager.
#[derive(Clone, Debug)]
pub struct Systemd {
    connection: Connection,
}

/// A unit's `NotifyAccess=`: whose notifications systemd accepts for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyAccess {
    /// None, from nobody: what systemd reports for a unit without the setting.
    #[default]
    None,
    /// The main process only.
    Main,
    /// The main process and the processes of the unit's Exec*= commands.
    Exec,
    /// Every process of the unit's control group.
    All,
}

impl NotifyAccess {
    /// systemd's spelling, as `NotifyAccess=` and the bus say it; `None` for what is not.
    pub fn parse(text: &str) -> Option<NotifyAccess> {
        Some(match text {
            "none" => NotifyAccess::None,
            "main" => NotifyAccess::Main,
            "exec" => NotifyAccess::Exec,
            "all" => NotifyAccess::All,
            _ => return None,
        })
    }
}

/// The systemd text: `none`, `main`, `exec`, `all`.
impl fmt::Display for NotifyAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotifyAccess::None => "none",
            NotifyAccess::Main => "main",
            NotifyAccess::Exec => "exec",
            NotifyAccess::All => "all",
        })
    }
}

/// What a unit's notifications need from systemd.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MainProcess {
    /// The main process; `None` when the service is not loaded or not running.
    pub pid: Option<u32>,
    /// `NotifyAccess=`.
    pub notify_access: NotifyAccess,
    /// `ControlGroup=`, e.g. `/system.slice/demo.service`: where the main process must
    /// still be for a remembered pid to be trusted while systemd cannot be asked, and
    /// where a worker must be for the agent to signal it.
    pub control_group: String,
    /// `ActiveEnterTimestampMonotonic` (µs of CLOCK_MONOTONIC) while the unit is
    /// `ActiveState=active` (or reloading), else `None`: health actions judge only
    /// within one start.
    pub active_since_usec: Option<u64>,
}

/// What `scoreboardctl enable` needs of a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitSettings {
    /// `LoadState=`: only a `loaded` unit is one to enable.
    pub load_state: String,
    /// `User=`, empty for root.
    pub user: String,
    /// `Group=`, empty for the user's primary group.
    pub group: String,
    /// `NotifyAccess=`.
    pub notify_access: NotifyAccess,
}

/// What the agent's own unit lets it do, as systemd would start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentUnit {
    /// `ProtectSystem=`.
    pub protect_system: String,
    /// `ReadWritePaths=`, with systemd's prefixes.
    pub read_write_paths: Vec<String>,
    /// `CapabilityBoundingSet=`.
    pub capability_bounding_set: u64,
    /// `AmbientCapabilities=`.
    pub ambient_capabilities: u64,
    /// `ProtectProc=`.
    pub protect_proc: String,
    /// `ProcSubset=`.
    pub proc_subset: String,
}

/// The agent's unit.
pub const AGENT_UNIT: &str = "scoreboard-agent.service";

impl Systemd {
    /// Asks systemd over an existing connection.
    pub fn new(connection: Connection) -> Systemd {
        Systemd { connection }
    }

    /// Asks systemd over a new connection to the system bus.
    pub async fn system() -> zbus::Result<Systemd> {
        Ok(Systemd::new(Connection::system().await?))
    }

    /// The connection, to share with the agent's own objects.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The unit's object path: `None` when it is not loaded (`load`: loaded from disk
    /// first, as `systemctl show` does).
    async fn unit_path(&self, unit: &str, load: bool) -> zbus::Result<Option<OwnedObjectPath>> {
        let manager = ManagerProxy::new(&self.connection).await?;
        let path = if load {
            manager.load_unit(unit).await
        } else {
            manager.get_unit(unit).await
        };
        match path {
            Ok(path) => Ok(Some(path)),
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit" =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The unit's Unit and Service objects at `path`. Their properties are read when
    /// asked, never cached: a cache would subscribe to every change of the unit.
    async fn proxies(
        &self,
        path: OwnedObjectPath,
    ) -> zbus::Result<(UnitProxy<'_>, ServiceProxy<'_>)> {
        let unit = UnitProxy::builder(&self.connection)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        let service = ServiceProxy::builder(&self.connection)
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        Ok((unit, service))
    }

    /// The unit's main process; no pid when the unit is not loaded or not running.
    pub async fn main_process(&self, unit: &str) -> anyhow::Result<MainProcess> {
        let lookup = async {
            let Some(path) = self.unit_path(unit, false).await? else {
                return Ok(MainProcess::default());
            };
            let (unit, service) = self.proxies(path).await?;
            let pid = Some(service.main_pid().await?).filter(|&pid| pid != 0);
            let active_since_usec = match unit.active_state().await?.as_str() {
                "active" | "reloading" => Some(unit.active_enter_timestamp_monotonic().await?),
                _ => None,
            };
            let notify_access = service.notify_access().await?;
            anyhow::Ok(MainProcess {
                pid,
                notify_access: NotifyAccess::parse(&notify_access)
                    .with_context(|| format!("NotifyAccess={notify_access}"))?,
                control_group: service.control_group().await?,
                active_since_usec,
            })
        };
        tokio::time::timeout(CALL_TIMEOUT, lookup)
            .await
            .with_context(|| format!("asking systemd about {unit}: no answer in {CALL_TIMEOUT:?}"))?
            .with_context(|| format!("asking systemd about {unit}"))
    }

    /// `LoadState=`, `User=`, `Group=` and `NotifyAccess=` of `unit`, loaded from disk
    /// if need be.
    pub async fn unit_settings(&self, unit: &str) -> anyhow::Result<UnitSettings> {
        let ask = async {
            let Some(path) = self.unit_path(unit, true).await? else {
                return Ok(UnitSettings::default());
            };
            let (unit, service) = self.proxies(path).await?;
            let load_state = unit.load_state().await?;
            if load_state != "loaded" {
                return Ok(UnitSettings {
                    load_state,
                    ..UnitSettings::default()
                });
            }
            let notify_access = service.notify_access().await?;
            anyhow::Ok(UnitSettings {
                load_state,
                user: service.user().await?,
                group: service.group().await?,
                notify_access: NotifyAccess::parse(&notify_access)
                    .with_context(|| format!("NotifyAccess={notify_access}"))?,
            })
        };
        tokio::time::timeout(CALL_TIMEOUT, ask)
            .await
            .with_context(|| format!("asking systemd about {unit}: no answer in {CALL_TIMEOUT:?}"))?
            .with_context(|| format!("asking systemd about {unit}"))
    }

    /// What [`AGENT_UNIT`] lets the agent do; `None` when it is not installed.
    pub async fn agent_unit(&self) -> anyhow::Result<Option<AgentUnit>> {
        let ask = async {
            let Some(path) = self.unit_path(AGENT_UNIT, true).await? else {
                return Ok(None);
            };
            let (unit, service) = self.proxies(path).await?;
            if unit.load_state().await? != "loaded" {
                return Ok(None);
            }
            anyhow::Ok(Some(AgentUnit {
                protect_system: service.protect_system().await?,
                read_write_paths: service.read_write_paths().await?,
                capability_bounding_set: service.capability_bounding_set().await?,
                ambient_capabilities: service.ambient_capabilities().await?,
                protect_proc: service.protect_proc().await?,
                proc_subset: service.proc_subset().await?,
            }))
        };
        tokio::time::timeout(CALL_TIMEOUT, ask)
            .await
            .with_context(|| {
                format!("asking systemd about {AGENT_UNIT}: no answer in {CALL_TIMEOUT:?}")
            })?
            .with_context(|| format!("asking systemd about {AGENT_UNIT}"))
    }
}

/// Where cgroupfs shows systemd's hierarchy, in which a unit's `ControlGroup=` path
/// names its cgroup: the unified layout's `/sys/fs/cgroup`, and in the hybrid and
/// legacy layouts (cgroup v1 controllers mounted under `/sys/fs/cgroup`, as on hosts
/// booted with `systemd.unified_cgroup_hierarchy=0`) the cgroup2 mount `unified/` and
/// the named v1 hierarchy `systemd/`, where systemd mirrors the same paths.
const CGROUP_HIERARCHIES: &[&str] = &[
    "/sys/fs/cgroup",
    "/sys/fs/cgroup/unified",
    "/sys/fs/cgroup/systemd",
];

impl MainProcess {
    /// Whether the pid still runs in `control_group`, read from cgroupfs: what vouches
    /// for a remembered main process while systemd cannot be asked. Where the cgroup
    /// cannot be read in any layout, whether the pid is alive at all (`kill(pid, 0)`).
    pub fn still_there(&self) -> bool {
        self.still_there_in(CGROUP_HIERARCHIES)
    }

    /// Whether the pid is listed in the unit's own cgroup now (no fallback): what must
    /// hold right before speaking for it with an action, so that a remembered pid that
    /// was reused by another unit's process is never credited with it.
    pub fn in_unit_now(&self) -> bool {
        self.listed_in(CGROUP_HIERARCHIES) == Some(true)
    }

    /// [`MainProcess::still_there`], looking for the cgroup under `hierarchies`.
    pub fn still_there_in(&self, hierarchies: &[impl AsRef<std::path::Path>]) -> bool {
        let Some(pid) = self
            .pid
            .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
        else {
            return false;
        };
        self.listed_in(hierarchies).unwrap_or_else(|| {
            !matches!(
                rustix::process::test_kill_process(pid),
                Err(rustix::io::Errno::SRCH)
            )
        })
    }

    /// Whether the pid is in the unit's `cgroup.procs`, the first of `hierarchies`
    /// holding the cgroup deciding; `None` when no pid, no control group (an empty path
    /// would name the root cgroup, where the main process never is), or no hierarchy
    /// holding it.
    fn listed_in(&self, hierarchies: &[impl AsRef<std::path::Path>]) -> Option<bool> {
        let pid = self.pid?.to_string();
        let relative = self.control_group.trim_start_matches('/');
        if relative.is_empty() {
            return None;
        }
        hierarchies.iter().find_map(|hierarchy| {
            let procs = hierarchy.as_ref().join(relative).join("cgroup.procs");
            let listed = std::fs::read_to_string(procs).ok()?;
            Some(listed.lines().any(|line| line.trim() == pid))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn main_process(pid: u32, control_group: &str) -> MainProcess {
        MainProcess {
            active_since_usec: None,
            pid: Some(pid).filter(|&pid| pid != 0),
            notify_access: NotifyAccess::Main,
            control_group: control_group.to_owned(),
        }
    }

    #[test]
    fn the_first_hierarchy_holding_the_cgroup_decides() {
        let root = tempfile::tempdir().unwrap();
        // A hybrid layout: no cgroup at the top, the unit's in unified/ and systemd/.
        let unified = root.path().join("unified");
        let named = root.path().join("systemd");
        for hierarchy in [&unified, &named] {
            std::fs::create_dir_all(hierarchy.join("system.slice/demo.service")).unwrap();
        }
        let me = std::process::id();
        std::fs::write(
            unified.join("system.slice/demo.service/cgroup.procs"),
            format!("1\n{me}\n"),
        )
        .unwrap();
        std::fs::write(named.join("system.slice/demo.service/cgroup.procs"), "").unwrap();
        let hierarchies = [root.path().to_owned(), unified.clone(), named.clone()];
        let main = main_process(me, "/system.slice/demo.service");
        assert!(main.still_there_in(&hierarchies));
        // Alive, but no longer listed in its unit's cgroup: not vouched for.
        let moved = [root.path().to_owned(), named];
        assert!(!main.still_there_in(&moved));
        assert!(!main_process(me + 1, "/system.slice/demo.service").still_there_in(&hierarchies));
    }

    #[test]
    fn without_a_readable_cgroup_a_live_pid_is_enough() {
        let empty = tempfile::tempdir().unwrap();
        let hierarchies = [empty.path()];
        assert!(
            main_process(std::process::id(), "/system.slice/x.service")
                .still_there_in(&hierarchies)
        );
        assert!(main_process(std::process::id(), "").still_there_in(&hierarchies));
        assert!(!main_process(0, "/system.slice/x.service").still_there_in(&hierarchies));
    }
}
