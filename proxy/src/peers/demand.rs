//! The cluster's demand, for the scaler of the replica that leads: every backend's counts
//! summed over the replicas (the table's cluster figures), the queues summed, and the
//! refusals of all of them as one monotonic count.

use std::sync::Arc;
use std::time::Instant;

use tidegate_common::LoadSnapshot;

use super::Peers;
use crate::scaling;

/// [`scaling::Demand`] over the whole cluster.
pub struct Demand(pub Arc<Peers>);

impl scaling::Demand for Demand {
    fn load(&self) -> LoadSnapshot {
        let mut load = self.0.proxy.table.load_snapshot(Instant::now());
        let peers = usize::try_from(self.0.node().peer_queued()).unwrap_or(usize::MAX);
        load.waiting = load.waiting.saturating_add(peers);
        load
    }

    fn refused_total(&self) -> u64 {
        self.0.proxy.metrics.rejected_total() + self.0.peer_refusals()
    }
}
