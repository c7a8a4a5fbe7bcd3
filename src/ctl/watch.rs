//! `scoreboardctl watch` and `demo`'s stop: a refreshing screen until Ctrl-C, SIGTERM
//! or the count is reached.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;

use super::Gatherer;
use super::render::watch_screen;

/// A flag raised by SIGINT or SIGTERM: the program finishes what it shows and exits 0
/// rather than being killed mid-screen.
pub fn stop_on_interrupt() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing a signal handler")?;
    }
    Ok(stop)
}

/// `scoreboardctl watch`: a screen every `interval`, `count` of them at most, until
/// SIGINT or SIGTERM. On a terminal each screen replaces the last.
pub fn watch(config: &Path, interval: Duration, count: Option<u32>) -> anyhow::Result<()> {
    let stop = stop_on_interrupt()?;
    let tty = std::io::stdout().is_terminal();
    let mut shown = 0;
    // One runtime and one bus connection for as long as it watches.
    let runtime = super::runtime()?;
    let mut gatherer = Gatherer::default();
    while !stop.load(Ordering::Relaxed) && count.is_none_or(|n| shown < n) {
        let reports = runtime.block_on(gatherer.gather(config))?;
        let mut out = std::io::stdout().lock();
        if tty {
            write!(out, "\x1b[H\x1b[2J")?;
        }
        for warning in &reports.warnings {
            writeln!(out, "({warning})")?;
        }
        writeln!(out, "{}", watch_screen(&reports))?;
        out.flush()?;
        shown += 1;
        std::thread::sleep(interval);
    }
    Ok(())
}
