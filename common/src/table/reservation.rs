//! The count invariant, held by two guards.
//!
//! A [`Reservation`] is a slot on one backend for the whole life of a WebSocket: taken at
//! routing by compare-and-swap under the cap (so a burst of handshakes can never overshoot
//! it), pending until the backend's `101`, live after [`Reservation::promote`], and given back
//! exactly once by its `Drop` — whatever path the connection ends on. So at every moment
//! `occupied == live + pending` (between the two atomic steps of a transition aside) and
//! `occupied <= capacity`, and nothing is ever decremented by hand. An [`InflightRequest`]
//! counts one plain HTTP request the same way (no cap).
//!
//! Why at routing and not at the `101`: `docs/architecture.md`, "Counts are reserved at routing".

use std::fmt;
use std::sync::Arc;

use super::backend::Backend;
use super::route::eligible_tier;

/// A slot on one backend, held for the whole life of a WebSocket: pending from routing until the
/// backend's `101`, live after [`Reservation::promote`], released exactly once on drop — on every
/// path: client or backend close, backend crash, timeout, non-101 answer, proxy shutdown.
#[must_use = "dropping a reservation releases the slot at once"]
pub struct Reservation {
    backend: Arc<Backend>,
    live: bool,
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("backend", &self.backend.address())
            .field("live", &self.live)
            .finish()
    }
}

impl Reservation {
    /// Takes a slot on `backend` if it is under its capacity and still takes new connections.
    ///
    /// The state is read again after the slot is taken: the routing snapshot that chose
    /// `backend` may predate its removal (or drain), and a slot on a backend the table has just
    /// let go would be counted nowhere. If it no longer takes connections the slot goes back.
    pub(crate) fn try_new(backend: &Arc<Backend>) -> Option<Self> {
        if !backend.try_take_slot() {
            return None;
        }
        let reservation = Self {
            backend: Arc::clone(backend),
            live: false,
        };
        eligible_tier(backend).map(|_| reservation)
    }

    /// The backend this slot is on.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// Whether the backend answered `101` (the connection is counted live).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Marks the upgrade as done: pending → live. Idempotent.
    pub fn promote(&mut self) {
        if !self.live {
            self.live = true;
            self.backend.mark_live();
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.backend.give_back_slot(self.live);
    }
}

/// One plain HTTP request in flight on a backend; counted until dropped.
#[derive(Debug)]
pub struct InflightRequest {
    backend: Arc<Backend>,
}

impl InflightRequest {
    pub(crate) fn new(backend: &Arc<Backend>) -> Self {
        backend.request_started();
        Self {
            backend: Arc::clone(backend),
        }
    }

    /// The backend the request went to.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for InflightRequest {
    fn drop(&mut self) {
        self.backend.request_ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(cap: u32) -> Arc<Backend> {
        let addr = "127.0.0.1:9001".parse().unwrap();
        Arc::new(Backend::new(
            addr,
            cap,
            super::super::BackendState::Ready,
            Arc::default(),
            super::super::backend::UNSHARED,
        ))
    }

    #[test]
    fn reserve_promote_release_keeps_counts_exact() {
        let b = backend(2);
        let mut r1 = Reservation::try_new(&b).unwrap();
        assert_eq!((b.live(), b.pending()), (0, 1));
        r1.promote();
        r1.promote();
        assert_eq!((b.live(), b.pending()), (1, 0));
        let r2 = Reservation::try_new(&b).unwrap();
        assert!(
            Reservation::try_new(&b).is_none(),
            "cap 2 must refuse a third slot"
        );
        drop(r1);
        assert_eq!((b.live(), b.pending(), b.occupied()), (0, 1, 1));
        drop(r2);
        assert_eq!((b.live(), b.pending(), b.occupied()), (0, 0, 0));
    }

    #[test]
    fn a_backend_that_stopped_taking_connections_gives_the_slot_back() {
        let b = backend(2);
        for state in [
            super::super::BackendState::Draining,
            super::super::BackendState::Removed,
        ] {
            b.set_state(state);
            assert!(Reservation::try_new(&b).is_none(), "{state}");
            assert_eq!(b.occupied(), 0, "{state}");
        }
        b.set_state(super::super::BackendState::Terminating);
        assert!(Reservation::try_new(&b).is_some());
    }

    #[test]
    fn concurrent_reservations_never_overshoot_the_cap() {
        let b = backend(100);
        let taken: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..50)
                            .filter_map(|_| Reservation::try_new(&b))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(taken.len(), 100);
        assert_eq!(b.occupied(), 100);
        drop(taken);
        assert_eq!(b.occupied(), 0);
    }

    #[test]
    fn inflight_requests_are_counted_until_dropped() {
        let b = backend(1);
        let r = InflightRequest::new(&b);
        assert_eq!(b.inflight_requests(), 1);
        drop(r);
        assert_eq!(b.inflight_requests(), 0);
    }
}
