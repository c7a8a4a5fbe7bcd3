//! Log entries to journald that never block the agent.
//!
//! tracing-journald writes with a blocking `send_to`: when journald stops reading (hung,
//! stopped with SIGSTOP, its socket queue full), the agent's loop would block in a log
//! call and miss its own watchdog. This layer speaks the same native protocol
//! (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>) with the same fields — `MESSAGE`,
//! `PRIORITY`, `SYSLOG_IDENTIFIER`, `TARGET`, `CODE_FILE`, `CODE_LINE`, and each event
//! field upper-cased with the prefix `SCOREBOARD_` — over a non-blocking socket: an entry
//! journald cannot take now is dropped and counted, and the count is said in the next
//! entry that goes through. Every field value is cut at [`MAX_FIELD`] bytes, so an
//! entry always fits one datagram.

use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// Where journald listens for native entries.
const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// The most bytes of one field's value sent: a worker's status may be a MiB.
pub const MAX_FIELD: usize = 8 << 10;

/// The journald layer.
pub struct Journal {
    socket: UnixDatagram,
    identifier: String,
    /// Entries dropped since the last one that went through.
    dropped: AtomicU64,
}

impl Journal {
    /// A layer sending to journald; fails when its socket cannot be made.
    pub fn new() -> std::io::Result<Journal> {
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        // Fails at once when nothing listens: the caller logs to stderr instead.
        socket.connect(JOURNALD_SOCKET)?;
        let identifier = std::env::args_os()
            .next()
            .and_then(|arg0| {
                std::path::Path::new(&arg0)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "scoreboard-agent".to_owned());
        Ok(Journal {
            socket,
            identifier,
            dropped: AtomicU64::new(0),
        })
    }

    /// Sends one entry, or counts it dropped; never waits.
    fn send(&self, entry: &[u8]) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            let mut note = Vec::new();
            put(&mut note, "PRIORITY", b"4");
            put(&mut note, "SYSLOG_IDENTIFIER", self.identifier.as_bytes());
            put(
                &mut note,
                "SCOREBOARD_DROPPED",
                dropped.to_string().as_bytes(),
            );
            let message = format!(
                "{dropped} log entries were dropped: the journal was not taking them (journald hung or its queue full)"
            );
            put(&mut note, "MESSAGE", message.as_bytes());
            if self.socket.send(&note).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.dropped.fetch_sub(dropped, Ordering::Relaxed);
        }
        if self.socket.send(entry).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for Journal {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let meta = event.metadata();
        let mut entry = Vec::with_capacity(512);
        let priority: &[u8] = match *meta.level() {
            Level::ERROR => b"3",
            Level::WARN => b"4",
            Level::INFO => b"6",
            Level::DEBUG | Level::TRACE => b"7",
        };
        put(&mut entry, "PRIORITY", priority);
        put(&mut entry, "SYSLOG_IDENTIFIER", self.identifier.as_bytes());
        put(&mut entry, "TARGET", meta.target().as_bytes());
        if let Some(file) = meta.file() {
            put(&mut entry, "CODE_FILE", file.as_bytes());
        }
        if let Some(line) = meta.line() {
            put(&mut entry, "CODE_LINE", line.to_string().as_bytes());
        }
        event.record(&mut Fields {
            entry: &mut entry,
            text: String::new(),
        });
        self.send(&entry);
    }
}

/// Writes an event's fields into an entry.
struct Fields<'a> {
    entry: &'a mut Vec<u8>,
    /// Scratch for formatting a value.
    text: String,
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, value.as_bytes());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        let _ = write!(text, "{value:?}");
        self.field(field, text.as_bytes());
        self.text = text;
    }
}

impl Fields<'_> {
    fn field(&mut self, field: &Field, value: &[u8]) {
        if field.name() == "message" {
            put(self.entry, "MESSAGE", value);
            return;
        }
        let name: String = field
            .name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        put(self.entry, &format!("SCOREBOARD_{name}"), value);
    }
}

/// One field in the native protocol's binary-safe form (name, newline, 64-bit
/// little-endian length, value, newline), its value cut at [`MAX_FIELD`] bytes.
fn put(entry: &mut Vec<u8>, name: &str, value: &[u8]) {
    let value = &value[..value.len().min(MAX_FIELD)];
    entry.extend_from_slice(name.as_bytes());
    entry.push(b'\n');
    entry.extend_from_slice(&(value.len() as u64).to_le_bytes());
    entry.extend_from_slice(value);
    entry.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_length_prefixed_and_cut() {
        let mut entry = Vec::new();
        put(&mut entry, "MESSAGE", b"a\nb");
        assert_eq!(entry, b"MESSAGE\n\x03\0\0\0\0\0\0\0a\nb\n");
        let mut entry = Vec::new();
        put(&mut entry, "SCOREBOARD_STATUS", &vec![b'x'; 1 << 20]);
        assert_eq!(entry.len(), "SCOREBOARD_STATUS\n".len() + 8 + MAX_FIELD + 1);
    }

    /// A journal that does not read: entries are dropped without waiting, counted, and
    /// the count goes first once it reads again.
    #[test]
    fn a_journal_that_does_not_read_costs_no_wait() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("journal");
        let journald = UnixDatagram::bind(&path).unwrap();
        let socket = UnixDatagram::unbound().unwrap();
        socket.set_nonblocking(true).unwrap();
        socket.connect(&path).unwrap();
        let journal = Journal {
            socket,
            identifier: "test".into(),
            dropped: AtomicU64::new(0),
        };
        let started = std::time::Instant::now();
        for _ in 0..10_000 {
            journal.send(b"MESSAGE=x\n");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let dropped = journal.dropped.load(Ordering::Relaxed);
        assert!(dropped > 0);
        // journald reads again: the next entry is preceded by the count.
        let mut buf = vec![0; 65536];
        while journald.recv(&mut buf).is_ok_and(|n| n > 0) {
            journald.set_nonblocking(true).unwrap();
        }
        journal.send(b"MESSAGE=after\n");
        journald.set_nonblocking(false).unwrap();
        let n = journald.recv(&mut buf).unwrap();
        let note = String::from_utf8_lossy(&buf[..n]);
        assert!(
            note.contains(&format!("{dropped} log entries were dropped")),
            "{note}"
        );
        let n = journald.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"MESSAGE=after\n");
        assert_eq!(journal.dropped.load(Ordering::Relaxed), 0);
    }
}
