//! `scoreboard-agent`: watches the configured services' scoreboards and puts a summary
//! into each service's `STATUS=` line.

use std::process::ExitCode;

use clap::Parser;
use scoreboard_agent::config::{self, Config};
use scoreboard_agent::io::logging;
use scoreboard_agent::{agent, error_chain};

// The command line, shared with build.rs (the manual page and completions). Included
// by path, not through the library: a build script cannot depend on the crate it
// builds, so the definitions live in a file both can include.
#[path = "../cli/scoreboard_agent.rs"]
mod cli;

use cli::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("scoreboard-agent: {}", error_chain::text(&e));
            return ExitCode::FAILURE;
        }
    };
    if args.check_config {
        return if config::check_config(&config) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    logging::init();
    agent::raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mark_stopped = args.mark_stopped;
    let run = async {
        if mark_stopped {
            return agent::mark_stopped(&config).await;
        }
        let (shutdown, reloads) = agent::signals()?;
        agent::run(config, shutdown, reloads).await
    };
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", error_chain::text(&e));
            ExitCode::FAILURE
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
