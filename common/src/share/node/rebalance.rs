//! Where shares go: toward the arrivals. Policy only — any grant is safe — so it is kept simple
//! and the same on every member, computed from the same reports.
//!
//! For each backend, the free slots (cap − everything occupied) are split between the members
//! by weight ([`rates::weight`]): `1 + mean arrival rate + the member's own + its unmet
//! demand` — half evenly and half toward the arrivals when the cluster is busy, evenly when it
//! is idle, so an edge that suddenly gets traffic always has some room, and first to the edges
//! that queue or refuse. The rates are the ones each member smoothed itself and reported
//! (rounded), this node's own included, so every member derives the same weights. A member's
//! target is what it occupies plus its part of the free slots; a leaving member's is what it
//! occupies. Members above target by at least a threshold (`cap/32`, or one slot while a member
//! below target has upgrades waiting) give the excess to those below, in one matching every
//! member computes alike (holders and recipients in id order), so two holders do not both fill
//! the same gap.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{Local, Node, Out, Slots, rates};
use crate::share::MemberId;

/// One member's figures for one backend.
#[derive(Clone, Copy, Debug)]
struct Holding {
    id: MemberId,
    occupied: u64,
    share: u64,
    incoming: u64,
    weight: f64,
    /// It has upgrades waiting: a give to it needs no threshold.
    waiting: bool,
    epoch: u32,
}

/// One grant the rebalancing decided: `n` slots of `backend` to member `to`'s ledger `to_epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Give {
    pub(super) backend: SocketAddr,
    pub(super) to: MemberId,
    pub(super) to_epoch: u32,
    pub(super) n: u64,
}

impl Node {
    /// Gives this node's excess over target to the members below target, backend by backend.
    pub(super) fn rebalance(&mut self, locals: &[Local], slots: &mut impl Slots) {
        for g in self.plan(locals) {
            self.give(g, slots);
        }
    }

    /// What [`Self::rebalance`] would give now, from the reports as they are.
    pub(super) fn plan(&self, locals: &[Local]) -> Vec<Give> {
        let (holdings, mean) = self.peer_holdings();
        let mut plan = Vec::new();
        for b in locals {
            let mut hs: Vec<Holding> = holdings.get(&b.address).cloned().unwrap_or_default();
            if hs.is_empty() {
                continue;
            }
            hs.push(self.own_holding(b, mean));
            hs.sort_by_key(|h| h.id);
            let gives = gives_of(self.me, u64::from(b.capacity), salt(b.address), &hs);
            for (to, n) in gives {
                if let Some(h) = hs.iter().find(|h| h.id == to) {
                    let (backend, to_epoch) = (b.address, h.epoch);
                    plan.push(Give {
                        backend,
                        to,
                        to_epoch,
                        n,
                    });
                }
            }
        }
        plan
    }

    fn give(&mut self, g: Give, slots: &mut impl Slots) {
        let Some(acc) = self.accounts.get_mut(&g.backend) else {
            return;
        };
        let down = slots.lower(g.backend, u32::try_from(g.n).unwrap_or(u32::MAX));
        if down == 0 {
            return;
        }
        let to_epoch = g.to_epoch;
        let out = acc.out.entry(g.to).or_insert_with(|| Out {
            to_epoch,
            ..Out::default()
        });
        if out.to_epoch != to_epoch {
            // The recipient's ledger is new: what was in flight to the old one is lost.
            *out = Out {
                to_epoch,
                ..Out::default()
            };
        }
        out.given += u64::from(down);
        self.counters.given += u64::from(down);
    }

    fn own_holding(&self, b: &Local, mean: f64) -> Holding {
        let weight = if self.leaving {
            0.0
        } else {
            rates::weight(self.rates.quantized(), self.demand.queued, mean)
        };
        Holding {
            id: self.me,
            occupied: u64::from(b.live) + u64::from(b.pending),
            share: u64::from(b.share),
            incoming: 0,
            weight,
            waiting: rates::waits(self.demand.queued),
            epoch: 0,
        }
    }

    /// Every live member's holding per backend, with what is in flight to it, and the mean
    /// arrival rate over the live members and this node.
    fn peer_holdings(&self) -> (HashMap<SocketAddr, Vec<Holding>>, f64) {
        let mut incoming: HashMap<(MemberId, SocketAddr), u64> = HashMap::new();
        let mut arrivals = f64::from(self.rates.quantized().arrivals);
        let mut members = 1.0;
        for (_, r) in self.live_reports() {
            arrivals += f64::from(r.rates.arrivals);
            members += 1.0;
            for g in &r.grants {
                if let Some(b) = r.backend(g.backend) {
                    *incoming.entry((g.to, b.address)).or_default() += g.given - g.acked;
                }
            }
        }
        for (address, acc) in &self.accounts {
            for (to, out) in &acc.out {
                *incoming.entry((*to, *address)).or_default() += out.given - out.acked;
            }
        }
        let mean = arrivals / members;
        let mut holdings: HashMap<SocketAddr, Vec<Holding>> = HashMap::new();
        for (id, r) in self.live_reports() {
            let weight = if r.leaving {
                0.0
            } else {
                rates::weight(r.rates, r.queued, mean)
            };
            for b in &r.backends {
                holdings.entry(b.address).or_default().push(Holding {
                    id,
                    occupied: u64::from(b.live) + u64::from(b.pending),
                    share: u64::from(b.share),
                    incoming: incoming.get(&(id, b.address)).copied().unwrap_or(0),
                    weight,
                    waiting: rates::waits(r.queued),
                    epoch: b.epoch,
                });
            }
        }
        (holdings, mean)
    }
}

/// A number every member derives alike from a backend, so that the leftover slots of the
/// split go to a different member on each backend.
fn salt(backend: SocketAddr) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&backend, &mut h);
    std::hash::Hasher::finish(&h)
}

/// What `me` gives to whom of one backend with `cap`, given every member's holding (sorted by
/// id): the part of one matching of excess holders to members below target.
fn gives_of(me: MemberId, cap: u64, salt: u64, hs: &[Holding]) -> Vec<(MemberId, u64)> {
    let targets = targets(cap, salt, hs);
    let below = hs
        .iter()
        .zip(&targets)
        .filter(|(h, t)| **t > h.share + h.incoming);
    let mut deficits: Vec<(MemberId, u64)> = below
        .clone()
        .map(|(h, &t)| (h.id, t - h.share - h.incoming))
        .collect();
    // Small excesses stay put (members seeing reports of different ages would hand them back
    // and forth) — unless someone below target has upgrades waiting: then every spare slot
    // counts, or a cap spread thinly over idle members stays out of reach of the queue.
    let waiting = below.into_iter().any(|(h, _)| h.waiting);
    let threshold = if waiting { 1 } else { (cap / 32).max(1) };
    let mut out = Vec::new();
    let mut next = 0;
    for (h, &t) in hs.iter().zip(&targets) {
        let floor = t.max(h.occupied);
        if h.share < floor + threshold {
            continue;
        }
        let mut excess = h.share - floor;
        while excess > 0 && next < deficits.len() {
            let (to, need) = &mut deficits[next];
            let n = excess.min(*need);
            if h.id == me {
                out.push((*to, n));
            }
            excess -= n;
            *need -= n;
            if *need == 0 {
                next += 1;
            }
        }
    }
    out
}

/// Each member's target: what it occupies plus its part of the free slots by weight (largest
/// remainders first, ties in an order `salt` shuffles per backend, so the parts add up to
/// exactly the free slots and the leftovers spread over the members).
fn targets(cap: u64, salt: u64, hs: &[Holding]) -> Vec<u64> {
    let occupied: u64 = hs.iter().map(|h| h.occupied).sum();
    let free = cap.saturating_sub(occupied);
    let total: f64 = hs.iter().map(|h| h.weight).sum();
    if total <= 0.0 {
        return hs.iter().map(|h| h.occupied).collect();
    }
    let exact: Vec<f64> = hs.iter().map(|h| free as f64 * h.weight / total).collect();
    let mut parts: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut left = free.saturating_sub(parts.iter().sum());
    let mut order: Vec<usize> = (0..hs.len()).filter(|&i| hs[i].weight > 0.0).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        fb.total_cmp(&fa)
            .then((hs[a].id ^ salt).cmp(&(hs[b].id ^ salt)))
    });
    for i in order.into_iter().cycle().take(hs.len() * 2) {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    hs.iter().zip(parts).map(|(h, p)| h.occupied + p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(id: MemberId, occupied: u64, share: u64, weight: f64) -> Holding {
        Holding {
            id,
            occupied,
            share,
            incoming: 0,
            weight,
            waiting: false,
            epoch: 0,
        }
    }

    #[test]
    fn targets_split_the_free_slots_by_weight_and_add_up() {
        let hs = [h(1, 0, 10, 1.0), h(2, 0, 0, 1.0), h(3, 0, 0, 1.0)];
        assert_eq!(targets(10, 0, &hs), [4, 3, 3]);
        assert_eq!(
            targets(10, 2, &hs),
            [3, 4, 3],
            "the salt picks who gets the leftover"
        );
        let hs = [h(1, 4, 10, 1.0), h(2, 0, 0, 3.0)];
        assert_eq!(
            targets(10, 0, &hs),
            [6, 4],
            "1.5 + 4.5: the tie by salted id"
        );
        let leaving = [h(1, 2, 6, 0.0), h(2, 1, 4, 1.0)];
        assert_eq!(targets(10, 0, &leaving), [2, 8]);
        let full = [h(1, 7, 7, 1.0), h(2, 5, 5, 1.0)];
        assert_eq!(
            targets(10, 0, &full),
            [7, 5],
            "never below what is occupied"
        );
    }

    #[test]
    fn one_matching_two_holders_never_fill_the_same_gap() {
        let hs = [h(1, 0, 6, 1.0), h(2, 0, 6, 1.0), h(3, 0, 0, 1.0)];
        // targets 4, 4, 4: holders 1 and 2 have 2 spare each; 3 needs 4.
        assert_eq!(gives_of(1, 12, 0, &hs), [(3, 2)]);
        assert_eq!(gives_of(2, 12, 0, &hs), [(3, 2)]);
        assert_eq!(gives_of(3, 12, 0, &hs), []);
        let mut flying = hs;
        flying[2].incoming = 4;
        assert_eq!(gives_of(1, 12, 0, &flying), [], "what is in flight counts");
    }

    #[test]
    fn small_excesses_stay_put_on_large_caps() {
        let hs = [h(1, 0, 520, 1.0), h(2, 0, 480, 1.0)];
        let none: [(MemberId, u64); 0] = [];
        assert_eq!(
            gives_of(1, 1000, 0, &hs),
            none,
            "20 is below the 1/32 threshold"
        );
        let hs = [h(1, 0, 540, 1.0), h(2, 0, 460, 1.0)];
        assert_eq!(gives_of(1, 1000, 0, &hs), [(2, 40)]);
    }

    #[test]
    fn a_member_that_queues_gets_even_the_small_excesses() {
        // Cap 100 mostly held by member 3; members 1 and 2 are idle with 2 spare each, below
        // the threshold of 3: they keep them while 3 is content, give them when 3 queues.
        let mut hs = [h(1, 0, 2, 1.0), h(2, 0, 2, 1.0), h(3, 96, 96, 50.0)];
        let none: [(MemberId, u64); 0] = [];
        assert_eq!(gives_of(1, 100, 0, &hs), none);
        hs[2].waiting = true;
        hs[2].weight = 5000.0;
        assert_eq!(gives_of(1, 100, 0, &hs), [(3, 2)]);
        assert_eq!(gives_of(2, 100, 0, &hs), [(3, 2)]);
    }
}
