-- One market buy, one transaction (a pgbench script): lock the asset, debit
-- the buyer at the locked price, add to the position, move the price (the
-- trade's impact), record the fill.
\set buyer random(1, 100000)
\set asset random(1, 100)
\set quantity random(1, 10)
BEGIN;
SELECT price FROM baseline.asset WHERE asset_id = :asset FOR UPDATE;
UPDATE baseline.account
   SET cash = cash - :quantity * (SELECT price FROM baseline.asset WHERE asset_id = :asset)
 WHERE account_id = :buyer
   AND cash >= :quantity * (SELECT price FROM baseline.asset WHERE asset_id = :asset);
INSERT INTO baseline.position (account_id, asset_id, quantity) VALUES (:buyer, :asset, :quantity)
    ON CONFLICT (account_id, asset_id) DO UPDATE SET quantity = baseline.position.quantity + EXCLUDED.quantity;
INSERT INTO baseline.fill (account_id, asset_id, quantity, price)
    SELECT :buyer, :asset, :quantity, price FROM baseline.asset WHERE asset_id = :asset;
UPDATE baseline.asset SET price = price * 1.0001, traded = traded + :quantity WHERE asset_id = :asset;
COMMIT;
