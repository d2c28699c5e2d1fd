//! EndpointSlice discovery: watch the slices of one Service (label
//! `kubernetes.io/service-name`) and keep the backend table in step.
//!
//! Eligibility (design decision 9): an endpoint that is ready and not terminating is
//! [`BackendState::Ready`]; one that is serving and terminating is
//! [`BackendState::Terminating`] (used only when no ready one is left); anything else
//! (`serving: false`, not ready yet) is kept out of the table. The scaler's drain marks are laid
//! over this ([`BackendState::Draining`]). An endpoint that disappears keeps its live
//! connections: the table holds it as `Removed` until it is empty.
//!
//! The watch runs through kube-runtime's reflector with its default backoff; while the API
//! server is unreachable the table keeps the last endpoints it was given.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use ::kube::runtime::reflector::{self, Store};
use ::kube::runtime::{WatchStreamExt, watcher};
use ::kube::{Api, Client};
use async_trait::async_trait;
use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tidegate_common::{BackendSpec, BackendState, BackendTable};
use tracing::{debug, info, warn};

use super::Error;
use crate::config::{KubeClientConfig, KubernetesBackends, PortRef};
use crate::scale::ScalerMetrics;

/// How often removed endpoints whose last connection closed are dropped from the table.
pub const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What the EndpointSlices say about one endpoint.
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

/// One endpoint of the Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Where to connect.
    pub address: SocketAddr,
    /// The pod behind it (`targetRef` of kind Pod), if the slice names one.
    pub pod: Option<String>,
    /// Its conditions, folded.
    pub condition: Condition,
}

/// Folds an endpoint's conditions with the API's rules for unset values: `ready` unset means
/// ready, `terminating` unset means not terminating, `serving` unset means "as ready".
pub fn condition(c: Option<&k8s_openapi::api::discovery::v1::EndpointConditions>) -> Condition {
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    let serving = c.and_then(|c| c.serving).unwrap_or(ready);
    if ready && !terminating {
        Condition::Ready
    } else if serving && terminating {
        Condition::Terminating
    } else if terminating {
        Condition::Stopping
    } else {
        Condition::NotReady
    }
}

/// The endpoints of `slices` on `port`, one per address (the best condition wins when two
/// slices list the same address, as they may while endpoints move between slices). Slices
/// without the named port and addresses that are not IPs (FQDN slices) are skipped.
pub fn endpoints(slices: &[Arc<EndpointSlice>], port: &PortRef) -> Vec<Endpoint> {
    let mut out: HashMap<SocketAddr, Endpoint> = HashMap::new();
    for slice in slices {
        let Some(port) = slice_port(slice, port) else {
            continue;
        };
        for ep in &slice.endpoints {
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            let pod = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone());
            let e = Endpoint {
                address: SocketAddr::new(ip, port),
                pod,
                condition: condition(ep.conditions.as_ref()),
            };
            match out.get(&e.address) {
                Some(old) if old.condition <= e.condition => {}
                _ => {
                    out.insert(e.address, e);
                }
            }
        }
    }
    let mut v: Vec<Endpoint> = out.into_values().collect();
    v.sort_by_key(|e| e.address);
    v
}

fn slice_port(slice: &EndpointSlice, want: &PortRef) -> Option<u16> {
    match want {
        PortRef::Number(n) => Some(*n),
        PortRef::Name(name) => slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok()),
    }
}

/// The discovered endpoints, shared by discovery (which replaces them) and the Deployment
/// target (which drains some); every change is published to the backend table.
pub struct Endpoints {
    table: Arc<BackendTable>,
    capacity: u32,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    endpoints: Vec<Endpoint>,
    draining: HashSet<SocketAddr>,
    synced: bool,
}

impl Endpoints {
    /// An empty set feeding `table`, each backend with `capacity` slots.
    pub fn new(table: Arc<BackendTable>, capacity: u32) -> Self {
        Self {
            table,
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the endpoints with a complete new list and publishes it.
    pub fn replace(&self, endpoints: Vec<Endpoint>) {
        let mut inner = self.inner();
        inner.endpoints = endpoints;
        inner.synced = true;
        let present: HashSet<SocketAddr> = inner.endpoints.iter().map(|e| e.address).collect();
        inner.draining.retain(|a| present.contains(a));
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
                capacity: self.capacity,
                state,
            })
        });
        self.table.set_backends(specs);
        self.table.prune();
    }
}

/// The discovery loop as a pingora background service.
pub struct DiscoveryService {
    /// Which Service to follow.
    pub source: KubernetesBackends,
    /// Credentials.
    pub client: KubeClientConfig,
    /// Where the endpoints go.
    pub endpoints: Arc<Endpoints>,
    /// Where watch errors are counted (`kind="watch"`).
    pub metrics: Option<ScalerMetrics>,
}

impl DiscoveryService {
    fn count(&self, e: &Error) {
        if let Some(m) = &self.metrics {
            m.errors.with_label_values(&[e.metric_label()]).inc();
        }
    }

    fn republish(&self, store: &Store<EndpointSlice>) {
        let eps = endpoints(&store.state(), &self.source.port);
        debug!(count = eps.len(), "EndpointSlices changed");
        self.endpoints.replace(eps);
    }
}

#[async_trait]
impl BackgroundService for DiscoveryService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let count = |e: &Error| self.count(e);
        if let Some(client) = super::connect(&self.client, &mut shutdown, count).await {
            self.run(client, shutdown).await;
        }
    }
}

impl DiscoveryService {
    /// Watches with `client` until shutdown. Watch errors are counted and retried with
    /// kube-runtime's default backoff; the table keeps the last endpoints meanwhile.
    pub async fn run(&self, client: Client, mut shutdown: ShutdownWatch) {
        let api: Api<EndpointSlice> = Api::namespaced(client, &self.source.namespace);
        let labels = format!("kubernetes.io/service-name={}", self.source.service);
        let (store, writer) = reflector::store();
        let stream = watcher(api, watcher::Config::default().labels(&labels))
            .default_backoff()
            .reflect(writer);
        let mut stream = std::pin::pin!(stream);
        info!(namespace = %self.source.namespace, service = %self.source.service, "watching EndpointSlices");
        // Removed endpoints leave the table once their last connection closes.
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = prune.tick() => {
                    self.endpoints.table.prune();
                    continue;
                }
                _ = shutdown.changed() => break,
            };
            match event {
                Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))) => {
                    self.republish(&store);
                }
                Some(Ok(watcher::Event::InitDone)) => self.republish(&store),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let e = Error::Watch(e);
                    warn!(error = %e, "EndpointSlice watch failed; keeping the last endpoints");
                    self.count(&e);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests;
