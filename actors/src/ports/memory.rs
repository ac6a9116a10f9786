//! `MemoryStore`: an in-process [`Store`] for tests and benches. It keeps the
//! log as appended and the ledgers the market wrote with it, so its audit
//! really checks the one against the other. It can be switched off to play
//! an outage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::domain::account::Account;
use crate::domain::event::Stamped;
use crate::domain::ids::PlayerId;

use rustc_hash::FxHashMap;

use super::reconcile::{Balances, PlayerReplay, Tally};
use super::{Audit, BoxFuture, Candle, EventBatch, MarketSnapshot, Store, StoreError, TradeRecord};
use crate::domain::event::Event;
use crate::domain::ids::AssetId;

struct Inner {
    /// The log, one chunk per append (the batch's ledgers are not kept).
    log: Vec<Vec<Stamped>>,
    len: usize,
    /// Ledgers as the market wrote them with each batch.
    accounts: FxHashMap<PlayerId, Account>,
    snapshot: Option<Arc<MarketSnapshot>>,
    /// Candles of the market's past (`seed_candles`), by asset and minute.
    seeded: std::collections::BTreeMap<(AssetId, i64), Candle>,
}

impl Inner {
    fn events(&self) -> impl Iterator<Item = &Stamped> {
        self.log.iter().flatten()
    }

    fn last_seq(&self) -> u64 {
        self.log.iter().rev().find_map(|chunk| chunk.last()).map_or(0, |last| last.seq)
    }
}

/// An in-memory event store.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    available: Arc<AtomicBool>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        let inner = Inner {
            log: Vec::new(),
            len: 0,
            accounts: FxHashMap::default(),
            snapshot: None,
            seeded: std::collections::BTreeMap::new(),
        };
        Self { inner: Arc::new(Mutex::new(inner)), available: Arc::new(AtomicBool::new(true)) }
    }

    /// Plays an outage (`false`) or the recovery (`true`).
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }

    /// A copy of the whole log.
    #[must_use]
    pub fn log(&self) -> Vec<Stamped> {
        self.inner.lock().map(|inner| inner.events().cloned().collect()).unwrap_or_default()
    }

    /// Number of events stored.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.lock().map(|inner| inner.len).unwrap_or(0)
    }

    /// Whether nothing is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.available.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StoreError::Unavailable("store switched off".into()))
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.check()?;
        let mut inner = self.inner.lock().map_err(|_| StoreError::Invalid("store lock poisoned".into()))?;
        f(&mut inner)
    }
}

impl Store for MemoryStore {
    fn append(&self, batch: Arc<EventBatch>) -> BoxFuture<Result<(), StoreError>> {
        let result = self.with(|inner| {
            let expected = inner.last_seq() + 1;
            if batch.events.first().is_some_and(|first| first.seq != expected) {
                return Err(StoreError::Invalid(format!("gap in the log: expected seq {expected}")));
            }
            for (player, account) in &batch.accounts {
                inner.accounts.insert(*player, account.clone());
            }
            inner.len += batch.events.len();
            inner.log.push(batch.events.clone());
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn load_account(&self, player: PlayerId) -> BoxFuture<Result<Option<Account>, StoreError>> {
        let result = self.with(|inner| Ok(inner.accounts.get(&player).cloned()));
        Box::pin(async move { result })
    }

    fn load_market(&self) -> BoxFuture<Result<Option<MarketSnapshot>, StoreError>> {
        let result = self.with(|inner| Ok(inner.snapshot.as_deref().cloned()));
        Box::pin(async move { result })
    }

    fn save_market(&self, snapshot: Arc<MarketSnapshot>) -> BoxFuture<Result<(), StoreError>> {
        let result = self.with(|inner| {
            inner.snapshot = Some(snapshot);
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn events_after(&self, after: u64, limit: usize) -> BoxFuture<Result<Vec<Stamped>, StoreError>> {
        let result =
            self.with(|inner| Ok(inner.events().skip_while(|e| e.seq <= after).take(limit).cloned().collect()));
        Box::pin(async move { result })
    }

    fn ping(&self) -> BoxFuture<Result<(), StoreError>> {
        let result = self.check();
        Box::pin(async move { result })
    }

    fn audit(&self, tickers: Arc<Vec<String>>) -> BoxFuture<Result<Audit, StoreError>> {
        let result = self.with(|inner| {
            // In memory anyway: every player's log at once, then player by player.
            let mut logs: BTreeMap<PlayerId, PlayerReplay> = BTreeMap::new();
            for stamped in inner.events() {
                let Some(player) = stamped.event.player() else { continue };
                let replay = logs.entry(player).or_insert_with(|| PlayerReplay::new(u64::MAX));
                match &stamped.event {
                    Event::Traded(trade) => replay.fill(stamped.seq, trade),
                    event => replay.event(stamped.seq, event.clone()),
                }
            }
            let mut players: Vec<PlayerId> = logs.keys().chain(inner.accounts.keys()).copied().collect();
            players.sort_unstable();
            players.dedup();
            let mut tally = Tally::default();
            for player in players {
                let expected = logs.remove(&player).map(PlayerReplay::finish).unwrap_or_default();
                let stored = inner.accounts.get(&player).map(|account| {
                    let mut balances = Balances { cash: account.cash, ..Balances::default() };
                    for position in &account.positions {
                        balances.hold(position.asset.index(), i128::from(position.qty));
                    }
                    balances
                });
                tally.settle(&expected, stored.as_ref());
            }
            Ok(tally.into_audit(&tickers, inner.len as u64))
        });
        Box::pin(async move { result })
    }

    fn trades_of(
        &self,
        player: PlayerId,
        before_seq: u64,
        limit: usize,
    ) -> BoxFuture<Result<Vec<TradeRecord>, StoreError>> {
        let result = self.with(|inner| {
            let mut found: Vec<TradeRecord> = inner
                .events()
                .filter(|e| e.seq < before_seq)
                .filter_map(|e| match &e.event {
                    Event::Traded(trade) if trade.player == player => {
                        Some(TradeRecord { seq: e.seq, at_ms: e.at_ms, trade: *trade })
                    }
                    _ => None,
                })
                .collect();
            found.reverse();
            found.truncate(limit);
            Ok(found)
        });
        Box::pin(async move { result })
    }

    fn candles(&self, asset: AssetId, since_ms: i64, limit: usize) -> BoxFuture<Result<Vec<Candle>, StoreError>> {
        let result = self.with(|inner| {
            let mut candles: Vec<Candle> = Vec::new();
            for stamped in inner.events().filter(|e| e.at_ms >= since_ms) {
                let start_ms = stamped.at_ms - stamped.at_ms.rem_euclid(60_000);
                let (price, volume) = match &stamped.event {
                    Event::Ticked(tick) if tick.asset == asset => (Some(tick.model_mid), 0),
                    Event::Traded(trade) if trade.asset == asset => (None, trade.qty),
                    _ => continue,
                };
                match candles.last_mut() {
                    Some(candle) if candle.start_ms == start_ms => {
                        if let Some(price) = price {
                            candle.high = candle.high.max(price);
                            candle.low = candle.low.min(price);
                            candle.close = price;
                        }
                        candle.volume += volume;
                    }
                    _ => {
                        let Some(price) = price else { continue };
                        candles.push(Candle { start_ms, open: price, high: price, low: price, close: price, volume });
                    }
                }
            }
            let past: Vec<Candle> = inner
                .seeded
                .range((asset, since_ms)..=(asset, i64::MAX))
                .map(|(_, candle)| *candle)
                .filter(|seeded| candles.iter().all(|c| c.start_ms != seeded.start_ms))
                .collect();
            candles.extend(past);
            candles.sort_by_key(|c| c.start_ms);
            candles.truncate(limit);
            Ok(candles)
        });
        Box::pin(async move { result })
    }

    fn seed_candles(&self, candles: Arc<Vec<(AssetId, Candle)>>) -> BoxFuture<Result<(), StoreError>> {
        let result = self.with(|inner| {
            for (asset, candle) in candles.iter() {
                inner.seeded.entry((*asset, candle.start_ms)).or_insert(*candle);
            }
            Ok(())
        });
        Box::pin(async move { result })
    }
}
