-- The conservation check: the cash and shares every player must hold by the
-- log (starting cash, credits, fills) against the stored ledgers, player by
-- player. One row: mismatching players, mismatching positions, negative
-- balances, stored cash total, events in the log.
WITH flows AS (
    SELECT player, (payload -> 'event' -> 'AccountOpened' ->> 'cash')::NUMERIC AS amount
    FROM events WHERE kind = 'AccountOpened'
    UNION ALL
    SELECT player, (payload -> 'event' -> 'CashCredited' ->> 'amount')::NUMERIC
    FROM events WHERE kind = 'CashCredited'
    UNION ALL
    SELECT player, CASE side WHEN 'Buy' THEN -(price * qty + fee) ELSE price * qty - fee END
    FROM trades
),
expected_cash AS (
    SELECT player, SUM(amount) AS cash FROM flows GROUP BY player
),
expected_shares AS (
    SELECT player, asset, SUM(CASE side WHEN 'Buy' THEN qty ELSE -qty END) AS qty
    FROM trades GROUP BY player, asset
)
SELECT
    (SELECT COUNT(*) FROM expected_cash e FULL JOIN players p USING (player)
     WHERE COALESCE(e.cash, 0) <> COALESCE(p.cash, 0)) AS cash_mismatches,
    (SELECT COUNT(*) FROM expected_shares e FULL JOIN holdings h USING (player, asset)
     WHERE COALESCE(e.qty, 0) <> COALESCE(h.qty, 0)) AS share_mismatches,
    (SELECT COUNT(*) FROM players WHERE cash < 0)
      + (SELECT COUNT(*) FROM holdings WHERE qty < 0 OR reserved_qty < 0) AS negatives,
    (SELECT COALESCE(SUM(cash), 0) FROM players) AS cash_total,
    (SELECT COUNT(*) FROM events) AS events
