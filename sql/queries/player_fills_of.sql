-- History chunks of players $1 that go beyond their stored checkpoint (all
-- of them for a player without a stored ledger).
SELECT pf.player, pf.fills::TEXT
FROM unnest($1::BIGINT[]) AS wanted (player)
JOIN player_fills pf ON pf.player = wanted.player
LEFT JOIN players p ON p.player = wanted.player
WHERE pf.last_seq > COALESCE(p.ledger_seq, 0)
