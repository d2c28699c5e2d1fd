//! Turns the Kubernetes sections of the config into pingora background services: discovery,
//! and, with `scaler.deployment`, the scaler loop, the Deployment writer and (with
//! `leader_election`) the Lease loop.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use tidegate_scaler::tidegate::TidegatePolicy;
use tokio::sync::watch;

use super::deployment::{DeploymentService, DeploymentTarget};
use super::discovery::{DiscoveryService, Endpoints};
use super::leader::LeaderService;
use crate::config::{Config, KubernetesBackends, LeaderElection, ScalerSection};
use crate::scale::ScalerService;
use crate::shared::Shared;

/// What Kubernetes mode needs from the config, taken before the config moves into [`Shared`].
#[derive(Clone, Debug)]
pub struct Wiring {
    source: KubernetesBackends,
    scaler: Option<ScalerSection>,
    leader: Option<LeaderElection>,
    client: crate::config::KubeClientConfig,
    capacity: u32,
}

/// A background service shared behind an `Arc` (so tests can run the same object).
pub type Service = Arc<dyn BackgroundService + Send + Sync>;

/// The Kubernetes services, built and ready to add to a server (or to run in a test).
pub struct Parts {
    /// The discovered endpoints.
    pub endpoints: Arc<Endpoints>,
    /// The Deployment target, when the scaler drives a Deployment.
    pub target: Option<Arc<DeploymentTarget>>,
    /// Leadership, when leader election is on.
    pub leading: Option<watch::Receiver<bool>>,
    /// The services with their names.
    pub services: Vec<(&'static str, Service)>,
}

impl Wiring {
    /// The Kubernetes parts of `config`, or `None` when it has no `backends.kubernetes`.
    pub fn from_config(config: &Config) -> Option<Self> {
        Some(Self {
            source: config.backends.kubernetes.clone()?,
            scaler: config.scaler.clone().filter(|s| s.deployment.is_some()),
            leader: config.leader_election.clone(),
            client: config.kube_client.clone().unwrap_or_default(),
            capacity: config.max_connections_per_backend,
        })
    }

    /// Builds the services over `shared`.
    pub fn build(self, shared: &Arc<Shared>) -> Parts {
        let metrics = shared.scaler.metrics().cloned();
        let endpoints = Arc::new(Endpoints::new(Arc::clone(&shared.table), self.capacity));
        let discovery = DiscoveryService {
            source: self.source.clone(),
            client: self.client.clone(),
            endpoints: Arc::clone(&endpoints),
            metrics,
        };
        let mut parts = Parts {
            endpoints,
            target: None,
            leading: None,
            services: vec![("kube-discovery", Arc::new(discovery) as Service)],
        };
        if let Some(section) = self.scaler.clone() {
            self.add_scaler(section, shared, &mut parts);
        }
        parts
    }

    /// The scaler loop, the Deployment writer and, with leader election, the Lease loop.
    fn add_scaler(self, section: ScalerSection, shared: &Arc<Shared>, parts: &mut Parts) {
        let Some(deployment) = section.deployment.clone() else {
            return;
        };
        let (min, max) = (section.min_replicas, section.max_replicas);
        let remove_below = section.policy.drain_remove_below;
        let endpoints = Arc::clone(&parts.endpoints);
        let target = Arc::new(DeploymentTarget::new(endpoints, min, max, remove_below));
        let leading = self.leader.map(|config| {
            let (tx, rx) = watch::channel(false);
            let service = LeaderService {
                config,
                client: self.client.clone(),
                shared: Arc::clone(shared),
                leading: tx,
            };
            parts.services.push(("kube-leader", Arc::new(service)));
            rx
        });
        let policy = Box::new(TidegatePolicy::new(section.policy_config(self.capacity)));
        let as_target = Arc::clone(&target) as Arc<dyn crate::scale::ScaleTarget>;
        let mut scaler = ScalerService::new(Arc::clone(shared), as_target, policy, section.dry_run);
        if let Some(rx) = &leading {
            scaler = scaler.with_leadership(rx.clone());
        }
        let writer = DeploymentService {
            target: Arc::clone(&target),
            deployment,
            client: self.client,
            leading: leading.clone(),
            metrics: shared.scaler.metrics().cloned(),
        };
        parts.services.push(("scaler", Arc::new(scaler)));
        parts.services.push(("kube-deployment", Arc::new(writer)));
        parts.target = Some(target);
        parts.leading = leading;
    }
}

impl Parts {
    /// Adds every service to `server`.
    pub fn add_to(self, server: &mut Server) {
        for (name, service) in self.services {
            server.add_service(background_service(name, Run(service)));
        }
    }
}

/// Runs a shared service.
struct Run(Service);

#[async_trait]
impl BackgroundService for Run {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.start(shutdown).await;
    }
}
