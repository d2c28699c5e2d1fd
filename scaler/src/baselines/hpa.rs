//! Kubernetes HorizontalPodAutoscaler `autoscaling/v2`, for one `Pods` metric with an
//! `AverageValue` target, as in `pkg/controller/podautoscaler/replica_calculator.go`
//! (`calcPlainMetricReplicas`, `groupPods`) and `horizontal.go`
//! (`stabilizeRecommendationWithBehaviors`, `convertDesiredReplicasWithBehaviorRate`,
//! `storeScaleEvent`).
//!
//! Metric values are handled in milli-units with integer division as the controller does.

use std::collections::VecDeque;
use std::time::Duration;

use crate::policy::{Action, Decision, Observation, PodPhase, Policy, Reason};

/// Default HPA sync period (`--horizontal-pod-autoscaler-sync-period`).
pub const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(15);
/// Default tolerance (`--horizontal-pod-autoscaler-tolerance`).
pub const DEFAULT_TOLERANCE: f64 = 0.1;
/// Default scale-down stabilization window.
pub const DEFAULT_DOWN_STABILIZATION: Duration = Duration::from_secs(300);

/// One scaling policy of an HPA behavior rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScalingPolicy {
    /// Change by at most this many pods per period.
    Pods {
        /// Pods.
        value: i32,
        /// Period.
        period: Duration,
    },
    /// Change by at most this percentage per period.
    Percent {
        /// Percent.
        value: i32,
        /// Period.
        period: Duration,
    },
}

impl ScalingPolicy {
    fn period(&self) -> Duration {
        match self {
            ScalingPolicy::Pods { period, .. } | ScalingPolicy::Percent { period, .. } => *period,
        }
    }
}

/// An HPA scaling rule (one direction): stabilization window and policies, `selectPolicy: Max`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingRules {
    /// Stabilization window.
    pub stabilization: Duration,
    /// Policies; the one allowing the biggest change wins (`selectPolicy: Max`).
    pub policies: Vec<ScalingPolicy>,
}

/// HPA settings. [`HpaConfig::default`] is the Kubernetes default behavior with target 700.
#[derive(Clone, Debug, PartialEq)]
pub struct HpaConfig {
    /// Display name (`HPA-prom`, `HPA-direct`).
    pub name: &'static str,
    /// Pods metric `AverageValue` target (connections per pod).
    pub target: f64,
    /// Tolerance around a usage ratio of 1.
    pub tolerance: f64,
    /// Sync period.
    pub sync_period: Duration,
    /// `minReplicas`.
    pub min_replicas: u32,
    /// `maxReplicas`.
    pub max_replicas: u32,
    /// Scale-up rule (default: stabilization 0, max(+4 pods, +100%) per 15 s).
    pub up: ScalingRules,
    /// Scale-down rule (default: stabilization 300 s, 100% per 15 s).
    pub down: ScalingRules,
}

impl Default for HpaConfig {
    fn default() -> Self {
        let p15 = Duration::from_secs(15);
        HpaConfig {
            name: "HPA",
            target: 700.0,
            tolerance: DEFAULT_TOLERANCE,
            sync_period: DEFAULT_SYNC_PERIOD,
            min_replicas: 2,
            max_replicas: 200,
            up: ScalingRules {
                stabilization: Duration::ZERO,
                policies: vec![
                    ScalingPolicy::Pods {
                        value: 4,
                        period: p15,
                    },
                    ScalingPolicy::Percent {
                        value: 100,
                        period: p15,
                    },
                ],
            },
            down: ScalingRules {
                stabilization: DEFAULT_DOWN_STABILIZATION,
                policies: vec![ScalingPolicy::Percent {
                    value: 100,
                    period: p15,
                }],
            },
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Timed {
    at: Duration,
    value: i32,
}

/// The HPA controller for one target.
#[derive(Clone, Debug)]
pub struct Hpa {
    cfg: HpaConfig,
    recommendations: VecDeque<Timed>,
    up_events: VecDeque<Timed>,
    down_events: VecDeque<Timed>,
}

/// Outcome of the replica calculator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calc {
    /// A proposal and the average value (milli) it was computed from.
    Replicas(i32, i64),
    /// No pod had a metric ("did not receive metrics for targeted pods").
    NoMetrics,
}

/// `calcPlainMetricReplicas` for per-pod values (in connections) and a target average value.
///
/// `pods`: for each pod not being deleted, its phase and metric sample (`None` = missing).
pub fn replica_calc(pods: &[(PodPhase, Option<u32>)], current: i32, target: f64, tol: f64) -> Calc {
    let target_m = (target * 1000.0) as i64;
    let (mut sum, mut n, mut ready) = (0i64, 0i64, 0i64);
    let (mut unready, mut missing) = (0i64, 0i64);
    for &(phase, value) in pods {
        match (phase, value) {
            (PodPhase::Booting, _) => unready += 1,
            (_, None) => missing += 1,
            (_, Some(v)) => {
                sum += i64::from(v) * 1000;
                n += 1;
                ready += 1;
            }
        }
    }
    if n == 0 {
        return Calc::NoMetrics;
    }
    let usage = sum / n;
    let ratio = usage as f64 / target_m as f64;
    let up_with_unready = unready > 0 && ratio > 1.0;
    if !up_with_unready && missing == 0 {
        if (1.0 - ratio).abs() <= tol {
            return Calc::Replicas(current, usage);
        }
        return Calc::Replicas((ratio * ready as f64).ceil() as i32, usage);
    }
    if missing > 0 {
        // scale-down: missing pods at the target; scale-up: at 0
        sum += if ratio < 1.0 { missing * target_m } else { 0 };
        n += missing;
    }
    if up_with_unready {
        n += unready;
    }
    let new_ratio = (sum / n) as f64 / target_m as f64;
    if (1.0 - new_ratio).abs() <= tol
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Calc::Replicas(current, usage);
    }
    let proposed = (new_ratio * n as f64).ceil() as i32;
    if (new_ratio < 1.0 && proposed > current) || (new_ratio > 1.0 && proposed < current) {
        return Calc::Replicas(current, usage);
    }
    Calc::Replicas(proposed, usage)
}

fn change_in_period(events: &VecDeque<Timed>, now: Duration, period: Duration) -> i32 {
    let cutoff = now.checked_sub(period);
    events
        .iter()
        .filter(|e| cutoff.is_none_or(|c| e.at > c))
        .map(|e| e.value)
        .sum()
}

impl Hpa {
    /// An HPA with the given settings.
    pub fn new(cfg: HpaConfig) -> Self {
        Hpa {
            cfg,
            recommendations: VecDeque::new(),
            up_events: VecDeque::new(),
            down_events: VecDeque::new(),
        }
    }

    /// `stabilizeRecommendationWithBehaviors`: bound by the min of recent recommendations (up
    /// window) and the max (down window), then record the raw recommendation.
    fn stabilize(&mut self, now: Duration, current: i32, desired: i32) -> i32 {
        if self.recommendations.is_empty() {
            // maybeInitScaleDownStabilizationWindow
            self.recommendations.push_back(Timed {
                at: now,
                value: current,
            });
        }
        let up_cut = now.checked_sub(self.cfg.up.stabilization);
        let down_cut = now.checked_sub(self.cfg.down.stabilization);
        let (mut up_rec, mut down_rec) = (desired, desired);
        for r in &self.recommendations {
            if up_cut.is_none_or(|c| r.at > c) {
                up_rec = up_rec.min(r.value);
            }
            if down_cut.is_none_or(|c| r.at > c) {
                down_rec = down_rec.max(r.value);
            }
        }
        let longest = self.cfg.up.stabilization.max(self.cfg.down.stabilization);
        let keep = now.checked_sub(longest);
        self.recommendations
            .retain(|r| keep.is_none_or(|c| r.at >= c));
        self.recommendations.push_back(Timed {
            at: now,
            value: desired,
        });
        current.max(up_rec).min(down_rec)
    }

    fn up_limit(&self, now: Duration, current: i32) -> i32 {
        let mut limit = i32::MIN;
        for p in &self.cfg.up.policies {
            let start = current - change_in_period(&self.up_events, now, p.period())
                + change_in_period(&self.down_events, now, p.period());
            let proposed = match *p {
                ScalingPolicy::Pods { value, .. } => start + value,
                ScalingPolicy::Percent { value, .. } => {
                    (f64::from(start) * (1.0 + f64::from(value) / 100.0)).ceil() as i32
                }
            };
            limit = limit.max(proposed);
        }
        limit
    }

    fn down_limit(&self, now: Duration, current: i32) -> i32 {
        let mut limit = i32::MAX;
        for p in &self.cfg.down.policies {
            let start = current - change_in_period(&self.up_events, now, p.period())
                + change_in_period(&self.down_events, now, p.period());
            let proposed = match *p {
                ScalingPolicy::Pods { value, .. } => start - value,
                ScalingPolicy::Percent { value, .. } => {
                    (f64::from(start) * (1.0 - f64::from(value) / 100.0)) as i32
                }
            };
            limit = limit.min(proposed);
        }
        limit
    }

    /// `convertDesiredReplicasWithBehaviorRate`.
    fn rate_limit(&self, now: Duration, current: i32, desired: i32) -> (i32, &'static str) {
        let (min, max) = (self.cfg.min_replicas as i32, self.cfg.max_replicas as i32);
        if desired > current {
            let up = self.up_limit(now, current).max(current);
            let (allowed, why) = if max > up {
                (up, "ScaleUpLimit")
            } else {
                (max, "TooManyReplicas")
            };
            if desired > allowed {
                return (allowed, why);
            }
        } else if desired < current {
            let down = self.down_limit(now, current).min(current);
            let (allowed, why) = if min < down {
                (down, "ScaleDownLimit")
            } else {
                (min, "TooFewReplicas")
            };
            if desired < allowed {
                return (allowed, why);
            }
        }
        (desired, "")
    }

    fn store_event(&mut self, now: Duration, prev: i32, new: i32) {
        let longest = |r: &ScalingRules| r.policies.iter().map(ScalingPolicy::period).max();
        let (events, change, keep) = if new > prev {
            (&mut self.up_events, new - prev, longest(&self.cfg.up))
        } else {
            (&mut self.down_events, prev - new, longest(&self.cfg.down))
        };
        let cutoff = keep.and_then(|k| now.checked_sub(k));
        events.retain(|e| cutoff.is_none_or(|c| e.at > c));
        events.push_back(Timed {
            at: now,
            value: change,
        });
    }
}

impl Policy for Hpa {
    fn name(&self) -> &str {
        self.cfg.name
    }

    fn period(&self) -> Duration {
        self.cfg.sync_period
    }

    fn decide(&mut self, now: Duration, obs: &Observation<'_>) -> Decision {
        let current = obs.desired as i32;
        let (min, max) = (self.cfg.min_replicas as i32, self.cfg.max_replicas as i32);
        let mut reason = Reason {
            action: Action::Hold,
            basis: "avg",
            load: 0.0,
            horizon: Duration::ZERO,
            occupancy: self.cfg.target / 1000.0,
            capacity: 1000,
            current: obs.desired,
            note: "",
        };
        let desired = if current > max {
            max
        } else if current < min {
            min
        } else {
            let samples = obs.pods.iter().map(|p| (p.phase, p.connections));
            let pods: Vec<(PodPhase, Option<u32>)> = samples.collect();
            match replica_calc(&pods, current, self.cfg.target, self.cfg.tolerance) {
                Calc::NoMetrics => {
                    return Decision {
                        replicas: obs.desired,
                        serving: None,
                        reason: Reason::hold(obs.desired, "no metrics for targeted pods"),
                        forecast: None,
                    };
                }
                Calc::Replicas(proposal, usage) => {
                    reason.load = usage as f64 / 1000.0 * f64::from(obs.desired);
                    let stable = self.stabilize(now, current, proposal);
                    if stable != proposal {
                        reason.note = "stabilized";
                    }
                    let (limited, why) = self.rate_limit(now, current, stable);
                    if !why.is_empty() {
                        reason.note = why;
                    }
                    limited
                }
            }
        };
        if desired != current {
            self.store_event(now, current, desired);
        }
        reason.action = Action::toward(desired, current);
        Decision {
            replicas: desired.max(0) as u32,
            serving: None,
            reason,
            forecast: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PodObservation;

    fn ready(v: &[u32]) -> Vec<(PodPhase, Option<u32>)> {
        v.iter().map(|&c| (PodPhase::Ready, Some(c))).collect()
    }

    #[test]
    fn replica_calc_table() {
        // (pods, current, expected) with target 700, tolerance 0.1
        let booting = (PodPhase::Booting, None);
        let missing = (PodPhase::Ready, None);
        type Pods = Vec<(PodPhase, Option<u32>)>;
        let cases: Vec<(Pods, i32, i32)> = vec![
            (ready(&[700, 700]), 2, 2),                             // ratio 1
            (ready(&[760, 760]), 2, 2),                             // within tolerance
            (ready(&[1000, 1000]), 2, 3),                           // ceil(1.4286*2)
            (ready(&[300, 300, 300]), 3, 2),                        // ceil(0.4286*3)
            ([ready(&[1000, 1000]), vec![booting]].concat(), 3, 3), // unready count 0: 2000/3=666 → within tol → current
            (
                [ready(&[1000, 1000]), vec![booting, booting]].concat(),
                4,
                4,
            ), // 500: direction flips → current
            ([ready(&[1000, 1000, 1000]), vec![booting]].concat(), 4, 4), // 750: 1.07 within tol
            ([ready(&[1000, 1000]), vec![missing]].concat(), 3, 3), // up: missing at 0 → 666 → tol → 3
            ([ready(&[200, 200]), vec![missing]].concat(), 3, 2), // down: missing at 700 → 366 → ceil(0.5238*3)=2
        ];
        for (i, (pods, current, want)) in cases.into_iter().enumerate() {
            let got = match replica_calc(&pods, current, 700.0, 0.1) {
                Calc::Replicas(r, _) => r,
                Calc::NoMetrics => -1,
            };
            assert_eq!(got, want, "case {i}");
        }
        assert_eq!(replica_calc(&[booting], 1, 700.0, 0.1), Calc::NoMetrics);
    }

    fn obs_pods(v: &[u32]) -> Vec<PodObservation> {
        v.iter()
            .enumerate()
            .map(|(i, &c)| PodObservation::ready(i as u64, c))
            .collect()
    }

    fn sync(h: &mut Hpa, t: u64, pods: &[PodObservation], desired: u32) -> u32 {
        let obs = Observation {
            pods,
            desired,
            queued: 0,
            refused: 0,
        };
        h.decide(Duration::from_secs(t), &obs).replicas
    }

    #[test]
    fn scale_up_is_limited_to_max_of_four_pods_and_double_per_15s() {
        let mut h = Hpa::new(HpaConfig::default());
        // 2 pods at 1000 with 10 000 demand queued behind: ratio 1.43 → 3 (limit max(6, 4) = 6)
        assert_eq!(sync(&mut h, 0, &obs_pods(&[1000, 1000]), 2), 3);
        // 3 pods all at 1000 with real need 20: proposal ceil(1.4286*3) = 5
        assert_eq!(sync(&mut h, 15, &obs_pods(&[1000; 3]), 3), 5);
        // a huge ratio: 5 pods at 7000 (hypothetical) → proposal 50, limit max(5+4, 10) = 10
        assert_eq!(sync(&mut h, 30, &obs_pods(&[7000; 5]), 5), 10);
        // within the same 15 s period another sync: events in period = +5 → start 5 → limit 10
        assert_eq!(sync(&mut h, 40, &obs_pods(&[7000; 10]), 10), 10);
        // next period: start 10 → limit 20
        assert_eq!(sync(&mut h, 55, &obs_pods(&[7000; 10]), 10), 20);
    }

    #[test]
    fn scale_down_waits_for_the_300s_stabilization_window() {
        let mut h = Hpa::new(HpaConfig::default());
        let busy = obs_pods(&[700; 10]);
        let idle = obs_pods(&[140; 10]); // ratio 0.2 → proposal 2
        assert_eq!(sync(&mut h, 0, &busy, 10), 10);
        let mut t = 15;
        while t < 300 {
            assert_eq!(sync(&mut h, t, &idle, 10), 10, "t={t}");
            t += 15;
        }
        // at t = 300 the recommendation 10 recorded at t = 0 is out of the window (strictly after)
        assert_eq!(sync(&mut h, 300, &idle, 10), 2);
    }

    #[test]
    fn min_and_max_are_enforced_before_metrics() {
        let mut h = Hpa::new(HpaConfig {
            max_replicas: 5,
            ..HpaConfig::default()
        });
        assert_eq!(sync(&mut h, 0, &obs_pods(&[700; 8]), 8), 5);
        assert_eq!(sync(&mut h, 15, &obs_pods(&[700]), 1), 2);
    }
}
