//! The command line of `scoreboardctl`, and nothing else: the binary
//! (`src/bin/scoreboardctl.rs`) and `build.rs` (its manual page and shell completions)
//! both include this file with `#[path]`, so `--help`, `man scoreboardctl` and the
//! completions come from the same definitions. It may use only clap, humantime and
//! std, the build script's dependencies.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// The agent's configuration file, as the packages install it (the library's
/// `config::DEFAULT_CONFIG`, which the binary checks it equals).
pub const DEFAULT_CONFIG: &str = "/etc/scoreboard/agent.toml";

/// The longest `watch --interval`, in seconds: a day.
pub const MAX_REFRESH_SECONDS: u64 = 86_400;

#[derive(Debug, Parser)]
#[command(
    name = "scoreboardctl",
    version,
    about = "Inspect worker scoreboards and the services the agent watches",
    long_about = "Inspect worker scoreboards and the services scoreboard-agent watches.\n\n\
        status, list and watch ask the running agent over D-Bus (io.scoreboard.Agent1); \
        when no agent answers they say so on stderr and read the configured scoreboard \
        directories directly, and then the time since a status changed and whether a \
        worker is stuck are unknown. enable and disable set a service up for the agent, \
        or undo exactly that. demo runs a live pool of workers in a temporary directory, \
        without root or systemd.",
    after_help = "Exit status: 0 shown, 1 failure, 2 usage error, 3 the service is not running, 4 no such service."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `--config`, on the subcommands that read the configuration.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The agent's configuration (services are read from services.d/ beside it).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show each worker of a watched service (or of all): from the agent over D-Bus,
    /// or read from the directories when no agent runs.
    Status {
        /// The service, e.g. myservice.service; all watched services when omitted.
        #[arg(conflicts_with = "dir")]
        unit: Option<String>,
        /// Read this scoreboard directory instead of a configured service.
        #[arg(long, value_name = "DIR", conflicts_with = "config")]
        dir: Option<PathBuf>,
        /// Print JSON; with --dir exactly `{"workers":[{"id":…,"status":…}]}`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List the watched services with their worker counts and summaries.
    List {
        /// Print the `status --json` document without the workers.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// A live, refreshing view of every watched service and worker, like top.
    Watch {
        /// Time between refreshes: a duration as in the configuration ("1s", "500ms",
        /// "2m") or a number of seconds ("0.5"); at most a day.
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = refresh_interval)]
        interval: Duration,
        /// Stop after this many screens.
        #[arg(long, value_name = "N")]
        count: Option<u32>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Watch a service: tmpfiles.d entry for its scoreboard, NotifyAccess=main drop-in,
    /// agent configuration; then reload systemd and the agent. Needs root.
    Enable {
        /// The service, e.g. myservice.service.
        unit: String,
        /// Owner of /run/NAME/scoreboard (default: the unit's User=, else root).
        #[arg(long)]
        user: Option<String>,
        /// Group of /run/NAME/scoreboard (default: the unit's Group=, else the user).
        #[arg(long)]
        group: Option<String>,
        /// A non-idle worker whose status stands this long is stuck (e.g. "1m").
        #[arg(long, value_name = "DURATION")]
        stuck_after: Option<String>,
        /// Workers seen, every one stuck, this long while the unit is active: trigger the
        /// unit's watchdog (health action).
        #[arg(long, value_name = "DURATION")]
        wedged_after: Option<String>,
        /// A worker stuck this long gets --kill-signal, then SIGKILL after --kill-grace
        /// (health action; needs --grant-kill once, or `scoreboardctl grant-kill`).
        #[arg(long, value_name = "DURATION")]
        kill_stuck_after: Option<String>,
        /// With --kill-stuck-after: also let scoreboard-agent send SIGTERM/SIGKILL to
        /// processes of other users, by adding CAP_KILL and the process table to
        /// scoreboard-agent.service (what grant-kill does); restarts the agent.
        #[arg(long, requires = "kill_stuck_after")]
        grant_kill: bool,
        /// The first signal for a stuck worker: TERM (default), INT, QUIT, HUP, USR1,
        /// USR2, ABRT or KILL.
        #[arg(long, value_name = "SIGNAL")]
        kill_signal: Option<String>,
        /// How long a signalled worker has before SIGKILL (default 10s).
        #[arg(long, value_name = "DURATION")]
        kill_grace: Option<String>,
        /// "act" (default) or "report": only say what the health actions would do.
        #[arg(long, value_name = "MODE")]
        actions: Option<String>,
        /// Write under this root instead of / and run nothing (for tests).
        #[arg(long, hide = true)]
        root: Option<PathBuf>,
    },
    /// Stop watching a service: remove exactly what `enable` wrote. Needs root.
    Disable {
        /// The service, e.g. myservice.service.
        unit: String,
        #[arg(long, hide = true)]
        root: Option<PathBuf>,
    },
    /// Let scoreboard-agent send SIGTERM/SIGKILL to processes of other users, which
    /// kill_stuck_after needs: a drop-in adding CAP_KILL and the process table to
    /// scoreboard-agent.service; then systemd reloaded and the agent restarted. Needs
    /// root.
    GrantKill {
        #[arg(long, hide = true)]
        root: Option<PathBuf>,
    },
    /// Take back what grant-kill gave scoreboard-agent.service: stuck workers are then
    /// refused, never signalled. Needs root.
    RevokeKill {
        #[arg(long, hide = true)]
        root: Option<PathBuf>,
    },
    /// Run a live demo pool in a temporary directory (no root, no systemd needed).
    Demo {
        /// How many worker processes to run.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1000))]
        workers: u16,
        /// Stop after this many seconds instead of waiting for Ctrl-C.
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// One demo worker process (started by `demo`).
    #[command(hide = true)]
    DemoWorker {
        dir: PathBuf,
        #[arg(long)]
        seed: u64,
    },
}

/// `watch --interval`: a duration in the configuration's forms ("1s", "500ms"), or a
/// plain number of seconds ("2", "0.5"), from 0 to a day.
pub fn refresh_interval(text: &str) -> Result<Duration, String> {
    let out_of_range = || format!("{text} is not between 0 and {MAX_REFRESH_SECONDS} seconds");
    let duration = match text.trim().parse::<f64>() {
        // A plain number (NaN, inf and negatives included) is seconds.
        Ok(seconds) if (0.0..=MAX_REFRESH_SECONDS as f64).contains(&seconds) => {
            Duration::from_secs_f64(seconds)
        }
        Ok(_) => return Err(out_of_range()),
        Err(_) => humantime::parse_duration(text).map_err(|e| {
            format!(
                "invalid duration {text:?}: {e} (write e.g. \"1s\", \"500ms\", \"2m\", or a \
                 number of seconds; between 0 and {MAX_REFRESH_SECONDS} seconds)"
            )
        })?,
    };
    if duration > Duration::from_secs(MAX_REFRESH_SECONDS) {
        return Err(out_of_range());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn watch_interval_takes_durations_and_seconds() {
        for (text, expected) in [
            ("1s", Duration::from_secs(1)),
            ("500ms", Duration::from_millis(500)),
            ("2m", Duration::from_secs(120)),
            ("1h 30m", Duration::from_secs(5400)),
            ("2", Duration::from_secs(2)),
            ("0.25", Duration::from_millis(250)),
            ("0", Duration::ZERO),
            ("86400", Duration::from_secs(86_400)),
            ("1day", Duration::from_secs(86_400)),
        ] {
            assert_eq!(refresh_interval(text), Ok(expected), "{text}");
            let cli = Cli::try_parse_from(["scoreboardctl", "watch", "--interval", text]).unwrap();
            let Command::Watch { interval, .. } = cli.command else {
                panic!("{cli:?}")
            };
            assert_eq!(interval, expected, "{text}");
        }
        let cli = Cli::try_parse_from(["scoreboardctl", "watch"]).unwrap();
        assert!(
            matches!(cli.command, Command::Watch { interval, .. } if interval == Duration::from_secs(1))
        );
    }

    #[test]
    fn watch_interval_refuses_what_no_clock_can_keep() {
        for text in ["-1", "NaN", "inf", "1e30", "86401", "2days", "-1s"] {
            let error = refresh_interval(text).unwrap_err();
            assert!(
                error.contains("between 0 and 86400 seconds"),
                "{text}: {error}"
            );
        }
        let error = refresh_interval("soon").unwrap_err();
        assert!(error.contains("invalid duration \"soon\""), "{error}");
    }

    #[test]
    fn config_only_where_it_is_read() {
        for args in [
            &["status", "web", "--config", "/x.toml"][..],
            &["status", "--json", "--config", "/x.toml"],
            &["list", "--config", "/x.toml"],
            &["watch", "--count", "1", "--config", "/x.toml"],
        ] {
            let cli = Cli::try_parse_from(["scoreboardctl"].iter().chain(args)).unwrap();
            let config = match cli.command {
                Command::Status { config, .. }
                | Command::List { config, .. }
                | Command::Watch { config, .. } => config.config,
                other => panic!("{other:?}"),
            };
            assert_eq!(config, PathBuf::from("/x.toml"), "{args:?}");
        }
        for args in [
            &["demo", "--config", "/x.toml"][..],
            &["--config", "/x.toml", "demo"],
            &["enable", "web", "--config", "/x.toml"],
            &["disable", "web", "--config", "/x.toml"],
            &["status", "--dir", "/tmp/sb", "--config", "/x.toml"],
        ] {
            let error = Cli::try_parse_from(["scoreboardctl"].iter().chain(args)).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}: {error}");
        }
        let mut command = Cli::command();
        let demo = command.find_subcommand_mut("demo").unwrap();
        let help = demo.render_long_help().to_string();
        assert!(!help.contains("--config"), "{help}");
        let status = command.find_subcommand_mut("status").unwrap();
        let help = status.render_long_help().to_string();
        assert!(help.contains("--config <PATH>"), "{help}");
    }
}
