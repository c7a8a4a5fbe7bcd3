//! A warning rate limiter that costs the same with a million bad files as with one:
//! pure, time passed in.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::time::{Duration, Instant};

/// How many keys a [`RateLimit`] tracks at once: the table's size, fixed at
/// construction (4,096 slots of 24 bytes, 96 KiB). It is also the most warnings said
/// in any `quiet` period, however many distinct ones there are.
pub const RATE_LIMIT_SLOTS: usize = 4096;

/// Slots a key may use: its set. A key looks at four slots, so a few keys landing in the
/// same set still each get their own quiet period.
const WAYS: usize = 4;

/// Sets in the table.
const SETS: usize = RATE_LIMIT_SLOTS / WAYS;

/// One remembered key: its hash and when its warning was last said.
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u64,
    said_at: Option<Instant>,
}

/// Says the same warning at most once per `quiet` period, so that one bad file in a
/// directory swept every second does not flood the journal.
///
/// Keys are hashed into a fixed table of [`RATE_LIMIT_SLOTS`] slots in sets of four:
/// each call looks at one set, O(1), and memory never grows — 100,000 bad files cost
/// what one does. A key whose set is full of other keys still in their quiet periods
/// is not said either: it shares their quiet period. Those warnings, never said, are
/// counted ([`take_suppressed`](Self::take_suppressed),
/// [`suppressed_report`](Self::suppressed_report)); repeats of a warning already said are
/// the point of the limiter and are not.
///
/// The hash is keyed at random per limiter, so a user choosing file names cannot aim at
/// a set another key uses.
pub struct RateLimit {
    quiet: Duration,
    hasher: RandomState,
    slots: Box<[Slot]>,
    suppressed: u64,
    reported_at: Option<Instant>,
}

impl RateLimit {
    /// A limiter that lets a given key through once per `quiet`.
    pub fn new(quiet: Duration) -> Self {
        RateLimit {
            quiet,
            hasher: RandomState::new(),
            slots: vec![
                Slot {
                    hash: 0,
                    said_at: None,
                };
                RATE_LIMIT_SLOTS
            ]
            .into_boxed_slice(),
            suppressed: 0,
            reported_at: None,
        }
    }

    /// Whether the warning keyed `key` should be said now.
    pub fn allow(&mut self, key: &str, now: Instant) -> bool {
        self.allow_hashed(key, now)
    }

    /// [`allow`](Self::allow) for any hashable key, so a caller need not format a
    /// string per call: `allow_hashed((&skipped.path, skipped.reason.kind()), now)`.
    /// `allow_hashed("x", now)` and `allow("x", now)` are the same key.
    pub fn allow_hashed(&mut self, key: impl Hash, now: Instant) -> bool {
        let hash = self.hasher.hash_one(key);
        // The low bits pick the set; the whole hash tells keys in it apart.
        let set = (hash as usize) % SETS * WAYS;
        let quiet = self.quiet;
        let expired = |slot: &Slot| {
            slot.said_at
                .is_none_or(|at| now.saturating_duration_since(at) >= quiet)
        };
        let ways = &mut self.slots[set..set + WAYS];
        if let Some(slot) = ways
            .iter_mut()
            .find(|slot| slot.said_at.is_some() && slot.hash == hash)
        {
            if !expired(slot) {
                return false;
            }
            slot.said_at = Some(now);
            return true;
        }
        match ways.iter_mut().find(|slot| expired(slot)) {
            Some(slot) => {
                *slot = Slot {
                    hash,
                    said_at: Some(now),
                };
                true
            }
            None => {
                self.suppressed = self.suppressed.saturating_add(1);
                false
            }
        }
    }

    /// How many warnings were not said since the last call because the table had no
    /// room for their keys (not repeats within a quiet period: those are expected).
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }

    /// [`take_suppressed`](Self::take_suppressed), paced for a log line of its own:
    /// `Some(n)` when warnings were suppressed and none was reported in the last
    /// `quiet` period (the first report comes at once), `None` otherwise — the count
    /// then keeps growing until the next report. Ask as often as convenient, e.g. after
    /// every sweep.
    pub fn suppressed_report(&mut self, now: Instant) -> Option<u64> {
        if self.suppressed == 0 {
            return None;
        }
        if let Some(at) = self.reported_at
            && now.saturating_duration_since(at) < self.quiet
        {
            return None;
        }
        self.reported_at = Some(now);
        Some(self.take_suppressed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_passes_once_per_quiet_period() {
        let mut limit = RateLimit::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(limit.allow("a", t0));
        assert!(!limit.allow("a", t0 + Duration::from_secs(59)));
        assert!(limit.allow("b", t0));
        assert!(limit.allow("a", t0 + Duration::from_secs(60)));
        assert!(!limit.allow("a", t0 + Duration::from_secs(61)));
        // Repeats are the limiter's job, not suppressed warnings.
        assert_eq!(limit.take_suppressed(), 0);
    }

    #[test]
    fn hashed_keys_need_no_string() {
        let mut limit = RateLimit::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let path = std::path::Path::new("/run/x/status_1");
        assert!(limit.allow_hashed((path, "torn"), t0));
        assert!(!limit.allow_hashed((path, "torn"), t0));
        assert!(limit.allow_hashed((path, "too_long"), t0));
        assert!(limit.allow_hashed("same", t0));
        assert!(!limit.allow("same", t0));
    }

    #[test]
    fn a_million_distinct_keys_keep_the_table_its_size() {
        let mut limit = RateLimit::new(Duration::from_secs(600));
        let t0 = Instant::now();
        let mut said = 0u64;
        for key in 0..1_000_000u32 {
            said += u64::from(limit.allow_hashed(key, t0));
        }
        assert_eq!(limit.slots.len(), RATE_LIMIT_SLOTS);
        assert!(std::mem::size_of::<Slot>() <= 24);
        // At most one warning per slot per quiet period; the rest are counted.
        assert!(said <= RATE_LIMIT_SLOTS as u64, "{said}");
        assert!(said > RATE_LIMIT_SLOTS as u64 / 2, "{said}");
        assert_eq!(limit.take_suppressed(), 1_000_000 - said);
        assert_eq!(limit.take_suppressed(), 0);

        // Once the quiet period is over, there is room again.
        let later = t0 + Duration::from_secs(600);
        assert!(limit.allow_hashed(1_000_001u32, later));
        assert_eq!(limit.slots.len(), RATE_LIMIT_SLOTS);
    }

    #[test]
    fn suppressed_warnings_are_reported_once_per_quiet_period() {
        let quiet = Duration::from_secs(600);
        let mut limit = RateLimit::new(quiet);
        let t0 = Instant::now();
        assert_eq!(limit.suppressed_report(t0), None);
        let flood = |limit: &mut RateLimit, at| {
            for key in 0..(2 * RATE_LIMIT_SLOTS as u32) {
                limit.allow_hashed(key, at);
            }
        };
        flood(&mut limit, t0);
        let first = limit.suppressed_report(t0).unwrap();
        assert!(first >= RATE_LIMIT_SLOTS as u64, "{first}");
        // The same flood a second later: the keys said are repeats, the others are
        // suppressed again — counted, but not reported before the quiet period is over.
        flood(&mut limit, t0 + Duration::from_secs(1));
        assert_eq!(limit.suppressed_report(t0 + Duration::from_secs(1)), None);
        assert_eq!(limit.suppressed_report(t0 + quiet), Some(first));
        assert_eq!(limit.suppressed_report(t0 + 2 * quiet), None);
    }
}
