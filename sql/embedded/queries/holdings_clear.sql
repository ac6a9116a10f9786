-- A player's positions are rewritten whole from the new ledger.
DELETE FROM holdings WHERE player = ?1
