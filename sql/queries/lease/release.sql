-- A holder stopping cleanly frees its lease at once (a standby need not
-- wait), storing how far it handled the command stream ($2) and how far
-- its notices are out ($3, as a renewal does).
UPDATE engine_lease
   SET expires_at = '-infinity', command_cursor = GREATEST(command_cursor, $2),
       notices_through = CASE WHEN $3::BIGINT > 0 THEN GREATEST(COALESCE(notices_through, 0), $3::BIGINT) END
 WHERE epoch = $1
