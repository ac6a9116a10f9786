//! `MarketRules`: the configured economics and limits of the game (starting
//! cash, fees, order and position caps, impact), with units last in names.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The economics and limits every trade is checked against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketRules {
    /// Cash a new player starts with.
    pub starting_cash: Decimal,
    /// Fee as a fraction of trade value (a money sink).
    pub fee_rate: Decimal,
    /// Smallest fee charged on any trade.
    pub fee_min: Decimal,
    /// Most shares in one order.
    pub order_qty_max: u64,
    /// Least value of one order (nothing rounds to zero).
    pub order_value_min: Decimal,
    /// Most shares of one asset a player may hold.
    pub position_qty_max: u64,
    /// Most open (resting) orders per player.
    pub open_orders_max: u32,
    /// Largest log-price move a single order may cause.
    pub order_impact_max: f64,
    /// Impact of trading `liquidity_shares`, in units of daily volatility.
    pub impact_coef: f64,
    /// Share of impact that decays fast; the rest decays slowly.
    pub impact_fast_weight: f64,
    /// Half-life of the fast impact component, in market minutes.
    pub impact_fast_half_life_minutes: f64,
    /// Half-life of the slow impact component, in market minutes.
    pub impact_slow_half_life_minutes: f64,
}

impl Default for MarketRules {
    fn default() -> Self {
        Self {
            starting_cash: Decimal::from(10_000),
            fee_rate: Decimal::new(1, 3),
            fee_min: Decimal::new(10, 2),
            order_qty_max: 100_000,
            order_value_min: Decimal::ONE,
            position_qty_max: 1_000_000,
            open_orders_max: 20,
            order_impact_max: 0.05,
            impact_coef: 0.5,
            impact_fast_weight: 0.7,
            impact_fast_half_life_minutes: 30.0,
            impact_slow_half_life_minutes: 1440.0,
        }
    }
}
