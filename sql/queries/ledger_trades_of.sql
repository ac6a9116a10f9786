-- Fills of players $1 after their stored checkpoint (all of them for a
-- player without a stored ledger); columns as `trades_of.sql`, then player.
SELECT t.seq, t.at_ms, t.trade_id, t.order_id, t.asset, t.side, t.qty, t.price, t.fee, t.player
FROM unnest($1::BIGINT[]) AS wanted (player)
JOIN trades t ON t.player = wanted.player
LEFT JOIN players p ON p.player = wanted.player
WHERE t.seq > COALESCE(p.ledger_seq, 0)
