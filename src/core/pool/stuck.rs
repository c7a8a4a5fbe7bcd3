//! Who is stuck, and since when: the non-idle workers ordered by their last progress,
//! of which the stuck ones are a prefix, so every question here is a range lookup.

use std::ops::Bound;
use std::time::{Duration, Instant};

use super::{Pool, Tracked};

impl Pool {
    /// The latest change time at which a waiting worker is stuck at `now`.
    pub(super) fn stuck_cutoff(&self, now: Instant) -> Option<Instant> {
        now.checked_sub(self.stuck_after?)
    }

    /// The waiting workers stuck at `now`.
    pub(super) fn stuck_ones(&self, now: Instant) -> impl Iterator<Item = &(Instant, String)> {
        let cutoff = self.stuck_cutoff(now);
        self.waiting
            .iter()
            .take_while(move |(at, _)| cutoff.is_some_and(|cutoff| *at <= cutoff))
    }

    pub(super) fn is_stuck(&self, tracked: &Tracked, now: Instant) -> bool {
        self.may_get_stuck(&tracked.state)
            && self
                .stuck_cutoff(now)
                .is_some_and(|cutoff| tracked.changed_at <= cutoff)
    }

    /// Since when every worker has been stuck (the last one to get stuck got stuck
    /// then), or `None` when some worker is not stuck or there are none.
    pub fn all_stuck_since(&self, now: Instant) -> Option<Instant> {
        let after = self.stuck_after?;
        let cutoff = self.stuck_cutoff(now)?;
        // Idle workers are never stuck, so all stuck means all waiting; the waiting set is
        // ordered by change time, its last entry changed last.
        let (last_changed, _) = self.waiting.last()?;
        (self.waiting.len() == self.workers.len() && *last_changed <= cutoff)
            .then(|| *last_changed + after)
    }

    /// The workers stuck for at least `at_least` at `now`: id, how long the status has
    /// stood, the status. Costs the number of such workers, and allocates nothing.
    pub fn stuck_for(
        &self,
        at_least: Duration,
        now: Instant,
    ) -> impl Iterator<Item = (&str, Duration, &[u8])> {
        let stuck = self.stuck_cutoff(now).is_some();
        let cutoff = now.checked_sub(at_least);
        self.waiting
            .iter()
            .take_while(move |(at, _)| stuck && cutoff.is_some_and(|cutoff| *at <= cutoff))
            .filter_map(move |(at, id)| {
                let tracked = self.workers.get(id)?;
                self.is_stuck(tracked, now).then(|| {
                    (
                        id.as_str(),
                        now.saturating_duration_since(*at),
                        tracked.status.as_slice(),
                    )
                })
            })
    }

    /// Whether the worker `id` is there and stuck at `now`.
    pub fn is_stuck_worker(&self, id: &str, now: Instant) -> bool {
        self.workers
            .get(id)
            .is_some_and(|tracked| self.is_stuck(tracked, now))
    }

    /// When the next worker becomes stuck if nothing changes, so the summary can be
    /// re-sent then rather than at the next sampling tick. A time past what an `Instant`
    /// can hold is never: the configuration bounds `stuck_after`, but the core does not
    /// rely on it to stay free of panics.
    pub fn next_stuck_at(&self, now: Instant) -> Option<Instant> {
        self.next_to_stand(self.stuck_after?, now)
    }

    /// When the next non-idle worker's status will have stood for `age` if nothing
    /// changes (one ordered-set lookup): when the next one becomes stuck, or reaches a
    /// health action's threshold.
    pub fn next_to_stand(&self, age: Duration, now: Instant) -> Option<Instant> {
        let first_not_yet = match now.checked_sub(age) {
            Some(cutoff) => {
                // Instants count nanoseconds: "after the cutoff" is "from cutoff + 1 ns".
                let from = cutoff.checked_add(Duration::from_nanos(1))?;
                self.waiting
                    .range((Bound::Included((from, String::new())), Bound::Unbounded))
                    .next()
            }
            None => self.waiting.iter().next(),
        };
        first_not_yet.and_then(|(at, _)| at.checked_add(age))
    }
}
