//! Arrivals at a simulated replica, and its queue: an attempt it has no room for waits (as the
//! proxy's `queue_timeout` and `queue_max` say) until a share given to it or a slot freed
//! serves it, or is refused when its wait runs out.

use std::time::Duration;

use super::{Cluster, Replica};
use crate::table::queue::QueuePolicy;

impl Cluster {
    /// Every replica queues attempts it has no room for as the proxy does (`queue_timeout`,
    /// `queue_max`); the default refuses them at once.
    pub fn set_queue(&mut self, policy: QueuePolicy) {
        self.queue_policy = policy;
    }

    /// `n` connection attempts at replica `index`; returns how many were admitted at once
    /// (the others wait in its queue, if it has one, or are refused).
    pub fn arrive(&mut self, index: usize, n: u32) -> u32 {
        let peers = self.occupied_elsewhere(index);
        let policy = self.queue_policy;
        let deadline = self.now + policy.timeout;
        let Some(Some(r)) = self.replicas.get_mut(index) else {
            return 0;
        };
        let (mut admitted, mut refused) = (0, 0);
        for _ in 0..n {
            r.attempts += 1;
            self.stats.attempts += 1;
            if r.waiting.is_empty()
                && let Some(b) = r.table.admit(&peers)
            {
                r.connections.push(b);
                admitted += 1;
            } else if !policy.timeout.is_zero() && r.waiting.len() < policy.max_waiting {
                r.waiting.push_back(deadline);
                self.stats.queued += 1;
            } else {
                refused += 1;
            }
        }
        r.admitted += u64::from(admitted);
        let queued = u32::try_from(r.waiting.len()).unwrap_or(u32::MAX);
        r.node.queue_grew(queued);
        self.refuse(index, refused);
        self.check();
        admitted
    }

    /// Counts `n` attempts refused at replica `index` now, and those refused while the
    /// cluster had room this replica's share did not reach.
    pub(super) fn refuse(&mut self, index: usize, n: u64) {
        if n == 0 {
            return;
        }
        let free = self.free_somewhere(index);
        if let Some(Some(r)) = self.replicas.get_mut(index) {
            r.refused += n;
        }
        self.stats.refused += n;
        if free > 0 {
            self.stats.refused_with_room += n;
        }
    }

    /// Admits what waits in replica `index`'s queue while it has room, oldest first.
    pub(super) fn serve(&mut self, index: usize) {
        let Some(Some(r)) = self.replicas.get(index) else {
            return;
        };
        if r.waiting.is_empty() {
            return;
        }
        let peers = self.occupied_elsewhere(index);
        let (now, timeout) = (self.now, self.queue_policy.timeout);
        let Some(Some(r)) = self.replicas.get_mut(index) else {
            return;
        };
        while let Some(&deadline) = r.waiting.front() {
            let Some(b) = r.table.admit(&peers) else {
                break;
            };
            r.waiting.pop_front();
            r.connections.push(b);
            r.admitted += 1;
            self.stats
                .waits
                .push(now.saturating_sub(deadline - timeout));
        }
    }

    /// Refuses what has waited in replica `index`'s queue until its deadline.
    pub(super) fn expire(&mut self, index: usize) {
        let now = self.now;
        let Some(Some(r)) = self.replicas.get_mut(index) else {
            return;
        };
        let mut n = 0;
        while r.waiting.front().is_some_and(|&d| d <= now) {
            r.waiting.pop_front();
            n += 1;
        }
        self.refuse(index, n);
    }

    /// The next deadline of an attempt waiting in any replica's queue.
    pub(super) fn next_deadline(&self) -> Option<(Duration, usize)> {
        let live = self.replicas.iter().enumerate();
        let front = |r: &Replica| r.waiting.front().copied();
        live.filter_map(|(i, r)| Some((front(r.as_ref()?)?, i)))
            .min()
    }
}
