//! `scoreboardctl` as users run it: a real process on a real directory.

use std::fs;
use std::process::Command;

use scoreboard::Scoreboard;

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
