//! Processes: the programs under test, workers, other users, and what they cost.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The program `name` from the target profile directory of the running test or bench
/// (`target/debug/` beside `target/debug/deps/<test>`; `target/release/` for benches).
/// When it or `scoreboard-testkit` is not there — a bench builds only its own package's
/// programs — the workspace's programs are built first, with the cargo running the
/// test or bench and its profile: at the first program asked for, before anything is
/// timed. Integration tests of the package that builds it can use
/// `env!("CARGO_BIN_EXE_…")` instead; this is for the others.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("the running test's target directory");
    let path = profile.join(name);
    let missing = |profile: &Path| {
        [name, TESTKIT]
            .iter()
            .any(|name| !profile.join(name).exists())
    };
    if missing(profile) {
        build(profile, missing);
    }
    assert!(
        path.exists(),
        "{} missing: `cargo test --workspace` builds it, or `cargo build --workspace` \
         (--release for benches)",
        path.display()
    );
    path
}

/// This crate's program.
const TESTKIT: &str = "scoreboard-testkit";

/// Builds the workspace's programs into `profile` (`<target>/<profile>`) with the cargo
/// that started this process (`CARGO`; without it nothing is built). Tests running at
/// once build one at a time, and only the first that finds a program `missing`.
fn build(profile: &Path, missing: impl Fn(&Path) -> bool) {
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(cargo) = std::env::var_os("CARGO") else {
        return;
    };
    if !missing(profile) {
        return;
    }
    let (Some(target), Some(directory)) = (profile.parent(), profile.file_name()) else {
        return;
    };
    // Cargo's `dev` profile builds into `debug/`; every other profile (`release`, which
    // benches use, or a custom one) into a directory of its own name.
    let cargo_profile = match directory.to_str() {
        Some("debug") => "dev",
        Some(other) => other,
        None => return,
    };
    eprintln!(
        "programs missing in {}: building them (cargo build --profile {cargo_profile} --workspace --bins)",
        profile.display()
    );
    let status = Command::new(cargo)
        .args(["build", "--profile", cargo_profile, "--workspace", "--bins"])
        .arg("--target-dir")
        .arg(target)
        .stdout(Stdio::null())
        .status();
    if !matches!(status, Ok(status) if status.success()) {
        eprintln!("building the workspace's programs failed: {status:?}");
    }
}

/// The target directory the running test or bench was built in (`target/`, or wherever
/// `CARGO_TARGET_DIR` put it): `<target>/<profile>/deps/<test>` three levels up. Where
/// `packaging/build` leaves its release build (`release/`) and the packages (`debian/`,
/// `rpm/`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .expect("the running test's target directory")
        .to_path_buf()
}

/// The `scoreboard-testkit` program, whose subcommands are the workers below.
pub fn testkit_binary() -> PathBuf {
    binary(TESTKIT)
}

/// A child process killed and reaped when dropped, passing or failing (a leftover would
/// keep the test harness's output open).
pub struct Killed(pub Child);

impl Killed {
    /// Starts `command` and returns once it has said `ready` on its stdout (its first
    /// line): a child that has set up what the test needs. Panics if it says otherwise.
    pub fn spawn_ready(command: &mut Command) -> Killed {
        let mut child = Killed(command.stdout(Stdio::piped()).spawn().unwrap());
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n", "{command:?}");
        child
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Dies at once, as with `kill -9`; reaped.
    pub fn kill9(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A worker process (`scoreboard-testkit stdin-worker`) publishing what it is told.
pub struct Worker(pub Killed);

impl Worker {
    /// A worker in `dir`; it publishes nothing (has no file) until told something.
    pub fn start(dir: &Path) -> Worker {
        let child = Command::new(testkit_binary())
            .arg("stdin-worker")
            .arg(dir)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        Worker(Killed(child))
    }

    /// A worker in `dir` that has been told `status`.
    pub fn with_status(dir: &Path, status: &str) -> Worker {
        let mut worker = Worker::start(dir);
        worker.say(status);
        worker
    }

    /// Publish `status`, any text (sent JSON-encoded, so newlines and NULs too).
    pub fn say(&mut self, status: &str) {
        let line = serde_json::to_string(status).unwrap();
        let stdin = self.0.0.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
    }

    /// Dies at once, as with `kill -9`; its file stays for a reader to reap.
    pub fn kill9(&mut self) {
        self.0.kill9();
    }
}

/// `count` live workers (ids `prefix0`, `prefix1`, …; every fourth busy, the rest idle)
/// held by one `scoreboard-testkit hold-workers` process: killing it kills them all.
pub struct Holder(Killed);

impl Holder {
    /// Returns once every worker has published its status.
    pub fn start(dir: &Path, count: usize, prefix: &str) -> Holder {
        // Its stdin stays open: it holds its workers until then.
        Holder(Killed::spawn_ready(
            Command::new(testkit_binary())
                .args(["hold-workers", "--prefix", prefix, "--count"])
                .arg(count.to_string())
                .arg("--dir")
                .arg(dir)
                .stdin(Stdio::piped()),
        ))
    }

    /// Every worker dies at once, as with `kill -9`.
    pub fn kill9(&mut self) {
        self.0.kill9();
    }
}

/// How long after `since` the scoreboard `dir` was first found empty (a killed worker's
/// file reaped, say), looking every 200 µs for at most `within`.
pub fn emptied(dir: &Path, since: Instant, within: Duration) -> Option<Duration> {
    let empty = || {
        let mut entries = std::fs::read_dir(dir).unwrap();
        entries.next().is_none().then(|| since.elapsed())
    };
    crate::poll_every(Duration::from_micros(200), within, empty)
}

/// Whether this process may act as other users: root, with `setpriv` (util-linux) to
/// become them. When not, says that `what` is skipped and why — or fails under
/// `CI=true`, where nothing may be skipped.
pub fn as_root_or_skip(what: &str) -> bool {
    let reason = if !rustix::process::geteuid().is_root() {
        "it needs root"
    } else if Command::new("setpriv").arg("--version").output().is_err() {
        "setpriv (util-linux) is missing"
    } else {
        return true;
    };
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "{what} must run under CI=true, but {reason}"
    );
    eprintln!("skipping {what}: {reason}");
    false
}

/// A Perl `script` run as uid and gid 65534 in `dir`, killed when dropped: an attacker
/// who owns a scoreboard directory.
pub fn perl_as_nobody(dir: &Path, script: &str) -> Killed {
    let child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["/usr/bin/perl", "-e", script])
        .current_dir(dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Killed(child)
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

/// Descriptors `pid` holds open; 0 once it is gone.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}
