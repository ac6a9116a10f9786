-- stockbot's embedded store, schema version 2: the game record (as
-- sql/V4__player_profiles.sql). `profile` holds what of a player's account
-- the ledger columns do not — lifetime counters, season, game record — as
-- JSON text written with the ledger.
ALTER TABLE players ADD COLUMN profile TEXT NOT NULL DEFAULT '{}';
