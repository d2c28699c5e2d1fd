//! A cluster of [`Node`]s over a simulated network that loses, delays and reorders messages,
//! with connections arriving and leaving and replicas killed and started: what the property
//! tests check the invariant on and the benchmark measures. Deterministic for a seed; time is
//! simulated (an `Instant` epoch plus simulated elapsed time), so nothing here sleeps.
//!
//! Messages go through [`super::wire`] like real ones, so byte counts are the real sizes.

mod queue;
mod table;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::node::{Demand, Node, Settings};
use super::wire;
use crate::table::queue::QueuePolicy;
pub use table::Table;

/// The network's behaviour.
#[derive(Clone, Copy, Debug)]
pub struct Network {
    /// Shortest one-way delay.
    pub min_delay: Duration,
    /// Longest one-way delay (delays are uniform in between, so messages reorder).
    pub max_delay: Duration,
    /// Probability that a message is lost.
    pub loss: f64,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_micros(200),
            max_delay: Duration::from_millis(2),
            loss: 0.0,
        }
    }
}

/// One simulated replica.
#[derive(Debug)]
pub struct Replica {
    /// Its state machine.
    pub node: Node,
    /// Its backend table.
    pub table: Table,
    /// Its (pretend) admin address.
    pub address: SocketAddr,
    /// Its connections, by backend.
    pub connections: Vec<SocketAddr>,
    /// Connection attempts since it started, those admitted and those refused (its demand
    /// signal).
    attempts: u64,
    admitted: u64,
    refused: u64,
    /// The deadline of every attempt waiting in its queue, oldest first.
    waiting: VecDeque<Duration>,
    next_tick: Duration,
}

impl Replica {
    /// Attempts admitted since it started, at once or from the queue.
    pub fn admitted(&self) -> u64 {
        self.admitted
    }

    /// Attempts refused since it started, at once or when their wait ran out.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Attempts waiting in its queue now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

enum Event {
    Report {
        to: usize,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Answer {
        to: usize,
        address: SocketAddr,
        member: u64,
    },
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Report bytes put on the network.
    pub bytes: u64,
    /// Reports put on the network.
    pub reports: u64,
    /// Time spent in the nodes and the codec (real, not simulated).
    pub cpu: Duration,
    /// Age of each live peer's newest report, sampled at every tick of every replica.
    pub staleness: Vec<Duration>,
    /// Connection attempts.
    pub attempts: u64,
    /// Attempts refused (at once, or when their wait in the queue ran out).
    pub refused: u64,
    /// Attempts that waited in a queue.
    pub queued: u64,
    /// How long each attempt admitted from a queue waited (simulated).
    pub waits: Vec<Duration>,
    /// Ticks brought forward (`share::node::EARLY_GAP`).
    pub early_ticks: u64,
    /// Attempts refused while another replica had a free slot under its share or unshared
    /// slots were free: what share fragmentation costs.
    pub refused_with_room: u64,
    /// The largest `Σ occupied − cap` seen on any backend (must stay 0).
    pub overshoot: u64,
    /// The largest `Σ shares − cap` seen on any backend (0 without partitions).
    pub share_overshoot: u64,
}

/// A simulated cluster.
pub struct Cluster {
    epoch: Instant,
    now: Duration,
    /// Every replica started; `None` once killed.
    pub replicas: Vec<Option<Replica>>,
    backends: Vec<SocketAddr>,
    capacity: u32,
    settings: Settings,
    interval: Duration,
    network: Network,
    queue_policy: QueuePolicy,
    rng: fastrand::Rng,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    events: BTreeMap<u64, Event>,
    next_event: u64,
    /// What was measured so far.
    pub stats: Stats,
}

impl Cluster {
    /// `replicas` replicas sharing `backends` of `capacity` each, syncing every `interval`.
    pub fn new(
        replicas: usize,
        backends: &[SocketAddr],
        capacity: u32,
        interval: Duration,
        settings: Settings,
        network: Network,
        seed: u64,
    ) -> Self {
        let mut c = Self {
            epoch: Instant::now(),
            now: Duration::ZERO,
            replicas: Vec::new(),
            backends: backends.to_vec(),
            capacity,
            settings,
            interval,
            network,
            queue_policy: QueuePolicy {
                timeout: Duration::ZERO,
                max_waiting: 0,
            },
            rng: fastrand::Rng::with_seed(seed),
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            next_event: 0,
            stats: Stats::default(),
        };
        for _ in 0..replicas {
            c.start();
        }
        c
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    fn instant(&self) -> Instant {
        self.epoch + self.now
    }

    /// Starts one more replica, listing every replica ever started as a contact (itself and
    /// dead ones included, as a static peer list would); returns its index.
    pub fn start(&mut self) -> usize {
        let index = self.replicas.len();
        let address = SocketAddr::from(([10, 9, (index >> 8) as u8, index as u8], 9090));
        let mut node = Node::new(self.settings, self.rng.u64(..), 9090);
        let now = self.instant();
        let mut contacts: Vec<SocketAddr> = self.addresses();
        contacts.push(address);
        node.set_contacts(now, contacts.iter().copied());
        for r in self.replicas.iter_mut().flatten() {
            r.node.set_contacts(now, contacts.iter().copied());
        }
        let phase = self.interval.mul_f64(self.rng.f64());
        self.replicas.push(Some(Replica {
            node,
            table: Table::new(&self.backends, self.capacity),
            address,
            connections: Vec::new(),
            attempts: 0,
            admitted: 0,
            refused: 0,
            waiting: VecDeque::new(),
            next_tick: self.now + phase,
        }));
        index
    }

    fn addresses(&self) -> Vec<SocketAddr> {
        let started = self.replicas.iter().enumerate();
        started
            .map(|(i, _)| SocketAddr::from(([10, 9, (i >> 8) as u8, i as u8], 9090)))
            .collect()
    }

    /// Kills replica `index` at once: its connections are gone, its messages stop.
    pub fn kill(&mut self, index: usize) {
        if let Some(slot) = self.replicas.get_mut(index) {
            *slot = None;
        }
    }

    /// Closes `n` connections of replica `index`, oldest first.
    pub fn depart(&mut self, index: usize, n: usize) {
        let Some(Some(r)) = self.replicas.get_mut(index) else {
            return;
        };
        let n = n.min(r.connections.len());
        for b in r.connections.drain(..n) {
            r.table.release(b);
        }
        self.serve(index);
    }

    /// Runs the cluster for `d` of simulated time: deliveries, ticks (those brought forward
    /// included) and queue deadlines in time order.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next_msg = self.queue.peek().map(|Reverse((t, _))| *t);
            let next_tick = self.next_tick();
            let next_deadline = self.next_deadline();
            let candidates = [next_msg, next_tick.map(|t| t.0), next_deadline.map(|d| d.0)];
            let Some(next) = candidates.into_iter().flatten().min() else {
                break;
            };
            if next > end {
                break;
            }
            self.now = next;
            if next_msg == Some(next) {
                self.deliver();
            } else if let Some((t, i)) = next_tick.filter(|t| t.0 == next) {
                let early = self.replicas[i].as_ref().is_some_and(|r| t < r.next_tick);
                self.tick(i, early);
            } else if let Some((_, i)) = next_deadline {
                self.expire(i);
            }
            self.check();
        }
        self.now = end;
    }

    /// The next tick of any replica, regular or brought forward.
    fn next_tick(&self) -> Option<(Duration, usize)> {
        let now = self.instant();
        let at = |r: &Replica| {
            let early = r.node.early_tick(now).map(|t| t - self.epoch);
            early.map_or(r.next_tick, |e| e.min(r.next_tick))
        };
        let live = self.replicas.iter().enumerate();
        live.filter_map(|(i, r)| Some((at(r.as_ref()?), i))).min()
    }

    fn tick(&mut self, i: usize, early: bool) {
        let now = self.instant();
        let (interval, loss) = (self.interval, self.network.loss);
        let Some(Some(r)) = self.replicas.get_mut(i) else {
            return;
        };
        let demand = Demand {
            queued: u32::try_from(r.waiting.len()).unwrap_or(u32::MAX),
            attempts_total: r.attempts,
            refused_total: r.refused,
            ..Demand::default()
        };
        if early {
            self.stats.early_ticks += 1;
        } else {
            let jitter = interval.mul_f64(0.9 + 0.2 * self.rng.f64());
            r.next_tick = self.now + jitter;
        }
        let t = Instant::now();
        let report = r.node.tick(now, &mut r.table, demand);
        let bytes = wire::encode(&report);
        self.stats.cpu += t.elapsed();
        self.stats.staleness.extend(r.node.report_ages(now));
        let (from, contacts) = (r.address, r.node.contacts());
        for to_addr in contacts {
            self.stats.bytes += bytes.len() as u64;
            self.stats.reports += 1;
            if self.rng.f64() < loss {
                continue;
            }
            let Some(to) = self.index_of(to_addr) else {
                continue;
            };
            let event = Event::Report {
                to,
                from,
                bytes: bytes.clone(),
            };
            self.schedule(event);
        }
        self.serve(i);
    }

    fn index_of(&self, address: SocketAddr) -> Option<usize> {
        self.addresses().iter().position(|a| *a == address)
    }

    fn schedule(&mut self, event: Event) {
        let span = self
            .network
            .max_delay
            .saturating_sub(self.network.min_delay);
        let at = self.now + self.network.min_delay + span.mul_f64(self.rng.f64());
        let id = self.next_event;
        self.next_event += 1;
        self.queue.push(Reverse((at, id)));
        self.events.insert(id, event);
    }

    fn deliver(&mut self) {
        let Some(Reverse((_, id))) = self.queue.pop() else {
            return;
        };
        let now = self.instant();
        match self.events.remove(&id) {
            Some(Event::Report { to, from, bytes }) => {
                let Some(Some(r)) = self.replicas.get_mut(to) else {
                    return; // dead: the push fails, no answer
                };
                let t = Instant::now();
                if let Ok(report) = wire::decode(&bytes) {
                    r.node.receive(now, report, Some(from), &mut r.table);
                }
                self.stats.cpu += t.elapsed();
                let member = r.node.me();
                let address = r.address;
                if self.rng.f64() >= self.network.loss
                    && let Some(back) = self.index_of(from)
                {
                    self.schedule(Event::Answer {
                        to: back,
                        address,
                        member,
                    });
                }
                self.serve(to);
            }
            Some(Event::Answer {
                to,
                address,
                member,
            }) => {
                if let Some(Some(r)) = self.replicas.get_mut(to) {
                    r.node.answered(now, address, member);
                }
            }
            None => {}
        }
    }

    fn occupied_elsewhere(&self, index: usize) -> BTreeMap<SocketAddr, u32> {
        let mut m = BTreeMap::new();
        for (i, r) in self.replicas.iter().enumerate() {
            let Some(r) = r.as_ref().filter(|_| i != index) else {
                continue;
            };
            for &b in &self.backends {
                *m.entry(b).or_insert(0) += r.table.occupied(b);
            }
        }
        m
    }

    /// Slots that another replica could admit now, or that nobody holds: room in the cluster
    /// that this replica's share does not reach.
    fn free_somewhere(&self, index: usize) -> u32 {
        let mut free = 0;
        for &b in &self.backends {
            let (mut occupied, mut shares, mut others) = (0u32, 0u32, 0u32);
            for (i, r) in self.replicas.iter().enumerate() {
                let Some(r) = r else { continue };
                occupied += r.table.occupied(b);
                shares += r.table.share(b);
                if i != index {
                    others += r.table.share(b).saturating_sub(r.table.occupied(b));
                }
            }
            let unheld = self.capacity.saturating_sub(shares);
            free += (others + unheld).min(self.capacity.saturating_sub(occupied));
        }
        free
    }

    /// Records the worst overshoot of occupied slots and of shares over the cap.
    fn check(&mut self) {
        for &b in &self.backends {
            let live = self.replicas.iter().flatten();
            let (occupied, shares) = live.fold((0u64, 0u64), |(o, s), r| {
                let o = o + u64::from(r.table.occupied(b));
                (o, s + u64::from(r.table.share(b)))
            });
            let cap = u64::from(self.capacity);
            self.stats.overshoot = self.stats.overshoot.max(occupied.saturating_sub(cap));
            let over = shares.saturating_sub(cap);
            self.stats.share_overshoot = self.stats.share_overshoot.max(over);
        }
    }

    /// Slots occupied over the whole cluster.
    pub fn occupied(&self) -> u64 {
        let live = self.replicas.iter().flatten();
        live.map(|r| r.connections.len() as u64).sum()
    }

    /// Whether any live replica has dropped another live one (the partition exception, which
    /// voids the invariant for the run), or started again after being dropped.
    pub fn false_drops(&self) -> bool {
        let now = self.instant();
        let live: Vec<u64> = self
            .replicas
            .iter()
            .flatten()
            .map(|r| r.node.me())
            .collect();
        self.replicas.iter().flatten().any(|r| {
            r.node.counters().restarts > 0
                || r.node
                    .peers(now)
                    .iter()
                    .any(|p| !p.up && live.contains(&p.member))
        })
    }
}
