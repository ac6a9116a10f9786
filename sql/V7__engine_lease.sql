-- stockbot, schema version 7: one active engine per database, fenced.
-- * `engine_lease` (one row) elects the engine that may write: the holder
--   with the current `epoch` until `expires_at` (the database's clock), or
--   until its lease session `holder_pid` is gone (a killed process loses its
--   connections at once). Every write transaction of an engine checks the
--   epoch it holds, and its group commits renew the lease in the same
--   transaction, so a superseded engine can never write again.
-- * `command_cursor`: every message of the command stream up to this
--   stream sequence is fully handled (effects durable, replies published);
--   a new engine reads the stream from the next one. `command_stream` names
--   the stream the cursor belongs to (a stream created anew starts over).
-- * `command_outcomes`: outcomes of stream commands applied in a group
--   commit, so a command delivered again after a takeover answers as it did
--   and changes nothing. Rows wholly behind the cursor are pruned.
CREATE TABLE engine_lease (
    id             BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    epoch          BIGINT      NOT NULL,
    holder         TEXT        NOT NULL,
    holder_pid     INTEGER     NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    acquired_at    TIMESTAMPTZ NOT NULL,
    command_cursor BIGINT      NOT NULL DEFAULT 0,
    command_stream TEXT        NOT NULL DEFAULT ''
);
INSERT INTO engine_lease (epoch, holder, holder_pid, expires_at, acquired_at)
VALUES (0, '', 0, '-infinity', now());

CREATE TABLE command_outcomes (
    id           BIGSERIAL PRIMARY KEY,
    -- Stream sequences of the first and last message the outcomes belong to.
    first_message BIGINT NOT NULL,
    last_message  BIGINT NOT NULL,
    -- JSON `[[{"message":…,"index":…}, outcome], …]`.
    outcomes      JSON   NOT NULL
);
CREATE INDEX command_outcomes_by_last ON command_outcomes (last_message);
