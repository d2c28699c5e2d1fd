//! Creating the slots nobody holds, by exactly one member — the claimer — and only when it can
//! bound what every other member holds.
//!
//! Why the bound holds: every member's share changes only by its own grants (down first) and
//! receipts. Summing, over the live members, each one's share as of its report plus, for each
//! pair, what the granter had given as of its report minus what the recipient had received as
//! of its report, gives exactly the slots the live members hold now plus those in flight
//! between them — *provided* no member outside the set holds or sends any, and each
//! recipient's report is at least as new as the one its granter learned acknowledgements from.
//! The conditions below are those provisos; clamping a pair's term at zero only overestimates.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use super::{Contact, Local, Node, Slots};
use crate::share::MemberId;
use crate::share::report::Report;

/// Ticks the sum must stay above the cap before the claimer destroys the excess.
const DESTROY_AFTER: u8 = 5;

impl Node {
    /// Whether this node is the one that may create slots now: no contact unidentified (for
    /// less than `peer_timeout`), a report from every live member, and every live member
    /// that is not leaving has a larger id.
    pub(super) fn is_claimer(&self, now: Instant) -> bool {
        let timeout = self.settings.peer_timeout;
        let unidentified = self
            .contacts
            .values()
            .any(|c| matches!(c, Contact::Unknown { since } if now < *since + timeout));
        if unidentified {
            return false;
        }
        self.members
            .iter()
            .filter(|(_, m)| m.gone.is_none())
            .all(|(id, m)| {
                m.report
                    .as_ref()
                    .is_some_and(|r| *id > self.me || r.leaving)
            })
    }

    /// Whether the live members' reports bound every slot: none lists a live member we do not
    /// know (or lists us as dropped), and each is at least as new as what the others saw of it.
    pub(super) fn bounded(&self) -> bool {
        let live: BTreeMap<MemberId, &Report> = self.live_reports().collect();
        live.values().all(|r| {
            r.view.iter().all(|v| {
                if v.member == self.me {
                    return v.up;
                }
                match live.get(&v.member) {
                    Some(other) => other.seq >= v.seen,
                    None => !v.up,
                }
            })
        })
    }

    /// Claims what nobody holds, or destroys a lasting excess, on every backend of the table.
    pub(super) fn claim(&mut self, now: Instant, locals: &[Local], slots: &mut impl Slots) {
        if !self.is_claimer(now) || !self.bounded() {
            return;
        }
        let held = self.held_by_others();
        for b in locals {
            let total = held.get(&b.address).copied().unwrap_or(0) + u64::from(b.share);
            let cap = u64::from(b.capacity);
            let Some(acc) = self.accounts.get_mut(&b.address) else {
                continue;
            };
            if total <= cap {
                acc.over = None;
                let by = u32::try_from(cap - total).unwrap_or(u32::MAX);
                if by > 0 {
                    slots.raise(b.address, by);
                    self.counters.claimed += u64::from(by);
                }
                continue;
            }
            let (ticks, least) = acc.over.unwrap_or((0, u64::MAX));
            let (ticks, least) = (ticks + 1, least.min(total - cap));
            if ticks < DESTROY_AFTER {
                acc.over = Some((ticks, least));
                continue;
            }
            acc.over = None;
            let down = slots.lower(b.address, u32::try_from(least).unwrap_or(u32::MAX));
            self.counters.destroyed += u64::from(down);
        }
    }

    /// Per backend: the shares the other live members reported, plus every slot in flight
    /// between live members (this node included).
    fn held_by_others(&self) -> HashMap<SocketAddr, u64> {
        let live: BTreeMap<MemberId, &Report> = self.live_reports().collect();
        let mut ids: HashSet<MemberId> = live.keys().copied().collect();
        ids.insert(self.me);
        let mut held: HashMap<SocketAddr, u64> = HashMap::new();
        for r in live.values() {
            for b in &r.backends {
                *held.entry(b.address).or_default() += u64::from(b.share);
            }
            for g in r.grants.iter().filter(|g| ids.contains(&g.to)) {
                let Some(b) = r.backend(g.backend) else {
                    continue;
                };
                let received = self.received_by(g.to, r.from, b.address, b.epoch, &live);
                let flying = g.given.saturating_sub(received.max(g.acked));
                *held.entry(b.address).or_default() += flying;
            }
        }
        for (address, acc) in &self.accounts {
            for (to, out) in acc.out.iter().filter(|(to, _)| ids.contains(to)) {
                let received = self.received_by(*to, self.me, *address, acc.epoch, &live);
                let flying = out.given.saturating_sub(received.max(out.acked));
                *held.entry(*address).or_default() += flying;
            }
        }
        held
    }

    /// What `to` has received from `from`'s ledger `epoch` of `backend`: ours exactly, another
    /// member's as its report says (0 if it does not say).
    fn received_by(
        &self,
        to: MemberId,
        from: MemberId,
        backend: SocketAddr,
        epoch: u32,
        live: &BTreeMap<MemberId, &Report>,
    ) -> u64 {
        if to == self.me {
            let acc = self.accounts.get(&backend);
            let r = acc.and_then(|a| a.received.get(&(from, epoch)));
            return r.copied().unwrap_or(0);
        }
        let Some(r) = live.get(&to) else { return 0 };
        r.acks
            .iter()
            .filter(|a| a.from == from && a.from_epoch == epoch)
            .find(|a| r.backend(a.backend).is_some_and(|b| b.address == backend))
            .map_or(0, |a| a.received)
    }
}
