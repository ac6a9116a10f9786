-- In an engine's write transaction: renew its lease and store the command
-- cursor, only while it holds epoch $1 (no row: it was superseded).
UPDATE engine_lease
   SET expires_at = now() + $2::BIGINT * INTERVAL '1 millisecond',
       command_cursor = GREATEST(command_cursor, $3)
 WHERE epoch = $1
RETURNING epoch
