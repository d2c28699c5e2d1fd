//! Peer discovery in Kubernetes: the EndpointSlices of the proxies' own headless Service
//! (`peers.kubernetes`), folded as backend discovery folds them (`discovery::kube::endpoints`)
//! but kept apart from the backends: they are where reports are pushed, not where clients go.
//! Every endpoint is a contact, ready or not (a starting replica must be heard before it
//! takes connections; a terminating one still holds some); this replica's own address is in
//! the list too, and is recognised by its answer.

use std::sync::Arc;

use ::kube::Client;
use async_trait::async_trait;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounterVec, Registry};
use tracing::{debug, warn};

use super::Peers;
use crate::config::{KubeClientConfig, KubernetesPeers};
use crate::discovery;
use crate::kube::Error;

/// The peers Service's EndpointSlice watch as a pingora background service.
pub struct Watch {
    source: KubernetesPeers,
    client: KubeClientConfig,
    peers: Arc<Peers>,
    errors: IntCounterVec,
}

impl Watch {
    /// A watch of `source` with the credentials of `client`, feeding `peers`; errors are
    /// counted in `tidegate_peer_discovery_errors_total{kind}`, registered in `registry`.
    pub fn new(
        source: KubernetesPeers,
        client: KubeClientConfig,
        peers: Arc<Peers>,
        registry: &Registry,
    ) -> Result<Self, crate::metrics::Error> {
        let errors = crate::metrics::counter_vec(
            registry,
            "tidegate_peer_discovery_errors_total",
            "Errors of peer discovery (client set-up, the peers Service's EndpointSlice watch).",
            &["kind"],
        )?;
        Ok(Self {
            source,
            client,
            peers,
            errors,
        })
    }

    fn count(&self, e: &Error) {
        self.errors.with_label_values(&[e.metric_label()]).inc();
    }

    fn republish(&self, slices: &[Arc<EndpointSlice>]) {
        let eps = discovery::kube::endpoints(slices, &self.source.port);
        let addresses: Vec<_> = eps.into_iter().map(|e| e.address).collect();
        debug!(count = addresses.len(), "peer EndpointSlices changed");
        self.peers.set_discovered(addresses);
    }

    async fn run(&self, client: Client, mut shutdown: ShutdownWatch) {
        let (namespace, service) = (&self.source.namespace, &self.source.service);
        let changed = |slices: &[Arc<EndpointSlice>]| self.republish(slices);
        let failed = |e: Error| {
            warn!(error = %e, "peer EndpointSlice watch failed; keeping the last peers");
            self.count(&e);
        };
        crate::kube::follow_slices(client, namespace, service, &mut shutdown, changed, failed)
            .await;
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
