use super::*;

const SECOND: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn changes(added: &[&str], removed: &[&str]) -> Changes {
    Changes {
        added: added.iter().map(|s| s.to_string()).collect(),
        removed: removed.iter().map(|s| s.to_string()).collect(),
        updated: 0,
    }
}

/// A schedule past its first pass and first line, sent at `t0`.
fn settled(t0: Instant, text: &str) -> Schedule {
    let mut schedule = Schedule::new(true);
    assert!(schedule.sweep_due(t0, false));
    schedule.step_begins();
    schedule.pass_done(&Changes::default());
    schedule.status_sent(text.to_owned(), t0, Behalf::Agent);
    schedule
}

fn due(schedule: &Schedule, text: &str, now: Instant) -> bool {
    schedule
        .status_due(text, now, SECOND, false, Listener::Fixed, || None)
        .is_some()
}

#[test]
fn a_new_service_is_swept_and_its_first_line_sent_at_once() {
    let t0 = Instant::now();
    let mut schedule = Schedule::new(false);
    assert_eq!(schedule.next_wake(t0, None), Some(t0));
    assert!(schedule.sweep_due(t0, false));
    schedule.step_begins();
    assert!(!schedule.swept_once());
    schedule.pass_done(&Changes::default());
    assert!(schedule.swept_once());
    assert!(due(&schedule, "0 workers: none", t0));
}

#[test]
fn the_same_line_never_goes_twice() {
    let t0 = Instant::now();
    let schedule = settled(t0, "a");
    assert!(!due(&schedule, "a", t0 + 10 * SECOND));
}

#[test]
fn a_joining_or_dying_worker_is_told_at_once_but_at_most_ten_times_a_second() {
    let t0 = Instant::now();
    let mut schedule = settled(t0, "3 workers: 3 idle");
    schedule.pass_done(&changes(&[], &["w1"]));
    // The loop must wake for it by the end of the gap.
    assert_eq!(schedule.next_wake(t0, None), Some(t0 + MEMBERSHIP_GAP));
    assert!(!due(&schedule, "2 workers: 2 idle", t0 + 99 * MS));
    assert!(due(&schedule, "2 workers: 2 idle", t0 + MEMBERSHIP_GAP));
    schedule.status_sent(
        "2 workers: 2 idle".into(),
        t0 + MEMBERSHIP_GAP,
        Behalf::Agent,
    );
    assert_eq!(schedule.next_wake(t0 + MEMBERSHIP_GAP, None), None);
}

#[test]
fn other_changes_wait_an_interval() {
    let t0 = Instant::now();
    let schedule = settled(t0, "3 workers: 3 idle");
    let changed = "3 workers: 2 idle, 1 busy";
    assert!(!due(&schedule, changed, t0 + 999 * MS));
    assert!(due(&schedule, changed, t0 + SECOND));
}

#[test]
fn a_worker_becoming_stuck_wakes_the_loop_when_it_does() {
    let t0 = Instant::now();
    let schedule = settled(t0, "1 workers: 1 busy");
    let stuck_at = t0 + 4 * SECOND;
    assert_eq!(schedule.next_wake(t0, Some(stuck_at)), Some(stuck_at));
    assert!(due(&schedule, "1 workers: 1 stuck", stuck_at));
}

#[test]
fn a_closed_file_is_rechecked_twice_however_many_closes_come() {
    let t0 = Instant::now();
    let mut schedule = settled(t0, "x");
    let t1 = t0 + SECOND;
    for n in 0..100 {
        schedule.on_change(DirChange::Closed, t1 + n * MS);
    }
    // The event itself is swept at once...
    assert!(schedule.sweep_due(t1, false));
    schedule.step_begins();
    schedule.pass_done(&Changes::default());
    // ...then again 10 ms and 40 ms after the first close, and no more.
    assert_eq!(schedule.next_wake(t1, None), Some(t1 + 10 * MS));
    assert!(!schedule.sweep_due(t1 + 9 * MS, false));
    assert!(schedule.sweep_due(t1 + 10 * MS, false));
    assert_eq!(schedule.next_wake(t1 + 10 * MS, None), Some(t1 + 40 * MS));
    assert!(schedule.sweep_due(t1 + 40 * MS, false));
    assert_eq!(schedule.next_wake(t1 + 40 * MS, None), None);
    assert!(!schedule.sweep_due(t1 + 200 * MS, false));
}

#[test]
fn events_in_a_loop_are_swept_at_most_ten_times_a_second() {
    let t0 = Instant::now();
    let mut schedule = settled(t0, "x");
    let mut sweeps = 0;
    for ms in 0..1000 {
        let now = t0 + SECOND + ms * MS;
        schedule.on_change(DirChange::Membership, now);
        if schedule.sweep_due(now, false) {
            sweeps += 1;
            schedule.step_begins();
            schedule.pass_done(&Changes::default());
        }
    }
    assert_eq!(sweeps, 10);
    // The last events are not forgotten: a sweep is pending for the end of the gap.
    assert!(schedule.next_wake(t0 + 2 * SECOND, None).is_some());
}

#[test]
fn a_pass_in_steps_goes_on_at_the_next_turn_and_events_wait_for_the_next_pass() {
    let t0 = Instant::now();
    let mut schedule = settled(t0, "x");
    assert!(schedule.sweep_due(t0 + SECOND, true));
    schedule.step_begins();
    schedule.pass_unfinished();
    assert_eq!(schedule.next_wake(t0 + SECOND, None), Some(t0 + SECOND));
    schedule.on_change(DirChange::Membership, t0 + SECOND);
    assert!(schedule.sweep_due(t0 + SECOND, false));
    schedule.step_begins();
    schedule.pass_done(&Changes::default());
    // The event came during the pass: it asks for another one.
    assert!(schedule.next_wake(t0 + SECOND, None).is_some());
    assert!(schedule.sweep_due(t0 + SECOND + EVENT_SWEEP_GAP, false));
}

#[test]
fn a_vanished_directory_is_told_as_its_workers_leaving() {
    let t0 = Instant::now();
    let mut schedule = settled(t0, "2 workers: 2 idle");
    schedule.directory_gone(vec!["a".into(), "b".into()]);
    assert!(due(&schedule, "0 workers: none", t0 + MEMBERSHIP_GAP));
    let (added, reaped) = schedule.membership_batch_due(t0).unwrap();
    assert!(added.is_empty());
    assert_eq!(reaped, ["a", "b"]);
}

#[test]
fn worker_signals_are_batched_at_most_ten_times_a_second() {
    let t0 = Instant::now();
    let mut schedule = settled(t0, "x");
    schedule.pass_done(&changes(&["a"], &[]));
    assert_eq!(
        schedule.membership_batch_due(t0),
        Some((vec!["a".into()], vec![]))
    );
    schedule.pass_done(&changes(&["b"], &["a"]));
    schedule.pass_done(&changes(&["c"], &[]));
    assert_eq!(schedule.membership_batch_due(t0 + 50 * MS), None);
    assert_eq!(schedule.next_wake(t0, None), Some(t0 + MEMBERSHIP_GAP));
    assert_eq!(
        schedule.membership_batch_due(t0 + MEMBERSHIP_GAP),
        Some((vec!["b".into(), "c".into()], vec!["a".into()]))
    );
    assert_eq!(schedule.membership_batch_due(t0 + SECOND), None);
}

#[test]
fn without_a_bus_no_signals_accumulate() {
    let mut schedule = Schedule::new(false);
    for n in 0..1000 {
        schedule.pass_done(&changes(&[&n.to_string()], &[]));
    }
    assert_eq!(schedule.membership_batch_due(Instant::now()), None);
}

#[test]
fn a_main_process_is_asked_for_at_ticks_and_changes_only() {
    let t0 = Instant::now();
    let mut schedule = Schedule::new(false);
    let ask = |s: &Schedule, text: &str, tick, pid: Option<u32>| {
        let mut asked = false;
        let due = s.status_due(
            text,
            t0 + 5 * SECOND,
            SECOND,
            tick,
            Listener::MainProcess,
            || {
                asked = true;
                pid
            },
        );
        (asked, due)
    };
    // Not running, or not known: nobody to speak for.
    assert_eq!(ask(&schedule, "a", false, None), (true, None));
    assert_eq!(
        ask(&schedule, "a", false, Some(42)),
        (true, Some(Behalf::MainProcess(42)))
    );
    schedule.status_sent("a".into(), t0, Behalf::MainProcess(42));
    // The same line between ticks: not even asked.
    assert_eq!(ask(&schedule, "a", false, Some(42)), (false, None));
    // At a tick: asked; the same process heard it already.
    assert_eq!(ask(&schedule, "a", true, Some(42)), (true, None));
    // The service restarted: its new main process hears the same line again.
    assert_eq!(
        ask(&schedule, "a", true, Some(43)),
        (true, Some(Behalf::MainProcess(43)))
    );
}

#[test]
fn ticks_come_every_interval_and_state_is_saved_every_tenth() {
    let t0 = Instant::now();
    let mut timers = Timers::new(t0, SECOND, None);
    assert_eq!(timers.next_wake(), t0 + SECOND);
    assert_eq!(timers.advance(t0 + 999 * MS), Due::default());
    let mut saves = 0;
    for n in 1..=20 {
        let due = timers.advance(t0 + n * SECOND);
        assert!(due.tick && !due.watchdog);
        saves += usize::from(due.save);
    }
    assert_eq!(saves, 2);
    // A reload with a shorter interval is in force at once.
    let now = t0 + 20 * SECOND + 100 * MS;
    timers.set_interval(200 * MS, now);
    assert_eq!(timers.next_wake(), now + 200 * MS);
}

#[test]
fn the_watchdog_is_pinged_at_its_own_pace() {
    let t0 = Instant::now();
    let mut timers = Timers::new(t0, 10 * SECOND, Some(300 * MS));
    assert_eq!(timers.next_wake(), t0 + 300 * MS);
    let due = timers.advance(t0 + 300 * MS);
    assert!(due.watchdog && !due.tick);
    assert_eq!(timers.next_wake(), t0 + 600 * MS);
}

#[test]
fn ready_follows_the_first_passes_or_two_seconds() {
    let t0 = Instant::now();
    let mut timers = Timers::new(t0, SECOND, None);
    assert!(!timers.ready_now(t0, false));
    assert!(timers.ready_now(t0 + MS, true));
    assert!(timers.is_ready());
    assert!(!timers.ready_now(t0 + 2 * MS, true), "only once");

    let mut slow = Timers::new(t0, SECOND, None);
    assert!(!slow.ready_now(t0 + READY_WAIT - MS, false));
    assert!(slow.ready_now(t0 + READY_WAIT, false));
}
