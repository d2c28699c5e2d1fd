//! The backend table and the routing rule: least live + pending among eligible backends under
//! their cap, ties broken at random.
//!
//! Routing reads an immutable snapshot (`ArcSwap<Vec<Arc<Backend>>>`) without locks; discovery
//! replaces the snapshot under a mutex. A backend that leaves discovery stays in the table as
//! [`BackendState::Removed`] — still counted, never routed to — until its last connection closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::backend::{Backend, BackendState, InflightRequest, Reservation};
use crate::load::{BackendLoad, LoadSnapshot};
use crate::slots::SlotSignal;

/// What discovery says about one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    /// Where to connect.
    pub address: SocketAddr,
    /// The most live + pending WebSockets it is given.
    pub capacity: u32,
    /// Ready, terminating or draining (never `Removed`: absence means removed).
    pub state: BackendState,
}

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

/// The table of backends with their exact counts. Cheap to share as `Arc<BackendTable>`.
#[derive(Debug)]
pub struct BackendTable {
    backends: ArcSwap<Vec<Arc<Backend>>>,
    writer: Mutex<()>,
    slots: Arc<SlotSignal>,
    epoch: Instant,
}

impl Default for BackendTable {
    fn default() -> Self {
        Self::new()
    }
}

impl BackendTable {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            backends: ArcSwap::from_pointee(Vec::new()),
            writer: Mutex::new(()),
            slots: Arc::default(),
            epoch: Instant::now(),
        }
    }

    /// The backends now in the table, removed-but-not-empty ones included.
    pub fn backends(&self) -> Arc<Vec<Arc<Backend>>> {
        self.backends.load_full()
    }

    /// The backend at `address`, if it is in the table.
    pub fn get(&self, address: SocketAddr) -> Option<Arc<Backend>> {
        self.backends
            .load()
            .iter()
            .find(|b| b.address() == address)
            .cloned()
    }

    /// The signal queued requests wait on.
    pub fn slots(&self) -> &SlotSignal {
        &self.slots
    }

    /// Replaces the set of backends with what discovery reports now. Backends still present
    /// keep their counts (same `Arc`); missing ones become `Removed` and are dropped from the
    /// table once empty.
    pub fn set_backends(&self, specs: impl IntoIterator<Item = BackendSpec>) {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut wanted: HashMap<SocketAddr, BackendSpec> =
            specs.into_iter().map(|s| (s.address, s)).collect();
        let mut next = Vec::with_capacity(wanted.len());
        for backend in self.backends.load().iter() {
            match wanted.remove(&backend.address()) {
                Some(spec) => {
                    backend.set_capacity(spec.capacity);
                    backend.set_state(spec.state);
                    next.push(Arc::clone(backend));
                }
                None if backend.occupied() > 0 || backend.inflight_requests() > 0 => {
                    backend.set_state(BackendState::Removed);
                    next.push(Arc::clone(backend));
                }
                None => backend.set_state(BackendState::Removed),
            }
        }
        let mut added: Vec<_> = wanted.into_values().collect();
        added.sort_by_key(|s| s.address);
        for spec in added {
            let slots = Arc::clone(&self.slots);
            next.push(Arc::new(Backend::new(
                spec.address,
                spec.capacity,
                spec.state,
                slots,
            )));
        }
        self.backends.store(Arc::new(next));
        self.slots.capacity_changed();
    }

    /// Sets every backend's capacity (a config reload changed the per-backend cap).
    pub fn set_capacity_all(&self, capacity: u32) {
        for b in self.backends.load().iter() {
            b.set_capacity(capacity);
        }
    }

    /// Drops removed backends whose last connection has closed.
    pub fn prune(&self) {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.backends.load_full();
        let gone = |b: &Arc<Backend>| {
            b.state() == BackendState::Removed && b.occupied() == 0 && b.inflight_requests() == 0
        };
        if current.iter().any(gone) {
            let kept = current.iter().filter(|b| !gone(b)).cloned().collect();
            self.backends.store(Arc::new(kept));
        }
    }

    /// Sets the state of one backend (e.g. `Draining` for a scale-down victim).
    /// Returns false if no backend has that address.
    pub fn set_state(&self, address: SocketAddr, state: BackendState) -> bool {
        self.get(address).map(|b| b.set_state(state)).is_some()
    }

    /// Keeps `backend` out of routing until `now + for_how_long` (after a failed connect).
    pub fn eject(&self, backend: &Backend, now: Instant, for_how_long: Duration) {
        backend.eject_until_ms(self.millis(now + for_how_long).max(1));
    }

    /// Whether `backend` is ejected at `now`.
    pub fn is_ejected(&self, backend: &Backend, now: Instant) -> bool {
        backend.ejected_until_ms() > self.millis(now)
    }

    /// Takes a slot on the least-occupied eligible backend under its cap, skipping `exclude`.
    pub fn try_reserve(&self, now: Instant, exclude: &[SocketAddr]) -> Result<Reservation, NoSlot> {
        let backends = self.backends.load();
        // A candidate can fill up between choosing and taking; a few rounds settle it.
        for _ in 0..8 {
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
        let pick = self.pick(&backends, now, exclude, Load::Request).ok()?;
        Some(InflightRequest::new(pick))
    }

    /// Total free slots on backends that take new connections.
    pub fn free_slots(&self, now: Instant) -> u64 {
        self.backends
            .load()
            .iter()
            .filter(|b| eligible_tier(b).is_some() && !self.is_ejected(b, now))
            .map(|b| u64::from(b.capacity().saturating_sub(b.occupied())))
            .sum()
    }

    /// Whether any backend takes new connections now (what `/readyz` reports).
    pub fn has_eligible(&self) -> bool {
        self.backends.load().iter().any(|b| {
            matches!(b.state(), BackendState::Ready | BackendState::Terminating) && b.capacity() > 0
        })
    }

    /// A point-in-time copy of every backend's counts, for the scaler, metrics and the API.
    pub fn load_snapshot(&self, now: Instant) -> LoadSnapshot {
        let backends = self
            .backends
            .load()
            .iter()
            .map(|b| BackendLoad {
                address: b.address(),
                live: b.live(),
                pending: b.pending(),
                capacity: b.capacity(),
                inflight_requests: b.inflight_requests(),
                state: b.state(),
                ejected: self.is_ejected(b, now),
            })
            .collect();
        LoadSnapshot {
            backends,
            waiting: self.slots.waiting(),
        }
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
        let candidates = || {
            backends
                .iter()
                .filter_map(|b| Some((b, eligible_tier(b)?)))
                .filter(|(b, _)| !exclude.contains(&b.address()))
        };
        let healthy_tier = candidates()
            .filter(|(b, _)| b.ejected_until_ms() <= now_ms)
            .map(|c| c.1)
            .min();
        let (tier, allow_ejected) = match healthy_tier {
            Some(tier) => (tier, false),
            None => (
                candidates().map(|c| c.1).min().ok_or(NoSlot::NoBackends)?,
                true,
            ),
        };
        let mut best: Option<(&Arc<Backend>, u32)> = None;
        let mut ties = 0u32;
        for (b, _) in candidates()
            .filter(|&(b, t)| t == tier && (allow_ejected || b.ejected_until_ms() <= now_ms))
        {
            let occupied = b.occupied();
            let weight = match load {
                Load::WebSocket if occupied >= b.capacity() => continue,
                Load::WebSocket => occupied,
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
        best.map(|(b, _)| b).ok_or(NoSlot::Full)
    }

    fn millis(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }
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
fn eligible_tier(b: &Backend) -> Option<u8> {
    match b.state() {
        BackendState::Ready => Some(0),
        BackendState::Terminating => Some(1),
        BackendState::Draining | BackendState::Removed => None,
    }
}
