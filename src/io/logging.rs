//! Logging: to the journal, with structured fields, when started by systemd; readable
//! lines on stderr otherwise — one line per event, whatever a worker's id or status
//! put in it. (What the agent says at most once per quiet period is decided by
//! [`crate::core::rate_limit`].)

use std::ffi::OsStr;
use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use crate::escape;

/// Sets up the global subscriber. `RUST_LOG` overrides the default level (info).
///
/// systemd sets `$JOURNAL_STREAM` when stdout/stderr go to the journal; then events go
/// to journald natively ([`crate::io::journal`], which never blocks), each field as a
/// journal field prefixed `SCOREBOARD_` (for example `SCOREBOARD_UNIT=web.service`,
/// `SCOREBOARD_WORKER=1234`). The journal's protocol carries any bytes in a field, so a
/// newline there is data, not a new entry.
///
/// Otherwise lines go to stderr, coloured only when stderr is a terminal and `NO_COLOR`
/// is unset or empty ([`colour`]): a log in a file or a pipe is plain text.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journal =
        std::env::var_os("JOURNAL_STREAM").and_then(|_| crate::io::journal::Journal::new().ok());
    match journal {
        Some(journal) => tracing_subscriber::registry()
            .with(filter)
            .with(journal)
            .init(),
        None => {
            let colour = colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            );
            tracing_subscriber::registry()
                .with(filter)
                .with(stderr_layer(std::io::stderr, colour))
                .init()
        }
    }
}

/// Whether the stderr log is coloured: only on a terminal, and not when `NO_COLOR` is
/// set to anything but the empty string (<https://no-color.org>).
pub fn colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// The stderr layer: tracing's usual full format, made safe as a whole rather than at
/// each call site — every event is exactly one line, with no control character in it
/// but, with `colour`, the escape sequences that colour its timestamp and level.
///
/// tracing-subscriber's own colours are off: they would be escaped with the rest.
/// [`OneLine`] adds its own after escaping, to the parts it wrote itself.
fn stderr_layer<S, W>(make_writer: W, colour: bool) -> impl tracing_subscriber::Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(make_writer)
        .with_ansi(false)
        .event_format(OneLine {
            inner: tracing_subscriber::fmt::format()
                .with_target(false)
                .with_ansi(false),
            colour,
        })
}

/// Formats an event with the inner formatter, then escapes every control character in
/// the result but its final newline (as [`escape::escape_controls`] does: `\n`, `\t`,
/// `\xNN`, backslashes kept so `?`-formatted values read as usual).
///
/// Escaping the finished line, not each field, is what makes it hold for any message,
/// field or span a future call site adds. tracing-subscriber escapes ESC and C1 in
/// field values itself, but not a newline, a carriage return or other C0 characters.
///
/// With `colour`, the escaped line's timestamp is dimmed and its level coloured as
/// tracing-subscriber colours them: the only escape sequences in the line are those.
struct OneLine<F> {
    inner: F,
    colour: bool,
}

impl<S, N, F> FormatEvent<S, N> for OneLine<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        if self.colour {
            let mut escaped = String::with_capacity(line.len() + 16);
            escape::write_controls_escaped(line, &mut escaped)?;
            paint(&escaped, *event.metadata().level(), &mut writer)?;
        } else {
            escape::write_controls_escaped(line, &mut writer)?;
        }
        writer.write_char('\n')
    }
}

/// `line` (escaped, `<timestamp> <LEVEL> …`) with its timestamp dimmed and its level
/// coloured. The level is the first occurrence of its name: nothing before it but the
/// timestamp, which holds no capital letter but `T` and `Z`.
fn paint(line: &str, level: Level, out: &mut impl fmt::Write) -> fmt::Result {
    let name = level.as_str();
    let Some(at) = line.find(name) else {
        return out.write_str(line);
    };
    let colour = match level {
        Level::ERROR => "31",
        Level::WARN => "33",
        Level::INFO => "32",
        Level::DEBUG => "34",
        Level::TRACE => "35",
    };
    let (before, rest) = line.split_at(at);
    let timestamp = before.trim_end();
    let padding = &before[timestamp.len()..];
    if !timestamp.is_empty() {
        write!(out, "\x1b[2m{timestamp}\x1b[0m")?;
    }
    write!(
        out,
        "{padding}\x1b[{colour}m{name}\x1b[0m{}",
        &rest[name.len()..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    /// A `MakeWriter` that keeps what the layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn log_to_stderr_layer(log: impl FnOnce()) -> String {
        log_to_stderr_layer_coloured(false, log)
    }

    fn log_to_stderr_layer_coloured(colour: bool, log: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber =
            tracing_subscriber::registry().with(stderr_layer(move || writer.clone(), colour));
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_newline_in_a_message_cannot_forge_a_log_line() {
        let out = log_to_stderr_layer(|| tracing::warn!("{}", "x\nERROR forged"));
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.ends_with(" WARN x\\nERROR forged\n"), "{out}");
    }

    #[test]
    fn no_field_or_span_can_put_a_control_character_on_stderr() {
        let out = log_to_stderr_layer(|| {
            let span = tracing::info_span!("sweep", dir = %"/run/a\nb");
            let _entered = span.enter();
            let id = "7\n2026-01-01T00:00:00Z ERROR forged\r\x1b[2J\0\u{85}";
            tracing::warn!(worker = %id, debug = ?id, "removed {id}");
            tracing::info!("second");
        });
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(
            !out.lines().any(|line| line.chars().any(char::is_control)),
            "{out:?}"
        );
        assert!(out.contains("worker=7\\n2026"), "{out}");
        assert!(out.contains("sweep{dir=/run/a\\nb}"), "{out}");
    }

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
        assert!(!colour(false, Some(OsStr::new(""))));
    }

    #[test]
    fn a_plain_log_has_no_escape_sequence_even_escaped() {
        let out = log_to_stderr_layer(|| {
            tracing::error!("e");
            tracing::warn!(unit = %"web.service", "w");
            tracing::info!("i");
        });
        assert_eq!(out.lines().count(), 3, "{out}");
        assert!(!out.contains('\x1b') && !out.contains("\\x1b"), "{out:?}");
        assert!(
            out.lines()
                .nth(1)
                .unwrap()
                .contains(" WARN w unit=web.service"),
            "{out}"
        );
    }

    #[test]
    fn a_coloured_log_colours_only_the_timestamp_and_the_level() {
        let out = log_to_stderr_layer_coloured(true, || {
            tracing::warn!(worker = %"\x1b[31mred", "WARN INFO \x1b[2J");
            tracing::error!("e");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        // The timestamp dimmed, the level yellow; what came from the event escaped.
        assert!(lines[0].starts_with("\x1b[2m"), "{out:?}");
        assert!(
            lines[0]
                .contains("\x1b[0m  \x1b[33mWARN\x1b[0m WARN INFO \\x1b[2J worker=\\x1b[31mred"),
            "{out:?}"
        );
        assert_eq!(lines[0].matches('\x1b').count(), 4, "{out:?}");
        assert!(lines[1].contains("\x1b[31mERROR\x1b[0m e"), "{out:?}");
    }
}
