//! `PostgresStore`: the [`Store`] port on PostgreSQL (tokio-postgres with a
//! deadpool pool). One `append` is one transaction: the batch's events other
//! than fills go in by binary `COPY`, its fills as one journal entry (one
//! row, see `fills`), resting orders and candles by array (`unnest`)
//! statements sent together down one connection (pipelined), then one
//! commit — so a group commit of thousands of trades costs a handful of
//! round trips, a few rows and one WAL flush. Statements are prepared once
//! per connection. Lost connections and timeouts are `Unavailable` (the
//! engine retries); data the schema refuses is `Invalid`. A batch sent again
//! after a commit whose acknowledgement was lost is recognised (its events
//! are stored exactly as sent) and accepted without being written twice.
//!
//! Player ledgers and histories are off the commit path (`ledgers`): a
//! committed batch's ledgers and fills wait in memory until a background
//! checkpoint writes each player's ledger row and a history chunk of its
//! fills. Nothing is lost with the memory: the log is committed before any
//! acknowledgement, and a store opened after a crash first rebuilds what the
//! last checkpoint missed from the journal after its watermark.

use std::sync::Arc;
use std::time::Duration;

use actors::domain::account::Account;
use actors::domain::applied::CommandKey;
use actors::domain::command::Outcome;
use actors::domain::event::{Event, Stamped};
use actors::domain::ids::{AssetId, OrderId, PlayerId};
use actors::domain::order::{RestingOrder, Trigger};
use actors::ports::{Audit, BoxFuture, Candle, CommitGate, EventBatch, MarketSnapshot, Store, StoreError, TradeRecord};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Transaction};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::{IsolationLevel, NoTls};

use super::fills;
use super::migrate::migrate_client;
use super::plan::{self, Placement, Plan, TradeRow, from_i64, kind, side_name, to_i64};

mod audit;
pub mod lease;
mod ledgers;

use lease::{Fence, FenceSlot, Writes};
use ledgers::{Ledgers, start_checkpoints};

/// The statements, one file each in `sql/queries/`.
mod sql {
    pub const LOG_HEAD: &str = include_str!("../../sql/queries/log_head.sql");
    pub const EVENTS_COPY: &str = include_str!("../../sql/queries/events_copy.sql");
    pub const FILL_BATCH_INSERT: &str = include_str!("../../sql/queries/fill_batch_insert.sql");
    pub const FILL_BATCHES_BETWEEN: &str = include_str!("../../sql/queries/fill_batches_between.sql");
    pub const EVENTS_RANGE: &str = include_str!("../../sql/queries/events_range.sql");
    pub const EVENTS_AFTER: &str = include_str!("../../sql/queries/events_after.sql");
    pub const ORDERS_DELETE: &str = include_str!("../../sql/queries/orders_delete.sql");
    pub const ORDERS_INSERT: &str = include_str!("../../sql/queries/orders_insert.sql");
    pub const PLAYERS_CHECKPOINT: &str = include_str!("../../sql/queries/players_checkpoint.sql");
    pub const PLAYER_FILLS_INSERT: &str = include_str!("../../sql/queries/player_fills_insert.sql");
    pub const PLAYER_FILLS_OF: &str = include_str!("../../sql/queries/player_fills_of.sql");
    pub const HISTORY_OF: &str = include_str!("../../sql/queries/history_of.sql");
    pub const HISTORY_ALL: &str = include_str!("../../sql/queries/history_all.sql");
    pub const WATERMARK_LOAD: &str = include_str!("../../sql/queries/watermark_load.sql");
    pub const WATERMARK_SAVE: &str = include_str!("../../sql/queries/watermark_save.sql");
    pub const LEDGERS_OF: &str = include_str!("../../sql/queries/ledgers_of.sql");
    pub const LEDGERS_ALL: &str = include_str!("../../sql/queries/ledgers_all.sql");
    pub const LEDGER_EVENTS_OF: &str = include_str!("../../sql/queries/ledger_events_of.sql");
    pub const LEDGER_PLAYERS_AFTER: &str = include_str!("../../sql/queries/ledger_players_after.sql");
    pub const OPEN_ORDERS_OF: &str = include_str!("../../sql/queries/open_orders_of.sql");
    pub const AUDIT_EVENTS: &str = include_str!("../../sql/queries/audit_events.sql");
    pub const CANDLES_ADD_VOLUME: &str = include_str!("../../sql/queries/candles_add_volume.sql");
    pub const CANDLES_UPSERT: &str = include_str!("../../sql/queries/candles_upsert.sql");
    pub const CANDLES_SEED: &str = include_str!("../../sql/queries/candles_seed.sql");
    pub const MARKET_LOAD: &str = include_str!("../../sql/queries/market_load.sql");
    pub const MARKET_SAVE: &str = include_str!("../../sql/queries/market_save.sql");
    pub const CANDLES_SINCE: &str = include_str!("../../sql/queries/candles_since.sql");
    pub const PING: &str = include_str!("../../sql/queries/ping.sql");
}

/// Column types of `events_copy.sql`.
const EVENT_COLUMNS: [Type; 5] = [Type::INT8, Type::INT8, Type::TEXT, Type::INT8, Type::JSON];

/// Longest wait for a new connection to be established.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Longest wait for a free connection of the pool.
pub const POOL_WAIT_TIMEOUT_MS: u64 = 5_000;
/// Longest any one store call may take before it is given up as
/// `Unavailable` (its connection is then closed, never reused).
pub const OPERATION_TIMEOUT_MS: u64 = 30_000;
/// Longest an audit (a scan of the whole log) may take.
pub const AUDIT_TIMEOUT_MS: u64 = 600_000;
/// Idle time after which TCP keepalives probe a silent server.
const KEEPALIVE_IDLE_MS: u64 = 10_000;
/// An engine's session left idle inside a transaction this long (a paused
/// process) is ended by the server, releasing its locks.
const ENGINE_IDLE_IN_TRANSACTION_MS: u64 = 10_000;
/// The store on PostgreSQL. Cheap to clone (the pool and the dirty ledgers
/// are shared).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    ledgers: Arc<Ledgers>,
    /// The lease this store's writes must hold (none: a lone process).
    fence: Arc<FenceSlot>,
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
        Self::connect_lazy_as(database_url, pool_size, None)
    }

    /// [`Self::connect_lazy`] for the engine `instance`: its sessions carry
    /// the engine's `application_name` (a new lease holder ends them by it)
    /// and are ended by the server when left idle inside a transaction.
    ///
    /// # Errors
    /// As [`Self::connect_lazy`].
    pub fn connect_lazy_as(database_url: &str, pool_size: usize, instance: Option<&str>) -> Result<Self, StoreError> {
        let store = Self::without_checkpoints(database_url, pool_size, instance)?;
        start_checkpoints(&store.ledgers);
        Ok(store)
    }

    /// A store for reading only (`stockbot audit` beside a live engine):
    /// one connection, no background checkpoint, so it never writes what
    /// another process owns. Checks that the server answers.
    ///
    /// # Errors
    /// As [`Self::connect`].
    pub async fn connect_reader(database_url: &str) -> Result<Self, StoreError> {
        let store = Self::without_checkpoints(database_url, 1, None)?;
        store.ping().await?;
        Ok(store)
    }

    fn without_checkpoints(database_url: &str, pool_size: usize, instance: Option<&str>) -> Result<Self, StoreError> {
        if pool_size == 0 {
            return Err(StoreError::Invalid("the PostgreSQL pool needs at least one connection".into()));
        }
        let mut config: tokio_postgres::Config =
            database_url.parse().map_err(|e| StoreError::Invalid(format!("bad database URL: {e}")))?;
        config
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .keepalives(true)
            .keepalives_idle(Duration::from_millis(KEEPALIVE_IDLE_MS));
        if let Some(instance) = instance {
            config
                .application_name(lease::engine_application_name(instance))
                .options(format!("-c idle_in_transaction_session_timeout={ENGINE_IDLE_IN_TRANSACTION_MS}"));
        } else if config.get_application_name().is_none() {
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
        let fence = Arc::new(FenceSlot::default());
        let ledgers = Ledgers::new(pool.clone(), Arc::clone(&fence));
        Ok(Self { pool, ledgers, fence })
    }

    /// Puts a write mode in force: `Fenced` — from now on every write
    /// transaction checks the lease it holds (group commits renew it and
    /// store the command cursor) and fails `Fenced` once another engine took
    /// over; `Standby` — nothing is written (checkpoints wait); `Unfenced` —
    /// writes go unchecked (a lone process).
    pub fn set_writes(&self, writes: Writes) {
        self.fence.set(writes);
    }

    /// Records that the command cursor now counts in `stream` (a stream
    /// created anew), starting at `cursor`.
    ///
    /// # Errors
    /// `Fenced` when the lease was taken over; as any write.
    pub async fn set_command_stream(&self, fence: Arc<Fence>, stream: String, cursor: u64) -> Result<(), StoreError> {
        self.run(move |client| Box::pin(async move { lease::set_stream(client, &fence, &stream, cursor).await })).await
    }

    /// Outcomes of stream commands of messages after `cursor` (a takeover
    /// answers a redelivered command with them).
    ///
    /// # Errors
    /// As any read.
    pub async fn outcomes_after(&self, cursor: u64) -> Result<Vec<(CommandKey, Outcome)>, StoreError> {
        self.run(move |client| Box::pin(async move { lease::outcomes_after(client, cursor).await })).await
    }

    /// Deletes stored outcomes wholly behind the cursor; returns how many.
    ///
    /// # Errors
    /// As any write.
    pub async fn prune_outcomes(&self, cursor: u64) -> Result<u64, StoreError> {
        self.run(move |client| Box::pin(async move { lease::prune_outcomes(client, cursor).await })).await
    }

    /// A standby's step along the log: up to `limit` events after `after`
    /// (events and fills merged), also recorded in the ledger memory so a
    /// takeover finds it current.
    ///
    /// # Errors
    /// As any read.
    pub async fn follow(&self, after: u64, limit: usize) -> Result<Vec<Stamped>, StoreError> {
        self.ledgers.recover().await?;
        let events = self.events_after(after, limit).await?;
        let watermark = self.ledgers.stored_watermark().await?;
        self.ledgers.follow(&events, watermark);
        Ok(events)
    }

    /// Writes every ledger and fill still waiting for the background checkpoint.
    ///
    /// # Errors
    /// As any write.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.ledgers.checkpoint().await
    }

    /// The conservation check over what is checkpointed, read-only: it
    /// neither recovers nor writes anything, so any process may run it beside
    /// a live engine (`stockbot audit`). Memory does not grow with the log.
    ///
    /// # Errors
    /// As any read; `Invalid` for stored data that cannot be read back.
    pub fn audit_checkpointed(&self, tickers: Arc<Vec<String>>) -> BoxFuture<Result<Audit, StoreError>> {
        self.run_within(AUDIT_TIMEOUT_MS, move |client| Box::pin(async move { audit::audit(client, &tickers).await }))
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

impl PostgresStore {
    /// Appends `batch` (after `previous` committed, if given), then records
    /// its ledgers and fills for the checkpoint — only once the log holds the
    /// batch (a retried batch already stored records nothing: the recovery
    /// read it back).
    fn append_batch(&self, batch: Arc<EventBatch>, previous: Option<CommitGate>) -> BoxFuture<Result<(), StoreError>> {
        start_checkpoints(&self.ledgers);
        let ledgers = Arc::clone(&self.ledgers);
        let pool = self.pool.clone();
        let writes = self.fence.get();
        Box::pin(async move {
            writes.fence()?;
            ledgers.recover().await?;
            run_on(&pool, OPERATION_TIMEOUT_MS, move |client| {
                Box::pin(async move {
                    let plan = Plan::new(&batch)?;
                    let fence = writes.fence()?;
                    if let Some(fence) = fence {
                        fence.refuse_if_superseded()?;
                    }
                    let written = Written { plan: &plan, outcomes: &batch.outcomes, fence };
                    let appended = match previous {
                        Some(previous) => append_after(client, &written, previous).await,
                        None => append(client, &written).await,
                    };
                    let seq = match (appended, fence) {
                        (Ok(seq), _) => seq,
                        (Err(error @ StoreError::Fenced(_)), _) | (Err(error), None) => return Err(error),
                        // A batch the log refuses (its seqs taken) may be a
                        // superseded engine's: say so rather than retry it.
                        (Err(error), Some(fence)) => return Err(lease::fenced_or(client, fence, error).await),
                    };
                    if let Some(seq) = seq {
                        ledgers.record(&plan, seq);
                    }
                    Ok(())
                })
            })
            .await
        })
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
        self.append_batch(batch, None)
    }

    fn append_after(
        self: Arc<Self>,
        batch: Arc<EventBatch>,
        previous: CommitGate,
    ) -> BoxFuture<Result<(), StoreError>> {
        self.append_batch(batch, Some(previous))
    }

    fn load_account(&self, player: PlayerId) -> BoxFuture<Result<Option<Account>, StoreError>> {
        let ledgers = Arc::clone(&self.ledgers);
        let pool = self.pool.clone();
        Box::pin(async move {
            ledgers.recover().await?;
            if let Some(account) = ledgers.account(player) {
                return Ok(Some(account));
            }
            // Fills the memory holds may not be in the player's history yet.
            let unchunked = ledgers.fills(player);
            run_on(&pool, OPERATION_TIMEOUT_MS, move |client| Box::pin(load_account(client, player, unchunked))).await
        })
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
        let writes = self.fence.get();
        self.run(move |client| {
            Box::pin(async move {
                let fence = writes.fence()?;
                let seq = to_i64(snapshot.exchange.next_seq.saturating_sub(1), "snapshot seq")?;
                let txn = client.transaction().await.map_err(pg_error)?;
                let statement = txn.prepare_cached(sql::MARKET_SAVE).await.map_err(pg_error)?;
                txn.execute(&statement, &[&seq, &Json(&*snapshot)]).await.map_err(pg_error)?;
                if let Some(fence) = fence {
                    fence.check_in(&txn).await?;
                }
                txn.commit().await.map_err(pg_error)?;
                Ok(())
            })
        })
    }

    fn events_after(&self, after: u64, limit: usize) -> BoxFuture<Result<Vec<Stamped>, StoreError>> {
        self.run(move |client| Box::pin(events_after(client, after, limit)))
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
        let check = self.audit_checkpointed(tickers);
        Box::pin(async move {
            // What this process committed is checkpointed first, so the audit
            // covers it; the audit itself then reads without holding anything.
            ledgers.checkpoint().await?;
            check.await
        })
    }

    fn trades_of(
        &self,
        player: PlayerId,
        before_seq: u64,
        limit: usize,
    ) -> BoxFuture<Result<Vec<TradeRecord>, StoreError>> {
        let ledgers = Arc::clone(&self.ledgers);
        let pool = self.pool.clone();
        Box::pin(async move {
            ledgers.recover().await?;
            // Memory first: a checkpoint that lands meanwhile moves fills
            // into the chunks read next, never out of both.
            let mut found = ledgers.fills(player);
            let stored =
                run_on(&pool, OPERATION_TIMEOUT_MS, move |client| Box::pin(history(client, player, before_seq, limit)))
                    .await?;
            found.extend(stored);
            found.retain(|fill| fill.seq < before_seq && fill.trade.player == player);
            found.sort_unstable_by_key(|fill| std::cmp::Reverse(fill.seq));
            found.dedup_by_key(|fill| fill.seq);
            found.truncate(limit);
            Ok(found)
        })
    }

    fn seed_candles(&self, candles: Arc<Vec<(AssetId, Candle)>>) -> BoxFuture<Result<(), StoreError>> {
        self.run(move |client| {
            let candles = Arc::clone(&candles);
            Box::pin(async move {
                let assets: Vec<i32> = candles.iter().map(|(asset, _)| i32::from(asset.0)).collect();
                let starts: Vec<i64> = candles.iter().map(|(_, c)| c.start_ms).collect();
                let opens: Vec<f64> = candles.iter().map(|(_, c)| c.open).collect();
                let highs: Vec<f64> = candles.iter().map(|(_, c)| c.high).collect();
                let lows: Vec<f64> = candles.iter().map(|(_, c)| c.low).collect();
                let closes: Vec<f64> = candles.iter().map(|(_, c)| c.close).collect();
                let volumes =
                    candles.iter().map(|(_, c)| to_i64(c.volume, "volume")).collect::<Result<Vec<i64>, _>>()?;
                let statement = client.prepare_cached(sql::CANDLES_SEED).await.map_err(pg_error)?;
                let params: [&(dyn ToSql + Sync); 7] = [&assets, &starts, &opens, &highs, &lows, &closes, &volumes];
                client.execute(&statement, &params).await.map_err(pg_error)?;
                Ok(())
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

/// What one append writes: the batch's plan, the outcomes of the stream
/// commands in it, and the lease its transaction must hold.
struct Written<'a> {
    plan: &'a Plan<'a>,
    outcomes: &'a [(CommandKey, Outcome)],
    fence: Option<&'a Fence>,
}

impl Written<'_> {
    /// The last writes before the commit: the stream outcomes, then the
    /// lease check (it renews the lease, stores the cursor, and holds the
    /// lease row until the commit, so no takeover slips in between).
    async fn seal(&self, txn: &Transaction<'_>) -> Result<(), StoreError> {
        lease::insert_outcomes(txn, self.outcomes).await?;
        if let Some(fence) = self.fence {
            fence.renew_in(txn).await?;
        }
        Ok(())
    }
}

/// Writes the log side of a batch in one transaction. Returns the seq its
/// ledgers stand at (the batch's last event, or the log head for a batch of
/// ledgers only), or `None` for a retried batch that was already stored.
async fn append(client: &mut Object, written: &Written<'_>) -> Result<Option<u64>, StoreError> {
    let plan = written.plan;
    let txn = client.transaction().await.map_err(pg_error)?;
    let mut seq = plan.last_seq;
    if !plan.events.is_empty() || !plan.accounts.is_empty() {
        let (head, last_trade) = journal_tip(&txn).await?;
        if plan.events.is_empty() {
            seq = head;
        } else if plan::placement(plan, head)? == Placement::Stored {
            let stored = events_between(&txn, plan.first_seq, plan.last_seq, usize::MAX).await?;
            return plan::judge_retry(plan, head, &stored).map(|()| None);
        } else {
            check_trade_ids(plan, last_trade)?;
        }
    }
    futures_util::try_join!(
        copy_events(&txn, plan),
        journal_fills(&txn, plan),
        write_orders(&txn, plan),
        write_candles(&txn, plan),
    )?;
    written.seal(&txn).await?;
    txn.commit().await.map_err(pg_error)?;
    Ok(Some(seq))
}

/// [`append`] for a batch that follows one still committing: its log rows
/// (events, the fill journal entry) are written first, while the one before
/// commits; once that one committed, the batch is checked against the log
/// head, its resting orders and candles are written and it commits — or it
/// is rolled back, if the one before failed or the log does not continue.
/// (Only fresh batches come this way: a retry goes through [`append`].)
async fn append_after(
    client: &mut Object,
    written: &Written<'_>,
    previous: CommitGate,
) -> Result<Option<u64>, StoreError> {
    let plan = written.plan;
    let txn = client.transaction().await.map_err(pg_error)?;
    // Appends only: new keys, which the batch before cannot hold or wait for.
    futures_util::try_join!(copy_events(&txn, plan), journal_fills(&txn, plan))?;
    if !previous.committed().await {
        return Err(StoreError::Unavailable("the batch before this one did not commit".into()));
    }
    // Read committed: the log below the batch now includes the one before.
    let (head, last_trade) = journal_tip_below(&txn, plan.first_seq.max(1)).await?;
    if plan.events.is_empty() {
        futures_util::try_join!(write_orders(&txn, plan), write_candles(&txn, plan))?;
        written.seal(&txn).await?;
        txn.commit().await.map_err(pg_error)?;
        return Ok(Some(head));
    }
    if head.saturating_add(1) != plan.first_seq {
        return Err(StoreError::Invalid(format!(
            "batch from seq {} does not continue the log (its head is {head})",
            plan.first_seq
        )));
    }
    check_trade_ids(plan, last_trade)?;
    // Updates last: they must see the batch before (orders it placed,
    // candles it opened) and must not hold rows it waits for.
    futures_util::try_join!(write_orders(&txn, plan), write_candles(&txn, plan))?;
    written.seal(&txn).await?;
    txn.commit().await.map_err(pg_error)?;
    Ok(Some(plan.last_seq))
}

/// Trade ids only grow: the batch's first must be above the last stored.
fn check_trade_ids(plan: &Plan<'_>, last_trade: u64) -> Result<(), StoreError> {
    match plan.trades.first() {
        Some(first) if first.trade.id.0 <= last_trade => Err(StoreError::Invalid(format!(
            "trade id {} is not above the last stored ({last_trade})",
            first.trade.id.0
        ))),
        _ => Ok(()),
    }
}

/// The last seq in the log (0 when empty).
async fn log_head(txn: &Transaction<'_>) -> Result<u64, StoreError> {
    journal_tip(txn).await.map(|(head, _)| head)
}

/// The last seq in the log and the last trade id stored.
async fn journal_tip(txn: &Transaction<'_>) -> Result<(u64, u64), StoreError> {
    journal_tip_below(txn, u64::MAX).await
}

/// The last seq in the log below `seq` and the last trade id stored below it.
async fn journal_tip_below(txn: &Transaction<'_>, seq: u64) -> Result<(u64, u64), StoreError> {
    let statement = txn.prepare_cached(sql::LOG_HEAD).await.map_err(pg_error)?;
    let row = txn.query_one(&statement, &[&plan::seq_bound(seq)]).await.map_err(pg_error)?;
    let head = from_i64(row.try_get(0).map_err(pg_error)?, "log head")?;
    let last_trade = from_i64(row.try_get(1).map_err(pg_error)?, "trade id")?;
    Ok((head, last_trade))
}

/// The batch's events other than fills, one row each.
async fn copy_events(txn: &Transaction<'_>, plan: &Plan<'_>) -> Result<(), StoreError> {
    if plan.events.len() == plan.trades.len() {
        return Ok(());
    }
    let statement = txn.prepare_cached(sql::EVENTS_COPY).await.map_err(pg_error)?;
    let sink = txn.copy_in(&statement).await.map_err(pg_error)?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &EVENT_COLUMNS));
    for stamped in plan.events.iter().filter(|stamped| !matches!(stamped.event, Event::Traded(_))) {
        let seq = to_i64(stamped.seq, "seq")?;
        let player = stamped.event.player().map(|p| p.0);
        let row: [&(dyn ToSql + Sync); 5] = [&seq, &stamped.at_ms, &kind(&stamped.event), &player, &Json(stamped)];
        writer.as_mut().write(&row).await.map_err(pg_error)?;
    }
    writer.finish().await.map_err(pg_error)?;
    Ok(())
}

/// The batch's fills as one journal entry.
async fn journal_fills(txn: &Transaction<'_>, plan: &Plan<'_>) -> Result<(), StoreError> {
    let (Some(first), Some(last)) = (plan.trades.first(), plan.trades.last()) else { return Ok(()) };
    let records: Vec<TradeRecord> = plan.trades.iter().map(TradeRow::record).collect();
    let encoded = fills::encode(&records);
    let statement = txn.prepare_cached(sql::FILL_BATCH_INSERT).await.map_err(pg_error)?;
    let last_trade = to_i64(last.trade.id.0, "trade id")?;
    txn.execute(&statement, &[&first.seq, &last.seq, &last_trade, &encoded]).await.map_err(pg_error)?;
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

/// Journalled fills with `from <= seq <= to`, in log order (`limit`
/// journal entries at most).
async fn fills_between(txn: &Transaction<'_>, from: u64, to: u64) -> Result<Vec<TradeRecord>, StoreError> {
    fills_between_limited(txn, from, to, usize::MAX).await
}

async fn fills_between_limited(
    txn: &Transaction<'_>,
    from: u64,
    to: u64,
    entries: usize,
) -> Result<Vec<TradeRecord>, StoreError> {
    let statement = txn.prepare_cached(sql::FILL_BATCHES_BETWEEN).await.map_err(pg_error)?;
    let params: [&(dyn ToSql + Sync); 3] = [&plan::seq_bound(from), &plan::seq_bound(to), &plan::limit_i64(entries)];
    let rows = txn.query(&statement, &params).await.map_err(pg_error)?;
    let mut found = Vec::new();
    for row in &rows {
        found.extend(
            fills::decode(row.try_get(0).map_err(pg_error)?)?.into_iter().filter(|f| f.seq >= from && f.seq <= to),
        );
    }
    Ok(found)
}

/// The log from `first` to `last` (both included), events and fills merged
/// in order, `limit` at most.
async fn events_between(
    txn: &Transaction<'_>,
    first: u64,
    last: u64,
    limit: usize,
) -> Result<Vec<Stamped>, StoreError> {
    let statement = txn.prepare_cached(sql::EVENTS_RANGE).await.map_err(pg_error)?;
    let rows = txn.query(&statement, &[&plan::seq_bound(first), &plan::seq_bound(last)]).await.map_err(pg_error)?;
    let events = stamped_rows(&rows)?;
    let fills = fills_between_limited(txn, first, last, limit.saturating_add(1)).await?;
    Ok(merged(events, fills, limit))
}

/// A consistent read-only view of the store (one snapshot for every statement).
async fn read_snapshot(client: &mut Object) -> Result<Transaction<'_>, StoreError> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_error)
}

/// Rows whose first column is a stored event.
fn stamped_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<Stamped>, StoreError> {
    rows.iter().map(|row| row.try_get::<_, Json<Stamped>>(0).map(|json| json.0).map_err(pg_error)).collect()
}

/// Events and journalled fills as one log, in order, `limit` at most.
fn merged(mut events: Vec<Stamped>, fills: Vec<TradeRecord>, limit: usize) -> Vec<Stamped> {
    events.extend(fills.into_iter().map(|fill| Stamped {
        seq: fill.seq,
        at_ms: fill.at_ms,
        event: Event::Traded(fill.trade),
    }));
    events.sort_by_key(|stamped| stamped.seq);
    events.truncate(limit);
    events
}

/// Up to `limit` events after `after`, in order: the events table's page
/// bounds the range, the journal fills it in.
async fn events_after(client: &mut Object, after: u64, limit: usize) -> Result<Vec<Stamped>, StoreError> {
    let txn = read_snapshot(client).await?;
    let statement = txn.prepare_cached(sql::EVENTS_AFTER).await.map_err(pg_error)?;
    let rows = txn.query(&statement, &[&plan::seq_bound(after), &plan::limit_i64(limit)]).await.map_err(pg_error)?;
    let events = stamped_rows(&rows)?;
    // A full page of events ends the range: fills beyond it come with the next page.
    let last = if events.len() >= limit { events.last().map_or(u64::MAX, |e| e.seq) } else { u64::MAX };
    let fills = fills_between_limited(&txn, after.saturating_add(1), last, limit.saturating_add(1)).await?;
    txn.commit().await.map_err(pg_error)?;
    Ok(merged(events, fills, limit))
}

/// A player's stored fills before `before_seq`, newest first (at least
/// `limit` of them when there are; the caller trims).
async fn history(
    client: &mut Object,
    player: PlayerId,
    before_seq: u64,
    limit: usize,
) -> Result<Vec<TradeRecord>, StoreError> {
    let statement = client.prepare_cached(sql::HISTORY_OF).await.map_err(pg_error)?;
    let params: [&(dyn ToSql + Sync); 3] =
        [&player.0, &plan::seq_bound(before_seq), &plan::limit_i64(limit.saturating_add(1))];
    let rows = client.query(&statement, &params).await.map_err(pg_error)?;
    let mut found = Vec::new();
    for row in &rows {
        found.extend(fills::decode(row.try_get::<_, &str>(0).map_err(pg_error)?.as_bytes())?);
    }
    Ok(found)
}

async fn load_account(
    client: &mut Object,
    player: PlayerId,
    unchunked: Vec<TradeRecord>,
) -> Result<Option<Account>, StoreError> {
    // One snapshot: the checkpoint, the events after it and the resting orders agree.
    let txn = read_snapshot(client).await?;
    let mut fills = FxHashMap::default();
    if !unchunked.is_empty() {
        fills.insert(player, unchunked);
    }
    let rebuilt = ledgers::rebuild(&txn, &[player.0], &fills).await?;
    txn.commit().await.map_err(pg_error)?;
    Ok(rebuilt.into_iter().next().map(|found| found.account))
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
