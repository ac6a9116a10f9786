COPY trades (trade_id, seq, at_ms, player, asset, side, qty, price, fee, order_id) FROM STDIN (FORMAT binary)
