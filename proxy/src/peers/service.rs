//! The sync loop: every `peers.sync_interval`, step the node, bring the table and the catalog in
//! step with the cluster, and push the new report to every contact (each push in its own task,
//! at most one in flight per contact, each bounded by `peers.call_timeout`). A step is brought
//! forward when the node wants it (an upgrade joined this replica's queue, or a peer that
//! queues can be given a share: `tidegate_common::share::node::EARLY_GAP`).
//!
//! On shutdown the replica *leaves*: it claims nothing more, gives back every share it does not
//! occupy, and keeps syncing — the admin listener keeps taking pushes meanwhile — until it
//! holds nothing (its connections closed), or until the grace period and the shutdown timeout
//! are over.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tidegate_common::BackendState;
use tidegate_common::share::node::Demand as Local;
use tidegate_common::share::{Node, wire};
use tracing::{debug, info, warn};

use super::Peers;
use super::exchange::{self, Answer};
use crate::discovery::{Condition, Endpoint};

/// Syncs in a row a leaving replica must hold nothing before it stops (its last grants and
/// acknowledgements get through).
const LEFT_AFTER: u32 = 5;

/// The sync loop as a pingora background service.
pub struct Service(pub Arc<Peers>);

#[async_trait]
impl BackgroundService for Service {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let peers = &self.0;
        let mut ticks = tokio::time::interval(peers.config.sync_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let in_flight: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
        let mut leaving: Option<(tokio::time::Instant, u32)> = None;
        info!(
            member = format!("{:016x}", peers.me()),
            "peer exchange running"
        );
        let slots = peers.proxy.table.slots();
        loop {
            let early = tokio::select! {
                _ = ticks.tick() => false,
                _ = shutdown.changed(), if leaving.is_none() => {
                    info!("leaving the peer exchange: giving shares back");
                    peers.node().leave();
                    leaving = Some((tokio::time::Instant::now(), 0));
                    false
                }
                () = slots.joined() => {
                    let queued = u32::try_from(slots.waiting()).unwrap_or(u32::MAX);
                    peers.node().queue_grew(queued);
                    true
                }
                () = peers.early.notified() => true,
            };
            if early {
                let now = tokio::time::Instant::now();
                let Some(at) = peers.node().early_tick(now.into_std()) else {
                    continue;
                };
                tokio::time::sleep_until(at.into()).await;
                peers.metrics.early_tick();
            }
            let now = tokio::time::Instant::now().into_std();
            let demand = peers.demand();
            let (body, contacts) = peers.step(now, demand);
            for address in contacts {
                peers.push(address, Arc::clone(&body), &in_flight);
            }
            if let Some((since, quiet)) = &mut leaving {
                *quiet = if peers.holds_nothing() { *quiet + 1 } else { 0 };
                let config = peers.proxy.config.load();
                let deadline = *since + config.grace_period + config.shutdown_timeout;
                if *quiet >= LEFT_AFTER || tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
        }
        info!("left the peer exchange");
        peers.left.send_replace(true);
    }
}

impl Peers {
    /// This replica's demand and role now.
    fn demand(&self) -> Local {
        let m = &self.proxy.metrics;
        let refused = m.rejected_total();
        Local {
            queued: u32::try_from(self.proxy.table.slots().waiting()).unwrap_or(u32::MAX),
            refused_total: refused,
            attempts_total: crate::metrics::counter_total(&m.upgrades) + refused,
            leader: self.role.leader(),
            has_source: self.role.has_source,
        }
    }

    /// One sync: step the node and apply what it knows; returns the encoded report and the
    /// contacts to push it to.
    fn step(&self, now: Instant, demand: Local) -> (Arc<Vec<u8>>, Vec<SocketAddr>) {
        let contacts = match &self.config.kubernetes {
            Some(_) => self
                .discovered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            None => self
                .proxy
                .config
                .load()
                .peers
                .as_ref()
                .map(|p| p.static_.clone()),
        };
        let mut node = self.node();
        if let Some(contacts) = contacts {
            node.set_contacts(now, contacts);
        }
        let table = &*self.proxy.table;
        let report = node.tick(now, &mut &*table, demand);
        let counts = node.peer_counts();
        table.set_peer_counts(|a| counts.get(&a).map_or((0, 0), |c| (c.live, c.pending)));
        self.follow(&node);
        self.count_refusals(node.peer_refusals());
        let up: Vec<(String, bool)> = node
            .peers(now)
            .iter()
            .map(|p| (label(p.address, p.member), p.up))
            .collect();
        self.metrics.peers(&up, &node.report_ages(now));
        self.metrics.counters(node.counters());
        let body = Arc::new(wire::encode(&report));
        (body, node.contacts())
    }

    /// Followers apply the leader's drain marks; a `backends.from_peers` edge takes the whole
    /// backend list of the peers with a source. With no live peer to follow, the last marks and
    /// list stay.
    fn follow(&self, node: &Node) {
        if self.role.from_peers {
            let Some(backends) = node.source_backends() else {
                return;
            };
            let mut drains: HashSet<SocketAddr> =
                node.leader_drains().into_iter().flatten().collect();
            let mut endpoints = Vec::with_capacity(backends.len());
            for b in backends {
                let condition = match b.state {
                    BackendState::Ready => Condition::Ready,
                    BackendState::Draining => {
                        drains.insert(b.address);
                        Condition::Ready
                    }
                    BackendState::Terminating => Condition::Terminating,
                    BackendState::Removed => continue,
                };
                endpoints.push(Endpoint {
                    address: b.address,
                    pod: None,
                    condition,
                    capacity: Some(b.capacity),
                });
            }
            self.catalog.update(endpoints, drains);
        } else if !self.role.leader()
            && let Some(drains) = node.leader_drains()
        {
            self.catalog.set_draining(drains.into_iter().collect());
        }
    }

    fn holds_nothing(&self) -> bool {
        let table = &*self.proxy.table;
        self.node().left(&table)
    }

    /// Pushes `body` to `address` in a task of its own, unless a push to it is still in flight.
    fn push(
        self: &Arc<Self>,
        address: SocketAddr,
        body: Arc<Vec<u8>>,
        in_flight: &Arc<Mutex<HashSet<SocketAddr>>>,
    ) {
        if !in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(address)
        {
            return;
        }
        let (peers, in_flight) = (Arc::clone(self), Arc::clone(in_flight));
        let timeout = self.config.call_timeout;
        tokio::spawn(async move {
            match exchange::push(address, &body, timeout).await {
                Ok(answer) => {
                    peers.metrics.bytes("sent", body.len());
                    peers.answered(address, answer);
                }
                Err(e) => {
                    debug!(peer = %address, error = %e, "push to peer failed");
                    peers.metrics.bad_report(e.metric_label());
                }
            }
            in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&address);
        });
    }

    fn answered(&self, address: SocketAddr, answer: Answer) {
        let now = tokio::time::Instant::now().into_std();
        let mut node = self.node();
        node.answered(now, address, answer.member);
        if answer.dropped_us {
            warn!(peer = %address, "a peer has dropped this replica: starting again as a new member");
            node.dropped();
        }
    }
}

/// A peer's metric label: its address, or its incarnation while no address is known.
fn label(address: Option<SocketAddr>, member: u64) -> String {
    address.map_or_else(|| format!("{member:016x}"), |a| a.to_string())
}
