-- Each player's last reset: the account is reconciled from there on.
SELECT player, MAX(seq) FROM events WHERE kind = 'AccountReset' GROUP BY player
