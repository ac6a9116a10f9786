-- A holder stopping cleanly frees its lease at once (a standby need not
-- wait), storing how far it handled the command stream.
UPDATE engine_lease
   SET expires_at = '-infinity', command_cursor = GREATEST(command_cursor, $2)
 WHERE epoch = $1
