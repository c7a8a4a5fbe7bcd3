//! systemd's notify protocol: datagrams of `KEY=value` lines on a unix socket.
//!
//! The agent sends for itself (READY, STATUS, WATCHDOG, RELOADING, STOPPING) and, for
//! each watched service, `STATUS=` on behalf of the service's main process. systemd
//! tells senders apart by the credentials the kernel attaches to the datagram, so
//! speaking for another process means attaching `SCM_CREDENTIALS` with its pid — what
//! `systemd-notify --pid=` does. The kernel accepts a foreign pid only from a sender
//! with `CAP_SYS_ADMIN`; the sd-notify crate has no way to attach credentials.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType, UCred,
};

/// Where systemd listens when `$NOTIFY_SOCKET` does not say.
pub const SYSTEMD_NOTIFY_SOCKET: &str = "/run/systemd/notify";

/// A notify socket to send datagrams to.
#[derive(Debug)]
pub struct NotifySocket {
    address: SocketAddrUnix,
    shown: String,
    socket: OwnedFd,
}

impl NotifySocket {
    /// The socket named by `$NOTIFY_SOCKET`, if set (a leading `@` names an abstract
    /// socket).
    pub fn from_env() -> io::Result<Option<NotifySocket>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(path) if !path.is_empty() => NotifySocket::at(Path::new(&path)).map(Some),
            _ => Ok(None),
        }
    }

    /// The socket at `path`.
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
        Ok(NotifySocket {
            address,
            shown: path.display().to_string(),
            socket,
        })
    }

    /// The socket's path, for messages.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.shown)
    }

    /// Sends `message` as ourselves.
    pub fn send(&self, message: &str) -> io::Result<()> {
        rustix::net::sendto(
            &self.socket,
            message.as_bytes(),
            SendFlags::empty(),
            &self.address,
        )?;
        Ok(())
    }

    /// Sends `message` on behalf of process `pid`, with our uid and gid.
    pub fn send_as(&self, message: &str, pid: u32) -> io::Result<()> {
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
            &[IoSlice::new(message.as_bytes())],
            &mut control,
            SendFlags::empty(),
        )?;
        Ok(())
    }
}

/// `STATUS=<text>`; `text` must already be one sanitised line (see
/// [`crate::core::pool::status_line`]).
pub fn status(text: &str) -> String {
    debug_assert!(!text.contains('\n'));
    format!("STATUS={text}")
}

/// `RELOADING=1` with the `MONOTONIC_USEC=` systemd wants beside it.
pub fn reloading() -> String {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// The watchdog period from `$WATCHDOG_USEC`, when it is meant for this process
/// (`$WATCHDOG_PID` unset or ours). Pings go at half of it.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| std::time::Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_reloading_are_the_wire_text() {
        assert_eq!(status("3 workers: 3 idle"), "STATUS=3 workers: 3 idle");
        let reloading = reloading();
        let (first, second) = reloading.split_once('\n').unwrap();
        assert_eq!(first, "RELOADING=1");
        assert!(
            second
                .strip_prefix("MONOTONIC_USEC=")
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 0
        );
    }

    /// What systemd does with a datagram: read the sender's credentials, which the
    /// kernel attaches when the receiver sets SO_PASSCRED.
    fn receive_with_credentials(receiver: &std::os::unix::net::UnixDatagram) -> (String, UCred) {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
        let mut data = [0u8; 256];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = rustix::net::recvmsg(
            receiver,
            &mut [std::io::IoSliceMut::new(&mut data)],
            &mut control,
            RecvFlags::empty(),
        )
        .unwrap();
        let credentials = control
            .drain()
            .find_map(|message| match message {
                RecvAncillaryMessage::ScmCredentials(credentials) => Some(credentials),
                _ => None,
            })
            .expect("credentials");
        let text = String::from_utf8(data[..received.bytes].to_vec()).unwrap();
        (text, credentials)
    }

    #[test]
    fn a_status_sent_on_behalf_of_another_process_carries_its_pid() {
        if !rustix::process::geteuid().is_root() {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "this test needs root (CAP_SYS_ADMIN) and must run under CI=true"
            );
            eprintln!(
                "skipping: sending another pid's credentials needs CAP_SYS_ADMIN (run as root)"
            );
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("notify");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        rustix::net::sockopt::set_socket_passcred(&receiver, true).unwrap();
        let mut main_process = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();

        let socket = NotifySocket::at(&path).unwrap();
        socket
            .send_as("STATUS=3 workers: 3 idle", main_process.id())
            .unwrap();
        let (text, credentials) = receive_with_credentials(&receiver);
        assert_eq!(text, "STATUS=3 workers: 3 idle");
        assert_eq!(
            credentials.pid.as_raw_nonzero().get() as u32,
            main_process.id()
        );
        assert_eq!(credentials.uid, rustix::process::geteuid());

        // Our own sends carry our own pid.
        socket.send("READY=1").unwrap();
        let (_, credentials) = receive_with_credentials(&receiver);
        assert_eq!(
            credentials.pid.as_raw_nonzero().get() as u32,
            std::process::id()
        );

        // A pid that no longer exists is refused by the kernel (ESRCH), so a stale
        // MainPID can never be credited with our message.
        main_process.kill().unwrap();
        main_process.wait().unwrap();
        let error = socket.send_as("STATUS=x", main_process.id()).unwrap_err();
        assert_eq!(
            error.raw_os_error(),
            Some(rustix::io::Errno::SRCH.raw_os_error())
        );
    }

    #[test]
    fn datagrams_arrive_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("notify");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let socket = NotifySocket::at(&path).unwrap();
        socket.send("READY=1\nSTATUS=hello").unwrap();
        let mut buf = [0; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=hello");
    }
}
