//! One watched service's I/O: its directory reader, its inotify watch, and a step of a
//! pass — what was read goes into the pool, what it changed into the schedule, the
//! metrics and the log.

use std::os::fd::AsFd as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use scoreboard::{DirReader, Progress, ReadOptions, Snapshot};
use tracing::{debug, info, warn};

use crate::config::{NotifyMode, Service};
use crate::core::health::Health;
use crate::core::pool::{Cause, LastWords, MAX_DEATHS_KEPT, Pool, Sight, Unseen};
use crate::core::privacy::DirAccess;
use crate::core::rate_limit::RateLimit;
use crate::core::schedule::{Listener, Schedule};
use crate::escape::{Escaped, escape_controls, printable_capped};
use crate::io::watch::Watcher;
use crate::metrics::Metrics;

/// What one step needs besides the service: shared by every service.
pub struct Shell<'a> {
    pub watcher: &'a mut Watcher,
    pub metrics: &'a Metrics,
    pub warnings: &'a mut RateLimit,
}

/// One watched service.
pub struct Watched {
    pub service: Service,
    /// Shared with the service's D-Bus object; locked only briefly, never across an await.
    pub pool: Arc<Mutex<Pool>>,
    pub schedule: Schedule,
    /// Health actions: what the core decided, remembered between decisions.
    pub health: Health,
    reader: Option<DirReader>,
    wd: Option<i32>,
    /// When the pass under way began, for the sweep-duration metric (all its steps).
    pass_started: Instant,
}

impl Watched {
    /// A service just watched; `on_bus`: its membership changes batched for D-Bus
    /// signals.
    pub fn new(service: Service, on_bus: bool) -> Self {
        Watched {
            pool: Arc::new(Mutex::new(Pool::new(&service))),
            schedule: Schedule::new(on_bus),
            health: Health::new(service.health_actions.clone()),
            service,
            reader: None,
            wd: None,
            pass_started: Instant::now(),
        }
    }

    pub fn pool(&self) -> MutexGuard<'_, Pool> {
        crate::lock::lock(&self.pool)
    }

    /// Who hears the service's `STATUS=` line.
    pub fn listener(&self) -> Listener {
        match self.service.notify {
            NotifyMode::MainPid => Listener::MainProcess,
            NotifyMode::None | NotifyMode::Itself => Listener::Fixed,
        }
    }

    /// Whether inotify watch `wd` is this service's.
    pub fn watches(&self, wd: i32) -> bool {
        self.wd == Some(wd)
    }

    /// The device and inode of worker `id`'s file, as the directory holds it now.
    pub fn worker_file(&self, id: &str) -> std::io::Result<(u64, u64)> {
        match &self.reader {
            Some(reader) => reader.worker_file(id),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the scoreboard directory is not open",
            )),
        }
    }

    /// The unit's name.
    pub fn unit(&self) -> &str {
        &self.service.unit
    }

    /// One step of at most `deadline` of a pass over the directory, opening it first
    /// if needed.
    pub fn step(&mut self, shell: &mut Shell<'_>, now: Instant, deadline: Instant) {
        self.schedule.step_begins();
        let unit = self.service.unit.clone();
        let mid_pass = self.schedule.mid_pass();
        if let Some(reader) = &self.reader
            && !mid_pass
            && !reader.still_at_path()
        {
            // Said once per quiet period: an owner swapping it back and forth must not
            // fill the journal.
            if shell.warnings.allow_hashed(("moved", &unit), now) {
                info!(unit = %unit, "{} was moved or replaced; opening it again", self.service.directory.display());
            }
            self.forget_directory(shell);
        }
        if self.reader.is_none() && !self.open(shell, now) {
            self.schedule.pass_given_up();
            return;
        }
        let reader = self.reader.as_mut().expect("opened above");
        if !mid_pass {
            self.pass_started = Instant::now();
        }
        let mut snapshot = match reader.sweep_until(Some(deadline)) {
            Ok(Progress::Done(snapshot)) => snapshot,
            Ok(Progress::Partial) => {
                self.schedule.pass_unfinished();
                return;
            }
            Err(e) => {
                // Unknown now, whatever it held: not "0 workers", nothing acted on.
                self.forget_directory(shell);
                self.cannot_read(shell, &e, now);
                self.schedule.pass_given_up();
                return;
            }
        };
        let took = self.pass_started.elapsed();
        // Who may see per-worker details is decided on the directory just read.
        let access = rustix::fs::fstat(reader.as_fd())
            .ok()
            .map(|stat| DirAccess {
                uid: stat.st_uid,
                gid: stat.st_gid,
                mode: stat.st_mode & 0o7777,
            });
        let (changes, summary, last_words) = {
            let mut pool = crate::lock::lock(&self.pool);
            // Each dead worker's last words, from its file when it held a frame (newer
            // than any look while it lived: a timed-out request written as the worker
            // was aborted); kept for the bus, the first few said in the journal. Only
            // the newest deaths can be kept, so only they are looked at.
            let first_kept = snapshot.reaped.len().saturating_sub(MAX_DEATHS_KEPT);
            let mut last_words: Vec<Said> = Vec::new();
            for (index, id) in snapshot.reaped.iter().enumerate() {
                if index >= REAPED_SAID_EACH && index < first_kept {
                    continue;
                }
                let final_status = snapshot.last_statuses.get(id).map(Vec::as_slice);
                let last = pool.last_words(id, final_status, now);
                if index >= first_kept {
                    pool.record_death(id, last.clone(), now);
                }
                if index < REAPED_SAID_EACH {
                    last_words.push((id.clone(), last));
                }
            }
            // Same text is not no progress: asked of the workers standing still.
            let changes = pool.observe_writes(&mut snapshot, now, |worker| {
                reader.written(worker.inode).and_then(Result::ok)
            });
            pool.set_access(access);
            (changes, pool.summary(now), last_words)
        };
        self.schedule.pass_done(&changes);
        shell.metrics.sweep(
            &unit,
            took,
            &summary,
            snapshot.reaped.len(),
            &snapshot.skip_counts,
            SystemTime::now(),
        );
        for id in &changes.added {
            debug!(unit = %unit, worker = %Escaped::str(id), "worker joined");
        }
        log_reaped(&unit, &last_words, snapshot.reaped.len());
        for id in &changes.removed {
            debug!(unit = %unit, worker = %Escaped::str(id), "worker left");
        }
        warn_skipped(shell.warnings, &unit, &snapshot, now);
    }

    /// Opens the directory and watches it; whether it is open.
    fn open(&mut self, shell: &mut Shell<'_>, now: Instant) -> bool {
        let unit = &self.service.unit;
        let directory = &self.service.directory;
        match DirReader::open(directory, read_options(&self.service)) {
            Ok(reader) if read_only(&reader) => {
                let detail = format!(
                    "{} is read-only to the agent (its unit's ProtectSystem=strict): dead \
                     workers' files there could never be removed, so it is not read",
                    directory.display()
                );
                self.mark_unseen(shell, Cause::ReadOnly, detail, now);
                false
            }
            Ok(reader) => {
                match shell.watcher.watch(reader.as_fd()) {
                    Ok(wd) => self.wd = Some(wd),
                    Err(e) => {
                        warn!(unit = %unit, "watching {}: {e}; relying on the periodic sweep", directory.display())
                    }
                }
                if shell.warnings.allow_hashed(("reading", unit), now) {
                    info!(unit = %unit, "reading {}", directory.display());
                }
                self.reader = Some(reader);
                true
            }
            Err(e) => {
                self.cannot_read(shell, &e, now);
                false
            }
        }
    }

    /// The directory could not be opened or read: the pool is unknown, and says why —
    /// in its line, on the bus, in metrics, and once per quiet period in the journal.
    fn cannot_read(&mut self, shell: &mut Shell<'_>, error: &scoreboard::Error, now: Instant) {
        let detail = escape_controls(&error.to_string()).into_owned();
        self.mark_unseen(shell, cause_of(error), detail, now);
    }

    /// The pool is unknown for `cause`: said once per change and quiet period (a missing
    /// directory, a stopped service, is not worth a warning), in metrics, and in the
    /// pool, whose workers are forgotten.
    fn mark_unseen(&mut self, shell: &mut Shell<'_>, cause: Cause, detail: String, now: Instant) {
        let unit = &self.service.unit;
        let unseen = Unseen { cause, detail };
        let changed = *self.pool().sight() != Sight::Unseen(unseen.clone());
        if changed && cause != Cause::Missing && shell.warnings.allow_hashed(("open", unit), now) {
            let fix = fix(cause, unit, &self.service.directory);
            warn!(unit = %unit, "{unit}: {}; its workers are unknown, and nothing is done about them{fix}", unseen.detail);
        }
        shell.metrics.unseen(unit, cause, SystemTime::now());
        let gone = self.pool().unseen(unseen);
        self.schedule.directory_gone(gone);
    }

    /// The directory went away: drop what we held, report its workers gone, and take
    /// its per-state gauges down.
    pub fn forget_directory(&mut self, shell: &mut Shell<'_>) {
        shell.metrics.forget(&self.service.unit);
        self.reader = None;
        self.unwatch(shell.watcher);
        let gone = {
            let mut pool = self.pool();
            pool.set_access(None);
            pool.clear()
        };
        self.schedule.directory_gone(gone);
    }

    /// Stops watching the directory (gone already when the kernel dropped the watch
    /// with the directory; not an error).
    pub fn unwatch(&mut self, watcher: &Watcher) {
        if let Some(wd) = self.wd.take() {
            watcher.unwatch(wd);
        }
    }
}

/// Whether the directory is on a read-only mount (for the agent: its unit's
/// `ProtectSystem=strict` makes everything read-only but `ReadWritePaths=`).
fn read_only(reader: &DirReader) -> bool {
    rustix::fs::fstatvfs(reader.as_fd())
        .is_ok_and(|stat| stat.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// What a failure to open or read a directory is.
fn cause_of(error: &scoreboard::Error) -> Cause {
    use std::io::ErrorKind;
    if error.is_unsafe_path() {
        return Cause::Unsafe;
    }
    match error.kind() {
        ErrorKind::NotFound => Cause::Missing,
        ErrorKind::PermissionDenied => Cause::PermissionDenied,
        ErrorKind::NotADirectory => Cause::NotADirectory,
        _ => Cause::Failed,
    }
}

/// What the operator can do about it, where there is one thing to do.
fn fix(cause: Cause, unit: &str, directory: &std::path::Path) -> String {
    match cause {
        Cause::PermissionDenied => {
            format!(" — run: scoreboardctl enable {unit} (it lets the agent read the directory)")
        }
        Cause::Unsafe => " — the path must not pass through a directory another user owns; \
                          point `directory` at one owned by root or the service's user"
            .to_owned(),
        Cause::ReadOnly => format!(
            " — put the scoreboard under /run, or `systemctl edit scoreboard-agent.service` \
             with [Service] ReadWritePaths={}",
            directory.display()
        ),
        Cause::Missing | Cause::NotADirectory | Cause::Failed => String::new(),
    }
}

/// Dead workers said one by one in a pass; the rest of the pass's are counted in one
/// more line, so a directory's owner making thousands die costs a few lines, and none
/// goes unsaid.
const REAPED_SAID_EACH: usize = 8;

/// A dead worker's status is said up to this many bytes, escaped: a worker's last
/// words are its owner's bytes, and a megabyte of them is not a journal line.
const SAID_STATUS_MAX: usize = 512;

/// A dead worker to say in the journal: its id and what it was doing.
type Said = (String, Option<LastWords>);

/// Every dead worker's file removed is logged as one self-contained line naming the
/// unit and the worker, with what it was doing: the first [`REAPED_SAID_EACH`] of a
/// pass each, then one line with how many more.
fn log_reaped(unit: &str, said: &[Said], reaped: usize) {
    for (id, last) in said {
        let shown = Escaped::str(id);
        match last {
            Some(LastWords {
                status,
                stood_seconds: Some(stood),
            }) => {
                let status = printable_capped(status.as_bytes(), SAID_STATUS_MAX);
                info!(unit = %unit, worker = %shown, status = %status, stood = %format!("{stood:.1}s"), "{unit}: worker {shown} died while \"{status}\" (unchanged {stood:.1} s); removed its file")
            }
            Some(LastWords {
                status,
                stood_seconds: None,
            }) => {
                let status = printable_capped(status.as_bytes(), SAID_STATUS_MAX);
                info!(unit = %unit, worker = %shown, status = %status, "{unit}: worker {shown} died while \"{status}\"; removed its file")
            }
            None => {
                info!(unit = %unit, worker = %shown, "{unit}: worker {shown} died; removed its file")
            }
        }
    }
    if reaped > said.len() {
        let more = reaped - said.len();
        info!(unit = %unit, reaped = reaped, "{unit}: {more} more dead workers' files removed in this pass ({reaped} in all)");
    }
}

/// The reader's budgets for a service.
fn read_options(service: &Service) -> ReadOptions {
    ReadOptions {
        max_workers: service.max_workers,
        max_status_bytes: service.max_status_bytes,
        ..ReadOptions::default()
    }
}

/// One warning per kind of problem per quiet period per service, however many entries
/// have it: the first one listed, and how many there were in this pass.
fn warn_skipped(warnings: &mut RateLimit, unit: &str, snapshot: &Snapshot, now: Instant) {
    for (kind, count) in &snapshot.skip_counts {
        if !warnings.allow_hashed(("skip", unit, kind), now) {
            continue;
        }
        let first = snapshot.skipped.iter().find(|s| s.reason.kind() == *kind);
        // Paths are the directory owner's bytes: escaped for every log sink.
        match first.map(|first| escape_controls(&first.to_string()).into_owned()) {
            Some(first) if *count == 1 => warn!(unit = %unit, "{first}"),
            Some(first) => warn!(unit = %unit, "{first} (and {} more like it)", count - 1),
            None => warn!(unit = %unit, "skipping {count} entries: {kind}"),
        }
    }
}
