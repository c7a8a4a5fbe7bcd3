//! `scoreboardctl demo`: a live pool of real worker processes, no root, no systemd.
//!
//! The demo spawns worker processes (this same executable, hidden `demo-worker`
//! subcommand) in a temporary directory. Each cycles through idle and busy statuses
//! with realistic request lines through the [`scoreboard`] crate. Now and then one is
//! killed with SIGKILL — leaving its file behind, as a crashed worker does — and a new
//! one is spawned; the next sweep reaps the dead worker's file. The screen shows the
//! `STATUS=` line the agent would send to systemd (computed by the agent's own
//! [`crate::core::pool`] code), the live table, and what happened.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use scoreboard::{DirReader, ReadOptions, Scoreboard};

use crate::config::{NotifyMode, Service, StateRule};
use crate::ctl::render;

/// What the demo does and for how long.
#[derive(Debug, Clone)]
pub struct Options {
    /// How many worker processes to keep running.
    pub workers: usize,
    /// Stop after this long; `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
    /// How often the table is redrawn.
    pub refresh: Duration,
    /// How often a worker is killed with SIGKILL and replaced.
    pub kill_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: 4,
            duration: None,
            refresh: Duration::from_millis(500),
            kill_every: Duration::from_secs(4),
        }
    }
}

/// `scoreboardctl demo`: `workers` processes of this very executable (its hidden
/// `demo-worker` command), shown on stdout until Ctrl-C, SIGTERM or `duration`.
pub fn run_here(workers: usize, duration: Option<std::time::Duration>) -> anyhow::Result<()> {
    let stop = super::watch::stop_on_interrupt()?;
    let exe = std::env::current_exe().context("finding this executable to spawn workers")?;
    let options = Options {
        workers,
        duration,
        ..Options::default()
    };
    run(
        &options,
        &|dir, seed| spawn_worker_process(&exe, dir, seed),
        &mut std::io::stdout().lock(),
        &stop,
    )
}

/// Runs the demo until `stop` is set or the duration passes. `spawn_worker` starts one
/// worker process writing into the given directory with the given random seed.
pub fn run(
    options: &Options,
    spawn_worker: &dyn Fn(&Path, u64) -> std::io::Result<Child>,
    out: &mut dyn Write,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("scoreboard-demo.")
        .tempdir()
        .context("creating the demo's temporary directory")?;
    let dir = tmp.path().join("scoreboard");
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut pool = Pool {
        dir: &dir,
        spawn_worker,
        children: Vec::new(),
        events: VecDeque::new(),
        seed: seed_from_clock(),
    };
    let result = pool.run(options, out, stop);
    pool.stop_all();
    result
}

struct Pool<'a> {
    dir: &'a Path,
    spawn_worker: &'a dyn Fn(&Path, u64) -> std::io::Result<Child>,
    children: Vec<Child>,
    events: VecDeque<String>,
    seed: u64,
}

impl Pool<'_> {
    fn run(
        &mut self,
        options: &Options,
        out: &mut dyn Write,
        stop: &AtomicBool,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let tty = std::io::stdout().is_terminal();
        for _ in 0..options.workers {
            self.spawn()?;
        }
        // Give the first workers a moment to publish before the first frame.
        std::thread::sleep(Duration::from_millis(100));
        let mut reader = DirReader::open(self.dir, ReadOptions::default())?;
        // The agent's own logic, on the demo's directory.
        let service = demo_service(self.dir);
        let mut pool = crate::core::pool::Pool::new(&service);
        let mut last_kill = Instant::now();
        while !stop.load(Ordering::Relaxed)
            && options.duration.is_none_or(|d| started.elapsed() < d)
        {
            if last_kill.elapsed() >= options.kill_every && !self.children.is_empty() {
                self.kill_one()?;
                self.spawn()?;
                last_kill = Instant::now();
            }
            let mut snapshot = reader.sweep()?;
            let now = Instant::now();
            pool.observe(&mut snapshot, now);
            let line = pool.status_line(now);
            for id in &snapshot.reaped {
                self.event(format!("reaped the file worker {id} left behind"));
            }
            for skipped in &snapshot.skipped {
                self.event(skipped.to_string());
            }
            let mut frame = String::new();
            if tty {
                frame.push_str("\x1b[H\x1b[2J");
            }
            frame.push_str(&format!(
                "scoreboard demo: {} workers in {} (Ctrl-C to quit)\n\n",
                snapshot.workers.len(),
                self.dir.display()
            ));
            frame.push_str(&format!("systemd would show:  Status: \"{line}\"\n\n"));
            frame.push_str(&render::worker_table(&pool.workers(now)));
            frame.push_str("\nrecent events:\n");
            for event in &self.events {
                frame.push_str(&format!("  {event}\n"));
            }
            if !tty {
                frame.push('\n');
            }
            out.write_all(frame.as_bytes())?;
            out.flush()?;
            sleep_unless_stopped(options.refresh, stop);
        }
        Ok(())
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.seed = xorshift(self.seed);
        let child = (self.spawn_worker)(self.dir, self.seed).context("spawning a demo worker")?;
        self.event(format!("spawned worker {}", child.id()));
        self.children.push(child);
        Ok(())
    }

    fn kill_one(&mut self) -> anyhow::Result<()> {
        self.seed = xorshift(self.seed);
        let mut victim = self
            .children
            .swap_remove(self.seed as usize % self.children.len());
        let killed = victim.kill();
        victim.wait()?;
        killed.context("sending SIGKILL to a demo worker")?;
        self.event(format!("killed worker {} with SIGKILL", victim.id()));
        Ok(())
    }

    fn event(&mut self, event: String) {
        const KEPT: usize = 6;
        if self.events.len() == KEPT {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn stop_all(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The demo pool as the agent would be configured for it: default rules, and workers
/// busy on one request for over two seconds count as stuck.
fn demo_service(dir: &Path) -> Service {
    Service {
        source: "scoreboardctl demo".into(),
        unit: "demo.service".into(),
        directory: dir.to_owned(),
        state: StateRule::FirstWord,
        idle_states: vec!["idle".into()],
        stuck_after: Some(Duration::from_secs(2)),
        summary: crate::config::DEFAULT_SUMMARY.into(),
        notify: NotifyMode::None,
        max_workers: scoreboard::DEFAULT_MAX_WORKERS,
        max_status_bytes: crate::config::SERVICE_MAX_STATUS_BYTES,
        health_actions: Default::default(),
    }
}

fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) {
    let until = Instant::now() + duration;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// The `demo-worker` process: cycles through idle and busy statuses until killed.
pub fn worker(dir: &Path, seed: u64) -> anyhow::Result<()> {
    // Die with the demo, even when the demo itself is killed with SIGKILL.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .context("prctl(PR_SET_PDEATHSIG)")?;
    let mut scoreboard = Scoreboard::open(dir)?;
    let mut rng = seed.max(1);
    let mut request = 0u64;
    loop {
        scoreboard.update("idle")?;
        rng = xorshift(rng);
        std::thread::sleep(Duration::from_millis(200 + rng % 1300));
        rng = xorshift(rng);
        request += 1;
        let status = busy_status(rng, request);
        scoreboard.update(status)?;
        rng = xorshift(rng);
        std::thread::sleep(Duration::from_millis(100 + rng % 2000));
    }
}

/// A plausible `busy` line: method, path, client address.
fn busy_status(rng: u64, request: u64) -> String {
    let client = format!("10.0.{}.{}", (rng >> 8) % 256, (rng >> 16) % 254 + 1);
    match rng % 5 {
        0 => format!("busy POST /api/orders {client}"),
        1 => format!(
            "busy GET /products/{}?page={} {client}",
            rng % 900 + 100,
            request % 7 + 1
        ),
        2 => format!("busy GET /static/app.{:08x}.js {client}", rng as u32),
        3 => format!("busy PUT /api/carts/{} {client}", rng % 10_000),
        _ => format!("busy GET /search?q=item+{} {client}", rng % 97),
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn seed_from_clock() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    nanos | 1
}

/// Starts `exe demo-worker DIR --seed SEED`, with stdio detached from the terminal.
pub fn spawn_worker_process(exe: &Path, dir: &Path, seed: u64) -> std::io::Result<Child> {
    Command::new(exe)
        .arg("demo-worker")
        .arg(dir)
        .arg("--seed")
        .arg(seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_statuses_look_like_requests() {
        let mut rng = 42;
        for request in 0..50 {
            rng = xorshift(rng);
            let status = busy_status(rng, request);
            assert!(status.starts_with("busy "), "{status}");
            assert!(status.split(' ').count() == 4, "{status}");
        }
    }
}
