//! Forecasting total connections: Holt's double-exponential smoothing (tidegate) and the
//! least-squares fits the seed's predictor used (quadratic, and linear as an ablation).
//!
//! Why Holt: the seed's quadratic fit over 5 samples multiplies one sample's noise by ~6× at a
//! 30 s horizon and ~50× at 120 s. Holt's level and trend are exponentially weighted averages,
//! so one noisy sample moves the forecast by `alpha·(1 + beta·h)` of its error, and the trend is
//! further clamped to a maximum relative growth rate.

/// Holt's linear (double exponential) smoother over samples taken at irregular times.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Holt {
    alpha: f64,
    beta: f64,
    level: f64,
    trend: f64,
    last_secs: Option<f64>,
}

impl Holt {
    /// A smoother with level weight `alpha` and trend weight `beta`, both in (0, 1], per 1 s
    /// sample (weights are adjusted for other spacings).
    pub fn new(alpha: f64, beta: f64) -> Self {
        Holt {
            alpha,
            beta,
            level: 0.0,
            trend: 0.0,
            last_secs: None,
        }
    }

    /// Feeds one observation `value` taken at `t_secs`.
    pub fn update(&mut self, t_secs: f64, value: f64) {
        let Some(last) = self.last_secs else {
            self.level = value;
            self.trend = 0.0;
            self.last_secs = Some(t_secs);
            return;
        };
        let dt = (t_secs - last).max(1e-3);
        // Weights are per 1 s sample; convert to the actual spacing.
        let a = 1.0 - (1.0 - self.alpha).powf(dt);
        let b = 1.0 - (1.0 - self.beta).powf(dt);
        let predicted = self.level + self.trend * dt;
        let level = predicted + a * (value - predicted);
        self.trend += b * ((level - self.level) / dt - self.trend);
        self.level = level;
        self.last_secs = Some(t_secs);
    }

    /// Forces the level (and keeps the trend), e.g. to hold demand through a reconnect storm.
    pub fn floor_level(&mut self, floor: f64) {
        self.level = self.level.max(floor);
    }

    /// Current smoothed level.
    pub fn level(&self) -> f64 {
        self.level
    }

    /// Current smoothed trend (units per second).
    pub fn trend(&self) -> f64 {
        self.trend
    }

    /// Linear forecast `h_secs` ahead with the trend clamped to `±max_rel_rate·level` per second.
    pub fn linear(&self, h_secs: f64, max_rel_rate: f64) -> f64 {
        let cap = max_rel_rate * self.level.abs();
        (self.level + self.trend.clamp(-cap, cap) * h_secs).max(0.0)
    }

    /// Exponential forecast `h_secs` ahead: growth rate `trend/level`, clamped to
    /// `[0, max_rel_rate]`, compounded. Suits surges that double rather than add.
    pub fn exponential(&self, h_secs: f64, max_rel_rate: f64) -> f64 {
        if self.level <= 0.0 {
            return 0.0;
        }
        let rate = (self.trend / self.level).clamp(0.0, max_rel_rate);
        self.level * (rate * h_secs).exp()
    }
}

/// Robust trend: the median of `lag`-sample differences over the last `window` samples.
///
/// A single outlier or a one-off step moves at most `lag` of the differences, so the median —
/// and the forecast — ignores it unless it persists for half the window. Allocation happens once,
/// in [`RobustSlope::new`].
#[derive(Clone, Debug)]
pub struct RobustSlope {
    ring: Vec<(f64, f64)>,
    next: usize,
    len: usize,
    lag: usize,
    scratch: Vec<f64>,
}

impl RobustSlope {
    /// Keeps `window` samples and differences them `lag` samples apart (`lag < window`).
    pub fn new(window: usize, lag: usize) -> Self {
        let window = window.max(2);
        let lag = lag.clamp(1, window - 1);
        RobustSlope {
            ring: vec![(0.0, 0.0); window],
            next: 0,
            len: 0,
            lag,
            scratch: Vec::with_capacity(window),
        }
    }

    /// Adds the sample `value` taken at `t_secs`.
    pub fn push(&mut self, t_secs: f64, value: f64) {
        self.ring[self.next] = (t_secs, value);
        self.next = (self.next + 1) % self.ring.len();
        self.len = (self.len + 1).min(self.ring.len());
    }

    /// Overwrites the newest sample's value (e.g. to hold demand through a storm).
    pub fn replace_last(&mut self, value: f64) {
        if self.len > 0 {
            let cap = self.ring.len();
            self.ring[(self.next + cap - 1) % cap].1 = value;
        }
    }

    /// Median of the newest `k` values (0 when empty): a level that one noisy sample cannot
    /// move.
    pub fn recent_median(&mut self, k: usize) -> f64 {
        let cap = self.ring.len();
        let k = k.clamp(1, self.len.max(1)).min(self.len);
        self.scratch.clear();
        for i in 0..k {
            self.scratch
                .push(self.ring[(self.next + cap - 1 - i) % cap].1);
        }
        median(&mut self.scratch)
    }

    /// Median slope (units per second); 0 until `lag + 1` samples are in.
    pub fn slope(&mut self) -> f64 {
        self.slope_and_error().0
    }

    /// The median slope and its standard error, from the spread of the differences
    /// (1.4826 × their median absolute deviation, over √ of the number of non-overlapping
    /// differences in the window). A trend that noise could have drawn has an error as large
    /// as itself; a steady ramp or compounding surge has differences that agree, and a small
    /// error. Both 0 until `lag + 1` samples are in.
    pub fn slope_and_error(&mut self) -> (f64, f64) {
        let cap = self.ring.len();
        if self.len <= self.lag {
            return (0.0, 0.0);
        }
        self.scratch.clear();
        let oldest = (self.next + cap - self.len) % cap;
        for i in self.lag..self.len {
            let (t1, v1) = self.ring[(oldest + i) % cap];
            let (t0, v0) = self.ring[(oldest + i - self.lag) % cap];
            if t1 > t0 {
                self.scratch.push((v1 - v0) / (t1 - t0));
            }
        }
        let n = self.scratch.len();
        if n == 0 {
            return (0.0, 0.0);
        }
        let mid = median(&mut self.scratch);
        for x in self.scratch.iter_mut() {
            *x = (*x - mid).abs();
        }
        let mad = median(&mut self.scratch);
        let independent = (n as f64 / self.lag as f64).max(1.0);
        (mid, 1.4826 * mad / independent.sqrt())
    }
}

/// Median of `xs` (reordered in place; 0 when empty).
pub(crate) fn median(xs: &mut [f64]) -> f64 {
    let n = xs.len();
    if n == 0 {
        return 0.0;
    }
    let mid = n / 2;
    let (lower, m, _) = xs.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *m;
    if n % 2 == 1 {
        return upper;
    }
    let below = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (below + upper) / 2.0
}

/// Least-squares polynomial fit of degree 1 or 2 over `(t, y)` points, evaluated at `at`.
///
/// Times are shifted to the last point before solving so that large absolute times stay well
/// conditioned. Returns `None` with fewer points than coefficients or a singular system.
pub fn polyfit_predict(points: &[(f64, f64)], degree: usize, at: f64) -> Option<f64> {
    let n = degree + 1;
    if points.len() < n || !(1..=2).contains(&degree) {
        return None;
    }
    let t0 = points.last().map_or(0.0, |p| p.0);
    // Normal equations: sums of t^k (k = 0..2·degree) and t^k·y.
    let mut st = [0.0f64; 5];
    let mut sty = [0.0f64; 3];
    for &(t, y) in points {
        let x = t - t0;
        let mut p = 1.0;
        for (k, s) in st.iter_mut().enumerate().take(2 * degree + 1) {
            *s += p;
            if k < n {
                sty[k] += p * y;
            }
            p *= x;
        }
    }
    let x = at - t0;
    if degree == 1 {
        let det = st[0] * st[2] - st[1] * st[1];
        if det.abs() < 1e-12 {
            return None;
        }
        let b = (st[0] * sty[1] - st[1] * sty[0]) / det;
        let a = (sty[0] - b * st[1]) / st[0];
        return Some(a + b * x);
    }
    let m = [
        [st[0], st[1], st[2]],
        [st[1], st[2], st[3]],
        [st[2], st[3], st[4]],
    ];
    let det = det3(&m);
    if det.abs() < 1e-12 {
        return None;
    }
    let coef: Vec<f64> = (0..3)
        .map(|col| {
            let mut mc = m;
            for (row, r) in mc.iter_mut().enumerate() {
                r[col] = sty[row];
            }
            det3(&mc) / det
        })
        .collect();
    Some(coef[0] + coef[1] * x + coef[2] * x * x)
}

fn det3(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadratic_fit_is_exact_on_a_parabola() {
        let pts: Vec<(f64, f64)> = (0..5)
            .map(|i| (i as f64 * 10.0, 3.0 + (i * i) as f64))
            .collect();
        // y = 3 + (t/10)^2; at t = 60: 3 + 36
        let y = polyfit_predict(&pts, 2, 60.0).unwrap();
        assert!((y - 39.0).abs() < 1e-6, "{y}");
        let lin = polyfit_predict(&[(0.0, 1.0), (10.0, 3.0)], 1, 20.0).unwrap();
        assert!((lin - 5.0).abs() < 1e-9);
        assert!(polyfit_predict(&[(0.0, 1.0)], 1, 1.0).is_none());
    }

    /// Noise gain: RMS of the weights each sample has in the prediction (i.i.d. noise).
    fn noise_gain(degree: usize, horizon: f64) -> f64 {
        let at = 40.0 + horizon;
        let gains: Vec<f64> = (0..5)
            .map(|k| {
                let pts: Vec<(f64, f64)> = (0..5)
                    .map(|i| (i as f64 * 10.0, if i == k { 1.0 } else { 0.0 }))
                    .collect();
                polyfit_predict(&pts, degree, at).unwrap()
            })
            .collect();
        gains.iter().map(|w| w * w).sum::<f64>().sqrt()
    }

    #[test]
    fn seed_fits_amplify_noise_6x_and_50x() {
        // Quadratic ~6× at 30 s and ~50× at 120 s; linear 1.6× / 4.5×.
        assert!(
            (noise_gain(2, 30.0) - 6.0).abs() < 1.0,
            "{}",
            noise_gain(2, 30.0)
        );
        assert!(
            (noise_gain(2, 120.0) - 50.0).abs() < 5.0,
            "{}",
            noise_gain(2, 120.0)
        );
        assert!((noise_gain(1, 30.0) - 1.6).abs() < 0.1);
        assert!((noise_gain(1, 120.0) - 4.5).abs() < 0.1);
    }

    #[test]
    fn holt_tracks_a_ramp_and_damps_a_spike() {
        let mut h = Holt::new(0.3, 0.05);
        for t in 0..300 {
            h.update(t as f64, 1000.0 + 10.0 * t as f64);
        }
        let f = h.linear(30.0, 1.0);
        let truth = 1000.0 + 10.0 * 329.0;
        assert!((f - truth).abs() / truth < 0.02, "{f} vs {truth}");

        // tidegate's defaults: one +100 sample moves a 120 s forecast by < 2×, where the seed's
        // quadratic gives the newest sample a weight of ~30.
        let mut flat = Holt::new(0.3, 0.03);
        for t in 0..100 {
            flat.update(t as f64, 1000.0);
        }
        flat.update(100.0, 1100.0);
        let moved = flat.linear(120.0, 1.0) - 1000.0;
        assert!(
            moved < 200.0,
            "one sample moved a 120 s forecast by {moved}"
        );
    }

    #[test]
    fn robust_slope_ignores_a_step_but_follows_a_ramp() {
        let mut r = RobustSlope::new(30, 5);
        for t in 0..30 {
            r.push(t as f64, if t < 20 { 1000.0 } else { 8000.0 });
        }
        assert_eq!(r.slope(), 0.0, "a step is not a trend");
        let mut ramp = RobustSlope::new(30, 5);
        for t in 0..40 {
            let noise = if t % 7 == 0 { 500.0 } else { 0.0 };
            ramp.push(t as f64, 1000.0 + 20.0 * t as f64 + noise);
        }
        assert!((ramp.slope() - 20.0).abs() < 1e-9, "{}", ramp.slope());
        assert_eq!(RobustSlope::new(30, 5).slope(), 0.0);
        let (slope, error) = ramp.slope_and_error();
        assert!(
            slope > 0.0 && error < 1e-9,
            "a clean ramp is certain: {error}"
        );
        let mut rng = crate::rng::Rng::new(5, 5);
        let mut noisy = RobustSlope::new(60, 15);
        for t in 0..60 {
            noisy.push(t as f64, 1000.0 + 50.0 * rng.normal());
        }
        let (slope, error) = noisy.slope_and_error();
        assert!(
            error >= slope.abs(),
            "noise is not a trend: {slope} ± {error}"
        );
        let level = noisy.recent_median(15);
        assert!((level - 1000.0).abs() < 50.0, "{level}");
        assert_eq!(RobustSlope::new(5, 1).recent_median(3), 0.0);
    }

    #[test]
    fn exponential_forecast_is_clamped() {
        let mut h = Holt::new(0.5, 0.5);
        h.update(0.0, 100.0);
        h.update(1.0, 200.0);
        assert!(h.exponential(10.0, 0.01) <= h.level() * (0.1f64).exp() + 1e-9);
        assert_eq!(Holt::new(0.5, 0.5).exponential(10.0, 0.1), 0.0);
    }
}
