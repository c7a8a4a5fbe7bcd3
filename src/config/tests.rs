use std::path::{Path, PathBuf};
use std::time::Duration;

use super::directory::SYSTEM_DIRECTORIES;
use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_directory_the_unit_makes_read_only_is_refused_with_the_fix() {
    let paths = ["/run", "-/var/lib/x", "+/srv/y"].map(String::from);
    let protection = Protection::new("strict", &paths);
    assert_eq!(
        protection.read_write_paths,
        [
            Path::new("/run"),
            Path::new("/var/lib/x"),
            Path::new("/srv/y")
        ]
    );
    assert_eq!(
        protection.refuses("web.service", Path::new("/run/web/scoreboard")),
        None
    );
    assert_eq!(
        protection.refuses("web.service", Path::new("/srv/y/scoreboard")),
        None
    );
    let refused = protection
        .refuses("ok.service", Path::new("/srv/ok/scoreboard"))
        .unwrap();
    assert!(
        refused.contains("ReadWritePaths=/srv/ok/scoreboard"),
        "{refused}"
    );
    let open = Protection::new("no", &[]);
    assert_eq!(
        open.refuses("ok.service", Path::new("/srv/ok/scoreboard")),
        None
    );
}

#[test]
fn defaults_fill_everything_but_the_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = write(tmp.path(), "agent.toml", "");
    write(tmp.path(), "services.d/web.toml", "unit = \"web\"\n");
    let config = Config::load(&agent).unwrap();
    assert_eq!(config.interval, Duration::from_secs(1));
    assert_eq!(config.bus, Bus::System);
    let web = &config.services[0];
    assert_eq!(web.unit, "web.service");
    assert_eq!(web.directory, Path::new("/run/web/scoreboard"));
    assert_eq!(web.state, StateRule::FirstWord);
    assert_eq!(web.idle_states, ["idle"]);
    assert_eq!(web.stuck_after, None);
    assert_eq!(web.summary, DEFAULT_SUMMARY);
    assert_eq!(web.notify, NotifyMode::MainPid);
    assert!(std::ptr::eq(config.service("web").unwrap(), web));
}

#[test]
fn every_key_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = write(
        tmp.path(),
        "agent.toml",
        "interval = \"250ms\"\nbus = \"session\"\nnotify_socket = \"/tmp/n\"\n\n[metrics]\nlisten = \"127.0.0.1:9464\"\ntextfile = \"/tmp/sb.prom\"\n",
    );
    write(
        tmp.path(),
        "services.d/jobs.toml",
        r#"unit = "jobs.service"
directory = "/srv/jobs/sb"
state = "json:/state"
idle_states = ["idle", "waiting"]
stuck_after = "5m"
summary = "{unit}: {total} ({stuck} stuck)"
notify = "self"
"#,
    );
    let config = Config::load(&agent).unwrap();
    assert_eq!(config.interval, Duration::from_millis(250));
    assert_eq!(config.bus, Bus::Session);
    assert_eq!(config.notify_socket.as_deref(), Some(Path::new("/tmp/n")));
    assert_eq!(
        config.metrics.listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    assert_eq!(
        config.metrics.textfile.as_deref(),
        Some(Path::new("/tmp/sb.prom"))
    );
    let jobs = &config.services[0];
    assert_eq!(jobs.state, StateRule::JsonPointer("/state".into()));
    assert_eq!(jobs.idle_states, ["idle", "waiting"]);
    assert_eq!(jobs.stuck_after, Some(Duration::from_secs(300)));
    assert_eq!(jobs.notify, NotifyMode::Itself);
}

fn error_of(agent: &str, service: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "agent.toml", agent);
    write(tmp.path(), "services.d/web.toml", service);
    let message = format!("{:#}", Config::load(&path).unwrap_err());
    message.replace(&tmp.path().display().to_string(), "DIR")
}

#[test]
fn errors_name_the_file_the_line_and_the_key() {
    let message = error_of(
        "interval = \"1s\"\n",
        "unit = \"web\"\nstuck_after = \"5 parsecs\"\n",
    );
    assert!(
        message.starts_with("DIR/services.d/web.toml: "),
        "{message}"
    );
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("stuck_after"), "{message}");
    assert!(message.contains("invalid duration"), "{message}");

    let message = error_of("intervall = \"1s\"\n", "unit = \"web\"\n");
    assert!(
        message.starts_with("DIR/agent.toml: ") && message.contains("line 1"),
        "{message}"
    );
    assert!(message.contains("unknown field `intervall`"), "{message}");
}

#[test]
fn bad_values_are_refused_with_the_reason() {
    for (service, expected) in [
        (
            "unit = \"web\"\nstate = \"xml\"\n",
            "use \"first-word\" or \"json:/pointer\"",
        ),
        (
            "unit = \"web\"\nsummary = \"{totl}\"\n",
            "unknown placeholder {totl}",
        ),
        (
            "unit = \"web\"\nnotify = \"pid\"\n",
            "unknown variant `pid`",
        ),
        ("unit = \"../etc\"\n", "invalid unit name"),
        ("unit = \"web.socket\"\n", "is not a service"),
        (
            "unit = \"web\"\ndirectory = \"run/web\"\n",
            "must be an absolute path",
        ),
        ("directory = \"/run/x\"\n", "missing field `unit`"),
    ] {
        let message = error_of("", service);
        assert!(message.contains(expected), "{service:?}: {message}");
    }
    let message = error_of("interval = \"0s\"\n", "unit = \"web\"\n");
    assert!(message.contains("out of range"), "{message}");
}

/// Loads a configuration; `Ok` holds the interval and the one service's stuck_after.
fn load(agent: &str, service: &str) -> Result<(Duration, Option<Duration>), String> {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "agent.toml", agent);
    write(tmp.path(), "services.d/web.toml", service);
    Config::load(&path)
        .map(|c| (c.interval, c.services[0].stuck_after))
        .map_err(|e| format!("{e:#}").replace(&tmp.path().display().to_string(), "DIR"))
}

/// Loads a configuration with one service; its actions.
fn actions(agent: &str, service: &str) -> Result<Actions, String> {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "agent.toml", agent);
    write(tmp.path(), "services.d/web.toml", service);
    Config::load(&path)
        .map(|c| c.services[0].health_actions.clone())
        .map_err(|e| format!("{e:#}").replace(&tmp.path().display().to_string(), "DIR"))
}

#[test]
fn health_actions_are_off_unless_set_and_checked_when_set() {
    let off = actions("", "unit = \"web\"\n").unwrap();
    assert_eq!(off, Actions::default());
    assert!(!off.enabled());

    let on = actions(
        "",
        "unit = \"web\"\nstuck_after = \"1m\"\nwedged_after = \"2m\"\n\
         kill_stuck_after = \"10m\"\nkill_signal = \"QUIT\"\nkill_grace = \"30s\"\n\
         actions = \"report\"\n",
    )
    .unwrap();
    assert_eq!(
        on,
        Actions {
            wedged_after: Some(Duration::from_secs(120)),
            kill_stuck_after: Some(Duration::from_secs(600)),
            kill_signal: KillSignal::Quit,
            kill_grace: Duration::from_secs(30),
            mode: ActionMode::Report,
        }
    );

    for (service, expected) in [
        ("kill_stuck_after = \"10m\"\n", "set stuck_after too"),
        (
            "stuck_after = \"5m\"\nkill_stuck_after = \"1m\"\n",
            "is shorter than stuck_after",
        ),
        ("kill_signal = \"STOP\"\n", "kill_signal"),
        ("kill_grace = \"0s\"\n", "kill_grace"),
        ("actions = \"maybe\"\n", "actions"),
        ("wedged_after = \"1ms\"\n", "wedged_after"),
    ] {
        let message = actions("", &format!("unit = \"web\"\n{service}")).unwrap_err();
        assert!(message.contains(expected), "{service}: {message}");
    }
    let message = actions(
        "bus = \"none\"\n",
        "unit = \"web\"\nnotify = \"none\"\nwedged_after = \"1m\"\n",
    )
    .unwrap_err();
    assert!(message.contains("health actions need the bus"), "{message}");
}

#[test]
fn interval_is_bounded_from_10ms_to_an_hour() {
    let service = "unit = \"web\"\n";
    for (text, expected) in [
        ("10ms", Duration::from_millis(10)),
        ("250ms", Duration::from_millis(250)),
        ("1h", Duration::from_secs(3600)),
    ] {
        let agent = format!("interval = \"{text}\"\n");
        assert_eq!(load(&agent, service).unwrap().0, expected, "{text}");
    }
    for text in ["0s", "9ms", "1h 1ms", "61m", "500000000000y"] {
        let agent = format!("bus = \"session\"\ninterval = \"{text}\"\n");
        let message = load(&agent, service).unwrap_err();
        assert!(message.starts_with("DIR/agent.toml: "), "{message}");
        assert!(
            message.contains("line 2") && message.contains("interval"),
            "{message}"
        );
        assert!(
            message.contains(&format!("duration \"{text}\" is out of range"))
                && message.contains("from 10ms to 1h"),
            "{message}"
        );
    }
}

#[test]
fn stuck_after_is_bounded_from_a_second_to_30_days() {
    for (text, expected) in [
        ("1s", Duration::from_secs(1)),
        ("5m", Duration::from_secs(300)),
        ("30days", Duration::from_secs(30 * 86_400)),
    ] {
        let service = format!("unit = \"web\"\nstuck_after = \"{text}\"\n");
        assert_eq!(load("", &service).unwrap().1, Some(expected), "{text}");
    }
    for text in ["0s", "999ms", "31days", "500000000000y"] {
        let service = format!("unit = \"web\"\nstuck_after = \"{text}\"\n");
        let message = load("", &service).unwrap_err();
        assert!(
            message.starts_with("DIR/services.d/web.toml: ")
                && message.contains("line 2")
                && message.contains("stuck_after"),
            "{message}"
        );
        assert!(
            message.contains("is out of range") && message.contains("from 1s to 30days"),
            "{message}"
        );
    }
    // A duration humantime cannot hold at all is a parse error, still located.
    let service = "unit = \"web\"\nstuck_after = \"99999999999999999999999y\"\n";
    let message = load("", service).unwrap_err();
    assert!(
        message.contains("line 2") && message.contains("invalid duration"),
        "{message}"
    );
}

#[test]
fn a_directory_must_be_absolute_and_in_normal_form() {
    for (text, normal) in [
        ("/run/web/", "/run/web"),
        ("/run//web", "/run/web"),
        ("//run/web", "/run/web"),
        ("/run/./web", "/run/web"),
        ("/run/web/.", "/run/web"),
        ("/run/web/../jobs", "/run/jobs"),
        ("/run/web/..", "/run"),
        ("/../run/web", "/run/web"),
    ] {
        let message = check_directory(text).unwrap_err();
        assert!(
            message.contains("not in normal form")
                && message.contains(&format!("write {normal:?}")),
            "{text}: {message}"
        );
    }
    for text in ["run/web", "", "./run/web", "~/sb"] {
        let message = check_directory(text).unwrap_err();
        assert!(message.contains("must be an absolute path"), "{message}");
    }
    // Through the file: the file, the line and the key.
    let message = load("", "unit = \"web\"\ndirectory = \"/run/web/../etc\"\n").unwrap_err();
    assert!(
        message.starts_with("DIR/services.d/web.toml: ")
            && message.contains("line 2")
            && message.contains("directory")
            && message.contains("write \"/run/etc\""),
        "{message}"
    );
}

#[test]
fn system_directories_and_what_is_inside_some_are_refused() {
    for text in SYSTEM_DIRECTORIES.into_iter().chain(["/lib32", "/libx32"]) {
        let message = check_directory(text).unwrap_err();
        assert!(
            message.contains("is a system directory"),
            "{text}: {message}"
        );
    }
    for (text, tree) in [
        ("/etc/web", "/etc"),
        ("/etc/scoreboard/services.d", "/etc"),
        ("/usr/lib/web", "/usr"),
        ("/bin/web", "/bin"),
        ("/sbin/web", "/sbin"),
        ("/lib/web", "/lib"),
        ("/lib64/web", "/lib64"),
        ("/lib32/web", "/lib32"),
        ("/boot/web", "/boot"),
        ("/dev/shm/web", "/dev"),
        ("/proc/1/fd", "/proc"),
        ("/sys/fs/cgroup", "/sys"),
        ("/run/systemd/web", "/run/systemd"),
        ("/run/user/1000/web", "/run/user"),
    ] {
        let message = check_directory(text).unwrap_err();
        assert!(
            message.contains(&format!("is inside {tree},")),
            "{text}: {message}"
        );
    }
    for text in [
        "/run/web",
        "/run/web/scoreboard",
        "/run/users/web",
        "/run/systemd-web/sb",
        "/var/lib/web/scoreboard",
        "/var/run-web",
        "/var/log/web/sb",
        "/srv/web",
        "/opt/web/sb",
        "/home/web/sb",
        "/root/sb",
        "/tmp/sb",
        "/var/tmp/web/sb",
        "/etcetera/sb",
        "/usrlocal/sb",
        "/run/web\\x2dpool/scoreboard",
    ] {
        assert_eq!(check_directory(text), Ok(()), "{text}");
    }
    let message = load("", "unit = \"web\"\ndirectory = \"/etc\"\n").unwrap_err();
    assert!(
        message.contains("line 2") && message.contains("is a system directory"),
        "{message}"
    );
}

#[test]
fn a_default_directory_is_checked_too() {
    for unit in ["systemd", "user"] {
        let message = load("", &format!("unit = \"{unit}\"\n")).unwrap_err();
        assert!(
            message.starts_with("DIR/services.d/web.toml: ")
                && message.contains(&format!("is inside /run/{unit},"))
                && message.contains(&format!("the default for {unit}.service")),
            "{message}"
        );
    }
}

#[test]
fn services_may_not_share_a_directory_or_nest_one_in_another() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = write(tmp.path(), "agent.toml", "");
    let service = |file: &str, unit: &str, directory: &str| {
        write(
            tmp.path(),
            &format!("services.d/{file}"),
            &format!("unit = \"{unit}\"\ndirectory = \"{directory}\"\n"),
        )
    };
    let a = service("a.toml", "a", "/run/a/scoreboard");
    let b = service("b.toml", "b", "/run/a/scoreboard");
    let message = format!("{:#}", Config::load(&agent).unwrap_err());
    assert!(
        message.starts_with(&format!("{}: ", b.display()))
            && message.contains(&a.display().to_string())
            && message.contains("is also /run/a/scoreboard"),
        "{message}"
    );

    service("b.toml", "b", "/run/a/scoreboard/b");
    let message = format!("{:#}", Config::load(&agent).unwrap_err());
    assert!(
        message.contains(&b.display().to_string())
            && message.contains(&a.display().to_string())
            && message.contains("/run/a/scoreboard/b of b.service is inside /run/a/scoreboard"),
        "{message}"
    );

    // The outer one in the later file: still found, naming both.
    service("a.toml", "a", "/run/a/scoreboard/b/c");
    service("b.toml", "b", "/run/a/scoreboard");
    let message = format!("{:#}", Config::load(&agent).unwrap_err());
    assert!(
        message.starts_with(&format!("{}: ", a.display()))
            && message.contains(&b.display().to_string()),
        "{message}"
    );

    // Neighbours, even with a common prefix of text, are fine.
    service("a.toml", "a", "/run/a/scoreboard");
    service("b.toml", "b", "/run/a/scoreboard-b");
    service("c.toml", "c", "/run/a-c/scoreboard");
    service("d.toml", "d", "/run/a/other");
    assert_eq!(Config::load(&agent).unwrap().services.len(), 4);
}

#[test]
fn main_pid_mode_needs_a_bus() {
    let message = error_of("bus = \"none\"\n", "unit = \"web\"\n");
    assert!(message.contains("needs the bus"), "{message}");
    let tmp = tempfile::tempdir().unwrap();
    let agent = write(tmp.path(), "agent.toml", "bus = \"none\"\n");
    write(
        tmp.path(),
        "services.d/web.toml",
        "unit = \"web\"\nnotify = \"self\"\n",
    );
    assert_eq!(Config::load(&agent).unwrap().bus, Bus::None);
}

#[test]
fn files_in_services_d_not_read_are_listed_as_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = write(tmp.path(), "agent.toml", "");
    write(tmp.path(), "services.d/web.toml", "unit = \"web\"\n");
    // Not *.toml: never read, however broken.
    write(tmp.path(), "services.d/broken.conf", "unit = ");
    write(tmp.path(), "services.d/web.toml.dpkg-old", "unit = ");
    std::fs::create_dir(tmp.path().join("services.d/old")).unwrap();
    let config = Config::load(&agent).unwrap();
    assert_eq!(config.services.len(), 1);
    let services_d = tmp.path().join("services.d");
    assert_eq!(
        config.ignored,
        ["broken.conf", "old", "web.toml.dpkg-old"].map(|name| services_d.join(name))
    );
    let report = config.check_report();
    assert!(
        report.out.contains(&format!(
            "  ignored: {} (only *.toml files in services.d/ are read)\n",
            services_d.join("broken.conf").display()
        )),
        "{}",
        report.out
    );
    assert_eq!(
        report.out.matches("  ignored: ").count(),
        3,
        "{}",
        report.out
    );
}

#[test]
fn a_state_directory_that_cannot_be_used_is_a_warning_but_the_default_is_the_units() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = write(tmp.path(), "agent.toml", "");
    let mut config = Config::load(&agent).unwrap();
    // The packaged default is made by the unit's RuntimeDirectory= at start.
    config.state_directory = DEFAULT_STATE_DIRECTORY.into();
    if !config.state_directory.exists() {
        assert_eq!(
            config.check_state_directory(),
            StateDirectoryCheck::MadeByTheUnit
        );
        let report = config.check_report();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert!(
            report.out.contains(
                "  state_directory /run/scoreboard (not there yet: the unit's \
                 RuntimeDirectory= makes it when the agent starts)\n"
            ),
            "{}",
            report.out
        );
    }
    config.state_directory = tmp.path().to_owned();
    assert_eq!(config.check_state_directory(), StateDirectoryCheck::Present);
    assert!(config.check_report().warnings.is_empty());

    config.state_directory = tmp.path().join("missing");
    let report = config.check_report();
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("missing does not exist and the agent does not create it")
            && report.warnings[0].contains("a restart resets stuck timers"),
        "{:?}",
        report.warnings
    );
    assert!(
        report.out.contains("missing (see the warning)\n"),
        "{}",
        report.out
    );

    config.state_directory = agent.clone();
    let warnings = config.check_report().warnings;
    assert!(warnings[0].contains("is not a directory"), "{warnings:?}");
}

#[test]
fn the_check_shows_the_metrics_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = write(tmp.path(), "agent.toml", "");
    let report = Config::load(&agent).unwrap().check_report();
    assert!(report.out.contains("\n  metrics: off\n"), "{}", report.out);

    let textfile = tmp.path().join("scoreboard.prom");
    write(
        tmp.path(),
        "agent.toml",
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:9464\"\ntextfile = \"{}\"\n",
            textfile.display()
        ),
    );
    let report = Config::load(&agent).unwrap().check_report();
    assert!(
        report.out.contains(&format!(
            "\n  metrics: listen 127.0.0.1:9464 (GET /metrics), textfile {}\n",
            textfile.display()
        )),
        "{}",
        report.out
    );

    write(
        tmp.path(),
        "agent.toml",
        "[metrics]\ntextfile = \"/nonexistent/node-exporter/scoreboard.prom\"\n",
    );
    let report = Config::load(&agent).unwrap().check_report();
    assert!(
        report
            .out
            .contains("\n  metrics: textfile /nonexistent/node-exporter/scoreboard.prom\n"),
        "{}",
        report.out
    );
    assert!(
        report.warnings.iter().any(|w| w.contains(
            "its directory /nonexistent/node-exporter does not exist; the agent does not create it"
        )),
        "{:?}",
        report.warnings
    );
}

#[test]
fn the_packaged_default_configuration_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/agent.toml");
    let config = Config::load(&path).unwrap();
    assert_eq!(
        (config.interval, config.bus),
        (Duration::from_secs(1), Bus::System)
    );
    assert!(config.services.is_empty());
}

#[test]
fn a_unit_configured_twice_is_refused_naming_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = write(tmp.path(), "agent.toml", "");
    write(tmp.path(), "services.d/a.toml", "unit = \"web\"\n");
    write(tmp.path(), "services.d/b.toml", "unit = \"web.service\"\n");
    let message = Config::load(&agent).unwrap_err().to_string();
    assert!(
        message.contains("b.toml") && message.contains("a.toml"),
        "{message}"
    );
}

#[test]
fn budgets_default_and_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("agent.toml"), "").unwrap();
    std::fs::create_dir(tmp.path().join("services.d")).unwrap();
    let service = tmp.path().join("services.d/web.toml");
    std::fs::write(&service, "unit = \"web\"\n").unwrap();
    let config = Config::load(&tmp.path().join("agent.toml")).unwrap();
    assert_eq!(
        config.services[0].max_workers,
        scoreboard::DEFAULT_MAX_WORKERS
    );
    std::fs::write(
        &service,
        "unit = \"web\"\nmax_workers = 10\nmax_status_bytes = 8192\n",
    )
    .unwrap();
    let config = Config::load(&tmp.path().join("agent.toml")).unwrap();
    assert_eq!(config.services[0].max_workers, 10);
    assert_eq!(config.services[0].max_status_bytes, 8192);
    std::fs::write(&service, "unit = \"web\"\nmax_workers = 0\n").unwrap();
    let error = format!(
        "{:#}",
        Config::load(&tmp.path().join("agent.toml")).unwrap_err()
    );
    assert!(
        error.contains("max_workers") && error.contains("from 1 to 1000000"),
        "{error}"
    );
}

#[test]
fn kill_stuck_after_the_agent_cannot_carry_out_is_named_with_the_one_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = write(tmp.path(), "agent.toml", "");
    let kill = "stuck_after = \"1m\"\nkill_stuck_after = \"2m\"\n";
    write(
        tmp.path(),
        "services.d/a.toml",
        &format!("unit = \"a\"\n{kill}"),
    );
    write(
        tmp.path(),
        "services.d/b.toml",
        &format!("unit = \"b\"\n{kill}actions = \"report\"\n"),
    );
    write(
        tmp.path(),
        "services.d/c.toml",
        "unit = \"c\"\nwedged_after = \"1m\"\nstuck_after = \"1m\"\n",
    );
    let config = Config::load(&agent).unwrap();
    // The shipped unit: CAP_SYS_ADMIN only, the process table hidden.
    let shipped = AgentPrivileges::of_unit(1 << 21, 1 << 21, "invisible", "pid");
    assert_eq!(
        shipped,
        AgentPrivileges {
            cap_kill: false,
            sees_processes: false
        }
    );
    let said = unactionable(&config.services, shipped);
    // Only the service that would act: a dry run signals nobody, a watchdog needs
    // nothing new.
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(
        said[0],
        "a.service: kill_stuck_after is set, but scoreboard-agent.service lacks CAP_KILL \
         (AmbientCapabilities=, CapabilityBoundingSet=) and other users' processes in /proc \
         (ProtectProc=default, ProcSubset=all): stuck workers would be refused, never \
         signalled. Run: scoreboardctl grant-kill"
    );
    // Bounding set alone is not enough for a process that is not root.
    let bounded_only = AgentPrivileges::of_unit(1 << 5 | 1 << 21, 1 << 21, "default", "all");
    let said = unactionable(&config.services, bounded_only);
    assert!(
        said[0].contains("lacks CAP_KILL (") && !said[0].contains("/proc"),
        "{said:?}"
    );
    // With the drop-in grant-kill writes: nothing to say.
    let granted = AgentPrivileges::of_unit(1 << 5 | 1 << 21, 1 << 5 | 1 << 21, "default", "all");
    assert_eq!(
        unactionable(&config.services, granted),
        Vec::<String>::new()
    );
    // The agent's own view: root's full mask on a plain /proc.
    let root = AgentPrivileges::of_process(u64::MAX >> 23, "rw");
    assert_eq!(unactionable(&config.services, root), Vec::<String>::new());
}

#[test]
fn the_check_refuses_what_the_agents_unit_cannot_do() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = write(tmp.path(), "agent.toml", "");
    write(
        tmp.path(),
        "services.d/web.toml",
        "unit = \"web\"\nstuck_after = \"1m\"\nkill_stuck_after = \"2m\"\n",
    );
    let config = Config::load(&agent).unwrap();
    let shipped = crate::io::systemd::AgentUnit {
        protect_system: "strict".into(),
        read_write_paths: vec!["/run".into()],
        capability_bounding_set: 1 << 21,
        ambient_capabilities: 1 << 21,
        protect_proc: "invisible".into(),
        proc_subset: "pid".into(),
    };
    let refused = refusals(&config, &shipped);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].ends_with("Run: scoreboardctl grant-kill"),
        "{refused:?}"
    );
    let granted = crate::io::systemd::AgentUnit {
        capability_bounding_set: 1 << 5 | 1 << 21,
        ambient_capabilities: 1 << 5 | 1 << 21,
        protect_proc: "default".into(),
        proc_subset: "all".into(),
        ..shipped
    };
    assert_eq!(refusals(&config, &granted), Vec::<String>::new());
}

#[test]
fn each_duration_key_reads_within_its_own_range() {
    use super::values::{Interval, KillGrace, StuckAfter};
    assert_eq!(Interval::RANGE, INTERVAL_RANGE);
    assert_eq!(StuckAfter::RANGE, STUCK_AFTER_RANGE);
    assert_eq!(KillGrace::RANGE, KILL_GRACE_RANGE);
}
