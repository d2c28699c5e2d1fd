//! Local mode's components: the pool of backend processes (source and target at once), and the
//! scaler driving it when configured.

use std::sync::Arc;

use super::{Assembly, Error};
use crate::config::{Config, LocalBackends, ScalerSection};
use crate::target::ScaleTarget;
use crate::target::local::{Pool, Supervisor};

impl Assembly {
    pub(super) fn add_local(
        &mut self,
        local: LocalBackends,
        scaler: Option<&ScalerSection>,
        config: &Config,
    ) -> Result<(), Error> {
        let remove_below = scaler.map_or(0, |s| s.policy.drain_remove_below);
        let pool = Arc::new(Pool::new(
            local,
            remove_below,
            Arc::clone(&self.catalog),
            Arc::clone(&self.proxy.connections),
            config.websocket_close_timeout,
        ));
        self.add("local-backends", Arc::new(Supervisor(Arc::clone(&pool))));
        if let Some(section) = scaler {
            let target = Arc::clone(&pool) as Arc<dyn ScaleTarget>;
            self.add_scaler(section, config.max_connections_per_backend, target)?;
        }
        self.pool = Some(pool);
        Ok(())
    }
}
