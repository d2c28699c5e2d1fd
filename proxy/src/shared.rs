//! What every connection task, the admin listener and the side services share.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tidegate_common::{BackendTable, QueuePolicy};

use crate::config::Config;
use crate::metrics::ProxyMetrics;
use crate::scale::{ScalerMetrics, ScalerStatus};

/// The proxy's shared state: the live config snapshot, the backend table and the metrics.
pub struct Shared {
    /// The config in force; swapped whole on reload, read once per connection.
    pub config: ArcSwap<Config>,
    /// Backends and their exact counts.
    pub table: Arc<BackendTable>,
    /// Metrics served on the admin listener.
    pub metrics: ProxyMetrics,
    /// What the scaler last decided (empty when no scaler runs).
    pub scaler: ScalerStatus,
}

impl Shared {
    /// State for `config`, with the table filled from its static backends.
    pub fn new(config: Config) -> Arc<Self> {
        let table = Arc::new(BackendTable::new());
        table.set_backends(config.backend_specs());
        let metrics = ProxyMetrics::new();
        let scaler = match ScalerMetrics::register(metrics.registry()) {
            Ok(m) => ScalerStatus::with_metrics(m),
            Err(_) => ScalerStatus::default(),
        };
        Arc::new(Self {
            config: ArcSwap::from_pointee(config),
            table,
            metrics,
            scaler,
        })
    }
}

impl Config {
    /// The queue rules for upgrades.
    pub fn queue_policy(&self) -> QueuePolicy {
        QueuePolicy {
            timeout: self.queue_timeout,
            max_waiting: self.queue_max,
        }
    }
}
