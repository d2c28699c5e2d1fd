//! Point-in-time copies of the backend counts: what the scaler, `/metrics` and
//! `/api/v1/state` read.

use std::net::SocketAddr;

use serde::Serialize;

use crate::table::backend::BackendState;

/// One backend's counts at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendLoad {
    /// Where connections go.
    pub address: SocketAddr,
    /// Upgraded WebSockets open now.
    pub live: u32,
    /// Upgrades routed here and still waiting for the backend's 101.
    pub pending: u32,
    /// Live WebSockets over every replica, this one included, as of the last exchange with
    /// the peers (`live` without peers).
    pub cluster_live: u32,
    /// Live + pending over every replica, as of the last exchange (what the scaler and the
    /// drain plan read).
    pub cluster_occupied: u32,
    /// This replica's share of the cap, when caps are shared with peers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<u32>,
    /// The most live + pending WebSockets it is given.
    pub capacity: u32,
    /// Plain HTTP requests in flight.
    pub inflight_requests: u32,
    /// Whether it takes new connections.
    pub state: BackendState,
    /// Kept out of routing for a while after a failed connect.
    pub ejected: bool,
}

/// Every backend's counts at one moment, plus the requests queued for a slot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LoadSnapshot {
    /// Per backend, in table order.
    pub backends: Vec<BackendLoad>,
    /// Upgrades waiting in the queue for a slot.
    pub waiting: usize,
}

impl LoadSnapshot {
    /// Live WebSockets across all backends.
    pub fn total_live(&self) -> u64 {
        self.backends.iter().map(|b| u64::from(b.live)).sum()
    }

    /// Pending upgrades across all backends.
    pub fn total_pending(&self) -> u64 {
        self.backends.iter().map(|b| u64::from(b.pending)).sum()
    }

    /// Live WebSockets across all backends and all replicas, as of the last exchange.
    pub fn total_cluster_live(&self) -> u64 {
        self.backends
            .iter()
            .map(|b| u64::from(b.cluster_live))
            .sum()
    }

    /// Capacity of the backends that take new connections.
    pub fn routable_capacity(&self) -> u64 {
        self.backends
            .iter()
            .filter(|b| matches!(b.state, BackendState::Ready | BackendState::Terminating))
            .map(|b| u64::from(b.capacity))
            .sum()
    }
}
