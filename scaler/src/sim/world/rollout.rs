//! A rolling update of the Deployment, as its controller runs one: new pods are created up to
//! `spec + maxSurge`, old pods are terminated while at least `spec − maxUnavailable` pods are
//! Ready, until no old pod is left. The old pods' clients are cut when their grace period ends
//! and reconnect: a reconnect storm that is nobody's scaling decision.

use super::{STORM_WINDOW_STEPS, World};
use crate::sim::pods::Stage;

/// A rolling update in progress.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rollout {
    max_surge: f64,
    max_unavailable: f64,
}

impl Rollout {
    /// `(surge, unavailable)` pods for `spec` replicas: `maxSurge` rounds up and
    /// `maxUnavailable` down, and they are not both 0.
    fn bounds(&self, spec: u32) -> (u32, u32) {
        let surge = (self.max_surge * f64::from(spec)).ceil() as u32;
        let unavailable = (self.max_unavailable * f64::from(spec)).floor() as u32;
        if surge == 0 && unavailable == 0 {
            (0, 1)
        } else {
            (surge, unavailable)
        }
    }

    /// Pods the Deployment may have (not terminating) while old pods remain.
    pub fn most_pods(&self, spec: u32) -> u32 {
        spec + self.bounds(spec).0
    }
}

impl World<'_> {
    /// Marks every pod as old and starts replacing them.
    pub(super) fn start_rollout(&mut self, max_surge: f64, max_unavailable: f64) {
        for slot in 0..self.pods.slots.len() {
            let pod = &mut self.pods.slots[slot];
            if pod.alive && !matches!(pod.stage, Stage::Terminating { .. }) {
                pod.old = true;
            }
        }
        self.rollout = Some(Rollout {
            max_surge,
            max_unavailable,
        });
    }

    /// One step of the rollout: surge new pods, then retire old ones while enough are Ready.
    pub(super) fn rollout_due(&mut self) {
        let Some(rollout) = self.rollout else {
            return;
        };
        let spec = self.spec;
        let (_, unavailable) = rollout.bounds(spec);
        let live = self.live_slots();
        let old: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&s| self.pods.slots[s].old)
            .collect();
        if old.is_empty() {
            self.rollout = None;
            return;
        }
        self.storm_until = self.k + STORM_WINDOW_STEPS;
        let mut total = live.len() as u32;
        let mut new = total - old.len() as u32;
        while total < rollout.most_pods(spec) && new < spec {
            self.start_pod();
            total += 1;
            new += 1;
        }
        let ready = live
            .iter()
            .filter(|&&s| self.pods.slots[s].stage == Stage::Running)
            .count() as u32;
        let mut retire = ready.saturating_sub(spec.saturating_sub(unavailable));
        // Old pods that are not Ready yet cost no availability: they go first.
        let victims = self.rank_victims(old);
        for slot in victims {
            let booting = matches!(self.pods.slots[slot].stage, Stage::Booting { .. });
            if !booting && retire == 0 {
                break;
            }
            if !booting {
                retire -= 1;
            }
            self.pods.slots[slot].scripted = true;
            self.terminate(slot);
        }
    }

    /// Slots of the pods that are not terminating.
    pub(super) fn live_slots(&self) -> Vec<usize> {
        self.pods
            .alive()
            .filter(|(_, p)| !matches!(p.stage, Stage::Terminating { .. }))
            .map(|(s, _)| s)
            .collect()
    }
}
