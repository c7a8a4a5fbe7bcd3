//! Waiting for something to happen: polled, never a fixed sleep.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How often [`poll`] and [`wait_until`] look: often enough for timings printed in
/// milliseconds, seldom enough for probes that run a process (busctl, systemctl).
const PERIOD: Duration = Duration::from_millis(20);

/// Polls `condition` until it holds; returns how long that took. Panics, naming `what`
/// was waited for, when it does not hold within `within`.
pub fn wait_until(
    within: Duration,
    what: impl Display,
    mut condition: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    match poll(within, || condition().then(|| started.elapsed())) {
        Some(took) => took,
        None => panic!("waited {within:?} for {what}, in vain"),
    }
}

/// Polls `probe` until it returns something, which it returns; `None` when nothing came
/// within `within`.
pub fn poll<T>(within: Duration, probe: impl FnMut() -> Option<T>) -> Option<T> {
    poll_every(PERIOD, within, probe)
}

/// [`poll`], looking every `period`: for benches timing an event to a fraction of a
/// millisecond.
pub fn poll_every<T>(
    period: Duration,
    within: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let started = Instant::now();
    loop {
        // Once more after the deadline: a probe that itself took long gets its last say.
        let last = started.elapsed() >= within;
        if let Some(value) = probe() {
            return Some(value);
        }
        if last {
            return None;
        }
        std::thread::sleep(period);
    }
}
