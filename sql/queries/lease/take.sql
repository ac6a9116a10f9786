-- Takes the lease from epoch $1 (seen expired or without its holder): a new
-- epoch, held by $2 through this session, until now() + $3 ms.
UPDATE engine_lease
   SET epoch = epoch + 1,
       holder = $2,
       holder_pid = pg_backend_pid(),
       expires_at = now() + $3::BIGINT * INTERVAL '1 millisecond',
       acquired_at = now()
 WHERE epoch = $1
RETURNING epoch, command_cursor, command_stream, notices_through
