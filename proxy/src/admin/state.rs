//! The body of `/api/v1/state`: every backend's counts, their sums, and the scaler's view.

use std::time::Instant;

use serde::Serialize;
use tidegate_common::BackendLoad;

use super::Admin;
use crate::scaling::View;

/// The body of `/api/v1/state`.
#[derive(Debug, Serialize)]
pub struct State {
    /// Every backend in the table, removed-but-not-empty ones included.
    pub backends: Vec<BackendLoad>,
    /// Sums over all backends.
    pub totals: Totals,
    /// The scaler's view, when a scaler runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaler: Option<View>,
}

/// Sums in `/api/v1/state`.
#[derive(Debug, Serialize)]
pub struct Totals {
    /// Live WebSockets.
    pub live: u64,
    /// Upgrades routed and waiting for the backend's 101.
    pub pending: u64,
    /// Upgrades refused with 503 since start.
    pub rejected: u64,
    /// Upgrades waiting in the queue now.
    pub waiting: usize,
    /// Capacity of the backends that take new connections.
    pub capacity: u64,
}

impl Admin {
    /// The state as `/api/v1/state` reports it.
    pub fn state(&self) -> State {
        let load = self.proxy.table.load_snapshot(Instant::now());
        let totals = Totals {
            live: load.total_live(),
            pending: load.total_pending(),
            rejected: self.proxy.metrics.rejected_total(),
            waiting: load.waiting,
            capacity: load.routable_capacity(),
        };
        State {
            backends: load.backends,
            totals,
            scaler: self.scaler.as_ref().map(|s| s.view()),
        }
    }
}
