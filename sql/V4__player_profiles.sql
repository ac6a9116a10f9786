-- stockbot, schema version 4: the game record. `profile` holds what of a
-- player's account the ledger columns do not: lifetime counters (traded
-- value, profitable sales, resting fills), the season its money belongs to
-- and the game record (XP, achievements, streak, time zone, entitlements,
-- payments, referrals), as JSON written at each checkpoint.
ALTER TABLE players ADD COLUMN profile JSONB NOT NULL DEFAULT '{}';
-- Game changes and resets move ledgers too: the rebuild replays them after
-- the checkpoint, so the partial index covers them.
DROP INDEX events_by_player;
CREATE INDEX events_by_player ON events (player, seq)
    WHERE kind IN ('AccountOpened', 'CashCredited', 'Game', 'AccountReset');
-- Ledgers checkpointed before this version lack their profile: a player with
-- game events is rebuilt from the whole log (ledger_seq 0 replays it all,
-- from the opening on).
UPDATE players SET ledger_seq = 0
WHERE player IN (SELECT player FROM events WHERE kind IN ('Game', 'AccountReset'));
