//! A reduced simulation suite for CI (B = 45 s, traces of the tuning set cut short): on
//! generated traces of the families where tidegate is meant to hold every goal, it loses no
//! more connections than HPA-prom, starts no more than 1.5 × Oracle-feasible's pods + 3 and
//! cancels no booting pod; on an instant step it loses at most 1.2 × Oracle-causal's; on pod
//! kills and a rolling deploy it never scales down.

use std::sync::Arc;
use std::time::Duration;

use tidegate_scaler::sim::families::{self, Family};
use tidegate_scaler::sim::metrics::RunMetrics;
use tidegate_scaler::sim::run::{self, RunSpec};
use tidegate_scaler::sim::{PolicyId, Trace, WorldConfig};

/// The generated trace, cut to `secs` (events and marks after the cut are dropped).
fn short(family: Family, seed: u64, secs: usize) -> Arc<Trace> {
    let mut t = families::generate(family, seed);
    t.demand.truncate(secs + 1);
    let cut = Duration::from_secs(secs as u64);
    t.events.retain(|e| e.at() < cut);
    t.marks.retain(|m| *m < cut);
    Arc::new(t)
}

/// tidegate, HPA-prom, Oracle-feasible and Oracle-causal on one trace.
fn run(trace: &Arc<Trace>, seed: u64) -> [RunMetrics; 4] {
    let world = WorldConfig {
        boot_delay: Duration::from_secs(45),
        ..Default::default()
    };
    let policies = [
        PolicyId::Tidegate,
        PolicyId::HpaProm,
        PolicyId::OracleFeasible,
        PolicyId::OracleCausal,
    ];
    let specs: Vec<RunSpec> = policies
        .iter()
        .map(|&policy| RunSpec {
            trace: Arc::clone(trace),
            world: world.clone(),
            policy,
            seed,
            record: false,
        })
        .collect();
    let out = run::run_all(&specs, 2);
    std::array::from_fn(|i| out[i].output.metrics.clone())
}

#[test]
fn tidegate_holds_the_goals_on_a_sample_of_generated_traces() {
    let cases = [
        (Family::Linear, 1001, 3600),
        (Family::Evening, 1002, 5400),
        (Family::Diurnal, 1003, 3600),
        (Family::NoisyRamp, 1004, 3600),
        (Family::Flat, 1005, 2400),
    ];
    for (family, seed, secs) in cases {
        let [tg, hpa, feasible, _] = run(&short(family, seed, secs), seed);
        let name = family.name();
        assert!(
            tg.lost() <= hpa.lost(),
            "{name}: tidegate lost {:.0}, HPA-prom {:.0}",
            tg.lost(),
            hpa.lost()
        );
        assert!(
            tg.pod_starts <= 1.5 * feasible.pod_starts + 3.0,
            "{name}: {} pod starts against Oracle-feasible's {}",
            tg.pod_starts,
            feasible.pod_starts
        );
        assert_eq!(
            tg.cancelled_boots, 0.0,
            "{name}: a booting pod was cancelled"
        );
    }
}

#[test]
fn an_instant_step_costs_at_most_a_little_more_than_knowing_the_present() {
    let seed = 1006;
    let [tg, _, _, causal] = run(&short(Family::Step, seed, 2400), seed);
    assert!(causal.lost() > 0.0, "the step outruns a boot");
    assert!(
        tg.lost() <= 1.2 * causal.lost(),
        "tidegate lost {:.0}, Oracle-causal {:.0}",
        tg.lost(),
        causal.lost()
    );
}

#[test]
fn pod_kills_and_rolling_deploys_never_scale_down() {
    for (family, seed) in [(Family::Storm, 1007), (Family::Rolling, 1008)] {
        let trace = short(family, seed, 3600);
        assert!(
            !trace.events.is_empty(),
            "{}: the script is kept",
            family.name()
        );
        let [tg, ..] = run(&trace, seed);
        assert_eq!(
            tg.storm_scale_downs,
            0.0,
            "{}: scaled down on a reconnect storm",
            family.name()
        );
        assert!(
            tg.storm_disconnects > 0.0,
            "{}: the script ran",
            family.name()
        );
    }
}
