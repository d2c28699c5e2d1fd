//! What one simulation run measured (the metrics of the simulator's model, see
//! `docs/architecture.md`, section "The simulator"), and how runs over several seeds are
//! summarised (means with 95 % confidence half-widths).

use serde::Serialize;

/// Bins of the wait-time histogram: one per 100 ms step, up to the hold limit.
pub(crate) const WAIT_BINS: usize = 64;

/// Metrics of one policy on one trace, world and seed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunMetrics {
    /// Connection attempts refused (rejected at once, or timed out in the hold queue).
    pub rejected: f64,
    /// All connection attempts, retries included.
    pub attempts: f64,
    /// First attempts (new sessions and first reconnects after a disconnect).
    pub first_attempts: f64,
    /// Connections killed by the policy's scale-downs.
    pub forced_disconnects: f64,
    /// Connections killed by the trace's scripted pod kills (same for every policy).
    pub storm_disconnects: f64,
    /// Billed pod-seconds (booting, ready, draining and terminating pods).
    pub pod_seconds: f64,
    /// LB1: Oracle-fluid's pod-seconds, Σ ceil(D/C)·Δt.
    pub lb1_pod_seconds: f64,
    /// LB2: Oracle-feasible's pod-seconds on the same trace, world and seed (0 if not run).
    pub lb2_pod_seconds: f64,
    /// Pods created.
    pub pod_starts: f64,
    /// Pods deleted by the policy's scale-down while still booting (ordered, then cancelled).
    pub cancelled_boots: f64,
    /// Changes of `spec.replicas` that took effect.
    pub replica_changes: f64,
    /// API writes: replica patches plus pod-deletion-cost annotations.
    pub api_writes: f64,
    /// Patches replaced by a newer one before taking effect.
    pub superseded: f64,
    /// Under-provisioning accuracy θU (% of demand, time-averaged; SPEC RG).
    pub theta_u: f64,
    /// Over-provisioning accuracy θO.
    pub theta_o: f64,
    /// Under-provisioning timeshare τU (% of time with fewer ready pods than ceil(D/C)).
    pub tau_u: f64,
    /// Over-provisioning timeshare τO.
    pub tau_o: f64,
    /// Median wait of connections that were placed (ms).
    pub wait_p50_ms: f64,
    /// 99th percentile wait of connections that were placed (ms).
    pub wait_p99_ms: f64,
    /// Connection-hours served.
    pub connection_hours: f64,
    /// Decisions that lowered the replica count within 5 min after a scripted pod kill.
    pub storm_scale_downs: f64,
    /// Largest replica count asked for.
    pub max_replicas: f64,
    /// Forecast mean absolute error at the policy's horizon (connections; NaN if none).
    pub forecast_mae: f64,
    /// Forecast mean error (positive: over-forecast).
    pub forecast_bias: f64,
    /// MAE relative to the "last value" forecast (MASE-style; < 1 beats naive).
    pub forecast_mase: f64,
    /// Time to cover (s): after each marked demand change, how long until ready capacity last
    /// fell short of demand; the largest over the marks (NaN without marks).
    pub time_to_cover_s: f64,
    /// Settling time (s): after each marked demand change, how long until `spec.replicas` last
    /// changed before the next mark; the largest over the marks (NaN without marks).
    pub settling_s: f64,
}

impl RunMetrics {
    /// Rejected attempts plus forced disconnects: the goal's loss figure.
    pub fn lost(&self) -> f64 {
        self.rejected + self.forced_disconnects
    }

    /// Rejected attempts as a percentage of attempts.
    pub fn rejected_pct(&self) -> f64 {
        if self.attempts > 0.0 {
            100.0 * self.rejected / self.attempts
        } else {
            0.0
        }
    }

    /// Forced disconnects per 1,000 connection-hours.
    pub fn forced_per_k_hours(&self) -> f64 {
        if self.connection_hours > 0.0 {
            1000.0 * self.forced_disconnects / self.connection_hours
        } else {
            0.0
        }
    }

    /// Attempts per first attempt.
    pub fn amplification(&self) -> f64 {
        if self.first_attempts > 0.0 {
            self.attempts / self.first_attempts
        } else {
            1.0
        }
    }

    /// Pod-seconds over LB2 (NaN without LB2).
    pub fn cost_over_lb2(&self) -> f64 {
        if self.lb2_pod_seconds > 0.0 {
            self.pod_seconds / self.lb2_pod_seconds
        } else {
            f64::NAN
        }
    }

    /// Field-wise mean over runs.
    pub fn mean(runs: &[&RunMetrics]) -> RunMetrics {
        let n = runs.len().max(1) as f64;
        let mut out = RunMetrics::default();
        for r in runs {
            out.add_scaled(r, 1.0 / n);
        }
        out
    }

    fn add_scaled(&mut self, r: &RunMetrics, k: f64) {
        macro_rules! acc {
            ($($f:ident),*) => { $( self.$f += r.$f * k; )* };
        }
        acc!(
            rejected,
            attempts,
            first_attempts,
            forced_disconnects,
            storm_disconnects,
            pod_seconds,
            lb1_pod_seconds,
            lb2_pod_seconds,
            pod_starts,
            cancelled_boots,
            replica_changes,
            api_writes,
            superseded,
            theta_u,
            theta_o,
            tau_u,
            tau_o,
            wait_p50_ms,
            wait_p99_ms,
            connection_hours,
            storm_scale_downs,
            max_replicas,
            forecast_mae,
            forecast_bias,
            forecast_mase,
            time_to_cover_s,
            settling_s
        );
    }
}

/// Half-width of a 95 % confidence interval for the mean of `xs` (Student t).
pub fn ci95(xs: &[f64]) -> f64 {
    let n = xs.len();
    if n < 2 {
        return 0.0;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    const T: [f64; 10] = [12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23];
    let t = T.get(n - 2).copied().unwrap_or(1.96 + 2.5 / n as f64);
    t * (var / n as f64).sqrt()
}

/// Running forecast-error sums.
#[derive(Clone, Debug, Default)]
pub(crate) struct ForecastError {
    pub n: u64,
    pub abs: f64,
    pub signed: f64,
    pub naive_abs: f64,
}

impl ForecastError {
    pub fn add(&mut self, forecast: f64, naive: f64, truth: f64) {
        self.n += 1;
        self.abs += (forecast - truth).abs();
        self.signed += forecast - truth;
        self.naive_abs += (naive - truth).abs();
    }

    pub fn finish(&self, m: &mut RunMetrics) {
        if self.n == 0 {
            m.forecast_mae = f64::NAN;
            m.forecast_bias = f64::NAN;
            m.forecast_mase = f64::NAN;
            return;
        }
        let n = self.n as f64;
        m.forecast_mae = self.abs / n;
        m.forecast_bias = self.signed / n;
        m.forecast_mase = if self.naive_abs > 0.0 {
            self.abs / self.naive_abs
        } else {
            f64::NAN
        };
    }
}

/// Percentile (0–100) of a histogram with 100 ms bins, in ms.
pub(crate) fn hist_percentile(hist: &[u64; WAIT_BINS], pct: f64) -> f64 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let want = (pct / 100.0 * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &c) in hist.iter().enumerate() {
        seen += c;
        if seen >= want {
            return i as f64 * 100.0;
        }
    }
    (WAIT_BINS - 1) as f64 * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_ci() {
        let a = RunMetrics {
            rejected: 2.0,
            pod_seconds: 10.0,
            ..Default::default()
        };
        let b = RunMetrics {
            rejected: 4.0,
            pod_seconds: 30.0,
            ..Default::default()
        };
        let m = RunMetrics::mean(&[&a, &b]);
        assert_eq!(m.rejected, 3.0);
        assert_eq!(m.pod_seconds, 20.0);
        assert_eq!(ci95(&[1.0, 1.0, 1.0]), 0.0);
        assert!(ci95(&[1.0, 2.0, 3.0]) > 2.0);
    }

    #[test]
    fn histogram_percentiles() {
        let mut h = [0u64; WAIT_BINS];
        h[0] = 98;
        h[10] = 2;
        assert_eq!(hist_percentile(&h, 50.0), 0.0);
        assert_eq!(hist_percentile(&h, 99.0), 1000.0);
    }
}
