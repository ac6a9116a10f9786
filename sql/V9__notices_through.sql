-- stockbot, schema version 9: how far the active engine's notices are out.
-- * `engine_lease.notices_through`: every notice (a resting order filled or
--   dropped, an alert fired) of the log's events up to this seq was
--   published on the outbox, stored with each renewal of the lease. A new
--   engine publishes the notices of the events after it once more, under
--   the same message ids (the outbox drops a repeat within its duplicate
--   window), so a notice committed but not yet out when an engine died is
--   not lost. NULL: not known (no engine publishing notices has held the
--   lease yet); nothing is published again then.
ALTER TABLE engine_lease ADD COLUMN notices_through BIGINT;
