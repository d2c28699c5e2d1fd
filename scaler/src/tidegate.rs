//! tidegate's own scaling policy.
//!
//! **In one paragraph.** Every second tidegate estimates demand as the edge sees it: live
//! connections on all pods plus the larger of the connections held in its queue and the attempts
//! it refused in the last 5 s — demand the pods could not take, which scraped per-pod gauges
//! never show. It reads the growth of `ln(demand + one pod)` at several time scales at once
//! (windows of 15 s doubling up to 4 minutes, each the median of differences a quarter window
//! apart), each believed down to 2.5 times its own noise and projected at most two of its own
//! lengths ahead; windows the 15 s window contradicts have seen growth that stopped, and are
//! ignored (`tidegate/trend.rs`). The forecast grows the level (the median of the last 15 s) by
//! the most any believed window projects over the horizon (one boot time × 1.25), at most
//! 1 %/s and 1.6 × demand. Every forecast is checked against demand when its horizon comes (outside
//! episodes of unmet demand), and a scale-up adds the 90th percentile of the last 20 minutes'
//! under-forecasts as margin. **Up** is fast: when that load, or the peak demand of the last
//! minute, exceeds 0.97 of the pods asked for, it orders enough for 0.94 occupancy at once (0.9
//! for the largest demand of an episode in which the edge holds or refuses connections).
//! **Down** needs evidence that holds: nothing booting, no scale-up during the evidence window
//! (the longer of 5 minutes and two boot times), no unmet demand in the last minute, no storm,
//! and the window's peak of the scale-up load fitting one pod fewer at 0.85; then it goes to what
//! that peak needs at 0.85, by at most 25 % (≥ 1 pod) per 30 s. The edge routes new connections
//! only to as many pods as the last minute's peak of demand and short forecast needs at 0.95
//! occupancy (at least what demand now needs): the others stand by empty and are routed to when
//! demand reaches them, so an over-forecast costs pod-seconds but never strands connections on
//! pods that must go, and the pods given up are drained emptiest first and removed only once
//! empty. A one-second drop of live connections by ≥ 2 % is a **reconnect storm**: for 5
//! minutes demand is held at its pre-drop level and refusals are ignored, so neither the dip nor
//! the rebound changes the count — the ReplicaSet replaces the lost pods. Replicas always stay
//! within [min, max].
//!
//! Every constant above is a field of [`TidegatePolicyConfig`]; why this does not churn is in
//! `scaler/README.md`; the actuator side (standby, draining, removal) is [`crate::drain`].

mod calibration;
mod estimate;
mod trend;

use std::time::Duration;

use crate::config::TidegatePolicyConfig;
use crate::history::PeakWindow;
use crate::policy::{Action, Decision, Forecast, Observation, Policy, Reason, pods_for};
use calibration::Calibration;
use estimate::Estimate;

/// tidegate's predictive policy (see the module docs for the one-paragraph explanation).
#[derive(Clone, Debug)]
pub struct TidegatePolicy {
    cfg: TidegatePolicyConfig,
    est: Estimate,
    calibration: Calibration,
    /// The larger of demand and forecast, each second, over the scale-down evidence window.
    peaks: PeakWindow,
    /// Demand each second over the envelope window.
    envelope: PeakWindow,
    /// Recent serving-size loads, so the serving set shrinks only after `serving_window`.
    serving_peaks: PeakWindow,
    now: Duration,
    started: Option<Duration>,
    last_up: Option<Duration>,
    last_down: Option<Duration>,
    current: Option<u32>,
}

impl TidegatePolicy {
    /// A policy with the given (validated) config.
    pub fn new(cfg: TidegatePolicyConfig) -> Self {
        let tick = cfg.tick.as_secs_f64().max(1e-3);
        let ring = |d: Duration| (d.as_secs_f64() / tick).ceil() as usize + 2;
        TidegatePolicy {
            est: Estimate::new(&cfg),
            calibration: Calibration::new(
                ring(cfg.forecast_error_window),
                cfg.forecast_error_quantile,
                f64::from(cfg.capacity),
            ),
            peaks: PeakWindow::new(ring(cfg.scale_down_evidence())),
            envelope: PeakWindow::new(ring(cfg.envelope_window)),
            serving_peaks: PeakWindow::new(ring(cfg.serving_window)),
            now: Duration::ZERO,
            started: None,
            last_up: None,
            last_down: None,
            current: None,
            cfg,
        }
    }

    /// The config in use.
    pub fn config(&self) -> &TidegatePolicyConfig {
        &self.cfg
    }

    /// True while demand went unmet recently (surge mode: no scale-down) at `now`.
    pub fn in_surge(&self, now: Duration) -> bool {
        self.est.unmet(&self.cfg, now)
    }

    /// True while a detected reconnect storm is being held at `now`.
    pub fn in_storm(&self, now: Duration) -> bool {
        self.est.in_storm(now)
    }

    /// The current demand estimate (connections).
    pub fn demand(&self) -> f64 {
        self.est.demand()
    }

    fn clamp(&self, n: u32) -> u32 {
        n.clamp(self.cfg.min_replicas, self.cfg.max_replicas)
    }

    fn per_pod(&self, occupancy: f64) -> f64 {
        occupancy * f64::from(self.cfg.capacity)
    }

    fn reason(&self, action: Action, basis: &'static str, load: f64, occupancy: f64) -> Reason {
        Reason {
            action,
            basis,
            load,
            horizon: if basis == "forecast" {
                self.cfg.horizon()
            } else {
                Duration::ZERO
            },
            occupancy,
            capacity: self.cfg.capacity,
            current: self.current.unwrap_or(0),
            note: "",
        }
    }

    /// Of `replicas`, the pods the edge routes to: enough for demand a short horizon ahead at
    /// the serving occupancy. The rest stay empty (standby), so an over-forecast never strands
    /// connections on pods that will be removed.
    fn serving(&self, replicas: u32) -> u32 {
        let soon = self
            .serving_peaks
            .max_within(self.now, self.cfg.serving_window)
            .unwrap_or(0.0)
            .max(self.est.demand());
        let per_pod = self.per_pod(self.cfg.serving_occupancy);
        let unmet = self.est.unmet_peak(&self.cfg, self.now);
        let n =
            pods_for(soon, per_pod).max(pods_for(unmet, self.per_pod(self.cfg.surge_occupancy)));
        n.clamp(self.cfg.min_replicas.min(replicas), replicas)
    }

    fn decision(&self, replicas: u32, reason: Reason) -> Decision {
        let horizon = self.cfg.horizon();
        Decision {
            replicas,
            serving: Some(self.serving(replicas)),
            reason,
            forecast: Some(Forecast {
                connections: self.est.forecast(&self.cfg, horizon),
                horizon,
            }),
        }
    }

    /// The load a scale-up sizes for: the larger of the forecast plus its recent error margin
    /// (together at most `max_forecast_growth` times demand) and the peak demand of the
    /// envelope window (noise it has seen will come again).
    fn up_load(&self, now: Duration) -> f64 {
        let peak = self
            .envelope
            .max_within(now, self.cfg.envelope_window)
            .unwrap_or(0.0);
        let forecast = self.est.forecast(&self.cfg, self.cfg.horizon());
        self.calibration
            .widen(forecast)
            .min(self.est.most(&self.cfg))
            .max(peak)
    }

    /// The pods the load needs at `occupancy`, and those the peak of an episode of unmet
    /// demand needs at the surge occupancy (it under-counts clients backing off).
    fn need(&self, now: Duration, occupancy: f64) -> u32 {
        let unmet = self.est.unmet_peak(&self.cfg, now);
        let forecast = pods_for(self.up_load(now), self.per_pod(occupancy));
        forecast.max(pods_for(unmet, self.per_pod(self.cfg.surge_occupancy)))
    }

    /// The scale-up, if the load is beyond the trigger occupancy of the pods asked for (or
    /// unmet demand beyond the surge occupancy).
    fn scale_up(&self, now: Duration, current: u32) -> Option<Decision> {
        let triggered = self.need(now, self.cfg.scale_up_occupancy) > current;
        if !triggered && current >= self.cfg.min_replicas {
            return None;
        }
        let sized = self.need(now, self.cfg.target_occupancy);
        let up = self.clamp(sized);
        if up <= current {
            return None;
        }
        let surge = self.in_surge(now);
        let load = self.up_load(now).max(self.est.unmet_peak(&self.cfg, now));
        let mut reason = self.reason(Action::ScaleUp, "forecast", load, self.cfg.target_occupancy);
        reason.note = match (surge, sized < up) {
            (_, true) => "min_replicas",
            (true, false) => "surge",
            (false, false) => "",
        };
        Some(self.decision(up, reason))
    }

    /// Why a scale-down may not happen now, if it may not.
    fn down_blocked(&self, now: Duration, booting: u32) -> Option<&'static str> {
        let evidence = self.cfg.scale_down_evidence();
        let within = |t: Option<Duration>, d: Duration| t.is_some_and(|t| now < t + d);
        if booting > 0 {
            Some("pods booting")
        } else if self.in_surge(now) {
            Some("surge: no scale-down")
        } else if self.in_storm(now) {
            Some("storm")
        } else if within(self.started, evidence) || within(self.last_up, evidence) {
            Some("gathering evidence")
        } else if within(self.last_down, self.cfg.scale_down_interval) {
            Some("stabilizing")
        } else {
            None
        }
    }

    /// A scale-down happens only when the evidence window's peak fits one pod fewer at the
    /// scale-down occupancy (the bottom of the hysteresis band), and then goes to what that
    /// peak needs at the down-target occupancy, by at most a step.
    fn scale_down(&mut self, now: Duration, current: u32, booting: u32) -> Decision {
        let occ = self.cfg.scale_down_occupancy;
        let peak = self
            .peaks
            .max_within(now, self.cfg.scale_down_evidence())
            .unwrap_or(0.0)
            .max(self.est.demand());
        let mut reason = self.reason(Action::Hold, "peak", peak, occ);
        if self.clamp(pods_for(peak, self.per_pod(occ))) >= current {
            return self.decision(current, reason);
        }
        let need = self.clamp(pods_for(peak, self.per_pod(self.cfg.scale_down_target)));
        if let Some(why) = self.down_blocked(now, booting) {
            reason.note = why;
            return self.decision(current, reason);
        }
        let step = ((f64::from(current) * self.cfg.scale_down_step).floor() as u32).max(1);
        let replicas = self.clamp(need.max(current.saturating_sub(step)));
        if replicas >= current {
            reason.note = "min_replicas";
            return self.decision(current, reason);
        }
        self.last_down = Some(now);
        reason.action = Action::ScaleDown;
        reason.note = if replicas > need {
            "step limit"
        } else {
            "peak of window"
        };
        self.decision(replicas, reason)
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
        self.started.get_or_insert(now);
        self.est.observe(&self.cfg, now, obs);
        let demand = self.est.demand();
        self.envelope.push(now, demand);
        self.now = now;
        // During a storm demand is held, and while demand goes unmet the edge cannot count it:
        // forecasts are not checked against either (a surge's errors would hold the margin,
        // and every scale-down with it, for a whole error window after the surge).
        let trusted = !self.in_storm(now) && !self.in_surge(now);
        let horizon = self.cfg.horizon();
        let forecast = self.est.forecast(&self.cfg, horizon);
        self.calibration
            .record(now, horizon, forecast, demand, trusted);
        let unmet = self.est.unmet_peak(&self.cfg, now);
        self.peaks.push(now, self.up_load(now).max(unmet));
        // Demand now, not only the forecast from the (lagging) level: pods that exist take the
        // connections that are here, and a surge faster than the trend lag is served at once.
        let soon = self.est.forecast(&self.cfg, self.cfg.serving_horizon);
        self.serving_peaks.push(now, soon.max(demand));
    }

    fn decide(&mut self, now: Duration, obs: &Observation<'_>) -> Decision {
        let current = self.current.unwrap_or(obs.pods.len() as u32).max(1);
        self.current = Some(current);
        let decision = if let Some(up) = self.scale_up(now, current) {
            self.last_up = Some(now);
            up
        } else if current > self.cfg.max_replicas {
            let mut reason = self.reason(Action::ScaleDown, "peak", 0.0, 0.0);
            reason.note = "max_replicas";
            self.decision(self.cfg.max_replicas, reason)
        } else {
            self.scale_down(now, current, obs.booting())
        };
        self.current = Some(decision.replicas);
        decision
    }
}

#[cfg(test)]
mod tests;
