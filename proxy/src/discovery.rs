//! Where the backends come from, behind one seam: every source publishes the complete list of
//! its [`Endpoint`]s into the [`Catalog`], which lays the scaler's drain marks and the caps over
//! them and keeps the backend table in step.
//!
//! The sources:
//! - [`fixed`]: `backends.static`, a fixed list from the config (replaced on reload);
//! - [`local`]: local mode's backend processes, as the local pool starts and probes them;
//! - [`kube`]: a Service's EndpointSlices, watched through the Kubernetes API.
//!
//! Eligibility, the same for all: an endpoint that is ready and not terminating is
//! [`BackendState::Ready`]; one that is serving and terminating is
//! [`BackendState::Terminating`] (used only when no ready one is left); anything else (not
//! ready yet, not serving) stays out of the table. A drain mark (a scale-down victim) makes a
//! ready endpoint [`BackendState::Draining`]: no new connections, its open ones untouched. An
//! endpoint that disappears keeps its live connections: the table holds it as `Removed` until
//! it is empty (see `docs/architecture.md`, "Routing to endpoints").

pub mod fixed;
pub mod kube;
pub mod local;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tidegate_common::{BackendSpec, BackendState, BackendTable};

/// What the source says about one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Condition {
    /// Ready and not terminating: takes new connections.
    Ready,
    /// Serving but terminating: takes new connections only when no ready endpoint is left.
    Terminating,
    /// Not ready and not terminating (starting, or failing its readiness probe).
    NotReady,
    /// Terminating and no longer serving: on its way out.
    Stopping,
}

/// One endpoint of a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Where to connect.
    pub address: SocketAddr,
    /// The pod behind it (Kubernetes `targetRef` of kind Pod), if the source names one.
    pub pod: Option<String>,
    /// Its conditions, folded.
    pub condition: Condition,
    /// A cap of its own instead of the catalog's (`backends.static[].max_connections`).
    pub capacity: Option<u32>,
}

impl Endpoint {
    /// A ready endpoint at `address` with the catalog's cap.
    pub fn ready(address: SocketAddr) -> Self {
        Self {
            address,
            pod: None,
            condition: Condition::Ready,
            capacity: None,
        }
    }
}

/// The discovered endpoints and the drain marks laid over them; every change is published to
/// the backend table. Shared by the source that fills it and the scale target that drains.
pub struct Catalog {
    table: Arc<BackendTable>,
    inner: Mutex<Inner>,
}

struct Inner {
    endpoints: Vec<Endpoint>,
    draining: HashSet<SocketAddr>,
    capacity: u32,
    synced: bool,
}

impl Catalog {
    /// An empty catalog feeding `table`, each backend with `capacity` slots unless its endpoint
    /// says otherwise.
    pub fn new(table: Arc<BackendTable>, capacity: u32) -> Self {
        Self {
            table,
            inner: Mutex::new(Inner {
                endpoints: Vec::new(),
                draining: HashSet::new(),
                capacity,
                synced: false,
            }),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the endpoints with a complete new list and publishes it. Drain marks of
    /// endpoints that are gone are forgotten.
    pub fn replace(&self, endpoints: Vec<Endpoint>) {
        let mut inner = self.inner();
        let present: HashSet<SocketAddr> = endpoints.iter().map(|e| e.address).collect();
        inner.draining.retain(|a| present.contains(a));
        inner.endpoints = endpoints;
        inner.synced = true;
        self.publish(&inner);
    }

    /// Replaces the endpoints and the drain marks at once (a source that also drains, such as
    /// local mode's pool) and publishes.
    pub fn update(&self, endpoints: Vec<Endpoint>, draining: HashSet<SocketAddr>) {
        let mut inner = self.inner();
        inner.endpoints = endpoints;
        inner.draining = draining;
        inner.synced = true;
        self.publish(&inner);
    }

    /// Marks exactly `addresses` as draining (no new connections) and publishes.
    pub fn set_draining(&self, addresses: HashSet<SocketAddr>) {
        let mut inner = self.inner();
        if inner.draining != addresses {
            inner.draining = addresses;
            self.publish(&inner);
        }
    }

    /// Sets the cap of every endpoint without one of its own (a reload changed
    /// `max_connections_per_backend`) and publishes.
    pub fn set_capacity(&self, capacity: u32) {
        let mut inner = self.inner();
        if inner.capacity != capacity {
            inner.capacity = capacity;
            self.publish(&inner);
        }
    }

    /// The endpoints now, and which of them are draining.
    pub fn snapshot(&self) -> (Vec<Endpoint>, HashSet<SocketAddr>) {
        let inner = self.inner();
        (inner.endpoints.clone(), inner.draining.clone())
    }

    /// The table the endpoints are published to.
    pub fn table(&self) -> &Arc<BackendTable> {
        &self.table
    }

    /// Whether a complete list has been received since start.
    pub fn synced(&self) -> bool {
        self.inner().synced
    }

    fn publish(&self, inner: &Inner) {
        let specs = inner.endpoints.iter().filter_map(|e| {
            let state = match e.condition {
                _ if inner.draining.contains(&e.address) => BackendState::Draining,
                Condition::Ready => BackendState::Ready,
                Condition::Terminating => BackendState::Terminating,
                Condition::NotReady | Condition::Stopping => return None,
            };
            Some(BackendSpec {
                address: e.address,
                capacity: e.capacity.unwrap_or(inner.capacity),
                state,
            })
        });
        self.table.set_backends(specs);
        self.table.prune();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(last: u8, condition: Condition) -> Endpoint {
        Endpoint {
            condition,
            ..Endpoint::ready(SocketAddr::from(([10, 0, 0, last], 9000)))
        }
    }

    #[test]
    fn the_table_follows_with_drain_marks_and_caps_laid_over() {
        let table = Arc::new(BackendTable::new());
        let catalog = Catalog::new(Arc::clone(&table), 7);
        assert!(!catalog.synced());
        let own_cap = Endpoint {
            capacity: Some(3),
            ..ep(5, Condition::Ready)
        };
        catalog.replace(vec![
            ep(1, Condition::Ready),
            ep(2, Condition::Terminating),
            ep(3, Condition::Stopping),
            ep(4, Condition::NotReady),
            own_cap,
        ]);
        assert!(catalog.synced());
        let get = |last: u8| table.get(SocketAddr::from(([10, 0, 0, last], 9000)));
        let state = |last| get(last).map(|b| b.state());
        assert_eq!(state(1), Some(BackendState::Ready));
        assert_eq!(state(2), Some(BackendState::Terminating));
        assert_eq!((state(3), state(4)), (None, None));
        assert_eq!(get(1).unwrap().capacity(), 7);
        assert_eq!(get(5).unwrap().capacity(), 3, "an endpoint's own cap wins");

        catalog.set_capacity(9);
        assert_eq!(get(1).unwrap().capacity(), 9);
        assert_eq!(get(5).unwrap().capacity(), 3);

        catalog.set_draining([ep(1, Condition::Ready).address].into());
        assert_eq!(state(1), Some(BackendState::Draining));
        catalog.replace(Vec::new());
        assert_eq!(state(1), None, "empty backends leave at once");
        assert!(
            catalog.snapshot().1.is_empty(),
            "drain marks of gone endpoints are forgotten"
        );
    }
}
