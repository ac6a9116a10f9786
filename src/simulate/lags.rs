//! Lagged co-moments of two series observed together (`x_t`, `y_t`), for a
//! fixed set of lags, in memory that depends on the largest lag only: the
//! autocorrelation of `|r|` (`x = y = |r|`) and the leverage correlation
//! (`x = r`, `y = r²`) of `stockbot simulate`.

use std::collections::VecDeque;

/// `Σ_t (x_t − x̄)(y_{t+k} − ȳ)` for each lag `k`, with the sums that centre
/// it once the means are known (the means are those of the whole series, as
/// in the usual sample autocorrelation).
#[derive(Debug, Clone, PartialEq)]
pub struct LagCovariance {
    lags: Vec<usize>,
    /// The last `max(lags)` values of `x`, newest last.
    recent_x: VecDeque<f64>,
    /// The first `max(lags)` values of `y`.
    first_y: Vec<f64>,
    /// `Σ x_t y_{t+k}` per lag.
    cross: Vec<f64>,
    count: usize,
    sum_x: f64,
    sum_y: f64,
    sum_xx: f64,
    sum_yy: f64,
}

impl LagCovariance {
    /// An accumulator for `lags` (each at least 1).
    #[must_use]
    pub fn new(lags: &[usize]) -> Self {
        let lags: Vec<usize> = lags.iter().map(|lag| (*lag).max(1)).collect();
        let longest = lags.iter().copied().max().unwrap_or(1);
        Self {
            cross: vec![0.0; lags.len()],
            lags,
            recent_x: VecDeque::with_capacity(longest + 1),
            first_y: Vec::with_capacity(longest),
            count: 0,
            sum_x: 0.0,
            sum_y: 0.0,
            sum_xx: 0.0,
            sum_yy: 0.0,
        }
    }

    fn longest(&self) -> usize {
        self.lags.iter().copied().max().unwrap_or(1)
    }

    /// Adds the next pair of values.
    pub fn push(&mut self, x: f64, y: f64) {
        let held = self.recent_x.len();
        for (lag, cross) in self.lags.iter().zip(self.cross.iter_mut()) {
            // x_{t−lag} sits `lag` places from the newest end.
            if let Some(earlier) = held.checked_sub(*lag).and_then(|index| self.recent_x.get(index)) {
                *cross += earlier * y;
            }
        }
        if self.first_y.len() < self.longest() {
            self.first_y.push(y);
        }
        self.recent_x.push_back(x);
        if self.recent_x.len() > self.longest() {
            self.recent_x.pop_front();
        }
        self.count += 1;
        self.sum_x += x;
        self.sum_y += y;
        self.sum_xx += x * x;
        self.sum_yy += y * y;
    }

    /// The centred co-moment at `lag` (one of the lags given to `new`), and
    /// the centred sums of squares of `x` and `y`; zeros before two values.
    #[must_use]
    pub fn centred(&self, lag: usize) -> LagSums {
        let Some(index) = self.lags.iter().position(|l| *l == lag.max(1)) else { return LagSums::default() };
        let lag = lag.max(1);
        if self.count <= lag {
            return LagSums::default();
        }
        #[allow(clippy::cast_precision_loss)]
        let (n, pairs) = (self.count as f64, (self.count - lag) as f64);
        let (mean_x, mean_y) = (self.sum_x / n, self.sum_y / n);
        // x over t ≤ n−lag: all but the last `lag`; y over t > lag: all but the first `lag`.
        let tail_x: f64 = self.recent_x.iter().rev().take(lag).sum();
        let head_y: f64 = self.first_y.iter().take(lag).sum();
        let leading_x = self.sum_x - tail_x;
        let trailing_y = self.sum_y - head_y;
        let cross = self.cross.get(index).copied().unwrap_or(0.0);
        LagSums {
            cross: cross - mean_y * leading_x - mean_x * trailing_y + pairs * mean_x * mean_y,
            xx: (self.sum_xx - n * mean_x * mean_x).max(0.0),
            yy: (self.sum_yy - n * mean_y * mean_y).max(0.0),
        }
    }
}

/// Centred sums of one series pair at one lag; they pool across series by
/// adding up.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LagSums {
    /// `Σ (x_t − x̄)(y_{t+k} − ȳ)`.
    pub cross: f64,
    /// `Σ (x_t − x̄)²`.
    pub xx: f64,
    /// `Σ (y_t − ȳ)²`.
    pub yy: f64,
}

impl LagSums {
    /// The sum of several series' sums.
    #[must_use]
    pub fn pooled(parts: impl IntoIterator<Item = Self>) -> Self {
        parts.into_iter().fold(Self::default(), |a, b| Self {
            cross: a.cross + b.cross,
            xx: a.xx + b.xx,
            yy: a.yy + b.yy,
        })
    }

    /// The lagged correlation `cross / √(xx·yy)` (for `x = y`, the sample
    /// autocorrelation); NaN without variance.
    #[must_use]
    pub fn correlation(&self) -> f64 {
        let scale = (self.xx * self.yy).sqrt();
        if scale > 0.0 { self.cross / scale } else { f64::NAN }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook formula over stored series.
    fn direct(x: &[f64], y: &[f64], lag: usize) -> f64 {
        let n = x.len() as f64;
        let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
        let cross: f64 = (0..x.len() - lag).map(|t| (x[t] - mx) * (y[t + lag] - my)).sum();
        let xx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
        let yy: f64 = y.iter().map(|v| (v - my).powi(2)).sum();
        cross / (xx * yy).sqrt()
    }

    #[test]
    fn streaming_matches_the_direct_formula() {
        let x: Vec<f64> = (0..3_000).map(|i| (f64::from(i) * 0.37).sin() + 0.2 * (f64::from(i) * 1.7).cos()).collect();
        let y: Vec<f64> = x.iter().map(|v| v * v + 0.1).collect();
        let mut acc = LagCovariance::new(&[1, 7, 60]);
        for (a, b) in x.iter().zip(&y) {
            acc.push(*a, *b);
        }
        for lag in [1, 7, 60] {
            let got = acc.centred(lag).correlation();
            let want = direct(&x, &y, lag);
            assert!((got - want).abs() < 1e-9, "lag {lag}: {got} vs {want}");
        }
        assert_eq!(acc.centred(2), LagSums::default(), "a lag not asked for");
    }

    #[test]
    fn a_series_shifted_by_the_lag_correlates_fully() {
        // y_t = x_{t−3}: corr(x_t, y_{t+3}) = 1 up to the ends.
        let x: Vec<f64> = (0..500).map(|i| f64::from(i % 17) - f64::from(i % 5)).collect();
        let mut acc = LagCovariance::new(&[3]);
        for t in 0..x.len() {
            acc.push(x[t], if t >= 3 { x[t - 3] } else { 0.0 });
        }
        assert!(acc.centred(3).correlation() > 0.98);
    }

    #[test]
    fn too_short_a_series_gives_nothing() {
        let mut acc = LagCovariance::new(&[5]);
        for i in 0..5 {
            acc.push(f64::from(i), f64::from(i));
        }
        assert!(acc.centred(5).correlation().is_nan());
    }
}
