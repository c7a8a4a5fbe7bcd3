//! Worker processes: `stdin-worker`, `hold-workers`, `test-pool` and its workers.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use scoreboard::Scoreboard;

/// `stdin-worker DIR`: publishes each line of stdin as its status (a line that is a
/// JSON string is decoded, so a test can publish any bytes, newlines included) and
/// exits, removing its file, at EOF.
pub fn stdin_worker(dir: &Path) -> anyhow::Result<()> {
    let mut scoreboard = Scoreboard::open(dir)?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let status = serde_json::from_str::<String>(&line).unwrap_or(line);
        scoreboard.update(status)?;
    }
    Ok(())
}

/// `hold-workers`: `count` live workers (ids `prefix0`, `prefix1`, …; every fourth
/// busy) in this one process, until stdin closes — many workers, one kill to end them.
/// Prints `ready` once they all are.
pub fn hold_workers(dir: &Path, count: usize, prefix: &str) -> anyhow::Result<()> {
    // Each worker holds its file and its directory open: as many as the hard limit allows.
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        ..limit
    };
    if let Err(e) = setrlimit(Resource::Nofile, raised) {
        eprintln!("scoreboard-testkit: raising the open-file limit: {e}");
    }
    let mut workers = Vec::with_capacity(count);
    for i in 0..count {
        let id = format!("{prefix}{i}");
        let mut worker = Scoreboard::builder(dir)
            .worker_id(move || id.clone())
            .open()?;
        worker.update(if i % 4 == 0 { "busy GET /" } else { "idle" })?;
        workers.push(worker);
    }
    println!("ready");
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    Ok(())
}

/// `test-pool`: a service's main process for tests. Starts `workers` worker processes
/// (this executable's `test-pool-worker`) and waits for them; none is restarted when it
/// dies.
pub fn test_pool(exe: &Path, workers: usize, dir: &Path, control: &Path) -> anyhow::Result<()> {
    let mut children = Vec::with_capacity(workers);
    for index in 0..workers {
        let child = Command::new(exe)
            .arg("test-pool-worker")
            .arg("--dir")
            .arg(dir)
            .arg("--control")
            .arg(control)
            .arg("--index")
            .arg(index.to_string())
            .stdin(Stdio::null())
            .spawn()
            .context("spawning a test-pool worker")?;
        children.push(child);
    }
    for mut child in children {
        let _ = child.wait();
    }
    Ok(())
}

/// One `test-pool` worker: every 50 ms, publishes line `index` of the control file (a
/// JSON string, so any bytes can be asked for), or "idle" when there is none. Dies
/// with its pool.
pub fn test_pool_worker(dir: &Path, control: &Path, index: usize) -> anyhow::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .context("prctl(PR_SET_PDEATHSIG)")?;
    let mut scoreboard = Scoreboard::open(dir)?;
    loop {
        let wanted = std::fs::read_to_string(control)
            .ok()
            .and_then(|text| text.lines().nth(index).map(str::to_owned))
            .and_then(|line| serde_json::from_str::<String>(&line).ok())
            .unwrap_or_else(|| "idle".to_owned());
        scoreboard.update(wanted)?;
        std::thread::sleep(Duration::from_millis(50));
    }
}
