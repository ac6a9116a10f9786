//! `Plan`: what one [`EventBatch`] writes, worked out once in plain Rust for
//! both SQL adapters — the batch checked (contiguous `seq`, values that fit
//! the columns), ledgers deduplicated (last wins), resting orders netted
//! (placed and gone within the batch → nothing), fills pulled out of the log
//! and the batch's one-minute candles aggregated the way the in-memory store
//! builds them.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;

use actors::domain::account::Account;
use actors::domain::event::{Event, Stamped, Trade};
use actors::domain::ids::{AssetId, OrderId, PlayerId};
use actors::domain::order::{RestingOrder, Side, Trigger};
use actors::domain::profile::Profile;
use actors::ports::{EventBatch, StoreError, TradeRecord};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Length of a candle, in ms.
pub const CANDLE_MS: i64 = 60_000;

/// A fill with its place in the log.
#[derive(Debug, Clone, Copy)]
pub struct TradeRow<'a> {
    pub seq: i64,
    pub at_ms: i64,
    pub trade: &'a Trade,
}

impl TradeRow<'_> {
    /// The fill as the port hands it out (`seq` was checked positive).
    #[must_use]
    pub fn record(&self) -> TradeRecord {
        TradeRecord { seq: self.seq.unsigned_abs(), at_ms: self.at_ms, trade: *self.trade }
    }
}

/// An order that starts resting in this batch (and is still resting at its end).
#[derive(Debug, Clone, Copy)]
pub struct OrderRow<'a> {
    pub seq: i64,
    pub order: &'a RestingOrder,
}

/// Volume traded in a minute before the batch's first tick of that minute:
/// it counts only if an earlier batch opened that minute's candle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandleVolume {
    pub asset: AssetId,
    pub start_ms: i64,
    pub volume: u64,
}

/// A candle as this batch alone draws it: merged into a stored candle of the
/// same minute (open kept, high/low widened, close replaced, volume added).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CandleDelta {
    pub asset: AssetId,
    pub start_ms: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: u64,
}

/// Everything a batch writes besides its events.
#[derive(Debug)]
pub struct Plan<'a> {
    pub events: &'a [Stamped],
    /// Seq of the first event (0 for a batch without events).
    pub first_seq: u64,
    /// Seq of the last event (0 for a batch without events).
    pub last_seq: u64,
    pub trades: Vec<TradeRow<'a>>,
    pub orders_placed: Vec<OrderRow<'a>>,
    pub orders_removed: Vec<i64>,
    /// One ledger per player, sorted by player (the batch's last entry wins).
    pub accounts: Vec<(PlayerId, &'a Account)>,
    pub candle_volumes: Vec<CandleVolume>,
    pub candles: Vec<CandleDelta>,
}

impl<'a> Plan<'a> {
    /// Checks a batch and works out what it writes.
    ///
    /// # Errors
    /// `StoreError::Invalid` for a batch whose seqs are not contiguous, or
    /// with a number too large for its column.
    pub fn new(batch: &'a EventBatch) -> Result<Self, StoreError> {
        let events = batch.events.as_slice();
        let first_seq = events.first().map_or(0, |e| e.seq);
        if first_seq == 0 && !events.is_empty() {
            return Err(StoreError::Invalid("event seq 0: the log starts at 1".into()));
        }
        let mut expected = first_seq;
        for stamped in events {
            if stamped.seq != expected {
                return Err(StoreError::Invalid(format!(
                    "batch not contiguous: seq {} where {expected} was expected",
                    stamped.seq
                )));
            }
            expected = expected.saturating_add(1);
        }
        let last_seq = events.last().map_or(0, |e| e.seq);
        to_i64(last_seq, "seq")?;

        let mut plan = Self {
            events,
            first_seq,
            last_seq,
            trades: Vec::new(),
            orders_placed: Vec::new(),
            orders_removed: Vec::new(),
            accounts: dedup_accounts(&batch.accounts),
            candle_volumes: Vec::new(),
            candles: Vec::new(),
        };
        let mut placed: HashMap<OrderId, usize> = HashMap::new();
        let mut removed_placed: Vec<bool> = Vec::new();
        let mut candles = CandleBuilder::default();
        for stamped in events {
            let seq = to_i64(stamped.seq, "seq")?;
            match &stamped.event {
                Event::Traded(trade) => {
                    check_trade(trade)?;
                    if plan.trades.last().is_some_and(|last| last.trade.id >= trade.id) {
                        return Err(StoreError::Invalid(format!("trade id {} out of order", trade.id.0)));
                    }
                    plan.trades.push(TradeRow { seq, at_ms: stamped.at_ms, trade });
                    if let Some(order) = trade.order {
                        plan.remove_order(order, &mut placed, &mut removed_placed)?;
                    }
                    candles.trade(trade.asset, stamped.at_ms, trade.qty);
                }
                Event::OrderPlaced(order) => {
                    check_order(order)?;
                    placed.insert(order.id, plan.orders_placed.len());
                    plan.orders_placed.push(OrderRow { seq, order });
                    removed_placed.push(false);
                }
                Event::OrderCancelled { order, .. } => plan.remove_order(*order, &mut placed, &mut removed_placed)?,
                Event::Ticked(tick) => candles.tick(tick.asset, stamped.at_ms, tick.model_mid),
                Event::AccountOpened { .. }
                | Event::CashCredited { .. }
                | Event::TradingHalted { .. }
                | Event::Game { .. }
                | Event::AccountReset { .. }
                | Event::AlertSet(_)
                | Event::AlertFired { .. }
                | Event::AlertDeleted { .. }
                | Event::AdminActed { .. } => {}
            }
        }
        let mut kept = removed_placed.iter();
        plan.orders_placed.retain(|_| kept.next().is_some_and(|removed| !removed));
        for (_, account) in &plan.accounts {
            check_account(account)?;
        }
        (plan.candle_volumes, plan.candles) = candles.finish();
        Ok(plan)
    }

    fn remove_order(
        &mut self,
        order: OrderId,
        placed: &mut HashMap<OrderId, usize>,
        removed_placed: &mut [bool],
    ) -> Result<(), StoreError> {
        match placed.remove(&order).and_then(|index| removed_placed.get_mut(index)) {
            Some(removed) => *removed = true,
            None => self.orders_removed.push(to_i64(order.0, "order id")?),
        }
        Ok(())
    }
}

/// The batch's ledgers, one per player (the last entry wins), by player.
fn dedup_accounts(accounts: &[(PlayerId, Account)]) -> Vec<(PlayerId, &Account)> {
    let mut latest: BTreeMap<PlayerId, &Account> = BTreeMap::new();
    for (player, account) in accounts {
        latest.insert(*player, account);
    }
    latest.into_iter().collect()
}

fn check_trade(trade: &Trade) -> Result<(), StoreError> {
    to_i64(trade.id.0, "trade id")?;
    to_i64(trade.qty, "trade qty")?;
    if let Some(order) = trade.order {
        to_i64(order.0, "order id")?;
    }
    Ok(())
}

fn check_order(order: &RestingOrder) -> Result<(), StoreError> {
    to_i64(order.id.0, "order id")?;
    to_i64(order.qty, "order qty")?;
    Ok(())
}

fn check_account(account: &Account) -> Result<(), StoreError> {
    to_i64(account.trades, "trade count")?;
    to_i32(account.open_orders, "open orders")?;
    for position in &account.positions {
        to_i64(position.qty, "position qty")?;
        to_i64(position.reserved_qty, "reserved qty")?;
    }
    Ok(())
}

/// Aggregates the batch's ticks and trades per asset and minute.
#[derive(Default)]
struct CandleBuilder {
    index: HashMap<(AssetId, i64), usize>,
    candles: Vec<CandleDelta>,
    early: HashMap<(AssetId, i64), usize>,
    volumes: Vec<CandleVolume>,
}

impl CandleBuilder {
    fn tick(&mut self, asset: AssetId, at_ms: i64, price: f64) {
        let start_ms = minute_start(at_ms);
        match self.index.get(&(asset, start_ms)).and_then(|i| self.candles.get_mut(*i)) {
            Some(candle) => {
                candle.high = candle.high.max(price);
                candle.low = candle.low.min(price);
                candle.close = price;
            }
            None => {
                self.index.insert((asset, start_ms), self.candles.len());
                let fresh =
                    CandleDelta { asset, start_ms, open: price, high: price, low: price, close: price, volume: 0 };
                self.candles.push(fresh);
            }
        }
    }

    fn trade(&mut self, asset: AssetId, at_ms: i64, qty: u64) {
        let start_ms = minute_start(at_ms);
        if let Some(candle) = self.index.get(&(asset, start_ms)).and_then(|i| self.candles.get_mut(*i)) {
            candle.volume = candle.volume.saturating_add(qty);
            return;
        }
        match self.early.get(&(asset, start_ms)).and_then(|i| self.volumes.get_mut(*i)) {
            Some(early) => early.volume = early.volume.saturating_add(qty),
            None => {
                self.early.insert((asset, start_ms), self.volumes.len());
                self.volumes.push(CandleVolume { asset, start_ms, volume: qty });
            }
        }
    }

    fn finish(self) -> (Vec<CandleVolume>, Vec<CandleDelta>) {
        (self.volumes, self.candles)
    }
}

/// What of an [`Account`] the ledger columns do not hold: lifetime
/// counters, season and game record — the `players.profile` column (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredProfile {
    pub traded_value: Decimal,
    pub profitable_sales: u64,
    pub resting_fills: u64,
    pub season: i64,
    pub profile: Arc<Profile>,
}

impl StoredProfile {
    /// The part of `account` to store beside its columns.
    #[must_use]
    pub fn of(account: &Account) -> Self {
        Self {
            traded_value: account.traded_value,
            profitable_sales: account.profitable_sales,
            resting_fills: account.resting_fills,
            season: account.season,
            profile: Arc::clone(&account.profile),
        }
    }

    /// Puts the stored part back into an account loaded from its columns.
    pub fn restore(self, account: &mut Account) {
        account.traded_value = self.traded_value;
        account.profitable_sales = self.profitable_sales;
        account.resting_fills = self.resting_fills;
        account.season = self.season;
        account.profile = self.profile;
    }
}

/// Start of the minute holding `at_ms`.
#[must_use]
pub fn minute_start(at_ms: i64) -> i64 {
    at_ms - at_ms.rem_euclid(CANDLE_MS)
}

/// The log's name for an event's variant (the `kind` column).
#[must_use]
pub fn kind(event: &Event) -> &'static str {
    match event {
        Event::AccountOpened { .. } => "AccountOpened",
        Event::CashCredited { .. } => "CashCredited",
        Event::Traded(_) => "Traded",
        Event::OrderPlaced(_) => "OrderPlaced",
        Event::OrderCancelled { .. } => "OrderCancelled",
        Event::Ticked(_) => "Ticked",
        Event::TradingHalted { .. } => "TradingHalted",
        Event::Game { .. } => "Game",
        Event::AccountReset { .. } => "AccountReset",
        Event::AlertSet(_) => "AlertSet",
        Event::AlertFired { .. } => "AlertFired",
        Event::AlertDeleted { .. } => "AlertDeleted",
        Event::AdminActed { .. } => "AdminActed",
    }
}

/// A side as stored.
#[must_use]
pub fn side_name(side: Side) -> &'static str {
    match side {
        Side::Buy => "Buy",
        Side::Sell => "Sell",
    }
}

/// A stored side.
///
/// # Errors
/// `Invalid` for anything but `Buy` or `Sell`.
pub fn parse_side(text: &str) -> Result<Side, StoreError> {
    match text {
        "Buy" => Ok(Side::Buy),
        "Sell" => Ok(Side::Sell),
        other => Err(StoreError::Invalid(format!("unknown side {other:?}"))),
    }
}

/// A trigger as stored: kind and price.
#[must_use]
pub fn trigger_parts(trigger: Trigger) -> (&'static str, Decimal) {
    match trigger {
        Trigger::Limit(price) => ("Limit", price),
        Trigger::Stop(price) => ("Stop", price),
    }
}

/// A number for a `BIGINT` column.
///
/// # Errors
/// `Invalid` when it does not fit.
pub fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{what} {value} does not fit the store")))
}

/// A number for an `INTEGER` column.
///
/// # Errors
/// `Invalid` when it does not fit.
pub fn to_i32(value: u32, what: &str) -> Result<i32, StoreError> {
    i32::try_from(value).map_err(|_| StoreError::Invalid(format!("{what} {value} does not fit the store")))
}

/// A stored count or quantity, which must not be negative.
///
/// # Errors
/// `Invalid` for a negative value.
pub fn from_i64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Invalid(format!("stored {what} {value} is negative")))
}

/// A caller's `limit` for a SQL `LIMIT`.
#[must_use]
pub fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A caller's seq bound for a `BIGINT` comparison (saturating).
#[must_use]
pub fn seq_bound(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Where a batch with events stands against the log's last seq `head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// It continues the log: write it.
    Next,
    /// Its seqs are all stored already: compare them with [`judge_retry`]
    /// (a batch whose commit was acknowledged late is sent again).
    Stored,
}

/// Checks that a batch with events continues the log ending at `head`.
///
/// # Errors
/// `Invalid` for a gap, or a batch that overlaps the end of the log.
pub fn placement(plan: &Plan<'_>, head: u64) -> Result<Placement, StoreError> {
    let expected = head.saturating_add(1);
    if plan.first_seq == expected {
        Ok(Placement::Next)
    } else if plan.first_seq > expected {
        Err(StoreError::Invalid(format!("gap in the log: batch starts at seq {}, expected {expected}", plan.first_seq)))
    } else if plan.last_seq <= head {
        Ok(Placement::Stored)
    } else {
        Err(repeated(plan, head))
    }
}

/// A batch whose seqs are stored is a retry (`Ok`, nothing to write) only if
/// the stored events are exactly its events.
///
/// # Errors
/// `Invalid` when they differ: the batch repeats seqs of other events.
pub fn judge_retry(plan: &Plan<'_>, head: u64, stored: &[Stamped]) -> Result<(), StoreError> {
    if stored == plan.events { Ok(()) } else { Err(repeated(plan, head)) }
}

fn repeated(plan: &Plan<'_>, head: u64) -> StoreError {
    StoreError::Invalid(format!("seq {} is already in the log (last seq {head}): the batch repeats it", plan.first_seq))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use actors::domain::event::Tick;
    use actors::domain::ids::TradeId;
    use actors::domain::order::Side;
    use rust_decimal_macros::dec;

    fn stamped(seq: u64, at_ms: i64, event: Event) -> Stamped {
        Stamped { seq, at_ms, event }
    }

    fn tick(asset: u16, mid: f64) -> Event {
        Event::Ticked(Tick { asset: AssetId(asset), minute: 1, model_mid: mid, sigma_daily: 0.01, halted: false })
    }

    fn trade(id: u64, order: Option<u64>, qty: u64) -> Event {
        Event::Traded(Trade {
            id: TradeId(id),
            order: order.map(OrderId),
            player: PlayerId(1),
            asset: AssetId(0),
            side: Side::Buy,
            qty,
            price: dec!(10),
            fee: dec!(0.1),
        })
    }

    fn order(id: u64) -> Event {
        Event::OrderPlaced(RestingOrder {
            id: OrderId(id),
            player: PlayerId(1),
            asset: AssetId(0),
            side: Side::Buy,
            qty: 1,
            trigger: Trigger::Limit(dec!(9)),
            reserved_cash: dec!(9.1),
            placed_at_ms: 0,
        })
    }

    #[test]
    fn rejects_gaps_and_repeats_inside_a_batch() {
        let gap = EventBatch {
            events: vec![stamped(1, 0, tick(0, 1.0)), stamped(3, 0, tick(0, 1.0))],
            accounts: vec![],
            ..EventBatch::default()
        };
        assert!(matches!(Plan::new(&gap), Err(StoreError::Invalid(_))));
        let repeat = EventBatch {
            events: vec![stamped(4, 0, tick(0, 1.0)), stamped(4, 0, tick(0, 1.0))],
            accounts: vec![],
            ..EventBatch::default()
        };
        assert!(matches!(Plan::new(&repeat), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn nets_orders_and_dedups_accounts() {
        let events = vec![
            stamped(1, 0, order(7)),
            stamped(2, 0, trade(1, Some(7), 1)),
            stamped(3, 0, order(8)),
            stamped(
                4,
                0,
                Event::OrderCancelled {
                    order: OrderId(5),
                    player: PlayerId(1),
                    reason: actors::domain::event::CancelReason::ByPlayer,
                },
            ),
        ];
        let accounts = vec![
            (PlayerId(2), Account::with_cash(dec!(1))),
            (PlayerId(1), Account::with_cash(dec!(2))),
            (PlayerId(2), Account::with_cash(dec!(3))),
        ];
        let batch = EventBatch { events, accounts, ..EventBatch::default() };
        let plan = Plan::new(&batch).unwrap();
        assert_eq!(plan.orders_placed.iter().map(|o| o.order.id.0).collect::<Vec<_>>(), vec![8]);
        assert_eq!(plan.orders_removed, vec![5]);
        assert_eq!(plan.accounts.len(), 2);
        assert_eq!(plan.accounts[1].1.cash, dec!(3));
    }

    #[test]
    fn candles_count_volume_after_the_minutes_first_tick() {
        let events = vec![
            stamped(1, 60_000, trade(1, None, 5)),
            stamped(2, 60_001, tick(0, 10.0)),
            stamped(3, 60_002, trade(2, None, 2)),
            stamped(4, 60_003, tick(0, 12.0)),
            stamped(5, 60_004, tick(0, 9.0)),
            stamped(6, 120_000, tick(0, 11.0)),
        ];
        let batch = EventBatch { events, accounts: vec![], ..EventBatch::default() };
        let plan = Plan::new(&batch).unwrap();
        assert_eq!(plan.candle_volumes, vec![CandleVolume { asset: AssetId(0), start_ms: 60_000, volume: 5 }]);
        assert_eq!(plan.candles.len(), 2);
        let first = plan.candles[0];
        assert_eq!((first.open, first.high, first.low, first.close, first.volume), (10.0, 12.0, 9.0, 9.0, 2));
    }
}
