-- In an engine's write transaction: renew its lease and store the command
-- cursor and how far notices are out ($4; 0 from an engine that does not
-- publish notices on the outbox: not known), only while it holds epoch $1
-- (no row: it was superseded).
UPDATE engine_lease
   SET expires_at = now() + $2::BIGINT * INTERVAL '1 millisecond',
       command_cursor = GREATEST(command_cursor, $3),
       notices_through = CASE WHEN $4::BIGINT > 0 THEN GREATEST(COALESCE(notices_through, 0), $4::BIGINT) END
 WHERE epoch = $1
RETURNING epoch
