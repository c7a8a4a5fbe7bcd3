//! The metrics and the fleet view: the shipped Prometheus rules and Grafana dashboard
//! checked by promtool and against what the agent really exports, and the agent binary
//! run as a process (no bus, a textfile) for what the series promise — every counter at
//! 0 from the start and across reloads, the pool total when every worker is stuck, the
//! last sweep's time, and no textfile left behind by a clean stop.
//!
//! promtool (Debian: `prometheus`) missing: the checks that need it say so and pass,
//! except under `CI=true`, where they fail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use rustix::process::Signal;
use scoreboard::{Scoreboard, SkipKind};
use scoreboard_testkit::{AgentDir, poll, wait_until};

const PROMETHEUS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/prometheus");

fn rules_path() -> PathBuf {
    Path::new(PROMETHEUS_DIR).join("scoreboard.rules.yml")
}

fn dashboard_path() -> PathBuf {
    Path::new(PROMETHEUS_DIR).join("scoreboard-dashboard.json")
}

/// Metric names the rules and the dashboard read that the agent does not export, and
/// whose they are.
const EXTERNAL: &[(&str, &str)] = &[
    ("up", "Prometheus, per scrape target"),
    (
        "node_systemd_unit_state",
        "node_exporter's systemd collector",
    ),
];

/// How long a condition may take before a test gives up: generous, this is no timing
/// test.
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------
// promtool

/// Whether `promtool` runs; if not, says that `check` is skipped and why, or fails
/// under CI=true.
fn promtool(check: &str) -> bool {
    match Command::new("promtool").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        result => {
            let why = match result {
                Ok(out) => format!("promtool --version failed: {}", out.status),
                Err(e) => format!("promtool not found: {e}"),
            };
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{why}; CI=true needs it (Debian: apt-get install prometheus)"
            );
            eprintln!("skipping {check}: {why} (Debian: apt-get install prometheus)");
            false
        }
    }
}

/// Runs promtool with `args` (and `stdin`), asserting success; its stdout and stderr.
fn run_promtool(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(PROMETHEUS_DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool ran a moment ago");
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_shipped_rules_pass_promtool_check_and_their_unit_tests() {
    if !promtool("promtool check rules") {
        return;
    }
    let out = run_promtool(&["check", "rules", "scoreboard.rules.yml"], None);
    println!("{out}");
    // Every rule found is one this test reads below: the extraction misses none.
    let found: usize = out
        .split("SUCCESS: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rule count in\n{out}"));
    assert_eq!(found, rule_exprs().len(), "{out}");
    assert!(!out.contains("WARNING"), "{out}");

    let mut tests: Vec<String> = std::fs::read_dir(Path::new(PROMETHEUS_DIR).join("tests"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".yml"))
        .map(|name| format!("tests/{name}"))
        .collect();
    tests.sort();
    assert!(!tests.is_empty(), "no rule tests in {PROMETHEUS_DIR}/tests");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let out = run_promtool(&args, None);
    println!("{out}");
    assert!(!out.contains("FAILED"), "{out}");
}

/// Every dashboard query is valid PromQL: put, with Grafana's variables given values,
/// into a rules file of its own for `promtool check rules`, which parses each.
#[test]
fn every_dashboard_query_parses() {
    let queries = dashboard_queries();
    if !promtool("checking the dashboard's queries") {
        return;
    }
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in queries.iter().enumerate() {
        let expr = query
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$instance", ".*")
            .replace("$unit", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard.rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = run_promtool(&["check", "rules", file.to_str().unwrap()], None);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{out}\n{rules}"
    );
}

// ---------------------------------------------------------------------------------
// What the rules and the dashboard read

/// Every `expr:` of the rules file, a folded (`>-`) one joined into one line.
fn rule_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(rules_path()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let value = value.trim();
        if value.starts_with('>') || value.starts_with('|') {
            let body: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            exprs.push(body.join(" ").trim().to_owned());
        } else {
            exprs.push(value.trim_matches('\'').to_owned());
        }
    }
    exprs
}

/// The names the rules file records.
fn recorded_names() -> BTreeSet<String> {
    std::fs::read_to_string(rules_path())
        .unwrap()
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("- record:"))
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Every PromQL query of the dashboard: its panels' targets and its variables' queries
/// (`label_values(metric{…}, label)` counts as its selector).
fn dashboard_queries() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard_path()).unwrap())
            .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    fn panels(value: &serde_json::Value, queries: &mut Vec<String>) {
        for panel in value.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                queries.push(
                    target["expr"]
                        .as_str()
                        .unwrap_or_else(|| panic!("a target without expr: {target}"))
                        .to_owned(),
                );
            }
            panels(&panel["panels"], queries);
        }
    }
    panels(&dashboard["panels"], &mut queries);
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .unwrap();
        let selector = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.rsplit_once(','))
            .map_or(query, |(selector, _label)| selector);
        queries.push(selector.to_owned());
    }
    assert!(queries.len() > 5, "{queries:?}");
    queries
}

/// The metric names a PromQL expression reads: identifiers outside strings, label
/// matchers, ranges and grouping lists that are neither functions, keywords nor
/// aggregation operators.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const WORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                i += 1;
                while i < chars.len() && chars[i] != close {
                    if matches!(chars[i], '"' | '\'' | '`') {
                        let quote = chars[i];
                        i += 1;
                        while i < chars.len() && chars[i] != quote {
                            i += if chars[i] == '\\' { 2 } else { 1 };
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_list => {
                skip_list = false;
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
            }
            c if c.is_ascii_digit() || c == '.' => {
                // A number (1e-3, 0x1f, 5m): digits, letters and dots.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                let lower = word.to_ascii_lowercase();
                if GROUPING.contains(&lower.as_str()) {
                    skip_list = true;
                } else if WORDS.contains(&lower.as_str()) || next == Some(&'(') {
                    // An operator, or a function called.
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = |expr| metric_names(expr).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum by (unit, state) (rate(a_total{x="b{c}",y=~"$d"}[$__rate_interval])) / on (unit) group_left b > 0.5"#
        ),
        ["a_total", "b"]
    );
    assert_eq!(
        names(
            r#"label_replace(up == 0, "host", "$1", "instance", "(.*?)(:[0-9]+)?") and on (host) unit:x:ratio >= 1e-3"#
        ),
        ["unit:x:ratio", "up"]
    );
    assert_eq!(names("time() - m offset 5m"), ["m"]);
    assert_eq!(
        names("histogram_quantile(0.99, sum without (le) (rate(h_bucket[5m])))"),
        ["h_bucket"]
    );
}

/// The sample names of an exposition in the text format (`x_bucket`, `x_total`, …).
fn exposed_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            line.split(['{', ' '])
                .next()
                .expect("a sample line has a name")
                .to_owned()
        })
        .collect()
}

/// The families of an exposition, as `# TYPE` lines name them.
fn exposed_families(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| rest.split(' ').next().unwrap().to_owned())
        .collect()
}

/// The rules and the dashboard read only what the agent exports (from a real
/// exposition: the binary's textfile with a worker), what the rules record and the
/// listed outside names; and the dashboard shows every family the agent exports.
#[test]
fn the_rules_and_the_dashboard_read_only_exported_names() {
    let agent = Agent::start(&[("web", "")]);
    let mut worker = agent.worker("web", "w1");
    worker.update("busy").unwrap();
    let exposition = agent.wait_for(r#"scoreboard_workers{unit="web.service",state="busy"} 1"#);
    let exported = exposed_names(&exposition);
    let recorded = recorded_names();
    let external: BTreeSet<String> = EXTERNAL.iter().map(|(n, _)| n.to_string()).collect();

    let mut unknown = Vec::new();
    let mut read = BTreeSet::new();
    let rules = rule_exprs();
    let dashboard = dashboard_queries();
    for (source, exprs) in [("rules", &rules), ("dashboard", &dashboard)] {
        for expr in exprs.iter() {
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{source}: no metric in {expr}");
            for name in names {
                if !(exported.contains(&name)
                    || recorded.contains(&name)
                    || external.contains(&name))
                {
                    unknown.push(format!("{source}: {name} in {expr}"));
                }
                read.insert((source, name));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "names the agent does not export:\n{}\nexported: {exported:?}",
        unknown.join("\n")
    );
    // Both outside names are really read (the list is not stale), and every family the
    // agent exports is on the dashboard.
    for (name, whose) in EXTERNAL {
        assert!(
            read.iter().any(|(_, n)| n == name),
            "{name} ({whose}) is listed as external but not read"
        );
    }
    for family in exposed_families(&exposition) {
        assert!(
            read.iter()
                .any(|(source, n)| *source == "dashboard" && n.starts_with(&family)),
            "the dashboard does not show {family}"
        );
    }
    agent.stop();
}

// ---------------------------------------------------------------------------------
// The agent binary

/// `scoreboard-agent` running in a temporary directory: `agent.toml` (no bus, a 100 ms
/// interval, a textfile), `services.d/`, one scoreboard directory per service.
struct Agent {
    process: scoreboard_testkit::Agent,
    dir: AgentDir,
}

impl Agent {
    /// Services as (name, extra TOML lines); a name starting with `absent-` gets no
    /// directory.
    fn start(services: &[(&str, &str)]) -> Agent {
        let dir = AgentDir::new("interval = \"100ms\"\nbus = \"none\"\n");
        dir.append(&format!(
            "\n[metrics]\ntextfile = \"{}\"\n",
            dir.path("metrics.prom").display()
        ));
        for (name, extra) in services {
            add_service(&dir, name, extra);
        }
        let process = scoreboard_testkit::Agent::spawn_logged(
            dir.agent_command(Path::new(env!("CARGO_BIN_EXE_scoreboard-agent")))
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            &dir.path("agent.log"),
        );
        Agent { process, dir }
    }

    fn path(&self) -> &Path {
        self.dir.root()
    }

    fn textfile_path(&self) -> PathBuf {
        self.path().join("metrics.prom")
    }

    /// The textfile as it is now ("" when there is none).
    fn textfile(&self) -> String {
        std::fs::read_to_string(self.textfile_path()).unwrap_or_default()
    }

    /// A worker of service `name`, in this process.
    fn worker(&self, name: &str, id: &'static str) -> Scoreboard {
        Scoreboard::builder(self.path().join(name))
            .worker_id(move || id.to_string())
            .open()
            .unwrap()
    }

    /// The first textfile that `holds`, which is returned; else a failure with the
    /// last one and the agent's log.
    fn wait_until_textfile(&self, what: &str, holds: impl Fn(&str) -> bool) -> String {
        poll(PATIENCE, || {
            Some(self.textfile()).filter(|text| holds(text))
        })
        .unwrap_or_else(|| {
            panic!(
                "waiting for {what}; the textfile:\n{}\nthe agent's log:\n{}",
                self.textfile(),
                self.log()
            )
        })
    }

    /// The first textfile with the sample line `line`.
    fn wait_for(&self, line: &str) -> String {
        self.wait_until_textfile(line, |text| has_line(text, line))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("agent.log")).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }

    /// Waits for the agent to exit; its exit status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let log = self.log();
        wait_until(
            PATIENCE,
            format!("the agent to exit; its log:\n{log}"),
            || !self.process.running(),
        );
        self.process.wait()
    }

    /// SIGTERM, and a clean exit that leaves no textfile.
    fn stop(mut self) {
        self.signal(Signal::TERM);
        let status = self.wait_exit();
        assert!(status.success(), "{status}; its log:\n{}", self.log());
        assert!(!self.textfile_path().exists(), "{}", self.textfile());
    }
}

fn add_service(dir: &AgentDir, name: &str, extra: &str) {
    if !name.starts_with("absent-") {
        std::fs::create_dir_all(dir.path(name)).unwrap();
    }
    dir.service(
        name,
        &dir.path(name),
        &format!("notify = \"none\"\n{extra}\n"),
    );
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

/// The value of the sample `series` (name and labels as written), if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

/// The sample lines of `unit`.
fn unit_samples(text: &str, unit: &str) -> Vec<String> {
    let label = format!("unit=\"{unit}\"");
    text.lines()
        .filter(|line| !line.starts_with('#') && line.contains(&label))
        .map(str::to_owned)
        .collect()
}

/// Every series a watched unit has before anything happened to it: the counters at 0
/// (read errors for each kind the client crate reports), the pool and stuck gauges at
/// 0, an empty histogram.
fn zero_series(unit: &str) -> Vec<String> {
    let mut lines: Vec<String> = [
        "scoreboard_pool_workers",
        "scoreboard_stuck_workers",
        "scoreboard_reaped_total",
        "scoreboard_notify_errors_total",
        "scoreboard_sweep_duration_seconds_count",
    ]
    .iter()
    .map(|name| format!("{name}{{unit=\"{unit}\"}} 0"))
    .collect();
    for kind in SkipKind::ALL {
        lines.push(format!(
            "scoreboard_read_errors_total{{unit=\"{unit}\",kind=\"{kind}\"}} 0"
        ));
    }
    for action in scoreboard_agent::metrics::ACTIONS {
        lines.push(format!(
            "scoreboard_actions_total{{unit=\"{unit}\",action=\"{action}\"}} 0"
        ));
    }
    lines
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn every_counter_is_at_zero_from_the_start_and_follows_reloads() {
    let started = unix_now();
    // A running service with no worker yet, and one whose directory does not exist
    // (the service is stopped).
    let agent = Agent::start(&[("web", ""), ("absent-batch", "")]);
    let ready = |text: &str| {
        ["web.service", "absent-batch.service"].iter().all(|unit| {
            sample(
                text,
                &format!("scoreboard_last_sweep_timestamp_seconds{{unit=\"{unit}\"}}"),
            )
            .is_some()
        })
    };
    let text = agent.wait_until_textfile("a sweep of both units", ready);
    for unit in ["web.service", "absent-batch.service"] {
        for line in zero_series(unit) {
            // Counters and gauges at 0 before a pass has found anything; sweeps keep
            // the count of the histogram going (an absent directory is no sweep).
            if line.starts_with("scoreboard_sweep_duration_seconds_count") && unit == "web.service"
            {
                continue;
            }
            // A directory not there: its workers are unknown, never a 0 not seen.
            let counts = ["scoreboard_pool_workers", "scoreboard_stuck_workers"];
            if unit == "absent-batch.service" && counts.iter().any(|c| line.starts_with(c)) {
                assert!(!text.contains(&line[..line.len() - 2]), "{line} in\n{text}");
                continue;
            }
            assert!(has_line(&text, &line), "{line} missing from\n{text}");
        }
        let missing = if unit == "web.service" { 0 } else { 1 };
        let line = format!("scoreboard_pool_unseen{{unit=\"{unit}\",cause=\"missing\"}} {missing}");
        assert!(has_line(&text, &line), "{line} missing from\n{text}");
        // The last pass (a sweep, or finding no directory): a wall-clock time.
        let swept = sample(
            &text,
            &format!("scoreboard_last_sweep_timestamp_seconds{{unit=\"{unit}\"}}"),
        )
        .unwrap();
        assert!(
            swept >= started - 1.0 && swept <= unix_now() + 1.0,
            "{unit}: {swept} not between {started} and now"
        );
    }
    assert!(!text.contains("scoreboard_workers{"), "{text}");

    // The last sweep goes on: later passes renew it.
    let first = sample(
        &text,
        r#"scoreboard_last_sweep_timestamp_seconds{unit="web.service"}"#,
    )
    .unwrap();
    agent.wait_until_textfile("a later sweep", |text| {
        sample(
            text,
            r#"scoreboard_last_sweep_timestamp_seconds{unit="web.service"}"#,
        )
        .is_some_and(|t| t > first)
    });

    // A unit added by a reload has its series at 0 at once.
    add_service(&agent.dir, "jobs", "");
    agent.signal(Signal::HUP);
    let text = agent.wait_for(r#"scoreboard_reaped_total{unit="jobs.service"} 0"#);
    for line in zero_series("jobs.service") {
        if !line.starts_with("scoreboard_sweep_duration_seconds_count") {
            assert!(has_line(&text, &line), "{line} missing from\n{text}");
        }
    }

    // A unit dropped by a reload leaves no series; the others stay.
    std::fs::remove_file(agent.path().join("services.d/web.toml")).unwrap();
    agent.signal(Signal::HUP);
    let text = agent.wait_until_textfile("web.service gone", |text| {
        unit_samples(text, "web.service").is_empty()
    });
    assert!(!unit_samples(&text, "jobs.service").is_empty(), "{text}");
    assert!(
        !unit_samples(&text, "absent-batch.service").is_empty(),
        "{text}"
    );
    agent.stop();
}

#[test]
fn a_pool_whose_every_worker_is_stuck_still_has_its_total() {
    let agent = Agent::start(&[("web", "stuck_after = \"1s\"")]);
    let mut workers = [agent.worker("web", "w1"), agent.worker("web", "w2")];
    for worker in &mut workers {
        worker.update("busy").unwrap();
    }
    // At first both are busy...
    let text = agent.wait_for(r#"scoreboard_workers{unit="web.service",state="busy"} 2"#);
    assert_eq!(
        sample(&text, r#"scoreboard_pool_workers{unit="web.service"}"#),
        Some(2.0),
        "{text}"
    );
    // ... then both stuck: no state series is left, the pool total still says 2, and
    // the stuck ones add up to it.
    let text = agent.wait_for(r#"scoreboard_stuck_workers{unit="web.service"} 2"#);
    assert_eq!(
        sample(&text, r#"scoreboard_pool_workers{unit="web.service"}"#),
        Some(2.0),
        "{text}"
    );
    assert!(
        !text.contains(r#"scoreboard_workers{unit="web.service""#),
        "{text}"
    );
    // One moves on: states and stuck add up to the pool again.
    workers[0].update("idle").unwrap();
    let text = agent.wait_for(r#"scoreboard_workers{unit="web.service",state="idle"} 1"#);
    let states: f64 = unit_samples(&text, "web.service")
        .iter()
        .filter(|line| line.starts_with("scoreboard_workers{"))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    let stuck = sample(&text, r#"scoreboard_stuck_workers{unit="web.service"}"#).unwrap();
    let pool = sample(&text, r#"scoreboard_pool_workers{unit="web.service"}"#).unwrap();
    assert_eq!((states + stuck, pool), (2.0, 2.0), "{text}");
    agent.stop();
}

#[test]
fn a_clean_stop_removes_the_textfile_and_a_crash_leaves_it_to_age() {
    let mut agent = Agent::start(&[("web", "")]);
    let mut worker = agent.worker("web", "w1");
    worker.update("idle").unwrap();
    agent.wait_for(r#"scoreboard_workers{unit="web.service",state="idle"} 1"#);
    agent.signal(Signal::TERM);
    let status = agent.wait_exit();
    assert!(status.success(), "{status}; its log:\n{}", agent.log());
    assert!(
        !agent.textfile_path().exists(),
        "the textfile outlived a clean stop:\n{}",
        agent.textfile()
    );
    // Nothing of it left beside it either (no temporary file).
    let left: Vec<String> = std::fs::read_dir(agent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("metrics.prom"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Killed, the agent cannot clean up: the textfile stays, and its last sweep time
    // stops while the wall clock goes on — what ScoreboardStale alerts on.
    let mut agent = Agent::start(&[("web", "")]);
    let mut worker = agent.worker("web", "w1");
    worker.update("idle").unwrap();
    agent.wait_for(r#"scoreboard_workers{unit="web.service",state="idle"} 1"#);
    agent.signal(Signal::KILL);
    agent.wait_exit();
    let killed = unix_now();
    let text = agent.textfile();
    let swept = sample(
        &text,
        r#"scoreboard_last_sweep_timestamp_seconds{unit="web.service"}"#,
    )
    .unwrap_or_else(|| panic!("no last sweep in the textfile a crash left:\n{text}"));
    assert!(swept <= killed, "{swept} > {killed}");
}

/// What the binary writes passes `promtool check metrics` (names, help, types, units)
/// with every new family in it.
#[test]
fn the_exposition_passes_promtool_check_metrics() {
    let agent = Agent::start(&[("web", "stuck_after = \"1s\""), ("absent-batch", "")]);
    let mut worker = agent.worker("web", "w1");
    worker.update("busy").unwrap();
    let text = agent.wait_for(r#"scoreboard_workers{unit="web.service",state="busy"} 1"#);
    for family in [
        "scoreboard_workers",
        "scoreboard_pool_workers",
        "scoreboard_stuck_workers",
        "scoreboard_reaped_total",
        "scoreboard_read_errors_total",
        "scoreboard_notify_errors_total",
        "scoreboard_sweep_duration_seconds",
        "scoreboard_last_sweep_timestamp_seconds",
    ] {
        assert!(
            exposed_families(&text).contains(family),
            "{family} missing from\n{text}"
        );
    }
    agent.stop();
    if !promtool("promtool check metrics") {
        return;
    }
    let out = run_promtool(&["check", "metrics"], Some(&text));
    assert!(out.is_empty(), "promtool check metrics:\n{out}\n{text}");
}
