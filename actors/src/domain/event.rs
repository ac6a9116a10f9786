//! Events: every state change of the exchange. Applying a log of events to an
//! empty exchange reproduces its state exactly.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::alert::{Alert, AlertId};
use super::ids::{AssetId, OrderId, PlayerId, TradeId};
use super::order::{RestingOrder, Side};
use super::profile::GameChange;

/// Why cash was created for a player (outside of trading).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreditReason {
    DailyBonus,
    AdminGrant,
    Referral,
    SeasonReset,
    Bankruptcy,
}

/// Why an account was set back to a fresh start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResetReason {
    /// The player went broke and started over (`/bankrupt`).
    Bankruptcy,
    /// A new season began: every portfolio restarts from starting cash.
    Season { season: i64 },
}

/// Why an order left the book without filling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelReason {
    ByPlayer,
    /// The account was reset (bankruptcy or a new season).
    AccountReset,
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
    /// A player joined with starting cash (creates money) in `season`.
    AccountOpened {
        player: PlayerId,
        cash: Decimal,
        #[serde(default)]
        season: i64,
    },
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
    /// A change of a player's game record (XP, achievements, streaks, …).
    Game { player: PlayerId, change: GameChange },
    /// The account starts over with `cash` and no holdings (its open orders
    /// were cancelled by earlier events): shares leave, cash is set — both
    /// explicitly, so the audit reconciles from here.
    AccountReset { player: PlayerId, cash: Decimal, reason: ResetReason },
    /// A price alert was set.
    AlertSet(Alert),
    /// A price alert fired: the mid moved from `from` to `to` across it.
    AlertFired { alert: Alert, from: Decimal, to: Decimal },
    /// A player deleted a price alert.
    AlertDeleted { alert: AlertId, player: PlayerId },
    /// An operator's action, for the audit trail (its effect is its own event).
    AdminActed { admin: i64, action: String },
}

impl Event {
    /// The player this event belongs to, if any.
    #[must_use]
    pub fn player(&self) -> Option<PlayerId> {
        match self {
            Self::AccountOpened { player, .. }
            | Self::CashCredited { player, .. }
            | Self::OrderCancelled { player, .. }
            | Self::Game { player, .. }
            | Self::AccountReset { player, .. }
            | Self::AlertDeleted { player, .. } => Some(*player),
            Self::Traded(trade) => Some(trade.player),
            Self::OrderPlaced(order) => Some(order.player),
            Self::AlertSet(alert) | Self::AlertFired { alert, .. } => Some(alert.player),
            Self::Ticked(_) | Self::TradingHalted { .. } | Self::AdminActed { .. } => None,
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
