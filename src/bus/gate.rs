//! The gate every service object consults before per-worker details: who the caller
//! is, whether it could read the directory itself, and what it may still be sent; and
//! the errors a call fails with.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use zbus::message::Header;

use crate::bus::quota::Quota;
use crate::config::Service;
use crate::core::privacy::{self, Caller, DirAccess};
use crate::lock::lock;

/// Errors of the `io.scoreboard.Agent1` interfaces.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "io.scoreboard.Agent1.Error")]
pub enum Error {
    /// Not one of zbus's own errors.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// No live worker has that id.
    NoSuchWorker(String),
}

/// What a per-worker method fails with: one of ours, or one of the standard
/// `org.freedesktop.DBus.Error` names (AccessDenied, LimitsExceeded) that clients
/// already know how to read.
#[derive(Debug)]
pub enum CallError {
    /// io.scoreboard.Agent1.Error.*.
    Agent(Error),
    /// org.freedesktop.DBus.Error.*.
    Standard(zbus::fdo::Error),
}

impl CallError {
    pub(super) fn access_denied(message: String) -> CallError {
        CallError::Standard(zbus::fdo::Error::AccessDenied(message))
    }

    pub(super) fn limits_exceeded(message: String) -> CallError {
        CallError::Standard(zbus::fdo::Error::LimitsExceeded(message))
    }
}

impl zbus::DBusError for CallError {
    fn create_reply(&self, call: &Header<'_>) -> zbus::Result<zbus::Message> {
        match self {
            CallError::Agent(e) => e.create_reply(call),
            CallError::Standard(e) => e.create_reply(call),
        }
    }

    fn name(&self) -> zbus::names::ErrorName<'_> {
        match self {
            CallError::Agent(e) => e.name(),
            CallError::Standard(e) => e.name(),
        }
    }

    fn description(&self) -> Option<&str> {
        match self {
            CallError::Agent(e) => e.description(),
            CallError::Standard(e) => e.description(),
        }
    }
}

impl From<zbus::Error> for CallError {
    fn from(e: zbus::Error) -> CallError {
        CallError::Agent(Error::ZBus(e))
    }
}

impl From<Error> for CallError {
    fn from(e: Error) -> CallError {
        CallError::Agent(e)
    }
}

/// What every service object consults before answering with per-worker details: who
/// the caller is (asked of the bus daemon over the agent's second connection, so the
/// answer never waits behind the calls queued on the serving one), and what it may
/// still be sent this second.
pub struct Gate {
    asking: zbus::Connection,
    quota: Mutex<Quota>,
    /// Callers seen, by unique name (never reused on a bus); emptied when full.
    callers: Mutex<HashMap<String, Caller>>,
    /// How long a built `ListWorkers` answer is shared: one sampling interval.
    pub(super) refresh: std::time::Duration,
}

/// Callers remembered at most; past that the table starts afresh.
const MAX_CALLERS: usize = 1024;

impl Gate {
    /// A gate asking the bus daemon over `asking`, sharing answers for `refresh`.
    pub fn new(asking: zbus::Connection, refresh: std::time::Duration) -> Gate {
        Gate {
            asking,
            quota: Mutex::default(),
            callers: Mutex::default(),
            refresh,
        }
    }

    /// The caller of the call in `header`, as the bus daemon vouches for it.
    async fn caller(&self, header: &Header<'_>) -> Result<(String, Caller), CallError> {
        let sender = header
            .sender()
            .ok_or_else(|| CallError::access_denied("the call has no sender".to_owned()))?
            .to_string();
        if let Some(caller) = lock(&self.callers).get(&sender) {
            return Ok((sender, caller.clone()));
        }
        let credentials = zbus::fdo::DBusProxy::new(&self.asking)
            .await?
            .get_connection_credentials(zbus::names::BusName::try_from(sender.as_str())?)
            .await
            .map_err(CallError::Standard)?;
        let uid = credentials.unix_user_id().ok_or_else(|| {
            CallError::access_denied(format!("the bus daemon does not say who {sender} is"))
        })?;
        let caller = Caller {
            uid,
            gids: credentials.unix_group_ids().cloned().unwrap_or_default(),
        };
        let mut callers = lock(&self.callers);
        if callers.len() >= MAX_CALLERS {
            callers.clear();
        }
        callers.insert(sender.clone(), caller.clone());
        Ok((sender, caller))
    }

    /// Whether the caller may read the service's workers, by [`privacy::may_read`] on
    /// the directory as the last sweep found it (`access`); then charges `cost` records.
    pub(super) async fn admit(
        &self,
        header: &Header<'_>,
        service: &Service,
        access: Option<DirAccess>,
        cost: u64,
    ) -> Result<(), CallError> {
        let (_, caller) = self.caller(header).await?;
        if caller.uid != 0 {
            let dir = access.ok_or_else(|| {
                CallError::access_denied(format!(
                    "{} is not being read now; per-worker details are shown only to those \
                     who could read it",
                    service.directory.display()
                ))
            })?;
            privacy::may_read(&caller, dir).map_err(|refused| {
                CallError::access_denied(format!("{}: {refused}", service.directory.display()))
            })?;
        }
        lock(&self.quota)
            .charge(caller.uid, cost, Instant::now())
            .map_err(|e| CallError::limits_exceeded(e.to_string()))
    }
}
