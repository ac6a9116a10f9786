//! How the PostgreSQL store keeps fills: a fill is a compact JSON array
//! (`[seq, at_ms, trade_id, order_id|null, player, asset, "Buy"|"Sell", qty,
//! "price", "fee"]`, money as decimal strings), and fills travel in groups —
//! one JSON array per group commit (the journal, `fill_batches`) and one per
//! player per checkpoint (the history, `player_fills`). SQL can read both
//! (`json_array_elements`), and the migration that introduced them builds
//! the same shape from the old `trades` rows.

use actors::domain::event::Trade;
use actors::domain::ids::{AssetId, OrderId, PlayerId, TradeId};
use actors::domain::order::Side;
use actors::ports::{StoreError, TradeRecord};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One fill as stored (field order is the wire format: append only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct StoredFill(u64, i64, u64, Option<u64>, i64, u16, Side, u64, Decimal, Decimal);

impl From<&TradeRecord> for StoredFill {
    fn from(record: &TradeRecord) -> Self {
        let trade = &record.trade;
        Self(
            record.seq,
            record.at_ms,
            trade.id.0,
            trade.order.map(|order| order.0),
            trade.player.0,
            trade.asset.0,
            trade.side,
            trade.qty,
            trade.price,
            trade.fee,
        )
    }
}

impl From<StoredFill> for TradeRecord {
    fn from(StoredFill(seq, at_ms, id, order, player, asset, side, qty, price, fee): StoredFill) -> Self {
        Self {
            seq,
            at_ms,
            trade: Trade {
                id: TradeId(id),
                order: order.map(OrderId),
                player: PlayerId(player),
                asset: AssetId(asset),
                side,
                qty,
                price,
                fee,
            },
        }
    }
}

/// Encodes fills, in the order given, as one JSON array.
#[must_use]
pub fn encode<'a>(fills: impl IntoIterator<Item = &'a TradeRecord>) -> Vec<u8> {
    let stored: Vec<StoredFill> = fills.into_iter().map(StoredFill::from).collect();
    // Plain numbers, strings and options: serialising cannot fail.
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// Decodes an array written by [`encode`] (or by the V5 migration).
///
/// # Errors
/// `StoreError::Invalid` for bytes that are not such an array.
pub fn decode(bytes: &[u8]) -> Result<Vec<TradeRecord>, StoreError> {
    let stored: Vec<StoredFill> =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Invalid(format!("stored fills unreadable: {e}")))?;
    Ok(stored.into_iter().map(TradeRecord::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(seq: u64, order: Option<u64>, side: Side, price: Decimal, fee: Decimal) -> TradeRecord {
        TradeRecord {
            seq,
            at_ms: 1_700_000_000_000 + i64::try_from(seq % 1_000_000).unwrap_or(0),
            trade: Trade {
                id: TradeId(seq.wrapping_mul(3)),
                order: order.map(OrderId),
                player: PlayerId(-42),
                asset: AssetId(7),
                side,
                qty: 15,
                price,
                fee,
            },
        }
    }

    #[test]
    fn the_wire_format_is_a_compact_array() {
        let fill = record(9, None, Side::Sell, Decimal::new(12_345, 2), Decimal::new(5, 1));
        let text = String::from_utf8(encode([&fill])).unwrap();
        assert_eq!(text, format!("[[9,{},27,null,-42,7,\"Sell\",15,\"123.45\",\"0.5\"]]", fill.at_ms));
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        for bytes in [&b""[..], b"{}", b"[[1,2]]", b"[[1,2,3,null,4,5,\"Hold\",1,\"1\",\"0\"]]", b"\xff"] {
            assert!(matches!(decode(bytes), Err(StoreError::Invalid(_))), "{bytes:?}");
        }
        assert_eq!(decode(b"[]").unwrap(), Vec::new());
    }

    proptest! {
        #[test]
        fn fills_roundtrip(
            seqs in proptest::collection::vec(1..u64::MAX / 2, 0..20),
            order in proptest::option::of(0..u64::MAX),
            buy in any::<bool>(),
            price in 0..i64::MAX,
            scale in 0..12_u32,
            fee in 0..1_000_000_i64,
        ) {
            let side = if buy { Side::Buy } else { Side::Sell };
            let fills: Vec<TradeRecord> = seqs
                .iter()
                .map(|seq| record(*seq, order, side, Decimal::new(price, scale), Decimal::new(fee, 4)))
                .collect();
            prop_assert_eq!(decode(&encode(&fills)).unwrap(), fills);
        }
    }
}
