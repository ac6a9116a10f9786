SELECT player, cash FROM players
