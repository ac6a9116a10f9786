-- A checkpoint's watermark (it never moves back).
INSERT INTO fill_watermark (id, seq) VALUES (TRUE, $1)
ON CONFLICT (id) DO UPDATE SET seq = GREATEST(fill_watermark.seq, EXCLUDED.seq)
