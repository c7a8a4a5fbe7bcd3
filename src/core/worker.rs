//! The one worker record: what the pool answers, the bus serves (as its wire tuple,
//! built at the bus edge), and `scoreboardctl` renders as a table row or JSON.

use serde::Serialize;

/// One worker. A stable interface in `scoreboardctl status --json`: fields are only
/// ever added.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerReport {
    /// The worker id.
    pub id: String,
    /// Its state, by the service's rule.
    pub state: String,
    /// The status text, invalid UTF-8 replaced.
    pub status: String,
    /// Seconds since the status changed; `None` when read without the agent's history.
    pub unchanged_seconds: Option<f64>,
    /// Whether it counts as stuck; `None` when read without the agent's history.
    pub stuck: Option<bool>,
}

impl WorkerReport {
    /// The record without what only a long-lived observer knows: a directory read once
    /// has no history.
    pub fn without_history(self) -> WorkerReport {
        WorkerReport {
            unchanged_seconds: None,
            stuck: None,
            ..self
        }
    }
}
