//! A running agent with a notify socket of our own, for the agent's benches.

#![allow(dead_code)] // each bench uses part of it

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct AgentUnderTest {
    pub tmp: tempfile::TempDir,
    pub notify: UnixDatagram,
    pub agent: Child,
}

impl AgentUnderTest {
    /// Starts `scoreboard-agent` (release build beside this bench) watching one service
    /// in `<tmp>/sb` with `notify = "self"` at the default 1 s interval.
    pub fn start() -> AgentUnderTest {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("agent.toml"),
            format!(
                "bus = \"none\"\nstate_directory = \"{}\"\n",
                tmp.path().display()
            ),
        )
        .unwrap();
        std::fs::create_dir(tmp.path().join("services.d")).unwrap();
        std::fs::create_dir(tmp.path().join("sb")).unwrap();
        std::fs::write(
            tmp.path().join("services.d/bench.toml"),
            format!(
                "unit = \"bench\"\ndirectory = \"{}\"\nnotify = \"self\"\n",
                tmp.path().join("sb").display()
            ),
        )
        .unwrap();
        let notify = UnixDatagram::bind(tmp.path().join("notify")).unwrap();
        // SCOREBOARD_AGENT=/path measures another build (an older one, for a before/after).
        let agent = Command::new(
            std::env::var_os("SCOREBOARD_AGENT")
                .map_or_else(|| binary("scoreboard-agent"), PathBuf::from),
        )
        .arg("--config")
        .arg(tmp.path().join("agent.toml"))
        .env("NOTIFY_SOCKET", tmp.path().join("notify"))
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("build the binaries first: cargo build --release");
        let this = AgentUnderTest { tmp, notify, agent };
        this.wait_for("STATUS=0 workers: none", Duration::from_secs(10));
        this
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("sb")
    }

    /// Waits for the datagram `expected`, skipping others.
    pub fn wait_for(&self, expected: &str, timeout: Duration) {
        self.notify.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0; 4096];
        loop {
            let n = self
                .notify
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("waiting for {expected:?}: {e}"));
            if datagram_text(&buf[..n]) == expected {
                return;
            }
        }
    }
}

impl Drop for AgentUnderTest {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
    }
}

/// A binary of this package, from the same target directory as the running bench.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} missing: run `cargo build --release` first",
        path.display()
    );
    path
}

/// A worker process publishing what it is told.
pub struct Worker(pub Child);

impl Worker {
    pub fn start(dir: &Path, status: &str) -> Worker {
        let mut child = Command::new(binary("scoreboardctl"))
            .arg("stdin-worker")
            .arg(dir)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.as_mut().unwrap(), "{status}").unwrap();
        Worker(child)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU seconds `pid` has used, all its threads: the scheduler's run time of each
/// (`/proc/PID/task/*/schedstat`, nanoseconds — not the 10 ms ticks of `stat`); 0 once
/// it is gone. Threads that already exited are not counted.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    nanos as f64 / 1e9
}

/// (VmRSS, VmHWM) of `pid`, in KiB; zeros once it is gone.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Descriptors `pid` holds open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// `program` started as systemd starts a service with a watchdog: `$WATCHDOG_PID` is
/// its own pid (a shell that sets it, then execs the program).
pub fn with_watchdog_pid(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg("export WATCHDOG_PID=$$; exec \"$0\" \"$@\"")
        .arg(program);
    command
}

/// A notify datagram's assignments as systemd reads them: sd-notify ends each one with
/// a newline, which is no part of the last value.
pub fn datagram_text(datagram: &[u8]) -> String {
    let text = String::from_utf8_lossy(datagram);
    text.strip_suffix('\n').unwrap_or(&text).to_owned()
}
