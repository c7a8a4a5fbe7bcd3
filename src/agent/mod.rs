//! The agent's I/O shell around the core: one task on a current-thread tokio runtime
//! that waits for whichever comes first — the next timer ([`Timers`]), a service's
//! wake-up ([`Schedule::next_wake`](crate::core::schedule::Schedule::next_wake)),
//! inotify events, a reload or the shutdown — feeds what happened to the core, and does
//! what it answers: step the due passes (`service.rs`), send `STATUS=` lines, hand
//! D-Bus signals and properties to the bus thread, ping the watchdog, save state.
//!
//! [`run`] takes its shutdown and reload triggers as arguments: the binary wires them
//! to SIGTERM/SIGINT and SIGHUP ([`signals`]); nothing here installs a signal handler.

mod actions;
mod memory;
mod process;
mod reload;
mod service;

pub use process::{raise_fd_limit, signals};

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::bus::BusThread;
use crate::bus::server::Published;
use crate::config::{Bus, Config, NotifyMode};
use crate::core::rate_limit::{RATE_LIMIT_SLOTS, RateLimit};
use crate::core::schedule::{Behalf, DirChange, Timers};
use crate::io::notify::{self, Message, NotifySocket};
use crate::io::systemd::{MainProcess, NotifyAccess};
use crate::io::watch::{DirEvent, Watcher};
use crate::metrics::{self, Metrics};
use service::{Shell, Watched};

/// The longest one step of a sweep may run before the loop gets back to Unix signals, the
/// watchdog and other services; a pass over a huge directory is taken in such steps.
const SWEEP_STEP: Duration = Duration::from_millis(20);

/// How long the same warning stays quiet.
const WARNING_QUIET: Duration = Duration::from_secs(600);

/// Runs the agent until `shutdown` completes, re-reading the configuration at each
/// message on `reloads`.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
    mut reloads: mpsc::UnboundedReceiver<()>,
) -> anyhow::Result<()> {
    let mut agent = Agent::new(config)?;
    // Said once at start, per service whose kill_stuck_after cannot be carried out,
    // rather than only when a worker is first stuck.
    for sentence in
        crate::config::unactionable(&agent.config.services, crate::io::privileges::own())
    {
        warn!("{sentence}");
    }
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
    // The first passes are taken in steps like any other, so that a huge directory
    // cannot hold up the watchdog or the shutdown; READY=1 follows once every service
    // has had its first whole pass (at once, for any normal directory).
    agent.step_all(Instant::now());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let wake = agent.next_wake(Instant::now());
        let mut events = Vec::new();
        tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => {}
            batch = agent.watcher.next_batch() => match batch {
                Ok(batch) => events = batch,
                Err(e) => error!("reading inotify events: {e}"),
            },
            Some(()) = reloads.recv() => agent.reload(),
            () = &mut shutdown => break,
        }
        let now = Instant::now();
        for (wd, event) in events {
            agent.on_event(wd, event, now);
        }
        agent.turn(now);
    }
    agent.lifecycle(&Message::Stopping);
    agent.save_state();
    agent.remove_metrics_textfile();
    info!("stopping");
    Ok(())
}

/// Everything the loop works on.
struct Agent {
    config: Config,
    services: Vec<Watched>,
    timers: Timers,
    watcher: Watcher,
    /// Where `notify = "main-pid"` summaries go, opened on first use.
    systemd_socket: Option<NotifySocket>,
    /// The bus side, on its own thread, when the configuration asks for a bus.
    bus: Option<BusThread>,
    warnings: RateLimit,
    own_status: Option<String>,
    metrics: Arc<Metrics>,
}

impl Agent {
    fn new(config: Config) -> anyhow::Result<Agent> {
        let on_bus = config.bus != Bus::None;
        let services = config
            .services
            .iter()
            .map(|service| Watched::new(service.clone(), on_bus))
            .collect();
        let metrics = Arc::new(Metrics::new());
        for service in &config.services {
            metrics.watch(&service.unit);
        }
        Ok(Agent {
            services,
            timers: Timers::new(Instant::now(), config.interval, notify::watchdog_interval()),
            watcher: Watcher::new().context("creating an inotify instance")?,
            systemd_socket: None,
            bus: None,
            warnings: RateLimit::new(WARNING_QUIET),
            own_status: None,
            metrics,
            config,
        })
    }

    /// One turn of the loop after its wake-up: what the clock and the services say is
    /// due.
    fn turn(&mut self, now: Instant) {
        let due = self.timers.advance(now);
        self.step_due(now, due.tick);
        // Until READY=1, every turn is treated as a tick: the first lines go at once.
        let tick = due.tick || !self.timers.is_ready();
        self.send_summaries(now, tick);
        self.publish(now, tick);
        self.act(now);
        let all_swept = self.services.iter().all(|w| w.schedule.swept_once());
        if self.timers.ready_now(now, all_swept) {
            self.lifecycle(&Message::Ready);
            self.send_own_status();
            info!(
                services = self.services.len(),
                workers = self.workers(),
                "watching"
            );
        }
        if due.tick {
            if let Some(n) = self.warnings.suppressed_report(now) {
                warn!(
                    "{n} further warnings suppressed: more than {RATE_LIMIT_SLOTS} distinct problems per {WARNING_QUIET:?}"
                );
            }
            self.send_own_status();
            self.write_metrics_textfile(now);
        }
        if due.save {
            self.save_state();
        }
        if due.watchdog {
            self.lifecycle(&Message::Watchdog);
        }
    }

    /// The earliest moment something is due besides events and Unix signals.
    fn next_wake(&self, now: Instant) -> Instant {
        self.services
            .iter()
            .flat_map(|w| {
                let pool = w.pool();
                let health = w
                    .service
                    .health_actions
                    .enabled()
                    .then(|| w.health.next_wake(&pool, now))
                    .flatten();
                [w.schedule.next_wake(now, pool.next_stuck_at(now)), health]
            })
            .flatten()
            .fold(self.timers.next_wake(), Instant::min)
    }

    fn on_event(&mut self, wd: i32, event: DirEvent, now: Instant) {
        let change = match event {
            DirEvent::Overflow => {
                warn!("inotify queue overflowed; sweeping every directory");
                self.services
                    .iter_mut()
                    .for_each(|w| w.schedule.on_overflow());
                return;
            }
            DirEvent::Membership => DirChange::Membership,
            DirEvent::Closed => DirChange::Closed,
            DirEvent::Gone => {
                let (services, mut shell) = self.services_and_shell();
                if let Some(watched) = services.iter_mut().find(|w| w.watches(wd)) {
                    info!(unit = %watched.unit(), "{} is gone; waiting for it to come back", watched.service.directory.display());
                    watched.forget_directory(&mut shell);
                }
                return;
            }
        };
        if let Some(watched) = self.services.iter_mut().find(|w| w.watches(wd)) {
            watched.schedule.on_change(change, now);
        }
    }

    /// The services, and the shell they are stepped with, borrowed apart.
    fn services_and_shell(&mut self) -> (&mut [Watched], Shell<'_>) {
        let shell = Shell {
            watcher: &mut self.watcher,
            metrics: &self.metrics,
            warnings: &mut self.warnings,
        };
        (&mut self.services, shell)
    }

    /// One step of a pass over every directory, at start and after a reload; the loop
    /// finishes the passes.
    fn step_all(&mut self, now: Instant) {
        let (services, mut shell) = self.services_and_shell();
        for watched in services {
            watched.step(&mut shell, now, Instant::now() + SWEEP_STEP);
        }
    }

    /// One step of at most [`SWEEP_STEP`] for each service the schedule says is due: a
    /// pass not finished goes on at the next turn, after signals and the watchdog.
    fn step_due(&mut self, now: Instant, tick: bool) {
        let (services, mut shell) = self.services_and_shell();
        for watched in services {
            if watched.schedule.sweep_due(now, tick) {
                watched.step(&mut shell, now, Instant::now() + SWEEP_STEP);
            }
        }
    }

    fn send_summaries(&mut self, now: Instant, tick: bool) {
        for index in 0..self.services.len() {
            self.send_summary(index, now, tick);
        }
    }

    /// Sends the service's line if the schedule says it is due.
    fn send_summary(&mut self, index: usize, now: Instant, tick: bool) {
        let watched = &self.services[index];
        let text = watched.pool().status_line(now);
        let (bus, warnings) = (&self.bus, &mut self.warnings);
        let unit = watched.unit();
        let Some(behalf) = watched.schedule.status_due(
            &text,
            now,
            self.timers.interval(),
            tick,
            watched.listener(),
            || main_pid(bus.as_ref(), warnings, unit, now),
        ) else {
            return;
        };
        let mode = watched.service.notify;
        let unit = unit.to_owned();
        // A line is at most 256 bytes and goes out at most ten times a second.
        let message = Message::Status(text.clone());
        let result = match (mode, behalf) {
            (NotifyMode::None, _) => Ok(()),
            (NotifyMode::Itself, _) => notify::own(&message),
            (NotifyMode::MainPid, Behalf::MainProcess(pid)) => self
                .systemd_socket()
                .and_then(|socket| socket.send_as(&message, pid)),
            // The schedule names a main process for every main-pid service.
            (NotifyMode::MainPid, Behalf::Agent) => return,
        };
        match result {
            Ok(()) => {
                debug!(unit = %unit, "STATUS={text}");
                self.services[index].schedule.status_sent(text, now, behalf);
            }
            // The main process we spoke for has gone (the service restarted): learn the
            // new one now; the summary goes to it as soon as it is known.
            Err(e)
                if let Behalf::MainProcess(pid) = behalf
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
    /// reload may bring the first `main-pid` service, or name another socket).
    fn systemd_socket(&mut self) -> std::io::Result<&NotifySocket> {
        if self.systemd_socket.is_none() {
            self.systemd_socket = Some(NotifySocket::at(&systemd_socket_path(&self.config))?);
        }
        Ok(self.systemd_socket.as_ref().expect("opened above"))
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
            Err(e) => error!(
                "starting the bus thread: {e}; not serving {}",
                crate::bus::NAME
            ),
        }
    }

    /// The units whose main process the bus thread must follow.
    fn followed_units(&self) -> Vec<String> {
        self.services
            .iter()
            .filter(|w| {
                w.service.notify == NotifyMode::MainPid || w.service.health_actions.enabled()
            })
            .map(|w| w.service.unit.clone())
            .collect()
    }

    /// Batches of WorkerAdded/WorkerReaped as the schedules release them and, at each
    /// tick, PropertiesChanged for what changed since the last one — handed to the bus
    /// thread, never waited for.
    fn publish(&mut self, now: Instant, tick: bool) {
        let Some(bus) = &self.bus else { return };
        for watched in &mut self.services {
            if let Some((added, reaped)) = watched.schedule.membership_batch_due(now) {
                bus.membership_changed(&watched.service.unit, added, reaped);
            }
            if tick {
                let current = Published::of(&watched.pool(), now);
                bus.publish(&watched.service.unit, current);
            }
        }
        if tick {
            let dropped = bus.take_dropped();
            if dropped > 0 && self.warnings.allow("bus behind", now) {
                warn!(
                    "the bus thread was behind: {dropped} D-Bus signals and property changes dropped"
                );
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

    /// A clean stop takes the textfile away: node_exporter would otherwise serve its
    /// last values for as long as it runs. (After a crash it stays, and
    /// `scoreboard_last_sweep_timestamp_seconds` shows how old it is.)
    fn remove_metrics_textfile(&self) {
        if let Some(path) = &self.config.metrics.textfile
            && let Err(e) = metrics::remove_textfile(path)
        {
            warn!("removing the metrics textfile {}: {e}", path.display());
        }
    }

    /// Our own notifications. When a service is watched with `notify = "self"`, the
    /// agent is a helper inside that service and `$NOTIFY_SOCKET` speaks for the
    /// service: then only summaries are sent there, never READY, WATCHDOG or our status.
    fn lifecycle(&mut self, message: &Message) {
        if self
            .services
            .iter()
            .any(|w| w.service.notify == NotifyMode::Itself)
        {
            return;
        }
        let Some(socket) = notify::own_socket() else {
            return;
        };
        if let Err(e) = notify::own(message)
            && self.warnings.allow("own notify", Instant::now())
        {
            warn!(
                "sending {:?} to {}: {e}",
                message.to_string(),
                socket.display()
            );
        }
    }

    fn workers(&self) -> usize {
        self.services.iter().map(|w| w.pool().len()).sum()
    }

    fn send_own_status(&mut self) {
        let services = self.services.len();
        let mut text = format!(
            "watching {services} service{}, {} workers",
            if services == 1 { "" } else { "s" },
            self.workers()
        );
        let refused = crate::bus::bounded::refused();
        if refused > 0 {
            text.push_str(&format!("; {refused} oversized bus messages refused"));
        }
        if self.own_status.as_ref() != Some(&text) {
            self.lifecycle(&Message::Status(text.clone()));
            self.own_status = Some(text);
        }
    }
}

/// Marks each watched service's line as no longer followed (`notify = "main-pid"`
/// services that are running): what the unit's `ExecStopPost=` runs however the agent
/// ended, so that no `systemctl status` keeps claiming a count nobody updates.
pub async fn mark_stopped(config: &Config) -> anyhow::Result<()> {
    let connection = match config.bus {
        Bus::System => zbus::connection::Builder::system().build().await?,
        Bus::Session => zbus::connection::Builder::session().build().await?,
        Bus::None => return Ok(()),
    };
    let systemd = crate::io::systemd::Systemd::new(connection);
    let socket = NotifySocket::at(&systemd_socket_path(config))
        .context("opening systemd's notify socket")?;
    let since = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let text = format!("not followed since {since}: scoreboard-agent stopped");
    for service in &config.services {
        if service.notify != NotifyMode::MainPid {
            continue;
        }
        let unit = &service.unit;
        match systemd.main_process(unit).await {
            Ok(MainProcess {
                pid: Some(pid),
                notify_access,
                ..
            }) if notify_access != NotifyAccess::None => {
                if let Err(e) = socket.send_as(&Message::Status(text.clone()), pid) {
                    eprintln!("scoreboard-agent: {unit}: marking its status line: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("scoreboard-agent: {unit}: asking systemd for its main process: {e:#}")
            }
        }
    }
    Ok(())
}

/// The service's main pid (0: not running), as the bus thread last learned it, or
/// `None` when it is not known or systemd will not listen.
fn main_pid(
    bus: Option<&BusThread>,
    warnings: &mut RateLimit,
    unit: &str,
    now: Instant,
) -> Option<u32> {
    match bus?.main_process(unit) {
        Some(MainProcess {
            pid: Some(_),
            notify_access: NotifyAccess::None,
            ..
        }) => {
            if warnings.allow_hashed(("access", unit), now) {
                warn!(
                    unit = %unit,
                    "systemd ignores STATUS= for {unit} because it has NotifyAccess=none; \
                     set NotifyAccess=main in a drop-in (scoreboardctl enable does) and restart it"
                );
            }
            None
        }
        Some(main) => main.pid,
        None => None,
    }
}

/// Where summaries on behalf of main processes go: the configured socket, else ours
/// (systemd's, when systemd started us), else systemd's well-known path.
fn systemd_socket_path(config: &Config) -> std::path::PathBuf {
    config
        .notify_socket
        .clone()
        .or_else(notify::own_socket)
        .unwrap_or_else(|| notify::SYSTEMD_NOTIFY_SOCKET.into())
}
