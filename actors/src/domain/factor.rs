//! The factors assets move with: one market factor shared by every asset and
//! one factor per category. Each is a GJR-GARCH(1,1) diffusion (a fall
//! raises the next minute's variance more than a rise of the same size) with
//! drawn news jumps skewed toward losses. Every category factor carries an
//! identical copy of the market factor, seeded alike and stepped in lockstep
//! with it, so the market's state travels with the category factors (in
//! snapshots, in the ticker) without a place of its own.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use super::asset::{CategorySpec, FactorSpec};
use super::price_model::{
    InjectError, MINUTES_PER_DAY, News, NewsKind, PendingNews, SHOCK_CAP, enqueue, mix_seed, per_minute_variance,
};

/// Seed stream of the market factor (category factors use `SECTOR_STREAM + index`).
const MARKET_STREAM: u64 = 0x3a7e_0000;
const SECTOR_STREAM: u64 = 0x5ec7_0000;

/// How a factor's variance reacts, and how its news is skewed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Dynamics {
    /// GARCH reaction to the last squared shock.
    pub alpha: f64,
    /// Extra reaction when the last shock was negative (GJR).
    pub gamma: f64,
    /// GARCH persistence.
    pub beta: f64,
    /// Drawn losses are this many times as large as drawn gains (and that
    /// much rarer, so a jump's mean stays 0); 1 is symmetric.
    pub jump_down_scale: f64,
    /// Skew of the diffusion's shocks (see [`skew_shock`]); 1 is symmetric.
    #[serde(default = "symmetric")]
    pub shock_skew: f64,
}

fn symmetric() -> f64 {
    1.0
}

impl Default for Dynamics {
    /// What category factors were before asymmetry: GARCH(1,1) 0.08/0.90,
    /// symmetric news (snapshots saved then load with it).
    fn default() -> Self {
        Self { alpha: 0.08, gamma: 0.0, beta: 0.90, jump_down_scale: 1.0, shock_skew: 1.0 }
    }
}

/// GJR-GARCH(1,1) variance update toward `long_run`; the long-run mean is
/// kept (ω = long_run · (1 − α − γ/2 − β)).
#[must_use]
pub fn gjr(long_run: f64, alpha: f64, gamma: f64, beta: f64, variance: f64, last_shock: f64) -> f64 {
    let omega = long_run * (1.0 - alpha - gamma / 2.0 - beta);
    let reaction = if last_shock < 0.0 { alpha + gamma } else { alpha };
    omega + reaction * last_shock * last_shock + beta * variance
}

/// A drawn news jump, if one happens this minute: `rate_daily` per day, of
/// standard deviation about `sigma`, losses `down_scale` times as large as
/// gains (see [`skewed`]).
pub fn draw_jump(rng: &mut Pcg64Mcg, rate_daily: f64, sigma: f64, down_scale: f64) -> Option<f64> {
    let chance = rate_daily / MINUTES_PER_DAY;
    if rng.random::<f64>() >= chance {
        return None;
    }
    Some(skewed(rng, sigma, down_scale))
}

/// A jump skewed toward losses: a loss or a gain with even chances, losses
/// `down_scale` times as large (root mean square `sigma`). Its mean,
/// [`jump_mean`], is negative: the models add it back as a steady drift
/// (a compensator), so news moves prices down in lumps and up gradually
/// without a trend of its own.
pub fn skewed(rng: &mut Pcg64Mcg, sigma: f64, down_scale: f64) -> f64 {
    let z: f64 = rng.sample(StandardNormal);
    let (down, up) = jump_scales(sigma, down_scale);
    if z < 0.0 { down * z } else { up * z }
}

/// The scales of losses and gains of a skewed jump.
fn jump_scales(sigma: f64, down_scale: f64) -> (f64, f64) {
    let k = down_scale.max(f64::MIN_POSITIVE);
    let norm = sigma / ((k + 1.0 / k) / 2.0).sqrt();
    (norm * k.sqrt(), norm / k.sqrt())
}

/// The mean of a [`skewed`] jump (0 when symmetric).
#[must_use]
pub fn jump_mean(sigma: f64, down_scale: f64) -> f64 {
    let (down, up) = jump_scales(sigma, down_scale);
    (up - down) / (2.0 * std::f64::consts::PI).sqrt()
}

/// A standard normal draw `z` made negatively skewed with mean 0 and
/// variance 1 kept: falls scaled by `√skew`, rises by `1/√skew`, then
/// re-centred and re-scaled. A small skew (1.1) barely moves the bulk but
/// makes the largest moves mostly falls, as in real returns.
#[must_use]
pub fn skew_shock(z: f64, skew: f64) -> f64 {
    if skew == 1.0 || skew <= 0.0 {
        return z;
    }
    let (down, up) = (skew.sqrt(), 1.0 / skew.sqrt());
    let mean = (up - down) / (2.0 * std::f64::consts::PI).sqrt();
    let sd = ((up * up + down * down) / 2.0 - mean * mean).sqrt();
    (if z < 0.0 { down * z } else { up * z } - mean) / sd
}

/// One factor's diffusion and drawn news.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Factor {
    vol_daily: f64,
    jump_rate_daily: f64,
    jump_sigma: f64,
    variance: f64,
    last_shock: f64,
    rng: Pcg64Mcg,
    #[serde(default)]
    dynamics: Dynamics,
}

/// A factor's move in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FactorMove {
    /// The diffusion part of the log return.
    pub diffusion: f64,
    /// The per-minute variance the diffusion was drawn with.
    pub variance: f64,
    /// Drawn news, if any (its jump is not in `diffusion`).
    pub news: Option<News>,
}

impl Factor {
    fn new(vol_daily: f64, jump_rate_daily: f64, jump_sigma: f64, dynamics: Dynamics, seed: u64) -> Self {
        Self {
            vol_daily,
            jump_rate_daily,
            jump_sigma,
            variance: per_minute_variance(vol_daily),
            last_shock: 0.0,
            rng: Pcg64Mcg::seed_from_u64(seed),
            dynamics,
        }
    }

    /// The market factor of `spec`, seeded from the market seed.
    #[must_use]
    pub fn market(spec: &FactorSpec, seed: u64) -> Self {
        let dynamics = spec.dynamics();
        Self::new(
            spec.market_vol_daily,
            spec.market_jump_rate_daily,
            spec.market_jump_sigma,
            dynamics,
            market_seed(seed),
        )
    }

    /// A factor that never moves (what snapshots saved before the market
    /// factor existed load with).
    #[must_use]
    pub fn inert() -> Self {
        Self::new(0.0, 0.0, 0.0, Dynamics::default(), 0)
    }

    /// Advances one minute; `kind` labels drawn news.
    fn step(&mut self, kind: NewsKind) -> FactorMove {
        let d = self.dynamics;
        let long_run = per_minute_variance(self.vol_daily);
        self.variance = gjr(long_run, d.alpha, d.gamma, d.beta, self.variance, self.last_shock);
        let z: f64 = self.rng.sample(StandardNormal);
        // The news compensator: drawn jumps have a negative mean, given back here.
        let compensator = -self.jump_rate_daily / MINUTES_PER_DAY * jump_mean(self.jump_sigma, d.jump_down_scale);
        let diffusion = self.variance.sqrt() * skew_shock(z, d.shock_skew) + compensator;
        let news = draw_jump(&mut self.rng, self.jump_rate_daily, self.jump_sigma, d.jump_down_scale)
            .map(|log_jump| News { kind, log_jump });
        // GARCH reacts to the diffusion only: a news jump is hundreds of
        // minute-sigmas, and feeding it back would blow the variance up.
        self.last_shock = (diffusion - compensator).clamp(-SHOCK_CAP, SHOCK_CAP);
        FactorMove { diffusion, variance: self.variance, news }
    }
}

impl Default for Factor {
    fn default() -> Self {
        Self::inert()
    }
}

fn market_seed(seed: u64) -> u64 {
    mix_seed(seed, MARKET_STREAM)
}

/// What the factors did in one minute, as one asset of a category sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SectorMove {
    /// Log return of the category factor (diffusion plus any jump).
    pub log_return: f64,
    /// Current per-minute variance of the category factor.
    pub variance: f64,
    /// Category news this minute, if any.
    pub news: Option<News>,
    /// Operator news about the category this minute (its jump is in
    /// `log_return` too).
    pub injected: Option<News>,
    /// Log return of the market factor (diffusion plus any jump).
    pub market_return: f64,
    /// Current per-minute variance of the market factor.
    pub market_variance: f64,
    /// Market-wide news this minute, if any (its jump is in `market_return`).
    pub market_news: Option<News>,
}

/// One category's factor (GJR-GARCH diffusion plus category news) and its
/// copy of the market factor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "StoredSector", into = "StoredSector")]
pub struct SectorModel {
    own: Factor,
    market: Factor,
    pending: VecDeque<PendingNews>,
}

/// A category factor as snapshots hold it: its own factor's fields at the
/// top (as before the market factor existed), the market copy beside them.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSector {
    vol_daily: f64,
    jump_rate_daily: f64,
    jump_sigma: f64,
    variance: f64,
    last_shock: f64,
    rng: Pcg64Mcg,
    #[serde(default)]
    dynamics: Dynamics,
    #[serde(default)]
    market: Factor,
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pending: VecDeque<PendingNews>,
}

impl From<StoredSector> for SectorModel {
    fn from(s: StoredSector) -> Self {
        let own = Factor {
            vol_daily: s.vol_daily,
            jump_rate_daily: s.jump_rate_daily,
            jump_sigma: s.jump_sigma,
            variance: s.variance,
            last_shock: s.last_shock,
            rng: s.rng,
            dynamics: s.dynamics,
        };
        Self { own, market: s.market, pending: s.pending }
    }
}

impl From<SectorModel> for StoredSector {
    fn from(m: SectorModel) -> Self {
        let own = m.own;
        Self {
            vol_daily: own.vol_daily,
            jump_rate_daily: own.jump_rate_daily,
            jump_sigma: own.jump_sigma,
            variance: own.variance,
            last_shock: own.last_shock,
            rng: own.rng,
            dynamics: own.dynamics,
            market: m.market,
            pending: m.pending,
        }
    }
}

impl SectorModel {
    /// A factor for `spec` (with the market factor of `factors`), seeded
    /// from the market seed and category index.
    #[must_use]
    pub fn new(spec: &CategorySpec, factors: &FactorSpec, seed: u64, index: usize) -> Self {
        let stream = mix_seed(seed, SECTOR_STREAM + index as u64);
        Self {
            own: Factor::new(spec.vol_daily, spec.jump_rate_daily, spec.jump_sigma, factors.dynamics(), stream),
            market: Factor::market(factors, seed),
            pending: VecDeque::new(),
        }
    }

    /// Queues operator news about the whole category for a coming step.
    ///
    /// # Errors
    /// A jump beyond ±`INJECTED_LOG_JUMP_MAX`, or a full queue.
    pub fn inject(&mut self, news: PendingNews) -> Result<(), InjectError> {
        enqueue(&mut self.pending, news)
    }

    /// The operator news the next step applies, if any.
    #[must_use]
    pub fn next_injection(&self) -> Option<&PendingNews> {
        self.pending.front()
    }

    /// Advances the factor and its market copy by one market minute.
    pub fn step(&mut self) -> SectorMove {
        let own = self.own.step(NewsKind::Category);
        let market = self.market.step(NewsKind::Market);
        let jump = own.news.map_or(0.0, |n| n.log_jump);
        let injected = self.pending.pop_front().map(|p| News { kind: NewsKind::Operator, log_jump: p.log_jump });
        // Added only when present, so a market without injections keeps its
        // exact floating-point path.
        let log_return = match injected {
            Some(extra) => own.diffusion + jump + extra.log_jump,
            None => own.diffusion + jump,
        };
        SectorMove {
            log_return,
            variance: own.variance,
            news: own.news,
            injected,
            market_return: market.diffusion + market.news.map_or(0.0, |n| n.log_jump),
            market_variance: market.variance,
            market_news: market.news,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn moments(values: impl Iterator<Item = f64>) -> (f64, f64, f64) {
        let values: Vec<f64> = values.collect();
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let skew = values.iter().map(|v| (v - mean).powi(3)).sum::<f64>() / n / var.powf(1.5);
        (mean, var, skew)
    }

    #[test]
    fn a_fall_raises_variance_more_than_a_rise() {
        let long_run = 1e-6;
        let up = gjr(long_run, 0.05, 0.10, 0.90, long_run, 0.003);
        let down = gjr(long_run, 0.05, 0.10, 0.90, long_run, -0.003);
        assert!(down > up && up > long_run);
        // Unconditionally the long-run variance is kept: E[shock²] = variance, half of them falls.
        let steady = gjr(long_run, 0.05, 0.10, 0.90, long_run, 0.0) + (0.05 + 0.10 / 2.0) * long_run;
        assert!((steady - long_run).abs() < 1e-18);
    }

    #[test]
    fn skewed_shocks_keep_mean_and_variance_and_fall_harder() {
        let mut rng = Pcg64Mcg::seed_from_u64(3);
        let draws: Vec<f64> = (0..200_000).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
        let (mean, var, skew) = moments(draws.iter().map(|z| skew_shock(*z, 1.2)));
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02 && skew < -0.1, "{mean} {var} {skew}");
        assert_eq!(skew_shock(0.7, 1.0), 0.7);
    }

    #[test]
    fn skewed_jumps_lose_more_than_they_gain_by_their_mean() {
        let mut rng = Pcg64Mcg::seed_from_u64(5);
        let jumps: Vec<f64> = (0..200_000).map(|_| skewed(&mut rng, 0.02, 2.0)).collect();
        let (mean, var, skew) = moments(jumps.iter().copied());
        assert!((mean - jump_mean(0.02, 2.0)).abs() < 1e-4 && mean < -0.003, "{mean}");
        let rms = (var + mean * mean).sqrt();
        assert!((rms - 0.02).abs() < 3e-4 && skew < -0.5, "{rms} {skew}");
        let losses = jumps.iter().filter(|j| **j < 0.0).count() as f64 / jumps.len() as f64;
        assert!((losses - 0.5).abs() < 0.01, "{losses}");
        assert_eq!(jump_mean(0.02, 1.0), 0.0);
    }

    #[test]
    fn every_category_carries_the_same_market_factor() {
        let factors = FactorSpec {
            market_vol_daily: 0.01,
            market_jump_rate_daily: 50.0,
            market_jump_sigma: 0.01,
            ..FactorSpec::default()
        };
        let spec =
            |name: &str| CategorySpec { name: name.into(), vol_daily: 0.01, jump_rate_daily: 1.0, jump_sigma: 0.01 };
        let mut tech = SectorModel::new(&spec("Tech"), &factors, 9, 0);
        let mut energy = SectorModel::new(&spec("Energy"), &factors, 9, 1);
        let mut news = 0;
        for _ in 0..500 {
            let (a, b) = (tech.step(), energy.step());
            assert_eq!(
                (a.market_return, a.market_variance, a.market_news),
                (b.market_return, b.market_variance, b.market_news)
            );
            assert_ne!(a.log_return, b.log_return);
            news += usize::from(a.market_news.is_some());
        }
        assert!(news > 0);
        // A snapshot keeps both factors; one saved before the market factor loads with an inert one.
        let json = serde_json::to_string(&tech).unwrap();
        let mut restored: SectorModel = serde_json::from_str(&json).unwrap();
        assert_eq!(restored.step(), tech.step());
        // (Cut as text: a JSON value would round the RNG's 128-bit state.)
        let old = format!("{}}}", &json[..json.find(",\"dynamics\"").unwrap()]);
        let mut old: SectorModel = serde_json::from_str(&old).unwrap();
        let step = old.step();
        assert_eq!((step.market_return, step.market_variance, step.market_news), (0.0, 0.0, None));
    }
}
