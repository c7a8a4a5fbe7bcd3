//! Budgets for bus clients, so that no local user can make the agent's bus side spend
//! without bound: worker records answered per second, per client and in all.
//!
//! Method calls are served one at a time on the agent's bus thread (the bus daemon
//! queues the rest, within its own per-peer limits), so memory is already bounded; this
//! bounds the time. A `ListWorkers` of 5,000 workers costs 5,000, a `GetWorker` 1. Past
//! a budget the caller gets `org.freedesktop.DBus.Error.LimitsExceeded` at once, which
//! costs nothing to build. Counters start afresh every second: O(1) per call, and the
//! table of clients is emptied with them.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Worker records one client may be sent per second.
pub const PER_CLIENT: u64 = 50_000;
/// Worker records all clients together may be sent per second.
pub const IN_ALL: u64 = 200_000;
/// Clients counted individually per second; more than that share the overall budget.
const MAX_CLIENTS: usize = 4096;
const WINDOW: Duration = Duration::from_secs(1);

/// Why a call was refused: the message of `LimitsExceeded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exceeded {
    /// This client asked for more than [`PER_CLIENT`] records this second.
    Client {
        /// Its unique bus name.
        client: String,
    },
    /// All clients together asked for more than [`IN_ALL`] this second.
    InAll,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::Client { client } => write!(
                f,
                "{client} asked for more than {PER_CLIENT} worker records this second; try again in a second"
            ),
            Exceeded::InAll => write!(
                f,
                "clients asked for more than {IN_ALL} worker records this second; try again in a second"
            ),
        }
    }
}

/// The counters of the current second.
#[derive(Debug)]
pub struct Quota {
    window_started: Instant,
    per_client: HashMap<String, u64>,
    in_all: u64,
    per_client_limit: u64,
    in_all_limit: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Quota::new(PER_CLIENT, IN_ALL)
    }
}

impl Quota {
    /// A quota with the given limits per second.
    pub fn new(per_client_limit: u64, in_all_limit: u64) -> Quota {
        Quota {
            window_started: Instant::now(),
            per_client: HashMap::new(),
            in_all: 0,
            per_client_limit,
            in_all_limit,
        }
    }

    /// Charges `cost` records to `client`; refused (and not charged) past a budget.
    pub fn charge(&mut self, client: &str, cost: u64, now: Instant) -> Result<(), Exceeded> {
        if now.saturating_duration_since(self.window_started) >= WINDOW {
            self.window_started = now;
            self.per_client.clear();
            self.in_all = 0;
        }
        if self.in_all + cost > self.in_all_limit {
            return Err(Exceeded::InAll);
        }
        if !self.per_client.contains_key(client) {
            if self.per_client.len() >= MAX_CLIENTS {
                self.in_all += cost;
                return Ok(());
            }
            self.per_client.insert(client.to_owned(), 0);
        }
        let spent = self.per_client.get_mut(client).expect("inserted above");
        // A single answer larger than the budget is still given once a second.
        if *spent > 0 && *spent + cost > self.per_client_limit {
            return Err(Exceeded::Client {
                client: client.to_owned(),
            });
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
    fn a_client_past_its_budget_is_refused_until_the_next_second() {
        let mut quota = Quota::new(10, 100);
        let t0 = Instant::now();
        assert!(quota.charge(":1.1", 6, t0).is_ok());
        assert_eq!(
            quota.charge(":1.1", 6, t0),
            Err(Exceeded::Client {
                client: ":1.1".into()
            })
        );
        // Others are not held back by it.
        assert!(quota.charge(":1.2", 10, t0).is_ok());
        assert!(quota.charge(":1.1", 6, t0 + WINDOW).is_ok());
    }

    #[test]
    fn all_clients_together_are_bounded_too() {
        let mut quota = Quota::new(10, 25);
        let t0 = Instant::now();
        for n in 0..2 {
            assert!(quota.charge(&format!(":1.{n}"), 10, t0).is_ok());
        }
        assert_eq!(quota.charge(":1.9", 10, t0), Err(Exceeded::InAll));
        assert!(quota.charge(":1.9", 5, t0).is_ok());
    }

    #[test]
    fn one_answer_bigger_than_the_budget_is_given_once_a_second() {
        let mut quota = Quota::new(10, 1000);
        let t0 = Instant::now();
        assert!(quota.charge(":1.1", 50, t0).is_ok());
        assert!(quota.charge(":1.1", 50, t0).is_err());
    }
}
