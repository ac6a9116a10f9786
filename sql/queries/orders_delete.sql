DELETE FROM orders WHERE order_id = ANY($1::BIGINT[])
