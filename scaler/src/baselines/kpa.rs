//! Knative Serving's autoscaler (KPA) as in `pkg/autoscaler/scaling/autoscaler.go`: stable and
//! panic windows averaged over 1 s buckets, panic mode, maximum scale-up and scale-down rates.
//!
//! Concurrency here is live connections. The metric collector records one bucket per second with
//! the total over ready pods; a window average divides by the buckets seen so far, up to the
//! window length (`TimedFloat64Buckets::WindowAverage`).

use std::time::Duration;

use crate::policy::{Action, Decision, Observation, Policy, Reason};

/// KPA settings (Knative defaults with container concurrency C = 1000).
#[derive(Clone, Debug, PartialEq)]
pub struct KpaConfig {
    /// Target concurrency per pod: `containerConcurrency × target-utilization` (700).
    pub target: f64,
    /// Stable window (60 s).
    pub stable_window: Duration,
    /// Panic window (6 s = 10 % of the stable window).
    pub panic_window: Duration,
    /// Decision tick (2 s).
    pub tick: Duration,
    /// Panic threshold as a ratio (2.0 = 200 %).
    pub panic_threshold: f64,
    /// Max scale-up rate (1000).
    pub max_scale_up_rate: f64,
    /// Max scale-down rate (2).
    pub max_scale_down_rate: f64,
    /// `min-scale`.
    pub min_replicas: u32,
    /// `max-scale`.
    pub max_replicas: u32,
}

impl Default for KpaConfig {
    fn default() -> Self {
        KpaConfig {
            target: 700.0,
            stable_window: Duration::from_secs(60),
            panic_window: Duration::from_secs(6),
            tick: Duration::from_secs(2),
            panic_threshold: 2.0,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            min_replicas: 2,
            max_replicas: 200,
        }
    }
}

/// The KPA decider for one revision.
#[derive(Clone, Debug)]
pub struct Kpa {
    cfg: KpaConfig,
    /// 1 s buckets, newest last, at most `stable_window` of them.
    buckets: Vec<f64>,
    head: usize,
    len: usize,
    panic_time: Option<Duration>,
    max_panic_pods: u32,
}

impl Kpa {
    /// A decider with the given settings.
    pub fn new(cfg: KpaConfig) -> Self {
        let n = cfg.stable_window.as_secs().max(1) as usize;
        Kpa {
            buckets: vec![0.0; n],
            head: 0,
            len: 0,
            panic_time: None,
            max_panic_pods: 0,
            cfg,
        }
    }

    /// Records the total concurrency of one 1 s bucket.
    pub fn record(&mut self, total: f64) {
        let cap = self.buckets.len();
        self.buckets[(self.head + self.len) % cap] = total;
        if self.len == cap {
            self.head = (self.head + 1) % cap;
        } else {
            self.len += 1;
        }
    }

    /// Average of the newest `window` buckets (or of all seen, if fewer).
    pub fn window_average(&self, window: Duration) -> f64 {
        let cap = self.buckets.len();
        let n = (window.as_secs() as usize).min(self.len);
        if n == 0 {
            return 0.0;
        }
        let sum: f64 = (0..n)
            .map(|i| self.buckets[(self.head + self.len - 1 - i) % cap])
            .sum();
        sum / n as f64
    }

    /// `autoscaler.Scale` with `ready` ready pods at `now`.
    pub fn scale(&mut self, now: Duration, ready: u32) -> (u32, Reason) {
        let ready_f = f64::from(ready.max(1));
        let max_up = (self.cfg.max_scale_up_rate * ready_f).ceil();
        let max_down = (ready_f / self.cfg.max_scale_down_rate).floor();
        let stable = self.window_average(self.cfg.stable_window);
        let panic = self.window_average(self.cfg.panic_window);
        let dspc = (stable / self.cfg.target).ceil();
        let dppc = (panic / self.cfg.target).ceil();
        let stable_pods = dspc.max(max_down).min(max_up) as u32;
        let panic_pods = dppc.max(max_down).min(max_up) as u32;
        let over = dppc / ready_f >= self.cfg.panic_threshold;
        if over {
            self.panic_time = Some(now);
        } else if self
            .panic_time
            .is_some_and(|p| p + self.cfg.stable_window < now)
        {
            self.panic_time = None;
            self.max_panic_pods = 0;
        }
        let mut reason = Reason {
            action: Action::Hold,
            basis: "stable",
            load: stable,
            horizon: Duration::ZERO,
            occupancy: self.cfg.target / 1000.0,
            capacity: 1000,
            current: ready,
            note: "",
        };
        let mut desired = stable_pods;
        if self.panic_time.is_some() {
            desired = desired.max(panic_pods);
            if desired > self.max_panic_pods {
                self.max_panic_pods = desired;
            }
            desired = self.max_panic_pods;
            reason.basis = "panic";
            reason.load = panic.max(stable);
            reason.note = "panic: no scale-down";
        }
        let bounded = desired.clamp(self.cfg.min_replicas, self.cfg.max_replicas);
        (bounded, reason)
    }
}

impl Policy for Kpa {
    fn name(&self) -> &str {
        "KPA"
    }

    fn period(&self) -> Duration {
        self.cfg.tick
    }

    fn sample_period(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn observe(&mut self, _now: Duration, obs: &Observation<'_>) {
        self.record(obs.connections() as f64);
    }

    fn decide(&mut self, now: Duration, obs: &Observation<'_>) -> Decision {
        let (replicas, mut reason) = self.scale(now, obs.ready());
        reason.action = Action::toward(replicas, obs.desired);
        reason.current = obs.desired;
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

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn stable_mode_sizes_on_the_60s_average() {
        let mut k = Kpa::new(KpaConfig::default());
        for _ in 0..60 {
            k.record(7000.0);
        }
        assert_eq!(k.scale(secs(60), 10).0, 10);
        // half the window at 14 000: stable avg 10 500 → 15; panic avg 14 000 → 20 = 2 × 10 → panic
        for _ in 0..30 {
            k.record(14_000.0);
        }
        let (n, r) = k.scale(secs(90), 10);
        assert_eq!(n, 20);
        assert_eq!(r.basis, "panic");
    }

    #[test]
    fn panic_never_scales_down_and_ends_60s_after_the_condition() {
        let mut k = Kpa::new(KpaConfig::default());
        for _ in 0..6 {
            k.record(14_000.0);
        }
        // ready 5: dppc 20 / 5 = 4 ≥ 2 → panic; max up 5000 → 20
        assert_eq!(k.scale(secs(6), 5).0, 20);
        for _ in 0..60 {
            k.record(700.0);
        }
        // not over threshold any more but still within 60 s of the last panic time: hold 20
        assert_eq!(k.scale(secs(60), 20).0, 20);
        // t = 67 > 6 + 60: leave panic; stable avg 700 → 1 pod, floored at max-down 20/2 = 10
        assert_eq!(k.scale(secs(67), 20).0, 10);
    }

    #[test]
    fn scale_down_rate_halves_at_most() {
        let mut k = Kpa::new(KpaConfig {
            min_replicas: 1,
            ..KpaConfig::default()
        });
        for _ in 0..60 {
            k.record(0.0);
        }
        assert_eq!(k.scale(secs(60), 8).0, 4);
        assert_eq!(k.window_average(secs(6)), 0.0);
    }
}
