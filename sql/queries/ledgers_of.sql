-- Stored ledgers (with their checkpoint seq) and positions of players $1; a
-- player without positions gets one row with NULL position columns. The
-- profile (counters, season, game record) comes last.
SELECT p.player, p.cash, p.reserved_cash, p.realized_pnl, p.trades, p.open_orders, p.ledger_seq,
       h.asset, h.qty, h.reserved_qty, h.cost_basis, p.profile
FROM players p LEFT JOIN holdings h ON h.player = p.player
WHERE p.player = ANY($1::BIGINT[])
ORDER BY p.player, h.asset
