-- stockbot's embedded store (SQLite), schema version 1: the same tables as
-- the PostgreSQL schema (sql/V1__init.sql). Money is TEXT holding exact
-- decimal strings (SQLite has no exact decimal type); quantities INTEGER.

CREATE TABLE events (
    seq     INTEGER PRIMARY KEY CHECK (seq > 0),
    at_ms   INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    player  INTEGER,
    payload TEXT    NOT NULL
);

CREATE TABLE players (
    player        INTEGER PRIMARY KEY,
    cash          TEXT    NOT NULL,
    reserved_cash TEXT    NOT NULL,
    realized_pnl  TEXT    NOT NULL,
    trades        INTEGER NOT NULL CHECK (trades >= 0),
    open_orders   INTEGER NOT NULL CHECK (open_orders >= 0)
);

CREATE TABLE holdings (
    player       INTEGER NOT NULL,
    asset        INTEGER NOT NULL,
    qty          INTEGER NOT NULL,
    reserved_qty INTEGER NOT NULL,
    cost_basis   TEXT    NOT NULL,
    PRIMARY KEY (player, asset)
) WITHOUT ROWID;

CREATE TABLE orders (
    order_id      INTEGER PRIMARY KEY,
    player        INTEGER NOT NULL,
    asset         INTEGER NOT NULL,
    side          TEXT    NOT NULL CHECK (side IN ('Buy', 'Sell')),
    qty           INTEGER NOT NULL CHECK (qty > 0),
    trigger_kind  TEXT    NOT NULL CHECK (trigger_kind IN ('Limit', 'Stop')),
    trigger_price TEXT    NOT NULL,
    reserved_cash TEXT    NOT NULL,
    placed_at_ms  INTEGER NOT NULL,
    placed_seq    INTEGER NOT NULL
);
CREATE INDEX orders_by_player ON orders (player);

CREATE TABLE trades (
    trade_id INTEGER PRIMARY KEY,
    seq      INTEGER NOT NULL,
    at_ms    INTEGER NOT NULL,
    player   INTEGER NOT NULL,
    asset    INTEGER NOT NULL,
    side     TEXT    NOT NULL CHECK (side IN ('Buy', 'Sell')),
    qty      INTEGER NOT NULL CHECK (qty > 0),
    price    TEXT    NOT NULL,
    fee      TEXT    NOT NULL,
    order_id INTEGER
);
CREATE INDEX trades_by_player ON trades (player, seq);

CREATE TABLE candles (
    asset    INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    open     REAL    NOT NULL,
    high     REAL    NOT NULL,
    low      REAL    NOT NULL,
    close    REAL    NOT NULL,
    volume   INTEGER NOT NULL,
    PRIMARY KEY (asset, start_ms)
) WITHOUT ROWID;

CREATE TABLE market_snapshot (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    seq     INTEGER NOT NULL,
    payload TEXT    NOT NULL
);
