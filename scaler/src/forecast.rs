//! Forecasting helpers: the least-squares fits the seed's predictor used (quadratic, and linear
//! as an ablation), and the median the policy's own robust trend is built on
//! (`tidegate/trend.rs`).
//!
//! Why not the seed's fits: a quadratic fit over 5 samples multiplies one sample's noise by ~6×
//! at a 30 s horizon and ~50× at 120 s (a linear one 1.6× / 4.5×), which the tests below
//! measure. tidegate's trend takes medians of differences instead, each against the noise its
//! window has seen.

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
    fn median_of_odd_even_and_none() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

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
}
