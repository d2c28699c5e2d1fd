//! The simulated world: one policy, one trace, one seed, stepped every 100 ms.
//!
//! Each step, in order: pods finish booting, terminating pods reach their kill time, a pending
//! replica patch takes effect, scripted events fire; then sessions end (memoryless lifetimes plus
//! the extra departures of falling demand), held clients time out, and new and returning clients
//! are placed (least connections under the hard cap, else held or refused); then the costs and
//! elasticity figures are accumulated and, on its period, the policy observes and decides.
//!
//! Randomness comes from independent streams (arrivals, boots, patches, retries, scrapes), so one
//! policy drawing more numbers in one place does not reshuffle the rest of its world.

mod k8s;
mod observe;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use super::clients::{CLASSES, HoldQueue, RetryWheel};
use super::metrics::{ForecastError, RunMetrics, WAIT_BINS, hist_percentile};
use super::pods::{Pods, Stage};
use super::setup::{Placement, PolicySetup, Reconnect, STEP, WorldConfig};
use super::trace::{Event, Trace};
use crate::baselines::oracle::fluid_replicas;
use crate::policy::PodObservation;
use crate::rng::Rng;

const DT: f64 = 0.1;
/// A decision lowering replicas this soon after a scripted kill counts as storm-driven.
const STORM_WINDOW_STEPS: u64 = 3000;
/// Timeline resolution for plots (steps).
const TIMELINE_EVERY: u64 = 50;

/// One policy decision tick, as written to `decisions.csv`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecisionRow {
    /// Time (s).
    pub t: f64,
    /// Replicas the policy asked for.
    pub desired: u32,
    /// Ready pods (draining ones included).
    pub ready: u32,
    /// Live connections.
    pub connections: u64,
    /// Rejected attempts so far.
    pub rejected_total: u64,
}

/// A point of the timeline plotted per policy (every 5 s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimelinePoint {
    /// Time (s).
    pub t: f64,
    /// Demand D(t).
    pub demand: f64,
    /// Live connections.
    pub connections: f64,
    /// Ready pods (draining ones included).
    pub ready: u32,
    /// `spec.replicas`.
    pub replicas: u32,
}

/// What one run produced.
#[derive(Clone, Debug, Default)]
pub struct RunOutput {
    /// The metrics.
    pub metrics: RunMetrics,
    /// Decision ticks (only when recording).
    pub decisions: Vec<DecisionRow>,
    /// Timeline (only when recording).
    pub timeline: Vec<TimelinePoint>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    ScaleDown,
    Scripted,
}

struct Rngs {
    world: Rng,
    boot: Rng,
    patch: Rng,
    retry: Rng,
    scrape: Rng,
}

/// The simulated world for one run.
pub struct World<'t> {
    cfg: WorldConfig,
    trace: &'t Trace,
    k: u64,
    rng: Rngs,
    pods: Pods,
    spec: u32,
    requested: u32,
    pending: Option<(u64, u32)>,
    booting: BinaryHeap<Reverse<(u64, u64, usize)>>,
    killing: BinaryHeap<Reverse<(u64, u64, usize)>>,
    wheel: RetryWheel,
    queue: HoldQueue,
    scrape: Vec<Vec<(usize, u64)>>,
    next_event: usize,
    storm_until: u64,
    refused_since_sample: u32,
    obs: Vec<PodObservation>,
    forecasts: VecDeque<(u64, f64, f64)>,
    fc_err: ForecastError,
    wait_hist: [u64; WAIT_BINS],
    last_desired: Option<u32>,
    not_ready_at_capacity: bool,
    standby_new_pods: bool,
    m: RunMetrics,
    record: bool,
    out: RunOutput,
}

impl<'t> World<'t> {
    /// A world at t = 0 in steady state: `ceil(D(0)/T)` Ready pods holding D(0) connections.
    pub fn new(cfg: WorldConfig, trace: &'t Trace, seed: u64, record: bool) -> Self {
        let wheel_steps = (30.0 / DT) as usize + 20;
        let mut w = World {
            trace,
            k: 0,
            rng: Rngs {
                world: Rng::new(seed, 1),
                boot: Rng::new(seed, 2),
                patch: Rng::new(seed, 3),
                retry: Rng::new(seed, 4),
                scrape: Rng::new(seed, 5),
            },
            pods: Pods::new(cfg.capacity),
            spec: 0,
            requested: 0,
            pending: None,
            booting: BinaryHeap::new(),
            killing: BinaryHeap::new(),
            wheel: RetryWheel::new(wheel_steps),
            queue: HoldQueue::default(),
            scrape: Vec::new(),
            next_event: 0,
            storm_until: 0,
            refused_since_sample: 0,
            obs: Vec::with_capacity(256),
            forecasts: VecDeque::new(),
            fc_err: ForecastError::default(),
            wait_hist: [0; WAIT_BINS],
            last_desired: None,
            not_ready_at_capacity: false,
            standby_new_pods: false,
            m: RunMetrics::default(),
            record,
            out: RunOutput::default(),
            cfg,
        };
        w.init();
        w
    }

    fn init(&mut self) {
        let d0 = self.trace.at(0.0).0;
        let per_pod = f64::from(self.cfg.target);
        let n0 = ((d0 / per_pod).ceil() as u32).clamp(self.cfg.min_replicas, self.cfg.max_replicas);
        for _ in 0..n0 {
            self.pods.create(Stage::Running, 0);
        }
        for _ in 0..d0.round() as u64 {
            if self.pods.place().is_none() {
                break;
            }
        }
        for slot in 0..self.pods.slots.len() {
            self.pods.slots[slot].scraped = Some(self.pods.slots[slot].conns);
        }
        self.spec = n0;
        self.requested = n0;
    }

    /// Runs `setup`'s policy over the whole trace.
    pub fn run(mut self, setup: &mut PolicySetup) -> RunOutput {
        self.not_ready_at_capacity = setup.not_ready_at_capacity;
        self.standby_new_pods =
            matches!(setup.actuation, super::setup::Actuation::DrainFirst { .. });
        if setup.feed == super::setup::Feed::Prom {
            self.init_scrape();
        }
        let steps = (self.trace.duration().as_secs_f64() / DT).round() as u64;
        let sample = steps_of(setup.policy.sample_period());
        let period = steps_of(setup.policy.period());
        let phase = steps_floor(setup.phase);
        while self.k < steps {
            self.step_world();
            if self.k >= phase && (self.k - phase).is_multiple_of(sample) {
                self.observe(setup);
            }
            if self.k >= phase && (self.k - phase).is_multiple_of(period) {
                self.decide(setup);
            }
            self.k += 1;
        }
        self.finish()
    }

    fn t(&self) -> f64 {
        self.k as f64 * DT
    }

    fn step_world(&mut self) {
        self.boots_due();
        self.kills_due();
        self.patch_due();
        self.events_due();
        self.scrape_due();
        let (d, slope) = self.trace.at(self.t());
        self.departures(slope);
        self.expire_held();
        self.arrivals(d, slope);
        self.account(d);
        self.check_forecasts(d);
    }

    fn departures(&mut self, slope: f64) {
        let n = self.pods.connections() as f64;
        let natural = n * DT / self.cfg.mean_lifetime.as_secs_f64();
        let mut k = self.rng.world.poisson(natural);
        if slope < 0.0 {
            k += self.rng.world.poisson(-slope * DT);
        }
        for _ in 0..k {
            let Some(slot) = self.pods.depart_random(&mut self.rng.world) else {
                break;
            };
            let pod = &self.pods.slots[slot];
            if pod.conns == 0 && pod.stage == (Stage::Terminating { kill_at: None }) {
                self.pods.remove(slot);
            }
        }
    }

    fn expire_held(&mut self) {
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

    fn arrivals(&mut self, d: f64, slope: f64) {
        while self.queue.len() > 0 {
            if self.pods.place().is_none() {
                break;
            }
            if let Some(h) = self.queue.pop_one() {
                self.record_wait(self.k - h.since);
            }
        }
        let rate = slope.max(0.0) + d / self.cfg.mean_lifetime.as_secs_f64();
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
        if self.queue.len() == 0 && self.pods.place().is_some() {
            self.wait_hist[0] += 1;
            return;
        }
        match self.cfg.placement {
            Placement::Hold => self.queue.push(self.k, class as u8, 1),
            Placement::Reject => self.refuse(class),
        }
    }

    fn record_wait(&mut self, steps: u64) {
        self.wait_hist[(steps as usize).min(WAIT_BINS - 1)] += 1;
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
        let survive = (-sleep / self.cfg.mean_lifetime.as_secs_f64()).exp();
        if self.rng.retry.f64() >= survive {
            return;
        }
        let steps = ((sleep / DT).ceil() as u64).max(1);
        self.wheel
            .schedule(self.k + steps, (class + 1).min(CLASSES - 1));
    }

    /// Kills a pod: its clients are disconnected and reconnect.
    fn kill(&mut self, slot: usize, cause: Cause) {
        let n = self.pods.slots[slot].conns;
        match cause {
            Cause::ScaleDown => self.m.forced_disconnects += f64::from(n),
            Cause::Scripted => self.m.storm_disconnects += f64::from(n),
        }
        self.m.first_attempts += f64::from(n);
        self.pods.remove(slot);
        for _ in 0..n {
            self.schedule_retry(0);
        }
    }

    fn events_due(&mut self) {
        while let Some(ev) = self.trace.events.get(self.next_event) {
            if steps_floor(ev.at()) > self.k {
                break;
            }
            self.next_event += 1;
            match *ev {
                Event::KillPods { pods, .. } => self.kill_random_pods(pods),
            }
            self.storm_until = self.k + STORM_WINDOW_STEPS;
        }
    }

    fn kill_random_pods(&mut self, n: u32) {
        for _ in 0..n {
            let candidates: Vec<usize> = self
                .pods
                .alive()
                .filter(|(_, p)| p.stage == Stage::Running && !p.draining)
                .map(|(s, _)| s)
                .collect();
            if candidates.is_empty() {
                break;
            }
            let pick = candidates[self.rng.world.below(candidates.len() as u64) as usize];
            self.kill(pick, Cause::Scripted);
        }
        self.reconcile();
    }

    fn account(&mut self, d: f64) {
        let (mut billed, mut ready) = (0u32, 0u32);
        for (_, p) in self.pods.alive() {
            billed += 1;
            ready += u32::from(p.stage == Stage::Running);
        }
        let need = fluid_replicas(
            d,
            self.cfg.capacity,
            self.cfg.min_replicas,
            self.cfg.max_replicas,
        );
        let m = &mut self.m;
        m.pod_seconds += f64::from(billed) * DT;
        m.lb1_pod_seconds += f64::from(need) * DT;
        m.connection_hours += self.pods.connections() as f64 * DT / 3600.0;
        let (s, dd) = (f64::from(ready), f64::from(need.max(1)));
        m.theta_u += (dd - s).max(0.0) / dd * DT;
        m.theta_o += (s - dd).max(0.0) / dd * DT;
        m.tau_u += if s < dd { DT } else { 0.0 };
        m.tau_o += if s > dd { DT } else { 0.0 };
        if self.record && self.k.is_multiple_of(TIMELINE_EVERY) {
            self.out.timeline.push(TimelinePoint {
                t: self.t(),
                demand: d,
                connections: self.pods.connections() as f64,
                ready,
                replicas: self.spec,
            });
        }
    }

    fn check_forecasts(&mut self, d: f64) {
        while self.forecasts.front().is_some_and(|f| f.0 <= self.k) {
            if let Some((_, f, naive)) = self.forecasts.pop_front() {
                self.fc_err.add(f, naive, d);
            }
        }
    }

    fn finish(mut self) -> RunOutput {
        let total = self.k as f64 * DT;
        let m = &mut self.m;
        for x in [&mut m.theta_u, &mut m.theta_o, &mut m.tau_u, &mut m.tau_o] {
            *x = 100.0 * *x / total.max(DT);
        }
        m.wait_p50_ms = hist_percentile(&self.wait_hist, 50.0);
        m.wait_p99_ms = hist_percentile(&self.wait_hist, 99.0);
        self.fc_err.finish(m);
        self.out.metrics = self.m;
        self.out
    }
}

/// Whole simulator steps in `d` (at least 1).
pub(crate) fn steps_of(d: Duration) -> u64 {
    steps_floor(d).max(1)
}

/// Whole simulator steps in `d`.
pub(crate) fn steps_floor(d: Duration) -> u64 {
    (d.as_nanos() / STEP.as_nanos()) as u64
}
