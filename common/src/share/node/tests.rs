//! The share state machine, case by case, with reports carried by hand (so each case decides
//! what is lost, late or duplicated) and time passed in.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::share::sim::Table;

const CAP: u32 = 10;
const TIMEOUT: Duration = Duration::from_secs(5);

fn backend() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 9000))
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9100 + i as u16))
}

/// Replicas 0..n with every other one as a contact, identified (as after a first push).
struct Bench {
    t0: Instant,
    now: Duration,
    nodes: Vec<(Node, Table)>,
}

impl Bench {
    fn new(n: usize) -> Self {
        let t0 = Instant::now();
        let mut nodes: Vec<(Node, Table)> = (0..n)
            .map(|i| {
                let settings = Settings {
                    peer_timeout: TIMEOUT,
                };
                let node = Node::new(settings, 1000 + i as u64, 9100 + i as u16);
                (node, Table::new(&[backend()], CAP))
            })
            .collect();
        // Sort so that node 0 has the smallest id: it is the claimer.
        nodes.sort_by_key(|(n, _)| n.me());
        let ids: Vec<MemberId> = nodes.iter().map(|(n, _)| n.me()).collect();
        for (i, (node, _)) in nodes.iter_mut().enumerate() {
            node.set_contacts(t0, (0..n).filter(|&j| j != i).map(addr));
            for j in (0..n).filter(|&j| j != i) {
                node.answered(t0, addr(j), ids[j]);
            }
        }
        Self {
            t0,
            now: Duration::ZERO,
            nodes,
        }
    }

    fn at(&self) -> Instant {
        self.t0 + self.now
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn tick(&mut self, i: usize) -> Report {
        let now = self.at();
        let (node, table) = &mut self.nodes[i];
        node.tick(now, table, Demand::default())
    }

    fn deliver(&mut self, to: usize, r: &Report) -> Received {
        let now = self.at();
        let from = (r.admin_port - 9100) as usize;
        let (node, table) = &mut self.nodes[to];
        node.receive(now, r.clone(), Some(addr(from)), table)
    }

    /// Every node ticks and every report reaches every other node.
    fn round(&mut self) {
        let reports: Vec<Report> = (0..self.nodes.len()).map(|i| self.tick(i)).collect();
        for (i, r) in reports.iter().enumerate() {
            for j in (0..self.nodes.len()).filter(|&j| j != i) {
                self.deliver(j, r);
            }
        }
    }

    fn shares(&self) -> Vec<u32> {
        self.nodes.iter().map(|(_, t)| t.share(backend())).collect()
    }

    fn sum(&self) -> u32 {
        self.shares().iter().sum()
    }

    fn occupy(&mut self, i: usize, n: u32) {
        let peers = Default::default();
        for _ in 0..n {
            assert!(self.nodes[i].1.admit(&peers).is_some(), "node {i} has room");
        }
    }
}

#[test]
fn a_lone_node_claims_the_whole_cap_at_once() {
    let mut b = Bench::new(1);
    b.tick(0);
    assert_eq!(b.shares(), [CAP]);
    b.tick(0);
    assert_eq!(b.shares(), [CAP], "claimed once, not twice");
}

#[test]
fn an_unidentified_contact_blocks_claims_until_it_answers_or_times_out() {
    let mut b = Bench::new(1);
    let t0 = b.at();
    b.nodes[0].0.set_contacts(t0, [addr(7)]);
    b.tick(0);
    assert_eq!(b.shares(), [0], "addr 7 may be a member holding slots");
    b.advance(TIMEOUT);
    b.tick(0);
    assert_eq!(
        b.shares(),
        [CAP],
        "silent for peer_timeout: taken for absent"
    );
}

#[test]
fn the_claimer_claims_then_shares_evenly_and_the_sum_never_exceeds_the_cap() {
    let mut b = Bench::new(3);
    for _ in 0..6 {
        b.round();
        assert!(b.sum() <= CAP, "{:?}", b.shares());
    }
    let mut split = b.shares();
    split.sort();
    assert_eq!(split, [3, 3, 4], "the leftover slot goes to one of them");
}

#[test]
fn late_and_duplicated_reports_are_never_counted_twice() {
    let mut b = Bench::new(2);
    b.round(); // everyone has everyone's first report
    let claim = b.tick(0); // 0 claims 10 and grants 5 to 1
    assert_eq!(b.shares()[0], 5);
    assert_eq!(claim.grants.len(), 1);
    assert_eq!(b.deliver(1, &claim), Received::Fresh);
    assert_eq!(b.shares(), [5, 5]);
    assert_eq!(b.deliver(1, &claim), Received::Stale, "duplicate");
    let next = b.tick(0);
    let old = claim;
    b.deliver(1, &next);
    assert_eq!(b.deliver(1, &old), Received::Stale, "reordered");
    assert_eq!(b.shares(), [5, 5]);
}

#[test]
fn a_lost_grant_is_counted_once_from_a_later_report() {
    let mut b = Bench::new(2);
    b.round();
    let _lost = b.tick(0);
    assert_eq!(b.shares(), [5, 0], "given: in flight, nobody's");
    let again = b.tick(0);
    assert_eq!(again.grants[0].given, 5, "cumulative: re-sent as a total");
    b.deliver(1, &again);
    assert_eq!(b.shares(), [5, 5]);
    let ack = b.tick(1);
    b.deliver(0, &ack);
    assert!(
        b.tick(0).grants.is_empty(),
        "acknowledged: no longer listed"
    );
}

#[test]
fn a_killed_members_share_is_claimed_only_after_every_survivor_dropped_it() {
    let mut b = Bench::new(3);
    for _ in 0..6 {
        b.round();
    }
    b.occupy(2, 3);
    b.round();
    let dead_share = b.shares()[2];
    assert!(dead_share >= 3, "{:?}", b.shares());
    // Node 2's last report reaches 1 a second later than 0; then 2 dies. 0 drops it first,
    // and must not claim while 1 still counts 2 up.
    b.advance(Duration::from_secs(1));
    let last = b.tick(2);
    b.deliver(1, &last);
    let dead = b.nodes[2].0.me();
    let mut claimed_at = None;
    for step in 0..40 {
        b.advance(Duration::from_millis(250));
        let r0 = b.tick(0);
        let r1 = b.tick(1);
        b.deliver(1, &r0);
        b.deliver(0, &r1);
        let one_counts_it_up = r1.view_of(dead).is_some_and(|v| v.up);
        let live = b.shares()[0] + b.shares()[1];
        if one_counts_it_up {
            assert!(live <= CAP - dead_share, "step {step}: {:?}", b.shares());
        } else if live == CAP {
            claimed_at.get_or_insert(step);
        }
    }
    let step = claimed_at.expect("the survivors end up with the whole cap");
    assert!(
        step >= 16,
        "not before 1 dropped 2 (peer_timeout after its last report)"
    );
}

#[test]
fn a_leaving_member_gives_its_free_share_back_and_is_dropped_when_empty() {
    let mut b = Bench::new(2);
    for _ in 0..4 {
        b.round();
    }
    assert_eq!(b.shares(), [5, 5]);
    b.occupy(1, 2);
    b.nodes[1].0.leave();
    for _ in 0..3 {
        b.round();
    }
    assert_eq!(b.shares(), [8, 2], "keeps only what it occupies");
    b.nodes[1].1.release(backend());
    b.nodes[1].1.release(backend());
    for _ in 0..3 {
        b.round();
    }
    assert_eq!(b.shares(), [CAP, 0]);
    assert!(b.nodes[1].0.left(&b.nodes[1].1));
    let peers = b.nodes[0].0.peers(b.at());
    assert!(!peers[0].up, "dropped at once, not after peer_timeout");
}

#[test]
fn a_dropped_member_starts_again_holding_only_what_it_occupies() {
    let mut b = Bench::new(2);
    for _ in 0..4 {
        b.round();
    }
    b.occupy(1, 2);
    // 1 is partitioned for peer_timeout: 0 drops it and claims its share.
    b.advance(TIMEOUT);
    let r0 = b.tick(0);
    assert_eq!(b.shares()[0], CAP);
    let old_id = b.nodes[1].0.me();
    b.deliver(1, &r0);
    b.tick(1);
    assert_ne!(b.nodes[1].0.me(), old_id, "a new incarnation");
    assert_eq!(b.shares()[1], 2, "what it occupies, nothing more");
    assert_eq!(b.nodes[1].0.counters().restarts, 1);
}

#[test]
fn a_lasting_excess_is_destroyed_a_passing_one_is_not() {
    let mut b = Bench::new(1);
    b.tick(0);
    b.nodes[0].1.raise(backend(), 3); // as a partition merge would leave it
    for _ in 0..4 {
        b.tick(0);
    }
    assert_eq!(b.shares(), [CAP + 3], "four ticks: still waiting");
    b.tick(0);
    assert_eq!(b.shares(), [CAP]);
    assert_eq!(b.nodes[0].0.counters().destroyed, 3);
}

#[test]
fn a_queue_brings_both_ticks_forward_and_the_spare_share_comes_in_one_round_trip() {
    let mut b = Bench::new(2);
    for _ in 0..6 {
        b.round();
    }
    assert_eq!(b.shares(), [5, 5]);
    let now = b.at();
    assert_eq!(b.nodes[0].0.early_tick(now), None, "nothing waits");
    b.occupy(0, 5);
    b.nodes[0].0.queue_grew(3);
    let now = b.at();
    assert_eq!(
        b.nodes[0].0.early_tick(now),
        Some(now + EARLY_GAP),
        "a queue and a peer with spare share: due, but not sooner than the gap"
    );
    b.advance(EARLY_GAP * 2);
    let now = b.at();
    assert_eq!(b.nodes[0].0.early_tick(now), Some(now), "due now");
    let (node, table) = &mut b.nodes[0];
    let demand = Demand {
        queued: 3,
        ..Demand::default()
    };
    let asking = node.tick(now, table, demand);
    assert_eq!(node.early_tick(now), None, "the tick was it");
    node.queue_grew(3);
    assert_eq!(
        node.early_tick(now),
        None,
        "no growth since the report: no tick"
    );
    b.deliver(1, &asking);
    let now = b.at();
    assert_eq!(
        b.nodes[1].0.early_tick(now),
        Some(now),
        "node 1 has share to give"
    );
    let giving = b.tick(1);
    b.deliver(0, &giving);
    assert_eq!(
        b.shares(),
        [10, 0],
        "node 0's three waiting and all the rest"
    );
    assert_eq!(b.sum(), CAP);
}
