//! Clients moving through the world: sessions that end, held clients that time out, new and
//! returning clients placed (least connections under the hard cap) or held or refused, and
//! disconnected clients coming back after their backoff.

use super::{Cause, DT, World, steps_of};
use crate::sim::clients::CLASSES;
use crate::sim::pods::Stage;
use crate::sim::setup::{Placement, Reconnect};

impl World<'_> {
    /// Sessions that end this step: by counting for memoryless lifetimes, by their clocks
    /// otherwise; plus the extra departures of falling demand (chosen uniformly, or for
    /// lifetimes with memory the sessions that began last; see `sim::sessions`).
    pub(super) fn departures(&mut self, slope: f64) {
        let memoryless = self.cfg.lifetime.is_memoryless();
        let mut k = 0;
        if memoryless {
            let n = self.pods.connections() as f64;
            k += self
                .rng
                .world
                .poisson(n * DT / self.cfg.lifetime.mean_secs());
        } else {
            self.clocked_departures();
        }
        if slope < 0.0 {
            k += self.rng.world.poisson(-slope * DT);
        }
        for _ in 0..k {
            let slot = if memoryless {
                self.pods.depart_random(&mut self.rng.world)
            } else {
                let slot = self.clocks.end_latest();
                slot.inspect(|&s| self.pods.depart_from(s))
            };
            let Some(slot) = slot else { break };
            self.after_departure(slot);
        }
    }

    fn clocked_departures(&mut self) {
        while let Some(slot) = self.clocks.pop_due(self.k) {
            self.pods.depart_from(slot);
            self.after_departure(slot);
        }
    }

    /// A pod that is terminating "until empty" goes once its last connection has.
    fn after_departure(&mut self, slot: usize) {
        let pod = &self.pods.slots[slot];
        if pod.conns == 0 && pod.stage == (Stage::Terminating { kill_at: None }) {
            self.remove_pod(slot);
        }
    }

    /// Frees a pod's slot (its connections must already be accounted for).
    pub(super) fn remove_pod(&mut self, slot: usize) {
        self.pods.remove(slot);
        self.clocks.clear(slot);
    }

    /// Places one connection (least connections under the cap) and, for lifetimes with
    /// memory, starts its clock: `residual` for sessions already in progress at t = 0.
    pub(super) fn place(&mut self, residual: bool) -> Option<usize> {
        let slot = self.pods.place()?;
        if !self.cfg.lifetime.is_memoryless() {
            let life = if residual {
                self.cfg.lifetime.residual(&mut self.rng.life)
            } else {
                self.cfg.lifetime.sample(&mut self.rng.life)
            };
            let end = self.k + ((life / DT).ceil() as u64).max(1);
            self.clocks.start(end, slot);
        }
        Some(slot)
    }

    pub(super) fn expire_held(&mut self) {
        if self.cfg.placement != Placement::Hold {
            return;
        }
        let hold = steps_of(self.cfg.hold_limit);
        let Some(cutoff) = self.k.checked_sub(hold) else {
            return;
        };
        while let Some(batch) = self.queue.expire(cutoff) {
            for _ in 0..batch.count {
                self.refuse(usize::from(batch.class));
            }
        }
    }

    pub(super) fn arrivals(&mut self, d: f64, slope: f64) {
        while self.queue.len() > 0 {
            if self.place(false).is_none() {
                break;
            }
            if let Some(h) = self.queue.pop_one() {
                self.record_wait(self.k - h.since);
            }
        }
        let rate = slope.max(0.0) + d / self.cfg.lifetime.mean_secs();
        let new = self.rng.world.poisson(rate * DT);
        self.m.first_attempts += f64::from(new);
        for _ in 0..new {
            self.attempt(0);
        }
        let due = self.wheel.take(self.k);
        for (class, &count) in due.iter().enumerate() {
            for _ in 0..count {
                self.attempt(class);
            }
        }
    }

    /// One connection attempt; `class` is the retry index used if it fails.
    fn attempt(&mut self, class: usize) {
        self.m.attempts += 1.0;
        if self.queue.len() == 0 && self.place(false).is_some() {
            self.wait_hist[0] += 1;
            return;
        }
        match self.cfg.placement {
            Placement::Hold => self.queue.push(self.k, class as u8, 1),
            Placement::Reject => self.refuse(class),
        }
    }

    fn record_wait(&mut self, steps: u64) {
        self.wait_hist[(steps as usize).min(super::WAIT_BINS - 1)] += 1;
    }

    fn refuse(&mut self, class: usize) {
        self.m.rejected += 1.0;
        self.refused_since_sample += 1;
        self.schedule_retry(class);
    }

    /// Schedules a reconnect after the backoff of retry index `class`; the client gives up with
    /// the probability that its session would have ended meanwhile.
    fn schedule_retry(&mut self, class: usize) {
        let sleep = match self.cfg.reconnect {
            Reconnect::Jitter => {
                let cap = (1u64 << class.min(CLASSES)) as f64;
                self.rng.retry.uniform(0.0, cap.min(30.0))
            }
            Reconnect::Herd => 1.0,
        };
        let survive = (-sleep / self.cfg.lifetime.mean_secs()).exp();
        if self.rng.retry.f64() >= survive {
            return;
        }
        let steps = ((sleep / DT).ceil() as u64).max(1);
        self.wheel
            .schedule(self.k + steps, (class + 1).min(CLASSES - 1));
    }

    /// Kills a pod: its clients are disconnected and reconnect.
    pub(super) fn kill(&mut self, slot: usize, cause: Cause) {
        let n = self.pods.slots[slot].conns;
        match cause {
            Cause::ScaleDown => self.m.forced_disconnects += f64::from(n),
            Cause::Scripted => self.m.storm_disconnects += f64::from(n),
        }
        self.m.first_attempts += f64::from(n);
        self.remove_pod(slot);
        for _ in 0..n {
            self.schedule_retry(0);
        }
    }
}
