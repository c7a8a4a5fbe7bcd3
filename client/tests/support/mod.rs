//! Real processes for the multi-process tests: fork, pipes, signals, waiting.
//!
//! These tests run without the libtest harness (`harness = false`), so the process is
//! single-threaded when it forks and a child may allocate freely.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Instant;

/// A forked child and a pipe to send it one-byte commands.
pub struct Child {
    pub pid: i32,
    commands: Option<std::fs::File>,
}

/// Forks; the child runs `body` with a pipe of commands from the parent, then exits
/// with its return value without running the parent's destructors twice.
pub fn fork(body: impl FnOnce(&mut dyn Read) -> i32) -> Child {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (read_end, write_end) = unsafe {
        (
            std::fs::File::from(OwnedFd::from_raw_fd(fds[0])),
            std::fs::File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    };
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            drop(write_end);
            let mut read_end = read_end;
            let code =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut read_end)))
                    .unwrap_or(101);
            let _ = std::io::stderr().flush();
            unsafe { libc::_exit(code) }
        }
        pid => Child {
            pid,
            commands: Some(write_end),
        },
    }
}

impl Child {
    pub fn send(&mut self, command: u8) {
        self.commands
            .as_mut()
            .unwrap()
            .write_all(&[command])
            .unwrap();
    }

    /// Closes the command pipe: the child sees EOF.
    pub fn hang_up(&mut self) {
        self.commands = None;
    }

    pub fn kill(&self, signal: i32) {
        assert_eq!(unsafe { libc::kill(self.pid, signal) }, 0);
    }

    /// Waits for the child; returns its exit code, or 128+signal.
    pub fn wait(&mut self) -> i32 {
        self.hang_up();
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(self.pid, &mut status, 0) }, self.pid);
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        }
    }
}

/// Reads one command byte; `None` at EOF.
pub fn next_command(commands: &mut dyn Read) -> Option<u8> {
    let mut byte = [0];
    match commands.read(&mut byte) {
        Ok(1) => Some(byte[0]),
        _ => None,
    }
}

/// A tiny harness: runs named scenarios in order, printing like libtest, and honours a
/// name filter given as the first argument.
pub fn run(tests: &[(&str, fn())]) {
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let mut ran = 0;
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        eprint!("test {name} ... ");
        let started = Instant::now();
        test();
        eprintln!("ok ({:.2?})", started.elapsed());
        ran += 1;
    }
    eprintln!("test result: ok. {ran} passed");
}
