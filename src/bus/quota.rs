//! Budgets for bus clients, so that no local user can make the agent's bus side spend
//! without bound: worker records answered per second, per user and in all.
//!
//! Method calls are served one at a time on the agent's bus thread (the bus daemon
//! queues the rest, within its own per-peer limits), and no message over
//! [`crate::bus::bounded::MAX_MESSAGE`] is read, so memory is bounded by the queue; this
//! bounds the time. A `ListWorkers` of 5,000 workers costs 5,000, a `GetWorker` 1. Past
//! a budget the caller gets `org.freedesktop.DBus.Error.LimitsExceeded` at once, which
//! costs nothing to build. Counters start afresh every second: O(1) per call, and the
//! table of users is emptied with them.
//!
//! Budgets are per user (uid, as the bus daemon vouches for it), not per connection: a
//! user opening many connections shares one budget, so one flooding user cannot take
//! more than its share of the overall budget and others are still answered. Root is
//! not counted: it could stop the agent anyway.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Worker records one user may be sent per second.
pub const PER_USER: u64 = 50_000;
/// Worker records all users together (root aside) may be sent per second.
pub const IN_ALL: u64 = 200_000;
/// Users counted individually per second; more than that share the overall budget.
const MAX_USERS: usize = 4096;
const WINDOW: Duration = Duration::from_secs(1);

/// Why a call was refused: the message of `LimitsExceeded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exceeded {
    /// This user asked for more than [`PER_USER`] records this second.
    User {
        /// Its uid.
        uid: u32,
    },
    /// All users together asked for more than [`IN_ALL`] this second.
    InAll,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::User { uid } => write!(
                f,
                "uid {uid} asked for more than {PER_USER} worker records this second; try again in a second"
            ),
            Exceeded::InAll => write!(
                f,
                "users asked for more than {IN_ALL} worker records this second; try again in a second"
            ),
        }
    }
}

/// The counters of the current second.
#[derive(Debug)]
pub struct Quota {
    window_started: Instant,
    per_user: HashMap<u32, u64>,
    in_all: u64,
    per_user_limit: u64,
    in_all_limit: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Quota::new(PER_USER, IN_ALL)
    }
}

impl Quota {
    /// A quota with the given limits per second.
    pub fn new(per_user_limit: u64, in_all_limit: u64) -> Quota {
        Quota {
            window_started: Instant::now(),
            per_user: HashMap::new(),
            in_all: 0,
            per_user_limit,
            in_all_limit,
        }
    }

    /// Charges `cost` records to user `uid`; refused (and not charged) past a budget.
    pub fn charge(&mut self, uid: u32, cost: u64, now: Instant) -> Result<(), Exceeded> {
        if uid == 0 {
            return Ok(());
        }
        if now.saturating_duration_since(self.window_started) >= WINDOW {
            self.window_started = now;
            self.per_user.clear();
            self.in_all = 0;
        }
        if self.in_all + cost > self.in_all_limit {
            return Err(Exceeded::InAll);
        }
        if !self.per_user.contains_key(&uid) {
            if self.per_user.len() >= MAX_USERS {
                self.in_all += cost;
                return Ok(());
            }
            self.per_user.insert(uid, 0);
        }
        let spent = self.per_user.get_mut(&uid).expect("inserted above");
        // A single answer larger than the budget is still given once a second.
        if *spent > 0 && *spent + cost > self.per_user_limit {
            return Err(Exceeded::User { uid });
        }
        *spent += cost;
        self.in_all += cost;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_past_its_budget_is_refused_until_the_next_second() {
        let mut quota = Quota::new(10, 100);
        let t0 = Instant::now();
        assert!(quota.charge(1000, 6, t0).is_ok());
        assert_eq!(quota.charge(1000, 6, t0), Err(Exceeded::User { uid: 1000 }));
        // Others are not held back by it.
        assert!(quota.charge(1001, 10, t0).is_ok());
        assert!(quota.charge(1000, 6, t0 + WINDOW).is_ok());
    }

    #[test]
    fn all_users_together_are_bounded_too_but_not_root() {
        let mut quota = Quota::new(10, 25);
        let t0 = Instant::now();
        for uid in 1..=2 {
            assert!(quota.charge(uid, 10, t0).is_ok());
        }
        assert_eq!(quota.charge(9, 10, t0), Err(Exceeded::InAll));
        assert!(quota.charge(9, 5, t0).is_ok());
        assert!(quota.charge(0, 1_000_000, t0).is_ok());
    }

    #[test]
    fn one_answer_bigger_than_the_budget_is_given_once_a_second() {
        let mut quota = Quota::new(10, 1000);
        let t0 = Instant::now();
        assert!(quota.charge(1, 50, t0).is_ok());
        assert!(quota.charge(1, 50, t0).is_err());
    }
}
