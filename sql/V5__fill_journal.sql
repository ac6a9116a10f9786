-- stockbot, schema version 5: fills and positions leave the row-per-item tables.
-- Measured on 2 cores: a row per fill (its `Traded` event in `events`, its
-- row in `trades` with two B-tree entries) cost ~14 µs of PostgreSQL CPU per
-- trade, half of it in `trades_by_player`, and the positions of every ledger
-- checkpointed were one `holdings` row each: the commit path was bounded by
-- the database, not the market. Now:
-- * `fill_batches` is the fill journal: the fills of one group commit as one
--   value (a JSON array, see src/store/fills.rs, kept as bytes: neither parsed
--   nor compressed on the way in), keyed by its seq range. Other events stay
--   one row each in `events`; the log is both tables, merged by seq.
-- * `player_fills` is each player's history in chunks: the ledger checkpoint
--   writes one row per player it checkpoints, holding the player's fills
--   since the previous one (JSON text, readable with `json_array_elements`).
-- * `fill_watermark`: every fill up to `seq` is in `player_fills`; fills after
--   it are read back from the journal when the store opens.
-- * Positions are part of the ledger row (`players.positions`, JSON
--   `[asset, qty, "cost_basis"]`), written with it.
-- Views named after the old tables keep their shape for operators; `trades`
-- shows checkpointed fills (the journal holds the last seconds).
CREATE TABLE fill_batches (
    first_seq  BIGINT PRIMARY KEY CHECK (first_seq > 0),
    last_seq   BIGINT NOT NULL CHECK (last_seq >= first_seq),
    -- Trade ids only grow: an append whose first id is not above the last
    -- entry's is refused (what the unique `trades.trade_id` used to catch).
    last_trade BIGINT NOT NULL,
    fills      BYTEA  NOT NULL
);
ALTER TABLE fill_batches ALTER COLUMN fills SET STORAGE EXTERNAL;

CREATE TABLE player_fills (
    player   BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    fills    TEXT   NOT NULL,
    PRIMARY KEY (player, last_seq)
);
-- JSON kept as text (not validated on the way in: the store wrote it), written
-- once, read rarely: stored as is (compressing costs the checkpoint CPU).
ALTER TABLE player_fills ALTER COLUMN fills SET STORAGE EXTERNAL;

CREATE TABLE fill_watermark (
    id         BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    seq        BIGINT  NOT NULL,
    -- The last trade id stored before the journal existed.
    last_trade BIGINT  NOT NULL DEFAULT 0
);

-- Fills stored so far: into one history chunk per player. Their `Traded`
-- events stay in `events` (the log keeps them; only new fills go to the journal).
INSERT INTO player_fills (player, last_seq, fills)
SELECT player, MAX(seq),
       json_agg(json_build_array(seq, at_ms, trade_id, order_id, player, asset, side, qty, price::TEXT, fee::TEXT)
                ORDER BY seq)::TEXT
FROM trades GROUP BY player;
INSERT INTO fill_watermark (seq, last_trade)
SELECT (SELECT COALESCE(MAX(seq), 0) FROM events), (SELECT COALESCE(MAX(trade_id), 0) FROM trades);

ALTER TABLE players ADD COLUMN positions TEXT NOT NULL DEFAULT '[]';
ALTER TABLE players ALTER COLUMN positions SET STORAGE EXTERNAL;
UPDATE players p SET positions = h.positions
FROM (SELECT player, json_agg(json_build_array(asset, qty, cost_basis::TEXT) ORDER BY asset)::TEXT AS positions
      FROM holdings WHERE qty > 0 GROUP BY player) h
WHERE h.player = p.player;

DROP TABLE trades;
DROP TABLE holdings;

CREATE VIEW trades AS
SELECT (f ->> 0)::BIGINT AS seq, (f ->> 1)::BIGINT AS at_ms, (f ->> 2)::BIGINT AS trade_id,
       (f ->> 3)::BIGINT AS order_id, pf.player, (f ->> 5)::INTEGER AS asset, f ->> 6 AS side,
       (f ->> 7)::BIGINT AS qty, (f ->> 8)::NUMERIC AS price, (f ->> 9)::NUMERIC AS fee
FROM player_fills pf, json_array_elements(pf.fills::JSON) f;

CREATE VIEW holdings AS
SELECT p.player, (h ->> 0)::INTEGER AS asset, (h ->> 1)::BIGINT AS qty, (h ->> 2)::NUMERIC AS cost_basis
FROM players p, json_array_elements(p.positions::JSON) h;
