//! Property tests: tidegate's replicas stay within [min, max], it never scales down while in
//! surge mode, no booting pod is cancelled while forecast demand within one boot time exceeds
//! the remaining capacity, and the simulator is deterministic for a seed.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tidegate_scaler::config::TidegatePolicyConfig;
use tidegate_scaler::drain;
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
    (0..n as u64)
        .map(|i| PodObservation::ready(i, conns))
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

/// A closed loop small enough to reason about: pods boot in `boot` ticks, demand is spread
/// over the Ready ones up to their cap, the excess is refused, and every decision is carried
/// out with the drain plan (booting pods beyond the plan are cancelled).
struct Loop {
    pods: Vec<(PodObservation, u64)>,
    next_id: u64,
    boot: u64,
    capacity: u32,
}

impl Loop {
    fn new(ready: usize, boot: u64, capacity: u32) -> Self {
        let pods = (0..ready as u64)
            .map(|id| (PodObservation::ready(id, 0), 0))
            .collect();
        Loop {
            pods,
            next_id: ready as u64,
            boot,
            capacity,
        }
    }

    /// Boots what is due and spreads `demand`; returns the refused excess.
    fn tick(&mut self, t: u64, demand: u32) -> u32 {
        for (pod, ready_at) in &mut self.pods {
            if pod.phase == PodPhase::Booting && t >= *ready_at {
                pod.phase = PodPhase::Ready;
            }
        }
        let ready: Vec<usize> = (0..self.pods.len())
            .filter(|&i| self.pods[i].0.phase != PodPhase::Booting)
            .collect();
        let room = self.capacity * ready.len() as u32;
        let placed = demand.min(room);
        for (k, &i) in ready.iter().enumerate() {
            let share =
                placed / ready.len() as u32 + u32::from((k as u32) < placed % ready.len() as u32);
            self.pods[i].0.connections = Some(share);
        }
        demand - placed
    }

    fn observations(&self) -> Vec<PodObservation> {
        self.pods.iter().map(|p| p.0).collect()
    }

    /// Carries out a decision; returns how many booting pods it cancelled and the pods left.
    fn apply(&mut self, t: u64, replicas: u32, serving: u32) -> (u32, u32) {
        let plan = drain::plan(&self.observations(), replicas, serving, 0);
        self.pods.retain(|p| !plan.remove.contains(&p.0.id));
        let mut total = self.pods.len() as u32;
        let mut cancelled = 0;
        while total > plan.replicas {
            let Some(i) = self
                .pods
                .iter()
                .rposition(|p| p.0.phase == PodPhase::Booting)
            else {
                break;
            };
            self.pods.remove(i);
            total -= 1;
            cancelled += 1;
        }
        while total < plan.replicas {
            let pod = PodObservation {
                id: self.next_id,
                phase: PodPhase::Booting,
                connections: Some(0),
            };
            self.pods.push((pod, t + self.boot));
            self.next_id += 1;
            total += 1;
        }
        (cancelled, total)
    }
}

/// Demand: a base and a list of (start, length, extra) bumps, plus a per-tick wobble.
fn demand_shape() -> impl Strategy<Value = (u32, Vec<(u64, u64, u32)>, Vec<i32>)> {
    (
        500u32..20_000,
        proptest::collection::vec((0u64..600, 1u64..300, 0u32..20_000), 0..4),
        proptest::collection::vec(-300i32..300, 600),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// "No booting pod is cancelled while forecast demand within one boot time exceeds the
    /// remaining capacity": whenever a decision cancels booting pods, every forecast made in
    /// the last boot time (each at a horizon of at least one boot time: the demand those pods
    /// were ordered for) and the demand now fit the pods that remain. A forecast that dipped
    /// for a moment does not count as evidence.
    #[test]
    fn no_booting_pod_is_cancelled_while_forecast_demand_exceeds_what_remains(
        (base, bumps, wobble) in demand_shape(),
        boot in 5u64..120,
    ) {
        let cfg = TidegatePolicyConfig {
            boot_time: Duration::from_secs(boot),
            ..Default::default()
        };
        prop_assert!(cfg.horizon() >= cfg.boot_time);
        let capacity = cfg.capacity;
        let mut p = TidegatePolicy::new(cfg.clone());
        let mut world = Loop::new(cfg.steady_replicas(f64::from(base)) as usize, boot, capacity);
        let mut forecasts: Vec<f64> = Vec::new();
        for t in 0..600u64 {
            let extra: u32 = bumps.iter().filter(|b| (b.0..b.0 + b.1).contains(&t)).map(|b| b.2).sum();
            let demand = (i64::from(base + extra) + i64::from(wobble[t as usize])).max(0) as u32;
            let refused = world.tick(t, demand);
            let pods = world.observations();
            let desired = pods.len() as u32;
            let obs = Observation { pods: &pods, desired, queued: 0, refused };
            let now = Duration::from_secs(t);
            p.observe(now, &obs);
            let d = p.decide(now, &obs);
            forecasts.push(d.forecast.map_or(0.0, |f| f.connections));
            let (cancelled, left) = world.apply(t, d.replicas, d.serving.unwrap_or(d.replicas));
            if cancelled > 0 {
                let recent = &forecasts[forecasts.len().saturating_sub(boot as usize)..];
                let forecast = recent.iter().copied().fold(0.0, f64::max);
                let room = f64::from(left) * f64::from(capacity);
                prop_assert!(
                    forecast.max(p.demand()) <= room,
                    "t={t}: cancelled {cancelled} booting pod(s) with forecast {forecast:.0} and demand {:.0} over {room:.0}: {}",
                    p.demand(),
                    d.reason
                );
            }
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
