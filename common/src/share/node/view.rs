//! What the node knows of the others, for the rest of the proxy: the peers' counts summed per
//! backend (the cluster view), their demand, the leader's drain marks, the backends of peers
//! with a source, and how old each peer's report is.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Contact, Node};
use crate::share::MemberId;
use crate::share::report::BackendEntry;
use crate::table::backend::BackendState;

/// One peer as `/api/v1/state` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its incarnation.
    pub member: MemberId,
    /// Where it is reached, if known.
    pub address: Option<SocketAddr>,
    /// Heard from within `peer_timeout` (else dropped: its counts are no longer in the view).
    pub up: bool,
    /// Time since its newest report arrived.
    pub last_seen: Duration,
    /// Live connections in its newest report.
    pub live: u64,
    /// Whether it decides scaling.
    pub leader: bool,
}

/// The live peers' counts on one backend (this node's own not included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCounts {
    /// Their live connections.
    pub live: u32,
    /// Their pending upgrades.
    pub pending: u32,
}

impl Node {
    /// Every member known, live or dropped (until forgotten), with contacts not heard yet.
    pub fn peers(&self, now: Instant) -> Vec<Peer> {
        let mut out: Vec<Peer> = self
            .members
            .iter()
            .map(|(id, m)| Peer {
                member: *id,
                address: m.address,
                up: m.gone.is_none(),
                last_seen: now.saturating_duration_since(m.heard),
                live: m.report.as_ref().map_or(0, |r| r.total_live()),
                leader: m.report.as_ref().is_some_and(|r| r.leader),
            })
            .collect();
        out.sort_by_key(|p| (p.address, p.member));
        out
    }

    /// Contacts that have not answered yet.
    pub fn unidentified(&self) -> Vec<SocketAddr> {
        let unknown = |c: &Contact| matches!(c, Contact::Unknown { .. });
        let iter = self.contacts.iter().filter(|(_, c)| unknown(c));
        iter.map(|(a, _)| *a).collect()
    }

    /// The live peers' counts summed per backend.
    pub fn peer_counts(&self) -> HashMap<SocketAddr, PeerCounts> {
        let mut sums: HashMap<SocketAddr, PeerCounts> = HashMap::new();
        for (_, r) in self.live_reports() {
            for b in &r.backends {
                let s = sums.entry(b.address).or_default();
                s.live = s.live.saturating_add(b.live);
                s.pending = s.pending.saturating_add(b.pending);
            }
        }
        sums
    }

    /// Upgrades waiting in the live peers' queues, summed.
    pub fn peer_queued(&self) -> u64 {
        self.live_reports().map(|(_, r)| u64::from(r.queued)).sum()
    }

    /// Each live peer's refusals since it started (the caller keeps a monotonic sum of their
    /// growth, so that a peer joining or leaving is no burst).
    pub fn peer_refusals(&self) -> Vec<(MemberId, u64)> {
        self.live_reports()
            .map(|(id, r)| (id, r.refused_total))
            .collect()
    }

    /// The drain marks of the live leader(s) — the backends they report `Draining` — or `None`
    /// if no live peer leads.
    pub fn leader_drains(&self) -> Option<Vec<SocketAddr>> {
        let leaders: Vec<_> = self.live_reports().filter(|(_, r)| r.leader).collect();
        if leaders.is_empty() {
            return None;
        }
        let mut drains: Vec<SocketAddr> = leaders
            .iter()
            .flat_map(|(_, r)| r.backends.iter())
            .filter(|b| b.state == BackendState::Draining)
            .map(|b| b.address)
            .collect();
        drains.sort();
        drains.dedup();
        Some(drains)
    }

    /// The backends of the live peers that have a source of their own (the best state wins
    /// when two list one address), or `None` if no live peer has one.
    pub fn source_backends(&self) -> Option<Vec<BackendEntry>> {
        let sources: Vec<_> = self.live_reports().filter(|(_, r)| r.has_source).collect();
        if sources.is_empty() {
            return None;
        }
        let mut by: BTreeMap<SocketAddr, BackendEntry> = BTreeMap::new();
        for b in sources.iter().flat_map(|(_, r)| r.backends.iter()) {
            match by.get(&b.address) {
                Some(old) if rank(old.state) <= rank(b.state) => {}
                _ => {
                    by.insert(b.address, *b);
                }
            }
        }
        Some(by.into_values().collect())
    }

    /// The age of every live peer's newest report.
    pub fn report_ages(&self, now: Instant) -> Vec<Duration> {
        let live = self.members.values().filter(|m| m.gone.is_none());
        live.filter(|m| m.report.is_some())
            .map(|m| now.saturating_duration_since(m.heard))
            .collect()
    }
}

/// Which of two listings of one backend wins: ready over terminating over draining over removed.
fn rank(s: BackendState) -> u8 {
    match s {
        BackendState::Ready => 0,
        BackendState::Terminating => 1,
        BackendState::Draining => 2,
        BackendState::Removed => 3,
    }
}
