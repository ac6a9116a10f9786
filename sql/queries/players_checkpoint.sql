-- Checkpointed ledgers, each with the seq of the last event it reflects, its
-- positions and its profile (counters, season, game record).
INSERT INTO players (player, cash, reserved_cash, realized_pnl, trades, open_orders, ledger_seq, profile, positions)
SELECT player, cash, reserved_cash, realized_pnl, trades, open_orders, ledger_seq, profile, positions
FROM unnest($1::BIGINT[], $2::NUMERIC[], $3::NUMERIC[], $4::NUMERIC[], $5::BIGINT[], $6::INTEGER[],
            $7::BIGINT[], $8::JSONB[], $9::TEXT[])
     AS c (player, cash, reserved_cash, realized_pnl, trades, open_orders, ledger_seq, profile, positions)
ON CONFLICT (player) DO UPDATE SET
    cash = EXCLUDED.cash,
    reserved_cash = EXCLUDED.reserved_cash,
    realized_pnl = EXCLUDED.realized_pnl,
    trades = EXCLUDED.trades,
    open_orders = EXCLUDED.open_orders,
    ledger_seq = EXCLUDED.ledger_seq,
    profile = EXCLUDED.profile,
    positions = EXCLUDED.positions
