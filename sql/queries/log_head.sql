-- The last seq in the log (0 when empty: events and the fill journal), and
-- the last trade id stored.
SELECT GREATEST(
           (SELECT COALESCE(MAX(seq), 0) FROM events),
           (SELECT COALESCE((SELECT last_seq FROM fill_batches ORDER BY first_seq DESC LIMIT 1), 0))
       )::BIGINT,
       COALESCE((SELECT last_trade FROM fill_batches ORDER BY first_seq DESC LIMIT 1),
                (SELECT last_trade FROM fill_watermark), 0)::BIGINT
