//! One replica's side of the exchange, as a state machine with time passed in: who the members
//! are, what each last reported, and the ledgers that move shares (see the parent module for
//! the protocol and why it is safe).
//!
//! The driver calls [`Node::receive`] for every report that arrives and [`Node::tick`] once per
//! sync interval, which returns the report to push to every contact. Shares themselves live in
//! the backend table, reached through [`Slots`], so that lowering a share is atomic with
//! admissions.

mod claim;
mod early;
mod rates;
mod rebalance;
mod view;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::table::backend::BackendState;

use super::MemberId;
use super::report::{AckEntry, BackendEntry, GrantEntry, Report, ViewEntry};

pub use early::EARLY_GAP;
pub use view::{Peer, PeerCounts};

/// Default time a silent member keeps its last report before it is dropped.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// The node's constants.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// A member not heard from for this long is dropped and its share claimed.
    pub peer_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            peer_timeout: DEFAULT_PEER_TIMEOUT,
        }
    }
}

/// One backend of the local table, as the node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Local {
    /// The backend.
    pub address: SocketAddr,
    /// Its cap here.
    pub capacity: u32,
    /// Its state here.
    pub state: BackendState,
    /// Live connections here.
    pub live: u32,
    /// Pending upgrades here.
    pub pending: u32,
    /// This replica's share.
    pub share: u32,
}

/// The local backend table's shares: where the node's decisions take effect.
pub trait Slots {
    /// Every backend in the table now.
    fn backends(&self) -> Vec<Local>;
    /// Adds `by` to the share of `backend` (no-op if it left the table).
    fn raise(&mut self, backend: SocketAddr, by: u32);
    /// Takes up to `by` off the share of `backend`, never below what it occupies (atomically
    /// with admissions); returns how much came off.
    fn lower(&mut self, backend: SocketAddr, by: u32) -> u32;
}

/// This replica's demand and role, for its report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Demand {
    /// Upgrades waiting in the queue now.
    pub queued: u32,
    /// Upgrades refused since start.
    pub refused_total: u64,
    /// Upgrades routed or refused since start.
    pub attempts_total: u64,
    /// Whether this replica decides scaling (its drain marks count).
    pub leader: bool,
    /// Whether it has a backend source of its own.
    pub has_source: bool,
}

/// What happened to a report handed to [`Node::receive`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Processed.
    Fresh,
    /// Older than one already processed (reordered or duplicated): ignored.
    Stale,
    /// From a member this node has dropped: ignored. The sender should start again.
    Dropped,
    /// From this node itself (a contact that is this replica's own address).
    Myself,
}

/// Where to push reports, and what is known of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contact {
    /// Not heard from since it became a contact at `since`.
    Unknown { since: Instant },
    /// Answers as this member.
    Member(MemberId),
    /// This replica's own address.
    Myself,
}

#[derive(Clone, Debug)]
struct Member {
    address: Option<SocketAddr>,
    heard: Instant,
    /// `Some`: dropped at that time; nothing it sends is accepted.
    gone: Option<Instant>,
    report: Option<Report>,
    /// Its newest report shows share it could give ([`early::has_spare`]).
    spare: bool,
}

#[derive(Clone, Debug, Default)]
struct Out {
    to_epoch: u32,
    given: u64,
    acked: u64,
}

#[derive(Clone, Debug)]
struct Account {
    epoch: u32,
    out: BTreeMap<MemberId, Out>,
    /// Cumulative received per (granter, granter's epoch).
    received: HashMap<(MemberId, u32), u64>,
    /// The claimer's count of consecutive ticks the sum was above the cap, and the least
    /// excess seen over them (a grant in flight can be counted twice for a tick or two: only a
    /// lasting excess is destroyed).
    over: Option<(u8, u64)>,
}

/// Counters of what the node did, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Slots created by claims.
    pub claimed: u64,
    /// Slots destroyed (the sum was above the cap).
    pub destroyed: u64,
    /// Slots given to other members.
    pub given: u64,
    /// Slots received from other members.
    pub received: u64,
    /// Times this node was dropped by the others and started again.
    pub restarts: u64,
}

/// One replica's state machine.
#[derive(Debug)]
pub struct Node {
    me: MemberId,
    seq: u64,
    settings: Settings,
    rng: fastrand::Rng,
    admin_port: u16,
    contacts: BTreeMap<SocketAddr, Contact>,
    members: BTreeMap<MemberId, Member>,
    accounts: HashMap<SocketAddr, Account>,
    leaving: bool,
    expelled: bool,
    demand: Demand,
    rates: rates::Smoothed,
    counters: Counters,
    /// A tick brought forward is wanted ([`early`]).
    early: bool,
    last_tick: Option<Instant>,
}

impl Node {
    /// A node drawing its incarnation (and ledger epochs) from `seed`; it tells peers to push
    /// back to `admin_port`.
    pub fn new(settings: Settings, seed: u64, admin_port: u16) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        Self {
            me: rng.u64(1..),
            seq: 0,
            settings,
            rng,
            admin_port,
            contacts: BTreeMap::new(),
            members: BTreeMap::new(),
            accounts: HashMap::new(),
            leaving: false,
            expelled: false,
            demand: Demand::default(),
            rates: rates::Smoothed::default(),
            counters: Counters::default(),
            early: false,
            last_tick: None,
        }
    }

    /// This node's incarnation.
    pub fn me(&self) -> MemberId {
        self.me
    }

    /// What the node has done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Replaces the contact list (static peers, or the peers Service's endpoints). Contacts
    /// already known keep what is known of them; new ones are unknown until they answer.
    pub fn set_contacts(&mut self, now: Instant, addresses: impl IntoIterator<Item = SocketAddr>) {
        let old = std::mem::take(&mut self.contacts);
        for a in addresses {
            let c = old
                .get(&a)
                .copied()
                .unwrap_or(Contact::Unknown { since: now });
            self.contacts.insert(a, c);
        }
        // Members that pushed to us stay reachable at their inferred address.
        for (&a, c) in &old {
            if let Contact::Member(id) = c
                && self.members.get(id).is_some_and(|m| m.gone.is_none())
            {
                self.contacts.entry(a).or_insert(*c);
            }
        }
    }

    /// The addresses to push reports to (every contact but this replica's own).
    pub fn contacts(&self) -> Vec<SocketAddr> {
        let mine = |c: &Contact| *c == Contact::Myself;
        let iter = self.contacts.iter().filter(|(_, c)| !mine(c));
        iter.map(|(a, _)| *a).collect()
    }

    /// A push to `address` was answered by `member`: learn who is there.
    pub fn answered(&mut self, now: Instant, address: SocketAddr, member: MemberId) {
        if member == self.me {
            self.contacts.insert(address, Contact::Myself);
            return;
        }
        self.map_address(now, address, member);
    }

    /// A peer answered that it has dropped this node: start again as a new member at the next
    /// tick (as when a report lists this node as dropped).
    pub fn dropped(&mut self) {
        self.expelled = true;
    }

    /// The node is shutting down: it claims nothing more and gives back all it can.
    pub fn leave(&mut self) {
        self.leaving = true;
    }

    /// Whether a leaving node holds no share and no grant in flight: it may stop.
    pub fn left(&self, slots: &impl Slots) -> bool {
        let grants = self.accounts.values().flat_map(|a| a.out.values());
        self.leaving
            && slots.backends().iter().all(|b| b.share == 0)
            && grants.into_iter().all(|o| o.acked >= o.given)
    }

    /// Takes in one report. Grants addressed to this node raise its shares in `slots` at once.
    pub fn receive(
        &mut self,
        now: Instant,
        report: Report,
        source: Option<SocketAddr>,
        slots: &mut impl Slots,
    ) -> Received {
        if report.from == self.me {
            return Received::Myself;
        }
        let from = report.from;
        let member = self.members.entry(from).or_insert_with(|| Member {
            address: None,
            heard: now,
            gone: None,
            report: None,
            spare: false,
        });
        if member.gone.is_some() {
            return Received::Dropped;
        }
        if member.report.as_ref().is_some_and(|r| r.seq >= report.seq) {
            return Received::Stale;
        }
        member.heard = now;
        if let Some(address) = source {
            member.address = Some(address);
            self.map_address(now, address, from);
        }
        self.take_grants(&report, slots);
        self.take_acks(&report);
        self.take_view(now, &report);
        if report.leaving && holds_nothing(&report) {
            // It gave everything back and closed its connections: gone, no need to wait.
            self.drop_member(now, from);
        }
        let spare = early::has_spare(&report);
        let queued = report.queued > 0;
        if let Some(m) = self.members.get_mut(&from) {
            m.spare = spare;
            m.report = Some(report);
        }
        if queued {
            self.want_early_for(from, &slots.backends());
        }
        Received::Fresh
    }

    /// One sync interval: drop silent members, follow the table, claim, rebalance, and return
    /// the report to push.
    pub fn tick(&mut self, now: Instant, slots: &mut impl Slots, demand: Demand) -> Report {
        self.demand = demand;
        self.early = false;
        self.last_tick = Some(now);
        self.rates
            .update(now, demand.attempts_total, demand.refused_total);
        if self.expelled {
            self.restart(slots);
        }
        self.expire(now);
        let locals = slots.backends();
        self.follow_table(&locals);
        if !self.leaving {
            self.claim(now, &locals, slots);
        }
        self.rebalance(&slots.backends(), slots);
        self.report(&slots.backends())
    }

    fn map_address(&mut self, now: Instant, address: SocketAddr, member: MemberId) {
        let previous = self.contacts.insert(address, Contact::Member(member));
        if let Some(Contact::Member(old)) = previous
            && old != member
        {
            // A new incarnation at the same address: the old process is gone.
            self.drop_member(now, old);
        }
        let entry = self.members.entry(member).or_insert_with(|| Member {
            address: None,
            heard: now,
            gone: None,
            report: None,
            spare: false,
        });
        entry.address = Some(address);
    }

    fn take_grants(&mut self, report: &Report, slots: &mut impl Slots) {
        for g in report.grants.iter().filter(|g| g.to == self.me) {
            let Some(b) = report.backend(g.backend) else {
                continue;
            };
            let Some(acc) = self.accounts.get_mut(&b.address) else {
                continue; // not in our table yet: the granter keeps listing it
            };
            if g.to_epoch != acc.epoch {
                continue; // for a ledger of ours that no longer exists: lost, never counted
            }
            let seen = acc.received.entry((report.from, b.epoch)).or_insert(0);
            if g.given > *seen {
                let by = u32::try_from(g.given - *seen).unwrap_or(u32::MAX);
                *seen = g.given;
                slots.raise(b.address, by);
                self.counters.received += u64::from(by);
            }
        }
    }

    fn take_acks(&mut self, report: &Report) {
        for a in report.acks.iter().filter(|a| a.from == self.me) {
            let Some(b) = report.backend(a.backend) else {
                continue;
            };
            let Some(acc) = self.accounts.get_mut(&b.address) else {
                continue;
            };
            if a.from_epoch != acc.epoch {
                continue;
            }
            if let Some(out) = acc.out.get_mut(&report.from)
                && out.to_epoch == b.epoch
            {
                out.acked = out.acked.max(a.received.min(out.given));
            }
        }
    }

    fn take_view(&mut self, now: Instant, report: &Report) {
        for v in &report.view {
            if v.member == self.me {
                if !v.up {
                    self.expelled = true;
                }
                continue;
            }
            if v.up && !self.members.contains_key(&v.member) {
                // Known to a member but not to us: it blocks claims until heard or timed out.
                self.members.insert(
                    v.member,
                    Member {
                        address: None,
                        heard: now,
                        gone: None,
                        report: None,
                        spare: false,
                    },
                );
            }
        }
    }

    fn drop_member(&mut self, now: Instant, id: MemberId) {
        if let Some(m) = self.members.get_mut(&id)
            && m.gone.is_none()
        {
            m.gone = Some(now);
            // Shares in flight to it are lost with it; never re-sent to anyone.
            for acc in self.accounts.values_mut() {
                acc.out.remove(&id);
                acc.received.retain(|(from, _), _| *from != id);
            }
        }
    }

    /// Drops members silent for `peer_timeout`; forgets dropped ones after ten times that.
    fn expire(&mut self, now: Instant) {
        let timeout = self.settings.peer_timeout;
        let silent: Vec<MemberId> = self
            .members
            .iter()
            .filter(|(_, m)| m.gone.is_none() && now >= m.heard + timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            self.drop_member(now, id);
        }
        let forget = timeout * 10;
        self.members
            .retain(|_, m| m.gone.is_none_or(|t| now < t + forget));
        let members = &self.members;
        self.contacts.retain(|_, c| match c {
            Contact::Member(id) => members.contains_key(id),
            _ => true,
        });
    }

    /// We were dropped by the others: start again as a new member holding only what it
    /// occupies (the surplus drains as connections close).
    fn restart(&mut self, slots: &mut impl Slots) {
        for b in slots.backends() {
            slots.lower(b.address, u32::MAX);
        }
        self.me = self.rng.u64(1..);
        self.seq = 0;
        self.accounts.clear();
        self.expelled = false;
        self.counters.restarts += 1;
    }

    /// Opens a ledger for every new backend of the table and closes those of gone ones.
    fn follow_table(&mut self, locals: &[Local]) {
        let present: std::collections::HashSet<SocketAddr> =
            locals.iter().map(|b| b.address).collect();
        self.accounts.retain(|a, _| present.contains(a));
        for b in locals {
            if !self.accounts.contains_key(&b.address) {
                let epoch = self.rng.u32(..);
                let account = Account {
                    epoch,
                    out: BTreeMap::new(),
                    received: HashMap::new(),
                    over: None,
                };
                self.accounts.insert(b.address, account);
            }
        }
    }

    fn report(&mut self, locals: &[Local]) -> Report {
        self.seq += 1;
        let index: HashMap<SocketAddr, u32> =
            (0u32..).zip(locals).map(|(i, b)| (b.address, i)).collect();
        let backends = locals
            .iter()
            .map(|b| BackendEntry {
                address: b.address,
                capacity: b.capacity,
                state: b.state,
                epoch: self.accounts.get(&b.address).map_or(0, |a| a.epoch),
                live: b.live,
                pending: b.pending,
                share: b.share,
            })
            .collect();
        Report {
            from: self.me,
            seq: self.seq,
            admin_port: self.admin_port,
            leaving: self.leaving,
            leader: self.demand.leader,
            has_source: self.demand.has_source,
            queued: self.demand.queued,
            refused_total: self.demand.refused_total,
            rates: self.rates.quantized(),
            view: self.view_entries(),
            backends,
            grants: self.grant_entries(&index),
            acks: self.ack_entries(&index),
        }
    }

    fn view_entries(&self) -> Vec<ViewEntry> {
        let entries = self.members.iter().map(|(id, m)| ViewEntry {
            member: *id,
            seen: m.report.as_ref().map_or(0, |r| r.seq),
            up: m.gone.is_none(),
        });
        entries.collect()
    }

    fn grant_entries(&self, index: &HashMap<SocketAddr, u32>) -> Vec<GrantEntry> {
        let mut grants = Vec::new();
        for (address, acc) in &self.accounts {
            let Some(&backend) = index.get(address) else {
                continue;
            };
            for (to, out) in acc.out.iter().filter(|(_, o)| o.acked < o.given) {
                grants.push(GrantEntry {
                    to: *to,
                    backend,
                    to_epoch: out.to_epoch,
                    given: out.given,
                    acked: out.acked,
                });
            }
        }
        grants
    }

    /// Acknowledgements of the grants each live member still lists as unacknowledged to us.
    fn ack_entries(&self, index: &HashMap<SocketAddr, u32>) -> Vec<AckEntry> {
        let mut acks = Vec::new();
        for (from, m) in self.live_reports() {
            for g in m.grants.iter().filter(|g| g.to == self.me) {
                let Some(b) = m.backend(g.backend) else {
                    continue;
                };
                let (Some(&backend), Some(acc)) =
                    (index.get(&b.address), self.accounts.get(&b.address))
                else {
                    continue;
                };
                if let Some(&received) = acc.received.get(&(from, b.epoch)) {
                    acks.push(AckEntry {
                        from,
                        backend,
                        from_epoch: b.epoch,
                        received,
                    });
                }
            }
        }
        acks
    }

    /// Members not dropped, with their newest report.
    fn live_reports(&self) -> impl Iterator<Item = (MemberId, &Report)> {
        self.members
            .iter()
            .filter(|(_, m)| m.gone.is_none())
            .filter_map(|(id, m)| Some((*id, m.report.as_ref()?)))
    }
}

/// A report whose sender holds no share and has no grant in flight.
fn holds_nothing(r: &Report) -> bool {
    r.backends.iter().all(|b| b.share == 0) && r.grants.is_empty()
}

#[cfg(test)]
mod tests;
