use super::*;
use crate::policy::{PodObservation, PodPhase};

fn pods(n: usize, conns: u32) -> Vec<PodObservation> {
    (0..n as u64)
        .map(|i| PodObservation::ready(i, conns))
        .collect()
}

fn step(p: &mut TidegatePolicy, t: u64, pods: &[PodObservation], refused: u32) -> Decision {
    let obs = Observation {
        pods,
        desired: pods.len() as u32,
        queued: 0,
        refused,
    };
    let now = Duration::from_secs(t);
    p.observe(now, &obs);
    p.decide(now, &obs)
}

#[test]
fn steady_load_holds_and_refusals_trigger_surge() {
    let mut p = TidegatePolicy::new(TidegatePolicyConfig::default());
    let view = pods(10, 850);
    for t in 0..60 {
        let d = step(&mut p, t, &view, 0);
        assert_eq!(d.replicas, 10, "t={t}: {}", d.reason);
    }
    // 8,500 live and 1,000 refused: 9,500 of demand, beyond 10 pods at the surge occupancy.
    let d = step(&mut p, 60, &view, 1000);
    assert!(p.in_surge(Duration::from_secs(60)));
    assert!(d.replicas > 10, "{}", d.reason);
    assert!(
        d.reason.to_string().starts_with("scale_up: forecast"),
        "{}",
        d.reason
    );
}

#[test]
fn scale_down_is_gradual_and_waits_for_the_evidence() {
    let cfg = TidegatePolicyConfig::default();
    let mut p = TidegatePolicy::new(cfg.clone());
    for t in 0..30 {
        step(&mut p, t, &pods(20, 850), 0);
    }
    // Demand falls to a quarter: a storm hold, then the evidence window, pass first.
    let low = pods(20, 200);
    let mut first_down = None;
    let mut last = 20;
    for t in 30..1500 {
        let d = step(&mut p, t, &low, 0);
        assert!(d.replicas <= last);
        if d.replicas < last {
            first_down.get_or_insert(t);
            assert!(last - d.replicas <= last / 4, "at most 25% per step");
        }
        last = d.replicas;
    }
    let first = first_down.expect("scaled down eventually");
    let wait = (cfg.storm_window + cfg.scale_down_evidence()).as_secs();
    assert!(
        first >= 30 + wait,
        "storm hold + evidence first (t={first})"
    );
    let floor = (4000.0 / (cfg.scale_down_occupancy * 1000.0)).ceil() as u32;
    assert_eq!(last, floor, "4000 conns at the scale-down occupancy");
}

#[test]
fn forecast_growth_is_ordered_as_empty_standby() {
    let mut p = TidegatePolicy::new(TidegatePolicyConfig::default());
    let mut last = None;
    for t in 0..120u32 {
        // +0.5 %/s compounding from 10 000 connections on 12 pods
        let total = 10_000.0 * (0.005 * f64::from(t)).exp();
        let view = pods(12, (total / 12.0) as u32);
        last = Some(step(&mut p, u64::from(t), &view, 0));
    }
    let d = last.unwrap();
    let serving = d.serving.unwrap();
    assert!(
        d.replicas > serving,
        "{} vs {serving}: {}",
        d.replicas,
        d.reason
    );
}

#[test]
fn a_pod_loss_is_a_storm_not_a_scale_down() {
    let mut p = TidegatePolicy::new(TidegatePolicyConfig::default());
    for t in 0..300 {
        step(&mut p, t, &pods(20, 850), 0);
    }
    let mut after = pods(20, 850);
    after[0].connections = Some(0);
    after[1].connections = Some(0);
    let d = step(&mut p, 300, &after, 0);
    assert!(p.in_storm(Duration::from_secs(300)));
    assert_eq!(d.replicas, 20);
    let until = 300 + TidegatePolicyConfig::default().storm_window.as_secs();
    for t in 301..until {
        let d = step(&mut p, t, &after, 200);
        assert_eq!(d.replicas, 20, "t={t}: {}", d.reason);
    }
}

#[test]
fn once_settled_a_noisy_level_load_never_changes_the_count() {
    let cfg = TidegatePolicyConfig::default();
    let level = 12_000.0;
    let mut n = cfg.steady_replicas(level) as usize;
    let mut p = TidegatePolicy::new(cfg);
    // 3 % noise of the kind the trace generator draws (AR(1) on 10 s knots); the first 20
    // minutes let the count settle on the noise, the next two hours must not move it.
    let noise = crate::sim::families::noise(&mut crate::rng::Rng::new(7, 7), 1200 + 7200, 0.03);
    let mut settled = None;
    for t in 0..1200 + 7200 {
        let total = level * (1.0 + noise[t as usize]);
        let d = step(&mut p, t, &pods(n, (total / n as f64) as u32), 0);
        if t >= 1200 {
            let at = *settled.get_or_insert(n);
            assert_eq!(d.replicas as usize, at, "t={t}: {}", d.reason);
        }
        n = d.replicas as usize;
    }
}

#[test]
fn a_forecast_dip_does_not_cancel_what_is_booting() {
    let cfg = TidegatePolicyConfig::default();
    let mut p = TidegatePolicy::new(cfg.clone());
    let ready = 10usize;
    let mut replicas = ready as u32;
    let mut view = pods(ready, 800);
    // A minute of steep growth orders pods; then demand dips back while they boot.
    for t in 0..400u64 {
        let total = if t < 60 {
            8000.0 * (0.01 * t as f64).exp()
        } else {
            8000.0
        };
        for pod in view.iter_mut().take(ready) {
            pod.connections = Some((total / ready as f64).min(1000.0) as u32);
        }
        let booting = view.iter().filter(|p| p.phase == PodPhase::Booting).count() as u32;
        let d = step(&mut p, t, &view, 0);
        if booting > 0 && t < cfg.boot_time.as_secs() + 60 {
            assert!(
                d.replicas >= replicas,
                "t={t}: cancelled a booting pod: {}",
                d.reason
            );
        }
        while (view.len() as u32) < d.replicas {
            let id = view.len() as u64;
            view.push(PodObservation {
                id,
                phase: PodPhase::Booting,
                connections: Some(0),
            });
        }
        replicas = d.replicas;
    }
    assert!(replicas > ready as u32, "the growth was ordered");
}
