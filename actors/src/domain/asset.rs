//! The asset universe: categories, assets and each asset's price-model
//! parameters, as loaded from `config/`.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

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
    /// GARCH(1,1) reaction to the last squared shock.
    pub garch_alpha: f64,
    /// GARCH(1,1) persistence of variance.
    pub garch_beta: f64,
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
            garch_alpha: 0.10,
            garch_beta: 0.88,
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
        Ok(Self { assets, categories, asset_category, by_ticker })
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
    if !(m.garch_alpha >= 0.0 && m.garch_beta >= 0.0 && m.garch_alpha + m.garch_beta < 1.0) {
        return bad("garch_alpha + garch_beta must be < 1, both ≥ 0");
    }
    if !(m.reversion_half_life_days > 0.0 && m.liquidity_shares >= 1.0 && m.spread_bps >= 0.0) {
        return bad("reversion_half_life_days and liquidity_shares must be positive");
    }
    if !(m.jump_rate_daily >= 0.0 && m.jump_sigma >= 0.0 && m.earnings_interval_days >= 0.0) {
        return bad("jump parameters must be non-negative");
    }
    Ok(())
}
