SELECT payload FROM market_snapshot WHERE id = 1
