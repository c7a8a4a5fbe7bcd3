//! Worker processes for tests and benchmarks, behind hidden `scoreboardctl`
//! subcommands so that the installed package carries them into a real systemd:
//! `stdin-worker`, `hold-workers`, `test-pool`, `test-pool-worker`, and `test-flood`,
//! a hostile bus client.

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
pub fn hold_workers(dir: &Path, count: usize, prefix: &str) -> anyhow::Result<()> {
    crate::agent::raise_fd_limit();
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

/// `scoreboardctl test-pool`: a service's main process for tests. Starts `workers`
/// worker processes and waits for them; none is restarted when it dies.
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
/// JSON string, so any bytes can be asked for), or "idle" when there is none.
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

/// What a [`flood`] got back.
#[derive(Debug, Default, serde::Serialize)]
pub struct FloodReport {
    /// Calls answered with the workers.
    pub replies: u64,
    /// Calls refused with LimitsExceeded.
    pub limited: u64,
    /// Calls refused with AccessDenied.
    pub denied: u64,
    /// Other errors (timeouts, disconnections).
    pub failed: u64,
    /// How long it ran, in seconds.
    pub seconds: f64,
}

/// `scoreboardctl test-flood`: `clients` connections to the bus, each keeping
/// `in_flight` `ListWorkers` calls to `path` in flight for `seconds` — what a hostile
/// local user does to a bus service. Prints a JSON [`FloodReport`].
pub async fn flood(
    bus: crate::config::Bus,
    path: &str,
    clients: usize,
    in_flight: usize,
    seconds: u64,
) -> anyhow::Result<FloodReport> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let started = std::time::Instant::now();
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        let connection = match bus {
            crate::config::Bus::System => zbus::Connection::system().await?,
            _ => zbus::Connection::session().await?,
        };
        connections.push(connection);
    }
    let mut report = FloodReport::default();
    let mut calls = FuturesUnordered::new();
    let call = |connection: zbus::Connection| async move {
        let proxy = crate::bus::ServiceProxy::builder(&connection)
            .path(path.to_owned())
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        proxy.list_workers().await.map(|workers| workers.len())
    };
    for connection in &connections {
        for _ in 0..in_flight {
            calls.push(call(connection.clone()));
        }
    }
    let mut next = 0;
    while let Some(result) = calls.next().await {
        match result {
            Ok(_) => report.replies += 1,
            Err(zbus::Error::FDO(e)) => match *e {
                zbus::fdo::Error::LimitsExceeded(_) => report.limited += 1,
                zbus::fdo::Error::AccessDenied(_) => report.denied += 1,
                _ => report.failed += 1,
            },
            Err(_) => report.failed += 1,
        }
        if tokio::time::Instant::now() < until {
            calls.push(call(connections[next % connections.len()].clone()));
            next += 1;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
