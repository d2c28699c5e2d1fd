//! The peer exchange's components: the sync loop, and with `peers.kubernetes` the watch of the
//! proxies' headless Service. Built before the backend sources, so that the scaler reads the
//! cluster's demand and the admin listener serves the exchange.

use std::sync::Arc;

use super::{Assembly, Error};
use crate::config::Config;
use crate::peers::{self, Peers, Role};

impl Assembly {
    /// The exchange, telling peers to push back to `admin_port` (the bound one: the config
    /// may say 0).
    pub(super) fn add_peers(&mut self, config: &Config, admin_port: u16) -> Result<(), Error> {
        let Some(section) = config.peers.clone() else {
            return Ok(());
        };
        let runs_scaler = config
            .scaler
            .as_ref()
            .is_some_and(|s| config.backends.local.is_some() || s.deployment.is_some());
        let role = Role {
            runs_scaler,
            leading: self.leading.clone(),
            has_source: config.backends.has_source(),
            from_peers: config.backends.from_peers,
        };
        let kubernetes = section.kubernetes.clone();
        let proxy = Arc::clone(&self.proxy);
        let catalog = Arc::clone(&self.catalog);
        let registry = &self.registry;
        let p = Arc::new(Peers::new(
            section, proxy, catalog, role, admin_port, registry,
        )?);
        self.add("peers", Arc::new(peers::Service(Arc::clone(&p))));
        if let Some(source) = kubernetes {
            let client = config.kube_client.clone().unwrap_or_default();
            let watch =
                peers::contacts::Watch::new(source, client, Arc::clone(&p), &self.registry)?;
            self.add("kube-peers", Arc::new(watch));
        }
        self.peers = Some(p);
        Ok(())
    }
}
