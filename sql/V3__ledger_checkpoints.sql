-- stockbot, schema version 3: ledgers leave the commit path.
-- Group commits write only the log side (events, trades, resting orders,
-- candles); player ledgers are checkpointed in the background. `ledger_seq`
-- is the seq of the last event a stored ledger reflects: the ledger is brought
-- up to date by replaying the player's ledger-moving events after it — fills
-- from `trades` (by `trades_by_player`), openings and credits from `events`
-- (by the partial `events_by_player`: a full index on every event would cost
-- each group commit one more random B-tree insert per event, ~12% of its
-- throughput as measured) — and reserving for the player's resting orders.
ALTER TABLE players ADD COLUMN ledger_seq BIGINT NOT NULL DEFAULT 0;
-- Ledgers stored so far were written with their events: they reflect the whole log.
UPDATE players SET ledger_seq = COALESCE((SELECT MAX(seq) FROM events), 0);
CREATE INDEX events_by_player ON events (player, seq) WHERE kind IN ('AccountOpened', 'CashCredited');
