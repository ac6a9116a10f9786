-- History chunks written by a checkpoint: per player, the fills since the last one.
-- A chunk written by a commit whose acknowledgement was lost is not written twice.
INSERT INTO player_fills (player, last_seq, fills)
SELECT player, last_seq, fills FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[]) AS c (player, last_seq, fills)
ON CONFLICT (player, last_seq) DO NOTHING
