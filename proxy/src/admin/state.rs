//! The body of `/api/v1/state`: every backend's counts (this replica's own, and over every
//! replica as of the last exchange), their sums, the peers, and the scaler's view.

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
    /// The other replicas this one exchanges with (empty without peers).
    pub peers: Vec<PeerState>,
    /// The scaler's view, when a scaler runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaler: Option<View>,
}

/// Sums in `/api/v1/state`.
#[derive(Debug, Serialize)]
pub struct Totals {
    /// Live WebSockets through this replica.
    pub live: u64,
    /// Live WebSockets over every replica, this one included, as of the last exchange.
    pub cluster_live: u64,
    /// Upgrades routed and waiting for the backend's 101.
    pub pending: u64,
    /// Upgrades refused with 503 since start.
    pub rejected: u64,
    /// Upgrades waiting in the queue now.
    pub waiting: usize,
    /// Capacity of the backends that take new connections.
    pub capacity: u64,
}

/// One peer in `/api/v1/state`.
#[derive(Debug, Serialize)]
pub struct PeerState {
    /// Its admin address (as pushed to, or inferred from its pushes), if known.
    pub address: Option<String>,
    /// Its incarnation, 16 hex digits.
    pub member: String,
    /// Heard from within `peers.peer_timeout`; once dropped, its connections leave the view.
    pub up: bool,
    /// Milliseconds since its newest report arrived.
    pub last_seen_ms: u64,
    /// Live connections in its newest report.
    pub live: u64,
    /// Whether it decides scaling (its drain marks are applied here).
    pub leader: bool,
}

impl Admin {
    /// The state as `/api/v1/state` reports it.
    pub fn state(&self) -> State {
        let load = self.proxy.table.load_snapshot(Instant::now());
        let totals = Totals {
            live: load.total_live(),
            cluster_live: load.total_cluster_live(),
            pending: load.total_pending(),
            rejected: self.proxy.metrics.rejected_total(),
            waiting: load.waiting,
            capacity: load.routable_capacity(),
        };
        let peers = self.peers.as_ref().map(|p| p.peers()).unwrap_or_default();
        let peers = peers
            .into_iter()
            .map(|p| PeerState {
                address: p.address.map(|a| a.to_string()),
                member: format!("{:016x}", p.member),
                up: p.up,
                last_seen_ms: u64::try_from(p.last_seen.as_millis()).unwrap_or(u64::MAX),
                live: p.live,
                leader: p.leader,
            })
            .collect();
        State {
            backends: load.backends,
            totals,
            peers,
            scaler: self.scaler.as_ref().map(|s| s.view()),
        }
    }
}
