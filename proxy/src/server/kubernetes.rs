//! Kubernetes mode's components: EndpointSlice discovery always; with `scaler.deployment`, the
//! Deployment target with its actuator and the scaler; with `leader_election`, the Lease loop
//! that lets only one replica act (built first: the peer exchange reports leadership).

use std::sync::Arc;

use super::{Assembly, Error};
use crate::config::{Config, KubernetesBackends};
use crate::discovery;
use crate::leader;
use crate::target::ScaleTarget;
use crate::target::deployment::{Actuator, Target};
use crate::target::drain_grace::DrainGrace;

impl Assembly {
    /// The Lease loop, when `leader_election` is set (validation ties it to
    /// `scaler.deployment`).
    pub(super) fn add_leader(&mut self, config: &Config) -> Result<(), Error> {
        let Some(election) = config.leader_election.clone() else {
            return Ok(());
        };
        let client = config.kube_client.clone().unwrap_or_default();
        let (service, leading) = leader::Service::new(election, client, &self.registry)?;
        self.add("kube-leader", Arc::new(service));
        self.leading = Some(leading);
        Ok(())
    }

    pub(super) fn add_kubernetes(
        &mut self,
        source: KubernetesBackends,
        config: &Config,
    ) -> Result<(), Error> {
        let client = config.kube_client.clone().unwrap_or_default();
        let catalog = Arc::clone(&self.catalog);
        let drain_grace = source.drain_grace;
        let watch = discovery::kube::Watch::new(source, client.clone(), catalog, &self.registry)?;
        self.add("kube-discovery", Arc::new(watch));
        let Some(section) = config.scaler.as_ref() else {
            return Ok(());
        };
        let Some(deployment) = section.deployment.clone() else {
            return Ok(());
        };
        let call_timeout = config
            .leader_election
            .as_ref()
            .map_or(crate::kube::DEFAULT_CALL_TIMEOUT, |l| l.call_timeout());
        let (min, max) = (section.min_replicas, section.max_replicas);
        let remove_below = section.policy.drain_remove_below;
        let catalog = Arc::clone(&self.catalog);
        let mut target = Target::new(catalog, min, max, remove_below);
        if let Some(grace) = drain_grace {
            let connections = Arc::clone(&self.proxy.connections);
            target = target.with_drain_grace(DrainGrace::new(grace, connections));
        }
        let target = Arc::new(target);
        let as_target = Arc::clone(&target) as Arc<dyn ScaleTarget>;
        self.add_scaler(section, config.max_connections_per_backend, as_target)?;
        let leading = self.leading.clone();
        let actuator = Actuator::new(
            Arc::clone(&target),
            deployment,
            client,
            leading,
            &self.registry,
        )?
        .following_peers(self.peers.is_some())
        .with_call_timeout(call_timeout);
        self.add("kube-deployment", Arc::new(actuator));
        self.deployment = Some(target);
        Ok(())
    }
}
