use super::*;
use crate::config::{DEFAULT_SUMMARY, NotifyMode, Service, StateRule};
use scoreboard::{Snapshot, Worker};

const SECOND: Duration = Duration::from_secs(1);

fn pool(stuck_after: u64) -> Pool {
    Pool::new(&Service {
        source: "web.toml".into(),
        unit: "web.service".into(),
        directory: "/run/web/scoreboard".into(),
        state: StateRule::FirstWord,
        idle_states: vec!["idle".into()],
        stuck_after: Some(Duration::from_secs(stuck_after)),
        summary: DEFAULT_SUMMARY.into(),
        notify: NotifyMode::MainPid,
        max_workers: scoreboard::DEFAULT_MAX_WORKERS,
        max_status_bytes: 1 << 20,
        health_actions: Default::default(),
    })
}

fn observe(pool: &mut Pool, workers: &[(&str, &str)], now: Instant) {
    let mut snapshot = Snapshot {
        workers: workers
            .iter()
            .map(|(id, status)| Worker {
                id: id.to_string(),
                status: status.as_bytes().to_vec(),
                read_at: now,
                inode: 0,
            })
            .collect(),
        ..Snapshot::default()
    };
    pool.observe(&mut snapshot, now);
}

fn rules() -> Actions {
    Actions {
        wedged_after: Some(3 * SECOND),
        kill_stuck_after: None,
        kill_grace: 10 * SECOND,
        ..Actions::default()
    }
}

/// The unit active since `t0` (named by its offset from a fixed base, in µs).
fn life(t0: Instant) -> Option<UnitLife> {
    let base = *BASE.get_or_init(Instant::now);
    Some(UnitLife {
        main_pid: Some(100),
        start: Some(Start {
            usec: t0.saturating_duration_since(base).as_micros() as u64 + 1,
            at: t0,
        }),
    })
}

static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

#[test]
fn a_pool_all_stuck_for_wedged_after_triggers_the_watchdog_once_per_start() {
    BASE.get_or_init(Instant::now);
    let t0 = Instant::now();
    let mut pool = pool(5);
    let workers = [("101", "busy a"), ("102", "busy b"), ("103", "busy c")];
    observe(&mut pool, &workers, t0);
    let mut health = Health::new(rules());
    // All stuck from t0 + 5 s; wedged 3 s later.
    assert!(health.decide(&pool, life(t0), t0 + 7 * SECOND).is_empty());
    let decisions = health.decide(&pool, life(t0), t0 + 8 * SECOND);
    assert_eq!(
        decisions,
        [Decision::TriggerWatchdog {
            pid: 100,
            stuck: 3,
            wedged_for: 3 * SECOND
        }]
    );
    assert!(health.decide(&pool, life(t0), t0 + 60 * SECOND).is_empty());
    // The unit restarted (a new start): judged afresh, from that start.
    let t1 = t0 + 61 * SECOND;
    assert!(health.decide(&pool, life(t1), t1 + 2 * SECOND).is_empty());
    assert_eq!(health.decide(&pool, life(t1), t1 + 3 * SECOND).len(), 1);
}

#[test]
fn one_live_worker_or_an_idle_pool_is_never_wedged() {
    let t0 = Instant::now();
    let mut pool = pool(5);
    observe(&mut pool, &[("101", "busy a"), ("102", "idle")], t0);
    let mut health = Health::new(rules());
    assert!(health.decide(&pool, life(t0), t0 + 600 * SECOND).is_empty());
    let mut idle = self::pool(5);
    observe(&mut idle, &[("101", "idle"), ("102", "idle")], t0);
    assert!(health.decide(&idle, life(t0), t0 + 600 * SECOND).is_empty());
}

/// An idle server may publish nothing until its first request: an empty pool is
/// never wedged, however long it stays empty.
#[test]
fn an_empty_pool_is_never_wedged() {
    let t0 = Instant::now();
    let mut pool = pool(5);
    observe(&mut pool, &[], t0);
    let mut health = Health::new(rules());
    for seconds in [0, 3, 10, 600] {
        assert!(
            health
                .decide(&pool, life(t0), t0 + seconds * SECOND)
                .is_empty()
        );
    }
    assert_eq!(health.next_wake(&pool, t0), None);
}

/// A pool the agent could not read is unknown, not empty and not stuck: nothing is
/// decided on it, whatever was seen before.
#[test]
fn nothing_is_decided_on_a_pool_not_seen() {
    use crate::core::pool::{Cause, Unseen};
    let t0 = Instant::now();
    let mut pool = pool(1);
    let mut health = Health::new(Actions {
        wedged_after: Some(SECOND),
        kill_stuck_after: Some(SECOND),
        ..Actions::default()
    });
    // Never looked at.
    assert!(health.decide(&pool, life(t0), t0 + 60 * SECOND).is_empty());
    observe(&mut pool, &[("101", "busy a"), ("102", "busy b")], t0);
    pool.unseen(Unseen {
        cause: Cause::PermissionDenied,
        detail: "open directory /run/w/scoreboard: Permission denied".into(),
    });
    assert!(health.decide(&pool, life(t0), t0 + 60 * SECOND).is_empty());
    assert!(pool.status_line(t0).contains("permission denied"));
}

/// Report mode decides as acting would, but saves nothing: switching to acting
/// finds the trigger and the signals still to do.
#[test]
fn a_report_uses_up_nothing_acting_would_do() {
    let t0 = Instant::now();
    let mut pool = pool(1);
    observe(&mut pool, &[("101", "busy")], t0);
    let mut report = Health::new(Actions {
        mode: ActionMode::Report,
        wedged_after: Some(SECOND),
        kill_stuck_after: Some(SECOND),
        kill_grace: SECOND,
        ..Actions::default()
    });
    let decided: Vec<Action> = report
        .decide(&pool, life(t0), t0 + 3 * SECOND)
        .iter()
        .map(Decision::action)
        .collect();
    assert_eq!(decided, [Action::Watchdog, Action::Signal]);
    let kill: Vec<Action> = report
        .decide(&pool, life(t0), t0 + 5 * SECOND)
        .iter()
        .map(Decision::action)
        .collect();
    assert_eq!(kill, [Action::Kill], "a would-be SIGKILL is a kill");
    assert_eq!(report.triggered_for(), None);
    assert_eq!(report.sent().count(), 0);
}

/// A signal an earlier agent sent is not sent again; SIGKILL follows the grace from
/// that first signal.
#[test]
fn a_signal_sent_before_an_agent_restart_is_not_sent_again() {
    let t0 = Instant::now();
    let mut pool = pool(1);
    observe(&mut pool, &[("101", "busy")], t0);
    let rules = Actions {
        kill_stuck_after: Some(2 * SECOND),
        kill_grace: 15 * SECOND,
        ..Actions::default()
    };
    let mut before = Health::new(rules.clone());
    let first = before.decide(&pool, life(t0), t0 + 2 * SECOND);
    assert_eq!(first[0].action(), Action::Signal);
    let saved: Vec<(String, Sent)> = before
        .sent()
        .map(|(id, sent)| (id.to_owned(), *sent))
        .collect();
    assert_eq!(saved.len(), 1);
    let mut after = Health::new(rules);
    for (id, sent) in saved {
        after.remember_sent(id, sent);
    }
    assert!(after.decide(&pool, life(t0), t0 + 5 * SECOND).is_empty());
    assert!(after.decide(&pool, life(t0), t0 + 16 * SECOND).is_empty());
    let kill = after.decide(&pool, life(t0), t0 + 17 * SECOND);
    assert_eq!(kill.len(), 1);
    assert_eq!(kill[0].action(), Action::Kill);
}

#[test]
fn nothing_is_triggered_for_an_inactive_unit_or_without_a_main_process() {
    let t0 = Instant::now();
    let mut pool = pool(5);
    // Every worker stuck, long enough: only the unit's state stands in the way.
    observe(&mut pool, &[("101", "busy")], t0);
    let mut health = Health::new(rules());
    let later = t0 + 600 * SECOND;
    health.decide(&pool, None, t0);
    assert!(health.decide(&pool, None, later).is_empty());
    let inactive = Some(UnitLife {
        main_pid: Some(100),
        start: None,
    });
    assert!(health.decide(&pool, inactive, later).is_empty());
    let no_main = Some(UnitLife {
        main_pid: None,
        ..life(t0).unwrap()
    });
    assert!(health.decide(&pool, no_main, later).is_empty());
}

#[test]
fn a_restarted_agent_does_not_trigger_twice_for_the_same_start() {
    let t0 = Instant::now();
    let mut pool = pool(1);
    observe(&mut pool, &[("101", "busy")], t0);
    let mut before = Health::new(rules());
    assert_eq!(before.decide(&pool, life(t0), t0 + 4 * SECOND).len(), 1);
    let mut after = Health::new(rules());
    after.remember_triggered(before.triggered_for().unwrap());
    assert!(after.decide(&pool, life(t0), t0 + 5 * SECOND).is_empty());
}

#[test]
fn stuck_workers_get_the_signal_then_sigkill_after_the_grace() {
    let t0 = Instant::now();
    let mut pool = pool(1);
    observe(
        &mut pool,
        &[("101", "busy slow"), ("102", "idle"), ("103", "busy")],
        t0,
    );
    // 103 finishes at t0 + 1.5 s; 101 does not.
    observe(
        &mut pool,
        &[("101", "busy slow"), ("102", "idle"), ("103", "idle")],
        t0 + 1500 * Duration::from_millis(1),
    );
    let mut health = Health::new(Actions {
        wedged_after: None,
        kill_stuck_after: Some(2 * SECOND),
        kill_grace: 10 * SECOND,
        ..Actions::default()
    });
    assert!(health.decide(&pool, life(t0), t0 + SECOND).is_empty());
    let first = health.decide(&pool, life(t0), t0 + 2 * SECOND);
    assert_eq!(
        first,
        [Decision::Signal {
            worker: "101".into(),
            pid: 101,
            escalation: Escalation::First,
            stood: 2 * SECOND,
            status: "busy slow".into()
        }]
    );
    assert!(health.decide(&pool, life(t0), t0 + 5 * SECOND).is_empty());
    let kill = health.decide(&pool, life(t0), t0 + 12 * SECOND);
    assert!(matches!(
        kill.as_slice(),
        [Decision::Signal {
            escalation: Escalation::Kill,
            pid: 101,
            ..
        }]
    ));
    assert!(health.decide(&pool, life(t0), t0 + 60 * SECOND).is_empty());
}

#[test]
fn a_stuck_worker_whose_id_is_not_a_pid_is_reported_once_never_signalled() {
    let t0 = Instant::now();
    let mut pool = pool(1);
    observe(
        &mut pool,
        &[("web-1", "busy"), ("0042", "busy"), ("1", "busy")],
        t0,
    );
    let mut health = Health::new(Actions {
        wedged_after: None,
        kill_stuck_after: Some(SECOND),
        kill_grace: SECOND,
        ..Actions::default()
    });
    let decisions = health.decide(&pool, life(t0), t0 + 2 * SECOND);
    assert_eq!(decisions.len(), 3);
    assert!(
        decisions
            .iter()
            .all(|d| matches!(d, Decision::NotAPid { .. }))
    );
    assert!(health.decide(&pool, life(t0), t0 + 9 * SECOND).is_empty());
}

#[test]
fn the_loop_is_woken_when_a_threshold_is_reached_not_at_the_next_tick() {
    let t0 = Instant::now();
    let mut pool = pool(1);
    observe(&mut pool, &[("101", "busy a"), ("102", "busy b")], t0);
    let mut health = Health::new(Actions {
        wedged_after: Some(3 * SECOND),
        kill_stuck_after: Some(2 * SECOND),
        kill_grace: 5 * SECOND,
        ..Actions::default()
    });
    // Before anyone is stuck: the first kill threshold (the wedge needs all stuck,
    // which the pool's own next_stuck_at wakes for).
    assert_eq!(health.next_wake(&pool, t0), Some(t0 + 2 * SECOND));
    // All stuck since t0 + 1 s: the wedge at t0 + 4 s; the kill thresholds passed.
    let t = t0 + 2 * SECOND;
    assert_eq!(health.decide(&pool, life(t0), t).len(), 2);
    assert_eq!(health.next_wake(&pool, t), Some(t0 + 4 * SECOND));
    let t = t0 + 4 * SECOND;
    assert_eq!(health.decide(&pool, life(t0), t).len(), 1);
    // Then the grace of the signalled ones.
    assert_eq!(health.next_wake(&pool, t), Some(t0 + 7 * SECOND));
}

/// A directory's owner making thousands of workers stuck at once gets them decided a
/// few per turn, the loop coming back soon for the rest; each once.
#[test]
fn many_stuck_workers_are_decided_a_few_per_turn_each_once() {
    let t0 = Instant::now();
    let mut pool = pool(1);
    let ids: Vec<String> = (0..1000).map(|n| format!("w{n}")).collect();
    let workers: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), "busy")).collect();
    observe(&mut pool, &workers, t0);
    let mut health = Health::new(Actions {
        kill_stuck_after: Some(SECOND),
        ..Actions::default()
    });
    let mut now = t0 + 3 * SECOND;
    let mut decided = 0;
    for _ in 0..200 {
        let decisions = health.decide(&pool, life(t0), now);
        assert!(decisions.len() <= MAX_WORKER_DECISIONS);
        decided += decisions.len();
        if decisions.is_empty() {
            break;
        }
        // While there are more, the loop is asked back soon (the last batch may
        // be full too, with nothing after it).
        if decided < 1000 {
            assert_eq!(
                health.next_wake(&pool, now),
                Some(now + MORE_DECISIONS_AFTER)
            );
        }
        now += MORE_DECISIONS_AFTER;
    }
    assert_eq!(decided, 1000);
}

#[test]
fn only_plain_decimal_pids_from_two_up_are_pids() {
    assert_eq!(pid_of("4242"), Some(4242));
    for id in [
        "",
        "0",
        "1",
        "-5",
        "+5",
        "007",
        "12a",
        "99999999999",
        " 12",
        "١٢",
    ] {
        assert_eq!(pid_of(id), None, "{id:?}");
    }
}
