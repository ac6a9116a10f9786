INSERT INTO orders (order_id, player, asset, side, qty, trigger_kind, trigger_price, reserved_cash, placed_at_ms,
                    placed_seq)
SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::INTEGER[], $4::TEXT[], $5::BIGINT[], $6::TEXT[], $7::NUMERIC[],
                     $8::NUMERIC[], $9::BIGINT[], $10::BIGINT[])
ON CONFLICT (order_id) DO NOTHING
