//! `org.freedesktop.DBus.Properties` on the agent's objects: zbus's own, but `Set`
//! answers as the D-Bus specification says for read-only properties.

use std::collections::HashMap;

use zbus::message::Header;
use zbus::names::InterfaceName;
use zbus::object_server::{Interface, InterfaceRef, SignalEmitter};
use zbus::{BoxDBusError, ObjectPath, ObjectServer, OwnedVariant, Variant, interface};

use super::names::NAME;
use super::server::{Manager, ServiceObject};

/// `org.freedesktop.DBus.Properties` on the agent's objects, in place of zbus's own.
///
/// The same `Get` and `GetAll` (the interfaces' own getters answer), but `Set` of a
/// property that exists fails with `org.freedesktop.DBus.Error.PropertyReadOnly`, as the
/// D-Bus specification has it for a read-only property: zbus answers `UnknownProperty`
/// for a property without a setter, which tells a caller the name is wrong. Nothing is
/// writable over the bus. ([`Server`] installs it on each object it serves.)
pub struct ReadOnlyProperties;

/// The interfaces zbus serves on every object, none with properties.
const STANDARD_INTERFACES: [&str; 3] = [
    "org.freedesktop.DBus.Peer",
    "org.freedesktop.DBus.Introspectable",
    "org.freedesktop.DBus.Properties",
];

/// The interface a Properties call is about, at the called object.
enum Served {
    Manager(InterfaceRef<Manager>),
    Service(InterfaceRef<ServiceObject>),
    /// Peer, Introspectable, Properties: no properties.
    Standard,
}

impl Served {
    async fn at(
        server: &ObjectServer,
        path: &ObjectPath<'_>,
        interface: &InterfaceName<'_>,
    ) -> Result<Served, zbus::fdo::Error> {
        let unknown =
            || zbus::fdo::Error::UnknownInterface(format!("Unknown interface '{interface}'"));
        if *interface == Manager::name() {
            server
                .interface::<_, Manager>(path)
                .await
                .map(Served::Manager)
                .map_err(|_| unknown())
        } else if *interface == ServiceObject::name() {
            server
                .interface::<_, ServiceObject>(path)
                .await
                .map(Served::Service)
                .map_err(|_| unknown())
        } else if STANDARD_INTERFACES.contains(&interface.as_str()) {
            Ok(Served::Standard)
        } else {
            Err(unknown())
        }
    }

    /// The interface's own answer to Get: `None` when it has no such property.
    async fn get(
        &self,
        property: &str,
        server: &ObjectServer,
        connection: &zbus::Connection,
        header: &Header<'_>,
        emitter: &SignalEmitter<'_>,
    ) -> Option<Result<OwnedVariant, BoxDBusError>> {
        // The guard of whichever object answers, held while it does.
        let (manager, service);
        let interface: &dyn Interface = match self {
            Served::Manager(reference) => {
                manager = reference.get().await;
                &*manager
            }
            Served::Service(reference) => {
                service = reference.get().await;
                &*service
            }
            Served::Standard => return None,
        };
        interface
            .get(property, server, connection, Some(header), emitter)
            .await
    }
}

/// The most of a caller's argument an error reply repeats: a name that long is no
/// property of ours, and a caller's 30 MiB must never come back as 30 MiB more.
const MAX_ECHOED: usize = 255;

fn unknown_property(property: &str) -> BoxDBusError {
    let shown = crate::escape::printable_capped(property.as_bytes(), MAX_ECHOED);
    zbus::fdo::Error::UnknownProperty(format!("Unknown property '{shown}'")).into()
}

#[interface(name = "org.freedesktop.DBus.Properties", introspection_docs = false)]
impl ReadOnlyProperties {
    /// Get a property value.
    async fn get(
        &self,
        interface_name: InterfaceName<'_>,
        property_name: &str,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(connection)] connection: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<OwnedVariant, BoxDBusError> {
        let path = header.path().ok_or(zbus::Error::MissingField)?;
        Served::at(server, path, &interface_name)
            .await?
            .get(property_name, server, connection, &header, &emitter)
            .await
            .unwrap_or_else(|| Err(unknown_property(property_name)))
    }

    /// Set a property value: none may be set.
    #[allow(clippy::too_many_arguments)]
    async fn set(
        &self,
        interface_name: InterfaceName<'_>,
        property_name: &str,
        #[allow(unused_variables)] value: Variant<'_>,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(connection)] connection: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BoxDBusError> {
        let path = header.path().ok_or(zbus::Error::MissingField)?;
        let exists = Served::at(server, path, &interface_name)
            .await?
            .get(property_name, server, connection, &header, &emitter)
            .await
            .is_some();
        if !exists {
            return Err(unknown_property(property_name));
        }
        Err(zbus::fdo::Error::PropertyReadOnly(format!(
            "{interface_name}.{property_name} is read-only: nothing of {NAME} is writable over the bus"
        ))
        .into())
    }

    /// Get all properties.
    async fn get_all(
        &self,
        interface_name: InterfaceName<'_>,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(connection)] connection: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<HashMap<String, OwnedVariant>> {
        let path = header.path().ok_or(zbus::Error::MissingField)?;
        match Served::at(server, path, &interface_name).await? {
            Served::Manager(manager) => {
                let manager = manager.get().await;
                Interface::get_all(&*manager, server, connection, Some(&header), &emitter).await
            }
            Served::Service(service) => {
                let service = service.get().await;
                Interface::get_all(&*service, server, connection, Some(&header), &emitter).await
            }
            Served::Standard => Ok(HashMap::new()),
        }
    }

    /// Emit the `org.freedesktop.DBus.Properties.PropertiesChanged` D-Bus signal.
    #[zbus(signal)]
    async fn properties_changed(
        emitter: &SignalEmitter<'_>,
        interface_name: InterfaceName<'_>,
        changed_properties: HashMap<&str, Variant<'_>>,
        invalidated_properties: std::borrow::Cow<'_, [&str]>,
    ) -> zbus::Result<()>;
}
