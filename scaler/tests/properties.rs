//! Property tests: tidegate's replicas stay within [min, max], it never scales down while in
//! surge mode, and the simulator is deterministic for a seed.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tidegate_scaler::config::TidegatePolicyConfig;
use tidegate_scaler::policy::{Observation, PodObservation, PodPhase, Policy};
use tidegate_scaler::sim::{PolicyId, Trace, WorldConfig, run};
use tidegate_scaler::tidegate::TidegatePolicy;

/// One second of what the edge sees: (pods, connections per pod, queued, refused).
fn tick() -> impl Strategy<Value = (usize, u32, u32, u32)> {
    (
        1usize..60,
        0u32..1000,
        prop_oneof![Just(0u32), 0u32..5000],
        prop_oneof![Just(0u32), 0u32..5000],
    )
}

fn view(n: usize, conns: u32) -> Vec<PodObservation> {
    (0..n)
        .map(|i| PodObservation {
            id: i as u64,
            phase: PodPhase::Ready,
            connections: Some(conns),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn replicas_stay_within_bounds_and_surge_never_scales_down(
        ticks in proptest::collection::vec(tick(), 1..300),
        min in 1u32..5,
        extra in 0u32..40,
    ) {
        let cfg = TidegatePolicyConfig { min_replicas: min, max_replicas: min + extra, ..Default::default() };
        let mut p = TidegatePolicy::new(cfg);
        let mut prev: Option<u32> = None;
        for (t, (n, conns, queued, refused)) in ticks.into_iter().enumerate() {
            let pods = view(n, conns);
            let now = Duration::from_secs(t as u64);
            let obs = Observation { pods: &pods, desired: prev.unwrap_or(n as u32), queued, refused };
            p.observe(now, &obs);
            let surge = p.in_surge(now);
            let d = p.decide(now, &obs);
            prop_assert!(d.replicas >= min && d.replicas <= min + extra, "{} not in bounds", d.replicas);
            prop_assert!(d.serving.is_some_and(|s| s <= d.replicas));
            if surge && let Some(prev) = prev {
                prop_assert!(d.replicas >= prev.min(min + extra), "scaled down in surge: {}", d.reason);
            }
            prev = Some(d.replicas);
        }
    }
}

fn small_trace(points: &[f64]) -> Arc<Trace> {
    // each point held for 30 s, linearly interpolated
    let demand: Vec<f64> = (0..points.len() * 30)
        .map(|t| {
            let (i, f) = (t / 30, (t % 30) as f64 / 30.0);
            let next = points.get(i + 1).copied().unwrap_or(points[i]);
            points[i] + (next - points[i]) * f
        })
        .collect();
    Arc::new(Trace::new("prop", demand))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn same_seed_same_result(
        points in proptest::collection::vec(500.0f64..8000.0, 3..8),
        seed in 0u64..1000,
    ) {
        let trace = small_trace(&points);
        let world = WorldConfig { boot_delay: Duration::from_secs(15), ..Default::default() };
        let policies = [PolicyId::Tidegate, PolicyId::HpaProm, PolicyId::Kpa];
        let specs = run::specs(&|_| Arc::clone(&trace), &world, &policies, seed..seed + 1, Some(seed));
        let a = run::run_all(&specs, 2);
        let b = run::run_all(&specs, 1);
        for (x, y) in a.iter().zip(&b) {
            // Debug text, so that NaN forecast figures compare equal too.
            prop_assert_eq!(format!("{:?}", x.output.metrics), format!("{:?}", y.output.metrics));
            prop_assert_eq!(&x.output.decisions, &y.output.decisions);
        }
    }
}
