//! `Account`: one player's cash, holdings (with cost basis), reservations for
//! resting orders and realized profit — the ledger the exchange checks every
//! trade against.

use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::event::{ResetReason, Trade};
use super::ids::AssetId;
use super::order::{RestingOrder, Side};
use super::profile::{GameChange, Profile};

/// Shares of one asset held by a player.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub asset: AssetId,
    pub qty: u64,
    /// Shares set aside for resting sell orders.
    pub reserved_qty: u64,
    /// What the held shares cost, fees included.
    pub cost_basis: Decimal,
}

impl Position {
    /// Shares free to sell.
    #[must_use]
    pub fn free_qty(&self) -> u64 {
        self.qty.saturating_sub(self.reserved_qty)
    }
}

/// A player's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Account {
    pub cash: Decimal,
    /// Cash set aside for resting buy orders.
    pub reserved_cash: Decimal,
    /// Held positions, sorted by asset; none with zero shares and no reservation.
    pub positions: Vec<Position>,
    pub realized_pnl: Decimal,
    pub trades: u64,
    pub open_orders: u32,
    /// Lifetime value traded (for XP).
    #[serde(default)]
    pub traded_value: Decimal,
    /// Sales that realized a profit.
    #[serde(default)]
    pub profitable_sales: u64,
    /// Fills of resting (limit or stop) orders.
    #[serde(default)]
    pub resting_fills: u64,
    /// The season the account's money belongs to.
    #[serde(default)]
    pub season: i64,
    /// The game record (shared until changed: ledgers are cloned per batch).
    #[serde(default)]
    pub profile: Arc<Profile>,
}

impl Account {
    /// A new account with `cash`.
    #[must_use]
    pub fn with_cash(cash: Decimal) -> Self {
        Self { cash, ..Self::default() }
    }

    /// A new account with `cash` in `season`.
    #[must_use]
    pub fn opened(cash: Decimal, season: i64) -> Self {
        Self { cash, season, ..Self::default() }
    }

    /// Applies a change of the game record.
    pub fn apply_game(&mut self, change: &GameChange) {
        Arc::make_mut(&mut self.profile).apply(change);
    }

    /// Starts over with `cash` and no holdings (orders were cancelled
    /// before); the game record and lifetime counters stay. A season reset
    /// moves the account into that season.
    pub fn reset(&mut self, cash: Decimal, reason: ResetReason) {
        let season = match reason {
            ResetReason::Season { season } => Some(season),
            ResetReason::Bankruptcy => None,
        };
        self.cash = cash;
        self.reserved_cash = Decimal::ZERO;
        self.positions.clear();
        if let Some(season) = season {
            self.season = season;
            Arc::make_mut(&mut self.profile).apply(&GameChange::SeasonStarted);
        }
    }

    /// Cash free to spend.
    #[must_use]
    pub fn free_cash(&self) -> Decimal {
        self.cash - self.reserved_cash
    }

    /// The position in `asset`, if any.
    #[must_use]
    pub fn position(&self, asset: AssetId) -> Option<&Position> {
        self.positions.binary_search_by_key(&asset, |p| p.asset).ok().and_then(|i| self.positions.get(i))
    }

    /// Shares held of `asset`.
    #[must_use]
    pub fn held(&self, asset: AssetId) -> u64 {
        self.position(asset).map_or(0, |p| p.qty)
    }

    /// Shares of `asset` free to sell.
    #[must_use]
    pub fn free_qty(&self, asset: AssetId) -> u64 {
        self.position(asset).map_or(0, Position::free_qty)
    }

    fn position_mut(&mut self, asset: AssetId) -> &mut Position {
        let index = match self.positions.binary_search_by_key(&asset, |p| p.asset) {
            Ok(index) => index,
            Err(index) => {
                let fresh = Position { asset, qty: 0, reserved_qty: 0, cost_basis: Decimal::ZERO };
                self.positions.insert(index, fresh);
                index
            }
        };
        // The index was just found or inserted.
        #[allow(clippy::indexing_slicing)]
        &mut self.positions[index]
    }

    fn drop_empty(&mut self, asset: AssetId) {
        self.positions.retain(|p| p.asset != asset || p.qty > 0 || p.reserved_qty > 0);
    }

    /// Applies a fill (already checked by the exchange).
    pub fn apply_trade(&mut self, trade: &Trade) {
        self.cash += trade.cash_delta();
        self.trades += 1;
        self.traded_value += trade.value();
        if trade.order.is_some() {
            self.resting_fills += 1;
        }
        let position = self.position_mut(trade.asset);
        match trade.side {
            Side::Buy => {
                position.qty += trade.qty;
                position.cost_basis += trade.value() + trade.fee;
            }
            Side::Sell => {
                let held = position.qty;
                let removed_cost = if trade.qty >= held {
                    position.cost_basis
                } else {
                    position.cost_basis * Decimal::from(trade.qty) / Decimal::from(held)
                };
                position.qty = held.saturating_sub(trade.qty);
                position.cost_basis -= removed_cost;
                let realized = trade.value() - trade.fee - removed_cost;
                self.realized_pnl += realized;
                if realized > Decimal::ZERO {
                    self.profitable_sales += 1;
                }
            }
        }
        self.drop_empty(trade.asset);
    }

    /// Sets aside what a newly resting order needs.
    pub fn reserve_for(&mut self, order: &RestingOrder) {
        self.open_orders += 1;
        self.reserved_cash += order.reserved_cash;
        if order.side == Side::Sell {
            self.reserve_qty(order.asset, order.qty);
        }
    }

    /// Releases what a resting order had set aside (it filled or was cancelled).
    pub fn release_for(&mut self, order: &RestingOrder) {
        self.open_orders = self.open_orders.saturating_sub(1);
        self.reserved_cash -= order.reserved_cash;
        if order.side == Side::Sell {
            self.release_qty(order.asset, order.qty);
        }
    }

    /// Sets aside shares of `asset` for a resting sell.
    pub fn reserve_qty(&mut self, asset: AssetId, qty: u64) {
        let position = self.position_mut(asset);
        position.reserved_qty += qty;
    }

    /// Releases shares set aside for a resting sell.
    pub fn release_qty(&mut self, asset: AssetId, qty: u64) {
        let position = self.position_mut(asset);
        position.reserved_qty = position.reserved_qty.saturating_sub(qty);
        self.drop_empty(asset);
    }
}
