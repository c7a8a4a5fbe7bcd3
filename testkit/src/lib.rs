//! The one test harness of the scoreboard workspace, shared by the agent's tests
//! (`tests/`), its benches (`benches/`) and the client's tests.
//!
//! * [`AgentDir`], [`Agent`], [`NotifySocket`]: a configuration in a temporary directory,
//!   the agent started on it (killed when dropped), and a notify socket of our own in
//!   place of systemd's; [`AgentUnderTest`], all three for the benches.
//! * [`Bus`]: a private `dbus-daemon`; [`bus`]: the agent's names on it, `ListWorkers`.
//! * [`Worker`], [`Holder`], [`Killed`]: worker processes and any other child, killed
//!   however a test ends.
//! * [`cpu_seconds`], [`memory_kib`], [`open_fds`]: what a process costs, from /proc.
//! * [`binary`], [`testkit_binary`]: where the programs under test are; [`target_dir`]:
//!   where `packaging/build` leaves the packages.
//! * [`wait_until`], [`poll`], [`emptied`]: waiting for a condition instead of sleeping.
//!
//! The workers are processes of this crate's binary, `scoreboard-testkit` (subcommands
//! `stdin-worker`, `hold-workers`, `test-pool`; and `test-flood`, a hostile bus client),
//! found in the target directory beside the running test or bench, and built there by
//! [`binary`] when missing (a bench builds only its own package's programs).

#![deny(missing_docs)]

mod agent;
pub mod bus;
mod poll;
mod process;

pub use agent::{Agent, AgentDir, AgentUnderTest, NotifySocket, Recorder};
pub use bus::Bus;
pub use poll::{poll, poll_every, wait_until};
pub use process::{
    Holder, Killed, Worker, as_root_or_skip, binary, cpu_seconds, emptied, memory_kib, open_fds,
    perl_as_nobody, target_dir, testkit_binary,
};
