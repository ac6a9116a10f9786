INSERT INTO holdings (player, asset, qty, reserved_qty, cost_basis) VALUES (?1, ?2, ?3, ?4, ?5)
