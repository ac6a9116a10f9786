-- A player's ledger and positions in one statement (one snapshot); a player
-- without positions gets one row with NULL position columns. The profile
-- (counters, season, game record) comes last.
SELECT p.cash, p.reserved_cash, p.realized_pnl, p.trades, p.open_orders,
       h.asset, h.qty, h.reserved_qty, h.cost_basis, p.profile
FROM players p LEFT JOIN holdings h ON h.player = p.player
WHERE p.player = $1
ORDER BY h.asset
