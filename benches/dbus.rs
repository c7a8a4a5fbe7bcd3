//! The agent on D-Bus: `ListWorkers` for 10,000 workers (goal: under 50 ms), and the
//! agent's CPU while idle with and without serving the bus (goal: no extra CPU, since
//! the agent never polls for bus traffic). Runs a private `dbus-daemon`.
//!
//! Programs missing from `target/release/` are built first.

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use scoreboard_testkit::bus;
use scoreboard_testkit::{Agent, AgentDir, Bus, Holder, binary, wait_until};

/// An agent watching `scoreboard` on the given bus ("none" or "session" at `address`).
fn agent(dir: &AgentDir, scoreboard: &Path, address: &str) -> Agent {
    dir.service("web", scoreboard, "notify = \"none\"\n");
    Agent::spawn(
        dir.agent_command(&binary("scoreboard-agent"))
            .env("DBUS_SESSION_BUS_ADDRESS", address),
    )
}

/// Nanoseconds the process has run on a CPU (/proc/PID/schedstat).
fn cpu_ns(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    stat.split_whitespace().next().unwrap().parse().unwrap()
}

fn idle_cpu(bus: &str) -> f64 {
    let private = Bus::session();
    let dir = AgentDir::new(&format!("bus = \"{bus}\"\n"));
    std::fs::create_dir(dir.path("web")).unwrap();
    let agent = agent(&dir, &dir.path("web"), &private.address);
    // Past its start.
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu_ns(agent.pid());
    let window = Duration::from_secs(10);
    std::thread::sleep(window);
    (cpu_ns(agent.pid()) - before) as f64 / window.as_secs_f64() / 1e3
}

fn list_workers(c: &mut Criterion) {
    let private = Bus::session();
    let address = private.address.clone();
    let dir = AgentDir::new("bus = \"session\"\n");
    let web = dir.path("web");
    // Each holder keeps a directory descriptor and a file per worker: two of them stay
    // under a 20,000-descriptor limit.
    let _holders = [
        Holder::start(&web, 5_000, "a"),
        Holder::start(&web, 5_000, "b"),
    ];
    let _agent = agent(&dir, &web, &address);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connection = runtime
        .block_on(zbus::connection::Builder::address(address.as_str()).build())
        .unwrap();
    let call = || {
        runtime.block_on(bus::list_workers(
            &connection,
            "/io/scoreboard/Agent1/service/web_2eservice",
        ))
    };
    wait_until(Duration::from_secs(60), "10,000 workers listed", || {
        call().unwrap_or(0) == 10_000
    });
    let mut group = c.benchmark_group("dbus");
    group.sample_size(20);
    group.bench_function("list_workers_10000", |b| {
        b.iter(|| assert_eq!(call().unwrap(), 10_000))
    });
    group.finish();
}

criterion_group!(benches, list_workers);

fn main() {
    if !std::env::args().any(|a| a == "--list") {
        let without = idle_cpu("none");
        let with = idle_cpu("session");
        println!(
            "idle agent CPU: {without:.1} µs/s without a bus, {with:.1} µs/s serving the bus \
             (1 sampling tick per second either way)"
        );
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
