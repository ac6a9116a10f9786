//! Orders: sides, kinds, what a player asks for, and orders resting on an
//! asset until a price move triggers them.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::ids::{AssetId, LimitPrice, OrderId, PlayerId, Quantity};

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    /// +1 for buys, −1 for sells (the sign of order flow).
    #[must_use]
    pub fn sign(self) -> f64 {
        match self {
            Self::Buy => 1.0,
            Self::Sell => -1.0,
        }
    }
}

/// How an order executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderKind {
    /// Now, at the market.
    Market,
    /// At this price or better; rests until then.
    Limit(LimitPrice),
    /// A stop-loss sell: becomes a market sell once the bid falls to the price.
    Stop(LimitPrice),
}

/// What a player asks the exchange to do with an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub player: PlayerId,
    pub asset: AssetId,
    pub side: Side,
    pub qty: Quantity,
    pub kind: OrderKind,
}

/// The trigger of a resting order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    /// Fill when the average fill price is at the limit or better.
    Limit(Decimal),
    /// Sell at the market once the bid is at or below the stop.
    Stop(Decimal),
}

/// An order waiting on an asset's book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestingOrder {
    pub id: OrderId,
    pub player: PlayerId,
    pub asset: AssetId,
    pub side: Side,
    pub qty: u64,
    pub trigger: Trigger,
    /// Cash set aside for a buy (value at the limit plus its fee); zero for sells.
    pub reserved_cash: Decimal,
    pub placed_at_ms: i64,
}
