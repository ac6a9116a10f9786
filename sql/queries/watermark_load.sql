-- Seq up to which every fill is in `player_fills` (0 before the first checkpoint).
SELECT COALESCE((SELECT seq FROM fill_watermark), 0)::BIGINT
