//! systemd's notify protocol: datagrams of `KEY=value` lines on a unix socket.
//!
//! The agent speaks in two ways:
//!
//! * **For itself** — READY, STATUS, WATCHDOG, RELOADING + MONOTONIC_USEC, STOPPING,
//!   and the summaries of a `notify = "self"` service (the agent is then a helper
//!   inside that service) — through the **sd-notify** crate ([`own`]), to
//!   `$NOTIFY_SOCKET`, with [`watchdog_interval`] from its `watchdog_enabled`.
//! * **On behalf of a service's main process** — `STATUS=` for `notify = "main-pid"`
//!   services — by hand ([`NotifySocket::send_as`]). systemd tells senders apart by the
//!   credentials the kernel attaches to the datagram, so speaking for another process
//!   means attaching `SCM_CREDENTIALS` with its pid, what `systemd-notify --pid=` does.
//!   The kernel accepts a foreign pid only from a sender with `CAP_SYS_ADMIN`; the
//!   sd-notify crate has no way to attach credentials, so this path stays ours.
//!
//! What is said is a typed [`Message`] whose `Display` is the wire text.

use std::fmt;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType, UCred,
};
use sd_notify::NotifyState;

/// Where systemd listens when `$NOTIFY_SOCKET` does not say.
pub const SYSTEMD_NOTIFY_SOCKET: &str = "/run/systemd/notify";

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `READY=1`: started, or a reload is done.
    Ready,
    /// `RELOADING=1` with the `MONOTONIC_USEC=` systemd wants beside it.
    Reloading {
        /// CLOCK_MONOTONIC when the reload began, in µs.
        monotonic_usec: u64,
    },
    /// `STOPPING=1`.
    Stopping,
    /// `WATCHDOG=1`.
    Watchdog,
    /// `WATCHDOG=trigger`: systemd handles the unit as if its watchdog had expired
    /// (sent on a wedged service's behalf).
    WatchdogTrigger,
    /// `STATUS=<line>`; the line must already be one sanitised line (see
    /// [`crate::core::status_line::render`]).
    Status(String),
}

impl Message {
    /// `RELOADING=1` stamped now.
    pub fn reloading_now() -> Message {
        Message::Reloading {
            monotonic_usec: crate::io::boot::monotonic_usec(),
        }
    }

    fn states(&self) -> Vec<NotifyState<'_>> {
        match self {
            Message::Ready => vec![NotifyState::Ready],
            Message::Reloading { monotonic_usec } => vec![
                NotifyState::Reloading,
                NotifyState::MonotonicUsec(i128::from(*monotonic_usec)),
            ],
            Message::Stopping => vec![NotifyState::Stopping],
            Message::Watchdog => vec![NotifyState::Watchdog],
            Message::WatchdogTrigger => vec![NotifyState::WatchdogTrigger],
            Message::Status(line) => {
                debug_assert!(!line.contains('\n'));
                vec![NotifyState::Status(line)]
            }
        }
    }
}

/// The wire text: each assignment on its own line, ended by a newline, as sd-notify
/// sends it.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for state in self.states() {
            writeln!(f, "{state}")?;
        }
        Ok(())
    }
}

/// Sends `message` for ourselves to `$NOTIFY_SOCKET` (an error when it is not set:
/// the caller asked to be heard).
pub fn own(message: &Message) -> io::Result<()> {
    if std::env::var_os("NOTIFY_SOCKET").is_none_or(|path| path.is_empty()) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "$NOTIFY_SOCKET is not set",
        ));
    }
    sd_notify::notify(false, &message.states())
}

/// `$NOTIFY_SOCKET`, for messages.
pub fn own_socket() -> Option<PathBuf> {
    std::env::var_os("NOTIFY_SOCKET")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

/// The watchdog ping interval — half the period systemd set in `$WATCHDOG_USEC` for
/// this process (`$WATCHDOG_PID` ours) — or `None` without a watchdog.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    let mut usec = 0;
    (sd_notify::watchdog_enabled(false, &mut usec) && usec > 0)
        .then(|| std::time::Duration::from_micros(usec / 2))
}

/// A notify socket to send datagrams to on another process's behalf.
#[derive(Debug)]
pub struct NotifySocket {
    address: SocketAddrUnix,
    socket: OwnedFd,
}

impl NotifySocket {
    /// The socket at `path` (a leading `@` names an abstract socket).
    pub fn at(path: &Path) -> io::Result<NotifySocket> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        let address = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddrUnix::new_abstract_name(name)?,
            None => SocketAddrUnix::new(path)?,
        };
        let socket = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        Ok(NotifySocket { address, socket })
    }

    /// Sends `message` as ourselves (tests compare it with [`NotifySocket::send_as`]).
    #[cfg(test)]
    fn send(&self, message: &str) -> io::Result<()> {
        rustix::net::sendto(
            &self.socket,
            message.as_bytes(),
            SendFlags::empty(),
            &self.address,
        )?;
        Ok(())
    }

    /// Sends `message` on behalf of process `pid`, with our uid and gid.
    pub fn send_as(&self, message: &Message, pid: u32) -> io::Result<()> {
        let pid = rustix::process::Pid::from_raw(pid as i32)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid 0"))?;
        let credentials = UCred {
            pid,
            uid: rustix::process::geteuid(),
            gid: rustix::process::getegid(),
        };
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmCredentials(credentials));
        rustix::net::sendmsg_addr(
            &self.socket,
            &self.address,
            &[IoSlice::new(message.to_string().as_bytes())],
            &mut control,
            SendFlags::empty(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
