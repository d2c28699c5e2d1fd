//! The two oracles, which know the demand D(·) no other policy sees.
//!
//! - **Oracle-fluid**: s(t) = ceil(D(t)/C), instant and perfectly packed. It is not simulated:
//!   its replica line is the demand line d(t) and its cost is LB1 = Σ d(t)·Δt
//!   ([`fluid_replicas`]).
//! - **Oracle-feasible** ([`OracleFeasible`]): orders pods one worst-case boot delay ahead so that
//!   ready(t) ≥ ceil(D(t)/C), and removes only empty pods (it runs with drain-first actuation).
//!   Its pod-seconds are LB2, the achievable bound under boot delay and sticky connections.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::policy::{Action, Decision, Forecast, Observation, Policy, Reason};

/// Oracle-fluid's replica count for demand `d`: `ceil(d / capacity)` within [min, max].
pub fn fluid_replicas(d: f64, capacity: u32, min: u32, max: u32) -> u32 {
    ((d / f64::from(capacity)).ceil().max(0.0) as u32).clamp(min, max)
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
        let need: Vec<u32> = demand
            .iter()
            .map(|&d| fluid_replicas(d, capacity, min, max))
            .collect();
        let h = lookahead.as_secs_f64().ceil() as usize;
        let mut out = vec![min; need.len()];
        // Sliding-window maximum over [s, s + h], from the end (monotonic deque of indices).
        let mut dq: VecDeque<usize> = VecDeque::new();
        for s in (0..need.len()).rev() {
            while dq.back().is_some_and(|&j| need[j] <= need[s]) {
                dq.pop_back();
            }
            dq.push_back(s);
            while dq.front().is_some_and(|&j| j > s + h) {
                dq.pop_front();
            }
            out[s] = dq.front().map_or(min, |&j| need[j]);
        }
        OracleFeasible {
            future_max: out.into(),
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
        let action = match replicas.cmp(&obs.desired) {
            std::cmp::Ordering::Greater => Action::ScaleUp,
            std::cmp::Ordering::Less => Action::ScaleDown,
            std::cmp::Ordering::Equal => Action::Hold,
        };
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
