//! What the world accumulates every step (costs, elasticity, the timeline) and what it works
//! out at the end from its once-a-second record (time to cover and settling time after each
//! marked demand change).

use std::time::Duration;

use super::{DT, TIMELINE_EVERY, TimelinePoint, World};
use crate::baselines::oracle::fluid_replicas;
use crate::sim::pods::Stage;
use crate::sim::trace::Trace;

/// Steps per second of the once-a-second record.
const SECOND: u64 = 10;

/// Ready and `spec.replicas` at one second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Second {
    pub ready: u32,
    pub spec: u32,
}

impl World<'_> {
    pub(super) fn account(&mut self, d: f64) {
        let (mut billed, mut ready) = (0u32, 0u32);
        for (_, p) in self.pods.alive() {
            billed += 1;
            ready += u32::from(p.stage == Stage::Running);
        }
        let need = fluid_replicas(
            d,
            self.cfg.capacity,
            self.cfg.min_replicas,
            self.cfg.max_replicas,
        );
        let m = &mut self.m;
        m.pod_seconds += f64::from(billed) * DT;
        m.lb1_pod_seconds += f64::from(need) * DT;
        m.connection_hours += self.pods.connections() as f64 * DT / 3600.0;
        let (s, dd) = (f64::from(ready), f64::from(need.max(1)));
        m.theta_u += (dd - s).max(0.0) / dd * DT;
        m.theta_o += (s - dd).max(0.0) / dd * DT;
        m.tau_u += if s < dd { DT } else { 0.0 };
        m.tau_o += if s > dd { DT } else { 0.0 };
        if self.k.is_multiple_of(SECOND) {
            self.seconds.push(Second {
                ready,
                spec: self.spec,
            });
        }
        if self.record && self.k >= self.origin && self.k.is_multiple_of(TIMELINE_EVERY) {
            self.out.timeline.push(TimelinePoint {
                t: self.measured_t(),
                demand: d,
                connections: self.pods.connections() as f64,
                ready,
                replicas: self.spec,
            });
        }
    }

    pub(super) fn check_forecasts(&mut self, d: f64) {
        while self.forecasts.front().is_some_and(|f| f.0 <= self.k) {
            if let Some((_, f, naive)) = self.forecasts.pop_front() {
                self.fc_err.add(f, naive, d);
            }
        }
    }

    /// Time to cover and settling time, each the largest over the trace's marks (NaN without
    /// marks).
    pub(super) fn cover_and_settle(&self) -> (f64, f64) {
        let origin = Duration::from_secs(self.origin / SECOND);
        after_marks(self.trace, origin, &self.seconds, self.cfg.capacity)
    }
}

/// For each mark, up to the next mark or the end: **time to cover** is how long after the mark
/// ready capacity last fell short of demand (0 if it never did), **settling time** how long
/// after it `spec.replicas` last changed (0 if it never did). Returns the largest of each.
/// `seconds[i]` is the state at `origin + i` s.
pub(crate) fn after_marks(
    trace: &Trace,
    origin: Duration,
    seconds: &[Second],
    capacity: u32,
) -> (f64, f64) {
    if trace.marks.is_empty() || seconds.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let end = seconds.len();
    let idx = |d: Duration| (d.saturating_sub(origin).as_secs() as usize).min(end);
    let base = origin.as_secs() as f64;
    let (mut cover, mut settle) = (0.0f64, 0.0f64);
    for (i, &mark) in trace.marks.iter().enumerate() {
        let from = idx(mark);
        let to = trace.marks.get(i + 1).map_or(end, |&m| idx(m)).max(from);
        let short = (from..to).rev().find(|&s| {
            f64::from(seconds[s].ready) * f64::from(capacity) < trace.at(base + s as f64).0
        });
        let moved = (from + 1..to)
            .rev()
            .find(|&s| seconds[s].spec != seconds[s - 1].spec);
        cover = cover.max(short.map_or(0.0, |s| (s + 1 - from) as f64));
        settle = settle.max(moved.map_or(0.0, |s| (s - from) as f64));
    }
    (cover, settle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cover_and_settle_are_measured_from_each_mark() {
        let mut trace = Trace::new(
            "t",
            vec![1000.0; 10]
                .into_iter()
                .chain(vec![3000.0; 20])
                .collect(),
        );
        trace.marks = vec![Duration::from_secs(10)];
        // 2 pods until t = 14, then 3; spec goes 2 → 4 at 11 → 3 at 18
        let seconds: Vec<Second> = (0..30)
            .map(|t| Second {
                ready: if t < 14 { 2 } else { 3 },
                spec: match t {
                    0..11 => 2,
                    11..18 => 4,
                    _ => 3,
                },
            })
            .collect();
        let (cover, settle) = after_marks(&trace, Duration::ZERO, &seconds, 1000);
        assert_eq!(cover, 4.0, "short of 3000 until t = 13 inclusive");
        assert_eq!(settle, 8.0, "last change at t = 18");
        let mut shifted = trace.with_preroll(5);
        shifted.marks = vec![Duration::from_secs(15)];
        let later = after_marks(&shifted, Duration::from_secs(5), &seconds, 1000);
        assert_eq!(
            later,
            (cover, settle),
            "measured from the end of a pre-roll"
        );
        trace.marks.clear();
        assert!(
            after_marks(&trace, Duration::ZERO, &seconds, 1000)
                .0
                .is_nan()
        );
    }
}
