use super::*;
use crate::config::DEFAULT_SUMMARY;
use scoreboard::Worker;

fn service(stuck_after: Option<Duration>) -> Service {
    Service {
        source: "web.toml".into(),
        unit: "web.service".into(),
        directory: "/run/web/scoreboard".into(),
        state: StateRule::FirstWord,
        idle_states: vec!["idle".into()],
        stuck_after,
        summary: DEFAULT_SUMMARY.into(),
        notify: crate::config::NotifyMode::None,
        max_workers: scoreboard::DEFAULT_MAX_WORKERS,
        max_status_bytes: crate::config::SERVICE_MAX_STATUS_BYTES,
        health_actions: Default::default(),
    }
}

fn snapshot(workers: &[(&str, &str)]) -> Snapshot {
    Snapshot {
        workers: workers
            .iter()
            .map(|(id, status)| Worker {
                id: id.to_string(),
                status: status.as_bytes().to_vec(),
                read_at: Instant::now(),
                inode: 0,
            })
            .collect(),
        ..Snapshot::default()
    }
}

#[test]
fn the_default_line_reads_like_the_readme() {
    let mut pool = Pool::new(&service(Some(Duration::from_secs(60))));
    let t0 = Instant::now();
    let mut workers: Vec<(String, String)> = Vec::new();
    for i in 0..8 {
        workers.push((format!("b{i}"), format!("busy GET /{i}")));
    }
    for i in 0..3 {
        workers.push((format!("i{i}"), "idle".into()));
    }
    workers.push(("s".into(), "busy GET /slow".into()));
    let refs: Vec<(&str, &str)> = workers
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    pool.observe(&mut snapshot(&refs), t0);
    // A minute later every busy worker but the slow one has moved on.
    let t1 = t0 + Duration::from_secs(61);
    for (id, status) in workers.iter_mut().filter(|(id, _)| id.starts_with('b')) {
        *status = format!("busy POST /{id}");
    }
    let refs: Vec<(&str, &str)> = workers
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let changes = pool.observe(&mut snapshot(&refs), t1);
    assert_eq!(changes.updated, 8);
    assert!(!changes.membership());
    assert_eq!(pool.status_line(t1), "12 workers: 8 busy, 3 idle, 1 stuck");
}

#[test]
fn membership_changes_are_reported_by_id() {
    let mut pool = Pool::new(&service(None));
    let now = Instant::now();
    let changes = pool.observe(&mut snapshot(&[("1", "idle"), ("2", "idle")]), now);
    assert_eq!(changes.added, ["1", "2"]);
    let changes = pool.observe(&mut snapshot(&[("2", "idle"), ("3", "busy")]), now);
    assert_eq!(changes.added, ["3"]);
    assert_eq!(changes.removed, ["1"]);
    assert_eq!(pool.len(), 2);
    assert_eq!(pool.clear(), ["2", "3"]);
    assert!(pool.is_empty());
}

#[test]
fn a_torn_read_keeps_the_worker_with_its_last_status() {
    let mut pool = Pool::new(&service(None));
    let now = Instant::now();
    pool.observe(&mut snapshot(&[("7", "busy")]), now);
    let mut torn = snapshot(&[]);
    torn.unread.push("7".to_owned());
    assert_eq!(pool.observe(&mut torn, now), Changes::default());
    assert_eq!(pool.workers(now)[0].status, "busy");
}

/// A directory whose owner makes a different set of workers readable at each pass
/// cannot make the pool keep every status it ever read: kept statuses of unread
/// workers stay within the byte budget, the rest are counted with state `unknown`.
#[test]
fn statuses_kept_for_unread_workers_stay_within_the_byte_budget() {
    let mut service = service(None);
    service.max_status_bytes = 3000;
    let mut pool = Pool::new(&service);
    let now = Instant::now();
    let big = "busy ".to_owned() + &"x".repeat(995);
    let ids: Vec<String> = (0..10).map(|n| n.to_string()).collect();
    for round in 0..5 {
        let read: Vec<(&str, &str)> = ids[round * 2..round * 2 + 2]
            .iter()
            .map(|id| (id.as_str(), big.as_str()))
            .collect();
        let mut snapshot = snapshot(&read);
        snapshot.unread = ids
            .iter()
            .filter(|id| !read.iter().any(|(r, _)| r == id))
            .cloned()
            .collect();
        pool.observe(&mut snapshot, now);
        let kept: usize = pool.workers(now).iter().map(|w| w.status.len()).sum();
        assert!(kept <= 3000, "round {round}: {kept} bytes kept");
        assert_eq!(pool.len(), 10, "unread workers are still counted");
    }
    assert!(
        pool.summary(now)
            .counts
            .iter()
            .any(|(state, _)| state == "unknown")
    );
}

#[test]
fn a_state_is_cut_to_a_word() {
    let state = derive_state(&StateRule::FirstWord, "é".repeat(100).as_bytes());
    assert!(state.len() <= MAX_STATE_LEN && state.chars().all(|c| c == 'é'));
}

#[test]
fn stuck_needs_a_non_idle_state_unchanged_for_long_enough() {
    let mut pool = Pool::new(&service(Some(Duration::from_secs(10))));
    let t0 = Instant::now();
    pool.observe(&mut snapshot(&[("a", "busy x"), ("b", "idle")]), t0);
    assert_eq!(pool.summary(t0 + Duration::from_secs(9)).stuck, 0);
    assert_eq!(pool.next_stuck_at(t0), Some(t0 + Duration::from_secs(10)));
    let later = t0 + Duration::from_secs(10);
    assert_eq!(pool.summary(later).stuck, 1);
    let views = pool.workers(later);
    assert_eq!((views[0].stuck, views[1].stuck), (Some(true), Some(false)));
    assert_eq!(views[0].unchanged_seconds, Some(10.0));
    // A new status resets the clock.
    pool.observe(&mut snapshot(&[("a", "busy y"), ("b", "idle")]), later);
    assert_eq!(pool.summary(later).stuck, 0);
}

#[test]
fn a_stuck_after_past_what_an_instant_holds_is_never_not_a_panic() {
    let mut pool = Pool::new(&service(Some(Duration::MAX)));
    let now = Instant::now();
    pool.observe(&mut snapshot(&[("w1", "busy GET /")]), now);
    assert_eq!(pool.next_stuck_at(now), None);
    assert_eq!(pool.summary(now).stuck, 0);
    assert_eq!(pool.worker("w1", now).unwrap().stuck, Some(false));
}

fn stamp(n: i64) -> Option<Written> {
    Some(Written {
        seconds: 1_764_000_000 + n,
        nanoseconds: 0,
    })
}

#[test]
fn a_restarted_agent_keeps_stuck_timers_for_workers_that_did_not_write() {
    let service = service(Some(Duration::from_secs(60)));
    let t0 = Instant::now();
    let mut before = Pool::new(&service);
    let workers = [
        ("a", "busy GET /slow"),
        ("b", "busy GET /x"),
        ("c", "busy GET /c"),
    ];
    before.observe_writes(&mut snapshot(&workers), t0, |_| stamp(0));
    // A second look with the same text and the same modification time: the baseline.
    before.observe_writes(&mut snapshot(&workers), t0, |_| stamp(0));
    let saved = before.history(t0 + Duration::from_secs(50));
    assert_eq!(saved["a"].age, Duration::from_secs(50));

    // Ten seconds later, a new agent; b has moved on, c wrote the same text again.
    let t1 = t0 + Duration::from_secs(1000);
    let mut after = Pool::new(&service);
    after.remember(
        saved
            .into_iter()
            .map(|(id, r)| {
                let age = r.age + Duration::from_secs(10);
                (id, Remembered { age, ..r })
            })
            .collect(),
    );
    let now = [
        ("a", "busy GET /slow"),
        ("b", "busy GET /y"),
        ("c", "busy GET /c"),
    ];
    after.observe_writes(&mut snapshot(&now), t1, |w| {
        stamp(if w.id == "c" { 9 } else { 0 })
    });
    let views = after.workers(t1);
    assert_eq!(views[0].unchanged_seconds, Some(60.0));
    assert_eq!(views[0].stuck, Some(true));
    assert_eq!(views[1].unchanged_seconds, Some(0.0));
    assert_eq!(views[2].unchanged_seconds, Some(0.0), "c wrote since");
    assert_eq!(after.summary(t1).stuck, 1);
}

/// Same text is not no progress: a worker that wrote between two looks (its
/// modification time moved) made progress, whatever the text; one that did not, did
/// not. Idle workers and workers whose text changed are not asked about.
#[test]
fn a_write_with_the_same_text_is_progress() {
    let mut pool = Pool::new(&service(Some(Duration::from_secs(5))));
    let t0 = Instant::now();
    let second = Duration::from_secs(1);
    let asked = std::cell::RefCell::new(Vec::new());
    let look = |pool: &mut Pool, at: Instant, stamps: &[(&str, i64)]| {
        let workers = [
            ("flip", "busy GET /health"),
            ("hung", "busy GET /slow"),
            ("rest", "idle"),
        ];
        pool.observe_writes(&mut snapshot(&workers), at, |w| {
            asked.borrow_mut().push(w.id.clone());
            stamps
                .iter()
                .find(|(id, _)| *id == w.id)
                .and_then(|(_, n)| stamp(*n))
        });
    };
    look(&mut pool, t0, &[]);
    assert!(asked.borrow().is_empty(), "new workers are not asked about");
    // No earlier time to compare with: taken as progress.
    look(&mut pool, t0 + second, &[("flip", 1), ("hung", 1)]);
    assert_eq!(
        *asked.borrow(),
        ["flip", "hung"],
        "idle ones are not asked about"
    );
    for n in 2..=10 {
        look(
            &mut pool,
            t0 + n as u32 * second,
            &[("flip", n), ("hung", 1)],
        );
    }
    let at = t0 + 10 * second;
    let views = pool.workers(at);
    assert_eq!(
        (views[0].id.as_str(), views[0].stuck),
        ("flip", Some(false))
    );
    assert_eq!(views[0].unchanged_seconds, Some(0.0));
    assert_eq!((views[1].id.as_str(), views[1].stuck), ("hung", Some(true)));
    assert_eq!(views[1].unchanged_seconds, Some(9.0));
    assert_eq!(pool.summary(at).stuck, 1);
    // A reader that cannot tell (no modification time): only the text counts.
    look(&mut pool, t0 + 11 * second, &[]);
    assert_eq!(
        pool.workers(t0 + 11 * second)[1].unchanged_seconds,
        Some(10.0)
    );
}

#[test]
fn a_pool_not_seen_says_why_never_zero_workers() {
    let mut pool = Pool::new(&service(None));
    let now = Instant::now();
    pool.observe(&mut snapshot(&[("1", "idle")]), now);
    let gone = pool.unseen(Unseen {
        cause: Cause::PermissionDenied,
        detail: "open directory /run/w/scoreboard: Permission denied (os error 13)".into(),
    });
    assert_eq!(gone, ["1"]);
    assert_eq!(
        pool.status_line(now),
        "scoreboard unreadable: permission denied — run: scoreboardctl enable web.service"
    );
    assert!(!pool.status_line(now).contains("0 workers"));
    // Read again: seen, counted.
    pool.observe(&mut snapshot(&[]), now);
    assert_eq!(pool.status_line(now), "0 workers: none");
    assert_eq!(*pool.sight(), Sight::Seen);
}

#[test]
fn fingerprints_tell_statuses_apart() {
    assert_eq!(fingerprint(b""), 0xcbf2_9ce4_8422_2325);
    assert_ne!(fingerprint(b"busy GET /a"), fingerprint(b"busy GET /b"));
}

#[test]
fn states_come_from_the_first_word_or_a_json_pointer() {
    assert_eq!(derive_state(&StateRule::FirstWord, b"busy GET /"), "busy");
    assert_eq!(derive_state(&StateRule::FirstWord, b"  \t"), "empty");
    let rule = StateRule::JsonPointer("/state".into());
    assert_eq!(
        derive_state(&rule, br#"{"state":"busy","req":"/"}"#),
        "busy"
    );
    assert_eq!(derive_state(&rule, br#"{"state":3}"#), "3");
    assert_eq!(
        derive_state(&rule, br#"{"state":"other states"}"#),
        "other_states",
        "no state can be the folded label"
    );
    assert_eq!(derive_state(&rule, br#"{"state":" "}"#), "empty");
    assert_eq!(derive_state(&rule, br#"{"other":1}"#), "unknown");
    assert_eq!(derive_state(&rule, b"not json"), "unknown");
}

/// The counts and stuck workers kept up to date change by change are what counting
/// every worker afresh gives, through joins, changes, forgetting, leaving and time.
#[test]
fn incremental_counts_agree_with_counting_afresh() {
    let mut pool = Pool::new(&service(Some(Duration::from_secs(5))));
    let t0 = Instant::now();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let states = ["busy a", "busy b", "idle", "write x", "", "read y"];
    for round in 0..300u64 {
        let now = t0 + Duration::from_secs(round);
        let mut workers: Vec<(String, String)> = Vec::new();
        for id in 0..40 {
            if next(10) < 8 {
                let status = states[(next(states.len() as u64)) as usize];
                workers.push((format!("w{id}"), status.to_owned()));
            }
        }
        let refs: Vec<(&str, &str)> = workers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let mut snap = snapshot(&refs);
        // Some workers alive but unread this pass.
        for id in 40..40 + next(3) {
            snap.unread.push(format!("w{id}"));
        }
        pool.observe(&mut snap, now);
        let at = now + Duration::from_millis(next(8000));
        let reports = pool.workers(at);
        let mut expected: std::collections::BTreeMap<String, usize> = Default::default();
        let mut stuck = 0;
        for w in &reports {
            if w.stuck == Some(true) {
                stuck += 1;
            } else {
                *expected.entry(w.state.clone()).or_default() += 1;
            }
        }
        let summary = pool.summary(at);
        assert_eq!(summary.total, reports.len(), "round {round}");
        assert_eq!(summary.stuck, stuck, "round {round}");
        let counted: std::collections::BTreeMap<String, usize> =
            summary.counts.into_iter().collect();
        assert_eq!(counted, expected, "round {round}");
        let next_stuck = reports
            .iter()
            .filter(|w| w.stuck == Some(false) && w.state != "idle")
            .map(|w| {
                at + Duration::from_secs(5) - Duration::from_secs_f64(w.unchanged_seconds.unwrap())
            })
            .min();
        let diff = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => (a.max(b) - a.min(b)) < Duration::from_micros(1),
            (a, b) => a == b,
        };
        assert!(diff(pool.next_stuck_at(at), next_stuck), "round {round}");
    }
}

/// A dead worker's last words come from its file when it held a frame (the pool saw an
/// older status), else from what the pool saw; how long it stood only when the pool
/// saw that same status stand. At most 32 deaths are kept, statuses cut at 4 KiB.
#[test]
fn deaths_keep_the_last_words_bounded() {
    let mut pool = Pool::new(&service(Some(Duration::from_secs(60))));
    let t0 = Instant::now();
    pool.observe(
        &mut snapshot(&[("1", "busy GET /a"), ("2", "busy GET /b")]),
        t0,
    );
    let t1 = t0 + Duration::from_secs(5);
    let from_file = pool.last_words("1", Some(b"timeout GET /a"), t1).unwrap();
    assert_eq!(from_file.status, "timeout GET /a");
    assert_eq!(from_file.stood_seconds, None);
    let same = pool.last_words("2", Some(b"busy GET /b"), t1).unwrap();
    assert_eq!(same.stood_seconds, Some(5.0));
    let seen = pool.last_words("2", None, t1).unwrap();
    assert_eq!(seen.status, "busy GET /b");
    assert_eq!(pool.last_words("3", None, t1), None);
    // A status longer than what is kept is still compared whole.
    let long = "x".repeat(MAX_DEATH_STATUS + 10);
    pool.observe(
        &mut snapshot(&[("1", "busy GET /a"), ("2", "busy GET /b"), ("4", &long)]),
        t0,
    );
    let long_words = pool.last_words("4", Some(long.as_bytes()), t1).unwrap();
    assert_eq!(long_words.stood_seconds, Some(5.0));
    assert_eq!(long_words.status.len(), MAX_DEATH_STATUS);
    let huge = "é".repeat(5000);
    let cut = pool.last_words("3", Some(huge.as_bytes()), t1).unwrap();
    assert!(cut.status.len() <= MAX_DEATH_STATUS && huge.starts_with(&cut.status));

    pool.record_death("1", Some(from_file), t1);
    pool.record_death("3", None, t1);
    for n in 0..MAX_DEATHS_KEPT {
        pool.record_death(&format!("x{n}"), Some(cut.clone()), t1);
    }
    let deaths = pool.deaths(t1 + Duration::from_secs(2));
    assert_eq!(deaths.len(), MAX_DEATHS_KEPT);
    assert_eq!(deaths[0].id, "x0", "the oldest go first");
    assert_eq!(deaths[0].seconds_ago, 2.0);
    // Who may see them was decided on the directory they died in: they go with it.
    pool.clear();
    assert!(pool.deaths(t1).is_empty());
    let mut fresh = Pool::new(&service(None));
    fresh.record_death("3", None, t1);
    assert_eq!(fresh.deaths(t1)[0].status, None, "unknown is not empty");
}
