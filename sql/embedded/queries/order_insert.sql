INSERT INTO orders (order_id, player, asset, side, qty, trigger_kind, trigger_price, reserved_cash, placed_at_ms,
                    placed_seq)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
ON CONFLICT (order_id) DO NOTHING
