//! `scoreboardctl`: look at scoreboards, and run the demo.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use std::io::{IsTerminal, Write};

use anyhow::Context as _;
use clap::Parser;
use scoreboard_agent::ctl::{self, demo, enable, render as view};
use scoreboard_agent::{error_chain, escape};

// The command line, shared with build.rs (the manual page and completions).
#[path = "../cli/scoreboardctl.rs"]
mod cli;

use cli::{Cli, Command};

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
            config,
        } => {
            let reports = block_on(ctl::gather(&config.config))??;
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
            stuck_after,
            wedged_after,
            kill_stuck_after,
            kill_signal,
            kill_grace,
            actions,
        } => {
            let health = enable::HealthOptions {
                stuck_after,
                wedged_after,
                kill_stuck_after,
                kill_signal,
                kill_grace,
                actions,
            };
            let report = enable::enable(
                &target(root),
                &unit,
                user.as_deref(),
                group.as_deref(),
                &health,
            )?;
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Disable { unit, root } => {
            print!("{}", enable::disable(&target(root), &unit)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::List { json, config } => {
            let reports = block_on(ctl::gather(&config.config))??;
            let code = ctl::list(
                &reports,
                json,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr(),
            )?;
            Ok(ExitCode::from(code))
        }
        Command::Watch {
            interval,
            count,
            config,
        } => {
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
                let reports = runtime.block_on(gatherer.gather(&config.config))?;
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
                std::thread::sleep(interval);
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_defaults_to_the_packaged_configuration() {
        assert_eq!(
            super::cli::DEFAULT_CONFIG,
            scoreboard_agent::config::DEFAULT_CONFIG
        );
    }
}
