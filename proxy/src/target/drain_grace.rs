//! A drained backend's `drain_grace` running out: its WebSockets get the same 1001 close as on
//! shutdown (`docs/architecture.md`, "A drain that closes WebSockets properly"), so it empties
//! and the drain plan removes it like any empty backend.
//!
//! Only backends that are kept just for their connections are closed: the drain plan keeps a
//! draining backend while it holds more than `remove_below` connections, so when the plan wants
//! `stuck` more replicas than were asked for, the `stuck` draining backends that have drained
//! for `drain_grace` and hold the fewest connections are closed, each once per drain.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidegate_common::LoadSnapshot;
use tokio::time::Instant;
use tracing::info;

use crate::dataplane::Connections;
use crate::dataplane::connections::Cause;

/// Since when each backend drains, and when its connections were asked to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Drained {
    since: Instant,
    closed: Option<Instant>,
}

/// The drain grace of one target's backends.
pub struct DrainGrace {
    grace: Duration,
    connections: Arc<Connections>,
    drained: Mutex<HashMap<SocketAddr, Drained>>,
}

impl DrainGrace {
    /// Closes the connections of backends drained for `grace` through `connections`.
    pub fn new(grace: Duration, connections: Arc<Connections>) -> Self {
        Self {
            grace,
            connections,
            drained: Mutex::default(),
        }
    }

    /// Notes which backends drain at `now` (a backend no longer draining is forgotten: its
    /// grace starts again if it is drained again), then asks the connections of the overdue
    /// ones to close. Returns the backends asked now.
    pub fn apply(
        &self,
        draining: impl IntoIterator<Item = SocketAddr>,
        load: &LoadSnapshot,
        stuck: usize,
        now: Instant,
    ) -> Vec<SocketAddr> {
        let mut drained = self.drained.lock().unwrap_or_else(|p| p.into_inner());
        let draining: HashMap<SocketAddr, Drained> = draining
            .into_iter()
            .map(|a| {
                let fresh = Drained {
                    since: now,
                    closed: None,
                };
                (a, drained.get(&a).copied().unwrap_or(fresh))
            })
            .collect();
        *drained = draining;
        let due = overdue(&drained, load, self.grace, stuck, now);
        for address in &due {
            let asked = self
                .connections
                .close_backend(*address, Cause::BackendDrained);
            info!(backend = %address, websockets = asked, "drain grace over: closing with 1001");
            if let Some(d) = drained.get_mut(address) {
                d.closed = Some(now);
            }
        }
        due
    }

    /// When the connections of `address` were asked to close, in its current drain.
    pub fn closed_at(&self, address: SocketAddr) -> Option<Instant> {
        let drained = self.drained.lock().unwrap_or_else(|p| p.into_inner());
        drained.get(&address).and_then(|d| d.closed)
    }
}

/// The backends to close now: drained for `grace`, not closed yet, holding connections, the
/// fewest first, as many as are `stuck` (beyond those already closed).
fn overdue(
    drained: &HashMap<SocketAddr, Drained>,
    load: &LoadSnapshot,
    grace: Duration,
    stuck: usize,
    now: Instant,
) -> Vec<SocketAddr> {
    let held = |a: &SocketAddr| {
        load.backends
            .iter()
            .find(|b| b.address == *a)
            .map_or(0, |b| b.live + b.pending)
    };
    let closing = drained.values().filter(|d| d.closed.is_some()).count();
    let mut due: Vec<(u32, SocketAddr)> = drained
        .iter()
        .filter(|(a, d)| d.closed.is_none() && now >= d.since + grace && held(a) > 0)
        .map(|(a, _)| (held(a), *a))
        .collect();
    due.sort_unstable();
    due.into_iter()
        .take(stuck.saturating_sub(closing))
        .map(|(_, a)| a)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidegate_common::{BackendSpec, BackendState, BackendTable};

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 9000))
    }

    /// A table with backends 1..=4 holding 5, 2, 0 and 7 reserved connections.
    fn load() -> (BackendTable, Vec<tidegate_common::Reservation>) {
        let table = BackendTable::new();
        let specs = (1..=4).map(|i| BackendSpec {
            address: addr(i),
            capacity: 10,
            state: BackendState::Ready,
        });
        table.set_backends(specs);
        let mut held = Vec::new();
        for (i, n) in [(1, 5), (2, 2), (4, 7)] {
            let others: Vec<_> = (1..=4).filter(|j| *j != i).map(addr).collect();
            for _ in 0..n {
                held.push(
                    table
                        .try_reserve(std::time::Instant::now(), &others)
                        .unwrap(),
                );
            }
        }
        (table, held)
    }

    #[test]
    fn only_stuck_backends_past_their_grace_are_closed_fewest_first_and_once() {
        let (table, _held) = load();
        let load = table.load_snapshot(std::time::Instant::now());
        let grace = DrainGrace::new(Duration::from_secs(30), Arc::default());
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        // (at, draining, stuck, closed now)
        let table = [
            (0, vec![1, 2, 3], 2, vec![]),
            (29, vec![1, 2, 3, 4], 3, vec![]),
            (30, vec![1, 2, 3, 4], 2, vec![2, 1]), // 3 is empty: the plan removes it
            (31, vec![1, 2, 3, 4], 2, vec![]),     // each once
            (40, vec![1, 2, 3, 4], 3, vec![]),     // 4 drains since 29
            (59, vec![1, 2, 3, 4], 3, vec![4]),
            (60, vec![2], 1, vec![]),    // 1 undrained, 3 and 4 gone
            (61, vec![1, 2], 2, vec![]), // 1's grace starts again
            (91, vec![1, 2], 2, vec![1]),
        ];
        for (at, draining, stuck, want) in table {
            let now = t0 + s * at;
            let got = grace.apply(draining.into_iter().map(addr), &load, stuck, now);
            let want: Vec<_> = want.into_iter().map(addr).collect();
            assert_eq!(got, want, "at {at} s");
        }
        assert_eq!(grace.closed_at(addr(1)), Some(t0 + s * 91));
        assert_eq!(grace.closed_at(addr(3)), None);
    }
}
