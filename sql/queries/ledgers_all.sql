-- Every stored ledger's cash, positions and the seq it stands at, player by
-- player (for the audit, read in pages).
SELECT player, cash, positions::TEXT, ledger_seq FROM players ORDER BY player
