-- Cash created outside trading (starting cash, credits), from the log.
SELECT payload FROM events WHERE kind IN ('AccountOpened', 'CashCredited')
