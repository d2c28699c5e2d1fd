//! The routing rule: a new WebSocket goes to the eligible backend with the fewest live +
//! pending connections that is under its cap, ties broken at random; a plain request to the
//! one with the fewest of everything in flight (caps limit WebSockets only). Ready backends
//! first, terminating ones only when no ready one is left; ejected backends (a connect failed
//! lately) only when every candidate is ejected.
//!
//! Taking the slot is a compare-and-swap on the chosen backend
//! ([`super::reservation::Reservation`]), so two routes racing for the last slot cannot both
//! win: the loser picks again.
//!
//! With peers, "under its cap" means under this replica's share of it, and "fewest" counts
//! the other replicas' connections too (as of the last exchange), so the backends stay
//! balanced over the whole cluster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::BackendTable;
use super::backend::{Backend, BackendState};
use super::reservation::{InflightRequest, Reservation};

/// Rounds of pick-and-take before giving up as full: a candidate can fill up between choosing
/// and taking, and a few rounds settle it.
const ROUNDS: usize = 8;

/// Why no slot could be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoSlot {
    /// No backend takes new connections at all.
    #[error("no eligible backend")]
    NoBackends,
    /// Every eligible backend is at its capacity.
    #[error("every eligible backend is at capacity")]
    Full,
}

impl BackendTable {
    /// Takes a slot on the least-occupied eligible backend under its cap, skipping `exclude`.
    pub fn try_reserve(&self, now: Instant, exclude: &[SocketAddr]) -> Result<Reservation, NoSlot> {
        let backends = self.backends.load();
        // A candidate can fill up between choosing and taking; a few rounds settle it.
        for _ in 0..ROUNDS {
            let pick = self.pick(&backends, now, exclude, Load::WebSocket)?;
            if let Some(r) = Reservation::try_new(pick) {
                return Ok(r);
            }
        }
        Err(NoSlot::Full)
    }

    /// Picks the least-loaded eligible backend for a plain HTTP request (caps do not apply:
    /// they limit WebSockets) and counts the request until the guard drops.
    pub fn route_request(&self, now: Instant, exclude: &[SocketAddr]) -> Option<InflightRequest> {
        let backends = self.backends.load();
        for _ in 0..ROUNDS {
            let pick = self.pick(&backends, now, exclude, Load::Request).ok()?;
            let request = InflightRequest::new(pick);
            // As for a reservation: the snapshot may predate the backend's removal.
            if eligible_tier(pick).is_some() {
                return Some(request);
            }
        }
        None
    }

    /// The least-loaded backend with room, ties at random, among the preferred group: ready
    /// backends if any is left, else terminating ones. Ejected backends are skipped unless
    /// every candidate is ejected (refusing everyone would be worse than trying one: the panic
    /// mode of Envoy's outlier detection).
    fn pick<'a>(
        &self,
        backends: &'a [Arc<Backend>],
        now: Instant,
        exclude: &[SocketAddr],
        load: Load,
    ) -> Result<&'a Arc<Backend>, NoSlot> {
        let now_ms = self.millis(now);
        let healthy = |b: &Backend| b.ejected_until_ms() <= now_ms;
        let candidates = || {
            backends
                .iter()
                .filter_map(|b| Some((b, eligible_tier(b)?)))
                .filter(|(b, _)| !exclude.contains(&b.address()))
        };
        let healthy_tier = candidates().filter(|(b, _)| healthy(b)).map(|c| c.1).min();
        let (tier, allow_ejected) = match healthy_tier {
            Some(tier) => (tier, false),
            None => (
                candidates().map(|c| c.1).min().ok_or(NoSlot::NoBackends)?,
                true,
            ),
        };
        let group = candidates()
            .filter(|&(b, t)| t == tier && (allow_ejected || healthy(b)))
            .map(|(b, _)| b);
        lightest(group, load).ok_or(NoSlot::Full)
    }
}

/// The backend of `group` with the lowest weight for `load` (WebSockets: only those under
/// their cap), ties broken uniformly at random in one pass (reservoir sampling).
fn lightest<'a>(
    group: impl Iterator<Item = &'a Arc<Backend>>,
    load: Load,
) -> Option<&'a Arc<Backend>> {
    let mut best: Option<(&Arc<Backend>, u32)> = None;
    let mut ties = 0u32;
    for b in group {
        let occupied = b.occupied();
        // Room is this replica's own (`limit`: the cap, or its share of it with peers); the
        // weight is the backend's load over every replica, so the sum stays balanced.
        let weight = match load {
            Load::WebSocket if occupied >= b.limit() => continue,
            Load::WebSocket => occupied.saturating_add(b.peer_occupied()),
            Load::Request => occupied.saturating_add(b.inflight_requests()),
        };
        match best {
            Some((_, w)) if weight > w => {}
            Some((_, w)) if weight == w => {
                ties += 1;
                if fastrand::u32(0..=ties) == 0 {
                    best = Some((b, weight));
                }
            }
            _ => {
                best = Some((b, weight));
                ties = 0;
            }
        }
    }
    best.map(|(b, _)| b)
}

/// What a routing decision is for: a WebSocket (limited by the cap, weighed by live + pending)
/// or a plain request (no cap, weighed by everything in flight).
#[derive(Clone, Copy)]
enum Load {
    WebSocket,
    Request,
}

/// Routing preference: 0 = ready, 1 = terminating (used only when no ready backend is left),
/// `None` = takes no new connections.
pub(super) fn eligible_tier(b: &Backend) -> Option<u8> {
    match b.state() {
        BackendState::Ready => Some(0),
        BackendState::Terminating => Some(1),
        BackendState::Draining | BackendState::Removed => None,
    }
}
