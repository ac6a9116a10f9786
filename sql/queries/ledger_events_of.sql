-- Openings, credits, game changes and resets of players $1 after their
-- stored checkpoint (all of them for a player without a stored ledger), in
-- log order; fills come from `player_fills` and the journal.
SELECT e.player, e.payload
FROM unnest($1::BIGINT[]) AS wanted (player)
JOIN events e ON e.player = wanted.player
LEFT JOIN players p ON p.player = wanted.player
WHERE e.seq > COALESCE(p.ledger_seq, 0)
  AND e.kind IN ('AccountOpened', 'CashCredited', 'Game', 'AccountReset')
