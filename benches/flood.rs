//! A local user's flood on the bus: four clients each keeping 120 `ListWorkers` calls
//! in flight against 3,000 workers for 10 s (`scoreboard-testkit test-flood` as uid 65534,
//! who may read the scoreboard), on a private `dbus-daemon`, the agent's watchdog at
//! 2 s. Needs root (to be another user). Prints the agent's CPU, peak RSS, worst
//! watchdog gap, how long another user's `ListWorkers` takes meanwhile, how
//! long a worker killed meanwhile takes to be reaped, and the flood's replies and
//! refusals per second. Programs missing from `target/release/` are built first.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scoreboard_testkit::bus::{NAME, SERVICE_INTERFACE};
use scoreboard_testkit::{
    Agent, AgentDir, Bus, Holder, NotifySocket, Worker, binary, cpu_seconds, emptied, memory_kib,
    testkit_binary, wait_until,
};

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
    let dir = AgentDir::new("bus = \"session\"\n");
    let base = dir.root();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bus = Bus::open_to_all();
    for unit in ["web", "other"] {
        std::fs::create_dir(base.join(unit)).unwrap();
        dir.service(unit, &base.join(unit), "notify = \"none\"\n");
    }
    let notify = NotifySocket::bind(&base.join("notify"));
    let pings = notify.record();
    let agent = Agent::spawn(
        dir.agent_command(&binary("scoreboard-agent"))
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("NOTIFY_SOCKET", notify.path())
            .env("WATCHDOG_USEC", "2000000"),
    );
    let pid = agent.pid();
    let _workers = Holder::start(&base.join("web"), WORKERS, "w");
    let mut victim = Worker::with_status(&base.join("other"), "idle");
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
            &busctl(&["get-property", NAME, PATH, SERVICE_INTERFACE, "Total"]).stdout,
        )
        .trim()
        .to_owned()
    };
    wait_until(
        Duration::from_secs(20),
        format!("Total u {WORKERS}"),
        || total() == format!("u {WORKERS}"),
    );
    let quiet_list = time_list(&busctl);

    let started = Instant::now();
    let cpu_before = cpu_seconds(pid);
    let flood = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(testkit_binary())
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
        peak_rss = peak_rss.max(memory_kib(pid).0);
        if started.elapsed() > FLOOD / 2 && reaped_in.is_none() {
            let killed = Instant::now();
            victim.kill9();
            reaped_in = emptied(&base.join("other"), killed, Duration::from_secs(30));
        }
        lists.push(time_list(&busctl));
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = flood.wait_with_output().unwrap();
    let cpu = (cpu_seconds(pid) - cpu_before) / started.elapsed().as_secs_f64();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seconds = report["seconds"].as_f64().unwrap();
    lists.sort();
    let (worst, _) = pings.watchdog_gaps(started);
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
    let out = busctl(&["call", NAME, PATH, SERVICE_INTERFACE, "ListWorkers"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}
