INSERT INTO trades (trade_id, seq, at_ms, player, asset, side, qty, price, fee, order_id)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
