INSERT INTO candles (asset, start_ms, open, high, low, close, volume)
SELECT * FROM unnest($1::INTEGER[], $2::BIGINT[], $3::DOUBLE PRECISION[], $4::DOUBLE PRECISION[],
                     $5::DOUBLE PRECISION[], $6::DOUBLE PRECISION[], $7::BIGINT[])
ON CONFLICT (asset, start_ms) DO NOTHING
