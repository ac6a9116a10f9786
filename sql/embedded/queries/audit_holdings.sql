SELECT player, asset, qty, reserved_qty FROM holdings
