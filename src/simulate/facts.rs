//! The stylised facts of real asset returns (Cont 2001, "Empirical
//! properties of asset returns") measured on a simulated market: heavy tails
//! (Hill index), volatility clustering (ACF of `|r|` at several lags),
//! aggregational Gaussianity (kurtosis at longer horizons), the leverage
//! effect, co-movement within and across categories, and gain/loss
//! asymmetry. Everything streams: memory depends on the number of assets,
//! not on the horizon.

use std::fmt;

use super::lags::{LagCovariance, LagSums};
use super::stats::{SeriesMoments, pooled_kurtosis};
use super::tails::TailHistogram;

/// Lags (minutes) of the autocorrelation of `|r|`.
pub const ACF_ABS_LAGS: [usize; 4] = [1, 10, 60, 240];
/// Horizons (minutes) at which the kurtosis of aggregated returns is measured.
pub const KURTOSIS_HORIZONS: [usize; 3] = [15, 60, 240];
/// Lags `k = 1..=LEVERAGE_LAGS` summed in the leverage statistic.
pub const LEVERAGE_LAGS: usize = 10;
/// Horizon (minutes) of the returns whose correlations are measured.
pub const CORRELATION_HORIZON: usize = 60;
/// Share of the largest `|r|` in the Hill estimator.
pub const HILL_FRACTION: f64 = 0.025;
/// Share of the largest `|r|` among which losses are counted.
pub const ASYMMETRY_FRACTION: f64 = 0.001;

/// The measured facts (NaN where a run is too short for one).
#[derive(Debug, Clone, Copy)]
pub struct StylisedFacts {
    /// Hill tail index of the largest [`HILL_FRACTION`] of `|r|` (real: 2–5).
    pub tail_index: f64,
    /// Autocorrelation of `|r|` at [`ACF_ABS_LAGS`].
    pub acf_abs: [f64; 4],
    /// Kurtosis of returns over [`KURTOSIS_HORIZONS`] (decreasing toward 3).
    pub kurtosis: [f64; 3],
    /// `Σ_{k=1..10} corr(r_t, r²_{t+k})` (real: negative).
    pub leverage: f64,
    /// Mean correlation of 60-minute returns of two assets of one category.
    pub correlation_within: f64,
    /// Mean correlation of 60-minute returns of two assets of different categories.
    pub correlation_across: f64,
    /// Share of losses among the largest [`ASYMMETRY_FRACTION`] of `|r|` (real: > ½).
    pub loss_share: f64,
}

impl StylisedFacts {
    fn bits(&self) -> Vec<u64> {
        let scalars =
            [self.tail_index, self.leverage, self.correlation_within, self.correlation_across, self.loss_share];
        scalars.iter().chain(&self.acf_abs).chain(&self.kurtosis).map(|x| x.to_bits()).collect()
    }
}

impl PartialEq for StylisedFacts {
    /// The same figures bit for bit: a replay equals its original, NaNs included.
    fn eq(&self, other: &Self) -> bool {
        self.bits() == other.bits()
    }
}

/// One asset's accumulators.
#[derive(Debug, Clone)]
struct AssetFacts {
    abs_lags: LagCovariance,
    leverage: LagCovariance,
    /// Partial sums toward the next aggregated return, per horizon.
    partial: [f64; 3],
    aggregated: [SeriesMoments; 3],
    minutes: usize,
}

impl AssetFacts {
    fn new() -> Self {
        let leverage_lags: Vec<usize> = (1..=LEVERAGE_LAGS).collect();
        Self {
            abs_lags: LagCovariance::new(&ACF_ABS_LAGS),
            leverage: LagCovariance::new(&leverage_lags),
            partial: [0.0; 3],
            aggregated: [SeriesMoments::default(); 3],
            minutes: 0,
        }
    }

    fn push(&mut self, r: f64) {
        self.abs_lags.push(r.abs(), r.abs());
        self.leverage.push(r, r * r);
        self.minutes += 1;
        for ((horizon, partial), moments) in KURTOSIS_HORIZONS.iter().zip(&mut self.partial).zip(&mut self.aggregated) {
            *partial += r;
            if self.minutes.is_multiple_of(*horizon) {
                moments.push(*partial);
                *partial = 0.0;
            }
        }
    }
}

/// Collects the facts while a market runs, one minute of every asset at a time.
#[derive(Debug, Clone)]
pub struct FactsTracker {
    assets: Vec<AssetFacts>,
    category_of: Vec<usize>,
    tails: TailHistogram,
    /// The running 60-minute return of every asset.
    hour: Vec<f64>,
    minutes: usize,
    /// Hourly returns seen: Σ x_i, and Σ x_i x_j (row-major `n × n`, `j ≥ i` filled).
    hours: usize,
    sums: Vec<f64>,
    products: Vec<f64>,
}

impl FactsTracker {
    /// A tracker for assets whose categories are `category_of` (one index per asset).
    #[must_use]
    pub fn new(category_of: &[usize]) -> Self {
        let n = category_of.len();
        Self {
            assets: (0..n).map(|_| AssetFacts::new()).collect(),
            category_of: category_of.to_vec(),
            tails: TailHistogram::default(),
            hour: vec![0.0; n],
            minutes: 0,
            hours: 0,
            sums: vec![0.0; n],
            products: vec![0.0; n * n],
        }
    }

    /// Adds one minute: the 1-minute log return of every asset, in asset order.
    pub fn push_minute(&mut self, returns: &[f64]) {
        for ((asset, hour), r) in self.assets.iter_mut().zip(&mut self.hour).zip(returns) {
            asset.push(*r);
            *hour += *r;
            self.tails.push(*r);
        }
        self.minutes += 1;
        if self.minutes.is_multiple_of(CORRELATION_HORIZON) {
            self.close_hour();
        }
    }

    fn close_hour(&mut self) {
        let n = self.hour.len();
        for ((i, x), row) in self.hour.iter().enumerate().zip(self.products.chunks_mut(n.max(1))) {
            if let Some(sum) = self.sums.get_mut(i) {
                *sum += x;
            }
            for (product, y) in row.iter_mut().zip(&self.hour).skip(i) {
                *product += x * y;
            }
        }
        self.hours += 1;
        self.hour.iter_mut().for_each(|x| *x = 0.0);
    }

    /// The correlation of assets `i ≤ j`'s hourly returns.
    fn correlation(&self, i: usize, j: usize) -> f64 {
        let n = self.sums.len();
        let cell = |a: usize, b: usize| self.products.get(a * n + b).copied().unwrap_or(0.0);
        #[allow(clippy::cast_precision_loss)]
        let hours = self.hours as f64;
        let mean = |a: usize| self.sums.get(a).copied().unwrap_or(0.0) / hours;
        let covariance = |a: usize, b: usize| cell(a, b) / hours - mean(a) * mean(b);
        covariance(i, j) / (covariance(i, i) * covariance(j, j)).sqrt()
    }

    /// The facts of everything pushed so far (NaN where there is too little).
    #[must_use]
    pub fn facts(&self) -> StylisedFacts {
        let acf_abs =
            ACF_ABS_LAGS.map(|lag| LagSums::pooled(self.assets.iter().map(|a| a.abs_lags.centred(lag))).correlation());
        let kurtosis: [f64; 3] = std::array::from_fn(|h| {
            let series: Vec<SeriesMoments> = self.assets.iter().filter_map(|a| a.aggregated.get(h).copied()).collect();
            pooled_kurtosis(&series)
        });
        let leverage = (1..=LEVERAGE_LAGS)
            .map(|lag| LagSums::pooled(self.assets.iter().map(|a| a.leverage.centred(lag))).correlation())
            .sum();
        let (mut within, mut across) = (Vec::new(), Vec::new());
        for (i, ci) in self.category_of.iter().enumerate() {
            for (j, cj) in self.category_of.iter().enumerate().skip(i + 1) {
                let rho = self.correlation(i, j);
                if rho.is_finite() {
                    if ci == cj { within.push(rho) } else { across.push(rho) }
                }
            }
        }
        StylisedFacts {
            tail_index: self.tails.hill(HILL_FRACTION),
            acf_abs,
            kurtosis,
            leverage,
            correlation_within: mean(&within),
            correlation_across: mean(&across),
            loss_share: self.tails.loss_share(ASYMMETRY_FRACTION),
        }
    }
}

fn mean(values: &[f64]) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let n = values.len() as f64;
    if values.is_empty() { f64::NAN } else { values.iter().sum::<f64>() / n }
}

impl fmt::Display for StylisedFacts {
    /// A few lines, each naming the fact and what real returns show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a1, a10, a60, a240] = self.acf_abs;
        let [k15, k60, k240] = self.kurtosis;
        writeln!(f, "stylised facts (all assets' 1-minute log returns; real markets in brackets):")?;
        writeln!(f, "  tail index, Hill over the top 2.5 % |r|        {:>7.2}  [2–5]", self.tail_index)?;
        writeln!(
            f,
            "  ACF |r| at lags 1 / 10 / 60 / 240              {a1:.3} / {a10:.3} / {a60:.3} / {a240:.3}  [slow decay]"
        )?;
        writeln!(
            f,
            "  kurtosis of 15 / 60 / 240-minute returns       {k15:.1} / {k60:.1} / {k240:.1}  [falling toward 3]"
        )?;
        writeln!(f, "  leverage, Σ corr(r_t, r²_t+k) for k = 1..10    {:>7.3}  [negative]", self.leverage)?;
        writeln!(
            f,
            "  correlation of 60-minute returns              {:.3} within a category, {:.3} across  [0.2–0.5, 0.05–0.2]",
            self.correlation_within, self.correlation_across
        )?;
        write!(f, "  losses among the top 0.1 % |r|                 {:>7.3}  [> 0.5]", self.loss_share)
    }
}
