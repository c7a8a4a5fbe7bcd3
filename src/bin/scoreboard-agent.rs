//! `scoreboard-agent`: the daemon. Its watching and notifying arrive with the agent
//! issue; until then it says so instead of pretending to run.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("scoreboard-agent: not implemented yet; use `scoreboardctl status --dir DIR`");
    ExitCode::from(2)
}
