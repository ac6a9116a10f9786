-- Resting orders of players $1.
SELECT order_id, player, asset, side, qty, trigger_kind, trigger_price, reserved_cash, placed_at_ms
FROM orders WHERE player = ANY($1::BIGINT[])
ORDER BY player, order_id
