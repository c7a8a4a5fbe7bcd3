//! `scoreboard-agent` and `scoreboardctl`: a systemd-native view of worker pools that
//! keep a [Parallel::Scoreboard](https://metacpan.org/pod/Parallel::Scoreboard)-style
//! scoreboard directory, built on the [`scoreboard`] crate.
//!
//! # Layout
//!
//! * [`config`] — `agent.toml` and `services.d/*.toml`, parsed and validated into a
//!   typed [`config::Config`] before anything starts.
//! * [`summary`] — the core, without I/O: a [`summary::Pool`] per service is fed
//!   snapshots and answers with what changed, the counts per state, who is stuck, and
//!   the sanitised `STATUS=` line.
//! * [`pacing`] — when a summary may go out (pure rules, tested without I/O).
//! * [`agent`] — the event loop: inotify ([`watch`]), timers, signals, sweeps in bounded
//!   steps, and sending through [`notify`] (on behalf of a service's main process). It
//!   never waits for the bus.
//! * [`bus`] — the bus side on a thread of its own: serving, asking [`systemd`] for main
//!   processes, reconnecting; the loop hands it signals over a bounded queue.
//! * [`dbus`] — `io.scoreboard.Agent1`: thin objects over the shared pools, one string
//!   boundary (`bus_string`), and the gate every per-worker answer passes: who may read
//!   ([`privacy`]) and how much ([`quota`]); the proxies `scoreboardctl` uses.
//! * [`metrics`] — the Prometheus registry, `GET /metrics` and the textfile.
//! * [`state`] — what a restarted agent remembers (stuck timers), in /run/scoreboard.
//! * [`escape`] — the one place that makes bytes a service's user controls (worker ids,
//!   statuses) printable: for logs, tables and metric labels.
//! * [`logging`] — journald or stderr (one line per event, whatever it holds), and
//!   rate-limited warnings in bounded memory.
//! * [`enable`] — `scoreboardctl enable`/`disable`: tmpfiles.d, drop-in, services.d.
//! * [`ctl`] and [`view`] — what `scoreboardctl` shows; [`demo`] — `scoreboardctl demo`;
//!   [`fixtures`] — worker processes for tests, behind hidden subcommands.
//! * `src/bin/` — argument parsing and dispatch only.
#![deny(missing_docs)]

pub mod agent;
pub mod bus;
pub mod config;
pub mod ctl;
pub mod dbus;
pub mod demo;
pub mod enable;
pub mod escape;
pub mod fixtures;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod pacing;
pub mod privacy;
pub mod quota;
pub mod state;
pub mod summary;
pub mod systemd;
pub mod view;
pub mod watch;
