//! The agent's core: pure, no I/O, time passed in, unit-tested in milliseconds.
//!
//! * [`pool`] — a service's workers, their states, who is stuck; owns the service's
//!   template and unit, so [`pool::Pool::status_line`] is the one way to the `STATUS=`
//!   text.
//! * [`status_line`] — rendering a summary through a template, sanitising it, and the
//!   D-Bus string boundary.
//! * [`schedule`] — per service, what is due when: events in (inotify, passes, ticks,
//!   sends), decisions out (sweep now, send this line, emit these D-Bus signals, wake at T);
//!   and the agent-wide timers (tick, watchdog, READY, saving state).
//! * [`health`] — health actions, on what was seen only: when a wedged pool asks for
//!   the unit's watchdog, when a stuck worker gets a signal.
//! * [`privacy`] — who may see per-worker details: whoever could read the directory.
//! * [`rate_limit`] — saying a warning at most once per quiet period, in bounded memory.
//! * [`worker`] — the one worker record every edge shows.
pub mod health;
pub mod pool;
pub mod privacy;
pub mod rate_limit;
pub mod schedule;
pub mod status_line;
pub mod worker;
