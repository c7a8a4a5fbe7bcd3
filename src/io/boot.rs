//! The boot's own clock, for what crosses an agent restart: `CLOCK_BOOTTIME`, which
//! wall-clock steps (NTP, an operator's `date -s`) do not move, named by the boot's id
//! so another boot's times are never read as this one's; and a process's start on the
//! same clock, which bounds how long anything about that process can have lasted. Also
//! `CLOCK_MONOTONIC` in systemd's µs, the clock of its unit timestamps.

use std::time::Duration;

/// Which boot this is: its id (`/proc/sys/kernel/random/boot_id`) where the agent may
/// read it, and when it began on the wall clock, which is all the shipped unit's
/// `ProcSubset=pid` leaves readable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Boot {
    /// The kernel's boot id, if readable.
    pub id: Option<String>,
    /// When the boot began, in milliseconds since the Unix epoch: now on the wall clock
    /// less [`since_boot`].
    pub began_ms: u64,
}

/// How far apart two readings of the boot's beginning may be and still name one boot:
/// the two clocks are read one after the other, and an NTP slew moves the wall clock a
/// little. A step of the wall clock moves it more, and then saved state is dropped —
/// forgetting is safe, trusting another boot's times is not.
const SAME_BOOT_WITHIN_MS: u64 = 2_000;

impl Boot {
    /// This boot.
    pub fn now() -> Boot {
        let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty() && id.len() <= 64);
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let began = wall.saturating_sub(since_boot());
        Boot {
            id,
            began_ms: u64::try_from(began.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Whether `saved` names this boot: by id where both have one, else by when it began.
    pub fn is(&self, saved: &Boot) -> bool {
        match (&self.id, &saved.id) {
            (Some(id), Some(saved)) => id == saved,
            _ => self.began_ms.abs_diff(saved.began_ms) <= SAME_BOOT_WITHIN_MS,
        }
    }
}

/// `CLOCK_MONOTONIC` in µs, as systemd counts its `*Monotonic` timestamps and
/// `MONOTONIC_USEC=`.
pub fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec.max(0) as u64 * 1_000_000 + now.tv_nsec.max(0) as u64 / 1_000
}

/// Time since boot (`CLOCK_BOOTTIME`, suspend included).
pub fn since_boot() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(
        now.tv_sec.max(0) as u64,
        now.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// When process `pid` started, as time since boot (`/proc/PID/stat` field 22); `None`
/// when it is gone or hidden from the agent (`ProtectProc=invisible`).
pub fn process_started(pid: i32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    start_of(&stat, rustix::param::clock_ticks_per_second())
}

/// Field 22 (`starttime`, in clock ticks) of a `/proc/PID/stat` line. The command name
/// (field 2) may hold spaces and parentheses: fields are counted after its last `)`.
fn start_of(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields 3 onwards; starttime is the 20th of them.
    let ticks: u64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    let per_second = ticks_per_second.max(1);
    Some(
        Duration::from_secs(ticks / per_second)
            + Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_is_field_22_whatever_the_command_name_holds() {
        let stat =
            "4242 (a b) c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 50";
        assert_eq!(start_of(stat, 100), Some(Duration::from_millis(123_450)));
        assert_eq!(start_of("4242 (x) S 1", 100), None);
    }

    #[test]
    fn our_own_process_started_before_now() {
        let started = process_started(std::process::id() as i32).unwrap();
        assert!(started <= since_boot());
    }

    #[test]
    fn a_boot_is_named_by_its_id_or_else_by_when_it_began() {
        let now = Boot::now();
        assert!(now.is(&Boot::now()));
        let other = |id: Option<&str>, began_ms| Boot {
            id: id.map(str::to_owned),
            began_ms,
        };
        let a = other(Some("a"), 1_000_000);
        assert!(a.is(&other(Some("a"), 9_000_000)));
        assert!(!a.is(&other(Some("b"), 1_000_000)));
        assert!(a.is(&other(None, 1_001_500)));
        assert!(!a.is(&other(None, 1_003_000)));
    }
}
