-- The events that move cash besides fills, player by player in log order (for
-- the audit, read in pages; the partial index `events_by_player` covers them).
SELECT player, payload FROM events
WHERE kind IN ('AccountOpened', 'CashCredited', 'AccountReset') AND player IS NOT NULL
ORDER BY player, seq
