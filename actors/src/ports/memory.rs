//! `MemoryStore`: an in-process [`Store`] for tests and benches. It keeps the
//! log and derives ledgers by applying it to its own exchange, exactly as a
//! replay would. It can be switched off to play an outage.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::domain::account::Account;
use crate::domain::asset::Universe;
use crate::domain::event::Stamped;
use crate::domain::exchange::Exchange;
use crate::domain::ids::PlayerId;
use crate::domain::rules::MarketRules;

use super::{BoxFuture, MarketSnapshot, Store, StoreError};

struct Inner {
    /// The log as the batches that were appended (shared, never copied).
    log: Vec<Arc<Vec<Stamped>>>,
    len: usize,
    /// How many batches the projection has seen (it catches up on reads).
    applied: usize,
    projection: Exchange,
    snapshot: Option<Arc<MarketSnapshot>>,
}

impl Inner {
    fn catch_up(&mut self) {
        for event in self.log.iter().skip(self.applied).flat_map(|batch| batch.iter()) {
            self.projection.apply(event);
        }
        self.applied = self.log.len();
    }

    fn events(&self) -> impl Iterator<Item = &Stamped> {
        self.log.iter().flat_map(|batch| batch.iter())
    }

    fn last_seq(&self) -> u64 {
        self.log.iter().rev().find_map(|batch| batch.last()).map_or(0, |last| last.seq)
    }
}

/// An in-memory event store.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    available: Arc<AtomicBool>,
}

impl MemoryStore {
    /// An empty store for a market of `universe` under `rules`.
    #[must_use]
    pub fn new(universe: Arc<Universe>, rules: MarketRules) -> Self {
        let inner =
            Inner { log: Vec::new(), len: 0, applied: 0, projection: Exchange::new(universe, rules), snapshot: None };
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
    fn append(&self, events: Arc<Vec<Stamped>>) -> BoxFuture<Result<(), StoreError>> {
        let result = self.with(|inner| {
            let expected = inner.last_seq() + 1;
            if events.first().is_some_and(|first| first.seq != expected) {
                return Err(StoreError::Invalid(format!("gap in the log: expected seq {expected}")));
            }
            inner.len += events.len();
            inner.log.push(events);
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn load_account(&self, player: PlayerId) -> BoxFuture<Result<Option<Account>, StoreError>> {
        let result = self.with(|inner| {
            inner.catch_up();
            Ok(inner.projection.account(player).cloned())
        });
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
}
