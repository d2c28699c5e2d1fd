//! The simulated world: one policy, one trace, one seed, stepped every 100 ms.
//!
//! Each step, in order: pods finish booting, terminating pods reach their kill time, a pending
//! replica patch takes effect, scripted events fire and a rolling update in progress moves on;
//! then sessions end (by counting for memoryless lifetimes, by their clocks otherwise, plus the
//! extra departures of falling demand), held clients time out, and new and returning clients
//! are placed (least connections under the hard cap, else held or refused); then the costs and
//! elasticity figures are accumulated and, on its period, the policy observes and decides.
//!
//! Randomness comes from independent streams (arrivals, boots, patches, retries, scrapes,
//! lifetimes), so one policy drawing more numbers in one place does not reshuffle the rest of
//! its world.

mod account;
mod flow;
mod k8s;
mod observe;
mod rollout;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use super::clients::{HoldQueue, RetryWheel};
use super::metrics::{ForecastError, RunMetrics, WAIT_BINS, hist_percentile};
use super::pods::{Pods, Stage};
use super::sessions::Clocks;
use super::setup::{PolicySetup, STEP, WorldConfig};
use super::trace::{Event, Trace};
use crate::policy::PodObservation;
use crate::rng::Rng;
use account::Second;
use rollout::Rollout;

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
    /// Demand D(t) of the trace (connections; what no policy but the oracles sees).
    pub demand: f64,
    /// Pods the edge routes to, if the policy says (the rest stand by empty).
    pub serving: Option<u32>,
    /// The policy's forecast, if it made one.
    pub forecast: Option<crate::policy::Forecast>,
    /// Why the decision came out as it did.
    pub reason: crate::policy::Reason,
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
    life: Rng,
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
    clocks: Clocks,
    rollout: Option<Rollout>,
    seconds: Vec<Second>,
    /// Step from which the run is measured (the end of the pre-roll).
    origin: u64,
    m: RunMetrics,
    record: bool,
    out: RunOutput,
}

impl<'t> World<'t> {
    /// A world for `trace`; [`World::run`] starts it in steady state.
    pub fn new(cfg: WorldConfig, trace: &'t Trace, seed: u64, record: bool) -> Self {
        let wheel_steps = (30.0 / DT) as usize + 20;
        World {
            trace,
            k: 0,
            rng: Rngs {
                world: Rng::new(seed, 1),
                boot: Rng::new(seed, 2),
                patch: Rng::new(seed, 3),
                retry: Rng::new(seed, 4),
                scrape: Rng::new(seed, 5),
                life: Rng::new(seed, 6),
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
            clocks: Clocks::default(),
            rollout: None,
            seconds: Vec::with_capacity(trace.demand.len() + 1),
            origin: 0,
            m: RunMetrics::default(),
            record,
            out: RunOutput::default(),
            cfg,
        }
    }

    /// Measures the run only from `secs` on: what comes before is a pre-roll
    /// ([`Trace::with_preroll`]) that brings every policy to its own steady state.
    pub fn measured_from(mut self, secs: u64) -> Self {
        self.origin = secs * 10;
        self
    }

    /// Forgets everything measured so far; the pods, clients and policy carry on.
    fn start_measuring(&mut self) {
        self.m = RunMetrics::default();
        self.fc_err = ForecastError::default();
        self.wait_hist = [0; WAIT_BINS];
        self.seconds.clear();
        self.forecasts.clear();
        self.out = RunOutput::default();
    }

    /// t = 0 in steady state: `initial` Ready pods (default `ceil(D(0)/T)`, the baselines'
    /// steady state) holding D(0) connections.
    fn init(&mut self, initial: Option<u32>) {
        let d0 = self.trace.at(0.0).0;
        let per_pod = f64::from(self.cfg.target);
        let n0 = initial
            .unwrap_or((d0 / per_pod).ceil() as u32)
            .clamp(self.cfg.min_replicas, self.cfg.max_replicas);
        for _ in 0..n0 {
            self.pods.create(Stage::Running, 0);
        }
        for _ in 0..d0.round() as u64 {
            if self.place(true).is_none() {
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
        self.init(setup.initial_replicas);
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
            if self.k == self.origin && self.origin > 0 {
                self.start_measuring();
            }
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

    /// Time since the measurement began (s).
    fn measured_t(&self) -> f64 {
        self.k.saturating_sub(self.origin) as f64 * DT
    }

    fn step_world(&mut self) {
        self.boots_due();
        self.kills_due();
        self.patch_due();
        self.events_due();
        self.rollout_due();
        self.scrape_due();
        let (d, slope) = self.trace.at(self.t());
        self.departures(slope);
        self.expire_held();
        self.arrivals(d, slope);
        self.account(d);
        self.check_forecasts(d);
    }

    fn events_due(&mut self) {
        while let Some(ev) = self.trace.events.get(self.next_event) {
            if steps_floor(ev.at()) > self.k {
                break;
            }
            self.next_event += 1;
            match *ev {
                Event::KillPods { pods, .. } => self.kill_random_pods(pods),
                Event::RollingDeploy {
                    max_surge,
                    max_unavailable,
                    ..
                } => self.start_rollout(max_surge, max_unavailable),
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

    fn finish(mut self) -> RunOutput {
        let total = self.measured_t();
        let (cover, settle) = self.cover_and_settle();
        let m = &mut self.m;
        (m.time_to_cover_s, m.settling_s) = (cover, settle);
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
