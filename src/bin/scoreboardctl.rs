//! `scoreboardctl`: look at scoreboards, and run the demo.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use std::io::{IsTerminal, Write};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use scoreboard_agent::config;
use scoreboard_agent::ctl::{self, demo, enable, render as view};
use scoreboard_agent::{error_chain, escape};

/// The real root, or a test's, where nothing is run.
fn target(root: Option<PathBuf>) -> enable::Target {
    match root {
        Some(root) => enable::Target { root, apply: false },
        None => enable::Target {
            root: PathBuf::from("/"),
            apply: true,
        },
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "scoreboardctl",
    version,
    about = "Inspect worker scoreboards",
    after_help = "Exit status: 0 shown, 1 failure, 2 usage error, 3 the service is not running, 4 no such service."
)]
struct Cli {
    /// The agent's configuration (services are read from services.d/ beside it).
    #[arg(long, global = true, default_value = config::DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show each worker of a watched service (or of all): from the agent over D-Bus,
    /// or read from the directories when no agent runs.
    Status {
        /// The service, e.g. myservice.service; all watched services when omitted.
        #[arg(conflicts_with = "dir")]
        unit: Option<String>,
        /// Read this scoreboard directory instead of a configured service.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON; with --dir exactly `{"workers":[{"id":…,"status":…}]}`.
        #[arg(long)]
        json: bool,
    },
    /// List the watched services with their worker counts and summaries.
    List {
        /// Print the `status --json` document without the workers.
        #[arg(long)]
        json: bool,
    },
    /// A live, refreshing view of every watched service and worker, like top.
    Watch {
        /// Seconds between refreshes (0 to 86400).
        #[arg(long, default_value_t = 1.0, value_parser = refresh_interval)]
        interval: f64,
        /// Stop after this many screens.
        #[arg(long)]
        count: Option<u32>,
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

/// `--interval`: a number of seconds a `Duration` can hold and a screen can follow.
fn refresh_interval(text: &str) -> Result<f64, String> {
    let seconds: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=86_400.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!("{text} is not between 0 and 86400 seconds"))
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            // Each cause once; a message of several lines (what to do next) keeps the
            // prefix on each.
            for line in error_chain::text(&error).lines() {
                eprintln!("scoreboardctl: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Runs a future on a single-threaded runtime: scoreboardctl asks the agent and exits.
fn block_on<T>(future: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    Ok(runtime.block_on(future))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Status {
            unit,
            dir: None,
            json,
        } => {
            let reports = block_on(ctl::gather(&cli.config))??;
            let code = ctl::status(
                &reports,
                unit.as_deref(),
                json,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr(),
            )?;
            Ok(ExitCode::from(code))
        }
        Command::Enable {
            unit,
            user,
            group,
            root,
        } => {
            let report = enable::enable(&target(root), &unit, user.as_deref(), group.as_deref())?;
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Disable { unit, root } => {
            print!("{}", enable::disable(&target(root), &unit)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::List { json } => {
            let reports = block_on(ctl::gather(&cli.config))??;
            let code = ctl::list(
                &reports,
                json,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr(),
            )?;
            Ok(ExitCode::from(code))
        }
        Command::Watch { interval, count } => {
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(signal, stop.clone())
                    .context("installing a signal handler")?;
            }
            let tty = std::io::stdout().is_terminal();
            let mut shown = 0;
            // One runtime and one bus connection for as long as it watches.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            let mut gatherer = ctl::Gatherer::default();
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && count.is_none_or(|n| shown < n)
            {
                let reports = runtime.block_on(gatherer.gather(&cli.config))?;
                let mut out = std::io::stdout().lock();
                if tty {
                    write!(out, "\x1b[H\x1b[2J")?;
                }
                for warning in &reports.warnings {
                    writeln!(out, "({warning})")?;
                }
                writeln!(out, "{}", ctl::watch_screen(&reports))?;
                out.flush()?;
                shown += 1;
                std::thread::sleep(Duration::from_secs_f64(interval));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            dir: Some(dir),
            json,
            ..
        } => {
            let snapshot = scoreboard::read_dir(&dir)?;
            for skipped in &snapshot.skipped {
                let skipped = escape::escape_controls(&skipped.to_string()).into_owned();
                eprintln!("scoreboardctl: warning: {skipped}");
            }
            for id in &snapshot.reaped {
                let id = escape::Escaped::str(id);
                eprintln!("scoreboardctl: removed the file of dead worker {id}");
            }
            if json {
                println!("{}", view::status_json(&snapshot.workers));
            } else {
                print!("{}", view::status_table(&snapshot.workers));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { workers, seconds } => {
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(signal, stop.clone())
                    .context("installing a signal handler")?;
            }
            let exe =
                std::env::current_exe().context("finding this executable to spawn workers")?;
            let options = demo::Options {
                workers: workers.into(),
                duration: seconds.map(Duration::from_secs),
                ..demo::Options::default()
            };
            demo::run(
                &options,
                &|dir, seed| demo::spawn_worker_process(&exe, dir, seed),
                &mut std::io::stdout().lock(),
                &stop,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DemoWorker { dir, seed } => {
            demo::worker(&dir, seed)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
