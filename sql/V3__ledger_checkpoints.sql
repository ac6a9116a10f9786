-- stockbot, schema version 3: ledgers leave the commit path.
-- Group commits write only the log side (events, trades, resting orders,
-- candles); player ledgers are checkpointed in the background. `ledger_seq`
-- is the seq of the last event a stored ledger reflects: the ledger is brought
-- up to date by replaying the player's events after it (found by
-- `events_by_player`) and reserving for the player's resting orders.
ALTER TABLE players ADD COLUMN ledger_seq BIGINT NOT NULL DEFAULT 0;
UPDATE players SET ledger_seq = COALESCE((SELECT MAX(seq) FROM events), 0);
CREATE INDEX events_by_player ON events (player, seq);
