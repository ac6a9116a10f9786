//! `Book`: one asset's trading state inside the exchange: the model's mid,
//! player order flow and its square-root impact (a fast and a slow part that
//! decay), the volatility-widened spread, halts, and resting orders.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::asset::ModelParams;
use super::money::{Lean, price_from_f64};
use super::order::{RestingOrder, Side};
use super::rules::MarketRules;

/// Trading state of one asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Book {
    /// Model mid before player impact.
    pub model_mid: f64,
    /// Current daily volatility from the model.
    pub sigma_daily: f64,
    /// Long-run daily volatility (spread widens as `sigma_daily` exceeds it).
    pub sigma_base: f64,
    pub half_spread: f64,
    pub liquidity_shares: f64,
    /// Decaying signed order flow (shares): fast and slow components.
    pub flow_fast: f64,
    pub flow_slow: f64,
    pub minute: u64,
    /// Halted by the model's circuit breaker.
    pub breaker_halted: bool,
    /// Halted by an operator.
    pub admin_halted: bool,
    /// Orders waiting on this asset, in placement order.
    pub resting: Vec<RestingOrder>,
}

/// Prices an order would fill at, before rounding into money.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FillEstimate {
    /// Average price per share, in money (leaning against the player).
    pub price: Decimal,
    /// Log-price move the order causes (for the liquidity limit).
    pub impact_log: f64,
}

impl Book {
    /// A fresh book at `initial_mid` for an asset with `params` in a
    /// category whose factor has daily volatility `sector_vol_daily`.
    #[must_use]
    pub fn new(initial_mid: f64, params: &ModelParams, sector_vol_daily: f64) -> Self {
        // The model reports own and sector volatility together; so is the baseline.
        let sigma_base = (params.vol_daily.powi(2) + (params.sector_loading * sector_vol_daily).powi(2)).sqrt();
        Self {
            model_mid: initial_mid,
            sigma_daily: sigma_base,
            sigma_base,
            half_spread: params.spread_bps / 20_000.0,
            liquidity_shares: params.liquidity_shares,
            flow_fast: 0.0,
            flow_slow: 0.0,
            minute: 0,
            breaker_halted: false,
            admin_halted: false,
            resting: Vec::new(),
        }
    }

    /// Whether trading is stopped.
    #[must_use]
    pub fn halted(&self) -> bool {
        self.breaker_halted || self.admin_halted
    }

    /// Mid including player impact.
    #[must_use]
    pub fn mid(&self, rules: &MarketRules) -> f64 {
        let k = self.impact_scale(rules);
        let w = rules.impact_fast_weight;
        self.model_mid * (w * offset(k, self.flow_fast) + (1.0 - w) * offset(k, self.flow_slow)).exp()
    }

    /// Half the quoted spread as a fraction, widened when volatility is above
    /// its long-run level.
    #[must_use]
    pub fn effective_half_spread(&self) -> f64 {
        let widening = if self.sigma_base > 0.0 { (self.sigma_daily / self.sigma_base).max(1.0) } else { 1.0 };
        self.half_spread * widening.min(10.0)
    }

    /// Best bid and ask for one share.
    #[must_use]
    pub fn bid_ask(&self, rules: &MarketRules) -> Option<(Decimal, Decimal)> {
        let mid = self.mid(rules);
        let hs = self.effective_half_spread();
        Some((price_from_f64(mid * (1.0 - hs), Lean::Down)?, price_from_f64(mid * (1.0 + hs), Lean::Up)?))
    }

    /// The average price `qty` shares would fill at on `side`, walking the
    /// impact curve from the current flow: splitting an order into pieces
    /// costs exactly what the whole costs, so impact cannot be gamed.
    #[must_use]
    pub fn estimate(&self, rules: &MarketRules, side: Side, qty: u64) -> Option<FillEstimate> {
        #[allow(clippy::cast_precision_loss)]
        let signed = side.sign() * qty as f64;
        let k = self.impact_scale(rules);
        let w = rules.impact_fast_weight;
        let average =
            w * average_offset(k, self.flow_fast, signed) + (1.0 - w) * average_offset(k, self.flow_slow, signed);
        let end = w * offset(k, self.flow_fast + signed) + (1.0 - w) * offset(k, self.flow_slow + signed);
        let start = w * offset(k, self.flow_fast) + (1.0 - w) * offset(k, self.flow_slow);
        let hs = self.effective_half_spread();
        let (raw, lean) = match side {
            Side::Buy => (self.model_mid * average.exp() * (1.0 + hs), Lean::Up),
            Side::Sell => (self.model_mid * average.exp() * (1.0 - hs), Lean::Down),
        };
        Some(FillEstimate { price: price_from_f64(raw, lean)?, impact_log: (end - start).abs() })
    }

    /// Records executed flow (the state change of a fill).
    pub fn add_flow(&mut self, side: Side, qty: u64) {
        #[allow(clippy::cast_precision_loss)]
        let signed = side.sign() * qty as f64;
        self.flow_fast += signed;
        self.flow_slow += signed;
    }

    /// Moves the book to a new model minute, decaying the impact of flow.
    pub fn advance(&mut self, rules: &MarketRules, minute: u64, model_mid: f64, sigma_daily: f64, halted: bool) {
        #[allow(clippy::cast_precision_loss)]
        let elapsed = minute.saturating_sub(self.minute) as f64;
        self.flow_fast *= decay(elapsed, rules.impact_fast_half_life_minutes);
        self.flow_slow *= decay(elapsed, rules.impact_slow_half_life_minutes);
        self.minute = minute;
        self.model_mid = model_mid;
        self.sigma_daily = sigma_daily;
        self.breaker_halted = halted;
    }

    /// Log impact per √share: `impact_coef` daily vols at `liquidity_shares`.
    fn impact_scale(&self, rules: &MarketRules) -> f64 {
        rules.impact_coef * self.sigma_daily / self.liquidity_shares.sqrt()
    }
}

/// Log-price offset of accumulated flow `v`: `k·sign(v)·√|v|`.
fn offset(k: f64, v: f64) -> f64 {
    k * v.signum() * v.abs().sqrt()
}

/// Average of [`offset`] along the path from `v` to `v + dq` (exact integral).
fn average_offset(k: f64, v: f64, dq: f64) -> f64 {
    if dq == 0.0 {
        return offset(k, v);
    }
    let antiderivative = |x: f64| {
        let magnitude = x.abs();
        k * (2.0 / 3.0) * magnitude * magnitude.sqrt()
    };
    (antiderivative(v + dq) - antiderivative(v)) / dq
}

fn decay(elapsed_minutes: f64, half_life_minutes: f64) -> f64 {
    if half_life_minutes <= 0.0 { 0.0 } else { 0.5_f64.powf(elapsed_minutes / half_life_minutes) }
}
