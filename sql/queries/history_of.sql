-- A player's ($1) history chunks holding fills before seq $2, newest first:
-- the chunk that reaches past $2, then every older one ($3 at most).
SELECT fills::TEXT FROM player_fills
WHERE player = $1
  AND last_seq <= COALESCE((SELECT MIN(last_seq) FROM player_fills WHERE player = $1 AND last_seq >= $2),
                           9223372036854775807)
ORDER BY last_seq DESC
LIMIT $3
