//! The backend table: every backend with its exact counts.
//!
//! - [`route`]: the routing rule — least live + pending among eligible backends under their
//!   cap, ties at random — and taking a slot;
//! - [`reservation`]: the count invariant, held by the guards a route hands out;
//! - [`queue`]: waiting for a slot, FIFO with a deadline, when every backend is full;
//! - [`backend`]: one backend's counters and state.
//!
//! Routing reads an immutable snapshot (`ArcSwap<Vec<Arc<Backend>>>`) without locks; discovery
//! replaces the snapshot under a mutex. A backend that leaves discovery stays in the table as
//! [`BackendState::Removed`] — still counted, never routed to — until its last connection closes.
//!
//! A table [`BackendTable::shared`] with peers admits on each backend only up to this replica's
//! share of its cap ([`crate::share`]); a new backend starts with no share until the exchange
//! gives it one. An unshared table (no peers) admits up to the cap, as a lone replica should.

pub mod backend;
pub mod queue;
pub mod reservation;
pub mod route;
mod slots;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::load::{BackendLoad, LoadSnapshot};
use crate::share::{Local, Slots};
use backend::{Backend, BackendState, UNSHARED};
use route::eligible_tier;
use slots::SlotSignal;

pub use route::NoSlot;

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

/// The table of backends with their exact counts. Cheap to share as `Arc<BackendTable>`.
#[derive(Debug)]
pub struct BackendTable {
    backends: ArcSwap<Vec<Arc<Backend>>>,
    writer: Mutex<()>,
    slots: Arc<SlotSignal>,
    epoch: Instant,
    /// Whether caps are shared with peers (new backends then start with a share of 0).
    shared: bool,
}

impl Default for BackendTable {
    fn default() -> Self {
        Self::new()
    }
}

impl BackendTable {
    /// An empty table that admits up to each backend's cap.
    pub fn new() -> Self {
        Self {
            backends: ArcSwap::from_pointee(Vec::new()),
            writer: Mutex::new(()),
            slots: Arc::default(),
            epoch: Instant::now(),
            shared: false,
        }
    }

    /// An empty table whose caps are shared with peers: each backend admits up to this
    /// replica's share, which starts at 0 and is set through [`Slots`].
    pub fn shared() -> Self {
        Self {
            shared: true,
            ..Self::new()
        }
    }

    /// Whether caps are shared with peers.
    pub fn is_shared(&self) -> bool {
        self.shared
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
            if let Some(spec) = wanted.remove(&backend.address()) {
                backend.set_capacity(spec.capacity);
                backend.set_state(spec.state);
                next.push(Arc::clone(backend));
                continue;
            }
            // State first, then the counts: a route racing with this either sees `Removed` and
            // gives its slot back, or its slot is seen here and the backend stays, counted.
            backend.set_state(BackendState::Removed);
            if backend.occupied() > 0 || backend.inflight_requests() > 0 {
                next.push(Arc::clone(backend));
            }
        }
        let mut added: Vec<_> = wanted.into_values().collect();
        added.sort_by_key(|s| s.address);
        let share = if self.shared { 0 } else { UNSHARED };
        for spec in added {
            let slots = Arc::clone(&self.slots);
            next.push(Arc::new(Backend::new(
                spec.address,
                spec.capacity,
                spec.state,
                slots,
                share,
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

    /// Total free slots this replica may fill on backends that take new connections.
    pub fn free_slots(&self, now: Instant) -> u64 {
        self.backends
            .load()
            .iter()
            .filter(|b| eligible_tier(b).is_some() && !self.is_ejected(b, now))
            .map(|b| u64::from(b.limit().saturating_sub(b.occupied())))
            .sum()
    }

    /// Sets every backend's peer counts (live, pending) from `counts`; backends it does not
    /// list get zero.
    pub fn set_peer_counts(&self, counts: impl Fn(SocketAddr) -> (u32, u32)) {
        for b in self.backends.load().iter() {
            let (live, pending) = counts(b.address());
            b.set_peer_counts(live, pending);
        }
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
                cluster_live: b.live().saturating_add(b.peer_live()),
                cluster_occupied: b.occupied().saturating_add(b.peer_occupied()),
                share: (b.share() != UNSHARED).then(|| b.share()),
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

    pub(crate) fn millis(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }
}

/// The shares of a shared table, for the exchange's state machine.
impl Slots for &BackendTable {
    fn backends(&self) -> Vec<Local> {
        let local = |b: &Arc<Backend>| Local {
            address: b.address(),
            capacity: b.capacity(),
            state: b.state(),
            live: b.live(),
            pending: b.pending(),
            share: b.share(),
        };
        self.backends.load().iter().map(local).collect()
    }

    fn raise(&mut self, backend: SocketAddr, by: u32) {
        if let Some(b) = self.get(backend) {
            b.raise_share(by);
        }
    }

    fn lower(&mut self, backend: SocketAddr, by: u32) -> u32 {
        self.get(backend).map_or(0, |b| b.lower_share(by))
    }
}
