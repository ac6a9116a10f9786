//! `EmbeddedStore`: the [`Store`] port on SQLite (rusqlite, bundled) for the
//! single binary — one file `stockbot.sqlite3` in the data directory, WAL
//! journal, `synchronous=FULL` (a committed batch survives a kill -9 or a
//! power cut). SQLite calls block, so each connection lives on a thread of
//! its own: one writer (every `append` is one `IMMEDIATE` transaction) and
//! one reader (WAL lets it read committed data while the writer writes).
//! Callers get `Send + 'static` futures that wait on those threads. Money is
//! stored as exact decimal text; the schema mirrors the PostgreSQL one, and
//! so do the checks (contiguous seqs, retried batches accepted once).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use actors::domain::account::{Account, Position};
use actors::domain::event::{Stamped, Trade};
use actors::domain::ids::{AssetId, OrderId, PlayerId, TradeId};
use actors::ports::{Audit, BoxFuture, Candle, EventBatch, MarketSnapshot, Store, StoreError, TradeRecord};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use rust_decimal::Decimal;
use tokio::sync::oneshot;

use super::migrate::migrate_sqlite;

mod audit;
use super::plan::{self, Placement, Plan, StoredProfile, from_i64, kind, side_name, to_i64};

/// The statements, one file each in `sql/embedded/queries/`.
mod sql {
    pub const LOG_HEAD: &str = include_str!("../../sql/embedded/queries/log_head.sql");
    pub const EVENT_INSERT: &str = include_str!("../../sql/embedded/queries/event_insert.sql");
    pub const TRADE_INSERT: &str = include_str!("../../sql/embedded/queries/trade_insert.sql");
    pub const EVENTS_RANGE: &str = include_str!("../../sql/embedded/queries/events_range.sql");
    pub const EVENTS_AFTER: &str = include_str!("../../sql/embedded/queries/events_after.sql");
    pub const ORDER_DELETE: &str = include_str!("../../sql/embedded/queries/order_delete.sql");
    pub const ORDER_INSERT: &str = include_str!("../../sql/embedded/queries/order_insert.sql");
    pub const PLAYER_UPSERT: &str = include_str!("../../sql/embedded/queries/player_upsert.sql");
    pub const HOLDINGS_CLEAR: &str = include_str!("../../sql/embedded/queries/holdings_clear.sql");
    pub const HOLDING_INSERT: &str = include_str!("../../sql/embedded/queries/holding_insert.sql");
    pub const CANDLE_ADD_VOLUME: &str = include_str!("../../sql/embedded/queries/candle_add_volume.sql");
    pub const CANDLE_UPSERT: &str = include_str!("../../sql/embedded/queries/candle_upsert.sql");
    pub const CANDLE_SEED: &str = include_str!("../../sql/embedded/queries/candle_seed.sql");
    pub const ACCOUNT_LOAD: &str = include_str!("../../sql/embedded/queries/account_load.sql");
    pub const MARKET_LOAD: &str = include_str!("../../sql/embedded/queries/market_load.sql");
    pub const MARKET_SAVE: &str = include_str!("../../sql/embedded/queries/market_save.sql");
    pub const TRADES_OF: &str = include_str!("../../sql/embedded/queries/trades_of.sql");
    pub const CANDLES_SINCE: &str = include_str!("../../sql/embedded/queries/candles_since.sql");
    pub const AUDIT_CREATED: &str = include_str!("../../sql/embedded/queries/audit_created.sql");
    pub const AUDIT_TRADES: &str = include_str!("../../sql/embedded/queries/audit_trades.sql");
    pub const AUDIT_PLAYERS: &str = include_str!("../../sql/embedded/queries/audit_players.sql");
    pub const AUDIT_HOLDINGS: &str = include_str!("../../sql/embedded/queries/audit_holdings.sql");
    pub const EVENTS_COUNT: &str = include_str!("../../sql/embedded/queries/events_count.sql");
}

/// The database file inside the data directory.
pub const FILE_NAME: &str = "stockbot.sqlite3";
/// How long a connection waits for another one's lock before giving up.
pub const BUSY_TIMEOUT_MS: u64 = 5_000;
/// Prepared statements kept per connection.
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// The store in one SQLite file. Clones share the same two connections;
/// their threads end when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedStore {
    writer: Worker,
    reader: Worker,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.path).finish()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in directory `dir` and applies
    /// its migrations. All file work happens on the store's own threads.
    ///
    /// # Errors
    /// `Unavailable` when the directory or file cannot be created or opened;
    /// `Invalid` for a file that is not a stockbot store or a failing migration.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join(FILE_NAME);
        let writer = Worker::start("stockbot-sqlite-writer", path.clone(), move |conn| {
            migrate_sqlite(conn)?;
            Ok(())
        })
        .await?;
        let reader = Worker::start("stockbot-sqlite-reader", path.clone(), |conn| {
            conn.pragma_update(None, "query_only", true).map_err(sqlite_error)
        })
        .await?;
        Ok(Self { writer, reader, path: Arc::new(path) })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store for EmbeddedStore {
    fn seed_candles(&self, candles: Arc<Vec<(AssetId, Candle)>>) -> BoxFuture<Result<(), StoreError>> {
        self.writer.call(move |conn| {
            let txn = conn.transaction().map_err(sqlite_error)?;
            {
                let mut statement = txn.prepare_cached(sql::CANDLE_SEED).map_err(sqlite_error)?;
                for (asset, c) in candles.iter() {
                    statement
                        .execute(params![
                            asset.0,
                            c.start_ms,
                            c.open,
                            c.high,
                            c.low,
                            c.close,
                            to_i64(c.volume, "volume")?
                        ])
                        .map_err(sqlite_error)?;
                }
            }
            txn.commit().map_err(sqlite_error)
        })
    }

    fn append(&self, batch: Arc<EventBatch>) -> BoxFuture<Result<(), StoreError>> {
        self.writer.call(move |conn| append(conn, &batch))
    }

    fn load_account(&self, player: PlayerId) -> BoxFuture<Result<Option<Account>, StoreError>> {
        self.reader.call(move |conn| load_account(conn, player))
    }

    fn load_market(&self) -> BoxFuture<Result<Option<MarketSnapshot>, StoreError>> {
        self.reader.call(|conn| {
            let payload: Option<String> = conn
                .prepare_cached(sql::MARKET_LOAD)
                .and_then(|mut statement| statement.query_row([], |row| row.get(0)).optional())
                .map_err(sqlite_error)?;
            payload.map(|text| serde_json::from_str(&text).map_err(json_error)).transpose()
        })
    }

    fn save_market(&self, snapshot: Arc<MarketSnapshot>) -> BoxFuture<Result<(), StoreError>> {
        self.writer.call(move |conn| {
            let seq = to_i64(snapshot.exchange.next_seq.saturating_sub(1), "snapshot seq")?;
            let payload = serde_json::to_string(&*snapshot).map_err(json_error)?;
            let mut statement = conn.prepare_cached(sql::MARKET_SAVE).map_err(sqlite_error)?;
            statement.execute(params![seq, payload]).map_err(sqlite_error)?;
            Ok(())
        })
    }

    fn events_after(&self, after: u64, limit: usize) -> BoxFuture<Result<Vec<Stamped>, StoreError>> {
        self.reader.call(move |conn| {
            let mut statement = conn.prepare_cached(sql::EVENTS_AFTER).map_err(sqlite_error)?;
            let rows = statement
                .query_map(params![plan::seq_bound(after), plan::limit_i64(limit)], |row| row.get::<_, String>(0))
                .map_err(sqlite_error)?;
            rows.map(|payload| serde_json::from_str(&payload.map_err(sqlite_error)?).map_err(json_error)).collect()
        })
    }

    fn ping(&self) -> BoxFuture<Result<(), StoreError>> {
        self.reader.call(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(sqlite_error))
    }

    fn audit(&self, tickers: Arc<Vec<String>>) -> BoxFuture<Result<Audit, StoreError>> {
        self.reader.call(move |conn| audit::audit(conn, &tickers))
    }

    fn trades_of(
        &self,
        player: PlayerId,
        before_seq: u64,
        limit: usize,
    ) -> BoxFuture<Result<Vec<TradeRecord>, StoreError>> {
        self.reader.call(move |conn| {
            let mut statement = conn.prepare_cached(sql::TRADES_OF).map_err(sqlite_error)?;
            let mut rows = statement
                .query(params![player.0, plan::seq_bound(before_seq), plan::limit_i64(limit)])
                .map_err(sqlite_error)?;
            let mut found = Vec::new();
            while let Some(row) = rows.next().map_err(sqlite_error)? {
                found.push(trade_record(player, row)?);
            }
            Ok(found)
        })
    }

    fn candles(&self, asset: AssetId, since_ms: i64, limit: usize) -> BoxFuture<Result<Vec<Candle>, StoreError>> {
        self.reader.call(move |conn| {
            let mut statement = conn.prepare_cached(sql::CANDLES_SINCE).map_err(sqlite_error)?;
            let mut rows = statement.query(params![asset.0, since_ms, plan::limit_i64(limit)]).map_err(sqlite_error)?;
            let mut found = Vec::new();
            while let Some(row) = rows.next().map_err(sqlite_error)? {
                found.push(Candle {
                    start_ms: row.get(0).map_err(sqlite_error)?,
                    open: row.get(1).map_err(sqlite_error)?,
                    high: row.get(2).map_err(sqlite_error)?,
                    low: row.get(3).map_err(sqlite_error)?,
                    close: row.get(4).map_err(sqlite_error)?,
                    volume: from_i64(row.get(5).map_err(sqlite_error)?, "candle volume")?,
                });
            }
            Ok(found)
        })
    }
}

// ---- append ---------------------------------------------------------------

fn append(conn: &mut Connection, batch: &EventBatch) -> Result<(), StoreError> {
    let plan = Plan::new(batch)?;
    let txn = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sqlite_error)?;
    if !plan.events.is_empty() {
        let head: i64 = txn.query_row(sql::LOG_HEAD, [], |row| row.get(0)).map_err(sqlite_error)?;
        let head = from_i64(head, "log head")?;
        if plan::placement(&plan, head)? == Placement::Stored {
            let stored = stored_events(&txn, plan.first_seq, plan.last_seq)?;
            return plan::judge_retry(&plan, head, &stored);
        }
    }
    write_events(&txn, &plan)?;
    write_trades(&txn, &plan)?;
    write_orders(&txn, &plan)?;
    write_ledgers(&txn, &plan)?;
    write_candles(&txn, &plan)?;
    txn.commit().map_err(sqlite_error)
}

fn stored_events(conn: &Connection, first: u64, last: u64) -> Result<Vec<Stamped>, StoreError> {
    let mut statement = conn.prepare_cached(sql::EVENTS_RANGE).map_err(sqlite_error)?;
    let rows = statement
        .query_map(params![to_i64(first, "seq")?, to_i64(last, "seq")?], |row| row.get::<_, String>(0))
        .map_err(sqlite_error)?;
    rows.map(|payload| serde_json::from_str(&payload.map_err(sqlite_error)?).map_err(json_error)).collect()
}

fn write_events(conn: &Connection, plan: &Plan<'_>) -> Result<(), StoreError> {
    let mut statement = conn.prepare_cached(sql::EVENT_INSERT).map_err(sqlite_error)?;
    let mut payload = Vec::with_capacity(256);
    for stamped in plan.events {
        payload.clear();
        serde_json::to_writer(&mut payload, stamped).map_err(json_error)?;
        let text = std::str::from_utf8(&payload).map_err(|e| StoreError::Invalid(format!("event JSON: {e}")))?;
        let player = stamped.event.player().map(|p| p.0);
        statement
            .execute(params![to_i64(stamped.seq, "seq")?, stamped.at_ms, kind(&stamped.event), player, text])
            .map_err(sqlite_error)?;
    }
    Ok(())
}

fn write_trades(conn: &Connection, plan: &Plan<'_>) -> Result<(), StoreError> {
    if plan.trades.is_empty() {
        return Ok(());
    }
    let mut statement = conn.prepare_cached(sql::TRADE_INSERT).map_err(sqlite_error)?;
    for row in &plan.trades {
        let trade = row.trade;
        let order = trade.order.map(|o| to_i64(o.0, "order id")).transpose()?;
        statement
            .execute(params![
                to_i64(trade.id.0, "trade id")?,
                row.seq,
                row.at_ms,
                trade.player.0,
                trade.asset.0,
                side_name(trade.side),
                to_i64(trade.qty, "trade qty")?,
                trade.price.to_string(),
                trade.fee.to_string(),
                order,
            ])
            .map_err(sqlite_error)?;
    }
    Ok(())
}

fn write_orders(conn: &Connection, plan: &Plan<'_>) -> Result<(), StoreError> {
    if !plan.orders_removed.is_empty() {
        let mut statement = conn.prepare_cached(sql::ORDER_DELETE).map_err(sqlite_error)?;
        for order in &plan.orders_removed {
            statement.execute(params![order]).map_err(sqlite_error)?;
        }
    }
    if plan.orders_placed.is_empty() {
        return Ok(());
    }
    let mut statement = conn.prepare_cached(sql::ORDER_INSERT).map_err(sqlite_error)?;
    for row in &plan.orders_placed {
        let order = row.order;
        let (trigger_kind, trigger_price) = plan::trigger_parts(order.trigger);
        statement
            .execute(params![
                to_i64(order.id.0, "order id")?,
                order.player.0,
                order.asset.0,
                side_name(order.side),
                to_i64(order.qty, "order qty")?,
                trigger_kind,
                trigger_price.to_string(),
                order.reserved_cash.to_string(),
                order.placed_at_ms,
                row.seq,
            ])
            .map_err(sqlite_error)?;
    }
    Ok(())
}

fn write_ledgers(conn: &Connection, plan: &Plan<'_>) -> Result<(), StoreError> {
    if plan.accounts.is_empty() {
        return Ok(());
    }
    let mut upsert = conn.prepare_cached(sql::PLAYER_UPSERT).map_err(sqlite_error)?;
    let mut clear = conn.prepare_cached(sql::HOLDINGS_CLEAR).map_err(sqlite_error)?;
    let mut insert = conn.prepare_cached(sql::HOLDING_INSERT).map_err(sqlite_error)?;
    for (player, account) in &plan.accounts {
        let profile = serde_json::to_string(&StoredProfile::of(account)).map_err(json_error)?;
        upsert
            .execute(params![
                player.0,
                account.cash.to_string(),
                account.reserved_cash.to_string(),
                account.realized_pnl.to_string(),
                to_i64(account.trades, "trade count")?,
                account.open_orders,
                profile,
            ])
            .map_err(sqlite_error)?;
        clear.execute(params![player.0]).map_err(sqlite_error)?;
        for position in &account.positions {
            insert
                .execute(params![
                    player.0,
                    position.asset.0,
                    to_i64(position.qty, "position qty")?,
                    to_i64(position.reserved_qty, "reserved qty")?,
                    position.cost_basis.to_string(),
                ])
                .map_err(sqlite_error)?;
        }
    }
    Ok(())
}

fn write_candles(conn: &Connection, plan: &Plan<'_>) -> Result<(), StoreError> {
    // The early volumes go first: they must not land on candles this batch opens.
    if !plan.candle_volumes.is_empty() {
        let mut statement = conn.prepare_cached(sql::CANDLE_ADD_VOLUME).map_err(sqlite_error)?;
        for volume in &plan.candle_volumes {
            statement
                .execute(params![volume.asset.0, volume.start_ms, to_i64(volume.volume, "volume")?])
                .map_err(sqlite_error)?;
        }
    }
    if plan.candles.is_empty() {
        return Ok(());
    }
    let mut statement = conn.prepare_cached(sql::CANDLE_UPSERT).map_err(sqlite_error)?;
    for c in &plan.candles {
        statement
            .execute(params![c.asset.0, c.start_ms, c.open, c.high, c.low, c.close, to_i64(c.volume, "volume")?])
            .map_err(sqlite_error)?;
    }
    Ok(())
}

// ---- reads ----------------------------------------------------------------

fn load_account(conn: &mut Connection, player: PlayerId) -> Result<Option<Account>, StoreError> {
    let mut statement = conn.prepare_cached(sql::ACCOUNT_LOAD).map_err(sqlite_error)?;
    let mut rows = statement.query(params![player.0]).map_err(sqlite_error)?;
    let mut account: Option<Account> = None;
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        let ledger = match account.as_mut() {
            Some(ledger) => ledger,
            None => account.insert(stored_account(row)?),
        };
        let Some(asset) = row.get::<_, Option<i64>>(5).map_err(sqlite_error)? else { continue };
        ledger.positions.push(Position {
            asset: asset_id(asset)?,
            qty: from_i64(row.get(6).map_err(sqlite_error)?, "position qty")?,
            reserved_qty: from_i64(row.get(7).map_err(sqlite_error)?, "reserved qty")?,
            cost_basis: decimal(row, 8)?,
        });
    }
    Ok(account)
}

/// The ledger columns and profile of an `account_load.sql` row (no positions).
fn stored_account(row: &Row<'_>) -> Result<Account, StoreError> {
    let mut account = Account {
        cash: decimal(row, 0)?,
        reserved_cash: decimal(row, 1)?,
        positions: Vec::new(),
        realized_pnl: decimal(row, 2)?,
        trades: from_i64(row.get(3).map_err(sqlite_error)?, "trade count")?,
        open_orders: u32::try_from(row.get::<_, i64>(4).map_err(sqlite_error)?)
            .map_err(|_| StoreError::Invalid("stored open order count out of range".into()))?,
        ..Account::default()
    };
    let profile: String = row.get(9).map_err(sqlite_error)?;
    serde_json::from_str::<StoredProfile>(&profile).map_err(json_error)?.restore(&mut account);
    Ok(account)
}

fn trade_record(player: PlayerId, row: &Row<'_>) -> Result<TradeRecord, StoreError> {
    let order: Option<i64> = row.get(3).map_err(sqlite_error)?;
    let side: String = row.get(5).map_err(sqlite_error)?;
    Ok(TradeRecord {
        seq: from_i64(row.get(0).map_err(sqlite_error)?, "seq")?,
        at_ms: row.get(1).map_err(sqlite_error)?,
        trade: Trade {
            id: TradeId(from_i64(row.get(2).map_err(sqlite_error)?, "trade id")?),
            order: order.map(|o| from_i64(o, "order id").map(OrderId)).transpose()?,
            player,
            asset: asset_id(row.get(4).map_err(sqlite_error)?)?,
            side: plan::parse_side(&side)?,
            qty: from_i64(row.get(6).map_err(sqlite_error)?, "trade qty")?,
            price: decimal(row, 7)?,
            fee: decimal(row, 8)?,
        },
    })
}

fn decimal(row: &Row<'_>, column: usize) -> Result<Decimal, StoreError> {
    let text: String = row.get(column).map_err(sqlite_error)?;
    Decimal::from_str(&text).map_err(|e| StoreError::Invalid(format!("stored amount {text:?}: {e}")))
}

fn asset_id(asset: i64) -> Result<AssetId, StoreError> {
    u16::try_from(asset).map(AssetId).map_err(|_| StoreError::Invalid(format!("stored asset id {asset}")))
}

// ---- threads and errors ---------------------------------------------------

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A thread owning one connection, running the calls sent to it in order.
#[derive(Clone)]
struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    /// Starts a thread that opens the database at `path`, runs `setup` on
    /// the connection, and then serves calls until every sender is dropped.
    async fn start(
        name: &str,
        path: PathBuf,
        setup: impl FnOnce(&mut Connection) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, started) = oneshot::channel();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut conn = match open_connection(&path).and_then(|mut conn| setup(&mut conn).map(|()| conn)) {
                    Ok(conn) => conn,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                while let Ok(job) = queue.recv() {
                    // A panicking call loses its answer (the caller sees
                    // `Unavailable`), not the thread.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn)));
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store thread: {e}")))?;
        started.await.map_err(|_| StoreError::Unavailable("the store thread stopped while opening".into()))??;
        Ok(Self { jobs })
    }

    /// Runs `f` on this worker's connection.
    fn call<T, F>(&self, f: F) -> BoxFuture<Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = answer.send(f(conn));
        });
        let sent = self.jobs.send(job);
        Box::pin(async move {
            sent.map_err(|_| StoreError::Unavailable("the embedded store is closed".into()))?;
            answered.await.map_err(|_| StoreError::Unavailable("the embedded store call was lost".into()))?
        })
    }
}

/// Opens the file (creating its directory) with the durability settings.
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
    }
    let conn = Connection::open(path).map_err(sqlite_error)?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS)).map_err(sqlite_error)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(sqlite_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!("{} cannot use a write-ahead log (mode {mode})", path.display())));
    }
    conn.pragma_update(None, "synchronous", "FULL").map_err(sqlite_error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(conn)
}

/// Sorts a SQLite error into "worth retrying" (busy, I/O, full disk) and "not".
pub(crate) fn sqlite_error(error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    let retry = match &error {
        rusqlite::Error::SqliteFailure(failure, _) => matches!(
            failure.code,
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed
                | ErrorCode::OperationInterrupted
                | ErrorCode::PermissionDenied
                | ErrorCode::ReadOnly
        ),
        _ => false,
    };
    let text = format!("SQLite: {error}");
    if retry { StoreError::Unavailable(text) } else { StoreError::Invalid(text) }
}

fn json_error(error: serde_json::Error) -> StoreError {
    StoreError::Invalid(format!("stored JSON: {error}"))
}
