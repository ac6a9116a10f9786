//! Return statistics for `stockbot simulate`: streaming central moments and
//! lag-1 co-moments of one series, and their pooling across assets.

use std::fmt;

/// Central moments and the lag-1 co-moment of one series, updated one value
/// at a time (Welford/Pébay updates, numerically stable for returns of any
/// size), in `O(1)` memory.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SeriesMoments {
    count: u64,
    mean: f64,
    /// Σ (x − mean)², over the values seen so far.
    m2: f64,
    /// Σ (x − mean)³.
    m3: f64,
    /// Σ (x − mean)⁴.
    m4: f64,
    /// Σ (x_t − mean)(x_{t+1} − mean) over consecutive pairs of this series.
    lag1: f64,
    first: f64,
    last: f64,
}

impl SeriesMoments {
    /// Adds the next value of the series.
    pub fn push(&mut self, x: f64) {
        if self.count == 0 {
            *self = Self { count: 1, mean: x, first: x, last: x, ..Self::default() };
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        let (n_old, n) = (self.count as f64, (self.count + 1) as f64);
        let delta = x - self.mean;
        let delta_n = delta / n;
        let delta_n2 = delta_n * delta_n;
        let term1 = delta * delta_n * n_old;
        let old_mean = self.mean;
        let new_mean = old_mean + delta_n;

        // Re-centre the existing pairs on the new mean. Over the pairs, the
        // left values sum to −(last − mean) and the right ones to
        // −(first − mean), since all deviations sum to zero.
        let pairs = n_old - 1.0;
        self.lag1 += delta_n * ((self.last - old_mean) + (self.first - old_mean)) + pairs * delta_n2;
        self.lag1 += (self.last - new_mean) * (x - new_mean);

        self.m4 += term1 * delta_n2 * (n * n - 3.0 * n + 3.0) + 6.0 * delta_n2 * self.m2 - 4.0 * delta_n * self.m3;
        self.m3 += term1 * delta_n * (n - 2.0) - 3.0 * delta_n * self.m2;
        self.m2 += term1;
        self.mean = new_mean;
        self.count += 1;
        self.last = x;
    }

    /// Number of values seen.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Mean of the values seen (0 for an empty series).
    #[must_use]
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Population standard deviation (0 for fewer than two values).
    #[must_use]
    pub fn std_dev(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let n = self.count as f64;
        (self.m2 / n).sqrt()
    }

    /// Kurtosis `m4 / m2²` of this series alone (normal = 3); NaN when the
    /// series has no variance.
    #[must_use]
    pub fn kurtosis(&self) -> f64 {
        pooled_kurtosis(std::slice::from_ref(self))
    }

    /// Lag-1 autocorrelation of this series alone; NaN when it has no variance.
    #[must_use]
    pub fn acf1(&self) -> f64 {
        pooled_acf1(std::slice::from_ref(self))
    }
}

/// Kurtosis `m4 / m2²` of several series pooled: each series is demeaned by
/// its own mean, then the fourth and second moments are taken over all
/// values together. NaN when the pooled variance is zero.
#[must_use]
pub fn pooled_kurtosis(series: &[SeriesMoments]) -> f64 {
    let count: u64 = series.iter().map(|s| s.count).sum();
    let m2: f64 = series.iter().map(|s| s.m2).sum();
    let m4: f64 = series.iter().map(|s| s.m4).sum();
    if count == 0 || m2 <= 0.0 {
        return f64::NAN;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = count as f64;
    n * m4 / (m2 * m2)
}

/// Lag-1 autocorrelation of several series pooled: pairs are formed only
/// within a series (never the last value of one with the first of the next),
/// each series demeaned by its own mean; the pooled co-moment is divided by
/// the pooled variance sum, as in the usual sample ACF. NaN when the pooled
/// variance is zero.
#[must_use]
pub fn pooled_acf1(series: &[SeriesMoments]) -> f64 {
    let m2: f64 = series.iter().map(|s| s.m2).sum();
    let lag1: f64 = series.iter().map(|s| s.lag1).sum();
    if m2 <= 0.0 {
        return f64::NAN;
    }
    lag1 / m2
}

/// The stylised facts of the simulated returns: the last line of
/// `stockbot simulate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReturnStats {
    /// Pooled kurtosis of 1-minute log returns (normal = 3).
    pub kurtosis: f64,
    /// Pooled lag-1 autocorrelation of absolute returns (volatility clustering).
    pub acf_abs1: f64,
    /// Pooled lag-1 autocorrelation of returns (should be about 0).
    pub acf1: f64,
    /// Number of returns pooled.
    pub returns: u64,
}

impl ReturnStats {
    /// Pools per-asset moments of returns `r` and of absolute returns `|r|`.
    #[must_use]
    pub fn pooled(returns: &[SeriesMoments], abs_returns: &[SeriesMoments]) -> Self {
        Self {
            kurtosis: pooled_kurtosis(returns),
            acf_abs1: pooled_acf1(abs_returns),
            acf1: pooled_acf1(returns),
            returns: returns.iter().map(SeriesMoments::count).sum(),
        }
    }
}

impl fmt::Display for ReturnStats {
    /// `kurtosis=X acf_abs1=X acf1=X`, four decimals each.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kurtosis={:.4} acf_abs1={:.4} acf1={:.4}", self.kurtosis, self.acf_abs1, self.acf1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(values: &[f64]) -> SeriesMoments {
        let mut moments = SeriesMoments::default();
        for &x in values {
            moments.push(x);
        }
        moments
    }

    /// The textbook two-pass formulas, to check the streaming updates.
    fn two_pass(values: &[f64]) -> (f64, f64, f64, f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let central = |k: i32| values.iter().map(|x| (x - mean).powi(k)).sum::<f64>();
        let lag1 = values.windows(2).map(|w| (w[0] - mean) * (w[1] - mean)).sum::<f64>();
        (mean, central(2), central(3), central(4), lag1)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn alternating_series_has_acf_of_minus_one() {
        let values: Vec<f64> = (0..10_000).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let m = moments(&values);
        // Exactly −(n−1)/n for the sample ACF with the full-series mean.
        assert!(close(m.acf1(), -9_999.0 / 10_000.0), "{}", m.acf1());
        assert!((m.acf1() + 1.0).abs() < 1e-3);
        assert!(close(m.kurtosis(), 1.0));
    }

    #[test]
    fn constant_steps_have_acf_near_one() {
        let values: Vec<f64> = (0..1_000).map(f64::from).collect();
        let acf = moments(&values).acf1();
        assert!(acf > 0.99 && acf < 1.0, "{acf}");
    }

    #[test]
    fn kurtosis_of_a_constructed_series() {
        // Two spikes ±a among zeros: m2 = 2a²/n, m4 = 2a⁴/n, kurtosis = n/2.
        let mut values = vec![0.0; 10];
        values[3] = 2.0;
        values[7] = -2.0;
        assert!(close(moments(&values).kurtosis(), 5.0));
        // Symmetric two-point distribution: kurtosis 1.
        assert!(close(moments(&[3.0, 5.0, 3.0, 5.0]).kurtosis(), 1.0));
        // Uniform on many points: 9/5.
        let uniform: Vec<f64> = (0..100_000).map(f64::from).collect();
        assert!((moments(&uniform).kurtosis() - 1.8).abs() < 1e-6);
    }

    #[test]
    fn streaming_matches_two_pass_even_far_from_zero() {
        // A deterministic irregular series around a large offset.
        let values: Vec<f64> =
            (0..5_000).map(|i| 1e3 + f64::from(i).sin() * 0.01 + (f64::from(i) * 0.37).cos().powi(3) * 0.003).collect();
        let m = moments(&values);
        let (mean, m2, m3, m4, lag1) = two_pass(&values);
        assert!(close(m.mean(), mean));
        let rel = |a: f64, b: f64| ((a - b) / b).abs() < 1e-6;
        assert!(rel(m.m2, m2), "{} {m2}", m.m2);
        assert!((m.m3 - m3).abs() < 1e-6 * m2.powf(1.5), "{} {m3}", m.m3);
        assert!(rel(m.m4, m4), "{} {m4}", m.m4);
        assert!(rel(m.lag1, lag1), "{} {lag1}", m.lag1);
    }

    #[test]
    fn pooling_demeans_per_series_and_never_pairs_across_series() {
        let a = moments(&[1.0, -1.0, 1.0, -1.0]);
        let b = moments(&[1.0, -1.0, 1.0, -1.0]);
        // Within series: 3 pairs of −1 each; variance sums 4 each.
        assert!(close(pooled_acf1(&[a, b]), -6.0 / 8.0));
        // Concatenated naively this would be −7/8 (the pair across the seam is −1 too);
        // a seam pair of +1 would make it −5/8.
        let c = moments(&[-1.0, 1.0, -1.0, 1.0]);
        assert!(close(pooled_acf1(&[a, c]), -6.0 / 8.0));
        // Different means are removed per series: shifting one series changes nothing.
        let shifted = moments(&[101.0, 99.0, 101.0, 99.0]);
        assert!(close(pooled_acf1(&[a, shifted]), -6.0 / 8.0));
        assert!(close(pooled_kurtosis(&[a, shifted]), 1.0));
    }

    #[test]
    fn degenerate_series_give_nan() {
        assert!(moments(&[]).kurtosis().is_nan());
        assert!(moments(&[2.0]).acf1().is_nan());
        assert!(moments(&[2.0, 2.0, 2.0]).kurtosis().is_nan());
        assert_eq!(moments(&[2.0]).std_dev(), 0.0);
    }

    #[test]
    fn stats_line_has_four_decimals() {
        let stats = ReturnStats { kurtosis: 5.123_456, acf_abs1: 0.25, acf1: -0.012_34, returns: 10 };
        assert_eq!(stats.to_string(), "kurtosis=5.1235 acf_abs1=0.2500 acf1=-0.0123");
    }
}
