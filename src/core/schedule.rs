//! What is due when: the agent's timing rules, without I/O, time passed in.
//!
//! A [`Schedule`] per service takes events in — directory changes from inotify, the
//! outcome of each step of a pass, what was sent — and answers: sweep now or not, send
//! this line (on whose behalf), emit these WorkerAdded/WorkerReaped ids, and when to
//! wake next. [`Timers`] are the agent-wide clock: the sampling tick, watchdog pings,
//! READY=1, and saving state.
//!
//! The sending rules: a line is sent only when it differs from the last one sent. A
//! change of membership (a worker came or went) goes at once, but no sooner than
//! [`MEMBERSHIP_GAP`] after the previous send, so a burst is at most ten messages a
//! second; any other change waits until an `interval` has passed since the previous
//! send. A service whose main process changed hears the current line again even if it
//! is unchanged.

use std::time::{Duration, Instant};

use crate::core::pool::Changes;

/// Membership changes go out at once, but no more often than this per service; the
/// same gap paces WorkerAdded/WorkerReaped batches.
pub const MEMBERSHIP_GAP: Duration = Duration::from_millis(100);

/// After a worker closed its file, sweep again this long later in case its lock was
/// not yet released at the first look (the kernel queues the event first).
pub const CLOSE_RECHECKS: [Duration; 2] = [Duration::from_millis(10), Duration::from_millis(40)];

/// Sweeps caused by inotify events: at most one per this gap per service, so a
/// directory's owner creating and removing files in a loop cannot keep the agent
/// sweeping. The first event after a quiet gap is swept at once.
pub const EVENT_SWEEP_GAP: Duration = Duration::from_millis(100);

/// READY=1 waits at most this long for the first passes.
pub const READY_WAIT: Duration = Duration::from_secs(2);

/// How often (in sampling ticks) the agent saves what it must remember across restarts.
pub const SAVE_EVERY_TICKS: u64 = 10;

/// What an inotify event on a service's directory says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirChange {
    /// A worker file appeared, went or was renamed.
    Membership,
    /// A worker closed its file: it may have exited, but its lock may outlive the event.
    Closed,
}

/// What was last delivered for a service, and to which main process (0 when not sent
/// on a main process's behalf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The line.
    pub text: String,
    /// When it went.
    pub at: Instant,
    /// On whose behalf.
    pub behalf: Behalf,
}

/// On whose behalf a `STATUS=` line goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behalf {
    /// The agent's own: to our `$NOTIFY_SOCKET`, or nowhere ([`Listener::Fixed`]).
    Agent,
    /// The service's main process, with this pid.
    MainProcess(u32),
}

/// Who hears a service's `STATUS=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Nobody, or our own `$NOTIFY_SOCKET` (`notify = "none"` or `"self"`).
    Fixed,
    /// The service's main process, which changes when the service restarts.
    MainProcess,
}

/// Ids waiting for their batch of WorkerAdded/WorkerReaped D-Bus signals.
#[derive(Debug, Default)]
struct MembershipBatch {
    added: Vec<String>,
    reaped: Vec<String>,
    at: Option<Instant>,
}

impl MembershipBatch {
    fn pending(&self) -> bool {
        !self.added.is_empty() || !self.reaped.is_empty()
    }
}

/// One service's timing state.
#[derive(Debug)]
pub struct Schedule {
    /// An event asked for a sweep.
    sweep_requested: bool,
    /// A pass was started and is taken in steps.
    mid_pass: bool,
    /// When the last event-caused sweep started, for [`EVENT_SWEEP_GAP`].
    event_swept_at: Option<Instant>,
    /// A first whole pass is done (or the directory could not be opened).
    swept_once: bool,
    /// Re-checks after a worker closed its file, one slot per [`CLOSE_RECHECKS`] delay:
    /// however many close events arrive, at most two re-checks are pending.
    rechecks: [Option<Instant>; 2],
    membership_pending: bool,
    sent: Option<Sent>,
    /// `None` without a bus: nobody would drain them.
    batch: Option<MembershipBatch>,
}

impl Schedule {
    /// A service just watched: swept at once, its first line sent at once; with
    /// `on_bus`, membership changes are batched for the WorkerAdded/WorkerReaped D-Bus
    /// signals.
    pub fn new(on_bus: bool) -> Schedule {
        Schedule {
            sweep_requested: true,
            mid_pass: false,
            event_swept_at: None,
            swept_once: false,
            rechecks: [None; 2],
            membership_pending: true,
            sent: None,
            batch: on_bus.then(MembershipBatch::default),
        }
    }

    /// An inotify event on the directory.
    pub fn on_change(&mut self, change: DirChange, now: Instant) {
        self.sweep_requested = true;
        if change == DirChange::Closed {
            for (slot, delay) in self.rechecks.iter_mut().zip(CLOSE_RECHECKS) {
                slot.get_or_insert(now + delay);
            }
        }
    }

    /// Events were lost (the inotify queue overflowed): sweep as if one had come.
    pub fn on_overflow(&mut self) {
        self.sweep_requested = true;
    }

    /// Whether a step of a pass is due now: at a tick, for an event (no sooner than
    /// [`EVENT_SWEEP_GAP`] after the last event-caused one), for a re-check, or to go
    /// on with a pass under way. Consumes the re-checks and the event it answers.
    pub fn sweep_due(&mut self, now: Instant, tick: bool) -> bool {
        let mut recheck = false;
        for slot in &mut self.rechecks {
            if slot.is_some_and(|at| at <= now) {
                *slot = None;
                recheck = true;
            }
        }
        let event = self.sweep_requested && self.next_event_sweep(now) <= now;
        if event {
            self.event_swept_at = Some(now);
        }
        tick || event || recheck || self.mid_pass
    }

    fn next_event_sweep(&self, now: Instant) -> Instant {
        self.event_swept_at.map_or(now, |at| at + EVENT_SWEEP_GAP)
    }

    /// A step begins: a new pass sees whatever the events were about; events during a
    /// pass ask for the next one.
    pub fn step_begins(&mut self) {
        if !self.mid_pass {
            self.sweep_requested = false;
        }
    }

    /// The step ended with the pass unfinished; it goes on at the next turn.
    pub fn pass_unfinished(&mut self) {
        self.mid_pass = true;
    }

    /// The pass is over with `changes` taken into the pool.
    pub fn pass_done(&mut self, changes: &Changes) {
        self.pass_ended();
        if changes.membership() {
            self.membership_pending = true;
        }
        if let Some(batch) = &mut self.batch {
            batch.added.extend(changes.added.iter().cloned());
            batch.reaped.extend(changes.removed.iter().cloned());
        }
    }

    /// The pass was given up (the directory is missing or unreadable): READY=1 does not
    /// wait for it.
    pub fn pass_given_up(&mut self) {
        self.pass_ended();
    }

    fn pass_ended(&mut self) {
        self.mid_pass = false;
        self.swept_once = true;
    }

    /// The directory went away with the workers `gone`.
    pub fn directory_gone(&mut self, gone: Vec<String>) {
        self.mid_pass = false;
        if gone.is_empty() {
            return;
        }
        self.membership_pending = true;
        if let Some(batch) = &mut self.batch {
            batch.reaped.extend(gone);
        }
    }

    /// Whether a pass is under way, taken in steps.
    pub fn mid_pass(&self) -> bool {
        self.mid_pass
    }

    /// Whether a first pass is over (READY=1 waits for every service's).
    pub fn swept_once(&self) -> bool {
        self.swept_once
    }

    /// Whether `text` goes out now, and on whose behalf; `None` to hold it.
    ///
    /// For a main process, `main_pid` is asked (it looks in the bus thread's cache) at
    /// every tick and whenever the line changed, so a restarted service — a new main
    /// process — hears the line again even when it is the same; `None` from it means
    /// nobody to speak for.
    pub fn status_due(
        &self,
        text: &str,
        now: Instant,
        interval: Duration,
        tick: bool,
        listener: Listener,
        main_pid: impl FnOnce() -> Option<u32>,
    ) -> Option<Behalf> {
        let last = self.sent.as_ref();
        let text_due = text_due(last, text, self.membership_pending, interval, now);
        if listener == Listener::Fixed {
            return text_due.then_some(Behalf::Agent);
        }
        let changed = last.is_none_or(|sent| sent.text != text);
        if !tick && !changed {
            return None;
        }
        let pid = main_pid()?;
        let behalf = Behalf::MainProcess(pid);
        (text_due || new_listener(last, behalf)).then_some(behalf)
    }

    /// `text` went out at `now` on `behalf` of someone.
    pub fn status_sent(&mut self, text: String, now: Instant, behalf: Behalf) {
        self.sent = Some(Sent {
            text,
            at: now,
            behalf,
        });
        self.membership_pending = false;
    }

    /// The ids for the WorkerAdded and WorkerReaped D-Bus signals to emit now, if any
    /// are waiting and the last batch was at least [`MEMBERSHIP_GAP`] ago.
    pub fn membership_batch_due(&mut self, now: Instant) -> Option<(Vec<String>, Vec<String>)> {
        let batch = self.batch.as_mut()?;
        let due = batch.at.is_none_or(|at| now >= at + MEMBERSHIP_GAP);
        if !batch.pending() || !due {
            return None;
        }
        batch.at = Some(now);
        Some((
            std::mem::take(&mut batch.added),
            std::mem::take(&mut batch.reaped),
        ))
    }

    /// The earliest moment this service needs the loop besides ticks and events
    /// (`stuck_at`: when the pool's next worker becomes stuck).
    pub fn next_wake(&self, now: Instant, stuck_at: Option<Instant>) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        self.rechecks.iter().flatten().for_each(|t| at(*t));
        if self.mid_pass {
            at(now);
        } else if self.sweep_requested {
            at(self.next_event_sweep(now));
        }
        if self.membership_pending
            && let Some(sent) = &self.sent
        {
            at(sent.at + MEMBERSHIP_GAP);
        }
        if let Some(batch) = &self.batch
            && batch.pending()
            && let Some(t) = batch.at
        {
            at(t + MEMBERSHIP_GAP);
        }
        if let Some(t) = stuck_at {
            at(t);
        }
        wake
    }
}

/// Whether `text` should be sent now.
fn text_due(
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
fn new_listener(last: Option<&Sent>, behalf: Behalf) -> bool {
    last.is_some_and(|last| last.behalf != behalf)
}

/// What the agent-wide clock says is due at a turn of the loop.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The sampling tick: sweep every directory, publish, write the textfile.
    pub tick: bool,
    /// Ping the watchdog.
    pub watchdog: bool,
    /// Save state (every [`SAVE_EVERY_TICKS`] ticks).
    pub save: bool,
}

/// The agent-wide clock.
#[derive(Debug)]
pub struct Timers {
    interval: Duration,
    started: Instant,
    next_tick: Instant,
    /// Half the watchdog period systemd asked for, and the next ping.
    watchdog: Option<(Duration, Instant)>,
    ready: bool,
    ticks: u64,
}

impl Timers {
    /// The clock of an agent started at `now`, sampling every `interval`, pinging the
    /// watchdog every `watchdog` when systemd asked for one.
    pub fn new(now: Instant, interval: Duration, watchdog: Option<Duration>) -> Timers {
        Timers {
            interval,
            started: now,
            next_tick: now + interval,
            watchdog: watchdog.map(|period| (period, now + period)),
            ready: false,
            ticks: 0,
        }
    }

    /// A reloaded `interval`, in force from now: the next tick comes no later than one
    /// new interval from now.
    pub fn set_interval(&mut self, interval: Duration, now: Instant) {
        self.interval = interval;
        self.next_tick = self.next_tick.min(now + interval);
    }

    /// The sampling interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The next tick or ping, whichever is first.
    pub fn next_wake(&self) -> Instant {
        match self.watchdog {
            Some((_, ping)) => self.next_tick.min(ping),
            None => self.next_tick,
        }
    }

    /// What is due at `now`, and the clock moved on past it.
    pub fn advance(&mut self, now: Instant) -> Due {
        let mut due = Due::default();
        if now >= self.next_tick {
            due.tick = true;
            self.next_tick = now + self.interval;
            self.ticks += 1;
            due.save = self.ticks.is_multiple_of(SAVE_EVERY_TICKS);
        }
        if let Some((period, ping)) = &mut self.watchdog
            && now >= *ping
        {
            due.watchdog = true;
            *ping = now + *period;
        }
        due
    }

    /// Whether READY=1 goes out now: once, when every service has had its first pass
    /// (`all_swept`), or [`READY_WAIT`] after the start whatever a directory's owner
    /// keeps adding to it.
    pub fn ready_now(&mut self, now: Instant, all_swept: bool) -> bool {
        if self.ready || !(all_swept || now >= self.started + READY_WAIT) {
            return false;
        }
        self.ready = true;
        true
    }

    /// Whether READY=1 has gone out.
    pub fn is_ready(&self) -> bool {
        self.ready
    }
}

#[cfg(test)]
mod tests;
