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

use std::sync::Arc;
use std::time::Duration;

use actors::domain::account::{Account, Position};
use actors::domain::event::{Stamped, Trade};
use actors::domain::ids::{AssetId, OrderId, PlayerId, TradeId};
use actors::ports::{Audit, BoxFuture, Candle, EventBatch, MarketSnapshot, Store, StoreError, TradeRecord};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Transaction};
use rust_decimal::Decimal;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::{IsolationLevel, NoTls};

use super::migrate::migrate_client;
use super::plan::{self, Placement, Plan, from_i64, kind, side_name, to_i64};

/// The statements, one file each in `sql/queries/`.
mod sql {
    pub const LOG_HEAD: &str = include_str!("../../sql/queries/log_head.sql");
    pub const EVENTS_COPY: &str = include_str!("../../sql/queries/events_copy.sql");
    pub const TRADES_COPY: &str = include_str!("../../sql/queries/trades_copy.sql");
    pub const EVENTS_RANGE: &str = include_str!("../../sql/queries/events_range.sql");
    pub const EVENTS_AFTER: &str = include_str!("../../sql/queries/events_after.sql");
    pub const ORDERS_DELETE: &str = include_str!("../../sql/queries/orders_delete.sql");
    pub const ORDERS_INSERT: &str = include_str!("../../sql/queries/orders_insert.sql");
    pub const PLAYERS_UPSERT: &str = include_str!("../../sql/queries/players_upsert.sql");
    pub const HOLDINGS_DELETE_STALE: &str = include_str!("../../sql/queries/holdings_delete_stale.sql");
    pub const HOLDINGS_UPSERT: &str = include_str!("../../sql/queries/holdings_upsert.sql");
    pub const CANDLES_ADD_VOLUME: &str = include_str!("../../sql/queries/candles_add_volume.sql");
    pub const CANDLES_UPSERT: &str = include_str!("../../sql/queries/candles_upsert.sql");
    pub const ACCOUNT_LOAD: &str = include_str!("../../sql/queries/account_load.sql");
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
/// Longest an audit (a scan of the whole log) may take.
pub const AUDIT_TIMEOUT_MS: u64 = 600_000;
/// Idle time after which TCP keepalives probe a silent server.
const KEEPALIVE_IDLE_MS: u64 = 10_000;

/// The store on PostgreSQL. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
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
        Ok(Self { pool })
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
        let pool = self.pool.clone();
        Box::pin(async move {
            let work = async move {
                let mut lease = Lease::get(&pool).await?;
                let result = op(lease.client()?).await;
                lease.settle(result)
            };
            match tokio::time::timeout(Duration::from_millis(timeout_ms), work).await {
                Ok(result) => result,
                Err(_) => Err(StoreError::Unavailable(format!("PostgreSQL gave no answer within {timeout_ms} ms"))),
            }
        })
    }
}

/// A future borrowing its connection.
type ConnFuture<'c, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'c>>;

impl Store for PostgresStore {
    fn append(&self, batch: Arc<EventBatch>) -> BoxFuture<Result<(), StoreError>> {
        self.run(move |client| Box::pin(async move { append(client, &batch).await }))
    }

    fn load_account(&self, player: PlayerId) -> BoxFuture<Result<Option<Account>, StoreError>> {
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
        self.run_within(AUDIT_TIMEOUT_MS, move |client| Box::pin(async move { audit(client, &tickers).await }))
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

async fn append(client: &mut Object, batch: &EventBatch) -> Result<(), StoreError> {
    let plan = Plan::new(batch)?;
    let txn = client.transaction().await.map_err(pg_error)?;
    if !plan.events.is_empty() {
        let statement = txn.prepare_cached(sql::LOG_HEAD).await.map_err(pg_error)?;
        let head: i64 = txn.query_one(&statement, &[]).await.map_err(pg_error)?.try_get(0).map_err(pg_error)?;
        let head = from_i64(head, "log head")?;
        if plan::placement(&plan, head)? == Placement::Stored {
            let stored = stored_events(&txn, plan.first_seq, plan.last_seq).await?;
            return plan::judge_retry(&plan, head, &stored);
        }
    }
    futures_util::try_join!(
        copy_events(&txn, &plan),
        copy_trades(&txn, &plan),
        write_orders(&txn, &plan),
        write_ledgers(&txn, &plan),
        write_candles(&txn, &plan),
    )?;
    txn.commit().await.map_err(pg_error)
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
    holding_players: Vec<i64>,
    holding_assets: Vec<i32>,
    holding_qty: Vec<i64>,
    holding_reserved: Vec<i64>,
    holding_cost: Vec<Decimal>,
}

impl LedgerColumns {
    fn new(accounts: &[(PlayerId, &Account)]) -> Result<Self, StoreError> {
        let mut columns = Self::default();
        for (player, account) in accounts {
            columns.players.push(player.0);
            columns.cash.push(account.cash);
            columns.reserved_cash.push(account.reserved_cash);
            columns.realized_pnl.push(account.realized_pnl);
            columns.trades.push(to_i64(account.trades, "trade count")?);
            columns.open_orders.push(plan::to_i32(account.open_orders, "open orders")?);
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

async fn write_ledgers(txn: &Transaction<'_>, plan: &Plan<'_>) -> Result<(), StoreError> {
    if plan.accounts.is_empty() {
        return Ok(());
    }
    let c = LedgerColumns::new(&plan.accounts)?;
    let (delete, players, holdings) = futures_util::try_join!(
        txn.prepare_cached(sql::HOLDINGS_DELETE_STALE),
        txn.prepare_cached(sql::PLAYERS_UPSERT),
        txn.prepare_cached(sql::HOLDINGS_UPSERT),
    )
    .map_err(pg_error)?;
    // Disjoint rows: the stale positions go, the held ones are written.
    let stale: [&(dyn ToSql + Sync); 3] = [&c.players, &c.holding_players, &c.holding_assets];
    let ledgers: [&(dyn ToSql + Sync); 6] =
        [&c.players, &c.cash, &c.reserved_cash, &c.realized_pnl, &c.trades, &c.open_orders];
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
    let statement = client.prepare_cached(sql::ACCOUNT_LOAD).await.map_err(pg_error)?;
    let rows = client.query(&statement, &[&player.0]).await.map_err(pg_error)?;
    let Some(first) = rows.first() else { return Ok(None) };
    let mut account = Account {
        cash: first.try_get(0).map_err(pg_error)?,
        reserved_cash: first.try_get(1).map_err(pg_error)?,
        positions: Vec::new(),
        realized_pnl: first.try_get(2).map_err(pg_error)?,
        trades: from_i64(first.try_get(3).map_err(pg_error)?, "trade count")?,
        open_orders: u32::try_from(first.try_get::<_, i32>(4).map_err(pg_error)?)
            .map_err(|_| StoreError::Invalid("stored open order count is negative".into()))?,
    };
    for row in &rows {
        let Some(asset) = row.try_get::<_, Option<i32>>(5).map_err(pg_error)? else { continue };
        account.positions.push(Position {
            asset: AssetId(u16::try_from(asset).map_err(|_| StoreError::Invalid(format!("stored asset id {asset}")))?),
            qty: from_i64(row.try_get(6).map_err(pg_error)?, "position qty")?,
            reserved_qty: from_i64(row.try_get(7).map_err(pg_error)?, "reserved qty")?,
            cost_basis: row.try_get(8).map_err(pg_error)?,
        });
    }
    Ok(Some(account))
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

async fn audit(client: &mut Object, tickers: &[String]) -> Result<Audit, StoreError> {
    // One snapshot for both statements, so a concurrent append cannot split them.
    let txn = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_error)?;
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
