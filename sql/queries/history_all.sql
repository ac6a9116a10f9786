-- Every history chunk, player by player in log order (for the audit, read in pages).
SELECT player, fills::TEXT FROM player_fills ORDER BY player, last_seq
