//! The agent's side of the bus, on a thread of its own, so that nothing a bus client
//! does — a flood of calls, a slow reader — and nothing the bus does — a restart of
//! dbus, a dropped connection — can hold up the loop that sweeps, sends `STATUS=` and
//! answers the watchdog.
//!
//! The thread keeps two connections: one that owns `io.scoreboard.Agent1` and serves
//! its objects, one call at a time; and one that asks — systemd for each main-pid
//! service's main process, the bus daemon for callers' credentials — so its answers
//! never queue behind calls waiting on the first. The loop talks to the thread through
//! a bounded channel (D-Bus signals and property changes; when it is full they are
//! dropped and counted, never waited for) and reads the main processes it last learned from a
//! shared table.
//!
//! When a connection drops, the thread says so once, reconnects with backoff (100 ms,
//! doubling to 1 s), takes the name again, re-exports every object, and says so once.
//! Meanwhile the loop keeps sending `STATUS=` to the main processes it knew, each still
//! checked to run in its unit's control group.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::{self, Service};
use crate::core::health::Action;
use crate::lock::lock;

pub mod bounded;
pub mod gate;
pub mod names;
pub mod properties;
pub mod quota;
pub mod server;

use crate::core::pool::Pool;
use crate::io::systemd::{MainProcess, Systemd};
pub use names::{ManagerProxy, NAME, ServiceProxy, WorkerInfo};
use server::{Gate, Published, Server};

/// Commands queued for the bus thread at most; past that they are dropped.
const QUEUE: usize = 1024;
/// Calls queued on the serving connection at most before zbus stops reading the
/// socket (the rest wait in the bus daemon, within its per-peer limits).
const MAX_QUEUED_CALLS: usize = 64;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// At most a second between attempts: the name is back within about a second of the
/// bus, however long it was away.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What the loop asks of the bus thread.
enum Command {
    /// A service added on reload: serve its object.
    Add(Service, Arc<Mutex<Pool>>),
    /// A service dropped on reload.
    Remove(String),
    /// The service's properties now; PropertiesChanged for what differs.
    Publish(String, Published),
    /// Worker ids that came and went: WorkerAdded and WorkerReaped.
    Membership(String, Vec<String>, Vec<String>),
    /// A health action: unit, action, worker (empty for the whole unit), what was done.
    Action(String, Action, String, String),
    /// Units whose main process to follow (notify = "main-pid").
    Follow(Vec<String>),
    /// Ask systemd again now: a main process we spoke for has gone.
    Refresh,
}

/// What both sides share.
#[derive(Default)]
struct Shared {
    main_processes: Mutex<HashMap<String, MainProcess>>,
    serving: AtomicBool,
    dropped: AtomicU64,
}

/// The loop's handle on the bus thread.
pub struct BusThread {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl BusThread {
    /// Starts the thread on `bus`, serving `services` and following the main processes
    /// of `follow`, refreshed every `interval`.
    pub fn start(
        bus: config::Bus,
        interval: Duration,
        services: Vec<(Service, Arc<Mutex<Pool>>)>,
        follow: Vec<String>,
    ) -> std::io::Result<BusThread> {
        let (commands, receiver) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Inherit the loop's log subscriber (a global default).
        std::thread::Builder::new()
            .name("bus".to_owned())
            .spawn(move || {
                let state = State {
                    bus,
                    interval,
                    services,
                    follow,
                    shared: thread_shared,
                };
                runtime.block_on(state.run(receiver));
            })?;
        Ok(BusThread { commands, shared })
    }

    /// The main process last learned for `unit`. While the bus is up, as systemd said at
    /// most an interval ago; while it is down, only if it still runs in the unit's
    /// control group. `None` when unknown.
    pub fn main_process(&self, unit: &str) -> Option<MainProcess> {
        let known = lock(&self.shared.main_processes).get(unit).cloned()?;
        if self.is_serving() || known.pid.is_none() || known.still_there() {
            Some(known)
        } else {
            None
        }
    }

    /// Whether the thread is connected and serving.
    pub fn is_serving(&self) -> bool {
        self.shared.serving.load(Ordering::Relaxed)
    }

    /// Commands dropped because the thread was behind, since last asked.
    pub fn take_dropped(&self) -> u64 {
        self.shared.dropped.swap(0, Ordering::Relaxed)
    }

    /// A service added on reload.
    pub fn add(&self, service: Service, pool: Arc<Mutex<Pool>>) {
        self.send(Command::Add(service, pool));
    }

    /// A service dropped on reload.
    pub fn remove(&self, unit: &str) {
        self.send(Command::Remove(unit.to_owned()));
    }

    /// The service's current properties, announced if they changed.
    pub fn publish(&self, unit: &str, current: Published) {
        self.send(Command::Publish(unit.to_owned(), current));
    }

    /// A batch of workers that came and went, for WorkerAdded and WorkerReaped.
    pub fn membership_changed(&self, unit: &str, added: Vec<String>, reaped: Vec<String>) {
        self.send(Command::Membership(unit.to_owned(), added, reaped));
    }

    /// ActionTaken for a health action on `unit` (`worker` empty for the whole unit).
    pub fn action_taken(&self, unit: &str, action: Action, worker: &str, detail: &str) {
        self.send(Command::Action(
            unit.to_owned(),
            action,
            worker.to_owned(),
            detail.to_owned(),
        ));
    }

    /// The units whose main processes to follow, after a reload.
    pub fn follow(&self, units: Vec<String>) {
        self.send(Command::Follow(units));
    }

    /// A main process is gone (a restarted service): ask systemd again now rather than
    /// at the next interval. Until then that unit has no main process to speak for.
    pub fn refresh(&self, unit: &str) {
        lock(&self.shared.main_processes).remove(unit);
        self.send(Command::Refresh);
    }

    /// Never waits: a thread that is behind loses D-Bus signals (counted), not the loop's time.
    fn send(&self, command: Command) {
        if self.commands.try_send(command).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The thread's own state.
struct State {
    bus: config::Bus,
    interval: Duration,
    services: Vec<(Service, Arc<Mutex<Pool>>)>,
    follow: Vec<String>,
    shared: Arc<Shared>,
}

/// A live pair of connections.
struct Live {
    server: Server,
    serving: zbus::Connection,
    asking: zbus::Connection,
    published: HashMap<String, Published>,
}

impl State {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut backoff = FIRST_BACKOFF;
        let mut lost: Option<Instant> = None;
        let mut said_failure = false;
        loop {
            match self.connect().await {
                Ok(mut live) => {
                    match lost.take() {
                        Some(at) => info!(
                            "reconnected to the {} after {:.1?}: serving {} again",
                            self.bus,
                            at.elapsed(),
                            NAME
                        ),
                        None => info!("serving {} on the {}", NAME, self.bus),
                    }
                    self.shared.serving.store(true, Ordering::Relaxed);
                    backoff = FIRST_BACKOFF;
                    said_failure = false;
                    if self.serve(&mut live, &mut commands).await.is_break() {
                        return;
                    }
                    self.shared.serving.store(false, Ordering::Relaxed);
                    warn!(
                        "lost the {} connection; reconnecting, while STATUS= goes on to the main processes known",
                        self.bus
                    );
                    lost = Some(Instant::now());
                }
                Err(e) => {
                    if !said_failure {
                        warn!(
                            "not serving {} on the {}: {}; retrying",
                            NAME,
                            self.bus,
                            crate::error_chain::text(&e)
                        );
                        said_failure = true;
                    } else {
                        debug!(
                            "connecting to the {}: {}",
                            self.bus,
                            crate::error_chain::text(&e)
                        );
                    }
                }
            }
            // Back off, keeping up with reloads meanwhile.
            let until = tokio::time::Instant::now() + backoff;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    command = commands.recv() => match command {
                        None => return,
                        Some(command) => self.offline(command),
                    },
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// A connection to the configured bus over a socket the agent reads itself, so
    /// that no message over [`bounded::MAX_MESSAGE`] is ever allocated (see
    /// [`bounded`]); zbus's own connection only for an address that is not a Unix
    /// socket, which the agent's buses never are.
    async fn builder(&self) -> anyhow::Result<zbus::connection::Builder<'static>> {
        let system = match self.bus {
            config::Bus::System => true,
            config::Bus::Session => false,
            config::Bus::None => return Err(zbus::Error::Unsupported.into()),
        };
        let address = bounded::bus_address(system).ok_or_else(|| {
            anyhow::anyhow!("no session bus: DBUS_SESSION_BUS_ADDRESS is not set")
        })?;
        match bounded::endpoint(&address) {
            Some(endpoint) => {
                let socket = bounded::connect(&endpoint)
                    .await
                    .with_context(|| format!("connecting to the bus at {address}"))?;
                Ok(zbus::connection::Builder::socket(socket))
            }
            None => {
                tracing::warn!(
                    "the bus address {address:?} is not a Unix socket: incoming messages are not bounded in size"
                );
                Ok(zbus::connection::Builder::address(address.as_str()))
            }
        }
    }

    /// Both connections, every object, the name.
    async fn connect(&self) -> anyhow::Result<Live> {
        let asking = self.builder().await?.build().await?;
        let serving = self
            .builder()
            .await?
            .max_queued(MAX_QUEUED_CALLS.try_into().expect("not zero"))
            .build()
            .await?;
        let gate = Gate::new(asking.clone(), self.interval);
        let server = Server::start(serving.clone(), gate, self.services.iter().cloned()).await?;
        Ok(Live {
            server,
            serving,
            asking,
            published: HashMap::new(),
        })
    }

    /// Serves until a connection drops (`Continue`) or the loop is gone (`Break`).
    async fn serve(
        &mut self,
        live: &mut Live,
        commands: &mut mpsc::Receiver<Command>,
    ) -> std::ops::ControlFlow<()> {
        let systemd = Systemd::new(live.asking.clone());
        let mut refresh = tokio::time::interval(self.interval);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = live.serving.closed() => return std::ops::ControlFlow::Continue(()),
                () = live.asking.closed() => return std::ops::ControlFlow::Continue(()),
                _ = refresh.tick() => self.refresh(&systemd).await,
                command = commands.recv() => match command {
                    None => return std::ops::ControlFlow::Break(()),
                    Some(command) => self.online(live, command).await,
                },
            }
        }
    }

    /// Asks systemd for every followed unit's main process.
    async fn refresh(&self, systemd: &Systemd) {
        for unit in &self.follow {
            match systemd.main_process(unit).await {
                Ok(main) => {
                    lock(&self.shared.main_processes).insert(unit.clone(), main);
                }
                Err(e) => debug!(unit = %unit, "{}", crate::error_chain::text(&e)),
            }
        }
    }

    async fn online(&mut self, live: &mut Live, command: Command) {
        let result = match command {
            Command::Publish(unit, current) => {
                let published = live.published.entry(unit.clone()).or_default();
                live.server.publish(&unit, current, published).await
            }
            Command::Membership(unit, added, reaped) => {
                live.server.emit_membership(&unit, added, reaped).await
            }
            Command::Action(unit, action, worker, detail) => {
                live.server
                    .action_taken(&unit, action, &worker, &detail)
                    .await
            }
            Command::Add(service, pool) => {
                self.services.push((service.clone(), pool.clone()));
                live.server.add(service, pool).await
            }
            Command::Remove(unit) => {
                self.services.retain(|(s, _)| s.unit != unit);
                live.published.remove(&unit);
                live.server.remove(&unit).await
            }
            Command::Follow(units) => {
                self.follow(units);
                Ok(())
            }
            Command::Refresh => {
                self.refresh(&Systemd::new(live.asking.clone())).await;
                Ok(())
            }
        };
        if let Err(e) = result {
            debug!("on the bus: {e}");
        }
    }

    /// While disconnected: remember reloads; D-Bus signals and properties have nobody to go to.
    fn offline(&mut self, command: Command) {
        match command {
            Command::Add(service, pool) => self.services.push((service, pool)),
            Command::Remove(unit) => self.services.retain(|(s, _)| s.unit != unit),
            Command::Follow(units) => self.follow(units),
            Command::Publish(..)
            | Command::Membership(..)
            | Command::Action(..)
            | Command::Refresh => {}
        }
    }

    fn follow(&mut self, units: Vec<String>) {
        lock(&self.shared.main_processes).retain(|unit, _| units.contains(unit));
        self.follow = units;
    }
}
