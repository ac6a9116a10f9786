SELECT start_ms, open, high, low, close, volume
FROM candles WHERE asset = ?1 AND start_ms >= ?2
ORDER BY start_ms LIMIT ?3
