//! The growth rate of demand, read at several time scales at once, each against the noise that
//! scale has shown.
//!
//! For windows of `shortest`, 2 × `shortest`, … up to `longest` samples, the slope of
//! `ln(demand + one pod)` is the median of the differences a quarter window apart: a jump (a
//! step, the edge of a spike) moves only the differences that span it, a quarter of them, so it
//! is not read as growth that goes on; growth that has lasted longer than half the window moves
//! most of them. Every window also keeps the slopes it read over the last `keep` samples. How
//! much a window's slope changes over one window length is what noise alone draws at that
//! scale on this load (a steady trend, or one that bends slowly as compounding growth does,
//! changes it little): 1.4826 × the median absolute deviation of those changes, over √2, is
//! the window's noise. A window's growth is believed down to its lower bound, the slope less
//! `z` noises.
//!
//! The rate is the largest lower bound among the windows whose slope the shortest window does
//! not contradict (a slope above the shortest window's upper bound has stopped: growth that
//! ended half a minute ago is still in a four-minute slope). So a surge is read within a short
//! window of its start, a slow ramp that no short window can tell from noise is read by the
//! long ones, and growth that stops is forgotten as fast as the shortest window sees it.

use std::collections::VecDeque;

use crate::forecast::median;

/// A window re-reads its noise every this many samples.
const NOISE_EVERY: usize = 10;
/// Added to the shortest window's upper bound, so that on a noiseless load the rounding of the
/// same slope read over two windows does not count as a contradiction (per second).
const SLACK: f64 = 1e-9;
/// Median absolute deviation to standard deviation for normal noise.
const MAD_TO_SD: f64 = 1.4826;

/// One time scale.
#[derive(Clone, Debug)]
struct Scale {
    /// Window length (samples).
    window: usize,
    /// Quarter window (samples): the spacing of the differences.
    quarter: usize,
    /// The slopes read over the noise window, newest last.
    slopes: VecDeque<f64>,
    /// Their robust spread, re-read every [`NOISE_EVERY`] samples.
    noise: f64,
    /// Whether `noise` is known: read from a window length's worth of slope changes (or a full
    /// noise window), or borrowed from the shorter neighbour until then.
    learnt: bool,
    /// The newest slope (per second), if the window is full.
    slope: Option<f64>,
}

/// Multi-scale growth rate of a log-demand series sampled once per tick.
#[derive(Clone, Debug)]
pub(super) struct Trend {
    /// The newest samples, oldest first, at most the longest window.
    xs: VecDeque<f64>,
    scales: Vec<Scale>,
    tick_secs: f64,
    z: f64,
    keep: usize,
    pushed: usize,
    scratch: Vec<f64>,
}

impl Trend {
    /// Windows from `shortest` to `longest` samples, doubling; noise read over `keep` slopes;
    /// growth believed down to `z` noise spreads below the slope.
    pub fn new(shortest: usize, longest: usize, keep: usize, tick_secs: f64, z: f64) -> Self {
        let shortest = shortest.max(4);
        let mut scales = Vec::new();
        let mut w = shortest;
        while w <= longest.max(shortest) {
            scales.push(Scale {
                window: w,
                quarter: (w / 4).max(1),
                slopes: VecDeque::with_capacity(keep + 1),
                noise: 0.0,
                learnt: false,
                slope: None,
            });
            w *= 2;
        }
        let longest = scales.last().map_or(shortest, |s| s.window);
        Trend {
            xs: VecDeque::with_capacity(longest + 1),
            scales,
            tick_secs,
            z,
            keep: keep.max(1),
            pushed: 0,
            scratch: Vec::with_capacity(longest),
        }
    }

    /// Adds one sample.
    pub fn push(&mut self, x: f64) {
        let longest = self.scales.last().map_or(1, |s| s.window);
        self.xs.push_back(x);
        if self.xs.len() > longest {
            self.xs.pop_front();
        }
        self.pushed += 1;
        let reread = self.pushed.is_multiple_of(NOISE_EVERY);
        for i in 0..self.scales.len() {
            let slope = self.slope_of(i);
            let keep = self.keep;
            let s = &mut self.scales[i];
            s.slope = slope;
            if let Some(v) = slope {
                s.slopes.push_back(v);
                if s.slopes.len() > keep {
                    s.slopes.pop_front();
                }
            }
            s.learnt = s.slopes.len() >= (2 * s.window).min(keep);
            if s.learnt && (reread || s.noise == 0.0) {
                // Changes of the slope over one window length (half the slopes kept, if the
                // noise window is shorter): a steady trend, or one that bends slowly
                // (compounding), changes little; noise changes it by √2 of its own spread.
                let s = &self.scales[i];
                let lag = s.window.min(s.slopes.len() / 2).max(1);
                self.scratch.clear();
                self.scratch.extend(
                    s.slopes
                        .iter()
                        .zip(s.slopes.iter().skip(lag))
                        .map(|(a, b)| b - a),
                );
                self.scales[i].noise = MAD_TO_SD * mad(&mut self.scratch) / 2f64.sqrt();
            } else if !s.learnt && i > 0 && self.scales[i - 1].learnt {
                // Until it has learnt its own, a window borrows its shorter neighbour's noise,
                // halved: a slope over twice the time, of noise that wanders slowly.
                self.scales[i].noise = self.scales[i - 1].noise / 2.0;
                self.scales[i].learnt = true;
            }
        }
    }

    /// The level: the median of the shortest window's samples (of those there are; 0 when
    /// empty), so that a noise peak is not projected as if it would last.
    pub fn level(&mut self) -> f64 {
        let n = self.xs.len();
        let k = self.scales.first().map_or(1, |s| s.window).min(n);
        self.scratch.clear();
        self.scratch.extend(self.xs.range(n - k..).copied());
        median(&mut self.scratch)
    }

    /// How far the level lags the newest sample: half the shortest window (s).
    pub fn level_age(&self) -> f64 {
        self.scales.first().map_or(0.0, |s| s.window as f64) * self.tick_secs / 2.0
    }

    /// The slope of window `i` (per second), once the window is full.
    fn slope_of(&mut self, i: usize) -> Option<f64> {
        let (w, q) = (self.scales[i].window, self.scales[i].quarter);
        let n = self.xs.len();
        if n < w {
            return None;
        }
        self.scratch.clear();
        for j in n - w + q..n {
            self.scratch.push(self.xs[j] - self.xs[j - q]);
        }
        Some(median(&mut self.scratch) / (q as f64 * self.tick_secs))
    }

    /// The growth rate (per second, ≥ 0): the largest lower bound among the windows the
    /// shortest one does not contradict; 0 until a window knows its noise.
    pub fn rate(&self) -> f64 {
        self.believed().map(|(_, rate)| rate).fold(0.0, f64::max)
    }

    /// The growth of the log over `h_secs` (≥ 0): the most any believed window projects, each
    /// at its lower bound (at most `cap` per second) and over at most `reach` of its own
    /// lengths.
    pub fn growth(&self, h_secs: f64, cap: f64, reach: f64) -> f64 {
        self.believed()
            .map(|(secs, rate)| rate.min(cap) * h_secs.min(reach * secs))
            .fold(0.0, f64::max)
    }

    /// `(window length in seconds, lower bound of its rate)` of every window that knows its
    /// noise and that the shortest one does not contradict.
    fn believed(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        let ceiling = self.scales.first().and_then(|first| {
            first
                .slope
                .map(|short| short + self.z * first.noise + SLACK)
        });
        self.scales.iter().filter_map(move |s| {
            let (v, ceiling) = (s.slope?, ceiling?);
            (s.learnt && v <= ceiling)
                .then_some((s.window as f64 * self.tick_secs, v - self.z * s.noise))
        })
    }
}

/// Median absolute deviation from the median (reorders `xs`; 0 when empty).
fn mad(xs: &mut [f64]) -> f64 {
    let mid = median(xs);
    for x in xs.iter_mut() {
        *x = (*x - mid).abs();
    }
    median(xs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows of 15 s to 240 s, noise learnt over 20 minutes, believed at 3 noises.
    fn trend() -> Trend {
        Trend::new(15, 240, 1200, 1.0, 3.0)
    }

    /// `ln` of multiplicative AR(1) noise of `std` around 10 000, as the trace generator draws.
    fn noisy(seed: u64, len: u64, std: f64) -> Vec<f64> {
        let noise = crate::sim::families::noise(&mut crate::rng::Rng::new(seed, 3), len, std);
        noise.iter().map(|n| (10_000.0 * (1.0 + n)).ln()).collect()
    }

    #[test]
    fn a_steady_ramp_is_read_at_its_rate() {
        let mut t = trend();
        for s in 0..900 {
            t.push(0.005 * f64::from(s));
        }
        assert!((t.rate() - 0.005).abs() < 1e-9, "{}", t.rate());
        // Projected two window lengths at most: the 240 s window covers 150 s.
        assert!(
            (t.growth(150.0, 1.0, 2.0) - 0.75).abs() < 1e-6,
            "{}",
            t.growth(150.0, 1.0, 2.0)
        );
        // …and at most at the cap.
        assert!((t.growth(150.0, 0.001, 2.0) - 0.15).abs() < 1e-6);
    }

    #[test]
    fn noise_it_has_learnt_is_not_read_as_growth() {
        for seed in 0..5 {
            let xs = noisy(seed, 3600, 0.04);
            let mut t = trend();
            let mut loud = 0;
            for (s, &x) in xs.iter().enumerate() {
                t.push(x);
                // Once the windows know their noise, a 150 s forecast rarely grows by more
                // than the 4 % noise itself.
                if s >= 1200 && t.growth(150.0, 0.01, 2.0) > 0.04 {
                    loud += 1;
                }
            }
            assert!(
                loud < 2400 / 50,
                "seed {seed}: {loud} of 2400 s read growth"
            );
        }
    }

    #[test]
    fn a_step_is_not_extrapolated() {
        let mut t = trend();
        let flat = noisy(1, 1500, 0.01);
        for &x in &flat {
            t.push(x);
        }
        // +50 % at once, then flat again: at no second is the jump projected onward.
        let jump = 1.5f64.ln();
        for &x in &noisy(2, 600, 0.01) {
            t.push(x + jump);
            assert!(
                t.growth(150.0, 0.01, 2.0) < 0.05,
                "{}",
                t.growth(150.0, 0.01, 2.0)
            );
        }
    }

    #[test]
    fn growth_is_seen_soon_after_it_starts_and_forgotten_soon_after_it_stops() {
        let mut t = trend();
        let base = noisy(4, 2400, 0.02);
        let mut x = 0.0;
        let mut seen = None;
        let mut forgotten = None;
        for (s, &b) in base.iter().enumerate() {
            // 0.5 %/s from t = 1200 s to 1800 s.
            if (1200..1800).contains(&s) {
                x += 0.005;
            }
            t.push(b + x);
            if s >= 1200 && seen.is_none() && t.rate() > 0.002 {
                seen = Some(s - 1200);
            }
            if s >= 1800 && forgotten.is_none() && t.growth(150.0, 0.01, 2.0) < 0.05 {
                forgotten = Some(s - 1800);
            }
        }
        let (seen, forgotten) = (seen.expect("growth seen"), forgotten.expect("forgotten"));
        assert!(seen <= 30, "growth seen {seen} s after it started");
        assert!(
            forgotten <= 30,
            "growth forgotten {forgotten} s after it stopped"
        );
    }
}
