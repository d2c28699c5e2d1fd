//! The two oracles, which know the demand D(·) no other policy sees.
//!
//! - **Oracle-fluid**: s(t) = ceil(D(t)/C), instant and perfectly packed. It is not simulated:
//!   its replica line is the demand line d(t) and its cost is LB1 = Σ d(t)·Δt
//!   ([`fluid_replicas`]).
//! - **Oracle-feasible** ([`OracleFeasible`]): orders pods one worst-case boot delay ahead so that
//!   ready(t) ≥ ceil(D(t)/C), and removes only empty pods (it runs with drain-first actuation).
//!   Its pod-seconds are LB2, the achievable bound under boot delay and sticky connections.
//! - **Oracle-causal** ([`OracleCausal`]): knows the present demand exactly and acts at once
//!   (every simulator step), with no knowledge of the future: it asks for ceil(D(t)/C) and keeps
//!   what it asked for during one worst-case boot, so no pod it ordered is cancelled before it
//!   could serve. Its losses bound what any policy without foresight can do about demand that
//!   rises faster than a pod boots. Run at an occupancy o < 1 (ceil(D(t)/(o·C))) it is the best
//!   a causal policy can do with a standing headroom of 1/o − 1: the suite's frontier reads, per
//!   family, whether any such headroom meets the loss and the cost goal at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::policy::{Action, Decision, Forecast, Observation, Policy, Reason};

/// Oracle-fluid's replica count for demand `d`: `ceil(d / capacity)` within [min, max].
pub fn fluid_replicas(d: f64, capacity: u32, min: u32, max: u32) -> u32 {
    ((d / f64::from(capacity)).ceil().max(0.0) as u32).clamp(min, max)
}

/// Oracle-fluid's replica count for each second of `demand`.
fn fluid_per_second(demand: &[f64], capacity: u32, min: u32, max: u32) -> Vec<u32> {
    demand
        .iter()
        .map(|&d| fluid_replicas(d, capacity, min, max))
        .collect()
}

/// `out[s]` = max of `need` over the window `[s − behind, s + ahead]` (clipped to the ends),
/// by a monotonic deque in one pass.
fn window_max(need: &[u32], behind: usize, ahead: usize, min: u32) -> Vec<u32> {
    let mut out = vec![min; need.len()];
    let mut dq: VecDeque<usize> = VecDeque::new();
    let mut next = 0;
    for (s, slot) in out.iter_mut().enumerate() {
        while next < need.len() && next <= s + ahead {
            while dq.back().is_some_and(|&j| need[j] <= need[next]) {
                dq.pop_back();
            }
            dq.push_back(next);
            next += 1;
        }
        while dq.front().is_some_and(|&j| j + behind < s) {
            dq.pop_front();
        }
        *slot = dq.front().map_or(min, |&j| need[j]);
    }
    out
}

/// Oracle-feasible: sizes for the peak of the known demand over the next `lookahead`.
#[derive(Clone, Debug)]
pub struct OracleFeasible {
    /// For each whole second s: max over [s, s + lookahead] of the fluid replica count.
    future_max: Arc<[u32]>,
    lookahead: Duration,
    capacity: u32,
}

impl OracleFeasible {
    /// An oracle for `demand` sampled once per second, pods of `capacity`, ordering `lookahead`
    /// ahead (worst-case boot plus actuation), within [min, max].
    pub fn new(demand: &[f64], capacity: u32, lookahead: Duration, min: u32, max: u32) -> Self {
        let need = fluid_per_second(demand, capacity, min, max);
        let h = lookahead.as_secs_f64().ceil() as usize;
        OracleFeasible {
            future_max: window_max(&need, 0, h, min).into(),
            lookahead,
            capacity,
        }
    }

    /// The replica count the oracle wants at `now`.
    pub fn target(&self, now: Duration) -> u32 {
        let s = (now.as_secs() as usize).min(self.future_max.len().saturating_sub(1));
        self.future_max.get(s).copied().unwrap_or(0)
    }
}

impl Policy for OracleFeasible {
    fn name(&self) -> &str {
        "Oracle-feasible"
    }

    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn decide(&mut self, now: Duration, obs: &Observation<'_>) -> Decision {
        let replicas = self.target(now);
        let load = f64::from(replicas) * f64::from(self.capacity);
        let action = Action::toward(replicas, obs.desired);
        let reason = Reason {
            action,
            basis: "known peak",
            load,
            horizon: self.lookahead,
            occupancy: 1.0,
            capacity: self.capacity,
            current: obs.desired,
            note: "",
        };
        let forecast = Some(Forecast {
            connections: load,
            horizon: self.lookahead,
        });
        Decision {
            replicas,
            serving: None,
            reason,
            forecast,
        }
    }
}

/// Oracle-causal: ceil(D(now)/C), held for one worst-case boot; no foresight.
#[derive(Clone, Debug)]
pub struct OracleCausal {
    demand: Arc<[f64]>,
    /// For each whole second s: max over [s − hold, s] of the fluid replica count.
    past_max: Arc<[u32]>,
    capacity: u32,
    /// Fraction of a pod's capacity it sizes for.
    occupancy: f64,
    bounds: (u32, u32),
}

impl OracleCausal {
    /// An oracle seeing `demand` (sampled once per second, linear in between) as it happens,
    /// keeping what it asked for during `hold` (a worst-case boot plus actuation), sizing pods
    /// of `capacity` for `occupancy` (0–1] of it.
    pub fn new(
        demand: &[f64],
        capacity: u32,
        occupancy: f64,
        hold: Duration,
        bounds: (u32, u32),
    ) -> Self {
        let (min, max) = bounds;
        let occupancy = occupancy.clamp(1e-3, 1.0);
        let scaled: Vec<f64> = demand.iter().map(|d| d / occupancy).collect();
        let need = fluid_per_second(&scaled, capacity, min, max);
        let h = hold.as_secs_f64().ceil() as usize;
        OracleCausal {
            demand: demand.into(),
            past_max: window_max(&need, h, 0, min).into(),
            capacity,
            occupancy,
            bounds,
        }
    }

    /// D(now), linearly interpolated.
    fn demand_at(&self, now: Duration) -> f64 {
        let t = now.as_secs_f64();
        let i = (t as usize).min(self.demand.len().saturating_sub(1));
        let (d0, d1) = (
            self.demand.get(i).copied().unwrap_or(0.0),
            self.demand.get(i + 1).copied(),
        );
        d1.map_or(d0, |d1| d0 + (d1 - d0) * (t - i as f64))
    }

    /// The replica count the oracle wants at `now`.
    pub fn target(&self, now: Duration) -> u32 {
        let (min, max) = self.bounds;
        let now_need = fluid_replicas(
            self.demand_at(now) / self.occupancy,
            self.capacity,
            min,
            max,
        );
        // The held maximum covers whole seconds up to the last one begun, never the future.
        let s = (now.as_secs() as usize).min(self.past_max.len().saturating_sub(1));
        let held = self.past_max.get(s).copied().unwrap_or(min);
        now_need.max(held)
    }
}

impl Policy for OracleCausal {
    fn name(&self) -> &str {
        "Oracle-causal"
    }

    fn period(&self) -> Duration {
        crate::sim::setup::STEP
    }

    fn decide(&mut self, now: Duration, obs: &Observation<'_>) -> Decision {
        let replicas = self.target(now);
        let action = Action::toward(replicas, obs.desired);
        let reason = Reason {
            action,
            basis: "known present",
            load: self.demand_at(now),
            horizon: Duration::ZERO,
            occupancy: self.occupancy,
            capacity: self.capacity,
            current: obs.desired,
            note: "",
        };
        Decision {
            replicas,
            serving: None,
            reason,
            forecast: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fluid_is_ceil_within_bounds() {
        assert_eq!(fluid_replicas(10_000.0, 1000, 2, 200), 10);
        assert_eq!(fluid_replicas(10_001.0, 1000, 2, 200), 11);
        assert_eq!(fluid_replicas(0.0, 1000, 2, 200), 2);
        assert_eq!(fluid_replicas(1e9, 1000, 2, 200), 200);
    }

    #[test]
    fn causal_follows_the_present_and_holds_for_a_boot() {
        // 2000 until t = 100, 10 000 until t = 150, then 2000 again; hold 30 s
        let demand: Vec<f64> = (0..300)
            .map(|t| {
                if (100..150).contains(&t) {
                    10_000.0
                } else {
                    2000.0
                }
            })
            .collect();
        let o = OracleCausal::new(&demand, 1000, 1.0, Duration::from_secs(30), (2, 200));
        assert_eq!(o.target(Duration::from_secs(99)), 2, "no foresight");
        assert_eq!(
            o.target(Duration::from_millis(99_500)),
            6,
            "the present, interpolated"
        );
        assert_eq!(o.target(Duration::from_secs(100)), 10);
        assert_eq!(o.target(Duration::from_secs(179)), 10, "held for 30 s");
        assert_eq!(o.target(Duration::from_secs(181)), 2);
        // At 0.8 occupancy: 10 000 connections need 13 pods, 2000 need 3.
        let o = OracleCausal::new(&demand, 1000, 0.8, Duration::from_secs(30), (2, 200));
        assert_eq!(o.target(Duration::from_secs(99)), 3);
        assert_eq!(o.target(Duration::from_secs(100)), 13);
    }

    #[test]
    fn feasible_orders_ahead_of_a_step() {
        // demand steps from 2000 to 10 000 at t = 100; lookahead 30 s
        let demand: Vec<f64> = (0..200)
            .map(|t| if t < 100 { 2000.0 } else { 10_000.0 })
            .collect();
        let o = OracleFeasible::new(&demand, 1000, Duration::from_secs(30), 2, 200);
        assert_eq!(o.target(Duration::from_secs(69)), 2);
        assert_eq!(o.target(Duration::from_secs(70)), 10);
        assert_eq!(o.target(Duration::from_secs(199)), 10);
        assert_eq!(
            o.target(Duration::from_secs(500)),
            10,
            "past the end: last value"
        );
    }
}
