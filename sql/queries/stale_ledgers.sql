-- Players whose log goes beyond their stored ledger (or who have none).
SELECT e.player
FROM events e LEFT JOIN players p ON p.player = e.player
WHERE e.kind IN ('AccountOpened', 'CashCredited', 'Game', 'AccountReset') AND e.seq > COALESCE(p.ledger_seq, 0)
UNION
SELECT t.player
FROM trades t LEFT JOIN players p ON p.player = t.player
WHERE t.seq > COALESCE(p.ledger_seq, 0)
ORDER BY player
