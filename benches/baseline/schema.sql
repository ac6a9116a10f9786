-- The baseline stockbot's throughput is compared with: the textbook way to
-- run a trading game on PostgreSQL, where every trade is its own
-- transaction that locks the asset row and the buyer's row. Tables live in
-- their own schema so the baseline never touches the game's tables.
DROP SCHEMA IF EXISTS baseline CASCADE;
CREATE SCHEMA baseline;
CREATE TABLE baseline.asset (
    asset_id  integer PRIMARY KEY,
    price     numeric(20, 4) NOT NULL,
    traded    bigint NOT NULL DEFAULT 0
);
CREATE TABLE baseline.account (
    account_id bigint PRIMARY KEY,
    cash       numeric(20, 2) NOT NULL
);
CREATE TABLE baseline.position (
    account_id bigint  NOT NULL,
    asset_id   integer NOT NULL,
    quantity   bigint  NOT NULL,
    PRIMARY KEY (account_id, asset_id)
);
CREATE TABLE baseline.fill (
    fill_id    bigserial PRIMARY KEY,
    account_id bigint  NOT NULL,
    asset_id   integer NOT NULL,
    quantity   bigint  NOT NULL,
    price      numeric(20, 4) NOT NULL,
    filled_at  timestamptz NOT NULL DEFAULT now()
);
-- 100 assets at 100.00, 100,000 accounts rich enough never to run dry.
INSERT INTO baseline.asset (asset_id, price) SELECT n, 100 FROM generate_series(1, 100) AS n;
INSERT INTO baseline.account (account_id, cash) SELECT n, 1000000000 FROM generate_series(1, 100000) AS n;
