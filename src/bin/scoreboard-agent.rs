//! `scoreboard-agent`: watches the configured services' scoreboards and puts a summary
//! into each service's `STATUS=` line.

use std::process::ExitCode;

use clap::Parser;
use scoreboard_agent::config::Config;
use scoreboard_agent::io::logging;
use scoreboard_agent::{agent, error_chain};

// The command line, shared with build.rs (the manual page and completions).
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
        let report = config.check_report();
        print!("{}", report.out);
        for warning in &report.warnings {
            eprintln!("scoreboard-agent: warning: {warning}");
        }
        // What the installed unit lets the agent write, where systemd can say.
        let refused: Vec<String> = agent_protection()
            .map(|protection| {
                config
                    .services
                    .iter()
                    .filter_map(|s| protection.refuses(&s.unit, &s.directory))
                    .collect()
            })
            .unwrap_or_default();
        for refusal in &refused {
            eprintln!("scoreboard-agent: error: {refusal}");
        }
        return if refused.is_empty() {
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

/// `scoreboard-agent.service`'s file-system protection, from `systemctl show`; `None`
/// where systemctl cannot say (not installed, not running systemd).
fn agent_protection() -> Option<scoreboard_agent::config::Protection> {
    let out = std::process::Command::new("systemctl")
        .args(["show", "-p", "ProtectSystem", "-p", "ReadWritePaths"])
        .arg("scoreboard-agent.service")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| scoreboard_agent::config::Protection::parse(&String::from_utf8_lossy(&out.stdout)))
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
