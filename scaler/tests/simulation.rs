//! A reduced simulation suite (two seeds, B = 45 s, traces cut short where they are long): fails
//! if tidegate loses more connections (rejected + forced disconnects) than HPA-prom or KPA on
//! any trace, or scales down because of a reconnect storm.

use std::sync::Arc;
use std::time::Duration;

use tidegate_scaler::sim::trace::{self, Event};
use tidegate_scaler::sim::{PolicyId, Trace, WorldConfig, run};

/// The named trace, truncated to `secs` (events after the cut are dropped).
fn short(name: &str, seed: u64, secs: usize) -> Arc<Trace> {
    let mut t = trace::builtin(name, seed).expect("built-in trace");
    t.demand.truncate(secs + 1);
    t.events
        .retain(|e| e.at() < Duration::from_secs(secs as u64));
    Arc::new(t)
}

#[test]
fn tidegate_does_not_fall_behind_hpa_prom_or_kpa() {
    let cases = [
        ("step", 1800),
        ("ramp", 2700),
        ("surge", 900),
        ("diurnal", 3600),
        ("flash", 1500),
        ("storm", 1800),
    ];
    let world = WorldConfig {
        boot_delay: Duration::from_secs(45),
        ..Default::default()
    };
    let policies = [PolicyId::Tidegate, PolicyId::HpaProm, PolicyId::Kpa];
    for (name, secs) in cases {
        let specs = run::specs(
            &|seed| short(name, seed, secs),
            &world,
            &policies,
            0..2,
            None,
        );
        let results = run::run_all(&specs, 2);
        let summaries = run::summarize(&results);
        let lost = |id: PolicyId| {
            summaries
                .iter()
                .find(|s| s.policy == id)
                .map(|s| s.mean.lost())
                .expect("ran")
        };
        let tg = lost(PolicyId::Tidegate);
        for other in [PolicyId::HpaProm, PolicyId::Kpa] {
            assert!(
                tg <= lost(other),
                "{name}: tidegate lost {tg:.0} connections, {} lost {:.0}",
                other.name(),
                lost(other)
            );
        }
        let tidegate = summaries
            .iter()
            .find(|s| s.policy == PolicyId::Tidegate)
            .expect("ran");
        if name == "storm" {
            assert!(matches!(
                short(name, 0, secs).events[0],
                Event::KillPods { .. }
            ));
            assert_eq!(
                tidegate.mean.storm_scale_downs, 0.0,
                "scaled down on a reconnect storm"
            );
        }
    }
}
