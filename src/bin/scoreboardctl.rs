//! `scoreboardctl`: look at scoreboards, and run the demo.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use scoreboard_agent::ctl::{self, block_on, demo, enable, kill, render as view, watch};
use scoreboard_agent::error_chain;

// The command line, shared with build.rs (the manual page and completions). Included
// by path, not through the library: a build script cannot depend on the crate it
// builds, so the definitions live in a file both can include.
#[path = "../cli/scoreboardctl.rs"]
mod cli;

use cli::{Cli, Command};

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
            grant_kill,
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
                &enable::EnableTarget::at(root),
                &unit,
                user.as_deref(),
                group.as_deref(),
                &health,
                grant_kill,
            )?;
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Disable { unit, root } => {
            print!(
                "{}",
                enable::disable(&enable::EnableTarget::at(root), &unit)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::GrantKill { root } => {
            print!("{}", kill::grant_kill(&enable::EnableTarget::at(root))?);
            Ok(ExitCode::SUCCESS)
        }
        Command::RevokeKill { root } => {
            print!("{}", kill::revoke_kill(&enable::EnableTarget::at(root))?);
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
            watch::watch(&config.config, interval, count)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            dir: Some(dir),
            json,
            ..
        } => {
            view::print_dir(&dir, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { workers, seconds } => {
            demo::run_here(workers.into(), seconds.map(Duration::from_secs))?;
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
