//! Running policies × seeds over one trace and world, on worker threads, and summarising them.
//!
//! Runs are independent and deterministic, so the thread count changes only the wall time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::metrics::RunMetrics;
use super::policies::PolicyId;
use super::setup::WorldConfig;
use super::trace::Trace;
use super::world::{RunOutput, World};
use crate::baselines::oracle::fluid_replicas;

/// One run to do.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// Demand trace (per seed: `diurnal` is seeded).
    pub trace: Arc<Trace>,
    /// World settings.
    pub world: WorldConfig,
    /// Policy.
    pub policy: PolicyId,
    /// Seed.
    pub seed: u64,
    /// Keep decisions and timeline.
    pub record: bool,
}

/// One finished run.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// Policy.
    pub policy: PolicyId,
    /// Seed.
    pub seed: u64,
    /// What it produced.
    pub output: RunOutput,
}

/// Runs one spec.
pub fn run_one(spec: &RunSpec) -> RunResult {
    let world = spec.world.for_trace(&spec.trace);
    let pre = spec.trace.preroll_secs(world.preroll);
    let trace = spec.trace.with_preroll(pre);
    let output = match spec.policy.build(&world, &trace, spec.seed) {
        Some(mut setup) => World::new(world, &trace, spec.seed, spec.record)
            .measured_from(pre)
            .run(&mut setup),
        None => fluid_output(&world, &spec.trace, spec.record),
    };
    RunResult {
        policy: spec.policy,
        seed: spec.seed,
        output,
    }
}

/// Oracle-fluid, computed rather than simulated: s(t) = ceil(D(t)/C), instant and packed.
fn fluid_output(world: &WorldConfig, trace: &Trace, record: bool) -> RunOutput {
    let dt = 0.1;
    let steps = (trace.duration().as_secs_f64() / dt).round() as u64;
    let mut m = RunMetrics::default();
    let mut out = RunOutput::default();
    let mut prev: Option<u32> = None;
    for k in 0..steps {
        let t = k as f64 * dt;
        let d = trace.at(t).0;
        let s = fluid_replicas(d, world.capacity, world.min_replicas, world.max_replicas);
        m.pod_seconds += f64::from(s) * dt;
        m.lb1_pod_seconds += f64::from(s) * dt;
        m.connection_hours += d * dt / 3600.0;
        m.max_replicas = m.max_replicas.max(f64::from(s));
        if let Some(p) = prev
            && p != s
        {
            m.replica_changes += 1.0;
            m.api_writes += 1.0;
            m.pod_starts += f64::from(s.saturating_sub(p));
        }
        prev = Some(s);
        if record && k % 50 == 0 {
            out.timeline.push(super::world::TimelinePoint {
                t,
                demand: d,
                connections: d,
                ready: s,
                replicas: s,
            });
        }
    }
    m.forecast_mae = f64::NAN;
    m.forecast_bias = f64::NAN;
    m.forecast_mase = f64::NAN;
    // s(t) follows demand at once: always covered; its count moves whenever demand does.
    m.time_to_cover_s = if trace.marks.is_empty() {
        f64::NAN
    } else {
        0.0
    };
    m.settling_s = f64::NAN;
    out.metrics = m;
    out
}

/// Runs every spec on `threads` worker threads; results come back in input order.
pub fn run_all(specs: &[RunSpec], threads: usize) -> Vec<RunResult> {
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<RunResult>>> = Mutex::new(vec![None; specs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, specs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(spec) = specs.get(i) else { break };
                    let result = run_one(spec);
                    if let Ok(mut s) = slots.lock() {
                        s[i] = Some(result);
                    }
                }
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// A policy's runs over seeds, with their mean.
#[derive(Clone, Debug)]
pub struct PolicySummary {
    /// Policy.
    pub policy: PolicyId,
    /// Field-wise mean over seeds.
    pub mean: RunMetrics,
    /// Per-seed metrics.
    pub runs: Vec<RunMetrics>,
}

/// Summarises results of one trace and world: fills LB2 from Oracle-feasible's run on the same
/// seed (when it ran) and averages per policy, in [`PolicyId::ALL`] order.
pub fn summarize(results: &[RunResult]) -> Vec<PolicySummary> {
    let lb2 = |seed: u64| {
        results
            .iter()
            .find(|r| r.policy == PolicyId::OracleFeasible && r.seed == seed)
            .map(|r| r.output.metrics.pod_seconds)
    };
    PolicyId::ALL
        .iter()
        .filter_map(|&policy| {
            let runs: Vec<RunMetrics> = results
                .iter()
                .filter(|r| r.policy == policy)
                .map(|r| {
                    let mut m = r.output.metrics.clone();
                    m.lb2_pod_seconds = lb2(r.seed).unwrap_or(0.0);
                    m
                })
                .collect();
            if runs.is_empty() {
                return None;
            }
            let mean = RunMetrics::mean(&runs.iter().collect::<Vec<_>>());
            Some(PolicySummary { policy, mean, runs })
        })
        .collect()
}

/// Specs for `policies` × `seeds` (seeds `first_seed..first_seed + seeds`) on a trace source.
pub fn specs(
    trace_for_seed: &dyn Fn(u64) -> Arc<Trace>,
    world: &WorldConfig,
    policies: &[PolicyId],
    seeds: std::ops::Range<u64>,
    record_seed: Option<u64>,
) -> Vec<RunSpec> {
    let mut out = Vec::new();
    for seed in seeds {
        let trace = trace_for_seed(seed);
        for &policy in policies {
            out.push(RunSpec {
                trace: Arc::clone(&trace),
                world: world.clone(),
                policy,
                seed,
                record: record_seed == Some(seed),
            });
        }
    }
    out
}
