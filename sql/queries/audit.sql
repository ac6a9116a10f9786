-- The conservation check: the cash and shares every player must hold by the
-- log against the stored ledgers, player by player. A reset sets the cash
-- and writes the shares off, so each player's account is reconciled from
-- their last `AccountReset` on (its cash, then credits and fills after it),
-- or from the start (starting cash, credits, fills) without one. One row:
-- mismatching players, mismatching positions, negative balances, stored
-- cash total, events in the log.
WITH last_reset AS (
    SELECT DISTINCT ON (player) player, seq, (payload -> 'event' -> 'AccountReset' ->> 'cash')::NUMERIC AS cash
    FROM events WHERE kind = 'AccountReset'
    ORDER BY player, seq DESC
),
flows AS (
    SELECT player, seq, (payload -> 'event' -> 'AccountOpened' ->> 'cash')::NUMERIC AS amount
    FROM events WHERE kind = 'AccountOpened'
    UNION ALL
    SELECT player, seq, (payload -> 'event' -> 'CashCredited' ->> 'amount')::NUMERIC
    FROM events WHERE kind = 'CashCredited'
    UNION ALL
    SELECT player, seq, CASE side WHEN 'Buy' THEN -(price * qty + fee) ELSE price * qty - fee END
    FROM trades
    UNION ALL
    SELECT player, seq, cash FROM last_reset
),
expected_cash AS (
    SELECT f.player, SUM(f.amount) AS cash
    FROM flows f LEFT JOIN last_reset r USING (player)
    WHERE f.seq >= COALESCE(r.seq, 0)
    GROUP BY f.player
),
expected_shares AS (
    SELECT t.player, t.asset, SUM(CASE t.side WHEN 'Buy' THEN t.qty ELSE -t.qty END) AS qty
    FROM trades t LEFT JOIN last_reset r USING (player)
    WHERE t.seq > COALESCE(r.seq, 0)
    GROUP BY t.player, t.asset
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
