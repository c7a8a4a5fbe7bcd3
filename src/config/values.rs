//! The configuration's values that can be wrong, each checked while it is read, so
//! that toml's error shows the file, line, key and value: durations within their
//! ranges, counts within bounds, unit names, state rules and summary templates.

use std::time::Duration;

use serde::Deserialize;

use super::StateRule;

/// The range of `kill_grace`: a worker gets at least a second to stop, at most an hour.
pub const KILL_GRACE_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(60 * 60));

/// A count within `MIN..=MAX`, said in the error when it is not.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounded<const MIN: usize, const MAX: usize>(pub(super) usize);

impl<'de, const MIN: usize, const MAX: usize> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(deserializer)?;
        match usize::try_from(n) {
            Ok(n) if (MIN..=MAX).contains(&n) => Ok(Bounded(n)),
            _ => Err(serde::de::Error::custom(format!(
                "{n} is out of range: it must be from {MIN} to {MAX}"
            ))),
        }
    }
}

/// The range of `interval`. At least 10 ms: each tick sweeps every watched directory,
/// and a shorter period would only burn CPU. At most an hour: the interval is also how
/// often a restarted service's new main process is looked up and the safety-net sweep
/// runs, so a longer one would leave a service unfollowed for hours. Both ends keep the
/// agent's `now + interval` far from what an `Instant` can hold.
pub const INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(60 * 60));

/// The range of `stuck_after`. At least a second: statuses are sampled every interval,
/// so a shorter threshold would be noise. At most 30 days: longer than any request a
/// worker could be busy with, and far from what an `Instant` can hold.
pub const STUCK_AFTER_RANGE: (Duration, Duration) = (
    Duration::from_secs(1),
    Duration::from_secs(30 * 24 * 60 * 60),
);

/// A duration within `MIN_MS..=MAX_MS` milliseconds, said in the error when it is not.
/// The bounds are milliseconds because a `Duration` cannot be a const parameter.
#[derive(Debug, Clone, Copy)]
pub(super) struct DurationIn<const MIN_MS: u64, const MAX_MS: u64>(pub(super) Duration);

impl<const MIN_MS: u64, const MAX_MS: u64> DurationIn<MIN_MS, MAX_MS> {
    pub(super) const RANGE: (Duration, Duration) =
        (Duration::from_millis(MIN_MS), Duration::from_millis(MAX_MS));
}

impl<'de, const MIN_MS: u64, const MAX_MS: u64> Deserialize<'de> for DurationIn<MIN_MS, MAX_MS> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text, Self::RANGE)
            .map(DurationIn)
            .map_err(serde::de::Error::custom)
    }
}

/// A range's bounds as [`DurationIn`]'s parameters; a bound finer than a millisecond
/// fails the build rather than being rounded.
const fn millis(duration: Duration) -> u64 {
    assert!(duration.subsec_nanos().is_multiple_of(1_000_000));
    duration.as_millis() as u64
}

/// `interval`: a duration in [`INTERVAL_RANGE`].
pub(super) type Interval = DurationIn<{ millis(INTERVAL_RANGE.0) }, { millis(INTERVAL_RANGE.1) }>;

/// `stuck_after`, `wedged_after`, `kill_stuck_after`: a duration in [`STUCK_AFTER_RANGE`].
pub(super) type StuckAfter =
    DurationIn<{ millis(STUCK_AFTER_RANGE.0) }, { millis(STUCK_AFTER_RANGE.1) }>;

/// `kill_grace`: a duration in [`KILL_GRACE_RANGE`].
pub(super) type KillGrace =
    DurationIn<{ millis(KILL_GRACE_RANGE.0) }, { millis(KILL_GRACE_RANGE.1) }>;

/// A duration written as "250ms", "1s", "5m", within `(min, max)` inclusive.
fn parse_duration(text: &str, (min, max): (Duration, Duration)) -> Result<Duration, String> {
    let range = format!(
        "from {} to {}",
        humantime::format_duration(min),
        humantime::format_duration(max)
    );
    let duration = humantime::parse_duration(text).map_err(|e| {
        format!("invalid duration {text:?}: {e} (write e.g. \"250ms\", \"1s\", \"5m\"; {range})")
    })?;
    if duration < min || duration > max {
        return Err(format!(
            "duration {text:?} is out of range: it must be {range}"
        ));
    }
    Ok(duration)
}

/// A systemd unit name; `.service` is implied when no suffix is given.
#[derive(Debug)]
pub(super) struct UnitName(pub(super) String);

impl<'de> Deserialize<'de> for UnitName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        normalize_unit(&text)
            .map(UnitName)
            .map_err(serde::de::Error::custom)
    }
}

/// `myservice` → `myservice.service`; refuses names systemd would refuse, so that a unit
/// name can safely become part of a path.
pub fn normalize_unit(text: &str) -> Result<String, String> {
    let unit = if text.contains('.') {
        text.to_owned()
    } else {
        format!("{text}.service")
    };
    let valid = !unit.is_empty()
        && unit.len() <= 255
        && !unit.starts_with('.')
        && unit
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c));
    if !valid {
        return Err(format!("invalid unit name {text:?}"));
    }
    if !unit.ends_with(".service") {
        return Err(format!(
            "unit {unit:?} is not a service: only services have worker pools and a STATUS= line"
        ));
    }
    Ok(unit)
}

impl<'de> Deserialize<'de> for StateRule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == "first-word" {
            return Ok(StateRule::FirstWord);
        }
        match text.strip_prefix("json:") {
            Some(pointer) if pointer.is_empty() || pointer.starts_with('/') => {
                Ok(StateRule::JsonPointer(pointer.to_owned()))
            }
            _ => Err(serde::de::Error::custom(format!(
                "invalid state rule {text:?}: use \"first-word\" or \"json:/pointer\""
            ))),
        }
    }
}

/// A summary template; unknown placeholders are refused when the file is read rather
/// than shown literally in `systemctl status`.
#[derive(Debug)]
pub(super) struct Template(pub(super) String);

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        check_template(&text).map_err(serde::de::Error::custom)?;
        Ok(Template(text))
    }
}

/// Placeholders a summary template may use.
pub const PLACEHOLDERS: [&str; 4] = ["total", "counts", "stuck", "unit"];

/// Refuses a template with an unknown or unclosed placeholder.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("unclosed {{ in summary template {template:?}"));
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} in summary template {template:?}; use {}",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}
