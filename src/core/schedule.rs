//! When a summary goes out: the agent's sending rules, as pure functions.
//!
//! A line is sent only when it differs from the last one sent. A change of membership
//! (a worker came or went) goes at once, but no sooner than [`MEMBERSHIP_GAP`] after
//! the previous send, so a burst is at most ten messages a second; any other change
//! waits until an `interval` has passed since the previous send. A service whose main
//! process changed hears the current line again even if it is unchanged.

use std::time::{Duration, Instant};

/// Membership changes go out at once, but no more often than this per service.
pub const MEMBERSHIP_GAP: Duration = Duration::from_millis(100);

/// What was last delivered for a service, and to which main process (0 when not sent
/// on a main process's behalf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The line.
    pub text: String,
    /// When it went.
    pub at: Instant,
    /// On whose behalf.
    pub pid: u32,
}

/// Whether `text` should be sent now.
pub fn text_due(
    last: Option<&Sent>,
    text: &str,
    membership: bool,
    interval: Duration,
    now: Instant,
) -> bool {
    let Some(last) = last else { return true };
    let gap = if membership { MEMBERSHIP_GAP } else { interval };
    last.text != text && now >= last.at + gap
}

/// Whether the line must be sent again for a main process that has not heard it.
pub fn new_listener(last: Option<&Sent>, pid: u32) -> bool {
    last.is_some_and(|last| last.pid != pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn sent(text: &str, at: Instant) -> Sent {
        Sent {
            text: text.to_owned(),
            at,
            pid: 42,
        }
    }

    #[test]
    fn the_first_line_goes_at_once() {
        assert!(text_due(
            None,
            "0 workers: none",
            false,
            SECOND,
            Instant::now()
        ));
    }

    #[test]
    fn the_same_line_never_goes_twice() {
        let t0 = Instant::now();
        assert!(!text_due(
            Some(&sent("a", t0)),
            "a",
            true,
            SECOND,
            t0 + 10 * SECOND
        ));
    }

    #[test]
    fn membership_changes_wait_only_the_short_gap() {
        let t0 = Instant::now();
        let last = sent("3 workers: 3 idle", t0);
        assert!(!text_due(
            Some(&last),
            "2 workers: 2 idle",
            true,
            SECOND,
            t0 + Duration::from_millis(99)
        ));
        assert!(text_due(
            Some(&last),
            "2 workers: 2 idle",
            true,
            SECOND,
            t0 + MEMBERSHIP_GAP
        ));
    }

    #[test]
    fn other_changes_wait_an_interval() {
        let t0 = Instant::now();
        let last = sent("3 workers: 3 idle", t0);
        let changed = "3 workers: 2 idle, 1 busy";
        assert!(!text_due(
            Some(&last),
            changed,
            false,
            SECOND,
            t0 + Duration::from_millis(999)
        ));
        assert!(text_due(Some(&last), changed, false, SECOND, t0 + SECOND));
    }

    #[test]
    fn a_new_main_process_hears_the_line_again() {
        let last = sent("a", Instant::now());
        assert!(!new_listener(Some(&last), 42));
        assert!(new_listener(Some(&last), 43));
        assert!(!new_listener(None, 43));
    }
}
