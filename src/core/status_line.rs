//! Text that leaves the agent: the `STATUS=` line rendered from a template, and the
//! D-Bus string boundary. Both take bytes a service's user chose (state names, worker
//! ids, statuses), so both are the one place their kind of text is made safe.

use std::borrow::Cow;

use crate::escape;

/// The pool at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// How many workers there are.
    pub total: usize,
    /// Workers per state, stuck ones excluded, largest first (then by name).
    pub counts: Vec<(String, usize)>,
    /// Workers stuck in a non-idle state.
    pub stuck: usize,
}

/// The longest `STATUS=` text we send. systemd takes datagrams up to 4 KiB; a status line
/// is one line of `systemctl status`.
pub const MAX_STATUS_LINE: usize = 256;

/// How many distinct states are listed before the rest are folded into "N other states".
const MAX_LISTED_STATES: usize = 6;

/// What the states past a list's limit are added up under — in the `STATUS=` line, the
/// bus's `Counts` and the metrics' `state` label. It holds a space, which no state does
/// (see [`crate::core::pool::derive_state`]), so a real state named `other` stays itself.
pub const FOLDED_STATES: &str = "other states";

/// Renders `template` (checked by [`crate::config::check_template`]) for `summary`: the
/// text systemd will show.
///
/// State names come from worker statuses, so anything may be in them; the result holds
/// no control characters (a status `busy\nMAINPID=1` cannot become a second
/// assignment), is valid UTF-8 and is at most [`MAX_STATUS_LINE`] bytes.
pub fn render(summary: &Summary, template: &str, unit: &str) -> String {
    let mut parts: Vec<String> = summary
        .counts
        .iter()
        .take(MAX_LISTED_STATES)
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    let folded: usize = summary
        .counts
        .iter()
        .skip(MAX_LISTED_STATES)
        .map(|(_, n)| n)
        .sum();
    if folded > 0 {
        parts.push(format!("{folded} {FOLDED_STATES}"));
    }
    if summary.stuck > 0 {
        parts.push(format!("{} stuck", summary.stuck));
    }
    let counts = if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    };
    let rendered = template
        .replace("{total}", &summary.total.to_string())
        .replace("{stuck}", &summary.stuck.to_string())
        .replace("{unit}", unit)
        .replace("{counts}", &counts);
    sanitize(&rendered, MAX_STATUS_LINE)
}

/// Control characters become spaces, runs of whitespace one space; the text is cut at a
/// character boundary to fit `max` bytes, ending in "…" when cut.
pub fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    let mut last_space = false;
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
    }
    let out = out.trim().to_owned();
    if out.len() <= max {
        return out;
    }
    let mut cut = max - '…'.len_utf8();
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &out[..cut])
}

/// Makes text a valid D-Bus string: what crosses the bus passes here, once.
///
/// dbus-daemon disconnects a peer that sends a string holding NUL (or invalid UTF-8),
/// and with it our name and every service's MainPID lookups — so one worker's bytes
/// would take the agent off the bus. The mapping is systemd's `cescape`, as
/// [`escape::printable`] does it: NUL and other control characters become `\xNN`
/// (`\n`, `\t` for those two), a backslash `\\`; everything else is unchanged. It is
/// one-to-one, so an escaped worker id names one worker and `GetWorker` takes it back.
pub fn bus_string(text: &str) -> Cow<'_, str> {
    escape::printable(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_a_worker_writes_can_inject_an_assignment_or_overflow() {
        let summary = Summary {
            total: 2,
            counts: vec![("busy\nMAINPID=1".into(), 1), ("\u{1b}[2J\r\0x".into(), 1)],
            stuck: 0,
        };
        let line = render(&summary, "{total} workers: {counts}", "web.service");
        assert_eq!(line, "2 workers: 1 busy MAINPID=1, 1 [2J x");
        assert!(!line.chars().any(char::is_control));

        let long = Summary {
            total: 1,
            counts: vec![("é".repeat(400), 1)],
            stuck: 0,
        };
        let line = render(&long, "{counts}", "u");
        assert!(
            line.len() <= MAX_STATUS_LINE && line.ends_with('…'),
            "{}",
            line.len()
        );
    }

    #[test]
    fn many_states_are_folded() {
        let summary = Summary {
            total: 8,
            counts: (0..8).map(|i| (format!("s{i}"), 1)).collect(),
            stuck: 0,
        };
        assert_eq!(
            render(&summary, "{counts}", "u"),
            "1 s0, 1 s1, 1 s2, 1 s3, 1 s4, 1 s5, 2 other states"
        );
        assert_eq!(
            render(
                &Summary::default(),
                "{unit}: {total} workers: {counts}",
                "web.service"
            ),
            "web.service: 0 workers: none"
        );
    }

    #[test]
    fn bus_strings_hold_no_nul_and_are_one_to_one() {
        assert_eq!(bus_string("busy\0x"), "busy\\x00x");
        assert_eq!(bus_string("a\\x00"), "a\\\\x00");
        assert_eq!(bus_string("idle"), "idle");
    }
}
