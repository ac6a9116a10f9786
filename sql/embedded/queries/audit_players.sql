-- Every stored ledger's cash, player by player (the primary key's order).
SELECT player, cash FROM players ORDER BY player
