//! tidegate's own scaling policy.
//!
//! **In one paragraph.** Every second tidegate estimates demand as the edge sees it: live
//! connections on all pods plus the larger of the connections held in its queue and the attempts
//! it refused in the last 5 s — demand the pods could not take, which scraped per-pod gauges never
//! show. Its trend is the median of 5-second slopes over the last minute, so one noisy sample or a
//! one-off step does not move it, clamped to 1 %/s; the forecast is demand one boot time × 1.25
//! ahead. It orders `ceil(max(demand, forecast) / (0.92 × capacity))` pods at once, but the edge
//! routes new connections only to as many as the peak demand of the last minute needs at 0.95
//! occupancy: the other pods stand by empty and are routed to the moment demand reaches them, so
//! an over-forecast costs pod-seconds but never strands connections on pods that must go. When the
//! edge queues or refuses connections, or demand grows faster than 0.4 %/s, it enters **surge**
//! mode for at least 60 s: it sizes for 0.8 occupancy, forecasts compounded growth, and never
//! scales down; for 60 s after a saturation ends, rising live counts are the backlog getting in,
//! not growth, and the trend is ignored. Outside surge it scales **down** only to what the peak
//! demand of the last 2 minutes and the forecast allow, only beyond a 5 % tolerance, by at most
//! 25 % (≥ 1 pod) per 15 s; the pods it gives up are drained emptiest first and removed only once
//! empty, so scale-down disconnects no one. A one-second drop of live connections by ≥ 2 % is a
//! **reconnect storm**: for 2 minutes demand is held at its pre-drop level and refusals are
//! ignored, so neither the dip nor the rebound changes the count — the ReplicaSet replaces the
//! lost pods. Replicas always stay within [min, max].
//!
//! Every constant above is a field of [`TidegatePolicyConfig`]; the actuator side (standby,
//! draining, removal) is [`crate::drain`].

use std::time::Duration;

use crate::config::TidegatePolicyConfig;
use crate::forecast::RobustSlope;
use crate::history::{History, PeakWindow, Sample};
use crate::policy::{Action, Decision, Forecast, Observation, Policy, Reason, pods_for};

/// tidegate's predictive policy (see the module docs for the one-paragraph explanation).
#[derive(Clone, Debug)]
pub struct TidegatePolicy {
    cfg: TidegatePolicyConfig,
    trend: RobustSlope,
    slope: f64,
    history: History,
    peaks: PeakWindow,
    /// Recent serving-size loads, so the serving set shrinks only after `serving_window`.
    serving_peaks: PeakWindow,
    now: Duration,
    /// Demand estimate of the latest sample.
    demand: f64,
    /// Live connections of the previous sample (for storm detection).
    last_live: Option<f64>,
    surge_until: Option<Duration>,
    /// Last time the edge queued or refused connections.
    last_unmet: Option<Duration>,
    storm: Option<Storm>,
    last_scale_down: Option<Duration>,
    current: Option<u32>,
}

#[derive(Clone, Copy, Debug)]
struct Storm {
    until: Duration,
    floor: f64,
}

impl TidegatePolicy {
    /// A policy with the given (validated) config.
    pub fn new(cfg: TidegatePolicyConfig) -> Self {
        let tick = cfg.tick.as_secs_f64().max(1e-3);
        let longest = cfg.scale_down_window.max(cfg.unmet_window).as_secs_f64();
        let samples = (longest / tick).ceil() as usize + 2;
        let (window, lag) = cfg.trend_samples();
        TidegatePolicy {
            trend: RobustSlope::new(window, lag),
            slope: 0.0,
            history: History::new((cfg.unmet_window.as_secs_f64() / tick).ceil() as usize + 2),
            peaks: PeakWindow::new(samples),
            serving_peaks: PeakWindow::new(
                (cfg.serving_window.as_secs_f64() / tick).ceil() as usize + 2,
            ),
            now: Duration::ZERO,
            demand: 0.0,
            last_live: None,
            surge_until: None,
            last_unmet: None,
            storm: None,
            last_scale_down: None,
            current: None,
            cfg,
        }
    }

    /// The config in use.
    pub fn config(&self) -> &TidegatePolicyConfig {
        &self.cfg
    }

    /// True while surge mode is on at `now`.
    pub fn in_surge(&self, now: Duration) -> bool {
        self.surge_until.is_some_and(|u| now < u)
    }

    /// True while a detected reconnect storm is being held at `now`.
    pub fn in_storm(&self, now: Duration) -> bool {
        self.storm.is_some_and(|s| now < s.until)
    }

    /// The current demand estimate (connections).
    pub fn demand(&self) -> f64 {
        self.demand
    }

    fn clamp(&self, n: u32) -> u32 {
        n.clamp(self.cfg.min_replicas, self.cfg.max_replicas)
    }

    /// Demand forecast one horizon ahead: linear on the clamped robust slope; in surge mode the
    /// larger of that and compounded growth at the same (clamped) rate.
    fn forecast(&self, now: Duration) -> f64 {
        let h = self.cfg.horizon().as_secs_f64();
        let level = self.demand;
        let cap = self.cfg.max_growth_rate * level;
        let linear = (level + self.slope.clamp(-cap, cap) * h).max(0.0);
        if self.in_surge(now) && level > 0.0 {
            let rate = (self.slope / level).clamp(0.0, self.cfg.max_growth_rate);
            linear.max(level * (rate * h).exp())
        } else {
            linear
        }
    }

    fn detect_storm(&mut self, now: Duration, live: f64) {
        if let Some(prev) = self.last_live
            && prev > 0.0
            && prev - live >= self.cfg.storm_drop * prev
        {
            let floor = self
                .storm
                .filter(|s| now < s.until)
                .map_or(0.0, |s| s.floor);
            let floor = floor.max(self.demand);
            self.storm = Some(Storm {
                until: now + self.cfg.storm_window,
                floor,
            });
        }
        self.last_live = Some(live);
    }

    fn reason(&self, action: Action, load: f64, occupancy: f64, current: u32) -> Reason {
        Reason {
            action,
            basis: "forecast",
            load,
            horizon: self.cfg.horizon(),
            occupancy,
            capacity: self.cfg.capacity,
            current,
            note: "",
        }
    }

    /// Of `replicas`, the pods the edge routes to: enough for demand a short horizon ahead at
    /// the serving occupancy. The rest stay empty (standby), so an over-forecast never strands
    /// connections on pods that will be removed.
    fn serving(&self, replicas: u32) -> u32 {
        let soon = self
            .serving_peaks
            .max_within(self.now, self.cfg.serving_window);
        let per_pod = self.cfg.serving_occupancy * f64::from(self.cfg.capacity);
        let n = pods_for(soon.unwrap_or(self.demand), per_pod);
        n.clamp(self.cfg.min_replicas.min(replicas), replicas)
    }

    fn decision(&self, replicas: u32, reason: Reason, forecast: f64) -> Decision {
        let horizon = self.cfg.horizon();
        Decision {
            replicas,
            serving: Some(self.serving(replicas)),
            reason,
            forecast: Some(Forecast {
                connections: forecast,
                horizon,
            }),
        }
    }

    fn scale_down(&mut self, now: Duration, current: u32, forecast: f64) -> Decision {
        let occ = self.cfg.target_occupancy;
        let per_pod = occ * f64::from(self.cfg.capacity);
        let peak = self
            .peaks
            .max_within(now, self.cfg.scale_down_window)
            .unwrap_or(0.0);
        let load = peak.max(forecast).max(self.demand);
        let need = self.clamp(pods_for(load, per_pod));
        let mut reason = self.reason(Action::Hold, load, occ, current);
        if need >= current {
            return self.decision(current, reason, forecast);
        }
        if f64::from(need) >= f64::from(current) * (1.0 - self.cfg.tolerance) {
            reason.note = "tolerance";
            return self.decision(current, reason, forecast);
        }
        if self
            .last_scale_down
            .is_some_and(|t| now < t + self.cfg.scale_down_interval)
        {
            reason.note = "stabilizing";
            return self.decision(current, reason, forecast);
        }
        let step = ((f64::from(current) * self.cfg.scale_down_step).floor() as u32).max(1);
        let replicas = self.clamp(need.max(current.saturating_sub(step)));
        if replicas >= current {
            reason.note = "min_replicas";
            return self.decision(current, reason, forecast);
        }
        self.last_scale_down = Some(now);
        reason.action = Action::ScaleDown;
        reason.note = if replicas > need {
            "step limit"
        } else {
            "peak of window"
        };
        self.decision(replicas, reason, forecast)
    }
}

impl Policy for TidegatePolicy {
    fn name(&self) -> &str {
        "tidegate"
    }

    fn period(&self) -> Duration {
        self.cfg.tick
    }

    fn observe(&mut self, now: Duration, obs: &Observation<'_>) {
        let live = obs.connections() as f64;
        let queued = f64::from(obs.queued);
        self.history.push(Sample {
            at: now,
            connections: live as u64,
            queued: u64::from(obs.queued),
            refused: u64::from(obs.refused),
        });
        self.detect_storm(now, live);
        let refused = self.history.refused_within(now, self.cfg.unmet_window) as f64;
        let storm = self.storm.filter(|s| now < s.until);
        self.demand = match storm {
            // Reconnecting clients are already counted in the pre-storm floor.
            Some(s) => (live + queued).max(s.floor),
            // Held clients are counted once; refused ones mostly come back as held ones.
            None => live + queued.max(refused),
        };
        self.trend.push(now.as_secs_f64(), self.demand);
        self.slope = self.trend.slope();
        // Just after a saturation ends, the rise of live connections is the backlog of refused
        // clients getting in, not demand growth: the trend is not trusted then.
        let saturated = obs.queued > 0 || refused > 0.0;
        if !saturated
            && self
                .last_unmet
                .is_some_and(|t| now < t + self.cfg.surge_hold)
        {
            self.slope = self.slope.min(0.0);
        }
        self.peaks.push(now, self.demand);
        let h = self.cfg.serving_horizon.as_secs_f64();
        let cap = self.cfg.max_growth_rate * self.demand;
        self.serving_peaks
            .push(now, self.demand + self.slope.clamp(0.0, cap) * h);
        self.now = now;
        let growing = self.slope / self.demand.max(1.0) >= self.cfg.surge_growth_rate;
        let unmet = storm.is_none() && (obs.queued > 0 || refused > 0.0);
        if unmet {
            self.last_unmet = Some(now);
        }
        if growing || unmet {
            self.surge_until = Some(now + self.cfg.surge_hold);
        }
    }

    fn decide(&mut self, now: Duration, obs: &Observation<'_>) -> Decision {
        let current = self.current.unwrap_or(obs.pods.len() as u32).max(1);
        let surge = self.in_surge(now);
        let occ = if surge {
            self.cfg.surge_occupancy
        } else {
            self.cfg.target_occupancy
        };
        let forecast = self.forecast(now);
        let load = forecast.max(self.demand);
        let sized = pods_for(load, occ * f64::from(self.cfg.capacity));
        let up = self.clamp(sized);
        let decision = if up > current || current > self.cfg.max_replicas {
            let mut reason = self.reason(Action::ScaleUp, load, occ, current);
            reason.note = match (surge, sized < up) {
                (_, true) => "min_replicas",
                (true, false) => "surge",
                (false, false) => "",
            };
            if up < current {
                reason.action = Action::ScaleDown;
                reason.note = "max_replicas";
            }
            self.decision(up, reason, forecast)
        } else if surge {
            let mut reason = self.reason(Action::Hold, load, occ, current);
            reason.note = "surge: no scale-down";
            self.decision(self.clamp(current), reason, forecast)
        } else {
            self.scale_down(now, current, forecast)
        };
        self.current = Some(decision.replicas);
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PodObservation, PodPhase};

    fn pods(n: usize, conns: u32) -> Vec<PodObservation> {
        (0..n)
            .map(|i| PodObservation {
                id: i as u64,
                phase: PodPhase::Ready,
                connections: Some(conns),
            })
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
        let d = step(&mut p, 60, &view, 500);
        assert!(p.in_surge(Duration::from_secs(60)));
        assert!(d.replicas > 10, "{}", d.reason);
        assert!(
            d.reason.to_string().starts_with("scale_up: forecast"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn scale_down_is_gradual_and_waits_for_the_window() {
        let mut p = TidegatePolicy::new(TidegatePolicyConfig::default());
        for t in 0..30 {
            step(&mut p, t, &pods(20, 850), 0);
        }
        // Demand falls to a quarter: a storm hold (120 s) then the 120 s peak window pass first.
        let low = pods(20, 200);
        let mut first_down = None;
        let mut last = 20;
        for t in 30..900 {
            let d = step(&mut p, t, &low, 0);
            assert!(d.replicas <= last);
            if d.replicas < last {
                first_down.get_or_insert(t);
                assert!(last - d.replicas <= last / 4, "at most 25% per step");
            }
            last = d.replicas;
        }
        let first = first_down.expect("scaled down eventually");
        assert!(
            first >= 240,
            "storm hold + peak window delay the first step (t={first})"
        );
        assert_eq!(last, 5, "4000 conns at 920/pod");
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
        assert!(p.in_surge(Duration::from_secs(119)));
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
        for t in 301..400 {
            let d = step(&mut p, t, &after, 200);
            assert_eq!(d.replicas, 20, "t={t}: {}", d.reason);
        }
    }
}
