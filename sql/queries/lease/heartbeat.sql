-- The holder's heartbeat on its lease session: renews while it holds epoch
-- $1 (this session becomes the one whose end frees the lease; a session
-- opened anew after a lost connection takes over from the old one), storing
-- the cursor and how far notices are out as a renewal does.
UPDATE engine_lease
   SET expires_at = now() + $2::BIGINT * INTERVAL '1 millisecond',
       holder_pid = pg_backend_pid(),
       acquired_at = CASE WHEN holder_pid = pg_backend_pid() THEN acquired_at ELSE now() END,
       command_cursor = GREATEST(command_cursor, $3),
       notices_through = CASE WHEN $4::BIGINT > 0 THEN GREATEST(COALESCE(notices_through, 0), $4::BIGINT) END
 WHERE epoch = $1
RETURNING epoch
