//! `scoreboard-agent` and `scoreboardctl`: a systemd-native view of worker pools that
//! keep a [Parallel::Scoreboard](https://metacpan.org/pod/Parallel::Scoreboard)-style
//! scoreboard directory, built on the [`scoreboard`] crate.
//!
//! # How the pieces fit
//!
//! The agent is a pure core inside a thin shell of I/O:
//!
//! * [`config`] — `agent.toml` and `services.d/*.toml`, parsed and validated into a
//!   typed [`config::Config`] before anything starts (and `--check-config`, which also
//!   asks systemd what the agent's unit lets it do).
//! * [`core`] — no I/O, time passed in: a [`core::pool::Pool`] per service is fed
//!   snapshots from the client crate's `DirReader` and answers with what changed, its
//!   summary and its `STATUS=` line; [`core::schedule`] decides when to sweep, send and
//!   emit D-Bus signals; [`core::health`] decides health actions;
//!   [`core::worker::WorkerReport`] is the one worker record every edge shows.
//! * [`agent`] — the shell: `run(config, shutdown, reloads)` waits for timers, inotify,
//!   reloads and the shutdown, feeds the core and performs what it answers.
//! * [`io`] — inotify, notify sockets, systemd, the agent's own privileges, Unix
//!   signals to stuck workers, saved state, atomic writes, logging.
//! * [`bus`] — `io.scoreboard.Agent1` on a thread of its own, with who may read and how
//!   much; [`metrics`] — Prometheus.
//! * [`ctl`] — what `scoreboardctl` gathers and renders, `enable`, `demo`.
//! * [`escape`] — the one place that makes bytes a service's user controls printable;
//!   [`error_chain`] — an error and its causes on one line, each said once; [`lock`] —
//!   taking a mutex, whatever a panicking thread left in it.
#![deny(missing_docs)]

pub mod agent;
pub mod bus;
pub mod config;
pub mod core;
pub mod ctl;
pub mod error_chain;
pub mod escape;
pub mod io;
pub mod lock;
pub mod metrics;
