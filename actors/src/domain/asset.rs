//! The asset universe: categories, assets and each asset's price-model
//! parameters, as loaded from `config/`.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::factor::Dynamics;
use super::ids::{AssetId, Ticker};
use super::rejection::Rejection;

/// Price-model parameters of one asset. Volatilities are daily (a day is
/// 1,440 market minutes: the game trades around the clock).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelParams {
    /// Expected log drift per day of the fair value.
    pub drift_daily: f64,
    /// Long-run daily volatility of the asset's own (idiosyncratic) moves.
    pub vol_daily: f64,
    /// Weight of the category factor in each move, in `[0, 1)`.
    pub sector_loading: f64,
    /// Weight of the market factor in each move (the asset's beta), in `[0, 2)`.
    pub market_loading: f64,
    /// GARCH reaction to the last squared shock.
    pub garch_alpha: f64,
    /// Extra GARCH reaction when the last shock was a fall (GJR; the
    /// leverage effect): `garch_alpha + garch_gamma / 2 + garch_beta < 1`.
    pub garch_gamma: f64,
    /// GARCH persistence of variance.
    pub garch_beta: f64,
    /// How much a drawn fall on news (the asset's own, its category's or
    /// the market's, as it hits the asset) adds to the next minute's
    /// variance, per squared log jump (gains add nothing); capped at
    /// [`NEWS_VARIANCE_MULTIPLE_MAX`] times the long-run variance.
    pub news_vol_response: f64,
    /// Drawn losses on the asset's own news are this many times as large as
    /// drawn gains, and that much rarer (a jump's mean stays 0); 1 is symmetric.
    pub jump_down_scale: f64,
    /// Skew of the asset's own diffusion shocks: falls `√skew` times wider,
    /// rises `1/√skew`, mean 0 and variance 1 kept; 1 is symmetric.
    pub shock_skew: f64,
    /// Half-life in days of the pull toward fair value.
    pub reversion_half_life_days: f64,
    /// Daily volatility of the fair value's own random walk.
    pub fair_value_vol_daily: f64,
    /// Expected random news jumps per day.
    pub jump_rate_daily: f64,
    /// Standard deviation of a news jump's log size.
    pub jump_sigma: f64,
    /// Interval between scheduled news (earnings) in days; 0 = none.
    pub earnings_interval_days: f64,
    /// Standard deviation of a scheduled news jump's log size.
    pub earnings_jump_sigma: f64,
    /// Shares that move the price by about one daily volatility.
    pub liquidity_shares: f64,
    /// Quoted spread at long-run volatility, in basis points.
    pub spread_bps: f64,
}

impl Default for ModelParams {
    fn default() -> Self {
        Self {
            drift_daily: 0.0002,
            vol_daily: 0.025,
            sector_loading: 0.5,
            market_loading: 0.0,
            garch_alpha: 0.10,
            garch_gamma: 0.0,
            garch_beta: 0.88,
            news_vol_response: 0.0,
            jump_down_scale: 1.0,
            shock_skew: 1.0,
            reversion_half_life_days: 5.0,
            fair_value_vol_daily: 0.005,
            jump_rate_daily: 0.3,
            jump_sigma: 0.012,
            earnings_interval_days: 7.0,
            earnings_jump_sigma: 0.025,
            liquidity_shares: 50_000.0,
            spread_bps: 10.0,
        }
    }
}

/// Most a drawn fall on news raises an asset's variance, in multiples of its
/// long-run variance (a 40 % crash must not make every later minute a crash).
pub const NEWS_VARIANCE_MULTIPLE_MAX: f64 = 30.0;

/// The market factor every asset moves with (by its `market_loading`), and
/// the variance dynamics and news skew shared by it and the category factors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FactorSpec {
    /// Daily volatility of the market factor.
    pub market_vol_daily: f64,
    /// Expected market-wide news jumps per day.
    pub market_jump_rate_daily: f64,
    /// Standard deviation of a market-wide jump's log size.
    pub market_jump_sigma: f64,
    /// GJR-GARCH of the market and category factors: reaction to the last
    /// squared shock, extra reaction to a fall, persistence.
    pub garch_alpha: f64,
    pub garch_gamma: f64,
    pub garch_beta: f64,
    /// Drawn market and category news: losses this many times as large as
    /// gains, and that much rarer; 1 is symmetric.
    pub jump_down_scale: f64,
    /// Skew of the factors' diffusion shocks (as `ModelParams::shock_skew`).
    pub shock_skew: f64,
}

impl Default for FactorSpec {
    /// No market factor; category factors as they were before it existed.
    fn default() -> Self {
        let d = Dynamics::default();
        Self {
            market_vol_daily: 0.0,
            market_jump_rate_daily: 0.0,
            market_jump_sigma: 0.0,
            garch_alpha: d.alpha,
            garch_gamma: d.gamma,
            garch_beta: d.beta,
            jump_down_scale: d.jump_down_scale,
            shock_skew: d.shock_skew,
        }
    }
}

impl FactorSpec {
    /// The variance dynamics and news skew of the factors.
    #[must_use]
    pub fn dynamics(&self) -> Dynamics {
        Dynamics {
            alpha: self.garch_alpha,
            gamma: self.garch_gamma,
            beta: self.garch_beta,
            jump_down_scale: self.jump_down_scale,
            shock_skew: self.shock_skew,
        }
    }

    fn validate(&self) -> Result<(), UniverseError> {
        let bad = |problem: &str| Err(UniverseError::BadFactors(problem.to_owned()));
        if !(self.market_vol_daily >= 0.0 && self.market_vol_daily < 0.5) {
            return bad("market_vol_daily must be in [0, 0.5)");
        }
        if !(self.market_jump_rate_daily >= 0.0 && self.market_jump_sigma >= 0.0) {
            return bad("market jump parameters must be non-negative");
        }
        if !stationary(self.garch_alpha, self.garch_gamma, self.garch_beta) {
            return bad("garch_alpha + garch_gamma / 2 + garch_beta must be < 1, each ≥ 0");
        }
        if !(skew_ok(self.jump_down_scale) && skew_ok(self.shock_skew)) {
            return bad("jump_down_scale and shock_skew must be in [1/8, 8]");
        }
        Ok(())
    }
}

/// Whether GJR-GARCH parameters keep a finite long-run variance.
fn stationary(alpha: f64, gamma: f64, beta: f64) -> bool {
    alpha >= 0.0 && gamma >= 0.0 && beta >= 0.0 && alpha + gamma / 2.0 + beta < 1.0
}

fn skew_ok(down_scale: f64) -> bool {
    (0.125..=8.0).contains(&down_scale)
}

/// One tradable asset as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSpec {
    pub ticker: Ticker,
    pub name: String,
    pub category: String,
    pub initial_price: Decimal,
    #[serde(default)]
    pub model: ModelParams,
}

/// A category (sector) and its factor parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategorySpec {
    pub name: String,
    /// Daily volatility of the category factor.
    #[serde(default = "default_sector_vol")]
    pub vol_daily: f64,
    /// Expected category-wide news jumps per day.
    #[serde(default = "default_sector_jump_rate")]
    pub jump_rate_daily: f64,
    /// Standard deviation of a category jump's log size.
    #[serde(default = "default_sector_jump_sigma")]
    pub jump_sigma: f64,
}

fn default_sector_vol() -> f64 {
    0.015
}
fn default_sector_jump_rate() -> f64 {
    0.2
}
fn default_sector_jump_sigma() -> f64 {
    0.02
}

/// The validated universe: assets indexed by [`AssetId`], looked up by ticker.
#[derive(Debug, Clone)]
pub struct Universe {
    assets: Vec<AssetSpec>,
    categories: Vec<CategorySpec>,
    asset_category: Vec<usize>,
    by_ticker: HashMap<Ticker, AssetId>,
    factors: FactorSpec,
}

/// Why a configured universe is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UniverseError {
    #[error("the universe has no assets")]
    Empty,
    #[error("more than {0} assets")]
    TooMany(usize),
    #[error("ticker {0} appears twice")]
    DuplicateTicker(Ticker),
    #[error("asset {ticker} names unknown category {category:?}")]
    UnknownCategory { ticker: Ticker, category: String },
    #[error("asset {ticker}: {problem}")]
    BadAsset { ticker: Ticker, problem: String },
    #[error("factors: {0}")]
    BadFactors(String),
}

/// Most assets a universe may hold.
pub const ASSETS_MAX: usize = 1_000;

impl Universe {
    /// Validates and indexes a configured universe.
    ///
    /// # Errors
    /// A [`UniverseError`] naming the first problem found.
    pub fn new(categories: Vec<CategorySpec>, assets: Vec<AssetSpec>) -> Result<Self, UniverseError> {
        if assets.is_empty() {
            return Err(UniverseError::Empty);
        }
        if assets.len() > ASSETS_MAX {
            return Err(UniverseError::TooMany(ASSETS_MAX));
        }
        let mut by_ticker = HashMap::with_capacity(assets.len());
        let mut asset_category = Vec::with_capacity(assets.len());
        for (index, asset) in assets.iter().enumerate() {
            let category = categories.iter().position(|c| c.name == asset.category).ok_or_else(|| {
                UniverseError::UnknownCategory { ticker: asset.ticker, category: asset.category.clone() }
            })?;
            asset_category.push(category);
            validate_asset(asset)?;
            #[allow(clippy::cast_possible_truncation)]
            let id = AssetId(index as u16);
            if by_ticker.insert(asset.ticker, id).is_some() {
                return Err(UniverseError::DuplicateTicker(asset.ticker));
            }
        }
        Ok(Self { assets, categories, asset_category, by_ticker, factors: FactorSpec::default() })
    }

    /// The same universe with the market factor and factor dynamics of `factors`.
    ///
    /// # Errors
    /// `BadFactors` when they are out of range.
    pub fn with_factors(mut self, factors: FactorSpec) -> Result<Self, UniverseError> {
        factors.validate()?;
        self.factors = factors;
        Ok(self)
    }

    /// The market factor and factor dynamics.
    #[must_use]
    pub fn factors(&self) -> &FactorSpec {
        &self.factors
    }

    /// Looks an asset up by ticker.
    ///
    /// # Errors
    /// `Rejection::UnknownTicker` when no asset has it.
    pub fn find(&self, ticker: Ticker) -> Result<AssetId, Rejection> {
        self.by_ticker.get(&ticker).copied().ok_or(Rejection::UnknownTicker { ticker })
    }

    /// The spec of an asset; `None` only for an id from another universe.
    #[must_use]
    pub fn get(&self, asset: AssetId) -> Option<&AssetSpec> {
        self.assets.get(asset.index())
    }

    /// The ticker of an asset (empty-safe for foreign ids).
    #[must_use]
    pub fn ticker(&self, asset: AssetId) -> Option<Ticker> {
        self.get(asset).map(|spec| spec.ticker)
    }

    /// All assets in id order.
    #[must_use]
    pub fn assets(&self) -> &[AssetSpec] {
        &self.assets
    }

    /// All categories in config order.
    #[must_use]
    pub fn categories(&self) -> &[CategorySpec] {
        &self.categories
    }

    /// The category index of each asset, in asset id order.
    #[must_use]
    pub fn asset_categories(&self) -> &[usize] {
        &self.asset_category
    }

    /// Number of assets.
    #[must_use]
    pub fn len(&self) -> usize {
        self.assets.len()
    }

    /// Whether the universe is empty (never, once built).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.assets.is_empty()
    }

    /// Asset ids in id order.
    pub fn ids(&self) -> impl Iterator<Item = AssetId> + '_ {
        #[allow(clippy::cast_possible_truncation)]
        (0..self.assets.len()).map(|index| AssetId(index as u16))
    }
}

fn validate_asset(asset: &AssetSpec) -> Result<(), UniverseError> {
    let bad = |problem: &str| Err(UniverseError::BadAsset { ticker: asset.ticker, problem: problem.to_owned() });
    let m = &asset.model;
    if asset.initial_price <= Decimal::ONE || asset.initial_price > Decimal::from(100_000) {
        return bad("initial_price must be in (1, 100000]");
    }
    if !(m.vol_daily > 0.0 && m.vol_daily < 0.5) {
        return bad("vol_daily must be in (0, 0.5)");
    }
    if !(0.0..1.0).contains(&m.sector_loading) {
        return bad("sector_loading must be in [0, 1)");
    }
    if !(0.0..2.0).contains(&m.market_loading) {
        return bad("market_loading must be in [0, 2)");
    }
    if !stationary(m.garch_alpha, m.garch_gamma, m.garch_beta) {
        return bad("garch_alpha + garch_gamma / 2 + garch_beta must be < 1, each ≥ 0");
    }
    if !(m.news_vol_response >= 0.0 && skew_ok(m.jump_down_scale) && skew_ok(m.shock_skew)) {
        return bad("news_vol_response must be ≥ 0, jump_down_scale and shock_skew in [1/8, 8]");
    }
    if !(m.reversion_half_life_days > 0.0 && m.liquidity_shares >= 1.0 && m.spread_bps >= 0.0) {
        return bad("reversion_half_life_days and liquidity_shares must be positive");
    }
    if !(m.jump_rate_daily >= 0.0 && m.jump_sigma >= 0.0 && m.earnings_interval_days >= 0.0) {
        return bad("jump parameters must be non-negative");
    }
    Ok(())
}
