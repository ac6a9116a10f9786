//! The PostgreSQL store's audit: conservation checked in one snapshot — the
//! log up to the checkpoint watermark (events, and fills from the history
//! chunks) replayed into the balances every player must hold, set against
//! the stored ledgers, player by player.

use std::collections::BTreeMap;

use actors::domain::event::{Event, Stamped};
use actors::domain::ids::PlayerId;
use actors::ports::reconcile::Reconciliation;
use actors::ports::{Audit, StoreError};
use deadpool_postgres::Object;
use rust_decimal::Decimal;
use tokio_postgres::types::Json;

use super::ledgers::parse_signed_positions;
use super::{log_head, pg_error, sql, ticker_name};
use crate::store::fills;
use crate::store::plan::from_i64;

/// Checks conservation. The caller has just checkpointed (holding the turn,
/// so no checkpoint runs meanwhile): every ledger stands at the watermark.
pub async fn audit(client: &mut Object, tickers: &[String]) -> Result<Audit, StoreError> {
    let txn = super::read_snapshot(client).await?;
    let (events, chunks, ledgers, watermark) = futures_util::try_join!(
        txn.prepare_cached(sql::AUDIT_EVENTS),
        txn.prepare_cached(sql::HISTORY_ALL),
        txn.prepare_cached(sql::LEDGERS_ALL),
        txn.prepare_cached(sql::WATERMARK_LOAD),
    )
    .map_err(pg_error)?;
    let (event_rows, chunk_rows, ledger_rows, watermark) = futures_util::try_join!(
        txn.query(&events, &[]),
        txn.query(&chunks, &[]),
        txn.query(&ledgers, &[]),
        txn.query_one(&watermark, &[]),
    )
    .map_err(pg_error)?;
    let head = log_head(&txn).await?;
    txn.commit().await.map_err(pg_error)?;
    let watermark = from_i64(watermark.try_get(0).map_err(pg_error)?, "watermark")?;

    // The log up to the watermark, in order (a fill is counted once even if
    // a retried checkpoint stored it twice).
    let mut log: BTreeMap<u64, Event> = BTreeMap::new();
    for row in &event_rows {
        let stamped = row.try_get::<_, Json<Stamped>>(0).map_err(pg_error)?.0;
        if stamped.seq <= watermark {
            log.insert(stamped.seq, stamped.event);
        }
    }
    for row in &chunk_rows {
        for fill in fills::decode(row.try_get::<_, &str>(0).map_err(pg_error)?.as_bytes())? {
            if fill.seq <= watermark {
                log.insert(fill.seq, Event::Traded(fill.trade));
            }
        }
    }
    let mut expected = Reconciliation::default();
    for event in log.values() {
        expected.apply(event);
    }
    let mut stored = Reconciliation::default();
    for row in &ledger_rows {
        let player = PlayerId(row.try_get(0).map_err(pg_error)?);
        let cash: Decimal = row.try_get(1).map_err(pg_error)?;
        let positions = parse_signed_positions(row.try_get(2).map_err(pg_error)?)?;
        stored.hold(player, cash, positions.into_iter().map(|(asset, qty, _)| (usize::from(asset), i128::from(qty))));
    }
    expected.shares.retain(|_, qty| *qty != 0);
    stored.shares.retain(|_, qty| *qty != 0);
    let (cash_mismatches, share_mismatches) = expected.mismatches(&stored);
    let shares = stored
        .shares_per_asset()
        .into_iter()
        .map(|(asset, qty)| {
            let name = ticker_name(tickers, i32::try_from(asset).unwrap_or(i32::MAX));
            (name, u64::try_from(qty).unwrap_or(0))
        })
        .collect();
    Ok(Audit {
        ok: cash_mismatches == 0 && share_mismatches == 0 && !stored.has_negative(),
        cash_total: stored.cash_total(),
        shares,
        events: head,
    })
}
