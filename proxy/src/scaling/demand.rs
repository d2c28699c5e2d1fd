//! This edge's own demand: the backend table's counts and the data plane's refusals.

use std::time::Instant;

use tidegate_common::LoadSnapshot;

use super::Demand;
use crate::dataplane::Proxy;

impl Demand for Proxy {
    fn load(&self) -> LoadSnapshot {
        self.table.load_snapshot(Instant::now())
    }

    fn refused_total(&self) -> u64 {
        self.metrics.rejected_total()
    }
}
