-- Outcomes wholly behind the cursor are never asked for again.
DELETE FROM command_outcomes WHERE last_message <= $1
