//! Logging: to the journal, with structured fields, when started by systemd; readable
//! lines on stderr otherwise.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// Sets up the global subscriber. `RUST_LOG` overrides the default level (info).
///
/// systemd sets `$JOURNAL_STREAM` when stdout/stderr go to the journal; then events go
/// to journald natively, each field as a journal field prefixed `SCOREBOARD_` (for
/// example `SCOREBOARD_UNIT=web.service`, `SCOREBOARD_WORKER=1234`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|layer| layer.with_field_prefix(Some("SCOREBOARD".to_owned())));
    match journal {
        Some(journal) => tracing_subscriber::registry()
            .with(filter)
            .with(journal)
            .init(),
        None => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false),
            )
            .init(),
    }
}

/// Says the same warning at most once per `quiet` period, so that one bad file in a
/// directory swept every second does not flood the journal.
pub struct RateLimit {
    quiet: Duration,
    last: HashMap<String, Instant>,
}

impl RateLimit {
    /// A limiter that lets a given key through once per `quiet`.
    pub fn new(quiet: Duration) -> Self {
        RateLimit {
            quiet,
            last: HashMap::new(),
        }
    }

    /// Whether the warning keyed `key` should be said now.
    pub fn allow(&mut self, key: &str, now: Instant) -> bool {
        if self.last.len() > 10_000 {
            self.last
                .retain(|_, at| now.saturating_duration_since(*at) < self.quiet);
        }
        match self.last.get(key) {
            Some(at) if now.saturating_duration_since(*at) < self.quiet => false,
            _ => {
                self.last.insert(key.to_owned(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_passes_once_per_quiet_period() {
        let mut limit = RateLimit::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(limit.allow("a", t0));
        assert!(!limit.allow("a", t0 + Duration::from_secs(59)));
        assert!(limit.allow("b", t0));
        assert!(limit.allow("a", t0 + Duration::from_secs(60)));
    }
}
