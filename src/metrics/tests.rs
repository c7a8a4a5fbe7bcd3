use super::*;

fn summary(counts: &[(&str, usize)], stuck: usize) -> Summary {
    Summary {
        total: counts.iter().map(|(_, n)| n).sum::<usize>() + stuck,
        counts: counts.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
        stuck,
    }
}

#[test]
fn families_are_named_and_labelled_by_unit() {
    let metrics = Metrics::new();
    metrics.sweep(
        "web.service",
        Duration::from_micros(300),
        &summary(&[("busy", 8), ("idle", 3)], 1),
        2,
        &[(scoreboard::SkipKind::Torn, 1)].into(),
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_500),
    );
    metrics.notify_error("web.service");
    let text = metrics.encode();
    for line in [
        "scoreboard_workers{unit=\"web.service\",state=\"busy\"} 8",
        "scoreboard_workers{unit=\"web.service\",state=\"idle\"} 3",
        "scoreboard_stuck_workers{unit=\"web.service\"} 1",
        "scoreboard_reaped_total{unit=\"web.service\"} 2",
        "scoreboard_read_errors_total{unit=\"web.service\",kind=\"torn\"} 1",
        "scoreboard_notify_errors_total{unit=\"web.service\"} 1",
        "scoreboard_sweep_duration_seconds_count{unit=\"web.service\"} 1",
        "scoreboard_pool_workers{unit=\"web.service\"} 12",
        "scoreboard_last_sweep_timestamp_seconds{unit=\"web.service\"} 1764000000.5",
        "# EOF",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[test]
fn the_prometheus_text_format_names_counters_by_their_samples() {
    let metrics = Metrics::new();
    metrics.sweep(
        "web.service",
        Duration::from_micros(300),
        &summary(&[("idle", 1)], 0),
        1,
        &Default::default(),
        SystemTime::now(),
    );
    let text = metrics.encode_prometheus_text();
    assert!(
        text.contains("# HELP scoreboard_reaped_total Dead workers"),
        "{text}"
    );
    assert!(text.contains("# TYPE scoreboard_reaped_total counter\nscoreboard_reaped_total{unit=\"web.service\"} 1\n"), "{text}");
    assert!(text.contains("# TYPE scoreboard_workers gauge"), "{text}");
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
}

#[test]
fn states_nobody_is_in_disappear() {
    let metrics = Metrics::new();
    metrics.set_counts("web.service", &summary(&[("busy", 1), ("idle", 1)], 0));
    metrics.set_counts("web.service", &summary(&[("idle", 2)], 0));
    let text = metrics.encode();
    assert!(!text.contains("state=\"busy\""), "{text}");
    metrics.forget("web.service");
    assert!(!metrics.encode().contains("web.service\",state"));
}

#[test]
fn label_values_are_escaped() {
    let metrics = Metrics::new();
    metrics.set_counts("web.service", &summary(&[("say \"hi\"\nthen \\ go", 1)], 0));
    let text = metrics.encode();
    // The label value is the printable state, `say "hi"\nthen \\ go` (a backslash
    // and an n, two backslashes); the exposition format escapes each backslash and
    // quote of it once.
    assert!(
        text.contains(r#"state="say \"hi\"\\nthen \\\\ go""#),
        "{text}"
    );
    assert_eq!(text.lines().filter(|l| l.contains("say")).count(), 1);
}

fn state_lines(text: &str, unit: &str) -> Vec<String> {
    let prefix = format!("scoreboard_workers{{unit=\"{unit}\",state=");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

fn sample_value(line: &str) -> usize {
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_huge_state_makes_a_short_label() {
    let metrics = Metrics::new();
    let huge = "x".repeat(1 << 20);
    metrics.set_counts("web.service", &summary(&[(&huge, 2), ("idle", 1)], 0));
    let text = metrics.encode();
    let lines = state_lines(&text, "web.service");
    assert_eq!(lines.len(), 2, "{lines:?}");
    let label = format!("{}…", "x".repeat(MAX_STATE_LABEL - 3));
    assert!(label.len() <= MAX_STATE_LABEL);
    assert!(
        lines.contains(&format!(
            "scoreboard_workers{{unit=\"web.service\",state=\"{label}\"}} 2"
        )),
        "{lines:?}"
    );
    assert!(text.len() < 4096, "{}", text.len());
}

#[test]
fn states_alike_in_their_first_bytes_add_up() {
    let a = format!("{}a", "x".repeat(100));
    let b = format!("{}b", "x".repeat(100));
    assert_eq!(
        state_series(&[(a, 2), (b, 3)])
            .into_iter()
            .collect::<Vec<_>>(),
        vec![(format!("{}…", "x".repeat(MAX_STATE_LABEL - 3)), 5)]
    );
}

#[test]
fn many_states_fold_into_other() {
    let metrics = Metrics::new();
    let states: Vec<(String, usize)> = (0..100)
        .map(|i| (format!("state{i:03}"), 100 - i))
        .collect();
    let workers: usize = states.iter().map(|(_, n)| n).sum();
    let counts: Vec<(&str, usize)> = states.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    metrics.set_counts("web.service", &summary(&counts, 0));
    metrics.set_counts("db.service", &summary(&[("idle", 1)], 0));
    let text = metrics.encode();
    let lines = state_lines(&text, "web.service");
    assert!(lines.len() <= MAX_STATES_PER_UNIT + 1, "{lines:?}");
    assert_eq!(
        lines.iter().map(|l| sample_value(l)).sum::<usize>(),
        workers
    );
    // The largest states keep their own series; the rest add up under OTHER_STATE.
    assert!(
        lines.contains(
            &"scoreboard_workers{unit=\"web.service\",state=\"state000\"} 100".to_owned()
        )
    );
    let other: usize = (MAX_STATES_PER_UNIT..100).map(|i| 100 - i).sum();
    assert!(
        lines.contains(&format!(
            "scoreboard_workers{{unit=\"web.service\",state=\"other states\"}} {other}"
        )),
        "{lines:?}"
    );
    // Another unit has its own allowance.
    assert_eq!(state_lines(&text, "db.service").len(), 1);

    // Fewer states later: the folded series go away.
    metrics.set_counts("web.service", &summary(&[("idle", 3)], 0));
    assert_eq!(
        state_lines(&metrics.encode(), "web.service"),
        vec!["scoreboard_workers{unit=\"web.service\",state=\"idle\"} 3".to_owned()]
    );
}

#[test]
fn a_state_named_other_is_never_the_folded_series() {
    let mut counts: Vec<(String, usize)> = vec![("other".to_owned(), 41)];
    counts.extend((1..MAX_STATES_PER_UNIT).map(|i| (format!("s{i:02}"), 10)));
    counts.push(("late".to_owned(), 1));
    counts.push(("later".to_owned(), 1));
    let series = state_series(&counts);
    assert_eq!(series.len(), MAX_STATES_PER_UNIT + 1);
    assert_eq!(series["other"], 41, "a real state keeps its own series");
    assert_eq!(series[OTHER_STATE], 2);
    assert_ne!(OTHER_STATE, "other");
}

fn unit_lines(text: &str, unit: &str) -> Vec<String> {
    let label = format!("unit=\"{unit}\"");
    text.lines()
        .filter(|line| !line.starts_with('#') && line.contains(&label))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_watched_unit_has_every_counter_at_zero_before_anything_happens() {
    let metrics = Metrics::new();
    metrics.watch("web.service");
    let text = metrics.encode_prometheus_text();
    let mut expected = vec![
        "scoreboard_pool_workers{unit=\"web.service\"} 0".to_owned(),
        "scoreboard_stuck_workers{unit=\"web.service\"} 0".to_owned(),
        "scoreboard_reaped_total{unit=\"web.service\"} 0".to_owned(),
        "scoreboard_notify_errors_total{unit=\"web.service\"} 0".to_owned(),
        "scoreboard_sweep_duration_seconds_count{unit=\"web.service\"} 0".to_owned(),
    ];
    for kind in scoreboard::SkipKind::ALL {
        expected.push(format!(
            "scoreboard_read_errors_total{{unit=\"web.service\",kind=\"{kind}\"}} 0"
        ));
    }
    for line in &expected {
        assert!(
            text.contains(&format!("{line}\n")),
            "{line} missing from\n{text}"
        );
    }
    // No state series and no sweep time until a pass says so.
    assert!(!text.contains("scoreboard_workers{"), "{text}");
    assert!(
        !text.contains("scoreboard_last_sweep_timestamp_seconds{"),
        "{text}"
    );

    // Watching again (a reload keeping the unit) keeps what was counted.
    metrics.notify_error("web.service");
    metrics.watch("web.service");
    assert!(
        metrics
            .encode()
            .contains("scoreboard_notify_errors_total{unit=\"web.service\"} 1\n")
    );
}

#[test]
fn an_unwatched_unit_leaves_no_series() {
    let metrics = Metrics::new();
    metrics.watch("web.service");
    metrics.watch("db.service");
    metrics.sweep(
        "web.service",
        Duration::from_micros(300),
        &summary(&[("busy", 2)], 1),
        1,
        &[(scoreboard::SkipKind::Torn, 1)].into(),
        SystemTime::now(),
    );
    metrics.unwatch("web.service");
    let text = metrics.encode();
    assert_eq!(unit_lines(&text, "web.service"), Vec::<String>::new());
    assert!(!unit_lines(&text, "db.service").is_empty());
    // Watched again later: from 0.
    metrics.watch("web.service");
    assert!(
        metrics
            .encode()
            .contains("scoreboard_reaped_total{unit=\"web.service\"} 0\n")
    );
}

#[test]
fn the_pool_is_every_state_plus_the_stuck_ones_even_when_all_are_stuck() {
    let metrics = Metrics::new();
    metrics.watch("web.service");
    metrics.set_counts("web.service", &summary(&[("busy", 2), ("idle", 1)], 1));
    let text = metrics.encode();
    assert!(
        text.contains("scoreboard_pool_workers{unit=\"web.service\"} 4\n"),
        "{text}"
    );
    let states: usize = state_lines(&text, "web.service")
        .iter()
        .map(|l| sample_value(l))
        .sum();
    assert_eq!(states + 1, 4);

    metrics.set_counts("web.service", &summary(&[], 3));
    let text = metrics.encode();
    assert_eq!(state_lines(&text, "web.service"), Vec::<String>::new());
    assert!(
        text.contains("scoreboard_stuck_workers{unit=\"web.service\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("scoreboard_pool_workers{unit=\"web.service\"} 3\n"),
        "{text}"
    );
}

#[test]
fn an_unreadable_directory_has_no_worker_counts_and_says_why() {
    let metrics = Metrics::new();
    metrics.watch("web.service");
    metrics.set_counts("web.service", &summary(&[("busy", 2)], 1));
    metrics.unseen(
        "web.service",
        Cause::PermissionDenied,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000),
    );
    let text = metrics.encode();
    assert_eq!(state_lines(&text, "web.service"), Vec::<String>::new());
    for line in [
        "scoreboard_pool_unseen{unit=\"web.service\",cause=\"permission_denied\"} 1\n",
        "scoreboard_pool_unseen{unit=\"web.service\",cause=\"missing\"} 0\n",
        "scoreboard_last_sweep_timestamp_seconds{unit=\"web.service\"} 1764000000.0\n",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    // Unknown is not 0: no worker count is exported for it.
    assert!(
        !text.contains("scoreboard_pool_workers{unit=\"web.service\"}"),
        "{text}"
    );
    assert!(
        !text.contains("scoreboard_stuck_workers{unit=\"web.service\"}"),
        "{text}"
    );
    // Read again: the cause clears, the counts are back.
    metrics.sweep(
        "web.service",
        Duration::from_millis(1),
        &summary(&[("idle", 1)], 0),
        0,
        &Default::default(),
        SystemTime::UNIX_EPOCH,
    );
    let text = metrics.encode();
    assert!(
        text.contains(
            "scoreboard_pool_unseen{unit=\"web.service\",cause=\"permission_denied\"} 0\n"
        )
    );
    assert!(
        text.contains("scoreboard_pool_workers{unit=\"web.service\"} 1\n"),
        "{text}"
    );
}

#[test]
fn the_textfile_is_written_whole_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scoreboard.prom");
    let metrics = Metrics::new();
    metrics.watch("web.service");
    metrics.write_textfile(&path).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        metrics.encode_prometheus_text()
    );
    remove_textfile(&path).unwrap();
    assert!(!path.exists());
    remove_textfile(&path).unwrap(); // already gone: fine
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left beside it"
    );
}
