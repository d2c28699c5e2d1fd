//! The Kubernetes side of the world: replica patches with actuation delay, the ReplicaSet's
//! reconcile (create pods with boot delay; pick and terminate victims), and the two actuators.

use std::cmp::Reverse;

use super::{Cause, DT, World, steps_of};
use crate::drain;
use crate::policy::Decision;
use crate::sim::pods::Stage;
use crate::sim::setup::{Actuation, PolicySetup, Termination, Victims};

/// Annotation the drain-first actuator puts on empty pods it wants removed.
const REMOVE_COST: i64 = i64::MIN / 2;

impl World<'_> {
    pub(super) fn boots_due(&mut self) {
        while let Some(&Reverse((at, id, slot))) = self.booting.peek() {
            if at > self.k {
                break;
            }
            self.booting.pop();
            let pod = &mut self.pods.slots[slot];
            if pod.alive && pod.id == id && matches!(pod.stage, Stage::Booting { .. }) {
                pod.stage = Stage::Running;
                pod.ready_since = self.k;
                // Drain-first actuators admit new pods themselves: they start as empty standby.
                pod.draining = self.standby_new_pods;
                self.pods.refresh(slot);
                self.register_scrape(slot);
            }
        }
    }

    pub(super) fn kills_due(&mut self) {
        while let Some(&Reverse((at, id, slot))) = self.killing.peek() {
            if at > self.k {
                break;
            }
            self.killing.pop();
            let pod = &self.pods.slots[slot];
            if pod.alive && pod.id == id && matches!(pod.stage, Stage::Terminating { .. }) {
                let cause = if pod.scripted {
                    Cause::Scripted
                } else {
                    Cause::ScaleDown
                };
                self.kill(slot, cause);
            }
        }
    }

    pub(super) fn patch_due(&mut self) {
        if let Some((at, replicas)) = self.pending
            && at <= self.k
        {
            self.pending = None;
            if replicas != self.spec {
                self.m.replica_changes += 1.0;
            }
            self.spec = replicas;
            self.reconcile();
        }
    }

    /// Asks for `replicas`: a patch that lands after the control-plane delay and replaces any
    /// pending one.
    fn request(&mut self, replicas: u32) {
        if replicas == self.requested {
            return;
        }
        if self.pending.is_some() {
            self.m.superseded += 1.0;
        }
        let (lo, hi) = self.cfg.patch_delay;
        let delay = self.rng.patch.uniform(lo.as_secs_f64(), hi.as_secs_f64());
        let steps = ((delay / DT).ceil() as u64).max(1);
        self.pending = Some((self.k + steps, replicas));
        self.requested = replicas;
        self.m.api_writes += 1.0;
    }

    /// The ReplicaSet: make the number of non-terminating pods equal `spec` (during a rolling
    /// update, anywhere from `spec` to `spec + maxSurge`: the rollout does the rest).
    pub(super) fn reconcile(&mut self) {
        let live = self.live_slots();
        let have = live.len() as u32;
        let most = self.rollout.map_or(self.spec, |r| r.most_pods(self.spec));
        if self.spec > have {
            for _ in have..self.spec {
                self.start_pod();
            }
        } else if most < have {
            let victims = self.rank_victims(live);
            for &slot in victims.iter().take((have - most) as usize) {
                self.terminate(slot);
            }
        }
    }

    pub(super) fn start_pod(&mut self) {
        let j = self.cfg.boot_jitter;
        let boot = self.cfg.boot_delay.as_secs_f64() * self.rng.boot.uniform(1.0 - j, 1.0 + j);
        let ready_at = self.k + ((boot / DT).round() as u64).max(1);
        let slot = self.pods.create(Stage::Booting { ready_at }, self.k);
        self.booting
            .push(Reverse((ready_at, self.pods.slots[slot].id, slot)));
        self.m.pod_starts += 1.0;
    }

    /// ReplicaSet victim order: Pending first, then NotReady, then lower deletion cost, then
    /// pods a rolling update is replacing, then the most recently Ready (newest first).
    pub(super) fn rank_victims(&self, mut live: Vec<usize>) -> Vec<usize> {
        let cap = self.cfg.capacity;
        let key = |slot: &usize| {
            let p = &self.pods.slots[*slot];
            let rank = match p.stage {
                Stage::Booting { .. } => 0,
                _ if self.not_ready_at_capacity && p.conns >= cap => 1,
                _ => 2,
            };
            let cost = match self.cfg.victims {
                Victims::Policy => p.cost,
                Victims::Replicaset => 0,
                Victims::DeletionCost => i64::from(p.conns),
            };
            let since = if rank == 0 { p.created } else { p.ready_since };
            (rank, cost, !p.old, Reverse(since), Reverse(p.id))
        };
        live.sort_by_key(key);
        live
    }

    pub(super) fn terminate(&mut self, slot: usize) {
        let pod = &mut self.pods.slots[slot];
        if matches!(pod.stage, Stage::Booting { .. }) {
            if !pod.scripted {
                self.m.cancelled_boots += 1.0;
            }
            self.remove_pod(slot);
            return;
        }
        match self.cfg.termination {
            Termination::Hard => self.kill(slot, Cause::ScaleDown),
            Termination::Grace => {
                let kill_at = self.k + steps_of(self.cfg.grace);
                pod.stage = Stage::Terminating {
                    kill_at: Some(kill_at),
                };
                let id = pod.id;
                self.pods.refresh(slot);
                self.killing.push(Reverse((kill_at, id, slot)));
            }
            Termination::Drain => {
                pod.stage = Stage::Terminating { kill_at: None };
                if pod.conns == 0 {
                    self.remove_pod(slot);
                } else {
                    self.pods.refresh(slot);
                }
            }
        }
    }

    /// Carries out a decision with the policy's actuator.
    pub(super) fn actuate(&mut self, setup: &PolicySetup, decision: &Decision) {
        match setup.actuation {
            Actuation::Plain => self.request(decision.replicas),
            Actuation::DrainFirst { remove_below } => {
                self.fill_direct_observation();
                let serving = decision.serving.unwrap_or(decision.replicas);
                let plan = drain::plan(&self.obs, decision.replicas, serving, remove_below);
                for (ids, draining) in [(&plan.drain, true), (&plan.undrain, false)] {
                    for &id in ids {
                        if let Some(slot) = self.pods.slot_of(id) {
                            self.pods.slots[slot].draining = draining;
                            self.pods.refresh(slot);
                        }
                    }
                }
                for &id in &plan.remove {
                    if let Some(slot) = self.pods.slot_of(id)
                        && self.pods.slots[slot].cost != REMOVE_COST
                    {
                        self.pods.slots[slot].cost = REMOVE_COST;
                        self.m.api_writes += 1.0;
                    }
                }
                self.request(plan.replicas);
            }
        }
    }
}
