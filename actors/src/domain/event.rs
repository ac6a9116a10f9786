//! Events: every state change of the exchange. Applying a log of events to an
//! empty exchange reproduces its state exactly.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::ids::{AssetId, OrderId, PlayerId, TradeId};
use super::order::{RestingOrder, Side};

/// Why cash was created for a player (outside of trading).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreditReason {
    DailyBonus,
    AdminGrant,
    Referral,
    SeasonReset,
    Bankruptcy,
}

/// Why an order left the book without filling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelReason {
    ByPlayer,
    /// A triggered order could no longer be filled (e.g. cash or shares gone).
    Unfillable,
}

/// One execution against the house.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    pub id: TradeId,
    /// The resting order this filled, if it was not a market order.
    pub order: Option<OrderId>,
    pub player: PlayerId,
    pub asset: AssetId,
    pub side: Side,
    pub qty: u64,
    /// Average fill price per share.
    pub price: Decimal,
    pub fee: Decimal,
}

impl Trade {
    /// `price × qty`, before the fee.
    #[must_use]
    pub fn value(&self) -> Decimal {
        self.price * Decimal::from(self.qty)
    }

    /// Change of the player's cash: −(value + fee) for buys, value − fee for sells.
    #[must_use]
    pub fn cash_delta(&self) -> Decimal {
        match self.side {
            Side::Buy => -(self.value() + self.fee),
            Side::Sell => self.value() - self.fee,
        }
    }
}

/// A new minute of an asset's price model, as the exchange sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    pub asset: AssetId,
    /// Market minute of the model.
    pub minute: u64,
    /// The model's mid (before player impact).
    pub model_mid: f64,
    pub sigma_daily: f64,
    pub halted: bool,
}

/// A state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A player joined with starting cash (creates money).
    AccountOpened { player: PlayerId, cash: Decimal },
    /// Cash created for a player outside trading.
    CashCredited { player: PlayerId, amount: Decimal, reason: CreditReason },
    /// A fill.
    Traded(Trade),
    /// An order started resting.
    OrderPlaced(RestingOrder),
    /// A resting order was withdrawn.
    OrderCancelled { order: OrderId, player: PlayerId, reason: CancelReason },
    /// The price model moved.
    Ticked(Tick),
    /// An operator halted or resumed an asset.
    TradingHalted { asset: AssetId, halted: bool },
}

impl Event {
    /// The player this event belongs to, if any.
    #[must_use]
    pub fn player(&self) -> Option<PlayerId> {
        match self {
            Self::AccountOpened { player, .. }
            | Self::CashCredited { player, .. }
            | Self::OrderCancelled { player, .. } => Some(*player),
            Self::Traded(trade) => Some(trade.player),
            Self::OrderPlaced(order) => Some(order.player),
            Self::Ticked(_) | Self::TradingHalted { .. } => None,
        }
    }
}

/// An event with its place in the log and its time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    pub at_ms: i64,
    pub event: Event,
}
