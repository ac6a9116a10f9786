//! The price model: each asset's latent log price under GJR-GARCH(1,1)
//! volatility (falls raise it more than rises, and so does bad news) with
//! calm/volatile regimes, mean reversion to a drifting fair value, random and
//! scheduled news jumps skewed toward losses, the market and category
//! factors (`factor`), and circuit breakers, plus operator news injected
//! into an asset or a category. Maths
//! runs in `f64`; it crosses into money only at the quote. One step is one
//! market minute; every random draw comes from a seeded RNG, so a market
//! replays exactly from its seed and its injections (an injection draws
//! nothing, so a market without any replays exactly as before).

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use super::asset::{ModelParams, NEWS_VARIANCE_MULTIPLE_MAX, Universe};
pub use super::factor::{SectorModel, SectorMove};
use super::factor::{gjr, jump_mean, skew_shock, skewed};

/// Market minutes per market day (the game trades around the clock).
pub const MINUTES_PER_DAY: f64 = 1440.0;

/// Circuit breaker: a move of more than this fraction within one window halts
/// the asset.
pub const BREAKER_LIMIT: f64 = 0.10;
/// Length of the circuit-breaker reference window, in market minutes.
pub const BREAKER_WINDOW_MINUTES: u64 = 15;
/// How long a circuit-breaker halt lasts, in market minutes.
pub const HALT_MINUTES: u64 = 10;

/// Volatility multiplier of the volatile regime.
const VOLATILE_REGIME_MULTIPLIER: f64 = 2.2;
/// Per-minute chance of entering the volatile regime (about once a day).
const ENTER_VOLATILE_PER_MINUTE: f64 = 1.0 / MINUTES_PER_DAY;
/// Per-minute chance of leaving it (lasts about 4 hours, so an asset is
/// volatile about 14% of the time).
const LEAVE_VOLATILE_PER_MINUTE: f64 = 1.0 / 240.0;
/// A single shock never exceeds this many log units (keeps variance finite).
pub(crate) const SHOCK_CAP: f64 = 0.5;
/// Largest operator news jump, in log units (about +65% / −39%).
pub const INJECTED_LOG_JUMP_MAX: f64 = 0.5;
/// Most operator news waiting for one asset or category; one lands per minute.
pub const PENDING_NEWS_MAX: usize = 8;

/// What moved a price beyond its diffusion this minute.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum NewsKind {
    /// Unscheduled news about the asset.
    Asset,
    /// Scheduled news (earnings) about the asset.
    Scheduled,
    /// News about the whole category.
    Category,
    /// News about the whole market.
    Market,
    /// News an operator injected (into the asset or its category).
    Operator,
}

/// A news event with its log-price jump.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct News {
    pub kind: NewsKind,
    pub log_jump: f64,
}

/// Operator news waiting for the next step of its asset or category. It is
/// part of the model's state, so a snapshot keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingNews {
    /// The jump, within ±[`INJECTED_LOG_JUMP_MAX`].
    pub log_jump: f64,
    /// The operator's headline, if they wrote one.
    pub text: Option<String>,
}

/// Why operator news was not queued.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InjectError {
    #[error("news jump {log_jump} is out of bounds: it must be a number within ±{INJECTED_LOG_JUMP_MAX}")]
    OutOfBounds { log_jump: f64 },
    #[error("{PENDING_NEWS_MAX} news items are already waiting; one lands per market minute")]
    QueueFull,
}

/// Queues `news` unless its jump is out of bounds or `queue` is full.
pub(crate) fn enqueue(queue: &mut VecDeque<PendingNews>, news: PendingNews) -> Result<(), InjectError> {
    if !news.log_jump.is_finite() || news.log_jump.abs() > INJECTED_LOG_JUMP_MAX {
        return Err(InjectError::OutOfBounds { log_jump: news.log_jump });
    }
    if queue.len() >= PENDING_NEWS_MAX {
        return Err(InjectError::QueueFull);
    }
    queue.push_back(news);
    Ok(())
}

/// The latent price process of one asset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssetModel {
    params: ModelParams,
    log_price: f64,
    log_fair: f64,
    variance: f64,
    last_shock: f64,
    /// This minute's drawn news as it hit the asset (own, category, market),
    /// for the next variance update.
    #[serde(default)]
    last_news_jump: f64,
    volatile: bool,
    minute: u64,
    earnings_phase_minutes: u64,
    window_start_log_price: f64,
    window_started_minute: u64,
    halted_until_minute: u64,
    quoted_log_price: f64,
    rng: Pcg64Mcg,
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pending: VecDeque<PendingNews>,
}

/// What an asset's model says after one minute.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelTick {
    /// The quoted mid price (frozen while halted).
    pub mid: f64,
    /// Current conditional daily volatility (drives spread and impact).
    pub sigma_daily: f64,
    /// Whether the asset is halted after this minute.
    pub halted: bool,
    /// Market minutes left in the halt (0 when trading).
    pub halt_minutes_left: u64,
    /// News that hit the asset this minute (its own, else its category's,
    /// else the market's).
    pub news: Option<News>,
    /// Operator news about the asset itself that landed this minute.
    pub injected: Option<News>,
}

impl AssetModel {
    /// A model starting at `initial_price`, seeded from the market seed and
    /// the asset's index.
    #[must_use]
    pub fn new(params: &ModelParams, initial_price: f64, seed: u64, index: usize) -> Self {
        let log_price = initial_price.max(0.01).ln();
        let interval_minutes = (params.earnings_interval_days * MINUTES_PER_DAY).round();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let interval = interval_minutes.max(0.0) as u64;
        // Spread scheduled news of different assets over the interval.
        let phase = if interval == 0 { 0 } else { (index as u64).wrapping_mul(7_919) % interval };
        Self {
            params: *params,
            log_price,
            log_fair: log_price,
            variance: per_minute_variance(params.vol_daily),
            last_shock: 0.0,
            last_news_jump: 0.0,
            volatile: false,
            minute: 0,
            earnings_phase_minutes: phase,
            window_start_log_price: log_price,
            window_started_minute: 0,
            halted_until_minute: 0,
            quoted_log_price: log_price,
            rng: Pcg64Mcg::seed_from_u64(mix_seed(seed, index as u64)),
            pending: VecDeque::new(),
        }
    }

    /// Queues operator news about the asset for a coming step.
    ///
    /// # Errors
    /// A jump beyond ±[`INJECTED_LOG_JUMP_MAX`], or a full queue.
    pub fn inject(&mut self, news: PendingNews) -> Result<(), InjectError> {
        enqueue(&mut self.pending, news)
    }

    /// The operator news the next step applies, if any.
    #[must_use]
    pub fn next_injection(&self) -> Option<&PendingNews> {
        self.pending.front()
    }

    /// The fair value the price reverts to.
    #[must_use]
    pub fn fair_value(&self) -> f64 {
        self.log_fair.exp()
    }

    /// The latent price (the quote, unless halted).
    #[must_use]
    pub fn latent_price(&self) -> f64 {
        self.log_price.exp()
    }

    /// What the circuit breaker did in the last step: `Some(true)` it
    /// tripped, `Some(false)` the halt ended and the asset reopened.
    #[must_use]
    pub fn breaker_change(&self) -> Option<bool> {
        if self.minute == 0 {
            None
        } else if self.halted_until_minute == self.minute + HALT_MINUTES {
            Some(true)
        } else if self.halted_until_minute == self.minute {
            Some(false)
        } else {
            None
        }
    }

    /// Market minutes stepped so far.
    #[must_use]
    pub fn minute(&self) -> u64 {
        self.minute
    }

    /// The quoted mid now, without stepping.
    #[must_use]
    pub fn mid(&self) -> f64 {
        self.quoted_log_price.exp()
    }

    /// Advances the asset by one market minute under its factors' move.
    pub fn step(&mut self, sector: &SectorMove) -> ModelTick {
        self.minute += 1;
        let p = self.params;
        self.volatile = if self.volatile {
            self.rng.random::<f64>() >= LEAVE_VOLATILE_PER_MINUTE
        } else {
            self.rng.random::<f64>() < ENTER_VOLATILE_PER_MINUTE
        };
        let regime = if self.volatile { VOLATILE_REGIME_MULTIPLIER } else { 1.0 };
        let long_run = per_minute_variance(p.vol_daily);
        self.variance = gjr(long_run, p.garch_alpha, p.garch_gamma, p.garch_beta, self.variance, self.last_shock)
            + news_variance(p.news_vol_response, self.last_news_jump, long_run);
        let z: f64 = self.rng.sample(StandardNormal);
        let innovation = self.variance.sqrt() * skew_shock(z, p.shock_skew);
        let idiosyncratic = innovation * regime;

        let z_fair: f64 = self.rng.sample(StandardNormal);
        self.log_fair += p.drift_daily / MINUTES_PER_DAY + per_minute_variance(p.fair_value_vol_daily).sqrt() * z_fair;
        let reversion_rate = std::f64::consts::LN_2 / (p.reversion_half_life_days * MINUTES_PER_DAY);
        let reversion = -reversion_rate * (self.log_price - self.log_fair);

        let news = self.draw_news();
        // The compensator of the asset's own drawn news (whose mean is negative).
        let compensator = -self.news_mean_per_minute();
        let injected = self.pending.pop_front().map(|p| News { kind: NewsKind::Operator, log_jump: p.log_jump });
        let drawn_jump = news.map_or(0.0, |n| n.log_jump);
        // Injected jumps are added only when present, so a market without
        // injections keeps its exact floating-point path.
        let own_jump = match injected {
            Some(extra) => drawn_jump + extra.log_jump,
            None => drawn_jump,
        };
        let factor_part = p.sector_loading * sector.log_return + p.market_loading * sector.market_return;
        // News is information: the fair value moves with it, so mean
        // reversion does not undo it.
        let sector_drawn = sector.news.map_or(0.0, |n| n.log_jump);
        let sector_jump = match sector.injected {
            Some(extra) => sector_drawn + extra.log_jump,
            None => sector_drawn,
        };
        let market_jump = sector.market_news.map_or(0.0, |n| n.log_jump);
        let total_jump = own_jump + p.sector_loading * sector_jump + p.market_loading * market_jump;
        self.log_fair += total_jump;
        // Bad news raises volatility (operator news does not: its jump is
        // all the operator asked for).
        self.last_news_jump = drawn_jump + p.sector_loading * sector_drawn + p.market_loading * market_jump;

        let shock = (idiosyncratic + own_jump).clamp(-SHOCK_CAP, SHOCK_CAP);
        // GARCH sees its own innovation, before the regime multiplier and
        // without jumps: fed the regime-scaled shock, its persistence would be
        // alpha * multiplier² + beta, above 1 (explosive) in the volatile
        // regime; news reaches it through `news_variance`, bounded.
        self.last_shock = innovation.clamp(-SHOCK_CAP, SHOCK_CAP);
        self.log_fair += compensator;
        self.log_price += shock + factor_part + reversion + compensator;

        let conditional_variance = self.variance * regime * regime
            + p.sector_loading.powi(2) * sector.variance
            + p.market_loading.powi(2) * sector.market_variance;
        let sigma_daily = (conditional_variance * MINUTES_PER_DAY).sqrt();
        self.apply_breaker();
        let halted = self.minute < self.halted_until_minute;
        ModelTick {
            mid: self.quoted_log_price.exp(),
            sigma_daily,
            halted,
            halt_minutes_left: self.halted_until_minute.saturating_sub(self.minute),
            news: news.or(sector.news).or(sector.market_news),
            injected,
        }
    }

    /// The mean log move per minute of the asset's own drawn news.
    fn news_mean_per_minute(&self) -> f64 {
        let p = &self.params;
        let random = p.jump_rate_daily / MINUTES_PER_DAY * jump_mean(p.jump_sigma, p.jump_down_scale);
        let interval = (p.earnings_interval_days * MINUTES_PER_DAY).round();
        let scheduled =
            if interval >= 1.0 { jump_mean(p.earnings_jump_sigma, p.jump_down_scale) / interval } else { 0.0 };
        random + scheduled
    }

    fn draw_news(&mut self) -> Option<News> {
        let p = &self.params;
        let interval = (p.earnings_interval_days * MINUTES_PER_DAY).round();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let interval = interval.max(0.0) as u64;
        let scheduled = interval > 0 && (self.minute + self.earnings_phase_minutes).is_multiple_of(interval);
        if scheduled {
            let log_jump = skewed(&mut self.rng, p.earnings_jump_sigma, p.jump_down_scale);
            return Some(News { kind: NewsKind::Scheduled, log_jump });
        }
        let (rate, sigma, down) = (p.jump_rate_daily, p.jump_sigma, p.jump_down_scale);
        super::factor::draw_jump(&mut self.rng, rate, sigma, down)
            .map(|log_jump| News { kind: NewsKind::Asset, log_jump })
    }

    /// Circuit breaker: freeze the quote when the latent price left the
    /// window's band; reopen at the latent price when the halt ends.
    fn apply_breaker(&mut self) {
        if self.minute < self.halted_until_minute {
            return;
        }
        if self.minute >= self.window_started_minute + BREAKER_WINDOW_MINUTES {
            self.window_started_minute = self.minute;
            self.window_start_log_price = self.quoted_log_price;
        }
        let band = BREAKER_LIMIT.ln_1p();
        if (self.log_price - self.window_start_log_price).abs() > band {
            self.halted_until_minute = self.minute + HALT_MINUTES;
            // The reopening starts a fresh window at the new level.
            self.window_started_minute = self.halted_until_minute;
            self.window_start_log_price = self.log_price;
            return;
        }
        self.quoted_log_price = self.log_price;
    }
}

/// The whole market's model: every category factor and every asset, stepped
/// together. `stockbot simulate` runs this directly; the actors run its parts.
#[derive(Debug, Clone)]
pub struct MarketModel {
    pub sectors: Vec<SectorModel>,
    pub assets: Vec<AssetModel>,
    asset_category: Vec<usize>,
}

impl MarketModel {
    /// Builds the model of `universe` from `seed`.
    #[must_use]
    pub fn new(universe: &Universe, seed: u64) -> Self {
        let factors = universe.factors();
        let sectors = universe
            .categories()
            .iter()
            .enumerate()
            .map(|(index, spec)| SectorModel::new(spec, factors, seed, index))
            .collect();
        let assets = universe
            .assets()
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                let price = f64::try_from(spec.initial_price).unwrap_or(1.0);
                AssetModel::new(&spec.model, price, seed, index)
            })
            .collect();
        Self { sectors, assets, asset_category: universe.asset_categories().to_vec() }
    }

    /// Queues operator news for `category`'s factor (`None`: no such category).
    ///
    /// # Errors
    /// As [`SectorModel::inject`].
    pub fn inject_category(&mut self, category: usize, news: PendingNews) -> Option<Result<(), InjectError>> {
        self.sectors.get_mut(category).map(|sector| sector.inject(news))
    }

    /// Queues operator news for the asset at `index` (`None`: no such asset).
    ///
    /// # Errors
    /// As [`AssetModel::inject`].
    pub fn inject_asset(&mut self, index: usize, news: PendingNews) -> Option<Result<(), InjectError>> {
        self.assets.get_mut(index).map(|asset| asset.inject(news))
    }

    /// Steps every factor, then every asset, by one market minute.
    pub fn step(&mut self) -> Vec<ModelTick> {
        let moves: Vec<SectorMove> = self.sectors.iter_mut().map(SectorModel::step).collect();
        self.assets
            .iter_mut()
            .zip(&self.asset_category)
            .map(|(asset, category)| asset.step(&moves.get(*category).copied().unwrap_or_default()))
            .collect()
    }
}

/// What a drawn fall of `log_jump` (as it hit the asset) adds to the next
/// minute's variance: `response · log_jump²`, at most
/// [`NEWS_VARIANCE_MULTIPLE_MAX`] long-run variances; a gain adds nothing.
fn news_variance(response: f64, log_jump: f64, long_run: f64) -> f64 {
    if log_jump >= 0.0 || response <= 0.0 {
        return 0.0;
    }
    (response * log_jump * log_jump).min(NEWS_VARIANCE_MULTIPLE_MAX * long_run)
}

pub(crate) fn per_minute_variance(vol_daily: f64) -> f64 {
    vol_daily * vol_daily / MINUTES_PER_DAY
}

/// SplitMix64 finaliser: independent streams from one seed.
#[must_use]
pub fn mix_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
