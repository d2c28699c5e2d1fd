//! The seed's predictor ("Seed2"): sample total connections every 10 s, least-squares fit over
//! the last 5 samples (quadratic; linear as an ablation), predict at now + boot estimate, and
//! size `ceil(load / T)`.
//!
//! Variant (a): if the prediction is below the current count, size for 0.95 × current.
//! Variant (b): size on the prediction, but replicas drop at most 5 % per cycle
//! (`max(desired, floor(0.95 × previous))`). With fewer than 3 samples the current count is used.

use std::collections::VecDeque;
use std::time::Duration;

use crate::forecast::polyfit_predict;
use crate::policy::{Action, Decision, Forecast, Observation, Policy, Reason, pods_for};

/// Which of the seed's fallbacks applies when the prediction falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// (a) size for 0.95 × current connections when the prediction is below them.
    A,
    /// (b) replicas drop at most 5 % per cycle.
    B,
}

/// Seed2 settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Seed2Config {
    /// Display name.
    pub name: &'static str,
    /// Fallback variant.
    pub variant: Variant,
    /// Degree of the least-squares fit: 2 (the seed) or 1 (ablation).
    pub degree: usize,
    /// Sample and decision period (10 s).
    pub period: Duration,
    /// Samples in the fit (5).
    pub samples: usize,
    /// Boot estimate: the prediction horizon.
    pub boot_estimate: Duration,
    /// Target connections per pod (700).
    pub target: f64,
    /// Replica bounds.
    pub min_replicas: u32,
    /// Replica bounds.
    pub max_replicas: u32,
}

impl Default for Seed2Config {
    fn default() -> Self {
        Seed2Config {
            name: "Seed2-a",
            variant: Variant::A,
            degree: 2,
            period: Duration::from_secs(10),
            samples: 5,
            boot_estimate: Duration::from_secs(45),
            target: 700.0,
            min_replicas: 2,
            max_replicas: 200,
        }
    }
}

/// The seed's predictive policy.
#[derive(Clone, Debug)]
pub struct Seed2 {
    cfg: Seed2Config,
    points: VecDeque<(f64, f64)>,
    fit: Vec<(f64, f64)>,
    last: Option<u32>,
}

impl Seed2 {
    /// A predictor with the given settings.
    pub fn new(cfg: Seed2Config) -> Self {
        let n = cfg.samples.max(3);
        Seed2 {
            points: VecDeque::with_capacity(n),
            fit: Vec::with_capacity(n),
            last: None,
            cfg,
        }
    }

    /// Adds a sample and returns (load to size for, raw prediction).
    fn step(&mut self, now: Duration, current: f64) -> (f64, f64) {
        if self.points.len() == self.cfg.samples {
            self.points.pop_front();
        }
        let t = now.as_secs_f64();
        self.points.push_back((t, current));
        self.fit.clear();
        self.fit.extend(self.points.iter().copied());
        let at = t + self.cfg.boot_estimate.as_secs_f64();
        let degree = if self.fit.len() >= 3 {
            self.cfg.degree
        } else {
            0
        };
        let predicted = if degree == 0 {
            current
        } else {
            polyfit_predict(&self.fit, degree, at).unwrap_or(current)
        };
        let load = match self.cfg.variant {
            Variant::A if predicted < current => 0.95 * current,
            _ => predicted,
        };
        (load, predicted)
    }
}

impl Policy for Seed2 {
    fn name(&self) -> &str {
        self.cfg.name
    }

    fn period(&self) -> Duration {
        self.cfg.period
    }

    fn decide(&mut self, now: Duration, obs: &Observation<'_>) -> Decision {
        let current = obs.connections() as f64;
        let (load, predicted) = self.step(now, current);
        let mut desired = pods_for(load, self.cfg.target);
        let mut note = "";
        if self.cfg.variant == Variant::B {
            let prev = self.last.unwrap_or(obs.desired);
            let floor = (f64::from(prev) * 0.95).floor() as u32;
            if desired < floor {
                desired = floor;
                note = "max 5% down";
            }
        }
        let replicas = desired.clamp(self.cfg.min_replicas, self.cfg.max_replicas);
        self.last = Some(replicas);
        let action = Action::toward(replicas, obs.desired);
        let reason = Reason {
            action,
            basis: "forecast",
            load,
            horizon: self.cfg.boot_estimate,
            occupancy: self.cfg.target / 1000.0,
            capacity: 1000,
            current: obs.desired,
            note,
        };
        let forecast = Some(Forecast {
            connections: predicted,
            horizon: self.cfg.boot_estimate,
        });
        Decision {
            replicas,
            serving: None,
            reason,
            forecast,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PodObservation;

    fn run(cfg: Seed2Config, totals: &[u32], desired: u32) -> Vec<u32> {
        let mut s = Seed2::new(cfg);
        let mut d = desired;
        totals
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let pods = [PodObservation::ready(0, c)];
                let obs = Observation {
                    pods: &pods,
                    desired: d,
                    queued: 0,
                    refused: 0,
                };
                d = s.decide(Duration::from_secs(10 * i as u64), &obs).replicas;
                d
            })
            .collect()
    }

    #[test]
    fn quadratic_extrapolates_a_parabola_45s_ahead() {
        // totals 1000 + 10 t^2/100 at t = 0..40: exact parabola
        let totals: Vec<u32> = (0..5)
            .map(|i| 1000 + (10 * i * i * 100) / 100 * 10)
            .collect();
        // t_i = 10 i: y = 1000 + 100 i^2 ; at t = 85 (i = 8.5): 1000 + 7225 = 8225 → ceil(8225/700) = 12
        let got = run(Seed2Config::default(), &totals, 2);
        assert_eq!(got[4], 12);
        // first samples: < 3 points → current count: 1000 → 2; 1100 → 2
        assert_eq!(&got[..2], &[2, 2]);
    }

    #[test]
    fn variant_a_uses_95_percent_of_current_when_falling() {
        let totals = [7000, 6000, 5000, 4000, 3000];
        let got = run(Seed2Config::default(), &totals, 10);
        // fit is linear falling: prediction < current → load 0.95 × 3000 = 2850 → 5
        assert_eq!(got[4], 5);
    }

    #[test]
    fn variant_b_drops_at_most_five_percent() {
        let cfg = Seed2Config {
            name: "Seed2-b",
            variant: Variant::B,
            ..Seed2Config::default()
        };
        let got = run(cfg, &[700; 5], 40);
        // floor(0.95 × 40) = 38, then 36, 34, 32
        assert_eq!(got, vec![38, 36, 34, 32, 30]);
    }
}
