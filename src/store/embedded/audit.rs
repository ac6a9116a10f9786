//! The embedded store's audit: conservation checked over one read
//! transaction, player by player, in bounded memory. Four ordered scans —
//! ledgers, positions, cash events and fills, each by player (primary keys
//! and the `*_by_player` indexes) — are stepped together, so the audit holds
//! one player's replay, never the log. Ledgers are written with their
//! events, so every player is reconciled against the whole log.

use std::iter::Peekable;

use actors::domain::event::Stamped;
use actors::domain::ids::PlayerId;
use actors::ports::reconcile::{Balances, PlayerReplay, Tally};
use actors::ports::{Audit, StoreError};
use rusqlite::{Connection, Row};

use super::{decimal, from_i64, json_error, sql, sqlite_error, trade_record};

/// A stored ledger, a stored position, a cash event or a fill, keyed by its player.
enum Item {
    Ledger(Balances),
    Position { asset: usize, qty: i64, reserved: i64 },
    Event(Stamped),
    Fill(actors::ports::TradeRecord),
}

/// One scan's rows, keyed by player.
type Rows<'s> = Box<dyn Iterator<Item = Result<(i64, Item), StoreError>> + 's>;

/// Checks conservation over the whole store.
pub fn audit(conn: &mut Connection, tickers: &[String]) -> Result<Audit, StoreError> {
    let txn = conn.transaction().map_err(sqlite_error)?;
    let events: i64 = txn.query_row(sql::EVENTS_COUNT, [], |row| row.get(0)).map_err(sqlite_error)?;
    let tally = {
        let mut ledgers = txn.prepare_cached(sql::AUDIT_PLAYERS).map_err(sqlite_error)?;
        let mut positions = txn.prepare_cached(sql::AUDIT_HOLDINGS).map_err(sqlite_error)?;
        let mut cash_events = txn.prepare_cached(sql::AUDIT_CREATED).map_err(sqlite_error)?;
        let mut fills = txn.prepare_cached(sql::AUDIT_TRADES).map_err(sqlite_error)?;
        let ledgers = ledgers.query_map([], |row| Ok(keyed(row, 0, ledger))).map_err(sqlite_error)?;
        let positions = positions.query_map([], |row| Ok(keyed(row, 0, position))).map_err(sqlite_error)?;
        let cash_events = cash_events.query_map([], |row| Ok(keyed(row, 0, cash_event))).map_err(sqlite_error)?;
        let fills = fills.query_map([], |row| Ok(keyed(row, 9, fill))).map_err(sqlite_error)?;
        let mut scans = [
            scan(ledgers.map(flatten)),
            scan(positions.map(flatten)),
            scan(cash_events.map(flatten)),
            scan(fills.map(flatten)),
        ];
        reconcile(&mut scans)?
    };
    txn.commit().map_err(sqlite_error)?;
    Ok(tally.into_audit(tickers, from_i64(events, "event count")?))
}

/// Steps the scans together, one player at a time.
fn reconcile<I>(scans: &mut [Scan<I>]) -> Result<Tally, StoreError>
where
    I: Iterator<Item = Result<(i64, Item), StoreError>>,
{
    let mut tally = Tally::default();
    loop {
        let mut next = None;
        for scan in scans.iter_mut() {
            if let Some(player) = scan.player()? {
                next = Some(next.map_or(player, |p: i64| p.min(player)));
            }
        }
        let Some(player) = next else { return Ok(tally) };
        let mut stored: Option<Balances> = None;
        let mut replay = PlayerReplay::new(u64::MAX);
        for scan in scans.iter_mut() {
            while let Some(item) = scan.take_if(player)? {
                match item {
                    Item::Ledger(balances) => stored = Some(balances),
                    Item::Position { asset, qty, reserved } => {
                        if reserved < 0 {
                            tally.negative_found();
                        }
                        stored.get_or_insert_with(Balances::default).hold(asset, i128::from(qty));
                    }
                    Item::Event(stamped) => replay.event(stamped.seq, stamped.event),
                    Item::Fill(fill) => replay.fill(fill.seq, &fill.trade),
                }
            }
        }
        tally.settle(&replay.finish(), stored.as_ref());
    }
}

fn scan<'s>(rows: impl Iterator<Item = Result<(i64, Item), StoreError>> + 's) -> Scan<Rows<'s>> {
    let rows: Rows<'s> = Box::new(rows);
    Scan(rows.peekable())
}

/// One ordered scan with a look-ahead row.
struct Scan<I: Iterator>(Peekable<I>);

impl<I> Scan<I>
where
    I: Iterator<Item = Result<(i64, Item), StoreError>>,
{
    fn player(&mut self) -> Result<Option<i64>, StoreError> {
        match self.0.peek() {
            None => Ok(None),
            Some(Ok((player, _))) => Ok(Some(*player)),
            Some(Err(error)) => Err(error.clone()),
        }
    }

    fn take_if(&mut self, player: i64) -> Result<Option<Item>, StoreError> {
        if self.player()? != Some(player) {
            return Ok(None);
        }
        self.0.next().transpose().map(|next| next.map(|(_, item)| item))
    }
}

fn flatten(row: rusqlite::Result<Result<(i64, Item), StoreError>>) -> Result<(i64, Item), StoreError> {
    row.map_err(sqlite_error)?
}

/// A row as (player in column `player_column`, item).
fn keyed(
    row: &Row<'_>,
    player_column: usize,
    item: fn(i64, &Row<'_>) -> Result<Item, StoreError>,
) -> Result<(i64, Item), StoreError> {
    let player: i64 = row.get(player_column).map_err(sqlite_error)?;
    Ok((player, item(player, row)?))
}

fn ledger(_: i64, row: &Row<'_>) -> Result<Item, StoreError> {
    Ok(Item::Ledger(Balances { cash: decimal(row, 1)?, ..Balances::default() }))
}

fn position(_: i64, row: &Row<'_>) -> Result<Item, StoreError> {
    let asset: i64 = row.get(1).map_err(sqlite_error)?;
    let asset = usize::try_from(asset).map_err(|_| StoreError::Invalid(format!("stored asset id {asset}")))?;
    Ok(Item::Position { asset, qty: row.get(2).map_err(sqlite_error)?, reserved: row.get(3).map_err(sqlite_error)? })
}

fn cash_event(_: i64, row: &Row<'_>) -> Result<Item, StoreError> {
    let payload: String = row.get(2).map_err(sqlite_error)?;
    Ok(Item::Event(serde_json::from_str(&payload).map_err(json_error)?))
}

fn fill(player: i64, row: &Row<'_>) -> Result<Item, StoreError> {
    Ok(Item::Fill(trade_record(PlayerId(player), row)?))
}
