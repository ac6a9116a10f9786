SELECT player, asset, side, qty, price, fee, seq FROM trades
