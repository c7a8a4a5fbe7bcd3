//! `scoreboard-agent`: watches the configured services' scoreboards and puts a summary
//! into each service's `STATUS=` line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use scoreboard_agent::config::{self, Config};
use scoreboard_agent::io::logging;
use scoreboard_agent::{agent, error_chain};

#[derive(Debug, Parser)]
#[command(
    name = "scoreboard-agent",
    version,
    about = "Summarise worker scoreboards into systemd's STATUS= lines"
)]
struct Args {
    /// The agent's configuration; services are read from services.d/ beside it.
    #[arg(long, default_value = config::DEFAULT_CONFIG)]
    config: PathBuf,
    /// Validate the configuration, print what it watches, and exit.
    #[arg(long)]
    check_config: bool,
}

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
        let report = config.check_report();
        print!("{}", report.out);
        for warning in &report.warnings {
            eprintln!("scoreboard-agent: warning: {warning}");
        }
        return ExitCode::SUCCESS;
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
    let run = async {
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
