//! `PostgresStore`: the [`Store`] port on PostgreSQL (tokio-postgres with a
//! deadpool pool). One `append` is one transaction: the batch's events and
//! fills go in by binary `COPY`, ledgers, positions, resting orders and
//! candles by array (`unnest`) statements sent together down one connection
//! (pipelined), then one commit — so a group commit of thousands of trades
//! costs a handful of round trips and one WAL flush. Statements are prepared
//! once per connection. Lost connections and timeouts are `Unavailable` (the
//! engine retries); data the schema refuses is `Invalid`. A batch sent again
//! after a commit whose acknowledgement was lost is recognised (its events
//! are stored exactly as sent) and accepted without being written twice.
//!
//! Player ledgers are off the commit path: `append` writes the log side only
//! (events, fills, resting orders, candles); the batch's ledgers then wait in
//! memory (the dirty map) until a background checkpoint writes them, each
//! with the seq of the last event it reflects (`players.ledger_seq`). The log
//! being committed before any acknowledgement, nothing is lost with the
//! dirty map: `load_account` rebuilds a ledger from its checkpoint, the
//! player's later events and resting orders, and `audit` first brings every
//! stale ledger up to date.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use actors::domain::account::{Account, Position};
use actors::domain::event::Event;
use actors::domain::event::{Stamped, Trade};
use actors::domain::ids::{AssetId, OrderId, PlayerId, TradeId};
use actors::domain::order::{RestingOrder, Trigger};
use actors::ports::{Audit, BoxFuture, Candle, EventBatch, MarketSnapshot, Store, StoreError, TradeRecord};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Transaction};
use rust_decimal::Decimal;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::{IsolationLevel, NoTls};

use super::migrate::migrate_client;
use super::plan::{self, Placement, Plan, StoredProfile, from_i64, kind, side_name, to_i64};

/// The statements, one file each in `sql/queries/`.
mod sql {
    pub const LOG_HEAD: &str = include_str!("../../sql/queries/log_head.sql");
    pub const EVENTS_COPY: &str = include_str!("../../sql/queries/events_copy.sql");
    pub const TRADES_COPY: &str = include_str!("../../sql/queries/trades_copy.sql");
    pub const EVENTS_RANGE: &str = include_str!("../../sql/queries/events_range.sql");
    pub const EVENTS_AFTER: &str = include_str!("../../sql/queries/events_after.sql");
    pub const ORDERS_DELETE: &str = include_str!("../../sql/queries/orders_delete.sql");
    pub const ORDERS_INSERT: &str = include_str!("../../sql/queries/orders_insert.sql");
    pub const PLAYERS_CHECKPOINT: &str = include_str!("../../sql/queries/players_checkpoint.sql");
    pub const LEDGERS_OF: &str = include_str!("../../sql/queries/ledgers_of.sql");
    pub const LEDGER_EVENTS_OF: &str = include_str!("../../sql/queries/ledger_events_of.sql");
    pub const LEDGER_TRADES_OF: &str = include_str!("../../sql/queries/ledger_trades_of.sql");
    pub const OPEN_ORDERS_OF: &str = include_str!("../../sql/queries/open_orders_of.sql");
    pub const STALE_LEDGERS: &str = include_str!("../../sql/queries/stale_ledgers.sql");
    pub const HOLDINGS_DELETE_STALE: &str = include_str!("../../sql/queries/holdings_delete_stale.sql");
    pub const HOLDINGS_UPSERT: &str = include_str!("../../sql/queries/holdings_upsert.sql");
    pub const CANDLES_ADD_VOLUME: &str = include_str!("../../sql/queries/candles_add_volume.sql");
    pub const CANDLES_UPSERT: &str = include_str!("../../sql/queries/candles_upsert.sql");
    pub const MARKET_LOAD: &str = include_str!("../../sql/queries/market_load.sql");
    pub const MARKET_SAVE: &str = include_str!("../../sql/queries/market_save.sql");
    pub const TRADES_OF: &str = include_str!("../../sql/queries/trades_of.sql");
    pub const CANDLES_SINCE: &str = include_str!("../../sql/queries/candles_since.sql");
    pub const AUDIT: &str = include_str!("../../sql/queries/audit.sql");
    pub const AUDIT_SHARES: &str = include_str!("../../sql/queries/audit_shares.sql");
    pub const PING: &str = include_str!("../../sql/queries/ping.sql");
}

/// Column types of `events_copy.sql`.
const EVENT_COLUMNS: [Type; 5] = [Type::INT8, Type::INT8, Type::TEXT, Type::INT8, Type::JSON];
/// Column types of `trades_copy.sql`.
const TRADE_COLUMNS: [Type; 10] = [
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT4,
    Type::TEXT,
    Type::INT8,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::INT8,
];

/// Longest wait for a new connection to be established.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Longest wait for a free connection of the pool.
pub const POOL_WAIT_TIMEOUT_MS: u64 = 5_000;
/// Longest any one store call may take before it is given up as
/// `Unavailable` (its connection is then closed, never reused).
pub const OPERATION_TIMEOUT_MS: u64 = 30_000;
/// Players rebuilt per round trip when an audit brings stale ledgers up to date.
const REBUILD_CHUNK: usize = 5_000;
/// Longest an audit (a scan of the whole log) may take.
pub const AUDIT_TIMEOUT_MS: u64 = 600_000;
/// Idle time after which TCP keepalives probe a silent server.
const KEEPALIVE_IDLE_MS: u64 = 10_000;
/// Time between two background checkpoints of the dirty ledgers.
pub const CHECKPOINT_INTERVAL_MS: u64 = 1_000;
/// Dirty ledgers that call for a checkpoint before the interval is up.
const CHECKPOINT_EARLY_AT: usize = 50_000;

/// The store on PostgreSQL. Cheap to clone (the pool and the dirty ledgers
/// are shared).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    ledgers: Arc<Ledgers>,
}

/// Ledgers committed to the log but not checkpointed yet: player → (ledger,
/// seq of the last event it reflects).
type Dirty = HashMap<PlayerId, (Account, u64)>;

/// The ledger projection: the dirty map and its checkpoints.
struct Ledgers {
    pool: Pool,
    dirty: Mutex<Dirty>,
    /// One checkpoint (or audit) at a time, so an older ledger never lands
    /// after a newer one.
    turn: tokio::sync::Mutex<()>,
    /// Wakes the background checkpoint early.
    wake: Arc<tokio::sync::Notify>,
    /// Whether the background checkpoint task runs.
    started: AtomicBool,
}

impl Ledgers {
    fn dirty(&self) -> MutexGuard<'_, Dirty> {
        self.dirty.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the ledgers of a committed batch (the last entry per player
    /// wins; an entry never replaces a newer one).
    fn record(&self, accounts: &[(PlayerId, &Account)], seq: u64) {
        if accounts.is_empty() {
            return;
        }
        let len = {
            let mut dirty = self.dirty();
            for (player, account) in accounts {
                put_newer(&mut dirty, *player, (*account).clone(), seq);
            }
            dirty.len()
        };
        if len >= CHECKPOINT_EARLY_AT {
            self.wake.notify_one();
        }
    }

    /// Writes every dirty ledger.
    async fn checkpoint(&self) -> Result<(), StoreError> {
        let _turn = self.turn.lock().await;
        self.flush().await
    }

    /// Writes every dirty ledger (the caller holds the turn); on failure the
    /// entries go back unless newer ones arrived meanwhile.
    async fn flush(&self) -> Result<(), StoreError> {
        let taken = std::mem::take(&mut *self.dirty());
        if taken.is_empty() {
            return Ok(());
        }
        let mut entries: Vec<(PlayerId, Account, u64)> =
            taken.into_iter().map(|(player, (account, seq))| (player, account, seq)).collect();
        entries.sort_unstable_by_key(|(player, _, _)| *player);
        let entries = Arc::new(entries);
        let written = Arc::clone(&entries);
        let result = run_on(&self.pool, OPERATION_TIMEOUT_MS, move |client| {
            Box::pin(async move {
                let rows: Vec<LedgerRow<'_>> =
                    written.iter().map(|(player, account, seq)| (*player, account, *seq)).collect();
                let txn = client.transaction().await.map_err(pg_error)?;
                write_ledgers(&txn, &rows).await?;
                txn.commit().await.map_err(pg_error)
            })
        })
        .await;
        if result.is_err() {
            let mut dirty = self.dirty();
            for (player, account, seq) in entries.iter() {
                put_newer(&mut dirty, *player, account.clone(), *seq);
            }
        }
        result
    }
}

/// Puts `account` (as of `seq`) in the dirty map unless a newer one is there.
fn put_newer(dirty: &mut Dirty, player: PlayerId, account: Account, seq: u64) {
    match dirty.get_mut(&player) {
        Some(entry) if entry.1 > seq => {}
        Some(entry) => *entry = (account, seq),
        None => {
            dirty.insert(player, (account, seq));
        }
    }
}

/// Starts the background checkpoint on the current runtime, once. It holds
/// the ledgers only while it writes, and stops when the store is gone.
fn start_checkpoints(ledgers: &Arc<Ledgers>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    if ledgers.started.swap(true, Ordering::AcqRel) {
        return;
    }
    let weak: Weak<Ledgers> = Arc::downgrade(ledgers);
    let wake = Arc::clone(&ledgers.wake);
    runtime.spawn(async move {
        loop {
            // Woken early or not, a checkpoint follows.
            let _ = tokio::time::timeout(Duration::from_millis(CHECKPOINT_INTERVAL_MS), wake.notified()).await;
            let Some(ledgers) = weak.upgrade() else { return };
            if let Err(error) = ledgers.checkpoint().await {
                tracing::warn!(%error, "ledger checkpoint failed; retried");
            }
        }
    });
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("pool", &self.pool.status()).finish()
    }
}

impl PostgresStore {
    /// Connects a pool of at most `pool_size` connections to `database_url`
    /// and checks that the server answers. The schema must exist already
    /// (`stockbot migrate`, or [`Self::connect_and_migrate`]).
    ///
    /// # Errors
    /// `Invalid` for a bad URL; `Unavailable` when the server does not answer.
    pub async fn connect(database_url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let store = Self::connect_lazy(database_url, pool_size)?;
        store.ping().await?;
        Ok(store)
    }

    /// [`Self::connect`], then applies the migrations not applied yet.
    ///
    /// # Errors
    /// As [`Self::connect`], and `Invalid` for a failing migration.
    pub async fn connect_and_migrate(database_url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let store = Self::connect_lazy(database_url, pool_size)?;
        let mut lease = Lease::get(&store.pool).await?;
        let result = migrate_client(lease.client()?).await;
        lease.settle(result)?;
        Ok(store)
    }

    /// A pool that connects on first use: every call made while the server
    /// is unreachable fails with `Unavailable` (and the next one retries).
    ///
    /// # Errors
    /// `Invalid` for a bad URL or a pool size of 0.
    pub fn connect_lazy(database_url: &str, pool_size: usize) -> Result<Self, StoreError> {
        if pool_size == 0 {
            return Err(StoreError::Invalid("the PostgreSQL pool needs at least one connection".into()));
        }
        let mut config: tokio_postgres::Config =
            database_url.parse().map_err(|e| StoreError::Invalid(format!("bad database URL: {e}")))?;
        config
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .keepalives(true)
            .keepalives_idle(Duration::from_millis(KEEPALIVE_IDLE_MS));
        if config.get_application_name().is_none() {
            config.application_name("stockbot");
        }
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let wait = Some(Duration::from_millis(POOL_WAIT_TIMEOUT_MS));
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(wait)
            .create_timeout(Some(Duration::from_millis(CONNECT_TIMEOUT_MS)))
            .recycle_timeout(wait)
            .build()
            .map_err(|e| StoreError::Invalid(format!("cannot build the PostgreSQL pool: {e}")))?;
        let ledgers = Arc::new(Ledgers {
            pool: pool.clone(),
            dirty: Mutex::new(Dirty::new()),
            turn: tokio::sync::Mutex::new(()),
            wake: Arc::new(tokio::sync::Notify::new()),
            started: AtomicBool::new(false),
        });
        start_checkpoints(&ledgers);
        Ok(Self { pool, ledgers })
    }

    /// Writes every ledger still waiting for the background checkpoint.
    ///
    /// # Errors
    /// As any write.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.ledgers.checkpoint().await
    }

    /// Runs `op` on a pooled connection within [`OPERATION_TIMEOUT_MS`].
    fn run<T, F>(&self, op: F) -> BoxFuture<Result<T, StoreError>>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Object) -> ConnFuture<'c, Result<T, StoreError>> + Send + 'static,
    {
        self.run_within(OPERATION_TIMEOUT_MS, op)
    }

    /// Runs `op` on a pooled connection within `timeout_ms`.
    fn run_within<T, F>(&self, timeout_ms: u64, op: F) -> BoxFuture<Result<T, StoreError>>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Object) -> ConnFuture<'c, Result<T, StoreError>> + Send + 'static,
    {
        Box::pin(run_on(&self.pool, timeout_ms, op))
    }
}

/// Runs `op` on a connection of `pool` within `timeout_ms`.
fn run_on<T, F>(
    pool: &Pool,
    timeout_ms: u64,
    op: F,
) -> impl std::future::Future<Output = Result<T, StoreError>> + use<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut Object) -> ConnFuture<'c, Result<T, StoreError>> + Send + 'static,
{
    let pool = pool.clone();
    async move {
        let work = async move {
            let mut lease = Lease::get(&pool).await?;
            let result = op(lease.client()?).await;
            lease.settle(result)
        };
        match tokio::time::timeout(Duration::from_millis(timeout_ms), work).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!("PostgreSQL gave no answer within {timeout_ms} ms"))),
        }
    }
}

/// A future borrowing its connection.
type ConnFuture<'c, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'c>>;

impl Store for PostgresStore {
    fn append(&self, batch: Arc<EventBatch>) -> BoxFuture<Result<(), StoreError>> {
        start_checkpoints(&self.ledgers);
        let ledgers = Arc::clone(&self.ledgers);
        let written = Arc::clone(&batch);
        let commit = self.run(move |client| Box::pin(async move { append(client, &written).await }));
        Box::pin(async move {
            // Recorded only once the log holds the batch (a retried batch
            // already stored records nothing: loads rebuild from the log).
            if let Some(seq) = commit.await? {
                let plan = Plan::new(&batch)?;
                ledgers.record(&plan.accounts, seq);
            }
            Ok(())
        })
    }

    fn load_account(&self, player: PlayerId) -> BoxFuture<Result<Option<Account>, StoreError>> {
        if let Some((account, _)) = self.ledgers.dirty().get(&player) {
            let account = account.clone();
            return Box::pin(async move { Ok(Some(account)) });
        }
        self.run(move |client| Box::pin(load_account(client, player)))
    }

    fn load_market(&self) -> BoxFuture<Result<Option<MarketSnapshot>, StoreError>> {
        self.run(|client| {
            Box::pin(async move {
                let statement = client.prepare_cached(sql::MARKET_LOAD).await.map_err(pg_error)?;
                let row = client.query_opt(&statement, &[]).await.map_err(pg_error)?;
                row.map(|row| row.try_get::<_, Json<MarketSnapshot>>(0).map(|json| json.0).map_err(pg_error))
                    .transpose()
            })
        })
    }

    fn save_market(&self, snapshot: Arc<MarketSnapshot>) -> BoxFuture<Result<(), StoreError>> {
        self.run(move |client| {
            Box::pin(async move {
                let seq = to_i64(snapshot.exchange.next_seq.saturating_sub(1), "snapshot seq")?;
                let statement = client.prepare_cached(sql::MARKET_SAVE).await.map_err(pg_error)?;
                client.execute(&statement, &[&seq, &Json(&*snapshot)]).await.map_err(pg_error)?;
                Ok(())
            })
        })
    }

    fn events_after(&self, after: u64, limit: usize) -> BoxFuture<Result<Vec<Stamped>, StoreError>> {
        self.run(move |client| {
            Box::pin(async move {
                let statement = client.prepare_cached(sql::EVENTS_AFTER).await.map_err(pg_error)?;
                let rows = client
                    .query(&statement, &[&plan::seq_bound(after), &plan::limit_i64(limit)])
                    .await
                    .map_err(pg_error)?;
                rows.iter().map(|row| row.try_get::<_, Json<Stamped>>(0).map(|json| json.0).map_err(pg_error)).collect()
            })
        })
    }

    fn ping(&self) -> BoxFuture<Result<(), StoreError>> {
        self.run(|client| {
            Box::pin(async move {
                let statement = client.prepare_cached(sql::PING).await.map_err(pg_error)?;
                client.query_one(&statement, &[]).await.map_err(pg_error)?;
                Ok(())
            })
        })
    }

    fn audit(&self, tickers: Arc<Vec<String>>) -> BoxFuture<Result<Audit, StoreError>> {
        let ledgers = Arc::clone(&self.ledgers);
        let check =
            self.run_within(AUDIT_TIMEOUT_MS, move |client| Box::pin(async move { audit(client, &tickers).await }));
        Box::pin(async move {
            // No checkpoint between the flush and the audit's own writes.
            let _turn = ledgers.turn.lock().await;
            ledgers.flush().await?;
            check.await
        })
    }

    fn trades_of(
        &self,
        player: PlayerId,
        before_seq: u64,
        limit: usize,
    ) -> BoxFuture<Result<Vec<TradeRecord>, StoreError>> {
        self.run(move |client| {
            Box::pin(async move {
                let statement = client.prepare_cached(sql::TRADES_OF).await.map_err(pg_error)?;
                let params: [&(dyn ToSql + Sync); 3] =
                    [&player.0, &plan::seq_bound(before_seq), &plan::limit_i64(limit)];
                let rows = client.query(&statement, &params).await.map_err(pg_error)?;
                rows.iter().map(|row| trade_record(player, row)).collect()
            })
        })
    }

    fn candles(&self, asset: AssetId, since_ms: i64, limit: usize) -> BoxFuture<Result<Vec<Candle>, StoreError>> {
        self.run(move |client| {
            Box::pin(async move {
                let statement = client.prepare_cached(sql::CANDLES_SINCE).await.map_err(pg_error)?;
                let params: [&(dyn ToSql + Sync); 3] = [&i32::from(asset.0), &since_ms, &plan::limit_i64(limit)];
                let rows = client.query(&statement, &params).await.map_err(pg_error)?;
                rows.iter()
                    .map(|row| {
                        Ok(Candle {
                            start_ms: row.try_get(0).map_err(pg_error)?,
                            open: row.try_get(1).map_err(pg_error)?,
                            high: row.try_get(2).map_err(pg_error)?,
                            low: row.try_get(3).map_err(pg_error)?,
                            close: row.try_get(4).map_err(pg_error)?,
                            volume: from_i64(row.try_get(5).map_err(pg_error)?, "candle volume")?,
                        })
                    })
                    .collect()
            })
        })
    }
}

// ---- append ---------------------------------------------------------------

/// Writes the log side of a batch in one transaction. Returns the seq its
/// ledgers stand at (the batch's last event, or the log head for a batch of
/// ledgers only), or `None` for a retried batch that was already stored.
async fn append(client: &mut Object, batch: &EventBatch) -> Result<Option<u64>, StoreError> {
    let plan = Plan::new(batch)?;
    let txn = client.transaction().await.map_err(pg_error)?;
    let mut seq = plan.last_seq;
    if !plan.events.is_empty() || !plan.accounts.is_empty() {
        let statement = txn.prepare_cached(sql::LOG_HEAD).await.map_err(pg_error)?;
        let head: i64 = txn.query_one(&statement, &[]).await.map_err(pg_error)?.try_get(0).map_err(pg_error)?;
        let head = from_i64(head, "log head")?;
        if plan.events.is_empty() {
            seq = head;
        } else if plan::placement(&plan, head)? == Placement::Stored {
            let stored = stored_events(&txn, plan.first_seq, plan.last_seq).await?;
            return plan::judge_retry(&plan, head, &stored).map(|()| None);
        }
    }
    futures_util::try_join!(
        copy_events(&txn, &plan),
        copy_trades(&txn, &plan),
        write_orders(&txn, &plan),
        write_candles(&txn, &plan),
    )?;
    txn.commit().await.map_err(pg_error)?;
    Ok(Some(seq))
}

async fn stored_events(txn: &Transaction<'_>, first: u64, last: u64) -> Result<Vec<Stamped>, StoreError> {
    let statement = txn.prepare_cached(sql::EVENTS_RANGE).await.map_err(pg_error)?;
    let rows = txn.query(&statement, &[&to_i64(first, "seq")?, &to_i64(last, "seq")?]).await.map_err(pg_error)?;
    rows.iter().map(|row| row.try_get::<_, Json<Stamped>>(0).map(|json| json.0).map_err(pg_error)).collect()
}

async fn copy_events(txn: &Transaction<'_>, plan: &Plan<'_>) -> Result<(), StoreError> {
    if plan.events.is_empty() {
        return Ok(());
    }
    let statement = txn.prepare_cached(sql::EVENTS_COPY).await.map_err(pg_error)?;
    let sink = txn.copy_in(&statement).await.map_err(pg_error)?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &EVENT_COLUMNS));
    for stamped in plan.events {
        let seq = to_i64(stamped.seq, "seq")?;
        let player = stamped.event.player().map(|p| p.0);
        let row: [&(dyn ToSql + Sync); 5] = [&seq, &stamped.at_ms, &kind(&stamped.event), &player, &Json(stamped)];
        writer.as_mut().write(&row).await.map_err(pg_error)?;
    }
    writer.finish().await.map_err(pg_error)?;
    Ok(())
}

async fn copy_trades(txn: &Transaction<'_>, plan: &Plan<'_>) -> Result<(), StoreError> {
    if plan.trades.is_empty() {
        return Ok(());
    }
    let statement = txn.prepare_cached(sql::TRADES_COPY).await.map_err(pg_error)?;
    let sink = txn.copy_in(&statement).await.map_err(pg_error)?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &TRADE_COLUMNS));
    for row in &plan.trades {
        let trade = row.trade;
        let id = to_i64(trade.id.0, "trade id")?;
        let qty = to_i64(trade.qty, "trade qty")?;
        let order = trade.order.map(|o| to_i64(o.0, "order id")).transpose()?;
        let values: [&(dyn ToSql + Sync); 10] = [
            &id,
            &row.seq,
            &row.at_ms,
            &trade.player.0,
            &i32::from(trade.asset.0),
            &side_name(trade.side),
            &qty,
            &trade.price,
            &trade.fee,
            &order,
        ];
        writer.as_mut().write(&values).await.map_err(pg_error)?;
    }
    writer.finish().await.map_err(pg_error)?;
    Ok(())
}

async fn write_orders(txn: &Transaction<'_>, plan: &Plan<'_>) -> Result<(), StoreError> {
    if !plan.orders_removed.is_empty() {
        let statement = txn.prepare_cached(sql::ORDERS_DELETE).await.map_err(pg_error)?;
        txn.execute(&statement, &[&plan.orders_removed]).await.map_err(pg_error)?;
    }
    if plan.orders_placed.is_empty() {
        return Ok(());
    }
    let count = plan.orders_placed.len();
    let (mut ids, mut players, mut assets, mut sides, mut qtys) = (
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
    );
    let (mut trigger_kinds, mut trigger_prices, mut reserved, mut placed_at, mut seqs) = (
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
    );
    for row in &plan.orders_placed {
        let order = row.order;
        let (trigger_kind, trigger_price) = plan::trigger_parts(order.trigger);
        ids.push(to_i64(order.id.0, "order id")?);
        players.push(order.player.0);
        assets.push(i32::from(order.asset.0));
        sides.push(side_name(order.side));
        qtys.push(to_i64(order.qty, "order qty")?);
        trigger_kinds.push(trigger_kind);
        trigger_prices.push(trigger_price);
        reserved.push(order.reserved_cash);
        placed_at.push(order.placed_at_ms);
        seqs.push(row.seq);
    }
    let statement = txn.prepare_cached(sql::ORDERS_INSERT).await.map_err(pg_error)?;
    let params: [&(dyn ToSql + Sync); 10] =
        [&ids, &players, &assets, &sides, &qtys, &trigger_kinds, &trigger_prices, &reserved, &placed_at, &seqs];
    txn.execute(&statement, &params).await.map_err(pg_error)?;
    Ok(())
}

/// Ledger columns of a batch's players, and their positions.
#[derive(Default)]
struct LedgerColumns {
    players: Vec<i64>,
    cash: Vec<Decimal>,
    reserved_cash: Vec<Decimal>,
    realized_pnl: Vec<Decimal>,
    trades: Vec<i64>,
    open_orders: Vec<i32>,
    ledger_seqs: Vec<i64>,
    profiles: Vec<Json<StoredProfile>>,
    holding_players: Vec<i64>,
    holding_assets: Vec<i32>,
    holding_qty: Vec<i64>,
    holding_reserved: Vec<i64>,
    holding_cost: Vec<Decimal>,
}

/// A ledger to write, with the seq of the last event it reflects.
type LedgerRow<'a> = (PlayerId, &'a Account, u64);

impl LedgerColumns {
    fn new(accounts: &[LedgerRow<'_>]) -> Result<Self, StoreError> {
        let mut columns = Self::default();
        for (player, account, seq) in accounts {
            columns.players.push(player.0);
            columns.ledger_seqs.push(to_i64(*seq, "ledger seq")?);
            columns.cash.push(account.cash);
            columns.reserved_cash.push(account.reserved_cash);
            columns.realized_pnl.push(account.realized_pnl);
            columns.trades.push(to_i64(account.trades, "trade count")?);
            columns.open_orders.push(plan::to_i32(account.open_orders, "open orders")?);
            columns.profiles.push(Json(StoredProfile::of(account)));
            for position in &account.positions {
                columns.holding_players.push(player.0);
                columns.holding_assets.push(i32::from(position.asset.0));
                columns.holding_qty.push(to_i64(position.qty, "position qty")?);
                columns.holding_reserved.push(to_i64(position.reserved_qty, "reserved qty")?);
                columns.holding_cost.push(position.cost_basis);
            }
        }
        Ok(columns)
    }
}

/// Writes ledgers (players sorted, each once) with their positions.
async fn write_ledgers(txn: &Transaction<'_>, accounts: &[LedgerRow<'_>]) -> Result<(), StoreError> {
    if accounts.is_empty() {
        return Ok(());
    }
    let c = LedgerColumns::new(accounts)?;
    let (delete, players, holdings) = futures_util::try_join!(
        txn.prepare_cached(sql::HOLDINGS_DELETE_STALE),
        txn.prepare_cached(sql::PLAYERS_CHECKPOINT),
        txn.prepare_cached(sql::HOLDINGS_UPSERT),
    )
    .map_err(pg_error)?;
    // Disjoint rows: the stale positions go, the held ones are written.
    let stale: [&(dyn ToSql + Sync); 3] = [&c.players, &c.holding_players, &c.holding_assets];
    let ledgers: [&(dyn ToSql + Sync); 8] = [
        &c.players,
        &c.cash,
        &c.reserved_cash,
        &c.realized_pnl,
        &c.trades,
        &c.open_orders,
        &c.ledger_seqs,
        &c.profiles,
    ];
    let positions: [&(dyn ToSql + Sync); 5] =
        [&c.holding_players, &c.holding_assets, &c.holding_qty, &c.holding_reserved, &c.holding_cost];
    let held = async { if c.holding_players.is_empty() { Ok(0) } else { txn.execute(&holdings, &positions).await } };
    futures_util::try_join!(txn.execute(&delete, &stale), txn.execute(&players, &ledgers), held).map_err(pg_error)?;
    Ok(())
}

async fn write_candles(txn: &Transaction<'_>, plan: &Plan<'_>) -> Result<(), StoreError> {
    // The early volumes go first: they must not land on candles this batch opens.
    if !plan.candle_volumes.is_empty() {
        let assets: Vec<i32> = plan.candle_volumes.iter().map(|v| i32::from(v.asset.0)).collect();
        let starts: Vec<i64> = plan.candle_volumes.iter().map(|v| v.start_ms).collect();
        let volumes =
            plan.candle_volumes.iter().map(|v| to_i64(v.volume, "volume")).collect::<Result<Vec<i64>, _>>()?;
        let statement = txn.prepare_cached(sql::CANDLES_ADD_VOLUME).await.map_err(pg_error)?;
        txn.execute(&statement, &[&assets, &starts, &volumes]).await.map_err(pg_error)?;
    }
    if plan.candles.is_empty() {
        return Ok(());
    }
    let candles = &plan.candles;
    let assets: Vec<i32> = candles.iter().map(|c| i32::from(c.asset.0)).collect();
    let starts: Vec<i64> = candles.iter().map(|c| c.start_ms).collect();
    let opens: Vec<f64> = candles.iter().map(|c| c.open).collect();
    let highs: Vec<f64> = candles.iter().map(|c| c.high).collect();
    let lows: Vec<f64> = candles.iter().map(|c| c.low).collect();
    let closes: Vec<f64> = candles.iter().map(|c| c.close).collect();
    let volumes = candles.iter().map(|c| to_i64(c.volume, "volume")).collect::<Result<Vec<i64>, _>>()?;
    let statement = txn.prepare_cached(sql::CANDLES_UPSERT).await.map_err(pg_error)?;
    let params: [&(dyn ToSql + Sync); 7] = [&assets, &starts, &opens, &highs, &lows, &closes, &volumes];
    txn.execute(&statement, &params).await.map_err(pg_error)?;
    Ok(())
}

// ---- reads ----------------------------------------------------------------

async fn load_account(client: &mut Object, player: PlayerId) -> Result<Option<Account>, StoreError> {
    // One snapshot: the checkpoint, the events after it and the resting orders agree.
    let txn = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_error)?;
    let rebuilt = rebuild(&txn, &[player.0]).await?;
    txn.commit().await.map_err(pg_error)?;
    Ok(rebuilt.into_iter().next().map(|(_, account, _)| account))
}

/// The current ledgers of `players` (those that exist), by player: each
/// from its checkpoint (reservations cleared), then the player's openings,
/// credits, fills, game changes and resets after it in log order, then a
/// reservation for each resting order.
async fn rebuild(txn: &Transaction<'_>, players: &[i64]) -> Result<Vec<(PlayerId, Account, u64)>, StoreError> {
    let (ledgers, events, trades, orders) = futures_util::try_join!(
        txn.prepare_cached(sql::LEDGERS_OF),
        txn.prepare_cached(sql::LEDGER_EVENTS_OF),
        txn.prepare_cached(sql::LEDGER_TRADES_OF),
        txn.prepare_cached(sql::OPEN_ORDERS_OF),
    )
    .map_err(pg_error)?;
    let ids = players.to_vec();
    let params: [&(dyn ToSql + Sync); 1] = [&ids];
    let (ledger_rows, event_rows, trade_rows, order_rows) = futures_util::try_join!(
        txn.query(&ledgers, &params),
        txn.query(&events, &params),
        txn.query(&trades, &params),
        txn.query(&orders, &params)
    )
    .map_err(pg_error)?;

    let mut states: BTreeMap<i64, (Option<Account>, u64)> = BTreeMap::new();
    for row in &ledger_rows {
        let player: i64 = row.try_get(0).map_err(pg_error)?;
        if let std::collections::btree_map::Entry::Vacant(entry) = states.entry(player) {
            let mut account = Account {
                cash: row.try_get(1).map_err(pg_error)?,
                reserved_cash: Decimal::ZERO,
                positions: Vec::new(),
                realized_pnl: row.try_get(3).map_err(pg_error)?,
                trades: from_i64(row.try_get(4).map_err(pg_error)?, "trade count")?,
                open_orders: 0,
                ..Account::default()
            };
            row.try_get::<_, Json<StoredProfile>>(11).map_err(pg_error)?.0.restore(&mut account);
            entry.insert((Some(account), from_i64(row.try_get(6).map_err(pg_error)?, "ledger seq")?));
        }
        let Some(asset) = row.try_get::<_, Option<i32>>(7).map_err(pg_error)? else { continue };
        let position = Position {
            asset: asset_id(asset)?,
            qty: from_i64(row.try_get(8).map_err(pg_error)?, "position qty")?,
            reserved_qty: 0,
            cost_basis: row.try_get(10).map_err(pg_error)?,
        };
        if let Some((Some(account), _)) = states.get_mut(&player) {
            account.positions.push(position);
        }
    }
    // The ledger-moving events after each checkpoint, in log order.
    let mut steps: Vec<(i64, u64, Event)> = Vec::with_capacity(event_rows.len() + trade_rows.len());
    for row in &event_rows {
        let player: i64 = row.try_get(0).map_err(pg_error)?;
        let stamped = row.try_get::<_, Json<Stamped>>(1).map_err(pg_error)?.0;
        steps.push((player, stamped.seq, stamped.event));
    }
    for row in &trade_rows {
        let player = PlayerId(row.try_get(9).map_err(pg_error)?);
        let record = trade_record(player, row)?;
        steps.push((player.0, record.seq, Event::Traded(record.trade)));
    }
    steps.sort_by_key(|(player, seq, _)| (*player, *seq));
    for (player, step_seq, event) in &steps {
        let (account, seq) = states.entry(*player).or_insert((None, 0));
        *seq = (*seq).max(*step_seq);
        // As `PlayerLedger::apply` (orders are reserved for below).
        match (event, account.as_mut()) {
            (Event::AccountOpened { cash, season, .. }, _) => *account = Some(Account::opened(*cash, *season)),
            (Event::CashCredited { amount, .. }, Some(account)) => account.cash += *amount,
            (Event::Traded(trade), Some(account)) => account.apply_trade(trade),
            (Event::Game { change, .. }, Some(account)) => account.apply_game(change),
            (Event::AccountReset { cash, reason, .. }, Some(account)) => account.reset(*cash, *reason),
            _ => {}
        }
    }
    for row in &order_rows {
        let order = resting_order(row)?;
        if let Some((Some(account), _)) = states.get_mut(&order.player.0) {
            account.reserve_for(&order);
        }
    }
    Ok(states
        .into_iter()
        .filter_map(|(player, (account, seq))| {
            account.map(|mut account| {
                account.positions.retain(|p| p.qty > 0 || p.reserved_qty > 0);
                (PlayerId(player), account, seq)
            })
        })
        .collect())
}

fn asset_id(asset: i32) -> Result<AssetId, StoreError> {
    u16::try_from(asset).map(AssetId).map_err(|_| StoreError::Invalid(format!("stored asset id {asset}")))
}

/// A row of `open_orders_of.sql`.
fn resting_order(row: &tokio_postgres::Row) -> Result<RestingOrder, StoreError> {
    let trigger_price: Decimal = row.try_get(6).map_err(pg_error)?;
    let trigger = match row.try_get::<_, &str>(5).map_err(pg_error)? {
        "Limit" => Trigger::Limit(trigger_price),
        "Stop" => Trigger::Stop(trigger_price),
        other => return Err(StoreError::Invalid(format!("stored trigger kind {other:?}"))),
    };
    Ok(RestingOrder {
        id: OrderId(from_i64(row.try_get(0).map_err(pg_error)?, "order id")?),
        player: PlayerId(row.try_get(1).map_err(pg_error)?),
        asset: asset_id(row.try_get(2).map_err(pg_error)?)?,
        side: plan::parse_side(row.try_get(3).map_err(pg_error)?)?,
        qty: from_i64(row.try_get(4).map_err(pg_error)?, "order qty")?,
        trigger,
        reserved_cash: row.try_get(7).map_err(pg_error)?,
        placed_at_ms: row.try_get(8).map_err(pg_error)?,
    })
}

fn trade_record(player: PlayerId, row: &tokio_postgres::Row) -> Result<TradeRecord, StoreError> {
    let asset: i32 = row.try_get(4).map_err(pg_error)?;
    let order: Option<i64> = row.try_get(3).map_err(pg_error)?;
    let side: &str = row.try_get(5).map_err(pg_error)?;
    Ok(TradeRecord {
        seq: from_i64(row.try_get(0).map_err(pg_error)?, "seq")?,
        at_ms: row.try_get(1).map_err(pg_error)?,
        trade: Trade {
            id: TradeId(from_i64(row.try_get(2).map_err(pg_error)?, "trade id")?),
            order: order.map(|o| from_i64(o, "order id").map(OrderId)).transpose()?,
            player,
            asset: AssetId(u16::try_from(asset).map_err(|_| StoreError::Invalid(format!("stored asset id {asset}")))?),
            side: plan::parse_side(side)?,
            qty: from_i64(row.try_get(6).map_err(pg_error)?, "trade qty")?,
            price: row.try_get(7).map_err(pg_error)?,
            fee: row.try_get(8).map_err(pg_error)?,
        },
    })
}

/// Brings every stale ledger up to date (those whose events go beyond their
/// checkpoint, e.g. after a crash), then checks conservation — all in one
/// snapshot, so concurrent appends can neither split the statements nor
/// leave the ledgers behind the log they are checked against. The caller
/// holds the checkpoint turn (nothing else writes ledgers meanwhile).
async fn audit(client: &mut Object, tickers: &[String]) -> Result<Audit, StoreError> {
    let txn =
        client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start().await.map_err(pg_error)?;
    let statement = txn.prepare_cached(sql::STALE_LEDGERS).await.map_err(pg_error)?;
    let stale = txn
        .query(&statement, &[])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<Vec<i64>, _>>()
        .map_err(pg_error)?;
    for players in stale.chunks(REBUILD_CHUNK) {
        let rebuilt = rebuild(&txn, players).await?;
        let rows: Vec<LedgerRow<'_>> = rebuilt.iter().map(|(player, account, seq)| (*player, account, *seq)).collect();
        write_ledgers(&txn, &rows).await?;
    }
    let statement = txn.prepare_cached(sql::AUDIT).await.map_err(pg_error)?;
    let row = txn.query_one(&statement, &[]).await.map_err(pg_error)?;
    let cash_mismatches: i64 = row.try_get(0).map_err(pg_error)?;
    let share_mismatches: i64 = row.try_get(1).map_err(pg_error)?;
    let negatives: i64 = row.try_get(2).map_err(pg_error)?;
    let cash_total: Decimal = row.try_get(3).map_err(pg_error)?;
    let events: i64 = row.try_get(4).map_err(pg_error)?;
    let statement = txn.prepare_cached(sql::AUDIT_SHARES).await.map_err(pg_error)?;
    let mut shares = std::collections::BTreeMap::new();
    for row in txn.query(&statement, &[]).await.map_err(pg_error)? {
        let asset: i32 = row.try_get(0).map_err(pg_error)?;
        let qty: i64 = row.try_get(1).map_err(pg_error)?;
        shares.insert(ticker_name(tickers, asset), u64::try_from(qty).unwrap_or(0));
    }
    txn.commit().await.map_err(pg_error)?;
    Ok(Audit {
        ok: cash_mismatches == 0 && share_mismatches == 0 && negatives == 0,
        cash_total,
        shares,
        events: from_i64(events, "event count")?,
    })
}

/// The ticker of a stored asset id, or `#id` for one the universe lacks.
pub(crate) fn ticker_name(tickers: &[String], asset: i32) -> String {
    usize::try_from(asset).ok().and_then(|index| tickers.get(index)).cloned().unwrap_or_else(|| format!("#{asset}"))
}

// ---- connections and errors -----------------------------------------------

/// A pooled connection that goes back to the pool only when the call using
/// it finished cleanly; after a connection failure, a timeout or a dropped
/// call (which may leave it mid-statement) it is closed instead.
struct Lease {
    client: Option<Object>,
    reusable: bool,
}

impl Lease {
    async fn get(pool: &Pool) -> Result<Self, StoreError> {
        let client = pool.get().await.map_err(pool_error)?;
        Ok(Self { client: Some(client), reusable: false })
    }

    fn client(&mut self) -> Result<&mut Object, StoreError> {
        self.client.as_mut().ok_or_else(|| StoreError::Unavailable("connection already released".into()))
    }

    fn settle<T>(mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        self.reusable = !matches!(result, Err(StoreError::Unavailable(_)));
        result
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.reusable
            && let Some(client) = self.client.take()
        {
            drop(Object::take(client));
        }
    }
}

fn pool_error(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(error) => pg_error(error),
        PoolError::NoRuntimeSpecified => StoreError::Invalid(format!("PostgreSQL pool: {error}")),
        other => StoreError::Unavailable(format!("PostgreSQL pool: {other}")),
    }
}

/// Sorts a driver error into "worth retrying" (connection lost, server
/// shutting down or overloaded, serialization conflicts) and "not".
pub(crate) fn pg_error(error: tokio_postgres::Error) -> StoreError {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        let text = format!("{} ({code})", db.message());
        let retry = ["08", "53", "57", "58", "40"].iter().any(|class| code.starts_with(class));
        return if retry { StoreError::Unavailable(text) } else { StoreError::Invalid(text) };
    }
    let text = chain(&error);
    if error.is_closed() || has_io_cause(&error) {
        return StoreError::Unavailable(text);
    }
    let refused = ["error serializing", "error deserializing", "invalid column", "query returned an unexpected"];
    if refused.iter().any(|prefix| text.starts_with(prefix)) {
        StoreError::Invalid(text)
    } else {
        StoreError::Unavailable(text)
    }
}

fn has_io_cause(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = error.source();
    while let Some(current) = cause {
        if current.is::<std::io::Error>() {
            return true;
        }
        cause = current.source();
    }
    false
}

/// An error with its causes, `: `-separated.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        let more = current.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = current.source();
    }
    text
}
