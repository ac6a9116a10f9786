-- Stored events (other than journalled fills) with $1 <= seq <= $2, in order.
SELECT payload FROM events WHERE seq BETWEEN $1 AND $2 ORDER BY seq
