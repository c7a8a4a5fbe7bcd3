//! The agent run in-process: `run(config, shutdown, reloads)` installs no signal
//! handler, so a test drives it with a channel and a future, and watches what it writes
//! (the metrics textfile, the saved state) while workers in this process come and go.

use std::time::Duration;

use scoreboard::Scoreboard;
use scoreboard_agent::agent;
use scoreboard_agent::config::Config;
use scoreboard_testkit::{AgentDir, wait_until};

/// Watches `<dir>/<unit>`, made here.
fn watch(dir: &AgentDir, unit: &str) {
    std::fs::create_dir_all(dir.path(unit)).unwrap();
    dir.service(unit, &dir.path(unit), "notify = \"none\"\n");
}

fn textfile(dir: &AgentDir) -> String {
    std::fs::read_to_string(dir.path("metrics.prom")).unwrap_or_default()
}

const PATIENCE: Duration = Duration::from_secs(5);

#[test]
fn the_agent_runs_in_process_reloads_on_a_message_and_stops_on_a_future() {
    let dir = &AgentDir::new("interval = \"50ms\"\nbus = \"none\"\n");
    dir.append(&format!(
        "\n[metrics]\ntextfile = \"{}\"\n",
        dir.path("metrics.prom").display()
    ));
    watch(dir, "web");
    let config = Config::load(&dir.config()).unwrap();

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
            Scoreboard::builder(dir.path("web"))
                .worker_id(move || format!("w{i}"))
                .open()
                .unwrap()
        })
        .collect();
    for worker in &mut workers {
        worker.update("idle").unwrap();
    }
    workers[0].update("busy GET /").unwrap();
    wait_until(PATIENCE, "web's 2 idle and 1 busy in the textfile", || {
        let text = textfile(dir);
        text.contains(r#"scoreboard_workers{unit="web.service",state="idle"} 2"#)
            && text.contains(r#"scoreboard_workers{unit="web.service",state="busy"} 1"#)
    });

    // A worker leaves (its handle dropped removes its file).
    workers.pop();
    wait_until(PATIENCE, "web's 1 idle in the textfile", || {
        textfile(dir).contains(r#"scoreboard_workers{unit="web.service",state="idle"} 1"#)
    });

    // A second service, picked up by a reload.
    watch(dir, "jobs");
    let mut job = Scoreboard::builder(dir.path("jobs"))
        .worker_id(|| "j1".to_owned())
        .open()
        .unwrap();
    job.update("running").unwrap();
    reload.send(()).unwrap();
    wait_until(PATIENCE, "jobs in the textfile after the reload", || {
        textfile(dir).contains(r#"scoreboard_workers{unit="jobs.service",state="running"} 1"#)
    });

    // Stopping saves what a restarted agent needs, per service.
    stop.send(()).unwrap();
    running.join().unwrap().unwrap();
    for (unit, worker) in [("web.service", "\"w0\""), ("jobs.service", "\"j1\"")] {
        let saved = std::fs::read_to_string(dir.path("state").join(format!("{unit}.json")))
            .unwrap_or_else(|e| panic!("{unit}: {e}"));
        assert!(saved.contains(worker), "{unit}: {saved}");
    }
    // A clean stop takes the textfile away: node_exporter must not serve it stale.
    assert!(!dir.path("metrics.prom").exists());
}
