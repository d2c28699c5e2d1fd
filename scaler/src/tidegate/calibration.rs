//! How wrong the forecast has recently been: every forecast is checked against the demand seen
//! when its horizon comes, and an upper quantile of the relative errors of the last window is
//! the margin a scale-up adds. Errors are taken on demand plus one pod, the same offset the
//! forecast grows in (`estimate.rs`): a forecast of 1 connection met by 30 is one pod's worth of
//! error, not 2,900 %, so a ramp from nothing does not leave a margin that multiplies every
//! later forecast. On a clean ramp the errors are small and so is the margin; on a
//! noisy load, or a surge the trend keeps under-reading, the margin grows to what the load has
//! shown it needs — without a constant headroom that would be paid on every load.

use std::collections::VecDeque;
use std::time::Duration;

/// Recent forecast errors and the margin they imply.
#[derive(Clone, Debug)]
pub(super) struct Calibration {
    /// Forecasts waiting for their horizon: `(due, forecast)`.
    pending: VecDeque<(Duration, f64)>,
    /// Relative errors `(seen + offset) / (forecast + offset) − 1`, newest last, at most
    /// `window` of them.
    errors: VecDeque<f64>,
    /// Added to both sides of every error: one pod's capacity.
    offset: f64,
    window: usize,
    quantile: f64,
    scratch: Vec<f64>,
    margin: f64,
}

impl Calibration {
    /// Keeps the errors of the last `window` checks and reads their `quantile` (0–1); errors
    /// are relative to the forecast plus `offset` connections.
    pub fn new(window: usize, quantile: f64, offset: f64) -> Self {
        Calibration {
            offset: offset.max(0.0),
            pending: VecDeque::new(),
            errors: VecDeque::with_capacity(window + 1),
            window: window.max(1),
            quantile,
            scratch: Vec::with_capacity(window + 1),
            margin: 0.0,
        }
    }

    /// The margin a scale-up adds to the forecast (fraction, ≥ 0, of forecast plus offset).
    #[cfg(test)]
    pub fn margin(&self) -> f64 {
        self.margin
    }

    /// `forecast` with the margin added, in the same terms the errors were taken in.
    pub fn widen(&self, forecast: f64) -> f64 {
        (forecast + self.offset) * (1.0 + self.margin) - self.offset
    }

    /// Records the forecast made at `now` for `now + horizon`, and checks those now due
    /// against `demand`; `trusted` is false while demand is not what the edge can count
    /// (a saturation or a storm), and then nothing is checked.
    pub fn record(
        &mut self,
        now: Duration,
        horizon: Duration,
        forecast: f64,
        demand: f64,
        trusted: bool,
    ) {
        while let Some(&(due, f)) = self.pending.front() {
            if due > now {
                break;
            }
            self.pending.pop_front();
            if trusted && f + self.offset > 0.0 {
                self.errors
                    .push_back((demand + self.offset) / (f + self.offset) - 1.0);
                if self.errors.len() > self.window {
                    self.errors.pop_front();
                }
            }
        }
        if trusted {
            self.pending.push_back((now + horizon, forecast));
        } else {
            self.pending.clear();
        }
        self.margin = self.read().max(0.0);
    }

    fn read(&mut self) -> f64 {
        if self.errors.is_empty() {
            return 0.0;
        }
        self.scratch.clear();
        self.scratch.extend(self.errors.iter().copied());
        let k = ((self.quantile * self.scratch.len() as f64).ceil() as usize)
            .clamp(1, self.scratch.len())
            - 1;
        let (_, q, _) = self.scratch.select_nth_unstable_by(k, f64::total_cmp);
        *q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_margin_is_an_upper_quantile_of_recent_errors() {
        let mut c = Calibration::new(100, 0.9, 0.0);
        let h = secs(10);
        // A forecast that is 5 % short on a ramp: the margin learns the 5 %.
        for t in 0..200u64 {
            let truth = 1000.0 + 10.0 * t as f64;
            let forecast = (1000.0 + 10.0 * (t + 10) as f64) / 1.05;
            c.record(secs(t), h, forecast, truth, true);
        }
        assert!((c.margin() - 0.05).abs() < 0.01, "{}", c.margin());
        // Over-forecasts give no margin.
        let mut over = Calibration::new(100, 0.9, 0.0);
        for t in 0..200u64 {
            over.record(secs(t), h, 1200.0, 1000.0, true);
        }
        assert_eq!(over.margin(), 0.0);
    }

    #[test]
    fn a_ramp_from_nothing_leaves_a_margin_of_pods_not_of_multiples() {
        // Demand rising 20/s from 0, forecasts 10 s ahead that read no growth: short by 200
        // connections each time, with a pod of 100. Taken on demand alone the first errors
        // would be 2,000 % and more; on demand plus a pod they are at most 200/100.
        let mut c = Calibration::new(100, 0.9, 100.0);
        for t in 0..60u64 {
            let now = 20.0 * t as f64;
            c.record(secs(t), secs(10), now, now, true);
        }
        assert!(c.margin() > 0.1 && c.margin() <= 2.0, "{}", c.margin());
        assert!(c.widen(1000.0) < 3.0 * 1000.0, "{}", c.widen(1000.0));
    }

    #[test]
    fn untrusted_demand_is_not_checked() {
        let mut c = Calibration::new(100, 0.9, 0.0);
        for t in 0..50u64 {
            c.record(secs(t), secs(10), 1000.0, 3000.0, t >= 40);
        }
        assert_eq!(
            c.margin(),
            0.0,
            "forecasts made before the saturation ended are dropped"
        );
    }
}
