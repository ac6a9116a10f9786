-- Volume traded in a minute whose candle already exists (a trade before the
-- minute's first tick only counts if the candle was opened by an earlier batch).
UPDATE candles c SET volume = c.volume + v.volume
FROM unnest($1::INTEGER[], $2::BIGINT[], $3::BIGINT[]) AS v (asset, start_ms, volume)
WHERE c.asset = v.asset AND c.start_ms = v.start_ms
