//! The command line of `scoreboard-agent`, and nothing else: the binary
//! (`src/bin/scoreboard-agent.rs`) and `build.rs` (its manual page and shell
//! completions) both include this file with `#[path]`, so `--help`,
//! `man scoreboard-agent` and the completions come from the same definitions. It may
//! use only clap and std, the build script's dependencies.

use std::path::PathBuf;

use clap::Parser;

/// The agent's configuration file, as the packages install it (the library's
/// `config::DEFAULT_CONFIG`, which the binary checks it equals).
pub const DEFAULT_CONFIG: &str = "/etc/scoreboard/agent.toml";

#[derive(Debug, Parser)]
#[command(
    name = "scoreboard-agent",
    version,
    about = "Summarise worker scoreboards into systemd's STATUS= lines",
    long_about = "Summarise worker scoreboards into systemd's STATUS= lines.\n\n\
        scoreboard-agent watches the scoreboard directory of each configured service \
        (one status file per worker, the format of Perl's Parallel::Scoreboard) and \
        puts a summary such as \"12 workers: 8 busy, 3 idle, 1 stuck\" into the \
        service's systemctl status line. It reports a worker that starts or dies at \
        once, samples status changes every interval, removes dead workers' files, \
        and serves each worker's details on D-Bus as io.scoreboard.Agent1. It is \
        meant to run as the systemd unit scoreboard-agent.service."
)]
pub struct Args {
    /// The agent's configuration; services are read from services.d/ beside it.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Validate the configuration, print what it watches, and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Mark every watched service's status line as no longer followed, with the time,
    /// and exit: the unit's ExecStopPost=, so that a stopped, crashed or killed agent
    /// leaves no line claiming a live count.
    #[arg(long, conflicts_with = "check_config")]
    pub mark_stopped: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Args::command().debug_assert();
    }
}
