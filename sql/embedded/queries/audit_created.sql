-- Cash set outside trading (starting cash, credits, resets), player by player
-- in log order (the partial index `events_by_player` holds them in that order).
SELECT player, seq, payload FROM events
WHERE kind IN ('AccountOpened', 'CashCredited', 'AccountReset')
ORDER BY player, seq
