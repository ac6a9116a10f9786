-- Journal entries holding fills with $1 <= seq <= $2, in log order: from the
-- entry that starts at or before $1 (entries never overlap).
SELECT fills FROM fill_batches
WHERE first_seq BETWEEN (SELECT COALESCE(MAX(first_seq), 0) FROM fill_batches WHERE first_seq <= $1) AND $2
  AND last_seq >= $1
ORDER BY first_seq
LIMIT $3
