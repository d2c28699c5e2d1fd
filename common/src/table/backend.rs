//! One backend (a pod or a local process) and its exact connection counts. The counts change
//! only through the guards of [`super::reservation`], which hold the count invariant.
//!
//! The occupied count (live + pending) and this replica's *share* of the cap live in one
//! atomic word, so that taking a slot is one compare-and-swap against `min(cap, share)` and
//! lowering the share (to give it to another replica, `crate::share`) can never slip below a
//! slot taken at the same moment. Without peers the share is [`UNSHARED`] and the compare is
//! against the cap alone, as before.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

/// The share of a backend in a table that is not shared with peers: no limit beyond the cap.
pub const UNSHARED: u32 = u32::MAX;

use super::slots::SlotSignal;

/// Whether a backend takes new connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendState {
    /// Ready and not terminating: takes new connections.
    Ready,
    /// Still serving but terminating: takes new connections only when no backend is `Ready`.
    Terminating,
    /// Chosen for removal (scale-down victim) or not serving: takes no new connections; its
    /// existing connections stay until they close.
    Draining,
    /// Gone from discovery; kept in the table, still counted, until its last connection closes.
    Removed,
}

impl BackendState {
    const ALL: [BackendState; 4] = [
        Self::Ready,
        Self::Terminating,
        Self::Draining,
        Self::Removed,
    ];

    /// The lower-case name used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Terminating => "terminating",
            Self::Draining => "draining",
            Self::Removed => "removed",
        }
    }

    fn from_u8(v: u8) -> Self {
        Self::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(Self::Removed)
    }
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend with its counters. Shared as `Arc<Backend>` by the table and by every
/// reservation on it, so a backend that leaves the table stays counted until it is empty.
pub struct Backend {
    address: SocketAddr,
    /// `address` as text, made once: the metric label of every connection to this backend.
    label: Box<str>,
    capacity: AtomicU32,
    /// Low 32 bits: live + pending, the figure the cap limits. High 32 bits: this replica's
    /// share of the cap ([`UNSHARED`] without peers).
    slots_word: AtomicU64,
    live: AtomicU32,
    /// The other replicas' live and pending connections here, as of the last exchange.
    peer_live: AtomicU32,
    peer_pending: AtomicU32,
    inflight_requests: AtomicU32,
    state: AtomicU8,
    /// Milliseconds since the table's epoch until which the backend is ejected (0 = never).
    ejected_until_ms: AtomicU64,
    slots: Arc<SlotSignal>,
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("address", &self.address)
            .field("live", &self.live())
            .field("pending", &self.pending())
            .field("capacity", &self.capacity())
            .field("share", &self.share())
            .field("state", &self.state())
            .finish()
    }
}

impl Backend {
    pub(crate) fn new(
        address: SocketAddr,
        capacity: u32,
        state: BackendState,
        slots: Arc<SlotSignal>,
        share: u32,
    ) -> Self {
        Self {
            address,
            label: address.to_string().into_boxed_str(),
            capacity: AtomicU32::new(capacity),
            slots_word: AtomicU64::new(u64::from(share) << 32),
            live: AtomicU32::new(0),
            peer_live: AtomicU32::new(0),
            peer_pending: AtomicU32::new(0),
            inflight_requests: AtomicU32::new(0),
            state: AtomicU8::new(state as u8),
            ejected_until_ms: AtomicU64::new(0),
            slots,
        }
    }

    /// The socket address connections go to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The address as text (metric label), without a per-call allocation.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Upgraded WebSocket connections open through this backend now.
    pub fn live(&self) -> u32 {
        self.live.load(Ordering::Acquire)
    }

    /// Slots reserved for upgrades in progress (routed, no 101 yet).
    pub fn pending(&self) -> u32 {
        self.occupied().saturating_sub(self.live())
    }

    /// live + pending: what the capacity limits.
    pub fn occupied(&self) -> u32 {
        // SeqCst with `state`: see `try_take_slot`.
        self.slots_word.load(Ordering::SeqCst) as u32
    }

    /// This replica's share of the cap ([`UNSHARED`] without peers).
    pub fn share(&self) -> u32 {
        (self.slots_word.load(Ordering::Acquire) >> 32) as u32
    }

    /// The most live + pending this replica may hold here: `min(cap, share)`.
    pub fn limit(&self) -> u32 {
        self.capacity().min(self.share())
    }

    /// The other replicas' live connections here, as of the last exchange.
    pub fn peer_live(&self) -> u32 {
        self.peer_live.load(Ordering::Acquire)
    }

    /// The other replicas' live + pending here, as of the last exchange.
    pub fn peer_occupied(&self) -> u32 {
        let pending = self.peer_pending.load(Ordering::Acquire);
        self.peer_live().saturating_add(pending)
    }

    pub(crate) fn set_peer_counts(&self, live: u32, pending: u32) {
        self.peer_live.store(live, Ordering::Release);
        self.peer_pending.store(pending, Ordering::Release);
    }

    /// Adds `by` to the share (no-op without peers); wakes queued upgrades.
    pub(crate) fn raise_share(&self, by: u32) {
        let raised = self
            .slots_word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                let share = (w >> 32) as u32;
                let up = share.saturating_add(by).min(UNSHARED - 1);
                (share != UNSHARED && up != share)
                    .then(|| (u64::from(up) << 32) | (w & 0xffff_ffff))
            })
            .is_ok();
        if raised {
            self.slots.capacity_changed();
        }
    }

    /// Takes up to `by` off the share, never below the occupied count at that instant (one
    /// compare-and-swap with admissions); returns how much came off.
    pub(crate) fn lower_share(&self, by: u32) -> u32 {
        let mut down = 0;
        let _ = self
            .slots_word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                let (occupied, share) = (w as u32, (w >> 32) as u32);
                if share == UNSHARED {
                    return None;
                }
                let to = share.saturating_sub(by).max(occupied.min(share));
                down = share - to;
                (down > 0).then(|| (u64::from(to) << 32) | u64::from(occupied))
            });
        down
    }

    /// Plain HTTP requests in flight (not limited by the capacity).
    pub fn inflight_requests(&self) -> u32 {
        self.inflight_requests.load(Ordering::SeqCst)
    }

    /// The most live + pending WebSockets this backend is given.
    pub fn capacity(&self) -> u32 {
        self.capacity.load(Ordering::Acquire)
    }

    /// Whether the backend takes new connections.
    pub fn state(&self) -> BackendState {
        BackendState::from_u8(self.state.load(Ordering::SeqCst))
    }

    pub(crate) fn set_state(&self, state: BackendState) {
        let old = self.state.swap(state as u8, Ordering::SeqCst);
        if old != state as u8 {
            self.slots.capacity_changed();
        }
    }

    pub(crate) fn set_capacity(&self, capacity: u32) {
        let old = self.capacity.swap(capacity, Ordering::AcqRel);
        if capacity > old {
            self.slots.capacity_changed();
        }
    }

    pub(crate) fn ejected_until_ms(&self) -> u64 {
        self.ejected_until_ms.load(Ordering::Acquire)
    }

    pub(crate) fn eject_until_ms(&self, until_ms: u64) {
        self.ejected_until_ms.fetch_max(until_ms, Ordering::AcqRel);
    }

    /// Takes one slot if `occupied < min(capacity, share)` (one compare-and-swap on the word
    /// that holds both occupied and share, so it never overshoots either).
    ///
    /// The caller re-reads `state` after this succeeds; the table's writer sets `state` before
    /// it reads `occupied` to decide whether a removed backend can leave. All four accesses are
    /// `SeqCst`, so at least one side sees the other: either the router sees the new state and
    /// gives the slot back, or the writer sees the slot and keeps the backend, counted.
    pub(super) fn try_take_slot(&self) -> bool {
        let cap = self.capacity();
        self.slots_word
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                let (occupied, share) = (w as u32, (w >> 32) as u32);
                (occupied < cap.min(share)).then_some(w + 1)
            })
            .is_ok()
    }

    /// pending → live, for a slot already taken.
    pub(super) fn mark_live(&self) {
        self.live.fetch_add(1, Ordering::AcqRel);
    }

    /// Gives a slot back (live or still pending) and wakes a queued upgrade.
    pub(super) fn give_back_slot(&self, was_live: bool) {
        if was_live {
            self.live.fetch_sub(1, Ordering::AcqRel);
        }
        // The low half is at least 1 here (this slot), so the share half is untouched.
        self.slots_word.fetch_sub(1, Ordering::AcqRel);
        self.slots.slot_freed();
    }

    /// One more plain HTTP request in flight.
    pub(super) fn request_started(&self) {
        // SeqCst with `state`, as for `try_take_slot`.
        self.inflight_requests.fetch_add(1, Ordering::SeqCst);
    }

    /// One plain HTTP request fewer in flight.
    pub(super) fn request_ended(&self) {
        self.inflight_requests.fetch_sub(1, Ordering::AcqRel);
    }
}
