//! The agent's cost under load, at the default 1 s interval, in two shapes:
//!
//! * **busy**: 1,000 live workers each updating its status 100 times a second (100,000
//!   updates/s in all). Goals: < 2 % of a core and < 16 MiB.
//! * **large**: 10,000 live workers, each updating every 10 s (1,000 updates/s). The
//!   agent's CPU per worker per sweep is set beside what a bare `DirReader` sweep of the
//!   same directory costs in this process (thread CPU time, same load, same run): the
//!   agent's pool, summary, metrics and bookkeeping should cost little beside the
//!   reading itself. Goal: agent ≤ 1.3× the `DirReader` sweep per worker.
//!
//! The workers are scoreboard handles with their own ids in this one process, so that
//! the load generator's own cost stays small; to the agent they are locked, changing
//! files, as from as many processes. Updates go through the shared mapping, so they
//! raise no inotify events: the agent's work is its sweeps.
//!
//! Programs missing from `target/release/` are built first.

use std::time::{Duration, Instant};

use scoreboard::{DirReader, ReadOptions, Scoreboard};
use scoreboard_testkit::{AgentUnderTest, Killed, binary, cpu_seconds, memory_kib};

const MEASURE: Duration = Duration::from_secs(20);

struct Load {
    name: &'static str,
    workers: usize,
    /// Rounds per second; each round updates `workers / spread` workers.
    rounds_per_second: u32,
    spread: usize,
}

/// Handles per holder process: each holds its directory and its file open, so 10,000
/// workers in one process would pass the usual 20,000-descriptor hard limit.
const PER_HOLDER: usize = 5_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo test --benches` asks; nothing to list
    }
    if args.get(1).map(String::as_str) == Some("hold") {
        let number = |i: usize| args[i].parse::<usize>().unwrap();
        hold(&args[2], number(3)..number(4), number(5), number(6) as u32);
        return;
    }
    let only = args.get(1).filter(|a| !a.starts_with('-'));
    let loads = [
        Load {
            name: "busy",
            workers: 1_000,
            rounds_per_second: 100,
            spread: 1,
        },
        Load {
            name: "large",
            workers: 10_000,
            rounds_per_second: 10,
            spread: 100,
        },
    ];
    for load in loads {
        if only.is_none_or(|name| name == load.name) {
            run(&load);
        }
    }
}

/// A holder process: workers `ids` in `dir`, each round updating one in `spread`, until
/// killed.
fn hold(dir: &str, ids: std::ops::Range<usize>, spread: usize, rounds_per_second: u32) {
    let mut workers: Vec<(usize, Scoreboard)> = ids
        .map(|i| {
            let worker = Scoreboard::builder(dir)
                .worker_id(move || format!("w{i}"))
                .open()
                .unwrap();
            (i, worker)
        })
        .collect();
    let tick = Duration::from_secs(1) / rounds_per_second;
    let mut next = Instant::now();
    for round in 0u64.. {
        for (i, worker) in &mut workers {
            let i = *i as u64;
            if round > 0 && i % spread as u64 != round % spread as u64 {
                continue;
            }
            let status = if (i + round / 50).is_multiple_of(4) {
                format!("idle since round {round}")
            } else {
                format!("busy GET /items/{i}?round={round}")
            };
            worker.update(status).unwrap();
        }
        next += tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

fn run(load: &Load) {
    // SCOREBOARD_AGENT=/path measures another build, for comparing two builds.
    let exe = std::env::var_os("SCOREBOARD_AGENT")
        .map_or_else(|| binary("scoreboard-agent"), std::path::PathBuf::from);
    let agent = AgentUnderTest::start(&exe);
    let dir = agent.scoreboard();
    let exe = std::env::current_exe().unwrap();
    let _holders: Vec<Killed> = (0..load.workers)
        .step_by(PER_HOLDER)
        .map(|start| {
            let holder = std::process::Command::new(&exe)
                .arg("hold")
                .arg(&dir)
                .arg(start.to_string())
                .arg((start + PER_HOLDER).min(load.workers).to_string())
                .arg(load.spread.to_string())
                .arg(load.rounds_per_second.to_string())
                .spawn()
                .unwrap();
            Killed(holder)
        })
        .collect();
    let load_started = Instant::now();
    let all_seen = format!("STATUS={} workers", load.workers);
    loop {
        if let Some(message) = agent.notify.next(Duration::from_secs(1))
            && message.starts_with(&all_seen)
        {
            break;
        }
        assert!(
            load_started.elapsed() < Duration::from_secs(120),
            "the agent never reported {} workers",
            load.workers
        );
    }
    println!(
        "[{}] agent sees {} workers after {:.2?}",
        load.name,
        load.workers,
        load_started.elapsed()
    );
    // The floor: a bare DirReader sweeping the same directory under the same load, at
    // the agent's pace (once a second: caches as cold as the agent finds them), timed on
    // this thread's CPU clock — in the same window as the agent is measured, so that
    // both see the same machine.
    let mut reader = DirReader::open(&dir, ReadOptions::default()).unwrap();
    reader.sweep().unwrap(); // opens every file once, as the agent did at start
    let mut reading = Duration::ZERO;
    let mut sweeps = 0u32;
    let cpu_before = cpu_seconds(agent.agent.pid());
    let started = Instant::now();
    while started.elapsed() < MEASURE {
        let before = thread_cpu();
        let snapshot = reader.sweep().unwrap();
        reading += thread_cpu() - before;
        assert_eq!(snapshot.workers.len(), load.workers);
        sweeps += 1;
        let next = started + Duration::from_secs(u64::from(sweeps));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let seconds = cpu_seconds(agent.agent.pid()) - cpu_before;
    let agent_share = seconds / started.elapsed().as_secs_f64();
    let (rss, peak) = memory_kib(agent.agent.pid());
    println!(
        "[{}] agent with {} workers, {} updates/s, over {MEASURE:?}: CPU {:.2}% of one core, \
         RSS {:.1} MiB, peak {:.1} MiB",
        load.name,
        load.workers,
        load.workers as u32 * load.rounds_per_second / load.spread as u32,
        100.0 * agent_share,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let floor_per_worker = reading.as_secs_f64() / f64::from(sweeps) / load.workers as f64;
    // The agent sweeps once per 1 s interval.
    let agent_per_worker = agent_share / load.workers as f64;
    println!(
        "[{}] per worker per sweep: agent {:.2} µs, DirReader sweep {:.2} µs → {:.2}× (goal ≤ 1.3×)",
        load.name,
        agent_per_worker * 1e6,
        floor_per_worker * 1e6,
        agent_per_worker / floor_per_worker
    );
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
