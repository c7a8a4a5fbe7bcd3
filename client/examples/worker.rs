//! A worker that publishes each line of stdin as its status and exits (removing its
//! file) at EOF.
//!
//! ```text
//! cargo run -p scoreboard --example worker -- /tmp/scoreboard
//! ```

use std::io::BufRead;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .ok_or("usage: worker DIR (statuses are read from stdin, one per line)")?;
    let mut scoreboard = scoreboard::Scoreboard::open(&dir)?;
    for line in std::io::stdin().lock().lines() {
        scoreboard.update(line?)?;
    }
    Ok(())
}
