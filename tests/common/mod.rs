//! Processes shared by the D-Bus tests and benches: a private bus, a holder of many
//! live workers, children killed however a test ends, and polling.
//!
//! Included by benches with `#[path]`, so it names executables by parameter rather than
//! with `env!("CARGO_BIN_EXE_…")`.

#![allow(dead_code)] // each includer uses part of it

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private bus: `dbus-daemon --session`, or with a given configuration.
pub struct Bus {
    pub address: String,
    daemon: Killed,
}

impl Bus {
    pub fn session() -> Bus {
        Bus::start(&["--session"])
    }

    pub fn with_config(config: &Path) -> Bus {
        Bus::start(&[&format!("--config-file={}", config.display())])
    }

    /// A session bus other users may connect to too, as they can to the system bus:
    /// for hostile clients running as another user.
    pub fn open_to_all() -> Bus {
        let config =
            std::env::temp_dir().join(format!("scoreboard-open-bus-{}.conf", std::process::id()));
        std::fs::write(
            &config,
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
             <busconfig><include>/usr/share/dbus-1/session.conf</include>\
             <policy context=\"default\"><allow user=\"*\"/></policy></busconfig>\n",
        )
        .unwrap();
        let bus = Bus::with_config(&config);
        let _ = std::fs::remove_file(&config);
        bus
    }

    fn start(args: &[&str]) -> Bus {
        let mut daemon = Command::new("dbus-daemon")
            .args(args)
            .args(["--print-address", "--nofork", "--nopidfile"])
            .stdout(Stdio::piped())
            // It warns that it cannot raise its own fd limit; nothing to see.
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian: dbus-daemon)");
        let mut address = String::new();
        BufReader::new(daemon.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        // With several <listen>s the daemon prints them all, `;`-separated: one will do.
        let address = address.trim().split(';').next().unwrap_or_default();
        Bus {
            address: address.to_owned(),
            daemon: Killed(daemon),
        }
    }
}

/// A child process killed when the test ends, passing or failing (a leftover would keep
/// the test harness's output open).
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `count` live workers (ids `prefix0`…) held by one `scoreboardctl hold-workers`
/// process: killing it kills them all.
pub struct Holder(Killed);

impl Holder {
    pub fn start(scoreboardctl: &Path, dir: &Path, count: usize, prefix: &str) -> Holder {
        let mut child = Command::new(scoreboardctl)
            .args([
                "hold-workers",
                "--prefix",
                prefix,
                "--count",
                &count.to_string(),
                "--dir",
            ])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        Holder(Killed(child))
    }

    /// Every worker dies at once, as with `kill -9`.
    pub fn kill9(&mut self) {
        self.0.0.kill().unwrap();
        self.0.0.wait().unwrap();
    }
}

/// Polls `condition` every 20 ms until it holds or `within` passes.
pub fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}
