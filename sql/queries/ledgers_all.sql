-- Every stored ledger's cash and positions (for the audit).
SELECT player, cash, positions::TEXT FROM players
