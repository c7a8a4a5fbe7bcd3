//! The agent on D-Bus: `ListWorkers` for 10,000 workers (goal: under 50 ms), and the
//! agent's CPU while idle with and without serving the bus (goal: no extra CPU, since
//! the agent never polls for bus traffic). Runs a private `dbus-daemon`.

use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};

#[path = "support.rs"]
mod support;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{Bus, Holder, Killed};

/// An agent watching `dir` on the given bus ("none" or "session" at `address`).
fn agent(tmp: &std::path::Path, dir: &std::path::Path, bus: &str, address: &str) -> Killed {
    std::fs::create_dir_all(tmp.join("services.d")).unwrap();
    std::fs::write(
        tmp.join("agent.toml"),
        format!("bus = \"{bus}\"\nstate_directory = \"{}\"\n", tmp.display()),
    )
    .unwrap();
    std::fs::write(
        tmp.join("services.d/web.toml"),
        format!(
            "unit = \"web\"\nnotify = \"none\"\ndirectory = \"{}\"\n",
            dir.display()
        ),
    )
    .unwrap();
    Killed(
        Command::new(support::binary("scoreboard-agent"))
            .arg("--config")
            .arg(tmp.join("agent.toml"))
            .env("DBUS_SESSION_BUS_ADDRESS", address)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    )
}

/// Nanoseconds the process has run on a CPU (/proc/PID/schedstat).
fn cpu_ns(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    stat.split_whitespace().next().unwrap().parse().unwrap()
}

fn idle_cpu(bus: &str) -> f64 {
    let private = Bus::session();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    std::fs::create_dir(&dir).unwrap();
    let agent = agent(tmp.path(), &dir, bus, &private.address);
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu_ns(agent.0.id());
    let window = Duration::from_secs(10);
    std::thread::sleep(window);
    (cpu_ns(agent.0.id()) - before) as f64 / window.as_secs_f64() / 1e3
}

fn list_workers(c: &mut Criterion) {
    let private = Bus::session();
    let address = private.address.clone();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("web");
    // Each holder keeps a directory descriptor and a file per worker: two of them stay
    // under a 20,000-descriptor limit.
    let scoreboardctl = support::binary("scoreboardctl");
    let _holders = [
        Holder::start(&scoreboardctl, &dir, 5_000, "a"),
        Holder::start(&scoreboardctl, &dir, 5_000, "b"),
    ];
    let _agent = agent(tmp.path(), &dir, "session", &address);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connection = runtime
        .block_on(zbus::connection::Builder::address(address.as_str()).build())
        .unwrap();
    let call = || {
        runtime.block_on(async {
            let reply = connection
                .call_method(
                    Some("io.scoreboard.Agent1"),
                    "/io/scoreboard/Agent1/service/web_2eservice",
                    Some("io.scoreboard.Agent1.Service"),
                    "ListWorkers",
                    &(),
                )
                .await?;
            let workers: Vec<(String, String, String, f64, bool)> = reply.body().deserialize()?;
            zbus::Result::Ok(workers.len())
        })
    };
    let started = Instant::now();
    while call().unwrap_or(0) != 10_000 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the agent never saw 10,000 workers"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
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
