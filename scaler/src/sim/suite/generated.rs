//! The generated part of the suite: a tuning set and a separate validation set of traces from
//! every family ([`crate::sim::families`]), each run by tidegate, HPA-prom, Oracle-feasible and
//! Oracle-causal, and every goal turned into a ratio per trace (≤ 1 meets it).
//!
//! Seeds are fixed: the tuning set is `tuning_seed..tuning_seed + per_family` and the
//! validation set `validation_seed..validation_seed + per_family`, for every family and boot
//! delay; the world seed of a run is its trace's seed.

use std::sync::Arc;
use std::time::Duration;

use crate::sim::families::{self, Family};
use crate::sim::metrics::RunMetrics;
use crate::sim::policies::PolicyId;
use crate::sim::run::{self, RunSpec};
use crate::sim::setup::WorldConfig;

/// The policies every generated trace is run with.
pub const POLICIES: [PolicyId; 4] = [
    PolicyId::Tidegate,
    PolicyId::HpaProm,
    PolicyId::OracleFeasible,
    PolicyId::OracleCausal,
];

/// Occupancies Oracle-causal also runs at, for the frontier: standing headroom of 11 %, 25 %
/// and 43 % (HPA-prom's target).
pub const FRONTIER: [f64; 3] = [0.9, 0.8, 0.7];

/// Losses HPA-prom must exceed before tidegate is held to a tenth of them.
pub const HPA_LOSS_FLOOR: f64 = 100.0;
/// tidegate's losses may be at most this fraction of HPA-prom's (above the floor).
pub const HPA_LOSS_FRACTION: f64 = 0.1;
/// On instant families, tidegate's losses may be this multiple of Oracle-causal's.
pub const CAUSAL_LOSS_FACTOR: f64 = 1.2;
/// Pod-seconds may be at most this multiple of LB2.
pub const COST_FACTOR: f64 = 1.15;
/// Pod starts may be at most this multiple of Oracle-feasible's …
pub const STARTS_FACTOR: f64 = 1.5;
/// … plus this many.
pub const STARTS_SLACK: f64 = 3.0;

/// One set of generated traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Set {
    /// For tuning the policy.
    Tuning,
    /// For judging it only.
    Validation,
}

impl Set {
    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Set::Tuning => "tuning",
            Set::Validation => "validation",
        }
    }
}

/// What the generated part runs.
#[derive(Clone, Debug, PartialEq)]
pub struct GenConfig {
    /// Families.
    pub families: Vec<Family>,
    /// Traces per family, boot delay and set.
    pub per_family: u64,
    /// First seed of the tuning set.
    pub tuning_seed: u64,
    /// First seed of the validation set.
    pub validation_seed: u64,
    /// tidegate's policy settings to judge (`None`: the defaults).
    pub tidegate: Option<crate::config::TidegatePolicyConfig>,
    /// Also run Oracle-causal at the [`FRONTIER`] occupancies.
    pub frontier: bool,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            families: Family::ALL.to_vec(),
            per_family: 20,
            tuning_seed: 1000,
            validation_seed: 2000,
            tidegate: None,
            frontier: true,
        }
    }
}

impl GenConfig {
    /// The seeds of a set.
    pub fn seeds(&self, set: Set) -> std::ops::Range<u64> {
        let first = match set {
            Set::Tuning => self.tuning_seed,
            Set::Validation => self.validation_seed,
        };
        first..first + self.per_family
    }
}

/// One generated trace at one boot delay, with the four policies' metrics.
#[derive(Clone, Debug)]
pub struct TraceResult {
    /// Family.
    pub family: Family,
    /// Trace seed (and world seed).
    pub seed: u64,
    /// Boot delay.
    pub boot: Duration,
    /// tidegate.
    pub tidegate: RunMetrics,
    /// HPA-prom.
    pub hpa: RunMetrics,
    /// Oracle-feasible (its pod-seconds are LB2).
    pub feasible: RunMetrics,
    /// Oracle-causal.
    pub causal: RunMetrics,
    /// Oracle-causal at each of the [`FRONTIER`] occupancies (empty if not run).
    pub frontier: Vec<RunMetrics>,
}

/// `x / bound`, with 0/0 = 0 and x/0 = ∞.
fn over(x: f64, bound: f64) -> f64 {
    if bound > 0.0 {
        x / bound
    } else if x > 0.0 {
        f64::INFINITY
    } else {
        0.0
    }
}

impl TraceResult {
    /// The trace's spec, e.g. `gen:evening:2003`.
    pub fn spec(&self) -> String {
        format!("gen:{}:{}", self.family.name(), self.seed)
    }

    /// The most connections tidegate may lose here: no more than HPA-prom, a tenth of it where
    /// HPA-prom loses more than the floor — or, on instant families, up to 1.2 × Oracle-causal's
    /// if that is more (still no more than HPA-prom).
    pub fn allowed_loss(&self) -> f64 {
        let hpa = self.hpa.lost();
        let mut allowed = if hpa > HPA_LOSS_FLOOR {
            HPA_LOSS_FRACTION * hpa
        } else {
            hpa
        };
        if self.family.instant() {
            allowed = allowed.max(CAUSAL_LOSS_FACTOR * self.causal.lost());
        }
        allowed.min(hpa)
    }

    /// The loss goal and the cost goal of any policy's run of this trace, as ratios (≤ 1
    /// meets it): its losses over what is allowed, and its pod-seconds over 1.15 × LB2.
    pub fn loss_and_cost(&self, run: &RunMetrics) -> (f64, f64) {
        (
            over(run.lost(), self.allowed_loss()),
            over(run.pod_seconds, COST_FACTOR * self.feasible.pod_seconds),
        )
    }

    /// Every goal as a ratio (≤ 1 meets it), in [`Goal::ALL`] order; `None` where a goal does
    /// not apply to the family.
    pub fn ratios(&self) -> [Option<f64>; 6] {
        let tg = &self.tidegate;
        let (loss, cost) = self.loss_and_cost(tg);
        [
            Some(loss),
            Some(over(tg.lost(), self.hpa.lost())),
            Some(over(tg.lost(), CAUSAL_LOSS_FACTOR * self.causal.lost())),
            Some(cost),
            Some(over(
                tg.pod_starts,
                STARTS_FACTOR * self.feasible.pod_starts + STARTS_SLACK,
            )),
            (self.family == Family::Flat)
                .then(|| over(tg.replica_changes, self.hpa.replica_changes)),
        ]
    }
}

/// The goals the report checks, each as a ratio that must be ≤ 1 at p90.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Lost connections over what is allowed ([`TraceResult::allowed_loss`]).
    Loss,
    /// Lost connections over HPA-prom's (never worse than HPA).
    VsHpa,
    /// Lost connections over 1.2 × Oracle-causal's (instant families).
    VsCausal,
    /// Pod-seconds over 1.15 × LB2.
    Cost,
    /// Pod starts over 1.5 × Oracle-feasible's + 3.
    Starts,
    /// Replica changes over HPA-prom's (flat family).
    Changes,
}

impl Goal {
    /// Every goal, in [`TraceResult::ratios`] order.
    pub const ALL: [Goal; 6] = [
        Goal::Loss,
        Goal::VsHpa,
        Goal::VsCausal,
        Goal::Cost,
        Goal::Starts,
        Goal::Changes,
    ];

    /// Column heading.
    pub fn heading(self) -> &'static str {
        match self {
            Goal::Loss => "lost / allowed",
            Goal::VsHpa => "lost / HPA-prom's",
            Goal::VsCausal => "lost / (1.2 × Oracle-causal's)",
            Goal::Cost => "pod-s / (1.15 × LB2)",
            Goal::Starts => "pod starts / (1.5 × Oracle-feasible's + 3)",
            Goal::Changes => "replica changes / HPA-prom's (flat)",
        }
    }

    /// Column name in the per-trace CSV.
    pub fn key(self) -> &'static str {
        match self {
            Goal::Loss => "lost_vs_allowed",
            Goal::VsHpa => "lost_vs_hpa",
            Goal::VsCausal => "lost_vs_causal",
            Goal::Cost => "cost_vs_lb2",
            Goal::Starts => "starts_vs_budget",
            Goal::Changes => "changes_vs_hpa",
        }
    }

    /// Whether the goal is judged on `family` (the loss against Oracle-causal is judged on the
    /// instant families only, and shown for information on the others).
    pub fn judged(self, family: Family) -> bool {
        self != Goal::VsCausal || family.instant()
    }

    /// The ratio this goal reads from a trace.
    pub fn of(self, r: &TraceResult) -> Option<f64> {
        r.ratios()[self as usize]
    }
}

/// Runs one set at one boot delay: every family × seed × [`POLICIES`].
pub fn run_set(cfg: &GenConfig, set: Set, boot: Duration, threads: usize) -> Vec<TraceResult> {
    let world = WorldConfig {
        boot_delay: boot,
        tidegate: cfg.tidegate.clone(),
        ..WorldConfig::default()
    };
    let frontier = if cfg.frontier { FRONTIER.len() } else { 0 };
    let per_trace = POLICIES.len() + frontier;
    let mut specs = Vec::new();
    let mut keys = Vec::new();
    for &family in &cfg.families {
        for seed in cfg.seeds(set) {
            let trace = Arc::new(families::generate(family, seed));
            keys.push((family, seed));
            let spec = |policy, world: WorldConfig| RunSpec {
                trace: Arc::clone(&trace),
                world,
                policy,
                seed,
                record: false,
            };
            for policy in POLICIES {
                specs.push(spec(policy, world.clone()));
            }
            for &causal_occupancy in &FRONTIER[..frontier] {
                let world = WorldConfig {
                    causal_occupancy,
                    ..world.clone()
                };
                specs.push(spec(PolicyId::OracleCausal, world));
            }
        }
    }
    let results = run::run_all(&specs, threads);
    keys.iter()
        .enumerate()
        .map(|(i, &(family, seed))| {
            let of = |j: usize| {
                results
                    .get(i * per_trace + j)
                    .map(|r| r.output.metrics.clone())
                    .unwrap_or_default()
            };
            TraceResult {
                family,
                seed,
                boot,
                tidegate: of(0),
                hpa: of(1),
                feasible: of(2),
                causal: of(3),
                frontier: (POLICIES.len()..per_trace).map(of).collect(),
            }
        })
        .collect()
}

/// Median, p90 and worst of `xs` (nearest rank; NaN when empty).
pub fn spread(xs: &mut [f64]) -> (f64, f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    xs.sort_by(f64::total_cmp);
    let rank = |p: f64| xs[((p * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1];
    (rank(0.5), rank(0.9), xs[xs.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(family: Family, tg: f64, hpa: f64, causal: f64) -> TraceResult {
        let lost = |x: f64| RunMetrics {
            rejected: x,
            pod_seconds: 100.0,
            ..Default::default()
        };
        TraceResult {
            family,
            seed: 1,
            boot: Duration::from_secs(45),
            tidegate: lost(tg),
            hpa: lost(hpa),
            feasible: lost(0.0),
            causal: lost(causal),
            frontier: Vec::new(),
        }
    }

    #[test]
    fn the_allowed_loss_follows_the_goal() {
        assert_eq!(result(Family::Flat, 5.0, 50.0, 0.0).allowed_loss(), 50.0);
        assert_eq!(result(Family::Flat, 5.0, 500.0, 0.0).allowed_loss(), 50.0);
        assert_eq!(
            result(Family::Step, 5.0, 500.0, 400.0).allowed_loss(),
            480.0
        );
        assert_eq!(
            result(Family::Step, 5.0, 500.0, 4000.0).allowed_loss(),
            500.0
        );
        let r = result(Family::Flat, 3.0, 0.0, 0.0).ratios();
        assert_eq!(r[0], Some(f64::INFINITY));
        assert!(
            r[2].is_some()
                && !Goal::VsCausal.judged(Family::Flat)
                && Goal::VsCausal.judged(Family::Step),
            "Oracle-causal's bound is judged on instant families only"
        );
        assert!(r[5].is_some() && result(Family::Step, 0.0, 0.0, 0.0).ratios()[5].is_none());
        assert!(r[3].is_some_and(|x| (x - 100.0 / 115.0).abs() < 1e-12));
    }

    #[test]
    fn spread_is_median_p90_worst() {
        let mut xs: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(spread(&mut xs), (5.0, 9.0, 10.0));
        assert!(spread(&mut []).0.is_nan());
    }
}
