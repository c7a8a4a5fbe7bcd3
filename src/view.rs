//! Rendering snapshots for terminals and scripts.

use std::fmt::Write as _;

use serde::Serialize;

/// `scoreboardctl status --json`: `{"workers":[{"id":"…","status":"…"}, …]}`, sorted by
/// id, statuses as lossy UTF-8. Field names and order are a stable interface.
#[derive(Debug, Serialize)]
pub struct StatusJson<'a> {
    /// Live workers, sorted by id.
    pub workers: Vec<WorkerJson<'a>>,
}

/// One worker in [`StatusJson`].
#[derive(Debug, Serialize)]
pub struct WorkerJson<'a> {
    /// The worker id.
    pub id: &'a str,
    /// The status, with invalid UTF-8 replaced by U+FFFD.
    pub status: String,
}

/// The JSON document for `workers` (already sorted by id, as snapshots are).
pub fn status_json(workers: &[scoreboard::Worker]) -> String {
    let doc = StatusJson {
        workers: workers
            .iter()
            .map(|w| WorkerJson {
                id: &w.id,
                status: w.status_lossy().into_owned(),
            })
            .collect(),
    };
    serde_json::to_string(&doc).expect("strings always serialize")
}

/// A status made safe for one line of a terminal: control characters (a newline, an
/// escape sequence) are shown escaped instead of acting on the terminal.
pub fn printable_status(status: &[u8]) -> String {
    let text = String::from_utf8_lossy(status);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The `ID  STATUS` table, one worker per line.
pub fn status_table(workers: &[scoreboard::Worker]) -> String {
    let width = workers
        .iter()
        .map(|w| w.id.chars().count())
        .max()
        .unwrap_or(0)
        .max(2);
    let mut out = format!("{:<width$}  STATUS\n", "ID");
    for worker in workers {
        let _ = writeln!(
            out,
            "{:<width$}  {}",
            worker.id,
            printable_status(&worker.status)
        );
    }
    out
}

/// One row of [`worker_table`]: a worker with, when known, its history.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    /// The worker id.
    pub id: String,
    /// Its state.
    pub state: String,
    /// Its status.
    pub status: String,
    /// Seconds since the status changed, when known.
    pub unchanged_seconds: Option<f64>,
    /// Whether it is stuck, when known.
    pub stuck: Option<bool>,
}

impl From<&crate::ctl::WorkerReport> for WorkerRow {
    fn from(w: &crate::ctl::WorkerReport) -> Self {
        WorkerRow {
            id: w.id.clone(),
            state: w.state.clone(),
            status: w.status.clone(),
            unchanged_seconds: w.unchanged_seconds,
            stuck: w.stuck,
        }
    }
}

impl From<crate::summary::WorkerView> for WorkerRow {
    fn from(w: crate::summary::WorkerView) -> Self {
        WorkerRow {
            id: w.id,
            state: w.state,
            status: w.status,
            unchanged_seconds: Some(w.unchanged_for.as_secs_f64()),
            stuck: Some(w.stuck),
        }
    }
}

/// The `ID STATE UNCHANGED STUCK STATUS` table, indented under a header. What is not
/// known (read directly, not from the agent) shows as `-`.
pub fn worker_table(workers: &[WorkerRow]) -> String {
    if workers.is_empty() {
        return String::new();
    }
    let id_width = workers
        .iter()
        .map(|w| w.id.chars().count())
        .max()
        .unwrap_or(0)
        .max(2);
    let states: Vec<String> = workers
        .iter()
        .map(|w| printable_status(w.state.as_bytes()))
        .collect();
    let state_width = states
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut out = format!(
        "  {:<id_width$}  {:<state_width$}  UNCHANGED  STUCK  STATUS\n",
        "ID", "STATE"
    );
    for (worker, state) in workers.iter().zip(&states) {
        let unchanged = worker
            .unchanged_seconds
            .map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s"));
        let stuck = match worker.stuck {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        let _ = writeln!(
            out,
            "  {:<id_width$}  {state:<state_width$}  {unchanged:<9}  {stuck:<5}  {}",
            worker.id,
            printable_status(worker.status.as_bytes())
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, status: &[u8]) -> scoreboard::Worker {
        scoreboard::Worker {
            id: id.to_owned(),
            status: status.to_vec(),
            read_at: std::time::Instant::now(),
        }
    }

    #[test]
    fn json_has_exactly_the_documented_shape() {
        let workers = [worker("1", b"idle"), worker("22", b"busy \"GET\" /\n\xff")];
        assert_eq!(
            status_json(&workers),
            r#"{"workers":[{"id":"1","status":"idle"},{"id":"22","status":"busy \"GET\" /\n\ufffd"}]}"#
                .replace("\\ufffd", "\u{fffd}")
        );
        assert_eq!(status_json(&[]), r#"{"workers":[]}"#);
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        assert_eq!(
            printable_status(b"busy\nMAINPID=1\x1b[2J"),
            "busy\\nMAINPID=1\\u{1b}[2J"
        );
    }

    #[test]
    fn table_aligns_ids() {
        let table = status_table(&[worker("7", b"idle"), worker("12345", b"busy GET /")]);
        assert_eq!(table, "ID     STATUS\n7      idle\n12345  busy GET /\n");
    }
}
