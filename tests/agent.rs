//! `scoreboard-agent` as systemd runs it: a real process, real worker processes, and a
//! real notify socket (a unix datagram socket bound by the test as `NOTIFY_SOCKET`)
//! whose datagrams are asserted exactly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use scoreboard_testkit::{
    Agent, AgentDir, Killed, NotifySocket, Worker, as_root_or_skip, memory_kib, open_fds,
    perl_as_nobody, wait_until,
};

/// A configuration with the given services, and a notify socket.
struct Setup {
    dir: AgentDir,
    notify: NotifySocket,
}

impl Setup {
    /// `agent.toml` holding `settings`, and each `(file, text)` in `services.d/`, `TMP`
    /// in it standing for the temporary directory.
    fn new(settings: &str, services: &[(&str, &str)]) -> Setup {
        let dir = AgentDir::new(settings);
        for (name, text) in services {
            let text = text.replace("TMP", &dir.root().display().to_string());
            std::fs::write(dir.path("services.d").join(name), text).unwrap();
        }
        let notify = NotifySocket::bind(&dir.path("notify"));
        Setup { dir, notify }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path(relative)
    }

    /// The agent reporting to our socket, logging at debug level (printed if the test
    /// fails), with `env` added.
    fn agent(&self, env: &[(&str, &str)]) -> Agent {
        let mut command = self
            .dir
            .agent_command(Path::new(env!("CARGO_BIN_EXE_scoreboard-agent")));
        command
            .env("NOTIFY_SOCKET", self.notify.path())
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied());
        Agent::spawn_logged(&mut command, &self.path("agent.log"))
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn summaries_follow_workers_joining_changing_dying_and_sticking() {
    let setup = Setup::new(
        "interval = \"200ms\"\nbus = \"none\"\n",
        &[(
            "web.toml",
            "unit = \"web\"\ndirectory = \"TMP/run/web/scoreboard\"\nnotify = \"self\"\nstuck_after = \"1500ms\"\n",
        )],
    );
    let dir = setup.path("run/web/scoreboard");
    let _agent = setup.agent(&[]);
    // The directory does not exist yet: the agent waits for it, and says so rather
    // than "0 workers" it has not seen.
    setup
        .notify
        .expect("STATUS=scoreboard not found: no directory yet", 5 * SECOND);

    let mut workers: Vec<Worker> = (0..3).map(|_| Worker::start(&dir)).collect();
    for worker in &mut workers {
        worker.say("idle");
    }
    let first = setup.notify.expect("STATUS=3 workers: 3 idle", 5 * SECOND);
    eprintln!("three workers started: summary after {first:?}");

    workers[0].say("busy GET /slow");
    setup
        .notify
        .expect("STATUS=3 workers: 2 idle, 1 busy", 2 * SECOND);

    let killed = Instant::now();
    workers[1].kill9();
    setup
        .notify
        .expect("STATUS=2 workers: 1 busy, 1 idle", 2 * SECOND);
    eprintln!("kill -9 to the new STATUS datagram: {:?}", killed.elapsed());

    // Nothing changes: nothing is sent, until the busy worker has been busy too long.
    setup
        .notify
        .expect("STATUS=2 workers: 1 idle, 1 stuck", 3 * SECOND);
    setup.notify.expect_silence(SECOND);

    // A status trying to smuggle a second assignment in is just a status.
    workers[2].say("busy\nMAINPID=1\nREADY=1");
    setup
        .notify
        .expect("STATUS=2 workers: 1 busy, 1 stuck", 2 * SECOND);
}

#[test]
fn worker_text_cannot_inject_assignments_even_in_a_state_name() {
    let setup = Setup::new(
        "interval = \"200ms\"\nbus = \"none\"\n",
        &[(
            "jobs.toml",
            "unit = \"jobs\"\ndirectory = \"TMP/jobs\"\nnotify = \"self\"\nstate = \"json:/state\"\nsummary = \"{unit}: {counts}\"\n",
        )],
    );
    std::fs::create_dir(setup.path("jobs")).unwrap();
    let _agent = setup.agent(&[]);
    setup.notify.expect("STATUS=jobs.service: none", 5 * SECOND);
    let mut worker = Worker::start(&setup.path("jobs"));
    worker.say(r#"{"state":"running\nMAINPID=1\u0000"}"#);
    // A state is one word: the newline is `_`, the NUL dropped; no second assignment.
    setup
        .notify
        .expect("STATUS=jobs.service: 1 running_MAINPID=1", 2 * SECOND);
}

#[test]
fn a_directory_that_vanishes_is_picked_up_again() {
    let setup = Setup::new(
        "interval = \"100ms\"\nbus = \"none\"\n",
        &[(
            "web.toml",
            "unit = \"web\"\ndirectory = \"TMP/run/web/scoreboard\"\nnotify = \"self\"\n",
        )],
    );
    let dir = setup.path("run/web/scoreboard");
    let _agent = setup.agent(&[]);
    let mut worker = Worker::start(&dir);
    worker.say("idle");
    setup.notify.expect("STATUS=1 workers: 1 idle", 5 * SECOND);
    // The service stops: its RuntimeDirectory= goes, with our scoreboard in it.
    worker.kill9();
    std::fs::remove_dir_all(setup.path("run/web")).unwrap();
    setup
        .notify
        .expect("STATUS=scoreboard not found: no directory yet", 2 * SECOND);
    // It starts again.
    let mut again = Worker::start(&dir);
    again.say("busy GET /");
    setup.notify.expect("STATUS=1 workers: 1 busy", 3 * SECOND);
}

#[test]
fn lifecycle_ready_status_watchdog_reload_stopping() {
    let setup = Setup::new(
        "interval = \"200ms\"\nbus = \"none\"\n",
        &[(
            "web.toml",
            "unit = \"web\"\ndirectory = \"TMP/web\"\nnotify = \"none\"\n",
        )],
    );
    std::fs::create_dir(setup.path("web")).unwrap();
    let agent = setup.agent(&[("WATCHDOG_USEC", "600000")]);
    assert_eq!(setup.notify.next(5 * SECOND).as_deref(), Some("READY=1"));
    assert_eq!(
        setup.notify.next(SECOND).as_deref(),
        Some("STATUS=watching 1 service, 0 workers")
    );

    let mut workers: Vec<Worker> = (0..2).map(|_| Worker::start(&setup.path("web"))).collect();
    for worker in &mut workers {
        worker.say("idle");
    }
    setup
        .notify
        .expect("STATUS=watching 1 service, 2 workers", 3 * SECOND);
    // Pings at half the watchdog period.
    setup.notify.expect("WATCHDOG=1", SECOND);
    let since = Instant::now();
    setup.notify.expect("WATCHDOG=1", SECOND);
    assert!(
        since.elapsed() > Duration::from_millis(200),
        "{:?}",
        since.elapsed()
    );

    // SIGHUP with a second service added.
    std::fs::write(
        setup.path("services.d/jobs.toml"),
        format!(
            "unit = \"jobs\"\ndirectory = \"{}\"\nnotify = \"none\"\n",
            setup.path("jobs").display()
        ),
    )
    .unwrap();
    agent.signal(Signal::HUP);
    let reloading = loop {
        let message = setup.notify.next(2 * SECOND).expect("RELOADING=1");
        if message.starts_with("RELOADING=1") {
            break message;
        }
    };
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap();
    assert!(usec.parse::<u64>().unwrap() > 0);
    setup.notify.expect("READY=1", 2 * SECOND);
    setup
        .notify
        .expect("STATUS=watching 2 services, 2 workers", 2 * SECOND);

    // A broken file on reload: the running configuration stays.
    std::fs::write(setup.path("services.d/jobs.toml"), "unit = 42\n").unwrap();
    agent.signal(Signal::HUP);
    setup.notify.expect("READY=1", 2 * SECOND);

    agent.signal(Signal::TERM);
    setup.notify.expect("STOPPING=1", 2 * SECOND);
    let mut agent = agent;
    assert!(agent.wait().success());
}

#[test]
fn a_restarted_agent_keeps_stuck_timers() {
    let setup = Setup::new(
        "interval = \"200ms\"\nbus = \"none\"\n",
        &[(
            "web.toml",
            "unit = \"web\"\ndirectory = \"TMP/web\"\nnotify = \"self\"\nstuck_after = \"4s\"\n",
        )],
    );
    let mut worker = Worker::start(&setup.path("web"));
    worker.say("busy GET /slow");
    let first = setup.agent(&[]);
    setup.notify.expect("STATUS=1 workers: 1 busy", 5 * SECOND);
    let busy_since = Instant::now();
    std::thread::sleep(Duration::from_millis(2500));
    first.signal(Signal::TERM);
    let mut first = first;
    assert!(first.wait().success());
    assert!(setup.path("state/web.service.json").exists());

    // The new agent knows the worker has been busy for 2.5 s already: stuck 1.5 s
    // later, not 4 s later.
    let _second = setup.agent(&[]);
    let restarted = Instant::now();
    setup.notify.expect("STATUS=1 workers: 1 busy", 5 * SECOND);
    setup.notify.expect("STATUS=1 workers: 1 stuck", 5 * SECOND);
    let after_restart = restarted.elapsed();
    eprintln!(
        "stuck {:.1?} after the restart, {:.1?} after the status was set",
        after_restart,
        busy_since.elapsed()
    );
    assert!(
        after_restart < Duration::from_millis(3500),
        "{after_restart:?}: the stuck timer restarted"
    );
}

#[test]
fn check_config_reports_errors_with_file_and_line() {
    let setup = Setup::new(
        "interval = \"1s\"\n",
        &[("web.toml", "unit = \"web\"\nstuck_after = \"soon\"\n")],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_scoreboard-agent"))
        .arg("--check-config")
        .arg("--config")
        .arg(setup.path("agent.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("services.d/web.toml")
            && stderr.contains("line 2")
            && stderr.contains("invalid duration"),
        "{stderr}"
    );

    std::fs::write(setup.path("services.d/web.toml"), "unit = \"web\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scoreboard-agent"))
        .arg("--check-config")
        .arg("--config")
        .arg(setup.path("agent.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("web.service <- /run/web/scoreboard (notify: main-pid)"),
        "{stdout}"
    );
}

/// A log written to a file (or a pipe) is plain text: no colour, not even escaped.
#[test]
fn a_log_in_a_file_has_no_colour() {
    let setup = Setup::new(
        "interval = \"100ms\"\nbus = \"none\"\n",
        &[(
            "web.toml",
            "unit = \"web\"\ndirectory = \"TMP/web\"\nnotify = \"none\"\n",
        )],
    );
    let _agent = setup.agent(&[]);
    let log = || std::fs::read_to_string(setup.path("agent.log")).unwrap();
    wait_until(10 * SECOND, "the agent to log that it watches", || {
        log().contains(" INFO watching")
    });
    let log = log();
    assert!(!log.contains('\x1b') && !log.contains("\\x1b"), "{log:?}");
}

/// `--check-config` shows what the agent would run with: the metrics settings, the
/// files of services.d/ it ignores, and a state directory it could not use (a warning:
/// the agent runs without one).
#[test]
fn check_config_shows_metrics_ignored_files_and_an_unusable_state_directory() {
    let setup = Setup::new(
        "bus = \"none\"\n[metrics]\nlisten = \"127.0.0.1:9464\"\n",
        &[
            ("web.toml", "unit = \"web\"\nnotify = \"none\"\n"),
            ("broken.conf", "unit = "),
        ],
    );
    let check = || {
        Command::new(env!("CARGO_BIN_EXE_scoreboard-agent"))
            .arg("--check-config")
            .arg("--config")
            .arg(setup.path("agent.toml"))
            .output()
            .unwrap()
    };
    let out = check();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr, "");
    assert!(
        stdout.contains("  metrics: listen 127.0.0.1:9464 (GET /metrics)\n")
            && stdout.contains("  web.service <- /run/web/scoreboard (notify: none)\n")
            && stdout.contains(&format!(
                "  ignored: {} (only *.toml files in services.d/ are read)\n",
                setup.path("services.d/broken.conf").display()
            )),
        "{stdout}"
    );

    let state = setup.path("state");
    std::fs::remove_dir(&state).unwrap();
    let out = check();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "scoreboard-agent: warning: state_directory {} does not exist",
            state.display()
        )),
        "{stderr}"
    );
}

fn agent_files_and_rss(agent: &Agent) -> (usize, u64) {
    let pid = agent.pid();
    let (rss_kib, _) = memory_kib(pid);
    assert!(rss_kib > 0, "the agent (pid {pid}) is gone");
    (open_fds(pid), rss_kib)
}

/// The agent as root, watching a service whose directory belongs to uid 65534 and a
/// well-behaved one. The attacker plants a symlink to root's files, then fills its
/// directory with 100,000 symlinks and 800 hard links to a locked file whose frame
/// never checks out. Root's files survive, the other service's news still arrives,
/// the watchdog is never starved, and SIGTERM is obeyed.
#[test]
fn a_hostile_service_user_cannot_redirect_starve_or_stall_the_agent() {
    if !as_root_or_skip("attacks by another user") {
        return;
    }
    let setup = Setup::new(
        "interval = \"200ms\"\nbus = \"none\"\n",
        &[
            (
                "evil.toml",
                "unit = \"evil\"\ndirectory = \"TMP/evil/scoreboard\"\nnotify = \"none\"\n",
            ),
            (
                "good.toml",
                "unit = \"good\"\ndirectory = \"TMP/good\"\nnotify = \"none\"\n",
            ),
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(setup.dir.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(setup.path("evil")).unwrap();
    std::os::unix::fs::chown(setup.path("evil"), Some(65534), Some(65534)).unwrap();
    std::fs::create_dir(setup.path("victim")).unwrap();
    for n in 1..=5 {
        std::fs::write(setup.path(&format!("victim/status_{n}")), b"root's").unwrap();
    }
    let recorder = setup.notify.record();
    let agent = setup.agent(&[("WATCHDOG_USEC", "1000000")]);
    let mut good = Worker::start(&setup.path("good"));
    good.say("idle");
    recorder.wait_for(
        "STATUS=watching 2 services, 1 workers",
        Instant::now() - SECOND,
        5 * SECOND,
    );
    let watched_from = Instant::now();

    // 1. A symlink to root's directory where the scoreboard should be.
    let mut planted = perl_as_nobody(
        &setup.path("evil"),
        "symlink('../victim', 'scoreboard') or die",
    );
    planted.0.wait().unwrap();
    let log = || std::fs::read_to_string(setup.path("agent.log")).unwrap();
    wait_until(5 * SECOND, "the agent to refuse the symlink", || {
        log().contains("symbolic link owned by nobody (uid 65534)")
    });
    // 2. Its own directory, full of what costs a reader: 100,000 symlinks, and 800 names
    //    for one locked file whose digest never matches.
    let fill = "use Fcntl ':flock'; unlink 'scoreboard'; mkdir 'scoreboard' or die; chdir 'scoreboard';\
                symlink('/etc/passwd', \"status_l$_\") or die for 1..100000;\
                open(my $f, '>', 'status_0.tmp') or die; print $f ('x' x 16), pack('N', 4), 'oops';\
                close $f; open($f, '<', 'status_0.tmp') or die; flock($f, LOCK_EX) or die;\
                rename('status_0.tmp', 'status_0') or die; link('status_0', \"status_h$_\") or die for 1..800;\
                open(my $r, '>', '../ready'); close $r; sleep 600;";
    let _holder = perl_as_nobody(&setup.path("evil"), fill);
    wait_until(60 * SECOND, "the attacker to be ready", || {
        setup.path("evil/ready").exists()
    });
    // The attack goes on for a while, the watchdog watched all along.
    std::thread::sleep(2 * SECOND);
    // 3. The other service's worker dies: its news still arrives at once.
    let killed = Instant::now();
    good.kill9();
    recorder.wait_for("STATUS=watching 2 services, 0 workers", killed, 2 * SECOND);
    let (fds, rss_kb) = agent_files_and_rss(&agent);

    assert_eq!(
        std::fs::read_dir(setup.path("victim")).unwrap().count(),
        5,
        "root's files were reaped"
    );
    let (worst, pings) = recorder.watchdog_gaps(watched_from);
    eprintln!("watchdog: {pings} pings, worst gap {worst:?}; agent: {fds} fds, {rss_kb} KiB RSS");
    assert!(pings >= 3);
    assert!(
        worst < SECOND,
        "the watchdog (WATCHDOG_USEC=1s) would have fired: gap {worst:?}"
    );
    assert!(fds < 64, "{fds} descriptors for one worker");
    assert!(rss_kb < 64 * 1024, "{rss_kb} KiB");
    agent.signal(Signal::TERM);
    recorder.wait_for("STOPPING=1", killed, 5 * SECOND);
    let log = log();
    // One warning per kind of problem per quiet period, not one per entry.
    let warnings = log.lines().filter(|l| l.contains("skipping")).count();
    assert!(warnings <= 4, "the flood was logged per entry:\n{log}");
    assert!(log.contains("(a hard link)"), "{log}");
}

/// Eight loops of the directory's owner creating and removing worker-like files as fast
/// as they can, beside one real worker: the agent's descriptors, memory and watchdog
/// stay within bounds during the churn, and it converges to the truth after it.
#[test]
fn churn_by_the_directory_owner_keeps_the_agent_bounded() {
    if !as_root_or_skip("attacks by another user") {
        return;
    }
    let setup = Setup::new(
        "interval = \"200ms\"\nbus = \"none\"\n",
        &[(
            "evil.toml",
            "unit = \"evil\"\ndirectory = \"TMP/evil\"\nnotify = \"none\"\n",
        )],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(setup.dir.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(setup.path("evil")).unwrap();
    std::os::unix::fs::chown(setup.path("evil"), Some(65534), Some(65534)).unwrap();
    let recorder = setup.notify.record();
    let agent = setup.agent(&[("WATCHDOG_USEC", "1000000")]);
    recorder.wait_for("READY=1", Instant::now() - SECOND, 5 * SECOND);
    let watched_from = Instant::now();
    let churners: Vec<Killed> = (0..8)
        .map(|n| {
            let script = format!(
                "use Fcntl ':flock'; my $i = 0; while (1) {{ $i++; \
                 open(my $f, '>', \"status_{n}_$i.tmp\") or die; flock($f, LOCK_EX);\
                 rename(\"status_{n}_$i.tmp\", \"status_{n}_$i\"); close $f; unlink \"status_{n}_$i\"; }}"
            );
            perl_as_nobody(&setup.path("evil"), &script)
        })
        .collect();
    let mut worst = (0, 0);
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        let (fds, rss) = agent_files_and_rss(&agent);
        worst = (worst.0.max(fds), worst.1.max(rss));
    }
    drop(churners);
    let calm = Instant::now();
    let mut real = Worker::start(&setup.path("evil"));
    real.say("idle");
    recorder.wait_for("STATUS=watching 1 service, 1 workers", calm, 3 * SECOND);
    let (gap, pings) = recorder.watchdog_gaps(watched_from);
    eprintln!(
        "churn: worst {} fds, {} KiB RSS; watchdog worst gap {gap:?} over {pings} pings",
        worst.0, worst.1
    );
    assert!(gap < SECOND, "the watchdog would have fired: {gap:?}");
    assert!(worst.0 < 64 + 8, "{} descriptors", worst.0);
    assert!(worst.1 < 64 * 1024, "{} KiB", worst.1);
    let (fds, _) = agent_files_and_rss(&agent);
    assert!(
        fds < 64,
        "descriptors not given back after the churn: {fds}"
    );
}

/// A dead worker's line says its file's last word, even one written after the agent's
/// last look (gunicorn's timeout hook writes the request as the worker is aborted), and
/// says at most a bounded, escaped part of it.
#[test]
fn a_dead_workers_last_status_is_logged_from_its_file_and_bounded() {
    let setup = Setup::new(
        "interval = \"1s\"\nbus = \"none\"\n",
        &[(
            "web.toml",
            "unit = \"web\"\ndirectory = \"TMP/web\"\nnotify = \"self\"\n",
        )],
    );
    let dir = setup.path("web");
    std::fs::create_dir_all(&dir).unwrap();
    let _agent = setup.agent(&[]);
    let log = || std::fs::read_to_string(setup.path("agent.log")).unwrap();
    let last_words = |status: &str| -> String {
        let mut worker = Worker::with_status(&dir, "busy GET /report");
        let pid = worker.0.pid().to_string();
        // Seen by the agent (its Status line may not change: the last worker's line
        // was the same).
        let joined = format!("worker joined unit=web.service worker={pid}");
        wait_until(5 * SECOND, "the agent to see the worker", || {
            log().contains(&joined)
        });
        worker.say(status);
        wait_until(5 * SECOND, "the worker to write its last status", || {
            scoreboard::read_dir(&dir)
                .is_ok_and(|s| s.workers.iter().any(|w| w.status == status.as_bytes()))
        });
        worker.kill9();
        let said = format!("web.service: worker {pid} died while \"");
        wait_until(5 * SECOND, "the agent to log the dead worker", || {
            log().contains(&said)
        });
        let log = log();
        let line = log.lines().find(|l| l.contains(&said)).unwrap().to_owned();
        line[line.find(&said).unwrap() + said.len()..].to_owned()
    };
    let timed_out = last_words("timeout GET /report");
    assert!(
        timed_out.starts_with("timeout GET /report\""),
        "{timed_out}"
    );
    let huge = format!("\u{1b}[31m\0{}", "x".repeat((1 << 20) - 16));
    let capped = last_words(&huge);
    let said = &capped[..capped.find('"').unwrap()];
    assert!(said.starts_with("\\x1b[31m\\x00xxx"), "{said:.80}");
    assert!(said.len() <= 512, "{} bytes said", said.len());
}
