//! `Rejection`: every mistake a player can make, as a value. Only the
//! interface turns these into text; the engine never panics on them.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::ids::{OrderId, Ticker};

/// Why the engine refused a command. Each variant carries what the player
/// needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    /// The ticker is not well formed.
    #[error("'{given}' is not a ticker")]
    BadTicker { given: String },
    /// No asset has this ticker.
    #[error("unknown ticker {ticker}")]
    UnknownTicker { ticker: Ticker },
    /// Quantity is zero, negative, fractional or absurd.
    #[error("'{given}' is not a quantity")]
    BadQuantity { given: String },
    /// Price is zero, negative, over-precise or absurd.
    #[error("'{given}' is not a price")]
    BadPrice { given: String },
    /// The order is bigger than one order may be.
    #[error("at most {qty_max} shares per order")]
    OrderTooLarge { qty_max: u64 },
    /// The order is worth less than the minimum order value.
    #[error("orders must be worth at least {value_min}")]
    OrderTooSmall { value_min: Decimal },
    /// The order would move the price more than the market's depth allows.
    #[error("order too large for the market's liquidity")]
    ExceedsLiquidity { qty_max: u64 },
    /// The resulting position would exceed the position cap.
    #[error("position limit {qty_max} shares")]
    PositionLimit { ticker: Ticker, qty_max: u64, held: u64 },
    /// Not enough free cash for a buy (incl. fee).
    #[error("not enough cash")]
    InsufficientCash { needed: Decimal, available: Decimal },
    /// Not enough free shares for a sell.
    #[error("not enough shares")]
    InsufficientShares { ticker: Ticker, needed: u64, available: u64 },
    /// Trading in the asset is halted.
    #[error("trading in {ticker} is halted")]
    Halted { ticker: Ticker, resumes_at_ms: i64 },
    /// Too many open orders.
    #[error("at most {open_max} open orders")]
    TooManyOpenOrders { open_max: u32 },
    /// A limit buy above the ask or sell below the bid is a market order in
    /// disguise; a stop above the bid would trigger at once.
    #[error("that price would execute at once")]
    PriceWouldExecute { ticker: Ticker, market: Decimal },
    /// Stop orders protect holdings: they only sell.
    #[error("stop orders only sell")]
    StopOnlySells,
    /// The order does not exist or is not the player's.
    #[error("no open order #{order_id}")]
    UnknownOrder { order_id: OrderId },
    /// The player has no account yet (they must /start first).
    #[error("no account")]
    NoAccount,
    /// The amount overflows what the engine represents.
    #[error("amount too large")]
    AmountTooLarge,
    /// The player's level has not unlocked this yet.
    #[error("{what} unlock at level {level}")]
    Locked { what: String, level: u32 },
    /// The buy would put too much of a wealthy player's net worth in one asset.
    #[error("at most {pct_max}% of net worth in one asset")]
    Concentration { pct_max: u32, value_max: Decimal },
    /// Today's daily bonus is already taken.
    #[error("daily bonus already claimed")]
    AlreadyClaimed { next_claim_at_ms: i64 },
    /// `/bankrupt` is for players who lost nearly everything.
    #[error("not broke")]
    NotBroke { net_worth: Decimal, threshold: Decimal },
    /// The last bankruptcy was too recent.
    #[error("bankruptcy cooling down")]
    BankruptcyCoolingDown { next_allowed_at_ms: i64 },
    /// The player has as many alerts as allowed.
    #[error("at most {alerts_max} alerts")]
    TooManyAlerts { alerts_max: u32 },
    /// The price is already at or beyond the alert's price.
    #[error("the price is already there")]
    AlertAlreadyThere { mid: Decimal },
    /// No such alert of this player.
    #[error("no alert #{alert}")]
    UnknownAlert { alert: u64 },
    /// A referral that cannot count.
    #[error("referral not accepted: {reason}")]
    Referral { reason: String },
    /// The engine is saturated; the command was not applied.
    #[error("busy, try again")]
    Busy,
    /// A dependency (the store) is down; the command was not applied.
    #[error("temporarily unavailable, try again")]
    Unavailable,
}
