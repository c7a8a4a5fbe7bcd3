//! Carrying out a health action on a worker: the checks that make a worker id a process
//! the agent may signal, and the signal itself, on a pidfd.
//!
//! A worker id is only a claim written by the service's user. The agent signals the pid
//! it names only when that process is alive, runs in the unit's own control group, and
//! holds the write lock on the worker's scoreboard file — so a reused pid, a process of
//! another unit or a made-up id is never hit. The process is pinned with `pidfd_open`
//! before the checks and signalled through that pidfd after them: if it died meanwhile
//! and its pid was reused, the signal goes nowhere (`ESRCH`) rather than to the newcomer.

use std::fmt;
use std::os::fd::OwnedFd;

use rustix::process::{Pid, PidfdFlags, Signal};

/// Why a worker was not signalled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No such process (it exited).
    Gone,
    /// It runs outside the unit's control group (shown: where it runs).
    OutsideUnit(String),
    /// It does not hold the lock on the worker's file.
    NotTheHolder,
    /// It runs as another user than the one owning the scoreboard directory (shown: its
    /// uid): the agent never signals what the directory's owner could not.
    OtherUser(u32),
    /// A check could not be made (shown: why); nothing was sent.
    Unchecked(String),
}

impl Refused {
    /// A short name of the kind, for rate-limiting the log per kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Refused::Gone => "gone",
            Refused::OutsideUnit(_) => "outside",
            Refused::NotTheHolder => "holder",
            Refused::OtherUser(_) => "user",
            Refused::Unchecked(_) => "unchecked",
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Gone => write!(f, "the process has exited"),
            Refused::OutsideUnit(cgroup) => {
                write!(f, "the process runs outside the unit, in {cgroup}")
            }
            Refused::NotTheHolder => {
                write!(f, "the process does not hold the worker's scoreboard file")
            }
            Refused::OtherUser(uid) => write!(
                f,
                "the process runs as {}, not as the scoreboard directory's owner",
                scoreboard::User(*uid)
            ),
            Refused::Unchecked(why) => write!(f, "could not check the process: {why}"),
        }
    }
}

/// What must be true of `pid` before it is signalled.
pub struct Target<'a> {
    /// The pid the worker id names.
    pub pid: i32,
    /// The unit's `ControlGroup=` (e.g. `/system.slice/web.service`).
    pub control_group: &'a str,
    /// The worker's file (device, inode), whose `flock` the process must hold.
    pub file: (u64, u64),
    /// The scoreboard directory's owner: the process must run as this user.
    pub owner: u32,
}

/// The most of `/proc/locks` read for one check: any local user can grow it (a lock per
/// descriptor), so it is streamed in bounded memory and given up on past this, failing
/// closed.
pub const MAX_LOCKS_BYTES: u64 = 8 << 20;

/// Sends `signal` to `target.pid` if every check passes.
pub fn signal_worker(target: &Target<'_>, signal: Signal) -> Result<(), Refused> {
    let pid = Pid::from_raw(target.pid).ok_or(Refused::Gone)?;
    let pidfd: OwnedFd = match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Err(Refused::Gone),
        Err(e) => return Err(Refused::Unchecked(format!("pidfd_open: {e}"))),
    };
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", target.pid)).map_err(|e| {
        match e.kind() {
            std::io::ErrorKind::NotFound => Refused::Gone,
            _ => Refused::Unchecked(format!("reading /proc/{}/cgroup: {e}", target.pid)),
        }
    })?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", target.pid))
        .map_err(|e| Refused::Unchecked(format!("reading /proc/{}/status: {e}", target.pid)))?;
    let locks = std::fs::File::open("/proc/locks")
        .map_err(|e| Refused::Unchecked(format!("reading /proc/locks: {e}")))?;
    let locks = std::io::BufReader::new(std::io::Read::take(locks, MAX_LOCKS_BYTES));
    check_target(target, &cgroups, &status, locks)?;
    match rustix::process::pidfd_send_signal(&pidfd, signal) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::SRCH) => Err(Refused::Gone),
        Err(e) => Err(Refused::Unchecked(format!("pidfd_send_signal: {e}"))),
    }
}

/// Whether `/proc/PID/cgroup` places the process in `control_group` or below it, in the
/// unified hierarchy (`0::/path`) or systemd's named v1 one (`N:name=systemd:/path`).
pub fn in_control_group(proc_cgroup: &str, control_group: &str) -> bool {
    let unit = control_group.trim_end_matches('/');
    if unit.is_empty() || !unit.starts_with('/') {
        return false;
    }
    proc_cgroup.lines().any(|line| {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        (controllers.is_empty() || controllers == "name=systemd")
            && (path == unit
                || path
                    .strip_prefix(unit)
                    .is_some_and(|rest| rest.starts_with('/')))
    })
}

/// The checks before a signal, on what `/proc` said of the process: in the unit's
/// control group, run by the directory's owner, holding the worker's file's lock.
pub fn check_target(
    target: &Target<'_>,
    cgroups: &str,
    status: &str,
    locks: impl std::io::BufRead,
) -> Result<(), Refused> {
    if !in_control_group(cgroups, target.control_group) {
        // The line systemd's hierarchy is on (unified `0::`, or v1's `name=systemd`).
        let shown = cgroups
            .lines()
            .find(|l| l.starts_with("0::") || l.contains(":name=systemd:"))
            .or_else(|| cgroups.lines().next())
            .unwrap_or("");
        return Err(Refused::OutsideUnit(
            crate::escape::escape_controls(shown).into_owned(),
        ));
    }
    match real_uid(status) {
        Some(uid) if uid == target.owner => {}
        Some(uid) => return Err(Refused::OtherUser(uid)),
        None => return Err(Refused::Unchecked("no Uid: in /proc/PID/status".to_owned())),
    }
    match holds_write_lock_in(locks, target.pid, target.file) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refused::NotTheHolder),
        Err(e) => Err(Refused::Unchecked(format!("reading /proc/locks: {e}"))),
    }
}

/// The real uid in `/proc/PID/status` (`Uid:\treal\teffective\tsaved\tfs`).
fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// [`holds_write_lock`] over a stream, line by line in bounded memory.
pub fn holds_write_lock_in(
    mut locks: impl std::io::BufRead,
    pid: i32,
    file: (u64, u64),
) -> std::io::Result<bool> {
    let mut line = String::new();
    loop {
        line.clear();
        if locks.read_line(&mut line)? == 0 {
            return Ok(false);
        }
        if holds_write_lock(&line, pid, file) {
            return Ok(true);
        }
    }
}

/// Whether `/proc/locks` lists a `FLOCK … WRITE` lock held by `pid` on the file
/// `(dev, ino)`. Lines read `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`, the
/// device as hexadecimal major:minor; lines of blocked waiters (`->`) do not hold.
pub fn holds_write_lock(locks: &str, pid: i32, (dev, ino): (u64, u64)) -> bool {
    let device = format!(
        "{:02x}:{:02x}:{ino}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    let pid = pid.to_string();
    locks.lines().any(|line| {
        let mut fields = line.split_whitespace();
        fields.next(); // "1:"
        fields.next() == Some("FLOCK")
            && fields.next().is_some()
            && fields.next() == Some("WRITE")
            && fields.next() == Some(pid.as_str())
            && fields.next() == Some(device.as_str())
    })
}

#[cfg(test)]
mod tests;
