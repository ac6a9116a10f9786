//! Ports: the traits through which the engine reaches the outside world
//! (storage, outgoing notifications). Adapters live outside this crate,
//! except the in-memory store used by tests and benches.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::account::Account;
use crate::domain::event::{Stamped, Trade};
use crate::domain::exchange::ExchangeState;
use crate::domain::ids::PlayerId;
use crate::domain::price_model::{AssetModel, SectorModel};

pub mod memory;

/// A `Send` future owned by nobody but its caller.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why the store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Unreachable, timed out, or refused: worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Data that cannot be read back: not worth retrying.
    #[error("store data is invalid: {0}")]
    Invalid(String),
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

/// Durable storage of the event log and the state derived from it.
pub trait Store: Send + Sync + 'static {
    /// Appends events atomically (all or nothing), in order, and updates the
    /// state derived from them in the same transaction.
    fn append(&self, events: Arc<Vec<Stamped>>) -> BoxFuture<Result<(), StoreError>>;

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
}

/// Something to tell a player outside of a reply to their own command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Notice {
    /// A resting order filled.
    OrderFilled(Trade),
    /// A resting order was withdrawn because it could not be filled.
    OrderDropped { order: crate::domain::ids::OrderId },
}

/// Outgoing messages to players (Telegram sender, play page, …).
pub trait Notifier: Send + Sync + 'static {
    /// Queues a notice; never blocks the engine.
    fn notify(&self, player: PlayerId, notice: Notice);
}

/// A notifier that drops everything (engine alone, benches).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullNotifier;

impl Notifier for NullNotifier {
    fn notify(&self, _player: PlayerId, _notice: Notice) {}
}
