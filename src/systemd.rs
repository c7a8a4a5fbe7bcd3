//! What the agent asks systemd over D-Bus: a service's main process and whether it
//! accepts notifications from it.

use std::time::Duration;

use anyhow::Context as _;
use zbus::Connection;
use zbus::{OwnedObjectPath, OwnedVariant};

use crate::config::Bus;

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
}

impl Systemd {
    /// Connects to the bus chosen in the configuration.
    pub async fn connect(bus: Bus) -> anyhow::Result<Systemd> {
        let connection = match bus {
            Bus::System => Connection::system().await,
            Bus::Session => Connection::session().await,
            Bus::None => anyhow::bail!("no bus configured"),
        }
        .with_context(|| format!("connecting to the {bus:?} bus"))?;
        Ok(Systemd { connection })
    }

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
                    });
                }
                Err(e) => return Err(e.into()),
            };
            let pid: u32 = self.service_property(&path, "MainPID").await?.try_into()?;
            let notify_access: String = self
                .service_property(&path, "NotifyAccess")
                .await?
                .try_into()?;
            anyhow::Ok(MainProcess { pid, notify_access })
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
