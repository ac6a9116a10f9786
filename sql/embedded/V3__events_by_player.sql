-- stockbot's embedded store, schema version 3: the audit reads the events
-- that set cash outside trading player by player, in log order, merged with
-- each player's fills (`trades_by_player`) and ledger, so it holds one
-- player at a time instead of the whole log. These events are rare (an
-- opening, daily bonuses, grants, resets): the index costs appends little.
CREATE INDEX events_by_player ON events (player, seq)
WHERE kind IN ('AccountOpened', 'CashCredited', 'AccountReset');
