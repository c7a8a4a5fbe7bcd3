//! A private D-Bus daemon, and the agent's names on the bus.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::Killed;

/// The agent's well-known name. The agent defines it in `src/bus/names.rs`; the
/// harness spells it out so as not to depend on the agent's library.
pub const NAME: &str = "io.scoreboard.Agent1";
/// The object listing the watched services (interface [`MANAGER_INTERFACE`]).
pub const MANAGER_PATH: &str = "/io/scoreboard/Agent1";
/// The interface of [`MANAGER_PATH`].
pub const MANAGER_INTERFACE: &str = "io.scoreboard.Agent1.Manager";
/// The interface of each watched service's object.
pub const SERVICE_INTERFACE: &str = "io.scoreboard.Agent1.Service";

/// Calls `ListWorkers` on the service object at `path`; returns how many workers it
/// answered with, having decoded them as a client would.
pub async fn list_workers(connection: &zbus::Connection, path: &str) -> zbus::Result<usize> {
    let reply = connection
        .call_method(
            Some(NAME),
            path,
            Some(SERVICE_INTERFACE),
            "ListWorkers",
            &(),
        )
        .await?;
    let workers: Vec<(String, String, String, f64, bool)> = reply.body().deserialize()?;
    Ok(workers.len())
}

/// A private `dbus-daemon`, killed when dropped.
pub struct Bus {
    /// Where clients connect, as `DBUS_SESSION_BUS_ADDRESS` (or `_SYSTEM_`) wants it.
    pub address: String,
    _daemon: Killed,
}

impl Bus {
    /// `dbus-daemon --session`.
    pub fn session() -> Bus {
        Bus::start(&["--session"])
    }

    /// `dbus-daemon` with the configuration file `config`.
    pub fn with_config(config: &Path) -> Bus {
        Bus::start(&[&format!("--config-file={}", config.display())])
    }

    /// A session bus other users may connect to too, as they can to the system bus:
    /// for hostile clients running as another user.
    pub fn open_to_all() -> Bus {
        let config = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            config.path(),
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
             <busconfig><include>/usr/share/dbus-1/session.conf</include>\
             <policy context=\"default\"><allow user=\"*\"/></policy></busconfig>\n",
        )
        .unwrap();
        // The daemon has read its configuration once it prints its address.
        Bus::with_config(config.path())
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
        assert!(
            !address.is_empty(),
            "dbus-daemon {args:?} printed no address"
        );
        Bus {
            address: address.to_owned(),
            _daemon: Killed(daemon),
        }
    }
}
