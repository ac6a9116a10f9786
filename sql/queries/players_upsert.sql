INSERT INTO players (player, cash, reserved_cash, realized_pnl, trades, open_orders)
SELECT * FROM unnest($1::BIGINT[], $2::NUMERIC[], $3::NUMERIC[], $4::NUMERIC[], $5::BIGINT[], $6::INTEGER[])
ON CONFLICT (player) DO UPDATE SET
    cash = EXCLUDED.cash,
    reserved_cash = EXCLUDED.reserved_cash,
    realized_pnl = EXCLUDED.realized_pnl,
    trades = EXCLUDED.trades,
    open_orders = EXCLUDED.open_orders
