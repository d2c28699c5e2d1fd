//! Benchmarks one tidegate `observe` + `decide` round for 200 pods (what the live loop does once
//! per second), and the drain planner on the same pods.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tidegate_scaler::config::TidegatePolicyConfig;
use tidegate_scaler::drain;
use tidegate_scaler::policy::{Observation, PodObservation, PodPhase, Policy};
use tidegate_scaler::tidegate::TidegatePolicy;

fn pods(n: usize) -> Vec<PodObservation> {
    (0..n)
        .map(|i| PodObservation {
            id: i as u64,
            phase: if i % 17 == 0 {
                PodPhase::Draining
            } else {
                PodPhase::Ready
            },
            connections: Some(600 + (i as u32 * 37) % 350),
        })
        .collect()
}

fn bench_decide(c: &mut Criterion) {
    let view = pods(200);
    let cfg = TidegatePolicyConfig {
        max_replicas: 400,
        ..TidegatePolicyConfig::default()
    };
    let mut policy = TidegatePolicy::new(cfg);
    let mut t = 0u64;
    // warm the windows so the benchmark sees a steady-state policy
    for _ in 0..300 {
        let obs = Observation {
            pods: &view,
            desired: 200,
            queued: 0,
            refused: 0,
        };
        policy.observe(Duration::from_secs(t), &obs);
        policy.decide(Duration::from_secs(t), &obs);
        t += 1;
    }
    c.bench_function("tidegate observe+decide, 200 pods", |b| {
        b.iter(|| {
            let obs = Observation {
                pods: black_box(&view),
                desired: 200,
                queued: 0,
                refused: 3,
            };
            let now = Duration::from_secs(t);
            policy.observe(now, &obs);
            t += 1;
            black_box(policy.decide(now, &obs))
        })
    });
    c.bench_function("drain plan, 200 pods", |b| {
        b.iter(|| black_box(drain::plan(black_box(&view), 180, 170, 0)))
    });
}

criterion_group!(benches, bench_decide);
criterion_main!(benches);
