//! `scoreboard-testkit`: the worker processes and the hostile bus client that the tests
//! and benches run, outside the shipped `scoreboardctl`. The end-to-end suite copies it
//! into its throwaway system's /usr/local/bin, so systemd units can run it there too.

mod flood;
mod workers;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "scoreboard-testkit",
    about = "Workers and clients for scoreboard's tests and benches"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A service's main process for tests: N workers taking statuses from a control file.
    TestPool {
        #[arg(long)]
        workers: usize,
        #[arg(long)]
        dir: PathBuf,
        /// Line N is worker N's status, a JSON string; "idle" when there is none.
        #[arg(long)]
        control: PathBuf,
    },
    /// One worker of `test-pool`.
    TestPoolWorker {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        control: PathBuf,
        #[arg(long)]
        index: usize,
    },
    /// Holds COUNT live workers (ids w0, w1, …) in one process until stdin closes, for
    /// tests and benchmarks that need many workers and one kill to end them all.
    HoldWorkers {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        count: usize,
        /// Worker ids are this followed by 0, 1, …
        #[arg(long, default_value = "w")]
        prefix: String,
    },
    /// A worker: publishes each line of stdin as its status (a JSON string is decoded),
    /// exits at EOF.
    StdinWorker { dir: PathBuf },
    /// A hostile bus client: keeps many ListWorkers calls in flight; prints a JSON report.
    TestFlood {
        /// The service object's path.
        #[arg(long)]
        path: String,
        #[arg(long, default_value_t = 4)]
        clients: usize,
        #[arg(long, default_value_t = 120)]
        in_flight: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// The session bus instead of the system bus.
        #[arg(long)]
        session: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("scoreboard-testkit: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::TestPool {
            workers,
            dir,
            control,
        } => {
            let exe =
                std::env::current_exe().context("finding this executable to spawn workers")?;
            workers::test_pool(&exe, workers, &dir, &control)
        }
        Command::TestPoolWorker {
            dir,
            control,
            index,
        } => workers::test_pool_worker(&dir, &control, index),
        Command::HoldWorkers { dir, count, prefix } => workers::hold_workers(&dir, count, &prefix),
        Command::StdinWorker { dir } => workers::stdin_worker(&dir),
        Command::TestFlood {
            path,
            clients,
            in_flight,
            seconds,
            session,
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            let flood = flood::Flood {
                session,
                path,
                clients,
                in_flight,
                seconds,
            };
            let report = runtime.block_on(flood.run())?;
            println!("{report}");
            Ok(())
        }
    }
}
