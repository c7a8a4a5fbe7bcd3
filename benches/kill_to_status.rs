//! From `kill -9` of a worker to the `STATUS=` datagram that no longer counts it, through
//! a real agent process (inotify, sweep, notify socket). The goal is a median of 50 ms;
//! the agent's sampling interval is the default 1 s, so this is the event path.
//!
//! The workers are `scoreboard-testkit` processes; programs missing from
//! `target/release/` are built first.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use scoreboard_testkit::{AgentUnderTest, Worker, binary};

fn kill_to_status(c: &mut Criterion) {
    let agent = AgentUnderTest::start(&binary("scoreboard-agent"));
    let dir = agent.scoreboard();
    // Two workers stay; the third is started and killed in each iteration.
    let _stay: Vec<Worker> = (0..2).map(|_| Worker::with_status(&dir, "idle")).collect();
    agent
        .notify
        .expect("STATUS=2 workers: 2 idle", Duration::from_secs(10));

    let mut group = c.benchmark_group("agent");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("kill_9_to_status_datagram", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let mut victim = Worker::with_status(&dir, "busy GET /victim");
                agent
                    .notify
                    .expect("STATUS=3 workers: 2 idle, 1 busy", Duration::from_secs(10));
                // Past the 100 ms that separate two membership messages, so that what is
                // measured is the death alone.
                std::thread::sleep(Duration::from_millis(150));
                let killed = Instant::now();
                // Reaped after the clock stops, when `victim` is dropped.
                victim.0.0.kill().unwrap();
                agent
                    .notify
                    .expect("STATUS=2 workers: 2 idle", Duration::from_secs(10));
                total += killed.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, kill_to_status);
criterion_main!(benches);
