-- The last seq in the log below seq $1 (0 when none: events and the fill
-- journal), and the last trade id stored below it.
SELECT GREATEST(
           (SELECT COALESCE(MAX(seq), 0) FROM events WHERE seq < $1),
           (SELECT COALESCE((SELECT last_seq FROM fill_batches WHERE first_seq < $1 ORDER BY first_seq DESC LIMIT 1), 0))
       )::BIGINT,
       COALESCE((SELECT last_trade FROM fill_batches WHERE first_seq < $1 ORDER BY first_seq DESC LIMIT 1),
                (SELECT last_trade FROM fill_watermark), 0)::BIGINT
