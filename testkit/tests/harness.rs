//! The harness itself: its workers publish what they are told and die as asked, and the
//! binary is where the other tests look for it. (Being an integration test of this
//! package, this also makes `cargo test --workspace` build `scoreboard-testkit`.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use scoreboard_testkit::{Bus, Holder, Killed, Worker, poll, testkit_binary, wait_until};

const WITHIN: Duration = Duration::from_secs(5);

fn statuses(dir: &Path) -> Vec<(String, String)> {
    let mut workers: Vec<(String, String)> = scoreboard::read_dir(dir)
        .unwrap()
        .workers
        .into_iter()
        .map(|w| (w.id.clone(), w.status_lossy().into_owned()))
        .collect();
    workers.sort();
    workers
}

#[test]
fn tests_find_the_binary_cargo_built() {
    assert_eq!(
        testkit_binary(),
        Path::new(env!("CARGO_BIN_EXE_scoreboard-testkit"))
    );
}

#[test]
fn a_stdin_worker_publishes_any_text_and_dies_on_kill9() {
    let tmp = tempfile::tempdir().unwrap();
    let mut worker = Worker::start(tmp.path());
    worker.say("busy\nGET /");
    let id = worker.0.pid().to_string();
    let published = vec![(id.clone(), "busy\nGET /".to_owned())];
    wait_until(WITHIN, "the worker's status", || {
        statuses(tmp.path()) == published
    });
    worker.kill9();
    // Its file stays until a reader finds it unlocked.
    assert!(tmp.path().join(format!("status_{id}")).exists());
    let snapshot = scoreboard::read_dir(tmp.path()).unwrap();
    assert_eq!(snapshot.reaped, [id]);
}

#[test]
fn a_holder_holds_its_workers_until_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut holder = Holder::start(tmp.path(), 8, "h");
    let workers = statuses(tmp.path());
    assert_eq!(workers.len(), 8);
    assert_eq!(workers[0], ("h0".to_owned(), "busy GET /".to_owned()));
    assert_eq!(workers.iter().filter(|(_, s)| s == "idle").count(), 6);
    holder.kill9();
    assert_eq!(scoreboard::read_dir(tmp.path()).unwrap().reaped.len(), 8);
}

#[test]
fn a_test_pool_follows_its_control_file_and_its_workers_die_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("scoreboard");
    std::fs::create_dir(&dir).unwrap();
    let control = tmp.path().join("control");
    std::fs::write(&control, "\"busy GET /\"\n").unwrap();
    let mut pool = Killed(
        Command::new(testkit_binary())
            .args(["test-pool", "--workers", "2", "--dir"])
            .arg(&dir)
            .arg("--control")
            .arg(&control)
            .spawn()
            .unwrap(),
    );
    let states = |dir: &Path| -> Vec<String> {
        let mut states: Vec<String> = statuses(dir).into_iter().map(|(_, s)| s).collect();
        states.sort();
        states
    };
    wait_until(WITHIN, "a busy and an idle worker", || {
        states(&dir) == ["busy GET /", "idle"]
    });
    std::fs::write(&control, "\"idle\"\n\"busy\\u0000x\"\n").unwrap();
    wait_until(WITHIN, "the statuses the control file asks for", || {
        states(&dir) == ["busy\0x", "idle"]
    });
    pool.kill9();
    wait_until(WITHIN, "the workers dying with their pool", || {
        states(&dir).is_empty()
    });
}

#[test]
fn a_flood_counts_what_it_gets_back() {
    let bus = Bus::session();
    let out = Command::new(testkit_binary())
        .args(["test-flood", "--session", "--path", "/io/scoreboard/Agent1"])
        .args(["--clients", "2", "--in-flight", "3", "--seconds", "0"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    // Nobody owns the name: six calls, each refused by the bus itself.
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"], 6, "{report}");
    assert_eq!(report["replies"], 0, "{report}");
}

#[test]
#[should_panic(expected = "waited 50ms for the impossible, in vain")]
fn wait_until_names_what_never_came() {
    wait_until(Duration::from_millis(50), "the impossible", || false);
}

#[test]
fn poll_returns_what_the_probe_found() {
    let mut tries = 0;
    let found = poll(WITHIN, || {
        tries += 1;
        (tries == 3).then_some(tries)
    });
    assert_eq!(found, Some(3));
}
