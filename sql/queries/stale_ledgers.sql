-- Players whose log goes beyond their stored ledger (or who have none).
SELECT DISTINCT e.player
FROM events e LEFT JOIN players p ON p.player = e.player
WHERE e.player IS NOT NULL
  AND e.kind IN ('AccountOpened', 'CashCredited', 'Traded')
  AND e.seq > COALESCE(p.ledger_seq, 0)
ORDER BY e.player
