//! The names of `io.scoreboard.Agent1` — bus name, object paths, the worker wire tuple
//! — and the client proxies `scoreboardctl` uses: one definition for both sides.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;
use zbus::{OwnedObjectPath, OwnedVariant, Variant};

use super::server::MAX_STATUS_ON_BUS;
use crate::core::pool::DeathReport;
use crate::core::status_line::bus_string;
use crate::core::worker::WorkerReport;
use crate::escape;

/// The agent's well-known name.
pub const NAME: &str = "io.scoreboard.Agent1";
/// The manager object.
pub const MANAGER_PATH: &str = "/io/scoreboard/Agent1";

/// The object path of a watched unit: `/io/scoreboard/Agent1/service/demo_2eservice`.
pub fn service_path(unit: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("{MANAGER_PATH}/service/{}", escape_label(unit)))
        .expect("escaped labels are valid path elements")
}

/// Escapes a name into one object path element as systemd does (`bus_label_escape`):
/// ASCII letters and digits stay (a leading digit does not), every other byte becomes
/// `_xx` in hex.
pub fn escape_label(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    let mut out = String::with_capacity(name.len() * 3);
    for (i, byte) in name.bytes().enumerate() {
        if byte.is_ascii_alphabetic() || (byte.is_ascii_digit() && i > 0) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("_{byte:02x}"));
        }
    }
    out
}

/// One worker as `ListWorkers` and `GetWorker` return it: the wire tuple `(sssdb)` of a
/// [`WorkerReport`], built here at the bus edge and turned back into one by clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct WorkerInfo {
    /// The worker id.
    pub id: String,
    /// Its state, by the service's rule.
    pub state: String,
    /// Its status text, invalid UTF-8 replaced.
    pub status: String,
    /// Seconds since the status last changed.
    pub unchanged_seconds: f64,
    /// Whether it counts as stuck.
    pub stuck: bool,
}

impl WorkerInfo {
    /// The record a client makes of it.
    pub fn into_report(self) -> WorkerReport {
        WorkerReport {
            id: self.id,
            state: self.state,
            status: self.status,
            unchanged_seconds: Some(self.unchanged_seconds),
            stuck: Some(self.stuck),
        }
    }
}

/// Client side of io.scoreboard.Agent1.Manager, for scoreboardctl.
#[zbus::proxy(
    interface = "io.scoreboard.Agent1.Manager",
    default_service = "io.scoreboard.Agent1",
    default_path = "/io/scoreboard/Agent1"
)]
pub trait Manager {
    /// Every watched unit with its object path.
    fn list_services(&self) -> zbus::Result<Vec<(String, OwnedObjectPath)>>;
}

/// Client side of io.scoreboard.Agent1.Service, for scoreboardctl.
#[zbus::proxy(
    interface = "io.scoreboard.Agent1.Service",
    default_service = "io.scoreboard.Agent1"
)]
pub trait Service {
    /// Every live worker.
    fn list_workers(&self) -> zbus::Result<Vec<WorkerInfo>>;
    /// One worker by id.
    fn get_worker(&self, id: &str) -> zbus::Result<WorkerInfo>;
    /// The last workers seen to die.
    fn list_deaths(
        &self,
    ) -> zbus::Result<Vec<std::collections::HashMap<String, zbus::OwnedVariant>>>;
    /// The scoreboard directory.
    #[zbus(property)]
    fn directory(&self) -> zbus::Result<String>;
    /// The STATUS= line.
    #[zbus(property)]
    fn summary(&self) -> zbus::Result<String>;
    /// The last health action, with when; empty when none.
    #[zbus(property)]
    fn last_action(&self) -> zbus::Result<String>;
    /// Why the scoreboard directory cannot be read; empty while it is read.
    #[zbus(property)]
    fn unseen(&self) -> zbus::Result<String>;
}

/// A dead worker as `ListDeaths` gives it: what is not known is left out.
pub(super) fn death_on_bus(death: &DeathReport) -> HashMap<String, OwnedVariant> {
    let mut entry = HashMap::new();
    let mut put = |key: &str, value: Variant<'_>| {
        // Only a file descriptor cannot be owned; none is put here.
        if let Ok(value) = OwnedVariant::try_from(value) {
            entry.insert(key.to_owned(), value);
        }
    };
    put("id", Variant::from(bus_string(&death.id).into_owned()));
    put("seconds_ago", Variant::from(death.seconds_ago));
    if let Some(status) = &death.status {
        let status = escape::printable_capped(status.as_bytes(), MAX_STATUS_ON_BUS);
        put("status", Variant::from(status.into_owned()));
    }
    if let Some(stood) = death.stood_seconds {
        put("stood_seconds", Variant::from(stood));
    }
    entry
}

impl WorkerInfo {
    /// The worker as it goes on the bus: every string through [`bus_string`], the status
    /// cut at `status_cap` bytes. The pool's reports always carry their history.
    pub(super) fn on_bus(w: &WorkerReport, status_cap: usize) -> Self {
        WorkerInfo {
            id: bus_string(&w.id).into_owned(),
            state: bus_string(&w.state).into_owned(),
            status: escape::printable_capped(w.status.as_bytes(), status_cap).into_owned(),
            unchanged_seconds: w.unchanged_seconds.unwrap_or_default(),
            stuck: w.stuck.unwrap_or_default(),
        }
    }

    /// Roughly what it weighs in a message.
    pub(super) fn weight(&self) -> usize {
        self.id.len() + self.state.len() + self.status.len() + 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_like_systemd() {
        assert_eq!(escape_label("demo.service"), "demo_2eservice");
        assert_eq!(escape_label("web-1@x.service"), "web_2d1_40x_2eservice");
        assert_eq!(escape_label("1st.service"), "_31st_2eservice");
        assert_eq!(
            service_path("demo.service").as_str(),
            "/io/scoreboard/Agent1/service/demo_2eservice"
        );
    }
}
