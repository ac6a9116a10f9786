-- Stored events with $1 <= seq <= $2, in order (to recognise a retried batch).
SELECT payload FROM events WHERE seq BETWEEN $1 AND $2 ORDER BY seq
