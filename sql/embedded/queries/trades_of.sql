SELECT seq, at_ms, trade_id, order_id, asset, side, qty, price, fee
FROM trades WHERE player = ?1 AND seq < ?2
ORDER BY seq DESC LIMIT ?3
