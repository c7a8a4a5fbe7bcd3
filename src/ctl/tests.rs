use super::render::watch_screen;
use super::*;

fn reports() -> Reports {
    Reports {
        source: Source::Directory,
        services: vec![ServiceReport {
            unseen: None,
            last_action: Some("2026-11-29T22:00:00Z signal 7: sent\x1b[2J".to_owned()),
            unit: "web.service".to_owned(),
            directory: "/run/web/scoreboard".to_owned(),
            running: true,
            summary: "2 workers: 2 busy".to_owned(),
            workers: ["evil\n\x1b[31m", "7"]
                .into_iter()
                .map(|id| WorkerReport {
                    id: id.to_owned(),
                    state: "busy\u{9b}2J".to_owned(),
                    status: "busy\u{9b}2J\r\nforged".to_owned(),
                    unchanged_seconds: None,
                    stuck: None,
                })
                .collect(),
        }],
        warnings: vec![
            "web.service: warning: skipping /run/web/scoreboard/status_x\nforged: torn".to_owned(),
        ],
    }
}

fn run(json: bool) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = status(&reports(), None, json, &mut out, &mut err).unwrap();
    assert_eq!(code, exit::OK);
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn no_control_within_lines(text: &str) -> bool {
    !text.lines().any(|line| line.chars().any(char::is_control))
}

#[test]
fn what_workers_wrote_stays_on_its_line() {
    let (out, err) = run(false);
    // The header, the last action, the table's header, two workers.
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(no_control_within_lines(&out), "{out:?}");
    assert!(
        out.contains("  last action: 2026-11-29T22:00:00Z signal 7: sent\\x1b[2J\n"),
        "{out}"
    );
    assert!(
        out.contains("  evil\\n\\x1b[31m  busy\\xc2\\x9b2J"),
        "{out}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.ends_with("status_x\\nforged: torn\n"), "{err}");
}

#[test]
fn json_holds_no_raw_control_character_and_parses_back() {
    let (out, _) = run(true);
    assert_eq!(out.lines().count(), 1);
    assert!(no_control_within_lines(&out), "{out:?}");
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value["services"][0]["workers"][0]["id"], "evil\n\x1b[31m");
    assert_eq!(
        value["services"][0]["workers"][0]["status"],
        "busy\u{9b}2J\r\nforged"
    );
}

#[test]
fn the_list_and_watch_screen_escape_too() {
    let mut reports = reports();
    reports.services[0].summary = "x\ny".to_owned();
    let screen = watch_screen(&reports);
    assert!(no_control_within_lines(&screen), "{screen:?}");
    assert!(screen.contains("web.service  2        x\\ny\n"), "{screen}");
}
