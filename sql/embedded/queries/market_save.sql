-- A snapshot never replaces a newer one.
INSERT INTO market_snapshot (id, seq, payload) VALUES (1, ?1, ?2)
ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, payload = excluded.payload
WHERE excluded.seq >= market_snapshot.seq
