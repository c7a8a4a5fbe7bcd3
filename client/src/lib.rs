//! Worker status files for pre-forking servers, compatible byte for byte with Perl's
//! [Parallel::Scoreboard](https://metacpan.org/pod/Parallel::Scoreboard).
//!
//! A *scoreboard* is a directory in which every worker process of a pool keeps one file,
//! `status_<id>`, holding what it is doing right now. Any process can read the
//! directory to see the whole pool, and learns which workers died from the files'
//! locks, without any daemon or shared memory segment to set up.
//!
//! # File format
//!
//! ```text
//! md5(status) [16 bytes] | len [u32 big-endian] | status [len bytes] | ignored slack
//! ```
//!
//! Files are rewritten in place at offset 0 and never truncated; readers trust `len`.
//!
//! # Locking contract
//!
//! * A writer creates `status_<id>.tmp`, takes `flock(LOCK_EX)` on it, writes its
//!   first frame and renames it to `status_<id>`; it keeps the file (and so the lock)
//!   open for its whole life. The kernel drops the lock when the process dies,
//!   however it dies.
//! * A reader opens each `status_*` (never `*.tmp`, never following a symlink) and tries
//!   `flock(LOCK_EX | LOCK_NB)`. Refused: the owner lives, read the frame (re-reading up
//!   to 10 times while the md5 does not match, which means a write was in progress).
//!   Granted: the owner died, remove the file — in a way that never removes a file a
//!   live process has just put under the same name (see `dir::reap`).
//! * Every update is a write a reader can see, whatever the text: the file's
//!   modification time moves (Perl's `print` and a `pwrite` move it; the mapped writer
//!   moves it itself at most every [`VISIBLE_EVERY`]), so "no write since the last
//!   look" is told apart from "wrote the same text again" ([`DirReader::written`]).
//! * The lock is `flock(2)`, taken through std's `File::lock`/`File::try_lock`; it is the
//!   lock Perl's `flock` takes, so Perl and Rust workers and readers share directories.
//!
//! # How the pieces fit
//!
//! * `frame` — encoding and decoding the frame, pure functions over bytes.
//! * `sink` — getting a frame into the file: stores into a `MAP_SHARED` mapping (no
//!   syscall per update) or one `pwrite`.
//! * `pid` — the process id, cached in a page the kernel wipes on `fork`.
//! * `chase` — opening a reader's directory without following what its owner planted
//!   (systemd's `chase()` with `CHASE_SAFE`).
//! * `dir` — names, opening entries safely, and reaping.
//! * [`Scoreboard`] — the worker's handle: update, read_all, cleanup.
//! * [`read_dir`] and [`DirReader`] — readers for tools and for the agent, within the
//!   budgets of [`ReadOptions`] (files, bytes, time), whatever the directory holds.
//!
//! # Example
//!
//! ```
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path().join("scoreboard");
//! let mut scoreboard = scoreboard::Scoreboard::open(&dir)?;
//! scoreboard.update("busy GET /index.html")?;
//! let snapshot = scoreboard::read_dir(&dir)?;
//! assert_eq!(snapshot.workers[0].status, b"busy GET /index.html");
//! # Ok::<(), scoreboard::Error>(())
//! ```
#![deny(missing_docs)]

mod chase;
mod dir;
mod error;
pub mod frame;
mod names;
mod pid;
mod reader;
mod sink;
mod writer;

pub use dir::is_worker_file;
pub use error::{Error, Result};
pub use names::{Group, User};
pub use reader::{
    DEFAULT_MAX_STATUS_BYTES, DEFAULT_MAX_STATUS_LEN, DEFAULT_MAX_WORKERS, DirReader,
    MAX_LAST_STATUS_LEN, MAX_LAST_STATUSES, MAX_LISTED_SKIPS, Progress, ReadOptions, SkipKind,
    SkipReason, Skipped, Snapshot, TORN_BACK_OFF_BUDGET, TORN_READ_ATTEMPTS, Worker, Written,
    read_dir,
};
pub use sink::{VISIBLE_EVERY, WriteMode};
pub use writer::{Builder, Scoreboard};
