//! The simulated pods and the proxy's placement over them.
//!
//! Pods live in reusable slots. A segment tree over the slots answers, in O(log n), the two
//! questions every 100 ms step asks many times: which eligible pod has the fewest connections
//! (least-connections placement under the hard cap), and which pod holds the i-th connection
//! (uniform departures, since session lifetimes are memoryless).

use crate::rng::Rng;

/// Where a simulated pod is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Pending/starting; Ready at the given step.
    Booting { ready_at: u64 },
    /// Ready (it may still be drained by the edge).
    Running,
    /// Deleted: out of the endpoints, killed at the step given (`None`: when empty).
    Terminating { kill_at: Option<u64> },
}

/// One simulated pod.
#[derive(Clone, Debug)]
pub(crate) struct Pod {
    pub id: u64,
    pub stage: Stage,
    pub conns: u32,
    /// The edge routes no new connections here.
    pub draining: bool,
    /// Step the pod was created, and the step it became Ready.
    pub created: u64,
    pub ready_since: u64,
    /// `controller.kubernetes.io/pod-deletion-cost`.
    pub cost: i64,
    /// Last value the Prometheus scrape saw (`None`: never scraped).
    pub scraped: Option<u32>,
    pub alive: bool,
    /// Created before the rolling update in progress (it is to be replaced).
    pub old: bool,
    /// Terminated by a scripted event (its kill is not the policy's doing).
    pub scripted: bool,
}

impl Pod {
    fn key(&self, capacity: u32) -> u32 {
        let eligible = self.alive && self.stage == Stage::Running && !self.draining;
        if eligible && self.conns < capacity {
            self.conns
        } else {
            u32::MAX
        }
    }
}

/// All pods, with the placement/departure index.
#[derive(Clone, Debug)]
pub(crate) struct Pods {
    pub slots: Vec<Pod>,
    free: Vec<usize>,
    next_id: u64,
    capacity: u32,
    /// Segment tree: `min` key with its slot, and `sum` of connections, per node.
    min: Vec<(u32, u32)>,
    sum: Vec<u64>,
    leaves: usize,
}

impl Pods {
    pub fn new(capacity: u32) -> Self {
        let leaves = 64;
        Pods {
            slots: Vec::new(),
            free: Vec::new(),
            next_id: 1,
            capacity,
            min: vec![(u32::MAX, 0); 2 * leaves],
            sum: vec![0; 2 * leaves],
            leaves,
        }
    }

    /// Total live connections.
    pub fn connections(&self) -> u64 {
        self.sum[1]
    }

    /// Creates a pod in `stage` and returns its slot.
    pub fn create(&mut self, stage: Stage, now: u64) -> usize {
        let pod = Pod {
            id: self.next_id,
            stage,
            conns: 0,
            draining: false,
            created: now,
            ready_since: now,
            cost: 0,
            scraped: None,
            alive: true,
            old: false,
            scripted: false,
        };
        self.next_id += 1;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = pod;
                s
            }
            None => {
                self.slots.push(pod);
                self.slots.len() - 1
            }
        };
        if self.slots.len() > self.leaves {
            self.grow();
        }
        self.refresh(slot);
        slot
    }

    /// Removes a pod (its connections must already be accounted for by the caller).
    pub fn remove(&mut self, slot: usize) {
        let pod = &mut self.slots[slot];
        pod.alive = false;
        pod.conns = 0;
        self.free.push(slot);
        self.refresh(slot);
    }

    /// Places one connection on the eligible pod with the fewest connections under the cap.
    pub fn place(&mut self) -> Option<usize> {
        let (key, slot) = self.min[1];
        if key >= self.capacity {
            return None;
        }
        let slot = slot as usize;
        self.slots[slot].conns += 1;
        self.refresh(slot);
        Some(slot)
    }

    /// Removes one connection from `slot` (its session ended).
    pub fn depart_from(&mut self, slot: usize) {
        let pod = &mut self.slots[slot];
        pod.conns = pod.conns.saturating_sub(1);
        self.refresh(slot);
    }

    /// Removes one connection chosen uniformly among all live connections.
    pub fn depart_random(&mut self, rng: &mut Rng) -> Option<usize> {
        let total = self.sum[1];
        if total == 0 {
            return None;
        }
        let mut r = rng.below(total);
        let mut node = 1;
        while node < self.leaves {
            let left = self.sum[2 * node];
            if r < left {
                node *= 2;
            } else {
                r -= left;
                node = 2 * node + 1;
            }
        }
        let slot = node - self.leaves;
        self.slots[slot].conns -= 1;
        self.refresh(slot);
        Some(slot)
    }

    /// Re-indexes a slot after its pod changed (connections, stage, draining).
    pub fn refresh(&mut self, slot: usize) {
        let (key, conns) = match self.slots.get(slot) {
            Some(p) if p.alive => (p.key(self.capacity), u64::from(p.conns)),
            _ => (u32::MAX, 0),
        };
        let mut node = slot + self.leaves;
        self.min[node] = (key, slot as u32);
        self.sum[node] = conns;
        while node > 1 {
            node /= 2;
            let (l, r) = (self.min[2 * node], self.min[2 * node + 1]);
            self.min[node] = if r.0 < l.0 { r } else { l };
            self.sum[node] = self.sum[2 * node] + self.sum[2 * node + 1];
        }
    }

    fn grow(&mut self) {
        self.leaves *= 2;
        self.min = vec![(u32::MAX, 0); 2 * self.leaves];
        self.sum = vec![0; 2 * self.leaves];
        for slot in 0..self.slots.len() {
            self.refresh(slot);
        }
    }

    /// Alive pods with their slots.
    pub fn alive(&self) -> impl Iterator<Item = (usize, &Pod)> + '_ {
        self.slots.iter().enumerate().filter(|(_, p)| p.alive)
    }

    /// Slot of the alive pod with this id.
    pub fn slot_of(&self, id: u64) -> Option<usize> {
        self.slots.iter().position(|p| p.alive && p.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_least_connections_under_the_cap() {
        let mut pods = Pods::new(3);
        let a = pods.create(Stage::Running, 0);
        let b = pods.create(Stage::Running, 0);
        let _booting = pods.create(Stage::Booting { ready_at: 10 }, 0);
        let placed: Vec<usize> = (0..6).filter_map(|_| pods.place()).collect();
        assert_eq!(placed.len(), 6);
        assert_eq!(pods.slots[a].conns, 3);
        assert_eq!(pods.slots[b].conns, 3);
        assert_eq!(
            pods.place(),
            None,
            "both full, the booting pod is not eligible"
        );
        pods.slots[b].draining = true;
        pods.refresh(b);
        let mut rng = Rng::new(1, 1);
        pods.depart_random(&mut rng);
        pods.depart_random(&mut rng);
        assert_eq!(pods.connections(), 4);
    }

    #[test]
    fn grows_past_the_initial_leaves_and_reuses_slots() {
        let mut pods = Pods::new(1000);
        let slots: Vec<usize> = (0..100).map(|_| pods.create(Stage::Running, 0)).collect();
        for _ in 0..1000 {
            pods.place();
        }
        assert!(pods.alive().all(|(_, p)| p.conns == 10));
        pods.remove(slots[5]);
        assert_eq!(pods.connections(), 990);
        let again = pods.create(Stage::Running, 1);
        assert_eq!(again, slots[5]);
        assert_eq!(pods.place(), Some(again));
    }
}
