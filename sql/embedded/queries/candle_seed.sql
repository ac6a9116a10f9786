INSERT INTO candles (asset, start_ms, open, high, low, close, volume) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (asset, start_ms) DO NOTHING
