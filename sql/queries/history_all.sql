-- Every history chunk (for the audit).
SELECT fills::TEXT FROM player_fills
