//! The PostgreSQL store's audit: conservation checked in one read-only
//! snapshot, player by player, in bounded memory. Three ordered scans — the
//! stored ledgers, the cash events and the history chunks, each by player —
//! are read in pages and merged, so the audit holds one page of each and
//! one player's replay, never the log. Each player is reconciled at the seq
//! its stored ledger stands at (or the checkpoint watermark, if later): a
//! checkpoint writes a player's ledger and history chunk in one transaction,
//! so the audit needs no checkpoint to stand still and writes nothing; it
//! can run beside a live engine, from any process.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actors::domain::event::Stamped;
use actors::ports::reconcile::{Balances, PlayerReplay, Tally};
use actors::ports::{Audit, StoreError};
use deadpool_postgres::{Object, Transaction};
use rust_decimal::Decimal;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{Portal, Row};

use super::ledgers::parse_signed_positions;
use super::{log_head, pg_error, sql};
use crate::store::fills;
use crate::store::plan::from_i64;

/// Rows fetched per page of the ledger and cash-event scans.
const PAGE_ROWS: i32 = 1_024;
/// Rows fetched per page of the history scan: a chunk holds one player's
/// fills of one checkpoint, so a page stays within a few megabytes.
const CHUNK_PAGE_ROWS: i32 = 64;
/// Work between two pauses.
const WORK_SLICE_MS: u64 = 20;
/// Each pause lasts this many times the work before it: the audit takes at
/// most a quarter of a core and of the database's time from the game.
const PAUSE_PER_WORK: u32 = 3;

/// Checks conservation over everything checkpointed.
pub async fn audit(client: &mut Object, tickers: &[String]) -> Result<Audit, StoreError> {
    let txn = super::read_snapshot(client).await?;
    let watermark: i64 = {
        let statement = txn.prepare_cached(sql::WATERMARK_LOAD).await.map_err(pg_error)?;
        txn.query_one(&statement, &[]).await.map_err(pg_error)?.try_get(0).map_err(pg_error)?
    };
    let watermark = from_i64(watermark, "watermark")?;
    let head = log_head(&txn).await?;
    let mut ledgers = Scan::open(&txn, sql::LEDGERS_ALL, PAGE_ROWS).await?;
    let mut events = Scan::open(&txn, sql::AUDIT_EVENTS, PAGE_ROWS).await?;
    let mut chunks = Scan::open(&txn, sql::HISTORY_ALL, CHUNK_PAGE_ROWS).await?;
    let mut tally = Tally::default();
    let mut pacer = Pacer::new();
    loop {
        let next = [ledgers.player().await?, events.player().await?, chunks.player().await?];
        let Some(player) = next.into_iter().flatten().min() else { break };
        let stored = match ledgers.take_if(player) {
            Some(row) => Some(stored_ledger(&row)?),
            None => None,
        };
        let cutoff = stored.as_ref().map_or(watermark, |(_, seq)| (*seq).max(watermark));
        let mut replay = PlayerReplay::new(cutoff);
        while events.player().await? == Some(player) {
            if let Some(row) = events.take_if(player) {
                let stamped = row.try_get::<_, Json<Stamped>>(1).map_err(pg_error)?.0;
                replay.event(stamped.seq, stamped.event);
            }
        }
        while chunks.player().await? == Some(player) {
            if let Some(row) = chunks.take_if(player) {
                for fill in fills::decode(row.try_get::<_, &str>(1).map_err(pg_error)?.as_bytes())? {
                    if fill.trade.player.0 == player {
                        replay.fill(fill.seq, &fill.trade);
                    }
                }
            }
        }
        tally.settle(&replay.finish(), stored.as_ref().map(|(balances, _)| balances));
        pacer.tick().await;
    }
    drop((ledgers, events, chunks));
    txn.commit().await.map_err(pg_error)?;
    Ok(tally.into_audit(tickers, head))
}

/// A stored ledger row: its balances and the seq it stands at.
fn stored_ledger(row: &Row) -> Result<(Balances, u64), StoreError> {
    let cash: Decimal = row.try_get(1).map_err(pg_error)?;
    let mut balances = Balances { cash, ..Balances::default() };
    for (asset, qty, _) in parse_signed_positions(row.try_get(2).map_err(pg_error)?)? {
        balances.hold(usize::from(asset), i128::from(qty));
    }
    let seq = from_i64(row.try_get(3).map_err(pg_error)?, "ledger seq")?;
    Ok((balances, seq))
}

/// An ordered scan read a page at a time through a portal; rows start
/// with the player.
struct Scan<'t> {
    txn: &'t Transaction<'t>,
    portal: Portal,
    page: VecDeque<Row>,
    page_rows: i32,
    exhausted: bool,
}

impl<'t> Scan<'t> {
    async fn open(txn: &'t Transaction<'t>, query: &str, page_rows: i32) -> Result<Self, StoreError> {
        let statement = txn.prepare_cached(query).await.map_err(pg_error)?;
        let params: [&(dyn ToSql + Sync); 0] = [];
        let portal = txn.bind(&statement, &params).await.map_err(pg_error)?;
        Ok(Self { txn, portal, page: VecDeque::new(), page_rows, exhausted: false })
    }

    /// The player of the next row (`None`: the scan is over).
    async fn player(&mut self) -> Result<Option<i64>, StoreError> {
        if self.page.is_empty() && !self.exhausted {
            let rows = self.txn.query_portal(&self.portal, self.page_rows).await.map_err(pg_error)?;
            self.exhausted = rows.len() < usize::try_from(self.page_rows).unwrap_or(usize::MAX);
            self.page.extend(rows);
        }
        self.page.front().map(|row| row.try_get(0).map_err(pg_error)).transpose()
    }

    /// The next row, if it is `player`'s (after [`Self::player`]).
    fn take_if(&mut self, player: i64) -> Option<Row> {
        let next = self.page.front()?.try_get::<_, i64>(0).ok()?;
        if next == player { self.page.pop_front() } else { None }
    }
}

/// Keeps the audit to a quarter of the time: after each slice of work, a
/// pause [`PAUSE_PER_WORK`] times as long.
struct Pacer {
    slice_started: Instant,
}

impl Pacer {
    fn new() -> Self {
        Self { slice_started: Instant::now() }
    }

    async fn tick(&mut self) {
        let worked = self.slice_started.elapsed();
        if worked >= Duration::from_millis(WORK_SLICE_MS) {
            tokio::time::sleep(worked * PAUSE_PER_WORK).await;
            self.slice_started = Instant::now();
        }
    }
}
