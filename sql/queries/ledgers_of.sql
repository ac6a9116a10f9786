-- Stored ledgers of players $1: with the seq of the last event each reflects,
-- its positions (JSON `[asset, qty, "cost_basis"]`) and its profile
-- (counters, season, game record).
SELECT player, cash, realized_pnl, trades, ledger_seq, positions::TEXT, profile
FROM players WHERE player = ANY($1::BIGINT[])
