//! One edge across replicas: the peer exchange's I/O around the pure state machine of
//! `tidegate_common::share` (`docs/architecture.md`, "One edge across replicas").
//!
//! Every `peers.sync_interval` the [`Service`] steps the [`Node`] — drop silent peers, claim
//! what nobody holds, rebalance shares toward the arrivals — and pushes the resulting report to
//! every contact (`POST /api/v1/peer/sync` on their admin listener, [`exchange`]); reports
//! pushed to this replica arrive through the admin listener into [`Peers::receive`]. Between
//! the two it keeps the rest of the proxy in step with the cluster:
//!
//! - the backend table's peer counts (routing weighs the whole cluster, `/api/v1/state` shows
//!   `cluster_live`) and shares (admission stays one local compare-and-swap);
//! - the scaler's input: the cluster's queue and refusals ([`Demand`]);
//! - the leader's drain marks, applied by every follower; with `backends.from_peers`, the whole
//!   backend list of the peers that have a source.
//!
//! Contacts come from `peers.static` (re-read every sync, so a reload changes them) or from
//! the proxies' headless Service ([`contacts`]). A contact that turns out to be this replica
//! (its answer names our own incarnation) is left out, so one list serves every replica.

pub mod contacts;
mod demand;
pub mod exchange;
mod metrics;
mod service;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tidegate_common::share::node::{Counters, Peer, Received};
use tidegate_common::share::{MemberId, Node, Report, Settings};
use tokio::sync::watch;

use crate::config::Peers as PeersConfig;
use crate::dataplane::Proxy;
use crate::discovery::Catalog;
pub use demand::Demand;
pub use metrics::Metrics;
pub use service::Service;

/// What this replica is in the cluster, for its reports.
#[derive(Clone, Debug)]
pub struct Role {
    /// Whether a scaler runs here (it decides only while leading, if there is an election).
    pub runs_scaler: bool,
    /// Leadership, when leader election is on.
    pub leading: Option<watch::Receiver<bool>>,
    /// Whether this replica has a backend source of its own.
    pub has_source: bool,
    /// Whether it takes its backends from the peers (`backends.from_peers`).
    pub from_peers: bool,
}

impl Role {
    /// Whether this replica decides scaling now: its drain marks are the cluster's.
    pub fn leader(&self) -> bool {
        self.runs_scaler && self.leading.as_ref().is_none_or(|l| *l.borrow())
    }
}

/// The peer exchange's shared state: the node, and what it is applied to.
pub struct Peers {
    node: Mutex<Node>,
    proxy: Arc<Proxy>,
    catalog: Arc<Catalog>,
    config: PeersConfig,
    role: Role,
    metrics: Metrics,
    /// Contacts from the peers Service, when `peers.kubernetes` is the source.
    discovered: Mutex<Option<Vec<SocketAddr>>>,
    /// Each peer's last refusal total, and the sum of their growth (monotonic).
    refusals: Mutex<(HashMap<MemberId, u64>, u64)>,
    /// Wakes the sync loop for a tick brought forward (`share::node::EARLY_GAP`).
    early: tokio::sync::Notify,
    /// Set once this replica has left (shutdown: shares given back) — the admin listener
    /// keeps serving peers until then.
    left: watch::Sender<bool>,
}

impl Peers {
    /// The exchange of `config` for the data plane `proxy` and its `catalog`, reached by peers
    /// on `admin_port`; its metrics are registered in `registry`. The table must be
    /// [`tidegate_common::BackendTable::shared`].
    pub fn new(
        config: PeersConfig,
        proxy: Arc<Proxy>,
        catalog: Arc<Catalog>,
        role: Role,
        admin_port: u16,
        registry: &prometheus::Registry,
    ) -> Result<Self, crate::metrics::Error> {
        let settings = Settings {
            peer_timeout: config.peer_timeout,
        };
        let node = Node::new(settings, fastrand::u64(..), admin_port);
        Ok(Self {
            metrics: Metrics::register(registry, &proxy.table)?,
            node: Mutex::new(node),
            proxy,
            catalog,
            config,
            role,
            discovered: Mutex::new(None),
            refusals: Mutex::new((HashMap::new(), 0)),
            early: tokio::sync::Notify::new(),
            left: watch::Sender::new(false),
        })
    }

    fn node(&self) -> MutexGuard<'_, Node> {
        self.node.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This replica's incarnation (the `Tidegate-Member` of its answers).
    pub fn me(&self) -> MemberId {
        self.node().me()
    }

    /// Takes in a report pushed by a peer from `source` (its admin address, inferred).
    pub fn receive(&self, report: Report, source: Option<SocketAddr>) -> Received {
        let now = tokio::time::Instant::now().into_std();
        let table = &*self.proxy.table;
        let mut node = self.node();
        let received = node.receive(now, report, source, &mut &*table);
        if node.early_tick(now).is_some() {
            self.early.notify_one();
        }
        drop(node);
        self.metrics.received(received);
        received
    }

    /// Every peer known, for `/api/v1/state`.
    pub fn peers(&self) -> Vec<Peer> {
        self.node().peers(tokio::time::Instant::now().into_std())
    }

    /// What the node has done so far (slots claimed, given, received, destroyed).
    pub fn counters(&self) -> Counters {
        self.node().counters()
    }

    /// Sets the contacts found by peer discovery.
    pub fn set_discovered(&self, addresses: Vec<SocketAddr>) {
        *self.discovered.lock().unwrap_or_else(|p| p.into_inner()) = Some(addresses);
    }

    /// Upgrades refused by the peers since this replica first heard of each (monotonic).
    pub fn peer_refusals(&self) -> u64 {
        self.refusals.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// Waits until this replica has left the exchange (after shutdown).
    pub async fn wait_left(&self) {
        let mut left = self.left.subscribe();
        let _ = left.wait_for(|l| *l).await;
    }

    /// Folds the peers' refusal totals into the monotonic sum: a peer seen for the first time
    /// adds nothing (its past refusals are not this second's), a restarted one starts over.
    fn count_refusals(&self, totals: Vec<(MemberId, u64)>) {
        let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        let (last, sum) = &mut *r;
        let mut next = HashMap::with_capacity(totals.len());
        for (id, total) in totals {
            if let Some(&before) = last.get(&id) {
                *sum += total.saturating_sub(before);
            }
            next.insert(id, total);
        }
        *last = next;
    }
}
