//! The agent's event loop: the thin shell of I/O around [`crate::core::pool::Pool`].
//!
//! One task on a current-thread tokio runtime waits for whichever comes first: the
//! sampling tick (every `interval`), inotify events, a re-check after a worker closed
//! its file, the watchdog, or a signal. Then it sweeps what needs sweeping and sends
//! each service's summary if it changed — membership changes at once (at most ten a
//! second per service), status changes at most once per interval.

use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use std::os::fd::AsFd as _;

use scoreboard::{DirReader, Progress, ReadOptions};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, error, info, warn};

use crate::config::{Bus, Config, NotifyMode, Service};
use crate::core::schedule::{self as pacing, MEMBERSHIP_GAP, Sent};
use crate::escape::{Escaped, escape_controls};
use crate::io::logging::{RATE_LIMIT_SLOTS, RateLimit};
use crate::io::notify::{self, NotifySocket};
use crate::io::state;
use crate::metrics::{self, Metrics};
use std::sync::{Arc, Mutex};

use crate::bus::BusThread;
use crate::bus::privacy::DirAccess;
use crate::bus::server::{self as dbus, Published};
use crate::core::pool::{Pool, status_line};
use crate::io::watch::{DirEvent, Watcher};

/// After a worker closed its file, sweep again this long later in case its lock was
/// not yet released at the first look (the kernel queues the event first).
const CLOSE_RECHECKS: [Duration; 2] = [Duration::from_millis(10), Duration::from_millis(40)];

/// Sweeps caused by inotify events: at most one per this gap per service, so a
/// directory's owner creating and removing files in a loop cannot keep the agent
/// sweeping. The first event after a quiet gap is swept at once.
const EVENT_SWEEP_GAP: Duration = Duration::from_millis(100);

/// READY=1 waits at most this long for the first passes.
const READY_WAIT: Duration = Duration::from_secs(2);

/// The longest one step of a sweep may run before the loop gets back to signals, the
/// watchdog and other services; a pass over a huge directory is taken in such steps.
const SWEEP_STEP: Duration = Duration::from_millis(20);

/// How often (in sampling ticks) the agent saves what it must remember across restarts.
const SAVE_EVERY_TICKS: u64 = 10;

/// How long the same warning stays quiet.
const WARNING_QUIET: Duration = Duration::from_secs(600);

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let mut agent = Agent::new(config)?;
    if let Some(address) = agent.config.metrics.listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("listening for metrics scrapes on {address}"))?;
        info!("serving metrics on http://{address}/metrics");
        tokio::spawn(metrics::serve(listener, agent.metrics.clone()));
    }
    agent.start_bus();
    for index in 0..agent.services.len() {
        agent.recall(index);
    }
    let watchdog = notify::watchdog_interval();
    let now = Instant::now();
    // The first passes are taken in steps like any other, so that a huge directory
    // cannot hold up the watchdog or SIGTERM; READY=1 follows once every service has had
    // its first whole pass (at once, for any normal directory).
    let started = now;
    agent.sweep_steps(now);
    let mut ready = false;

    let mut next_tick = now + agent.config.interval;
    let mut ticks: u64 = 0;
    let mut next_watchdog = watchdog.map(|period| now + period);
    loop {
        let wake = agent.next_deadline(next_tick, next_watchdog);
        let mut events = Vec::new();
        tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => {}
            batch = agent.watcher.next_batch() => match batch {
                Ok(batch) => events = batch,
                Err(e) => error!("reading inotify events: {e}"),
            },
            _ = hangup.recv() => agent.reload(),
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
        let now = Instant::now();
        for (wd, event) in events {
            agent.on_event(wd, event, now);
        }
        let tick = now >= next_tick;
        if tick {
            next_tick = now + agent.config.interval;
        }
        agent.sweep_due(now, tick);
        agent.send_summaries(now, tick || !ready);
        agent.publish(now, tick || !ready);
        // Once every service has had a first pass — or after READY_WAIT, whatever a
        // directory's owner keeps adding to it.
        if !ready && (agent.services.iter().all(|w| w.swept_once) || now >= started + READY_WAIT) {
            ready = true;
            agent.lifecycle("READY=1");
            agent.send_own_status();
            info!(
                services = agent.services.len(),
                workers = agent.workers(),
                "watching"
            );
        }
        if tick {
            if let Some(n) = agent.warnings.suppressed_report(now) {
                warn!(
                    "{n} further warnings suppressed: more than {RATE_LIMIT_SLOTS} distinct problems per {WARNING_QUIET:?}"
                );
            }
            agent.send_own_status();
            agent.write_metrics_textfile(now);
            ticks += 1;
            if ticks.is_multiple_of(SAVE_EVERY_TICKS) {
                agent.save_state();
            }
        }
        if let (Some(period), Some(due)) = (watchdog, next_watchdog)
            && now >= due
        {
            agent.lifecycle("WATCHDOG=1");
            next_watchdog = Some(now + period);
        }
    }
    agent.lifecycle("STOPPING=1");
    agent.save_state();
    info!("stopping");
    Ok(())
}

/// Raises the soft limit on open files to the hard limit: a long-lived reader holds one
/// descriptor per worker, and systemd's default soft limit is 1,024.
pub fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            warn!("raising the open-file limit: {e}");
        }
    }
}

/// Everything the loop works on.
struct Agent {
    config: Config,
    services: Vec<Watched>,
    watcher: Watcher,
    /// `$NOTIFY_SOCKET`: our own lifecycle, and `notify = "self"` summaries.
    own_socket: Option<NotifySocket>,
    /// Where `notify = "main-pid"` summaries go.
    systemd_socket: Option<NotifySocket>,
    /// The bus side, on its own thread, when the configuration asks for a bus.
    bus: Option<BusThread>,
    warnings: RateLimit,
    own_status: Option<String>,
    metrics: Arc<Metrics>,
}

/// One watched service.
struct Watched {
    service: Service,
    /// Shared with the service's D-Bus object; locked only briefly, never across an await.
    pool: Arc<Mutex<Pool>>,
    reader: Option<DirReader>,
    wd: Option<i32>,
    /// An event asked for a sweep (or a pass is under way and must go on).
    sweep_now: bool,
    /// A pass was started and is taken in steps.
    mid_pass: bool,
    /// When the pass under way began, for the sweep-duration metric (all its steps).
    pass_started: Instant,
    /// When the last event-caused sweep started, for [`EVENT_SWEEP_GAP`].
    event_swept_at: Option<Instant>,
    /// A first whole pass is done (or the directory could not be opened): READY=1 waits
    /// for every service's.
    swept_once: bool,
    /// Re-checks after a worker closed its file, one slot per [`CLOSE_RECHECKS`] delay:
    /// however many close events arrive, at most two re-checks are pending.
    rechecks: [Option<Instant>; 2],
    membership_pending: bool,
    sent: Option<Sent>,
    /// Workers that came or went since the last WorkerAdded/WorkerReaped batch.
    added: Vec<String>,
    reaped: Vec<String>,
    signalled_at: Option<Instant>,
}

impl Watched {
    /// When an event may next cause a sweep.
    fn next_event_sweep(&self, now: Instant) -> Instant {
        self.event_swept_at.map_or(now, |at| at + EVENT_SWEEP_GAP)
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool
            .lock()
            .expect("never poisoned: no panics while held")
    }

    fn new(service: Service) -> Self {
        Watched {
            pool: Arc::new(Mutex::new(Pool::new(&service))),
            added: Vec::new(),
            reaped: Vec::new(),
            signalled_at: None,
            service,
            reader: None,
            wd: None,
            sweep_now: true,
            mid_pass: false,
            pass_started: Instant::now(),
            swept_once: false,
            event_swept_at: None,
            rechecks: [None; 2],
            membership_pending: true,
            sent: None,
        }
    }
}

impl Agent {
    fn new(config: Config) -> anyhow::Result<Agent> {
        let own_socket = NotifySocket::from_env().context("opening $NOTIFY_SOCKET")?;
        let services = config.services.iter().cloned().map(Watched::new).collect();
        Ok(Agent {
            services,
            watcher: Watcher::new().context("creating an inotify instance")?,
            own_socket,
            systemd_socket: None,
            bus: None,
            warnings: RateLimit::new(WARNING_QUIET),
            own_status: None,
            metrics: Arc::new(Metrics::new()),
            config,
        })
    }

    /// Starts the bus thread, when the configuration asks for a bus; without one the
    /// agent still works, it only cannot serve details or find main processes.
    fn start_bus(&mut self) {
        if self.config.bus == Bus::None {
            return;
        }
        let services = self
            .services
            .iter()
            .map(|w| (w.service.clone(), w.pool.clone()))
            .collect();
        match BusThread::start(
            self.config.bus,
            self.config.interval,
            services,
            self.followed_units(),
        ) {
            Ok(bus) => self.bus = Some(bus),
            Err(e) => error!("starting the bus thread: {e}; not serving {}", dbus::NAME),
        }
    }

    /// The units whose main process the bus thread must follow.
    fn followed_units(&self) -> Vec<String> {
        self.services
            .iter()
            .filter(|w| w.service.notify == NotifyMode::MainPid)
            .map(|w| w.service.unit.clone())
            .collect()
    }

    /// Batches of WorkerAdded/WorkerReaped (at most one per 100 ms per service) and,
    /// at each tick, PropertiesChanged for what changed since the last one — handed to
    /// the bus thread, never waited for.
    fn publish(&mut self, now: Instant, tick: bool) {
        let Some(bus) = &self.bus else { return };
        for watched in &mut self.services {
            let pending = !watched.added.is_empty() || !watched.reaped.is_empty();
            let due = watched
                .signalled_at
                .is_none_or(|at| now >= at + MEMBERSHIP_GAP);
            if pending && due {
                let added = std::mem::take(&mut watched.added);
                let reaped = std::mem::take(&mut watched.reaped);
                bus.worker_signals(&watched.service.unit, added, reaped);
                watched.signalled_at = Some(now);
            }
            if tick {
                let current = {
                    let pool = watched.pool();
                    let summary = pool.summary(now);
                    Published {
                        summary: status_line(
                            &summary,
                            &watched.service.summary,
                            &watched.service.unit,
                        ),
                        total: summary.total,
                        counts: summary.counts,
                        stuck: summary.stuck,
                    }
                };
                bus.publish(&watched.service.unit, current);
            }
        }
        if tick {
            let dropped = bus.take_dropped();
            if dropped > 0 && self.warnings.allow("bus behind", now) {
                warn!("the bus thread was behind: {dropped} signals and property changes dropped");
            }
        }
    }

    /// The textfile for node_exporter, rewritten at every tick when configured.
    fn write_metrics_textfile(&mut self, now: Instant) {
        let Some(path) = &self.config.metrics.textfile else {
            return;
        };
        if let Err(e) = self.metrics.write_textfile(path)
            && self.warnings.allow("textfile", now)
        {
            warn!("writing the metrics textfile {}: {e}", path.display());
        }
    }

    /// Picks up what an earlier agent saved for the service at `index`.
    fn recall(&mut self, index: usize) {
        let watched = &self.services[index];
        match state::load(&self.config.state_directory, &watched.service.unit) {
            Ok(Some(history)) => {
                debug!(unit = %watched.service.unit, workers = history.len(), "remembering change times");
                watched
                    .pool()
                    .remember(history, Instant::now(), SystemTime::now());
            }
            Ok(None) => {}
            Err(e) => warn!(
                unit = %watched.service.unit,
                "ignoring the saved state in {}: {e}",
                self.config.state_directory.display()
            ),
        }
    }

    /// Saves, per service, when each worker's status last changed.
    fn save_state(&mut self) {
        let (now, wall) = (Instant::now(), SystemTime::now());
        for watched in &self.services {
            let history = watched.pool().history(now, wall);
            if let Err(e) = state::save(
                &self.config.state_directory,
                &watched.service.unit,
                &history,
            ) && self.warnings.allow("state", now)
            {
                warn!(
                    "saving state in {}: {e}; a restart will reset stuck timers",
                    self.config.state_directory.display()
                );
            }
        }
    }

    /// Our own notifications. When a service is watched with `notify = "self"`, the
    /// agent is a helper inside that service and `$NOTIFY_SOCKET` speaks for the
    /// service: then only summaries are sent there, never READY, WATCHDOG or our status.
    fn lifecycle(&mut self, message: &str) {
        if self
            .services
            .iter()
            .any(|w| w.service.notify == NotifyMode::Itself)
        {
            return;
        }
        if let Some(socket) = &self.own_socket
            && let Err(e) = socket.send(message)
            && self.warnings.allow("own notify", Instant::now())
        {
            warn!("sending {message:?} to {}: {e}", socket.path().display());
        }
    }

    fn workers(&self) -> usize {
        self.services.iter().map(|w| w.pool().len()).sum()
    }

    fn send_own_status(&mut self) {
        let services = self.services.len();
        let text = format!(
            "watching {services} service{}, {} workers",
            if services == 1 { "" } else { "s" },
            self.workers()
        );
        if self.own_status.as_ref() != Some(&text) {
            self.lifecycle(&notify::status(&text));
            self.own_status = Some(text);
        }
    }

    /// The earliest moment something is due besides events and signals.
    fn next_deadline(&self, next_tick: Instant, next_watchdog: Option<Instant>) -> Instant {
        let mut wake = next_tick;
        if let Some(at) = next_watchdog {
            wake = wake.min(at);
        }
        let now = Instant::now();
        for watched in &self.services {
            for at in watched.rechecks.iter().flatten() {
                wake = wake.min(*at);
            }
            if watched.mid_pass {
                wake = now;
            } else if watched.sweep_now {
                wake = wake.min(watched.next_event_sweep(now));
            }
            if watched.membership_pending
                && let Some(sent) = &watched.sent
            {
                wake = wake.min(sent.at + MEMBERSHIP_GAP);
            }
            if self.bus.is_some()
                && (!watched.added.is_empty() || !watched.reaped.is_empty())
                && let Some(at) = watched.signalled_at
            {
                wake = wake.min(at + MEMBERSHIP_GAP);
            }
            if let Some(at) = watched.pool().next_stuck_at(now) {
                wake = wake.min(at);
            }
        }
        wake
    }

    fn on_event(&mut self, wd: i32, event: DirEvent, now: Instant) {
        if event == DirEvent::Overflow {
            warn!("inotify queue overflowed; sweeping every directory");
            for watched in &mut self.services {
                watched.sweep_now = true;
            }
            return;
        }
        let Some(watched) = self.services.iter_mut().find(|w| w.wd == Some(wd)) else {
            return;
        };
        match event {
            DirEvent::Membership => watched.sweep_now = true,
            DirEvent::Closed => {
                watched.sweep_now = true;
                for (slot, delay) in watched.rechecks.iter_mut().zip(CLOSE_RECHECKS) {
                    slot.get_or_insert(now + delay);
                }
            }
            DirEvent::Gone => {
                info!(unit = %watched.service.unit, "{} is gone; waiting for it to come back", watched.service.directory.display());
                forget_directory(watched, &self.metrics, &mut self.watcher);
            }
            DirEvent::Overflow => unreachable!("handled above"),
        }
    }

    /// Whole passes over every directory, at start and after a reload.
    /// One step of a pass over every directory, at start and after a reload; the loop
    /// finishes the passes (see [`Agent::sweep_due`]).
    fn sweep_steps(&mut self, now: Instant) {
        for index in 0..self.services.len() {
            self.step(index, now);
        }
    }

    /// One step of at most [`SWEEP_STEP`] of the service's pass.
    fn step(&mut self, index: usize, now: Instant) {
        if self.sweep(index, now, Some(Instant::now() + SWEEP_STEP)) {
            self.services[index].swept_once = true;
        }
    }

    /// Sweeps what is due: every directory at a tick, and those with events, re-checks
    /// or a pass under way. Each gets one step of at most [`SWEEP_STEP`]; a pass not
    /// finished goes on at the next turn of the loop, after signals and the watchdog.
    fn sweep_due(&mut self, now: Instant, tick: bool) {
        for index in 0..self.services.len() {
            let watched = &mut self.services[index];
            let mut recheck = false;
            for slot in &mut watched.rechecks {
                if slot.is_some_and(|at| at <= now) {
                    *slot = None;
                    recheck = true;
                }
            }
            let event = watched.sweep_now && watched.next_event_sweep(now) <= now;
            if event {
                watched.event_swept_at = Some(now);
            }
            if tick || event || recheck || watched.mid_pass {
                self.step(index, now);
            }
        }
    }

    /// One step of a pass over the service's directory, opening it first if needed.
    /// Returns whether the pass is over (done, or given up for now).
    fn sweep(&mut self, index: usize, now: Instant, deadline: Option<Instant>) -> bool {
        let watched = &mut self.services[index];
        if !watched.mid_pass {
            // A new pass sees whatever the events were about; events during a pass
            // ask for the next one.
            watched.sweep_now = false;
        }
        let unit = watched.service.unit.clone();
        if let Some(reader) = &watched.reader
            && !watched.mid_pass
            && !reader.still_at_path()
        {
            // Said once per quiet period: an owner swapping it back and forth must not
            // fill the journal.
            if self.warnings.allow_hashed(("moved", &unit), now) {
                info!(unit = %unit, "{} was moved or replaced; opening it again", watched.service.directory.display());
            }
            forget_directory(watched, &self.metrics, &mut self.watcher);
        }
        if watched.reader.is_none() {
            match DirReader::open(&watched.service.directory, read_options(&watched.service)) {
                Ok(reader) => {
                    match self.watcher.watch(reader.as_fd()) {
                        Ok(wd) => watched.wd = Some(wd),
                        Err(e) => {
                            warn!(unit = %unit, "watching {}: {e}; relying on the periodic sweep", watched.service.directory.display())
                        }
                    }
                    if self.warnings.allow_hashed(("reading", &unit), now) {
                        info!(unit = %unit, "reading {}", watched.service.directory.display());
                    }
                    watched.reader = Some(reader);
                }
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::NotFound
                        && self.warnings.allow_hashed(("open", &unit), now)
                    {
                        warn!(unit = %unit, "{e}; not reading it");
                    }
                    return true;
                }
            }
        }
        let reader = watched.reader.as_mut().expect("opened above");
        if !watched.mid_pass {
            watched.pass_started = Instant::now();
        }
        let mut snapshot = match reader.sweep_until(deadline) {
            Ok(Progress::Done(snapshot)) => snapshot,
            Ok(Progress::Partial) => {
                watched.mid_pass = true;
                return false;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                forget_directory(watched, &self.metrics, &mut self.watcher);
                return true;
            }
            Err(e) => {
                watched.mid_pass = false;
                if self.warnings.allow_hashed(("sweep", &unit), now) {
                    warn!(unit = %unit, "{e}");
                }
                return true;
            }
        };
        watched.mid_pass = false;
        let took = watched.pass_started.elapsed();
        // Who may see per-worker details is decided on the directory just read.
        let access = rustix::fs::fstat(reader.as_fd())
            .ok()
            .map(|stat| DirAccess {
                uid: stat.st_uid,
                gid: stat.st_gid,
                mode: stat.st_mode & 0o7777,
            });
        let (changes, summary) = {
            let mut pool = watched.pool();
            let changes = pool.observe(&mut snapshot, now);
            pool.set_access(access);
            (changes, pool.summary(now))
        };
        self.metrics.sweep(
            &unit,
            took,
            &summary,
            snapshot.reaped.len(),
            &snapshot.skip_counts,
        );
        // Batched for WorkerAdded/WorkerReaped; without a bus nobody would drain them.
        if self.bus.is_some() {
            watched.added.extend(changes.added.iter().cloned());
            watched.reaped.extend(changes.removed.iter().cloned());
        }
        for id in &changes.added {
            debug!(unit = %unit, worker = %Escaped::str(id), "worker joined");
        }
        for id in &snapshot.reaped {
            info!(unit = %unit, worker = %Escaped::str(id), "removed the file of a dead worker");
        }
        for id in &changes.removed {
            debug!(unit = %unit, worker = %Escaped::str(id), "worker left");
        }
        if changes.membership() {
            watched.membership_pending = true;
        }
        self.warn_skipped(&unit, &snapshot, now);
        true
    }

    /// One warning per kind of problem per quiet period per service, however many
    /// entries have it: the first one listed, and how many there were in this pass.
    fn warn_skipped(&mut self, unit: &str, snapshot: &scoreboard::Snapshot, now: Instant) {
        for (kind, count) in &snapshot.skip_counts {
            if !self.warnings.allow_hashed(("skip", unit, kind), now) {
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

    fn send_summaries(&mut self, now: Instant, tick: bool) {
        for index in 0..self.services.len() {
            self.send_summary(index, now, tick);
        }
    }

    /// Sends the service's summary if it changed and is due, or if the service has a
    /// new main process that has not heard it yet.
    fn send_summary(&mut self, index: usize, now: Instant, tick: bool) {
        let watched = &self.services[index];
        let text = status_line(
            &watched.pool().summary(now),
            &watched.service.summary,
            &watched.service.unit,
        );
        let last = watched.sent.as_ref();
        let text_due = pacing::text_due(
            last,
            &text,
            watched.membership_pending,
            self.config.interval,
            now,
        );
        // The main process is looked up at every tick, so a restarted service (a new
        // MainPID) hears the summary again even when the text is the same.
        let changed = last.is_none_or(|sent| sent.text != text);
        let ask_pid = watched.service.notify == NotifyMode::MainPid && (tick || changed);
        if !text_due && !ask_pid {
            return;
        }
        let pid = if ask_pid {
            match self.main_pid(index, now) {
                Some(pid) => pid,
                None => return,
            }
        } else {
            0
        };
        let watched = &self.services[index];
        if !text_due && !pacing::new_listener(watched.sent.as_ref(), pid) {
            return;
        }
        let mode = watched.service.notify;
        if pid == 0 && mode == NotifyMode::MainPid {
            return; // not running: nobody to speak for
        }
        let unit = watched.service.unit.clone();
        let message = notify::status(&text);
        let result = match mode {
            NotifyMode::None => Ok(()),
            NotifyMode::Itself => match &self.own_socket {
                Some(socket) => socket.send(&message),
                None => Err(std::io::Error::other("$NOTIFY_SOCKET is not set")),
            },
            NotifyMode::MainPid => self
                .systemd_socket()
                .and_then(|socket| socket.send_as(&message, pid)),
        };
        match result {
            Ok(()) => {
                debug!(unit = %unit, "STATUS={text}");
                let watched = &mut self.services[index];
                watched.sent = Some(Sent { text, at: now, pid });
                watched.membership_pending = false;
            }
            // The main process we spoke for has gone (the service restarted): learn the
            // new one now; the summary goes to it as soon as it is known.
            Err(e)
                if mode == NotifyMode::MainPid
                    && e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) =>
            {
                debug!(unit = %unit, "main process {pid} is gone; asking systemd again");
                if let Some(bus) = &self.bus {
                    bus.refresh(&unit);
                }
            }
            Err(e) => {
                self.metrics.notify_error(&unit);
                if self.warnings.allow_hashed(("notify", &unit, e.kind()), now) {
                    warn!(unit = %unit, "sending the summary: {e}");
                }
            }
        }
    }

    /// The socket for summaries on behalf of main processes, opened on first use (a
    /// reload may bring the first `main-pid` service).
    fn systemd_socket(&mut self) -> std::io::Result<&NotifySocket> {
        if self.systemd_socket.is_none() {
            self.systemd_socket = Some(NotifySocket::at(&systemd_socket_path(&self.config))?);
        }
        Ok(self.systemd_socket.as_ref().expect("opened above"))
    }

    /// The service's main pid (0: not running), as the bus thread last learned it, or
    /// `None` when it is not known or systemd will not listen.
    fn main_pid(&mut self, index: usize, now: Instant) -> Option<u32> {
        let unit = &self.services[index].service.unit;
        let Some(bus) = &self.bus else {
            return None;
        };
        match bus.main_process(unit) {
            Some(main) if main.pid != 0 && main.notify_access == "none" => {
                if self.warnings.allow_hashed(("access", unit), now) {
                    warn!(
                        unit = %unit,
                        "systemd ignores STATUS= for {unit} because it has NotifyAccess=none; \
                         set NotifyAccess=main in a drop-in (scoreboardctl enable does) and restart it"
                    );
                }
                None
            }
            Some(main) => Some(main.pid),
            None => None,
        }
    }

    /// SIGHUP: re-read the configuration, keeping what we know of unchanged services.
    fn reload(&mut self) {
        self.lifecycle(&notify::reloading());
        match Config::load(&self.config.path) {
            Ok(config) => {
                warn_needs_restart(&self.config, &config);
                let mut old = std::mem::take(&mut self.services);
                let mut added = Vec::new();
                for service in &config.services {
                    let kept = old
                        .iter()
                        .position(|w| &w.service == service)
                        .map(|i| old.swap_remove(i));
                    let watched = kept.unwrap_or_else(|| {
                        added.push((service.clone(), self.services.len()));
                        Watched::new(service.clone())
                    });
                    self.services.push(watched);
                }
                for gone in &old {
                    if let Some(wd) = gone.wd {
                        self.watcher.unwatch(wd);
                    }
                    self.metrics.forget(&gone.service.unit);
                    state::remove(&self.config.state_directory, &gone.service.unit);
                    info!(unit = %gone.service.unit, "no longer watched");
                }
                if let Some(bus) = &self.bus {
                    // A changed service is removed and added again, with its new settings.
                    for gone in &old {
                        bus.remove(&gone.service.unit);
                    }
                    for (service, index) in &added {
                        bus.add(service.clone(), self.services[*index].pool.clone());
                    }
                    bus.follow(self.followed_units());
                }
                // What a dropped service left behind is in the old state directory; what
                // an added one may find, in the new one.
                self.config = config;
                for (_, index) in &added {
                    self.recall(*index);
                }
                info!(services = self.services.len(), "configuration reloaded");
            }
            Err(e) => error!("keeping the running configuration: {e:#}"),
        }
        let now = Instant::now();
        // The configuration is in force: READY=1 now; the new passes are the loop's.
        self.sweep_steps(now);
        self.send_summaries(now, true);
        self.lifecycle("READY=1");
        self.send_own_status();
    }
}

/// Settings a reload does not apply, said once each: the bus connection, the metrics
/// listener and the notify socket are set up at start. (`interval`, services and the
/// metrics textfile take effect at once.)
fn warn_needs_restart(running: &Config, loaded: &Config) {
    let mut changed = Vec::new();
    if running.bus != loaded.bus {
        changed.push("bus");
    }
    if running.metrics.listen != loaded.metrics.listen {
        changed.push("metrics.listen");
    }
    if running.notify_socket != loaded.notify_socket {
        changed.push("notify_socket");
    }
    if !changed.is_empty() {
        warn!(
            "{} changed in {}: applied at the next restart of the agent, not by a reload",
            changed.join(", "),
            loaded.path.display()
        );
    }
}

/// Where summaries on behalf of main processes go: the configured socket, else ours
/// (systemd's, when systemd started us), else systemd's well-known path.
fn systemd_socket_path(config: &Config) -> std::path::PathBuf {
    config
        .notify_socket
        .clone()
        .or_else(|| std::env::var_os("NOTIFY_SOCKET").map(Into::into))
        .unwrap_or_else(|| notify::SYSTEMD_NOTIFY_SOCKET.into())
}

/// The reader's budgets for a service.
fn read_options(service: &Service) -> ReadOptions {
    ReadOptions {
        max_workers: service.max_workers,
        max_status_bytes: service.max_status_bytes,
        ..ReadOptions::default()
    }
}

/// The directory went away: drop what we held, report its workers gone, and take its
/// per-state gauges down.
fn forget_directory(watched: &mut Watched, metrics: &Metrics, watcher: &mut Watcher) {
    metrics.forget(&watched.service.unit);
    watched.pool().set_access(None);
    watched.reader = None;
    watched.mid_pass = false;
    if let Some(wd) = watched.wd.take() {
        // Gone already when the kernel dropped it with the directory; not an error.
        watcher.unwatch(wd);
    }
    let gone = watched.pool().clear();
    if !gone.is_empty() {
        watched.membership_pending = true;
        watched.reaped.extend(gone);
    }
}
