SELECT player, asset, side, qty, price, fee FROM trades
