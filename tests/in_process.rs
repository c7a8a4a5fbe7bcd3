//! The agent run in-process: `run(config, shutdown, reloads)` installs no signal
//! handler, so a test drives it with a channel and a future, and watches what it writes
//! (the metrics textfile, the saved state) while workers in this process come and go.

use std::path::Path;
use std::time::{Duration, Instant};

use scoreboard::Scoreboard;
use scoreboard_agent::agent;
use scoreboard_agent::config::Config;

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

fn write_service(dir: &Path, unit: &str) {
    std::fs::create_dir_all(dir.join(unit)).unwrap();
    std::fs::write(
        dir.join("services.d").join(format!("{unit}.toml")),
        format!(
            "unit = \"{unit}\"\ndirectory = \"{}\"\nnotify = \"none\"\n",
            dir.join(unit).display()
        ),
    )
    .unwrap();
}

fn textfile(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("metrics.prom")).unwrap_or_default()
}

#[test]
fn the_agent_runs_in_process_reloads_on_a_message_and_stops_on_a_future() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("services.d")).unwrap();
    std::fs::create_dir(dir.join("state")).unwrap();
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "interval = \"50ms\"\nbus = \"none\"\nstate_directory = \"{}\"\n\n[metrics]\ntextfile = \"{}\"\n",
            dir.join("state").display(),
            dir.join("metrics.prom").display()
        ),
    )
    .unwrap();
    write_service(dir, "web");
    let config = Config::load(&dir.join("agent.toml")).unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (reload, reloads) = tokio::sync::mpsc::unbounded_channel();
    let running = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(agent::run(
                config,
                async {
                    let _ = stopped.await;
                },
                reloads,
            ))
    });

    let mut workers: Vec<Scoreboard> = (0..3)
        .map(|i| {
            Scoreboard::builder(dir.join("web"))
                .worker_id(move || format!("w{i}"))
                .open()
                .unwrap()
        })
        .collect();
    for worker in &mut workers {
        worker.update("idle").unwrap();
    }
    workers[0].update("busy GET /").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let text = textfile(dir);
            text.contains(r#"scoreboard_workers{unit="web.service",state="idle"} 2"#)
                && text.contains(r#"scoreboard_workers{unit="web.service",state="busy"} 1"#)
        }),
        "{}",
        textfile(dir)
    );

    // A worker leaves (its handle dropped removes its file).
    workers.pop();
    assert!(
        wait_until(Duration::from_secs(5), || textfile(dir).contains(
            r#"scoreboard_workers{unit="web.service",state="idle"} 1"#
        )),
        "{}",
        textfile(dir)
    );

    // A second service, picked up by a reload.
    write_service(dir, "jobs");
    let mut job = Scoreboard::builder(dir.join("jobs")).open().unwrap();
    job.update("running").unwrap();
    reload.send(()).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || textfile(dir).contains(
            r#"scoreboard_workers{unit="jobs.service",state="running"} 1"#
        )),
        "{}",
        textfile(dir)
    );

    // Stopping saves what a restarted agent needs, per service.
    stop.send(()).unwrap();
    running.join().unwrap().unwrap();
    for unit in ["web.service", "jobs.service"] {
        let saved = std::fs::read_to_string(dir.join("state").join(format!("{unit}.json")))
            .unwrap_or_else(|e| panic!("{unit}: {e}"));
        assert!(saved.contains("w0") || unit == "jobs.service", "{saved}");
    }
}
