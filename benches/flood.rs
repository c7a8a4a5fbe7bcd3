//! A local user's flood on the bus: four clients each keeping 120 `ListWorkers` calls
//! in flight against 3,000 workers for 10 s (`scoreboardctl test-flood` as uid 65534,
//! who may read the scoreboard), on a private `dbus-daemon`, the agent's watchdog at
//! 2 s. Needs root (to be another user). Prints the agent's CPU, peak RSS, worst
//! watchdog gap, how long another user's `ListWorkers` takes meanwhile, how
//! long a worker killed meanwhile takes to be reaped, and the flood's replies and
//! refusals per second.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support.rs"]
mod support;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{Bus, Holder, Killed, wait_until};

const WORKERS: usize = 3000;
const FLOOD: Duration = Duration::from_secs(10);
const PATH: &str = "/io/scoreboard/Agent1/service/web_2eservice";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("the flood bench needs root (the flood runs as uid 65534)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bus = Bus::open_to_all();
    std::fs::create_dir_all(base.join("services.d")).unwrap();
    std::fs::write(
        base.join("agent.toml"),
        format!(
            "bus = \"session\"\nstate_directory = \"{}\"\n",
            base.display()
        ),
    )
    .unwrap();
    for (unit, dir) in [("web", "web"), ("other", "other")] {
        std::fs::create_dir(base.join(dir)).unwrap();
        std::fs::write(
            base.join(format!("services.d/{unit}.toml")),
            format!(
                "unit = \"{unit}\"\nnotify = \"none\"\ndirectory = \"{}\"\n",
                base.join(dir).display()
            ),
        )
        .unwrap();
    }
    let notify = UnixDatagram::bind(base.join("notify")).unwrap();
    let pings: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let sink = pings.clone();
    std::thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok(n) = notify.recv(&mut buf) {
            if support::datagram_text(&buf[..n]) == "WATCHDOG=1" {
                sink.lock().unwrap().push(Instant::now());
            }
        }
    });
    let agent = Killed(
        support::with_watchdog_pid(support::binary("scoreboard-agent"))
            .arg("--config")
            .arg(base.join("agent.toml"))
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("NOTIFY_SOCKET", base.join("notify"))
            .env("WATCHDOG_USEC", "2000000")
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let pid = agent.0.id();
    let scoreboardctl = support::binary("scoreboardctl");
    let _workers = Holder::start(&scoreboardctl, &base.join("web"), WORKERS, "w");
    let mut victim = support::Worker::start(&base.join("other"), "idle");
    // The well-behaved caller is another non-root user (uid 1), with a budget of its
    // own: root's calls are never limited, so they would show nothing.
    let busctl = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=1", "--regid=1", "--clear-groups", "busctl"])
            .arg(format!("--address={}", bus.address))
            .args(args)
            .output()
            .unwrap()
    };
    let total = || {
        String::from_utf8_lossy(
            &busctl(&[
                "get-property",
                "io.scoreboard.Agent1",
                PATH,
                "io.scoreboard.Agent1.Service",
                "Total",
            ])
            .stdout,
        )
        .trim()
        .to_owned()
    };
    let seen = wait_until(Duration::from_secs(20), || {
        total() == format!("u {WORKERS}")
    });
    assert!(
        seen,
        "the agent never saw {WORKERS} workers: Total {:?}",
        total()
    );
    let quiet_list = time_list(&busctl);

    let started = Instant::now();
    let cpu_before = support::cpu_seconds(pid);
    let flood = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&scoreboardctl)
        .args(["test-flood", "--session", "--path", PATH, "--seconds"])
        .arg(FLOOD.as_secs().to_string())
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak_rss = 0;
    let mut lists = Vec::new();
    let mut reaped_in = None;
    while started.elapsed() < FLOOD {
        peak_rss = peak_rss.max(support::memory_kib(pid).0);
        if started.elapsed() > FLOOD / 2 && reaped_in.is_none() {
            let killed = Instant::now();
            victim.0.kill().unwrap();
            victim.0.wait().unwrap();
            while std::fs::read_dir(base.join("other"))
                .unwrap()
                .next()
                .is_some()
            {
                std::thread::sleep(Duration::from_micros(200));
            }
            reaped_in = Some(killed.elapsed());
        }
        lists.push(time_list(&busctl));
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = flood.wait_with_output().unwrap();
    let cpu = (support::cpu_seconds(pid) - cpu_before) / started.elapsed().as_secs_f64();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seconds = report["seconds"].as_f64().unwrap();
    lists.sort();
    let pings: Vec<Instant> = pings.lock().unwrap().clone();
    let mut moments = vec![started];
    moments.extend(pings.into_iter().filter(|at| *at >= started));
    moments.push(Instant::now());
    let worst = moments.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    println!(
        "flood of 4 clients x 120 calls in flight, {WORKERS} workers, {FLOOD:?}: \
         replies {:.0}/s, LimitsExceeded {:.0}/s, other errors {}; agent CPU {:.0}% of a core, \
         peak RSS {:.1} MiB, worst watchdog gap {worst:.2?} (pings every 1 s); \
         a normal caller's ListWorkers: {quiet_list:.1?} quiet, median {:.1?} / worst {:.1?} \
         during; a killed worker of another service reaped in {:.2?}",
        report["replies"].as_f64().unwrap() / seconds,
        report["limited"].as_f64().unwrap() / seconds,
        report["failed"],
        cpu * 100.0,
        peak_rss as f64 / 1024.0,
        lists[lists.len() / 2],
        lists[lists.len() - 1],
        reaped_in.unwrap_or_default(),
    );
}

/// How long `busctl call … ListWorkers` takes, start to finish (a new client each time).
fn time_list(busctl: &dyn Fn(&[&str]) -> std::process::Output) -> Duration {
    let started = Instant::now();
    let out = busctl(&[
        "call",
        "io.scoreboard.Agent1",
        PATH,
        "io.scoreboard.Agent1.Service",
        "ListWorkers",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}
