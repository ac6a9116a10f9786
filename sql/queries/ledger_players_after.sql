-- Players with openings, credits, game changes or resets after seq $1 (the
-- journal's watermark): with the journal's fills, whose ledgers moved since
-- the last checkpoint.
SELECT DISTINCT player FROM events
WHERE seq > $1 AND kind IN ('AccountOpened', 'CashCredited', 'Game', 'AccountReset')
