//! What the agent asks systemd over D-Bus: a service's main process and whether it
//! accepts notifications from it.

use std::time::Duration;

use anyhow::Context as _;
use zbus::Connection;
use zbus::{OwnedObjectPath, OwnedVariant};

const DESTINATION: &str = "org.freedesktop.systemd1";
/// The interface every unit has (ActiveState, timestamps).
const UNIT: &str = "org.freedesktop.systemd1.Unit";

/// How long a D-Bus call may take before the agent moves on without its answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to systemd's manager.
#[derive(Clone, Debug)]
pub struct Systemd {
    connection: Connection,
}

/// What a unit's notifications need from systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MainProcess {
    /// The main process, or 0 when the service is not running.
    pub pid: u32,
    /// `NotifyAccess=`: `none`, `main`, `exec` or `all`.
    pub notify_access: String,
    /// `ControlGroup=`, e.g. `/system.slice/demo.service`: where the main process must
    /// still be for a remembered pid to be trusted while systemd cannot be asked, and
    /// where a worker must be for the agent to signal it.
    pub control_group: String,
    /// `ActiveEnterTimestampMonotonic` (µs of CLOCK_MONOTONIC) when the unit is
    /// `ActiveState=active`, else 0: health actions judge only within one start.
    pub active_since_usec: u64,
}

impl Systemd {
    /// Asks systemd over an existing connection.
    pub fn new(connection: Connection) -> Systemd {
        Systemd { connection }
    }

    /// The connection, to share with the agent's own objects.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The unit's main process; pid 0 when the unit is not loaded or not running.
    pub async fn main_process(&self, unit: &str) -> anyhow::Result<MainProcess> {
        let lookup = async {
            let reply = self
                .connection
                .call_method(
                    Some(DESTINATION),
                    "/org/freedesktop/systemd1",
                    Some("org.freedesktop.systemd1.Manager"),
                    "GetUnit",
                    &(unit,),
                )
                .await;
            let path: OwnedObjectPath = match reply {
                Ok(reply) => reply.body().deserialize()?,
                Err(zbus::Error::MethodError(name, _, _))
                    if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit" =>
                {
                    return Ok(MainProcess {
                        pid: 0,
                        notify_access: String::new(),
                        control_group: String::new(),
                        active_since_usec: 0,
                    });
                }
                Err(e) => return Err(e.into()),
            };
            let pid: u32 = self.service_property(&path, "MainPID").await?.try_into()?;
            let active: String = self
                .property(&path, UNIT, "ActiveState")
                .await?
                .try_into()?;
            let active_since_usec: u64 = match active.as_str() {
                "active" | "reloading" => self
                    .property(&path, UNIT, "ActiveEnterTimestampMonotonic")
                    .await?
                    .try_into()?,
                _ => 0,
            };
            let notify_access: String = self
                .service_property(&path, "NotifyAccess")
                .await?
                .try_into()?;
            let control_group: String = self
                .service_property(&path, "ControlGroup")
                .await?
                .try_into()?;
            anyhow::Ok(MainProcess {
                pid,
                notify_access,
                control_group,
                active_since_usec,
            })
        };
        tokio::time::timeout(CALL_TIMEOUT, lookup)
            .await
            .with_context(|| format!("asking systemd about {unit}: no answer in {CALL_TIMEOUT:?}"))?
            .with_context(|| format!("asking systemd about {unit}"))
    }

    async fn service_property(
        &self,
        path: &OwnedObjectPath,
        name: &str,
    ) -> zbus::Result<OwnedVariant> {
        self.property(path, "org.freedesktop.systemd1.Service", name)
            .await
    }

    async fn property(
        &self,
        path: &OwnedObjectPath,
        interface: &str,
        name: &str,
    ) -> zbus::Result<OwnedVariant> {
        let reply = self
            .connection
            .call_method(
                Some(DESTINATION),
                path,
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(interface, name),
            )
            .await?;
        reply.body().deserialize()
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
    /// Whether `pid` still runs in `control_group`, read from cgroupfs: what vouches for a
    /// remembered main process while systemd cannot be asked. Where the cgroup cannot be
    /// read in any layout, whether the pid is alive at all (`kill(pid, 0)`).
    pub fn still_there(&self) -> bool {
        self.still_there_in(CGROUP_HIERARCHIES)
    }

    /// Whether the pid is listed in the unit's own cgroup now (no fallback): what must
    /// hold right before speaking for it with an action, so that a remembered pid that
    /// was reused by another unit's process is never credited with it.
    pub fn in_unit_now(&self) -> bool {
        let relative = self.control_group.trim_start_matches('/');
        if self.pid == 0 || relative.is_empty() {
            return false;
        }
        CGROUP_HIERARCHIES.iter().any(|hierarchy| {
            std::fs::read_to_string(
                std::path::Path::new(hierarchy)
                    .join(relative)
                    .join("cgroup.procs"),
            )
            .is_ok_and(|listed| {
                listed
                    .lines()
                    .any(|line| line.trim() == self.pid.to_string())
            })
        })
    }

    /// [`MainProcess::still_there`], looking for the cgroup under `hierarchies`, the
    /// first one holding it deciding.
    pub fn still_there_in(&self, hierarchies: &[impl AsRef<std::path::Path>]) -> bool {
        let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) else {
            return false;
        };
        // An empty path would name the root cgroup, where the main process never is.
        let relative = self.control_group.trim_start_matches('/');
        if !relative.is_empty() {
            for hierarchy in hierarchies {
                let procs = hierarchy.as_ref().join(relative).join("cgroup.procs");
                if let Ok(listed) = std::fs::read_to_string(&procs) {
                    return listed
                        .lines()
                        .any(|line| line.trim() == self.pid.to_string());
                }
            }
        }
        !matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn main_process(pid: u32, control_group: &str) -> MainProcess {
        MainProcess {
            active_since_usec: 0,
            pid,
            notify_access: "main".to_owned(),
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
