//! The tails of a return distribution in fixed memory: a histogram of
//! `ln |r|` in narrow bins (with each bin's sign count and exact sum of
//! `ln |r|`) from which the Hill tail index of the largest moves and the
//! share of losses among them are read, whatever the number of returns.

/// Width of a bin in `ln |r|` (0.1 % of a value): an order statistic read
/// from the histogram is off by at most that much.
const BIN_WIDTH: f64 = 0.001;
/// `ln |r|` of the lowest bin; smaller moves land in it (they are never tail).
const LN_MIN: f64 = -25.0;
/// `ln |r|` of the top of the highest bin; larger moves land in it.
const LN_MAX: f64 = 2.0;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Bin {
    count: u64,
    negative: u64,
    sum_ln: f64,
}

/// Counts of `|r|` by magnitude, with signs.
#[derive(Debug, Clone, PartialEq)]
pub struct TailHistogram {
    bins: Vec<Bin>,
    /// Returns of exactly 0 (a halted minute): never part of a tail.
    zeros: u64,
}

impl Default for TailHistogram {
    fn default() -> Self {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let bins = ((LN_MAX - LN_MIN) / BIN_WIDTH).ceil() as usize;
        Self { bins: vec![Bin::default(); bins], zeros: 0 }
    }
}

/// The largest moves of a histogram, as read from the top down.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Top {
    /// How many moves were taken (the wanted number, or all there are).
    taken: f64,
    /// Σ ln |r| over them.
    sum_ln: f64,
    /// How many of them were losses.
    negative: f64,
    /// ln |r| where the top ends (the next order statistic).
    threshold_ln: f64,
}

impl TailHistogram {
    /// Adds one return (non-finite values are ignored).
    pub fn push(&mut self, r: f64) {
        if !r.is_finite() {
            return;
        }
        if r == 0.0 {
            self.zeros += 1;
            return;
        }
        let ln = r.abs().ln();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let index = (((ln - LN_MIN) / BIN_WIDTH).floor().max(0.0) as usize).min(self.bins.len().saturating_sub(1));
        if let Some(bin) = self.bins.get_mut(index) {
            bin.count += 1;
            bin.negative += u64::from(r < 0.0);
            bin.sum_ln += ln;
        }
    }

    /// Returns seen, zeros included.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.zeros + self.bins.iter().map(|bin| bin.count).sum::<u64>()
    }

    /// The `wanted` largest moves; the bin they end in is split evenly.
    fn top(&self, wanted: f64) -> Top {
        let mut top = Top::default();
        for bin in self.bins.iter().rev().filter(|bin| bin.count > 0) {
            #[allow(clippy::cast_precision_loss)]
            let count = bin.count as f64;
            let mean_ln = bin.sum_ln / count;
            top.threshold_ln = mean_ln;
            let share = ((wanted - top.taken) / count).min(1.0);
            if share <= 0.0 {
                break;
            }
            top.taken += share * count;
            top.sum_ln += share * bin.sum_ln;
            #[allow(clippy::cast_precision_loss)]
            let negative = bin.negative as f64;
            top.negative += share * negative;
        }
        top
    }

    /// The Hill estimator of the tail index over the largest `fraction` of
    /// all returns: `1 / mean(ln(|r|_(i) / |r|_(k+1)))`; NaN with too few.
    #[must_use]
    pub fn hill(&self, fraction: f64) -> f64 {
        let wanted = self.wanted(fraction);
        if wanted < 2.0 {
            return f64::NAN;
        }
        let top = self.top(wanted);
        let excess = top.sum_ln / top.taken - top.threshold_ln;
        if top.taken < wanted || excess <= 0.0 { f64::NAN } else { 1.0 / excess }
    }

    /// The share of losses among the largest `fraction` of all returns; NaN
    /// when that is not even one return.
    #[must_use]
    pub fn loss_share(&self, fraction: f64) -> f64 {
        let wanted = self.wanted(fraction);
        if wanted < 1.0 {
            return f64::NAN;
        }
        let top = self.top(wanted);
        if top.taken > 0.0 { top.negative / top.taken } else { f64::NAN }
    }

    fn wanted(&self, fraction: f64) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let count = self.count() as f64;
        (count * fraction).floor()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pareto-distributed magnitudes with tail index `alpha` from a fixed
    /// low-discrepancy sequence, every third one negative.
    fn pareto(alpha: f64, n: u32) -> Vec<f64> {
        (1..=n)
            .map(|i| {
                let u = (f64::from(i) * 0.618_033_988_749_895).fract().max(1e-12);
                let magnitude = 1e-3 * u.powf(-1.0 / alpha);
                if i % 3 == 0 { -magnitude } else { magnitude }
            })
            .collect()
    }

    #[test]
    fn hill_recovers_a_pareto_tail_index() {
        for alpha in [2.0, 3.0, 4.5] {
            let mut histogram = TailHistogram::default();
            for r in pareto(alpha, 200_000) {
                histogram.push(r);
            }
            let hill = histogram.hill(0.025);
            assert!((hill - alpha).abs() < 0.05 * alpha, "alpha {alpha}: {hill}");
        }
    }

    #[test]
    fn loss_share_counts_the_sign_of_the_largest_moves() {
        let mut histogram = TailHistogram::default();
        for i in 0..10_000 {
            let r = 1e-4 * f64::from(i % 100 + 1);
            // The largest 1 % (magnitude 100) are all losses.
            histogram.push(if i % 100 == 99 { -r } else { r });
        }
        histogram.push(0.0);
        assert_eq!(histogram.count(), 10_001);
        assert!((histogram.loss_share(0.01) - 1.0).abs() < 1e-9);
        assert!((histogram.loss_share(0.02) - 0.5).abs() < 1e-9);
        assert!(TailHistogram::default().loss_share(0.001).is_nan());
        assert!(TailHistogram::default().hill(0.025).is_nan());
    }
}
