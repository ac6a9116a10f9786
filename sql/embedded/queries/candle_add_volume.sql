-- Volume traded in a minute whose candle an earlier batch opened.
UPDATE candles SET volume = volume + ?3 WHERE asset = ?1 AND start_ms = ?2
