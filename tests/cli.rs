//! `scoreboardctl` as users run it: a real process on a real directory.

use std::fs;
use std::process::Command;

use scoreboard::Scoreboard;
use scoreboard_testkit::AgentDir;

fn scoreboardctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scoreboardctl"))
}

fn worker(dir: &std::path::Path, id: &'static str, status: &[u8]) -> Scoreboard {
    let mut scoreboard = Scoreboard::builder(dir)
        .worker_id(move || id)
        .open()
        .unwrap();
    scoreboard.update(status).unwrap();
    scoreboard
}

#[test]
fn status_json_is_exactly_the_documented_document() {
    let tmp = tempfile::tempdir().unwrap();
    let _b = worker(tmp.path(), "b", b"busy GET /\"quoted\"");
    let _a = worker(tmp.path(), "a", b"idle\xff");
    let out = scoreboardctl()
        .args(["status", "--json", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"workers\":[{\"id\":\"a\",\"status\":\"idle\u{fffd}\"},{\"id\":\"b\",\"status\":\"busy GET /\\\"quoted\\\"\"}]}\n"
    );
}

#[test]
fn status_table_escapes_control_characters_and_reaps_the_dead() {
    let tmp = tempfile::tempdir().unwrap();
    let _live = worker(tmp.path(), "w1", b"busy\nMAINPID=1");
    // A dead worker's file: valid frame, nobody holds its lock.
    let mut frame = vec![0; scoreboard::frame::frame_len(4)];
    scoreboard::frame::encode_into(&mut frame, b"idle");
    fs::write(tmp.path().join("status_w2"), frame).unwrap();

    let out = scoreboardctl()
        .args(["status", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "ID  STATUS\nw1  busy\\nMAINPID=1\n"
    );
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "scoreboardctl: removed the file of dead worker w2\n"
    );
    assert!(!tmp.path().join("status_w2").exists());
}

#[test]
fn a_hostile_worker_id_stays_on_its_row() {
    let tmp = tempfile::tempdir().unwrap();
    let _evil = worker(tmp.path(), "evil\n\x1b[31mred", b"idle\x1b[2J");
    let _good = worker(tmp.path(), "good", b"busy");
    let out = scoreboardctl()
        .args(["status", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "ID                 STATUS\nevil\\n\\x1b[31mred  idle\\x1b[2J\ngood               busy\n"
    );
}

#[test]
fn status_warns_about_entries_it_will_not_follow() {
    let tmp = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("status_evil")).unwrap();
    let out = scoreboardctl()
        .args(["status", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("warning: skipping")
            && stderr.contains("status_evil")
            && stderr.contains("symbolic link"),
        "{stderr}"
    );
}

#[test]
fn status_of_a_missing_directory_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-service/scoreboard");
    let out = scoreboardctl()
        .args(["status", "--dir"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&missing.display().to_string()) && stderr.contains("No such file"),
        "{stderr}"
    );
    // One line, the OS error said once.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("(os error 2)").count(), 1, "{stderr}");
}

#[test]
fn demo_runs_real_workers_kills_one_and_cleans_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_scoreboardctl"))
        .args(["demo", "--workers", "3", "--seconds", "6"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("scoreboard demo: 3 workers in "),
        "{stdout}"
    );
    assert!(
        stdout.contains("killed worker") && stdout.contains("with SIGKILL"),
        "{stdout}"
    );
    assert!(stdout.contains("reaped the file worker"), "{stdout}");
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("scoreboard demo: 3 workers in "))
        .and_then(|l| l.strip_suffix(" (Ctrl-C to quit)"))
        .unwrap();
    assert!(
        !std::path::Path::new(dir).exists(),
        "the demo removed {dir}"
    );
}

/// A configuration watching `web` (directory in the temp dir) and `jobs` (absent).
fn configured() -> (AgentDir, std::path::PathBuf) {
    let dir = AgentDir::new("bus = \"none\"\n");
    fs::create_dir(dir.path("web")).unwrap();
    dir.service("web", &dir.path("web"), "notify = \"none\"\n")
        .service("jobs", &dir.path("jobs"), "notify = \"none\"\n");
    let config = dir.config();
    (dir, config)
}

#[test]
fn status_of_a_unit_shows_states_and_the_summary_line() {
    let (tmp, config) = configured();
    let _a = worker(&tmp.path("web"), "a", b"busy GET /");
    let _b = worker(&tmp.path("web"), "b", b"idle");
    let out = scoreboardctl()
        .args(["status", "web", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "● web.service — 2 workers: 1 busy, 1 idle\n  ID  STATE  UNCHANGED  STUCK  STATUS\n  a   busy   -          -      busy GET /\n  b   idle   -          -      idle\n"
    );

    let out = scoreboardctl()
        .args(["status", "web.service", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["services"][0]["summary"], "2 workers: 1 busy, 1 idle");
    assert_eq!(json["services"][0]["workers"][0]["state"], "busy");
    assert_eq!(
        json["services"][0]["workers"][0]["stuck"],
        serde_json::Value::Null
    );
}

#[test]
fn status_exit_codes_tell_not_running_from_unknown() {
    let (_tmp, config) = configured();
    let out = scoreboardctl()
        .args(["status", "jobs", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("jobs.service — not running (no ")
    );
    let out = scoreboardctl()
        .args(["status", "nope", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("nope is not watched")
    );
    let out = scoreboardctl()
        .args(["status", "web", "--config", "/nonexistent/agent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("/nonexistent/agent.toml")
    );
}

/// With `bus = "none"` there is no agent to ask: reading the directories directly is
/// the way, and nothing is said about an agent.
#[test]
fn without_a_bus_nothing_is_said_about_the_agent() {
    let (tmp, config) = configured();
    let _a = worker(&tmp.path("web"), "a", b"idle");
    for args in [&["status"][..], &["status", "web", "--json"], &["list"]] {
        let out = scoreboardctl()
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert_eq!(String::from_utf8(out.stderr).unwrap(), "", "{args:?}");
    }
    let out = scoreboardctl()
        .args(["watch", "--count", "1", "--interval", "0", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let screen = String::from_utf8(out.stdout).unwrap();
    assert!(
        screen.starts_with("scoreboard — 2 services, read directly (no agent)\n\n"),
        "{screen}"
    );
    assert!(!screen.contains("agent answers"), "{screen}");

    // A directory the caller may not read: what failed, and what to do; no agent to
    // start.
    if scoreboard_testkit::as_root_or_skip("reading as nobody") {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp.root(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(tmp.path("web"), fs::Permissions::from_mode(0o700)).unwrap();
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_scoreboardctl"))
            .args(["status", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{stderr}");
        assert!(
            lines[0].starts_with("scoreboardctl: cannot read web.service's scoreboard: ")
                && lines[0].contains(&tmp.path("web").display().to_string())
                && lines[0].ends_with("Permission denied (os error 13)"),
            "{stderr}"
        );
        assert!(
            lines[1].contains("bus = \"none\"")
                && lines[1].contains("as root or as the service's user"),
            "{stderr}"
        );
        assert!(!stderr.contains("agent answers"), "{stderr}");
    }
}

#[test]
fn list_shows_every_watched_service() {
    let (tmp, config) = configured();
    let _a = worker(&tmp.path("web"), "a", b"idle");
    let out = scoreboardctl()
        .args(["list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "UNIT          WORKERS  SUMMARY");
    assert!(
        lines[1].starts_with("jobs.service  -        not running (no "),
        "{stdout}"
    );
    assert_eq!(lines[2], "web.service   1        1 workers: 1 idle");
}

/// `scoreboard-agent --check-config` on the configuration in `dir`: exit code, stderr.
fn check_config(dir: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scoreboard-agent"))
        .arg("--check-config")
        .arg("--config")
        .arg(dir.join("agent.toml"))
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn check_config_refuses_what_the_agent_would_panic_or_trespass_on() {
    let tmp = tempfile::tempdir().unwrap();
    let services = tmp.path().join("services.d");
    fs::create_dir(&services).unwrap();
    fs::write(
        tmp.path().join("agent.toml"),
        "interval = \"500000000000y\"\n",
    )
    .unwrap();
    let (code, stderr) = check_config(tmp.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("agent.toml")
            && stderr.contains("line 1")
            && stderr.contains("interval")
            && stderr.contains("is out of range: it must be from 10ms to 1h"),
        "{stderr}"
    );

    fs::write(tmp.path().join("agent.toml"), "").unwrap();
    fs::write(
        services.join("web.toml"),
        "unit = \"web\"\nstuck_after = \"500000000000y\"\n",
    )
    .unwrap();
    let (code, stderr) = check_config(tmp.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("services.d/web.toml")
            && stderr.contains("line 2")
            && stderr.contains("stuck_after")
            && stderr.contains("from 1s to 30days"),
        "{stderr}"
    );

    for (directory, expected) in [
        ("/etc/web", "is inside /etc,"),
        ("/var/lib", "is a system directory"),
        ("/run/web/../../etc", "write \"/etc\""),
    ] {
        fs::write(
            services.join("web.toml"),
            format!("unit = \"web\"\ndirectory = \"{directory}\"\n"),
        )
        .unwrap();
        let (code, stderr) = check_config(tmp.path());
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains("services.d/web.toml")
                && stderr.contains("line 2")
                && stderr.contains(expected),
            "{directory}: {stderr}"
        );
    }

    fs::write(
        services.join("web.toml"),
        "unit = \"web\"\ndirectory = \"/run/web/scoreboard\"\n",
    )
    .unwrap();
    fs::write(
        services.join("jobs.toml"),
        "unit = \"jobs\"\ndirectory = \"/run/web/scoreboard/jobs\"\n",
    )
    .unwrap();
    let (code, stderr) = check_config(tmp.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("services.d/web.toml")
            && stderr.contains("services.d/jobs.toml")
            && stderr.contains("is inside /run/web/scoreboard"),
        "{stderr}"
    );

    fs::write(
        services.join("jobs.toml"),
        "unit = \"jobs\"\ndirectory = \"/run/jobs/scoreboard\"\n",
    )
    .unwrap();
    let (code, stderr) = check_config(tmp.path());
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn watch_refuses_an_interval_no_clock_can_keep() {
    for interval in ["-1", "NaN", "inf", "1e30"] {
        let out = scoreboardctl()
            .args(["watch", "--count", "1", &format!("--interval={interval}")])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{interval}: {stderr}");
        assert!(
            stderr.contains("between 0 and 86400"),
            "{interval}: {stderr}"
        );
    }
}
