-- Every stored position, player by player (the primary key's order).
SELECT player, asset, qty, reserved_qty FROM holdings ORDER BY player, asset
