//! `scoreboard-agent` and `scoreboardctl`: a systemd-native view of worker pools that
//! keep a [Parallel::Scoreboard](https://metacpan.org/pod/Parallel::Scoreboard)-style
//! scoreboard directory, built on the [`scoreboard`] crate.
#![deny(missing_docs)]

pub mod agent;
pub mod bus;
pub mod config;
pub mod core;
pub mod ctl;
pub mod escape;
pub mod io;
pub mod metrics;
