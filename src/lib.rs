//! `scoreboard-agent` and `scoreboardctl`: a systemd-native view of worker pools that
//! keep a [Parallel::Scoreboard](https://metacpan.org/pod/Parallel::Scoreboard)-style
//! scoreboard directory, built on the [`scoreboard`] crate.
//!
//! # Layout
//!
//! * [`view`] — turning a [`scoreboard::Snapshot`] into what people and scripts read:
//!   the table and the stable JSON. Pure functions, tested on values.
//! * [`demo`] — `scoreboardctl demo`: a pool of real worker processes in a temporary
//!   directory, some killed with SIGKILL and respawned, shown live.
//! * `src/bin/` — argument parsing and dispatch only.
#![deny(missing_docs)]

pub mod demo;
pub mod view;
