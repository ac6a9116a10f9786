//! Ports: the traits through which the engine reaches the outside world
//! (storage, outgoing notifications). Adapters live outside this crate,
//! except the in-memory store used by tests and benches.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::account::Account;
use crate::domain::applied::CommandKey;
use crate::domain::command::Outcome;
use crate::domain::event::{Stamped, Trade};
use crate::domain::exchange::ExchangeState;
use crate::domain::ids::PlayerId;
use crate::domain::price_model::{AssetModel, SectorModel};

pub mod coordinator;
pub mod memory;
pub mod reconcile;

/// A `Send` future owned by nobody but its caller.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Learns whether an earlier append committed (see [`Store::append_after`]).
#[derive(Debug, Clone)]
pub struct CommitGate(tokio::sync::watch::Receiver<Option<bool>>);

/// Tells the [`CommitGate`]s of one append how it ended (dropped untold: it failed).
#[derive(Debug)]
pub struct CommitSignal(tokio::sync::watch::Sender<Option<bool>>);

impl CommitGate {
    /// A gate and the signal that opens it.
    #[must_use]
    pub fn new() -> (CommitSignal, Self) {
        let (sender, receiver) = tokio::sync::watch::channel(None);
        (CommitSignal(sender), Self(receiver))
    }

    /// Whether the append committed, once it ended.
    pub async fn committed(mut self) -> bool {
        loop {
            if let Some(committed) = *self.0.borrow_and_update() {
                return committed;
            }
            if self.0.changed().await.is_err() {
                return self.0.borrow().unwrap_or(false);
            }
        }
    }
}

impl CommitSignal {
    /// Reports how the append ended.
    pub fn done(self, committed: bool) {
        let _ = self.0.send(Some(committed));
    }
}

/// Why the store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Unreachable, timed out, or refused: worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Data that cannot be read back: not worth retrying.
    #[error("store data is invalid: {0}")]
    Invalid(String),
    /// Another engine took over (a newer lease epoch): this one may never
    /// write again and must step down.
    #[error("superseded: {0}")]
    Fenced(String),
}

/// The market-wide state needed to resume after a restart: books with their
/// resting orders (no player ledgers: those load lazily), and the price
/// models with their RNG positions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MarketSnapshot {
    pub exchange: ExchangeState,
    pub sectors: Vec<SectorModel>,
    pub assets: Vec<AssetModel>,
}

/// What one group commit writes: events in log order (contiguous `seq`), and
/// the ledger of every player they touched as it stands after them. A player
/// may appear more than once in `accounts` (batches merged by group commit);
/// the last entry wins. `outcomes` are the outcomes of the stream commands
/// that caused these events, kept (by a store that serves a command stream)
/// so that a command delivered again after a takeover answers as it did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    pub events: Vec<Stamped>,
    pub accounts: Vec<(PlayerId, Account)>,
    #[serde(default)]
    pub outcomes: Vec<(CommandKey, Outcome)>,
}

/// The conservation check, run against stored state: the stored balances
/// must equal what the event log says they are (cash and shares are only
/// moved between accounts and the market, never made or lost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Stored balances agree with the log (cash and every asset's shares),
    /// and no balance is negative.
    pub ok: bool,
    /// Sum of all players' stored cash.
    pub cash_total: rust_decimal::Decimal,
    /// Sum of all players' stored shares, per ticker.
    pub shares: std::collections::BTreeMap<String, u64>,
    /// Events in the log.
    pub events: u64,
}

/// One stored fill with its time, for `/history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeRecord {
    pub seq: u64,
    pub at_ms: i64,
    pub trade: Trade,
}

/// One-minute OHLC of the quoted mid, with traded volume.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    /// Start of the minute, ms since the epoch.
    pub start_ms: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: u64,
}

/// Durable storage of the event log and the state derived from it.
pub trait Store: Send + Sync + 'static {
    /// Appends a batch atomically (all or nothing): its events, in order,
    /// and the ledgers they left behind, in the same transaction.
    fn append(&self, batch: Arc<EventBatch>) -> BoxFuture<Result<(), StoreError>>;

    /// Appends a batch that follows the one `previous` reports on: it must
    /// commit only after that one did, and not at all if that one failed
    /// (then it fails `Unavailable` and is sent again after it). A store may
    /// do the batch's writes meanwhile, so that commits overlap with writing
    /// (pipelined group commit); by default it simply waits.
    fn append_after(
        self: Arc<Self>,
        batch: Arc<EventBatch>,
        previous: CommitGate,
    ) -> BoxFuture<Result<(), StoreError>> {
        Box::pin(async move {
            if !previous.committed().await {
                return Err(StoreError::Unavailable("the batch before this one did not commit".into()));
            }
            self.append(batch).await
        })
    }

    /// A player's ledger, or `None` for a player never seen.
    fn load_account(&self, player: PlayerId) -> BoxFuture<Result<Option<Account>, StoreError>>;

    /// The last saved market snapshot, if any.
    fn load_market(&self) -> BoxFuture<Result<Option<MarketSnapshot>, StoreError>>;

    /// Saves a market snapshot (taken at a batch boundary).
    fn save_market(&self, snapshot: Arc<MarketSnapshot>) -> BoxFuture<Result<(), StoreError>>;

    /// Events with `seq > after`, in order, at most `limit` of them.
    fn events_after(&self, after: u64, limit: usize) -> BoxFuture<Result<Vec<Stamped>, StoreError>>;

    /// Whether the store answers.
    fn ping(&self) -> BoxFuture<Result<(), StoreError>>;

    /// The conservation check over the whole store. `tickers` names asset
    /// ids (index = `AssetId`).
    fn audit(&self, tickers: Arc<Vec<String>>) -> BoxFuture<Result<Audit, StoreError>>;

    /// A player's fills, newest first, with `seq < before_seq`, at most `limit`.
    fn trades_of(
        &self,
        player: PlayerId,
        before_seq: u64,
        limit: usize,
    ) -> BoxFuture<Result<Vec<TradeRecord>, StoreError>>;

    /// One-minute candles of an asset with `start_ms >= since_ms`, oldest first, at most `limit`.
    fn candles(
        &self,
        asset: crate::domain::ids::AssetId,
        since_ms: i64,
        limit: usize,
    ) -> BoxFuture<Result<Vec<Candle>, StoreError>>;

    /// Writes candles of a market's past (drawn before its first minute, as
    /// the chart backfill does), in one transaction; a minute that already
    /// has a candle keeps it. Only the active engine may call this.
    fn seed_candles(
        &self,
        candles: Arc<Vec<(crate::domain::ids::AssetId, Candle)>>,
    ) -> BoxFuture<Result<(), StoreError>>;
}

/// Something to tell a player outside of a reply to their own command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Notice {
    /// A resting order filled.
    OrderFilled(Trade),
    /// A resting order was withdrawn because it could not be filled.
    OrderDropped { order: crate::domain::ids::OrderId },
    /// A price alert fired: the mid moved from `from` to `to` across it.
    AlertFired { alert: crate::domain::alert::Alert, from: rust_decimal::Decimal, to: rust_decimal::Decimal },
}

impl Notice {
    /// The notices `events` give rise to, with the player each is for, in
    /// log order: fills of resting orders, orders dropped as unfillable,
    /// alerts fired — what players did not ask for just now. A pure function
    /// of the log, so a new engine can derive again what an old one owed.
    #[must_use]
    pub fn of_events(events: &[Stamped]) -> Vec<(PlayerId, Self)> {
        use crate::domain::event::{CancelReason, Event};
        events
            .iter()
            .filter_map(|stamped| match &stamped.event {
                Event::Traded(trade) if trade.order.is_some() => Some((trade.player, Self::OrderFilled(*trade))),
                Event::OrderCancelled { order, player, reason: CancelReason::Unfillable } => {
                    Some((*player, Self::OrderDropped { order: *order }))
                }
                Event::AlertFired { alert, from, to } => {
                    Some((alert.player, Self::AlertFired { alert: *alert, from: *from, to: *to }))
                }
                _ => None,
            })
            .collect()
    }
}

/// Outgoing messages to players (Telegram sender, play page, …).
pub trait Notifier: Send + Sync + 'static {
    /// Queues a notice; never blocks the engine.
    fn notify(&self, player: PlayerId, notice: Notice);

    /// Every notice of the log's events up to `seq` was handed to `notify`
    /// (called once a batch is durable, after its notices). A notifier that
    /// can say when they are out uses it; the default ignores it.
    fn durable_through(&self, _seq: u64) {}
}

/// A notifier that drops everything (engine alone, benches).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullNotifier;

impl Notifier for NullNotifier {
    fn notify(&self, _player: PlayerId, _notice: Notice) {}
}
