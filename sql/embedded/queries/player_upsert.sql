INSERT INTO players (player, cash, reserved_cash, realized_pnl, trades, open_orders, profile)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (player) DO UPDATE SET
    cash = excluded.cash,
    reserved_cash = excluded.reserved_cash,
    realized_pnl = excluded.realized_pnl,
    trades = excluded.trades,
    open_orders = excluded.open_orders,
    profile = excluded.profile
