//! One simulated replica's backend table: caps, shares and occupied counts, admitting as the
//! real table does (below `min(cap, share)`, least occupied first).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::share::node::{Local, Slots};
use crate::table::backend::BackendState;

/// One replica's backend table: caps, shares and occupied counts (every connection is live).
#[derive(Clone, Debug, Default)]
pub struct Table {
    backends: BTreeMap<SocketAddr, Slot>,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    capacity: u32,
    share: u32,
    occupied: u32,
}

impl Table {
    /// A table of `backends` with `capacity` each and no share.
    pub fn new(backends: &[SocketAddr], capacity: u32) -> Self {
        let slot = Slot {
            capacity,
            share: 0,
            occupied: 0,
        };
        Self {
            backends: backends.iter().map(|&a| (a, slot)).collect(),
        }
    }

    /// Admits one connection on the least-occupied backend with room under `min(cap, share)`
    /// (`peers` adds the other replicas' counts, as routing does); returns it, or `None`.
    pub fn admit(&mut self, peers: &BTreeMap<SocketAddr, u32>) -> Option<SocketAddr> {
        let room = |s: &Slot| s.occupied < s.capacity.min(s.share);
        let weight = |a: &SocketAddr, s: &Slot| s.occupied + peers.get(a).copied().unwrap_or(0);
        let (&address, _) = self
            .backends
            .iter()
            .filter(|(_, s)| room(s))
            .min_by_key(|(a, s)| weight(a, s))?;
        if let Some(s) = self.backends.get_mut(&address) {
            s.occupied += 1;
        }
        Some(address)
    }

    /// Closes one connection on `backend`.
    pub fn release(&mut self, backend: SocketAddr) {
        if let Some(s) = self.backends.get_mut(&backend) {
            s.occupied = s.occupied.saturating_sub(1);
        }
    }

    /// Occupied slots on `backend`.
    pub fn occupied(&self, backend: SocketAddr) -> u32 {
        self.backends.get(&backend).map_or(0, |s| s.occupied)
    }

    /// This replica's share of `backend`.
    pub fn share(&self, backend: SocketAddr) -> u32 {
        self.backends.get(&backend).map_or(0, |s| s.share)
    }
}

impl Slots for Table {
    fn backends(&self) -> Vec<Local> {
        let local = |(&address, s): (&SocketAddr, &Slot)| Local {
            address,
            capacity: s.capacity,
            state: BackendState::Ready,
            live: s.occupied,
            pending: 0,
            share: s.share,
        };
        self.backends.iter().map(local).collect()
    }

    fn raise(&mut self, backend: SocketAddr, by: u32) {
        if let Some(s) = self.backends.get_mut(&backend) {
            s.share = s.share.saturating_add(by);
        }
    }

    fn lower(&mut self, backend: SocketAddr, by: u32) -> u32 {
        let Some(s) = self.backends.get_mut(&backend) else {
            return 0;
        };
        let to = s.share.saturating_sub(by).max(s.occupied.min(s.share));
        let down = s.share - to;
        s.share = to;
        down
    }
}
