//! What policies see: the `direct` and `prom` pipelines (and the edge's extra signals), and the
//! policy ticks that observe, decide and act.

use super::{DT, DecisionRow, World, steps_of};
use crate::policy::{Observation, PodObservation, PodPhase};
use crate::sim::pods::Stage;
use crate::sim::setup::{Feed, PolicySetup};

impl World<'_> {
    /// Prometheus: one scrape slot per step of the scrape interval; every pod gets a random phase.
    pub(super) fn init_scrape(&mut self) {
        let n = steps_of(self.cfg.scrape_interval) as usize;
        self.scrape = vec![Vec::new(); n];
        let slots: Vec<usize> = self
            .pods
            .alive()
            .filter(|(_, p)| p.stage == Stage::Running)
            .map(|(s, _)| s)
            .collect();
        for slot in slots {
            self.register_scrape(slot);
        }
    }

    pub(super) fn register_scrape(&mut self, slot: usize) {
        if self.scrape.is_empty() {
            return;
        }
        let n = self.scrape.len() as u64;
        let at = (self.k + 1 + self.rng.scrape.below(n)) % n;
        let id = self.pods.slots[slot].id;
        self.scrape[at as usize].push((slot, id));
    }

    pub(super) fn scrape_due(&mut self) {
        if self.scrape.is_empty() {
            return;
        }
        let n = self.scrape.len() as u64;
        let mut bucket = std::mem::take(&mut self.scrape[(self.k % n) as usize]);
        bucket.retain(|&(slot, id)| {
            let pod = &mut self.pods.slots[slot];
            let keep = pod.alive && pod.id == id && !matches!(pod.stage, Stage::Terminating { .. });
            if keep {
                pod.scraped = Some(pod.conns);
            }
            keep
        });
        self.scrape[(self.k % n) as usize] = bucket;
    }

    fn phase_of(&self, slot: usize) -> Option<PodPhase> {
        let p = &self.pods.slots[slot];
        Some(match p.stage {
            Stage::Terminating { .. } => return None,
            Stage::Booting { .. } => PodPhase::Booting,
            Stage::Running if p.draining => PodPhase::Draining,
            Stage::Running if self.not_ready_at_capacity && p.conns >= self.cfg.capacity => {
                PodPhase::NotReady
            }
            Stage::Running => PodPhase::Ready,
        })
    }

    /// Fills `self.obs` with the exact per-pod view (what the edge knows).
    pub(super) fn fill_direct_observation(&mut self) {
        self.fill_observation(Feed::Direct);
    }

    fn fill_observation(&mut self, feed: Feed) {
        let mut obs = std::mem::take(&mut self.obs);
        obs.clear();
        for slot in 0..self.pods.slots.len() {
            let pod = &self.pods.slots[slot];
            if !pod.alive {
                continue;
            }
            let Some(phase) = self.phase_of(slot) else {
                continue;
            };
            let connections = match feed {
                Feed::Prom if phase == PodPhase::Booting => None,
                Feed::Prom => pod.scraped,
                Feed::Direct | Feed::Edge => Some(pod.conns),
            };
            obs.push(PodObservation {
                id: pod.id,
                phase,
                connections,
            });
        }
        self.obs = obs;
    }

    fn with_observation<R>(
        &mut self,
        setup: &mut PolicySetup,
        f: impl FnOnce(&mut PolicySetup, &Observation<'_>) -> R,
    ) -> R {
        self.fill_observation(setup.feed);
        let edge = setup.feed == Feed::Edge;
        let obs = Observation {
            pods: &self.obs,
            desired: self.spec,
            queued: if edge {
                self.queue.len().min(u64::from(u32::MAX)) as u32
            } else {
                0
            },
            refused: if edge { self.refused_since_sample } else { 0 },
        };
        f(setup, &obs)
    }

    pub(super) fn observe(&mut self, setup: &mut PolicySetup) {
        let now = std::time::Duration::from_secs_f64(self.t());
        self.with_observation(setup, |s, obs| s.policy.observe(now, obs));
        self.refused_since_sample = 0;
    }

    pub(super) fn decide(&mut self, setup: &mut PolicySetup) {
        let now = std::time::Duration::from_secs_f64(self.t());
        let decision = self.with_observation(setup, |s, obs| s.policy.decide(now, obs));
        if let Some(prev) = self.last_desired
            && decision.replicas < prev
            && self.k < self.storm_until
        {
            self.m.storm_scale_downs += 1.0;
        }
        self.last_desired = Some(decision.replicas);
        self.m.max_replicas = self.m.max_replicas.max(f64::from(decision.replicas));
        if let Some(f) = decision.forecast {
            let due = self.k + (f.horizon.as_secs_f64() / DT).round() as u64;
            let naive = self.trace.at(self.t()).0;
            self.forecasts.push_back((due, f.connections, naive));
        }
        self.actuate(setup, &decision);
        if self.record && self.k >= self.origin {
            let ready = self
                .pods
                .alive()
                .filter(|(_, p)| p.stage == Stage::Running)
                .count();
            self.out.decisions.push(DecisionRow {
                t: self.measured_t(),
                desired: decision.replicas,
                ready: ready as u32,
                connections: self.pods.connections(),
                rejected_total: self.m.rejected as u64,
                demand: self.trace.at(self.t()).0,
                serving: decision.serving,
                forecast: decision.forecast,
                reason: decision.reason,
            });
        }
    }
}
