-- Every fill, player by player in log order (by `trades_by_player`); the
-- columns of trades_of.sql, then the player.
SELECT seq, at_ms, trade_id, order_id, asset, side, qty, price, fee, player
FROM trades ORDER BY player, seq
