//! What the agent asks systemd over D-Bus: a service's main process and whether it
//! accepts notifications from it.

use std::time::Duration;

use anyhow::Context as _;
use zbus::Connection;
use zbus::{OwnedObjectPath, OwnedVariant};

const DESTINATION: &str = "org.freedesktop.systemd1";

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
    /// still be for a remembered pid to be trusted while systemd cannot be asked.
    pub control_group: String,
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
                    });
                }
                Err(e) => return Err(e.into()),
            };
            let pid: u32 = self.service_property(&path, "MainPID").await?.try_into()?;
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
        let reply = self
            .connection
            .call_method(
                Some(DESTINATION),
                path,
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &("org.freedesktop.systemd1.Service", name),
            )
            .await?;
        reply.body().deserialize()
    }
}

impl MainProcess {
    /// Whether `pid` still runs in `control_group`, read from cgroupfs: what vouches for a
    /// remembered main process while systemd cannot be asked. Where the cgroup cannot be
    /// read, whether the pid is alive at all (`kill(pid, 0)`).
    pub fn still_there(&self) -> bool {
        let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) else {
            return false;
        };
        let procs = format!("/sys/fs/cgroup{}/cgroup.procs", self.control_group);
        match std::fs::read_to_string(&procs) {
            Ok(listed) => listed
                .lines()
                .any(|line| line.trim() == self.pid.to_string()),
            Err(_) => !matches!(
                rustix::process::test_kill_process(pid),
                Err(rustix::io::Errno::SRCH)
            ),
        }
    }
}
