//! Rendering for terminals and scripts: snapshots read directly (`status_table`,
//! `status_json`), [`WorkerReport`]s (`worker_table`), and the watched services'
//! [`ServiceReport`]s (`service_table`, `list_table`, `watch_screen`, and the JSON
//! `document`).

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Serialize;

use super::{Reports, ServiceReport, Source};
use crate::core::worker::WorkerReport;
use crate::escape::{self, escape_controls};

/// `scoreboardctl status --dir DIR --json`: `{"workers":[{"id":"…","status":"…"}, …]}`, sorted by
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

/// The JSON document for `workers` (already sorted by id, as snapshots are). serde
/// escapes what JSON requires; [`escape::to_json`] also escapes DEL and C1, so nothing
/// in it acts on a terminal.
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
    escape::to_json(&doc).expect("strings always serialize")
}

/// The widest a state cell gets, in bytes (escaped). A state is the first word of a
/// status, so it may be as long as the status; one long state would otherwise widen the
/// column, and every row, to its length.
pub const MAX_STATE_CELL: usize = 32;

/// The `ID  STATUS` table, one worker per line. Ids (file names) and statuses are
/// whatever a service's user wrote: each cell goes through [`escape::printable`], so a
/// newline or an escape sequence shows as text and a row stays one line.
pub fn status_table(workers: &[scoreboard::Worker]) -> String {
    let rows: Vec<(Cow<'_, str>, Cow<'_, str>)> = workers
        .iter()
        .map(|w| {
            (
                escape::printable(w.id.as_bytes()),
                escape::printable(&w.status),
            )
        })
        .collect();
    let width = rows
        .iter()
        .map(|(id, _)| id.chars().count())
        .max()
        .unwrap_or(0)
        .max(2);
    let mut out = format!("{:<width$}  STATUS\n", "ID");
    for (id, status) in &rows {
        let _ = writeln!(out, "{id:<width$}  {status}");
    }
    out
}

/// The `ID STATE UNCHANGED STUCK STATUS` table, indented under a header. What is not
/// known (read directly, not from the agent) shows as `-`. Ids, states and statuses go
/// through [`escape::printable`] (states capped at [`MAX_STATE_CELL`] bytes), so each
/// worker is one line whatever its user wrote.
pub fn worker_table(workers: &[WorkerReport]) -> String {
    if workers.is_empty() {
        return String::new();
    }
    let cells: Vec<[Cow<'_, str>; 3]> = workers
        .iter()
        .map(|w| {
            [
                escape::printable(w.id.as_bytes()),
                escape::printable_capped(w.state.as_bytes(), MAX_STATE_CELL),
                escape::printable(w.status.as_bytes()),
            ]
        })
        .collect();
    let width = |column: usize, at_least: usize| {
        cells
            .iter()
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or(0)
            .max(at_least)
    };
    let (id_width, state_width) = (width(0, 2), width(1, 5));
    let mut out = format!(
        "  {:<id_width$}  {:<state_width$}  UNCHANGED  STUCK  STATUS\n",
        "ID", "STATE"
    );
    for (worker, [id, state, status]) in workers.iter().zip(&cells) {
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
            "  {id:<id_width$}  {state:<state_width$}  {unchanged:<9}  {stuck:<5}  {status}"
        );
    }
    out
}

/// `scoreboardctl status --dir DIR`: the directory read once, its warnings on stderr,
/// the workers as a table or as JSON on stdout.
pub fn print_dir(dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let snapshot = scoreboard::read_dir(dir)?;
    for skipped in &snapshot.skipped {
        let skipped = escape::escape_controls(&skipped.to_string()).into_owned();
        eprintln!("scoreboardctl: warning: {skipped}");
    }
    for id in &snapshot.reaped {
        let id = escape::Escaped::str(id);
        eprintln!("scoreboardctl: removed the file of dead worker {id}");
    }
    if json {
        println!("{}", status_json(&snapshot.workers));
    } else {
        print!("{}", status_table(&snapshot.workers));
    }
    Ok(())
}

/// `status --json` and `list --json`: `{"source":…,"services":[…]}`.
#[derive(Debug, Serialize)]
struct Document<'a> {
    source: Source,
    services: &'a [ServiceReport],
}

/// The `status --json` / `list --json` document for `services`, from `source`, through
/// [`escape::to_json`] like every JSON printed here.
pub fn document(source: Source, services: &[ServiceReport]) -> serde_json::Result<String> {
    escape::to_json(&Document { source, services })
}

/// The human view of one service: a header line, then the worker table.
///
/// The header's parts come from the configuration and the agent (which sanitises the
/// summary), but are escaped like everything else printed here: a row is one line
/// whatever reached it.
pub fn service_table(report: &ServiceReport) -> String {
    let summary = if report.running {
        escape_controls(&report.summary).into_owned()
    } else {
        format!("not running (no {})", escape_controls(&report.directory))
    };
    let mut out = format!("● {} — {summary}\n", escape_controls(&report.unit));
    if let Some(why) = &report.unseen {
        out.push_str(&format!(
            "  unseen: {} (workers unknown; no health action is taken)\n",
            escape_controls(why)
        ));
    }
    if let Some(action) = &report.last_action {
        out.push_str(&format!("  last action: {}\n", escape_controls(action)));
    }
    out.push_str(&worker_table(&report.workers));
    out
}

/// The `UNIT  WORKERS  SUMMARY` table of `list`, one service per line.
pub fn list_table(services: &[ServiceReport]) -> String {
    let units: Vec<_> = services.iter().map(|s| escape_controls(&s.unit)).collect();
    let unit_width = units
        .iter()
        .map(|unit| unit.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!("{:<unit_width$}  WORKERS  SUMMARY\n", "UNIT");
    for (s, unit) in services.iter().zip(&units) {
        let (workers, summary) = if s.running {
            (
                s.workers.len().to_string(),
                escape_controls(&s.summary).into_owned(),
            )
        } else {
            (
                "-".to_owned(),
                format!("not running (no {})", escape_controls(&s.directory)),
            )
        };
        out.push_str(&format!("{unit:<unit_width$}  {workers:<7}  {summary}\n"));
    }
    out
}

/// One screen of `watch`: the list, then every service's workers.
pub fn watch_screen(reports: &Reports) -> String {
    let source = match reports.source {
        Source::Agent => "from the agent",
        Source::Directory => "read directly (no agent)",
    };
    let mut screen = format!(
        "scoreboard — {} services, {source}\n\n",
        reports.services.len()
    );
    screen.push_str(&list_table(&reports.services));
    for report in &reports.services {
        screen.push('\n');
        screen.push_str(&service_table(report));
    }
    screen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, status: &[u8]) -> scoreboard::Worker {
        scoreboard::Worker {
            id: id.to_owned(),
            status: status.to_vec(),
            read_at: std::time::Instant::now(),
            inode: 0,
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

    fn row(id: &str, state: &str, status: &str) -> WorkerReport {
        WorkerReport {
            id: id.to_owned(),
            state: state.to_owned(),
            status: status.to_owned(),
            unchanged_seconds: Some(1.0),
            stuck: Some(false),
        }
    }

    fn assert_no_escape_or_control(table: &str) {
        assert!(!table.contains('\x1b'), "{table:?}");
        assert!(
            !table.lines().any(|line| line.chars().any(char::is_control)),
            "{table:?}"
        );
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        let table = status_table(&[worker("1", b"busy\nMAINPID=1\x1b[2J\xff")]);
        assert_eq!(table, "ID  STATUS\n1   busy\\nMAINPID=1\\x1b[2J\\xff\n");
    }

    #[test]
    fn hostile_ids_stay_on_their_row() {
        let id = "evil\n\x1b[31mred";
        let workers = [worker(id, b"idle\r\nforged"), worker("2", b"idle")];
        let table = status_table(&workers);
        assert_eq!(table.lines().count(), 3, "{table}");
        assert_no_escape_or_control(&table);
        assert!(
            table.contains("evil\\n\\x1b[31mred  idle\\x0d\\nforged\n"),
            "{table}"
        );

        let rows = [
            row(id, "busy\x1b[2J", "busy\n\u{9b}31m"),
            row("2", "idle", "idle"),
        ];
        let table = worker_table(&rows);
        assert_eq!(table.lines().count(), 3, "{table}");
        assert_no_escape_or_control(&table);
        assert!(
            table.contains(
                "  evil\\n\\x1b[31mred  busy\\x1b[2J  1.0s       no     busy\\n\\xc2\\x9b31m\n"
            ),
            "{table}"
        );
    }

    #[test]
    fn a_long_state_cannot_widen_every_row() {
        let long = "x".repeat(1 << 20);
        let table = worker_table(&[row("1", &long, "busy"), row("2", "idle", "idle")]);
        assert!(
            table.lines().all(|line| line.len() < 100),
            "{}",
            &table[..200]
        );
        assert!(table.contains(&format!("{}…", "x".repeat(MAX_STATE_CELL - 3))));
    }

    #[test]
    fn json_escapes_what_a_terminal_would_act_on() {
        let workers = [worker("a\n\x1b", "x\u{9b}y\x7f".as_bytes())];
        let json = status_json(&workers);
        assert_eq!(
            json,
            r#"{"workers":[{"id":"a\n\u001b","status":"x\u009by\u007f"}]}"#
        );
        assert!(!json.chars().any(char::is_control));
    }

    #[test]
    fn table_aligns_ids() {
        let table = status_table(&[worker("7", b"idle"), worker("12345", b"busy GET /")]);
        assert_eq!(table, "ID     STATUS\n7      idle\n12345  busy GET /\n");
    }
}
