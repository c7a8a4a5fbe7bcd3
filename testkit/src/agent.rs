//! The agent under test: its configuration, its process, and the notify socket it
//! reports to in place of systemd's.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Killed;

/// A temporary directory holding an agent's configuration (`agent.toml` and
/// `services.d/`) and its state directory (`state/`), with room beside them for what a
/// test adds: scoreboards, sockets, logs. Removed when dropped.
pub struct AgentDir {
    tmp: tempfile::TempDir,
}

impl AgentDir {
    /// `agent.toml` holding `settings` (e.g. `bus = "none"\ninterval = "200ms"\n`) and
    /// `state_directory`, and an empty `services.d/`.
    pub fn new(settings: &str) -> AgentDir {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::create_dir(tmp.path().join("services.d")).unwrap();
        let agent_toml = format!("state_directory = \"{}\"\n{settings}", state.display());
        std::fs::write(tmp.path().join("agent.toml"), agent_toml).unwrap();
        AgentDir { tmp }
    }

    /// Appends `toml` to `agent.toml`: settings that name paths inside the directory
    /// (a `[metrics]` textfile), known once it exists.
    pub fn append(&self, toml: &str) -> &AgentDir {
        let mut text = std::fs::read_to_string(self.config()).unwrap();
        text.push_str(toml);
        std::fs::write(self.config(), text).unwrap();
        self
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// `relative` in the directory.
    pub fn path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.tmp.path().join(relative)
    }

    /// The `agent.toml`, for `--config`.
    pub fn config(&self) -> PathBuf {
        self.path("agent.toml")
    }

    /// Watches `unit`'s scoreboard `directory`: writes `services.d/<unit>.toml` with
    /// `unit`, `directory` and `settings` (e.g. `notify = "none"\n`).
    pub fn service(&self, unit: &str, directory: &Path, settings: &str) -> &AgentDir {
        let toml = format!(
            "unit = \"{unit}\"\ndirectory = \"{}\"\n{settings}",
            directory.display()
        );
        std::fs::write(self.path(format!("services.d/{unit}.toml")), toml).unwrap();
        self
    }

    /// `exe --config <agent.toml>` with nothing inherited that would change what the agent
    /// does (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `JOURNAL_STREAM`, the bus addresses) and
    /// `RUST_LOG=warn`; the caller adds its own. As systemd does, `$WATCHDOG_PID` names
    /// the agent (a shell sets it to its own pid, then execs the agent in its place), so
    /// a caller's `WATCHDOG_USEC` is meant for it.
    pub fn agent_command(&self, exe: &Path) -> Command {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg("export WATCHDOG_PID=$$; exec \"$0\" \"$@\"")
            .arg(exe)
            .arg("--config")
            .arg(self.config())
            .env("RUST_LOG", "warn");
        for inherited in [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "JOURNAL_STREAM",
            "DBUS_SESSION_BUS_ADDRESS",
            "DBUS_SYSTEM_BUS_ADDRESS",
        ] {
            command.env_remove(inherited);
        }
        command
    }
}

/// A running agent, killed when dropped. Started with [`Agent::spawn_logged`], its log
/// is printed when it is dropped during a panic: a failing test shows what the agent said.
pub struct Agent {
    process: Killed,
    log: Option<PathBuf>,
}

impl Agent {
    /// Starts `command` (see [`AgentDir::agent_command`]), its stderr inherited.
    pub fn spawn(command: &mut Command) -> Agent {
        Agent {
            process: Killed(command.spawn().expect("starting the agent")),
            log: None,
        }
    }

    /// Starts `command` with its stderr written to `log`.
    pub fn spawn_logged(command: &mut Command, log: &Path) -> Agent {
        command.stderr(std::fs::File::create(log).unwrap());
        let mut agent = Agent::spawn(command);
        agent.log = Some(log.to_owned());
        agent
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits for it to exit.
    pub fn wait(&mut self) -> ExitStatus {
        self.process.0.wait().unwrap()
    }

    /// Whether it still runs (a zombie does not).
    pub fn running(&mut self) -> bool {
        self.process.0.try_wait().unwrap().is_none()
    }

    /// Dies at once, as with `kill -9`.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(log) = self.log.as_ref().filter(|_| std::thread::panicking()) {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            eprintln!("--- agent log ---\n{text}--- end of agent log ---");
        }
    }
}

/// An agent watching one service, `bench`, whose scoreboard is `<dir>/sb`, with
/// `notify = "self"`: each summary it sends is a datagram on `notify`. What the
/// event-path benches measure.
pub struct AgentUnderTest {
    /// Its configuration.
    pub dir: AgentDir,
    /// Where it reports.
    pub notify: NotifySocket,
    /// The process.
    pub agent: Agent,
}

impl AgentUnderTest {
    /// `exe` at the default 1 s interval, without a bus; returns once it has reported the
    /// empty pool.
    pub fn start(exe: &Path) -> AgentUnderTest {
        let dir = AgentDir::new("bus = \"none\"\n");
        std::fs::create_dir(dir.path("sb")).unwrap();
        dir.service("bench", &dir.path("sb"), "notify = \"self\"\n");
        let notify = NotifySocket::bind(&dir.path("notify"));
        let agent = Agent::spawn(dir.agent_command(exe).env("NOTIFY_SOCKET", notify.path()));
        notify.expect("STATUS=0 workers: none", Duration::from_secs(10));
        AgentUnderTest { dir, notify, agent }
    }

    /// The service's scoreboard directory.
    pub fn scoreboard(&self) -> PathBuf {
        self.dir.path("sb")
    }
}

/// A datagram's assignments as systemd reads them: sd-notify ends each one with a
/// newline, which is no part of the last value.
pub fn datagram_text(datagram: &[u8]) -> String {
    let text = String::from_utf8(datagram.to_vec()).expect("systemd wants UTF-8");
    match text.strip_suffix('\n') {
        Some(trimmed) => trimmed.to_owned(),
        None => text,
    }
}

/// A notify socket of our own, where an agent started with `NOTIFY_SOCKET` pointing at
/// it sends what it would send systemd.
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    /// Binds `path`.
    pub fn bind(path: &Path) -> NotifySocket {
        NotifySocket {
            socket: UnixDatagram::bind(path).unwrap(),
            path: path.to_owned(),
        }
    }

    /// Its path, for `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next datagram, or `None` after `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(datagram_text(&buf[..n]))
    }

    /// Reads datagrams until one equals `expected`; returns how long that took. Every
    /// `STATUS=` seen on the way is checked to be a single assignment.
    pub fn expect(&self, expected: &str, within: Duration) -> Duration {
        let started = Instant::now();
        let mut seen = Vec::new();
        while let Some(left) = within.checked_sub(started.elapsed()) {
            let Some(message) = self.next(left) else {
                break;
            };
            if message.starts_with("STATUS=") {
                assert!(!message.contains('\n'), "an injected line in {message:?}");
            }
            if message == expected {
                return started.elapsed();
            }
            seen.push(message);
        }
        panic!("no {expected:?} within {within:?}; saw {seen:#?}");
    }

    /// Asserts that nothing arrives for `quiet`.
    pub fn expect_silence(&self, quiet: Duration) {
        if let Some(message) = self.next(quiet) {
            panic!("expected silence, got {message:?}");
        }
    }

    /// Every datagram from now on, gathered with when it arrived by a thread of its own
    /// (so the agent is never kept waiting, however long the test looks elsewhere).
    pub fn record(&self) -> Recorder {
        let socket = self.socket.try_clone().unwrap();
        socket.set_read_timeout(None).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = datagram_text(&buf[..n]);
                sink.lock().unwrap().push((Instant::now(), text));
            }
        });
        Recorder { seen }
    }
}

/// The datagrams a [`NotifySocket::record`] thread gathered.
pub struct Recorder {
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Recorder {
    /// Waits until a datagram equal to `expected` has arrived since `since`; returns when
    /// it arrived, counted from `since`.
    pub fn wait_for(&self, expected: &str, since: Instant, within: Duration) -> Duration {
        let arrived = crate::poll(within, || {
            let seen = self.seen.lock().unwrap();
            seen.iter()
                .find(|(at, text)| *at >= since && text == expected)
                .map(|(at, _)| *at - since)
        });
        arrived.unwrap_or_else(|| {
            let seen: Vec<String> = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .map(|(_, t)| t.clone())
                .collect();
            panic!("no {expected:?} within {within:?}; saw {seen:#?}")
        })
    }

    /// The longest time without a `WATCHDOG=1` from `since` until now (a stall after the
    /// last ping counts too), and how many pings there were.
    pub fn watchdog_gaps(&self, since: Instant) -> (Duration, usize) {
        let mut moments: Vec<Instant> = vec![since];
        moments.extend(
            self.seen
                .lock()
                .unwrap()
                .iter()
                .filter(|(at, text)| *at >= since && text == "WATCHDOG=1")
                .map(|(at, _)| *at),
        );
        let pings = moments.len() - 1;
        moments.push(Instant::now());
        let worst = moments
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .max()
            .unwrap_or_default();
        (worst, pings)
    }
}
