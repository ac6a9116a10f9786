-- stockbot, schema version 1: the append-only event log and the state the
-- engine derives from it, written together in one transaction per batch.
-- Money is NUMERIC (exact); quantities are whole shares in BIGINT.

-- The log: one row per event, seq from 1 without gaps. payload is the whole
-- `Stamped` as serde_json writes it.
CREATE TABLE events (
    seq     BIGINT PRIMARY KEY CHECK (seq > 0),
    at_ms   BIGINT NOT NULL,
    kind    TEXT   NOT NULL,
    player  BIGINT,
    payload JSONB  NOT NULL
);

-- Player ledgers as the market left them after the last batch.
CREATE TABLE players (
    player        BIGINT  PRIMARY KEY,
    cash          NUMERIC NOT NULL,
    reserved_cash NUMERIC NOT NULL,
    realized_pnl  NUMERIC NOT NULL,
    trades        BIGINT  NOT NULL CHECK (trades >= 0),
    open_orders   INTEGER NOT NULL CHECK (open_orders >= 0)
);

-- Positions of the ledgers above (no row for an asset a player left).
CREATE TABLE holdings (
    player       BIGINT  NOT NULL,
    asset        INTEGER NOT NULL,
    qty          BIGINT  NOT NULL,
    reserved_qty BIGINT  NOT NULL,
    cost_basis   NUMERIC NOT NULL,
    PRIMARY KEY (player, asset)
);

-- Orders resting on the books (limit and stop), until filled or cancelled.
CREATE TABLE orders (
    order_id      BIGINT  PRIMARY KEY,
    player        BIGINT  NOT NULL,
    asset         INTEGER NOT NULL,
    side          TEXT    NOT NULL CHECK (side IN ('Buy', 'Sell')),
    qty           BIGINT  NOT NULL CHECK (qty > 0),
    trigger_kind  TEXT    NOT NULL CHECK (trigger_kind IN ('Limit', 'Stop')),
    trigger_price NUMERIC NOT NULL,
    reserved_cash NUMERIC NOT NULL,
    placed_at_ms  BIGINT  NOT NULL,
    placed_seq    BIGINT  NOT NULL
);
CREATE INDEX orders_by_player ON orders (player);

-- Every fill, append-only (the `Traded` events, in columns).
CREATE TABLE trades (
    trade_id BIGINT  PRIMARY KEY,
    seq      BIGINT  NOT NULL,
    at_ms    BIGINT  NOT NULL,
    player   BIGINT  NOT NULL,
    asset    INTEGER NOT NULL,
    side     TEXT    NOT NULL CHECK (side IN ('Buy', 'Sell')),
    qty      BIGINT  NOT NULL CHECK (qty > 0),
    price    NUMERIC NOT NULL,
    fee      NUMERIC NOT NULL,
    order_id BIGINT
);
CREATE INDEX trades_by_player ON trades (player, seq);

-- One-minute OHLC of the model mid (from `Ticked`), with traded volume.
CREATE TABLE candles (
    asset    INTEGER          NOT NULL,
    start_ms BIGINT           NOT NULL,
    open     DOUBLE PRECISION NOT NULL,
    high     DOUBLE PRECISION NOT NULL,
    low      DOUBLE PRECISION NOT NULL,
    close    DOUBLE PRECISION NOT NULL,
    volume   BIGINT           NOT NULL,
    PRIMARY KEY (asset, start_ms)
);

-- The last market snapshot (books, price models); seq = last event it covers.
CREATE TABLE market_snapshot (
    id      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    seq     BIGINT  NOT NULL,
    payload JSON    NOT NULL
);
