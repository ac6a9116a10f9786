-- A snapshot never replaces a newer one (saves may finish out of order).
INSERT INTO market_snapshot (id, seq, payload) VALUES (TRUE, $1, $2)
ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, payload = EXCLUDED.payload
WHERE market_snapshot.seq <= EXCLUDED.seq
