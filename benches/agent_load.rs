//! The agent's cost under load: 1,000 live workers each updating its status 100 times a
//! second (100,000 updates/s in all), watched at the default 1 s interval. Prints the
//! agent's CPU share of one core and its resident memory; goals: < 2 % and < 16 MiB.
//!
//! The workers are 1,000 scoreboard handles with their own ids in this one process, so
//! that the load generator's own cost stays small; to the agent they are 1,000 locked,
//! changing files, as from 1,000 processes.

#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};

use scoreboard::Scoreboard;
use support::AgentUnderTest;

const WORKERS: usize = 1_000;
const UPDATES_PER_SECOND: u32 = 100;
const MEASURE: Duration = Duration::from_secs(10);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks; nothing to list
    }
    let agent = AgentUnderTest::start();
    let dir = agent.dir();
    let mut workers: Vec<Scoreboard> = (0..WORKERS)
        .map(|i| {
            Scoreboard::builder(&dir)
                .worker_id(move || format!("w{i}"))
                .open()
                .unwrap()
        })
        .collect();
    let mut round = 0u64;
    let mut update_all = |round: u64| {
        for (i, worker) in workers.iter_mut().enumerate() {
            let status = if (i as u64 + round / 50).is_multiple_of(4) {
                format!("idle since round {round}")
            } else {
                format!("busy GET /items/{i}?round={round}")
            };
            worker.update(status).unwrap();
        }
    };
    update_all(round);
    let load_started = Instant::now();
    agent
        .notify
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut seen_all = false;
    let mut measuring: Option<(Instant, f64)> = None;
    let tick = Duration::from_secs(1) / UPDATES_PER_SECOND;
    let mut next = Instant::now();
    loop {
        round += 1;
        update_all(round);
        while let Ok(n) = agent.notify.recv(&mut buf) {
            if buf[..n].starts_with(format!("STATUS={WORKERS} workers").as_bytes()) {
                seen_all = true;
            }
        }
        if seen_all && measuring.is_none() {
            println!(
                "agent sees {WORKERS} workers after {:.2?}",
                load_started.elapsed()
            );
            measuring = Some((Instant::now(), support::cpu_seconds(agent.agent.id())));
        }
        if let Some((started, cpu_before)) = measuring
            && started.elapsed() >= MEASURE
        {
            let seconds = support::cpu_seconds(agent.agent.id()) - cpu_before;
            let share = 100.0 * seconds / started.elapsed().as_secs_f64();
            let (rss, peak) = support::memory_kib(agent.agent.id());
            println!(
                "agent with {WORKERS} workers × {UPDATES_PER_SECOND} updates/s, over {MEASURE:?}: \
                 CPU {share:.2}% of one core (goal < 2%), RSS {:.1} MiB, peak {:.1} MiB (goal < 16 MiB)",
                rss as f64 / 1024.0,
                peak as f64 / 1024.0
            );
            return;
        }
        next += tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if load_started.elapsed() > Duration::from_secs(120) {
            panic!("the agent never reported {WORKERS} workers");
        }
    }
}
