//! `io.scoreboard.Agent1` on D-Bus: per-worker details for busctl, scoreboardctl and
//! any tool, served from the agent's own state.
//!
//! The interface structs are thin: a shared handle on the service's [`Pool`] (a std
//! mutex, held only for a copy-out, never across an await), so a method answers from
//! the agent's current knowledge without asking the agent loop. The loop, in turn,
//! decides when `PropertiesChanged`, `WorkerAdded` and `WorkerReaped` go out: coalesced,
//! at most one property change per interval and one batch of worker ids per 100 ms.
//!
//! Doc comments on the members below are part of the introspection data (zbus writes
//! them into the XML), so `busctl introspect` documents every member.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use zbus::OwnedVariant;
use zbus::message::Header;
use zbus::object_server::{Interface, SignalEmitter};
use zbus::zvariant::Type;
use zbus::{ObjectPath, OwnedObjectPath, interface};

pub use super::gate::{CallError, Error, Gate};
use super::names::{MANAGER_PATH, NAME, WorkerInfo, death_on_bus, service_path};
pub use super::properties::ReadOnlyProperties;
use crate::config::Service;
use crate::core::health::Action;
use crate::core::pool::{Pool, Sight};
use crate::core::status_line::{FOLDED_STATES, bus_string};
use crate::lock::lock;

/// The longest status sent on the bus, escaped; longer ones are cut and end in `…`.
pub const MAX_STATUS_ON_BUS: usize = 4096;
/// What one `ListWorkers` answer may weigh, escaped strings together. dbus-daemon
/// drops a peer that sends a message over its `max_message_size` (32 MiB by default),
/// taking our name with it; a full pool of long ids must not come near that.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;
/// States listed in `Counts` on the bus; the rest are added up under
/// [`FOLDED_STATES`].
pub const MAX_STATES_ON_BUS: usize = 32;

/// `Counts` as it goes on the bus: keys through [`bus_string`], at most
/// [`MAX_STATES_ON_BUS`] of them (largest first, as `counts` comes), the rest under
/// [`FOLDED_STATES`].
fn counts_on_bus(counts: &[(String, usize)]) -> HashMap<String, u32> {
    let mut on_bus: HashMap<String, u32> = HashMap::new();
    for (index, (state, n)) in counts.iter().enumerate() {
        let key = if index < MAX_STATES_ON_BUS {
            bus_string(state).into_owned()
        } else {
            FOLDED_STATES.to_owned()
        };
        *on_bus.entry(key).or_default() += *n as u32;
    }
    on_bus
}

/// A `ListWorkers` answer built once per interval and shared by every caller.
#[derive(Debug, Clone)]
pub struct SharedWorkers(Arc<[WorkerInfo]>);

impl Serialize for SharedWorkers {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().serialize(serializer)
    }
}

impl Type for SharedWorkers {
    const SIGNATURE: &'static zbus::Signature = <Vec<WorkerInfo> as Type>::SIGNATURE;
}

/// The list of watched services, shared by the manager object and the agent loop.
pub type ServiceList = Arc<Mutex<Vec<(String, OwnedObjectPath)>>>;

/// `/io/scoreboard/Agent1`: which services are watched.
pub struct Manager {
    services: ServiceList,
}

impl Manager {
    /// The manager serving `services`.
    pub fn new(services: ServiceList) -> Self {
        Manager { services }
    }

    fn list(&self) -> Vec<(String, OwnedObjectPath)> {
        lock(&self.services).clone()
    }
}

/// The watched services and their objects.
#[interface(name = "io.scoreboard.Agent1.Manager", spawn = false)]
impl Manager {
    /// Every watched unit with the path of its io.scoreboard.Agent1.Service object.
    fn list_services(&self) -> Vec<(String, OwnedObjectPath)> {
        self.list()
    }

    /// The same as ListServices(), as a property; changes on configuration reload.
    #[zbus(property)]
    fn services(&self) -> Vec<(String, OwnedObjectPath)> {
        self.list()
    }

    /// A unit became watched (configuration reload).
    #[zbus(signal)]
    pub async fn service_added(
        emitter: &SignalEmitter<'_>,
        unit: &str,
        path: ObjectPath<'_>,
    ) -> zbus::Result<()>;

    /// A unit is no longer watched (configuration reload).
    #[zbus(signal)]
    pub async fn service_removed(
        emitter: &SignalEmitter<'_>,
        unit: &str,
        path: ObjectPath<'_>,
    ) -> zbus::Result<()>;
}

/// `/io/scoreboard/Agent1/service/<unit>`: one watched service.
pub struct ServiceObject {
    service: Service,
    pool: Arc<Mutex<Pool>>,
    gate: Arc<Gate>,
    /// The last `ListWorkers` answer and when it was built.
    answer: Mutex<Option<(Instant, SharedWorkers)>>,
}

impl ServiceObject {
    /// The object for `service`, reading `pool`, answering through `gate`.
    pub fn new(service: Service, pool: Arc<Mutex<Pool>>, gate: Arc<Gate>) -> Self {
        ServiceObject {
            service,
            pool,
            gate,
            answer: Mutex::new(None),
        }
    }

    fn with_pool<T>(&self, f: impl FnOnce(&Pool, Instant) -> T) -> T {
        f(&lock(&self.pool), Instant::now())
    }

    /// Every worker, built at most once per interval however many ask. Statuses are
    /// cut so that the whole answer stays under [`MAX_ANSWER_BYTES`]; if the ids alone
    /// would not, the answer is refused rather than sent.
    fn workers(&self) -> Result<SharedWorkers, CallError> {
        let mut answer = lock(&self.answer);
        if let Some((at, workers)) = answer.as_ref()
            && at.elapsed() < self.gate.refresh
        {
            return Ok(workers.clone());
        }
        let workers: Arc<[WorkerInfo]> = self.with_pool(|pool, now| {
            let status_cap =
                (MAX_ANSWER_BYTES / 2 / pool.len().max(1)).clamp(64, MAX_STATUS_ON_BUS);
            pool.workers(now)
                .iter()
                .map(|w| WorkerInfo::on_bus(w, status_cap))
                .collect()
        });
        let weight: usize = workers.iter().map(WorkerInfo::weight).sum();
        if weight > MAX_ANSWER_BYTES {
            return Err(CallError::limits_exceeded(format!(
                "the {} workers of {} would make a {weight}-byte answer, over {MAX_ANSWER_BYTES}; \
                 ask GetWorker for each",
                workers.len(),
                self.service.unit
            )));
        }
        let workers = SharedWorkers(workers);
        *answer = Some((Instant::now(), workers.clone()));
        Ok(workers)
    }
}

/// A watched service's workers, as the agent knows them.
///
/// Served one call at a time (`spawn = false`) on the agent's bus thread: a client
/// keeping many calls in flight waits in the bus daemon's queue, within its limits, not
/// in the agent's memory.
#[interface(name = "io.scoreboard.Agent1.Service", spawn = false)]
impl ServiceObject {
    /// The systemd unit, e.g. "demo.service".
    #[zbus(property(emits_changed_signal = "const"))]
    fn unit(&self) -> String {
        self.service.unit.clone()
    }

    /// The scoreboard directory read for it.
    #[zbus(property(emits_changed_signal = "const"))]
    fn directory(&self) -> String {
        self.service.directory.display().to_string()
    }

    /// The line sent as the unit's STATUS=, e.g. "12 workers: 8 busy, 3 idle, 1 stuck".
    #[zbus(property)]
    fn summary(&self) -> String {
        self.with_pool(|pool, now| bus_string(&pool.status_line(now)).into_owned())
    }

    /// Empty while the agent reads the scoreboard directory; else why it cannot, as
    /// "cause: detail" (cause one of missing, permission_denied, not_a_directory,
    /// unsafe_path, failed): the workers are then unknown, Total and Counts say nothing,
    /// and no health action is taken.
    #[zbus(property)]
    fn unseen(&self) -> String {
        self.with_pool(|pool, _| bus_string(&unseen_text(pool)).into_owned())
    }

    /// How many live workers there are.
    #[zbus(property)]
    fn total(&self) -> u32 {
        self.with_pool(|pool, _| pool.len() as u32)
    }

    /// Live workers per state; stuck workers are counted in Stuck instead.
    #[zbus(property)]
    fn counts(&self) -> HashMap<String, u32> {
        self.with_pool(|pool, now| counts_on_bus(&pool.summary(now).counts))
    }

    /// How many workers are stuck: not idle, status unchanged for stuck_after.
    #[zbus(property)]
    fn stuck(&self) -> u32 {
        self.with_pool(|pool, now| pool.summary(now).stuck as u32)
    }

    /// Every live worker: (id, state, status, seconds since the status changed, stuck).
    /// Only for callers who could read the scoreboard directory themselves (else
    /// org.freedesktop.DBus.Error.AccessDenied); at most 50,000 worker records per
    /// user per second, root aside (else org.freedesktop.DBus.Error.LimitsExceeded).
    async fn list_workers(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<SharedWorkers, CallError> {
        // Admitted (and charged) before anything is built for the caller.
        let (access, workers) = self.with_pool(|pool, _| (pool.access(), pool.len() as u64));
        self.gate
            .admit(&header, &self.service, access, workers)
            .await?;
        self.workers()
    }

    /// One worker by id, as ListWorkers shows it (ids with control characters, a
    /// backslash or bytes that are not UTF-8 escaped); fails with
    /// io.scoreboard.Agent1.Error.NoSuchWorker. Access as for ListWorkers.
    async fn get_worker(
        &self,
        id: &str,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<WorkerInfo, CallError> {
        // No worker id is longer than a file name escaped (255 bytes, at most 4 each):
        // a longer one is answered at once, and never echoed.
        if id.len() > MAX_ID_ON_BUS {
            return Err(Error::NoSuchWorker(format!(
                "no live worker with an id of {} bytes in {}: ids are at most {MAX_ID_ON_BUS}",
                id.len(),
                self.service.unit
            ))
            .into());
        }
        // Only an id holding a backslash can be an escaped form, and finding it means
        // comparing every id: charged as the pool's size.
        let (access, size) = self.with_pool(|pool, _| (pool.access(), pool.len() as u64));
        let cost = if id.contains('\\') { size } else { 1 };
        self.gate
            .admit(&header, &self.service, access, cost)
            .await?;
        self.with_pool(|pool, now| {
            let exact = pool.worker(id, now).filter(|w| bus_string(&w.id) == id);
            if exact.is_some() || !id.contains('\\') {
                return exact;
            }
            let found = pool.ids().find(|raw| bus_string(raw) == id)?;
            pool.worker(found, now)
        })
        .map(|w| WorkerInfo::on_bus(&w, MAX_STATUS_ON_BUS))
        .ok_or_else(|| {
            Error::NoSuchWorker(format!("no live worker {id:?} in {}", self.service.unit)).into()
        })
    }

    /// The last workers seen to die, oldest first (at most 32), each a dictionary: `id`
    /// (s), `seconds_ago` (d), and when known `status` (s: what it was doing, its
    /// file's last status, cut at 4 KiB) and `stood_seconds` (d: how long that status
    /// had stood). Access as for ListWorkers.
    async fn list_deaths(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<HashMap<String, OwnedVariant>>, CallError> {
        // Admitted (and charged) before anything is built for the caller.
        let (access, kept) = self.with_pool(|pool, _| (pool.access(), pool.deaths_len()));
        self.gate
            .admit(&header, &self.service, access, kept.max(1) as u64)
            .await?;
        let deaths = self.with_pool(|pool, now| pool.deaths(now));
        Ok(deaths.iter().map(death_on_bus).collect())
    }

    /// The last health action on the service (watchdog triggered, a stuck worker
    /// signalled, refused, or — in report mode — what would have been done), with when;
    /// empty when none.
    #[zbus(property)]
    fn last_action(&self) -> String {
        self.with_pool(|pool, _| bus_string(pool.last_action().unwrap_or_default()).into_owned())
    }

    /// A health action: `action` (watchdog, signal, kill, refused, not_a_pid,
    /// reported), the worker id (empty for the whole unit), and what was done and why.
    #[zbus(signal)]
    pub async fn action_taken(
        emitter: &SignalEmitter<'_>,
        action: &str,
        worker: &str,
        detail: &str,
    ) -> zbus::Result<()>;

    /// Workers that appeared, batched: at most one WorkerAdded per 100 ms.
    #[zbus(signal)]
    pub async fn worker_added(emitter: &SignalEmitter<'_>, ids: Vec<String>) -> zbus::Result<()>;

    /// Workers that left (reaped after dying, or exited and removed their file),
    /// batched: at most one WorkerReaped per 100 ms, however many died.
    #[zbus(signal)]
    pub async fn worker_reaped(emitter: &SignalEmitter<'_>, ids: Vec<String>) -> zbus::Result<()>;
}

/// The ids as they go on the bus, in as many D-Bus signals as keep each under 1 MiB
/// (far below the bus daemon's message limit, whatever a churning directory produced).
fn membership_batches(ids: &[String]) -> Vec<Vec<String>> {
    const MAX_BATCH_BYTES: usize = 1 << 20;
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut weight = 0;
    for id in ids {
        let id = bus_string(id).into_owned();
        if weight + id.len() > MAX_BATCH_BYTES && !batch.is_empty() {
            batches.push(std::mem::take(&mut batch));
            weight = 0;
        }
        weight += id.len() + 8;
        batch.push(id);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// What was last announced in PropertiesChanged for a service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// Summary.
    pub summary: String,
    /// Total.
    pub total: usize,
    /// Counts.
    pub counts: Vec<(String, usize)>,
    /// Stuck.
    pub stuck: usize,
    /// Unseen.
    pub unseen: String,
}

impl Published {
    /// What the service's properties are at `now`.
    pub fn of(pool: &Pool, now: Instant) -> Published {
        let summary = pool.summary(now);
        Published {
            summary: pool.render(&summary),
            total: summary.total,
            counts: summary.counts,
            stuck: summary.stuck,
            unseen: unseen_text(pool),
        }
    }
}

/// The `Unseen` property's text: empty for a pool seen (or not looked at yet).
fn unseen_text(pool: &Pool) -> String {
    match pool.sight() {
        Sight::Unseen(why) => format!("{}: {}", why.cause, why.detail),
        Sight::NotYet | Sight::Seen => String::new(),
    }
}

/// The longest worker id on the bus: a file name (255 bytes) less `status_`, each byte
/// escaped in at most four.
const MAX_ID_ON_BUS: usize = 1024;

/// The agent's presence on the bus: its objects, and the D-Bus signals it emits.
pub struct Server {
    connection: zbus::Connection,
    services: ServiceList,
    gate: Arc<Gate>,
}

impl Server {
    /// Serves the manager and one object per service on `connection`, then takes the
    /// well-known name, so that a client seeing the name finds every object in place.
    /// `gate` decides who gets per-worker details.
    pub async fn start(
        connection: zbus::Connection,
        gate: Gate,
        services: impl IntoIterator<Item = (Service, Arc<Mutex<Pool>>)>,
    ) -> zbus::Result<Server> {
        let list: ServiceList = Arc::default();
        let server = Server {
            connection,
            services: list.clone(),
            gate: Arc::new(gate),
        };
        server
            .connection
            .object_server()
            .at(MANAGER_PATH, Manager::new(list))
            .await?;
        server.read_only(MANAGER_PATH.try_into()?).await?;
        for (service, pool) in services {
            server.serve(service, pool).await?;
        }
        server.connection.request_name(NAME).await?;
        Ok(server)
    }

    async fn serve(
        &self,
        service: Service,
        pool: Arc<Mutex<Pool>>,
    ) -> zbus::Result<OwnedObjectPath> {
        let path = service_path(&service.unit);
        let unit = service.unit.clone();
        self.connection
            .object_server()
            .at(&path, ServiceObject::new(service, pool, self.gate.clone()))
            .await?;
        self.read_only(path.as_ref()).await?;
        lock(&self.services).push((unit, path.clone()));
        Ok(path)
    }

    /// Puts [`ReadOnlyProperties`] in place of zbus's Properties at `path`, where one
    /// of our interfaces is served already (so the object stays).
    async fn read_only(&self, path: ObjectPath<'_>) -> zbus::Result<()> {
        let server = self.connection.object_server();
        server
            .remove_named(&path, zbus::fdo::Properties::name())
            .await?;
        server.at(&path, ReadOnlyProperties).await?;
        Ok(())
    }

    /// A service added on reload: its object, ServiceAdded, and Services changed.
    pub async fn add(&self, service: Service, pool: Arc<Mutex<Pool>>) -> zbus::Result<()> {
        let unit = service.unit.clone();
        let path = self.serve(service, pool).await?;
        let emitter = SignalEmitter::new(&self.connection, MANAGER_PATH)?;
        Manager::service_added(&emitter, &unit, path.as_ref()).await?;
        self.services_changed().await
    }

    /// A service dropped on reload: its object goes, ServiceRemoved, Services changed.
    pub async fn remove(&self, unit: &str) -> zbus::Result<()> {
        let path = service_path(unit);
        self.connection
            .object_server()
            .remove::<ServiceObject, _>(&path)
            .await?;
        lock(&self.services).retain(|(u, _)| u != unit);
        let emitter = SignalEmitter::new(&self.connection, MANAGER_PATH)?;
        Manager::service_removed(&emitter, unit, path.as_ref()).await?;
        self.services_changed().await
    }

    async fn services_changed(&self) -> zbus::Result<()> {
        let manager = self
            .connection
            .object_server()
            .interface::<_, Manager>(MANAGER_PATH)
            .await?;
        manager
            .get()
            .await
            .services_changed(manager.signal_emitter())
            .await
    }

    /// Emits one PropertiesChanged carrying whichever of the service's properties
    /// differ from `published`, and records them.
    pub async fn publish(
        &self,
        unit: &str,
        current: Published,
        published: &mut Published,
    ) -> zbus::Result<()> {
        let mut changed: HashMap<&str, zbus::Variant<'_>> = HashMap::new();
        if current.summary != published.summary {
            let summary = bus_string(&current.summary).into_owned();
            changed.insert("Summary", zbus::Variant::from(summary));
        }
        if current.total != published.total {
            changed.insert("Total", zbus::Variant::from(current.total as u32));
        }
        if current.counts != published.counts {
            changed.insert(
                "Counts",
                zbus::Variant::from(counts_on_bus(&current.counts)),
            );
        }
        if current.stuck != published.stuck {
            changed.insert("Stuck", zbus::Variant::from(current.stuck as u32));
        }
        if current.unseen != published.unseen {
            let unseen = bus_string(&current.unseen).into_owned();
            changed.insert("Unseen", zbus::Variant::from(unseen));
        }
        if changed.is_empty() {
            return Ok(());
        }
        let emitter = SignalEmitter::new(&self.connection, service_path(unit))?;
        let interface =
            zbus::names::InterfaceName::from_static_str_unchecked("io.scoreboard.Agent1.Service");
        zbus::fdo::Properties::properties_changed(
            &emitter,
            interface,
            changed,
            std::borrow::Cow::Borrowed(&[]),
        )
        .await?;
        *published = current;
        Ok(())
    }

    /// ActionTaken on the service's object; the action goes on the wire as its text.
    pub async fn action_taken(
        &self,
        unit: &str,
        action: Action,
        worker: &str,
        detail: &str,
    ) -> zbus::Result<()> {
        let emitter = SignalEmitter::new(&self.connection, service_path(unit))?;
        ServiceObject::action_taken(
            &emitter,
            action.as_str(),
            &bus_string(worker),
            &bus_string(detail),
        )
        .await
    }

    /// One WorkerAdded and one WorkerReaped for a batch of ids (none when empty).
    pub async fn emit_membership(
        &self,
        unit: &str,
        added: Vec<String>,
        reaped: Vec<String>,
    ) -> zbus::Result<()> {
        let emitter = SignalEmitter::new(&self.connection, service_path(unit))?;
        for batch in membership_batches(&added) {
            ServiceObject::worker_added(&emitter, batch).await?;
        }
        for batch in membership_batches(&reaped) {
            ServiceObject::worker_reaped(&emitter, batch).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
