-- The last seq in the log (0 when empty).
SELECT COALESCE(MAX(seq), 0)::BIGINT FROM events
