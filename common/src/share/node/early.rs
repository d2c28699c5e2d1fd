//! Ticks brought forward, so that an upgrade waiting for a share waits about one round trip
//! between replicas instead of up to two sync intervals (`docs/architecture.md`, "One edge
//! across replicas").
//!
//! An upgrade that finds this replica's shares used up waits in the queue while a peer's grant
//! comes. Two ticks are brought forward for it:
//!
//! - the waiting replica's own, when its queue has grown since its last report and a peer
//!   reported spare share (or has slots from this node on the way) — its report tells every
//!   peer of the queue at once;
//! - a peer's, when a report arrives from a replica with a queue and this node's rebalancing
//!   would give it something now — its report carries the grant.
//!
//! Either is an ordinary [`Node::tick`], safe whenever it runs. None runs sooner than
//! [`EARLY_GAP`] after the previous tick, and none is wanted where nothing can move (a full
//! cluster, or no spare share anywhere), so a queue that keeps growing while the whole cluster
//! is full costs no extra exchange.

use std::time::{Duration, Instant};

use super::{Local, Node};
use crate::share::MemberId;
use crate::share::report::Report;

/// The least time between a tick brought forward and the tick before it.
pub const EARLY_GAP: Duration = Duration::from_millis(20);

impl Node {
    /// This replica now has `queued` upgrades waiting for a slot: if that is more than its
    /// last report said and a peer has spare share, the next tick is wanted early
    /// ([`Self::early_tick`]). Cheap enough to call on every upgrade that joins the queue.
    pub fn queue_grew(&mut self, queued: u32) {
        if self.early || self.leaving || queued <= self.demand.queued {
            return;
        }
        let live = self.members.values().filter(|m| m.gone.is_none());
        // A member this node has just given slots to may not have reported them yet.
        let mut giving = self.accounts.values().flat_map(|a| a.out.values());
        self.early = live.into_iter().any(|m| m.spare) || giving.any(|o| o.given > o.acked);
    }

    /// When the driver should run a tick brought forward, as of `now`: `None` if none is
    /// wanted, else the earliest time allowed (`now` if that is already past).
    pub fn early_tick(&self, now: Instant) -> Option<Instant> {
        let allowed = |t: Instant| (t + EARLY_GAP).max(now);
        self.early.then(|| self.last_tick.map_or(now, allowed))
    }

    /// A fresh report from `from`, which queues, has been taken in: wants the next tick early
    /// if this node would now give it something.
    pub(super) fn want_early_for(&mut self, from: MemberId, locals: &[Local]) {
        if self.early || self.leaving {
            return;
        }
        self.early = self.plan(locals).iter().any(|g| g.to == from);
    }
}

/// Whether a report shows share this member could give to one that queues: above what it
/// occupies on some backend.
pub(super) fn has_spare(report: &Report) -> bool {
    let occupied =
        |b: &crate::share::report::BackendEntry| u64::from(b.live) + u64::from(b.pending);
    report
        .backends
        .iter()
        .any(|b| u64::from(b.share) > occupied(b))
}
