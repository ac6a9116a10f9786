-- Cash set outside trading (starting cash, credits, resets), from the log.
SELECT seq, payload FROM events WHERE kind IN ('AccountOpened', 'CashCredited', 'AccountReset')
