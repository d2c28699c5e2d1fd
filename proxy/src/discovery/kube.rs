//! The Kubernetes source: watch the EndpointSlices of one Service (label
//! `kubernetes.io/service-name`) and publish their endpoints into the [`Catalog`].
//!
//! An endpoint's conditions fold into a [`Condition`] with the API's rules for unset values;
//! the catalog decides what is routable. The watch ([`crate::kube::follow_slices`]) runs
//! through kube-runtime's reflector with its default backoff; while the API server is unreachable the table keeps the last endpoints
//! it was given. Watch errors are counted in `tidegate_discovery_errors_total{kind}`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ::kube::Client;
use async_trait::async_trait;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounterVec, Registry};
use tracing::{debug, warn};

use super::{Catalog, Condition, Endpoint};
use crate::config::{KubeClientConfig, KubernetesBackends, PortRef};
use crate::kube::Error;

/// How often removed endpoints whose last connection closed are dropped from the table.
pub const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

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
                capacity: None,
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

/// The EndpointSlice watch as a pingora background service.
pub struct Watch {
    source: KubernetesBackends,
    client: KubeClientConfig,
    catalog: Arc<Catalog>,
    errors: IntCounterVec,
}

impl Watch {
    /// A watch of `source` with the credentials of `client`, publishing into `catalog`; its
    /// error counter is registered in `registry`.
    pub fn new(
        source: KubernetesBackends,
        client: KubeClientConfig,
        catalog: Arc<Catalog>,
        registry: &Registry,
    ) -> Result<Self, crate::metrics::Error> {
        let errors = crate::metrics::counter_vec(
            registry,
            "tidegate_discovery_errors_total",
            "Errors of Kubernetes discovery (client set-up, the EndpointSlice watch) by kind.",
            &["kind"],
        )?;
        Ok(Self {
            source,
            client,
            catalog,
            errors,
        })
    }

    /// Errors counted so far of `kind` (a `kube::Error::metric_label`).
    pub fn errors(&self, kind: &str) -> u64 {
        self.errors.with_label_values(&[kind]).get()
    }

    fn count(&self, e: &Error) {
        self.errors.with_label_values(&[e.metric_label()]).inc();
    }

    fn republish(&self, slices: &[Arc<EndpointSlice>]) {
        let eps = endpoints(slices, &self.source.port);
        debug!(count = eps.len(), "EndpointSlices changed");
        self.catalog.replace(eps);
    }
}

#[async_trait]
impl BackgroundService for Watch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let count = |e: &Error| self.count(e);
        if let Some(client) = crate::kube::connect(&self.client, &mut shutdown, count).await {
            self.run(client, shutdown).await;
        }
    }
}

impl Watch {
    /// Watches with `client` until shutdown. Watch errors are counted and retried with
    /// kube-runtime's default backoff; the table keeps the last endpoints meanwhile.
    pub async fn run(&self, client: Client, mut shutdown: ShutdownWatch) {
        let (namespace, service) = (&self.source.namespace, &self.source.service);
        let changed = |slices: &[Arc<EndpointSlice>]| self.republish(slices);
        let failed = |e: Error| {
            warn!(error = %e, "EndpointSlice watch failed; keeping the last endpoints");
            self.count(&e);
        };
        let follow =
            crate::kube::follow_slices(client, namespace, service, &mut shutdown, changed, failed);
        // Removed endpoints leave the table once their last connection closes.
        let prune = async {
            let mut every = tokio::time::interval(PRUNE_EVERY);
            loop {
                every.tick().await;
                self.catalog.table().prune();
            }
        };
        tokio::select! {
            () = follow => {}
            () = prune => {}
        }
    }
}

#[cfg(test)]
mod tests;
