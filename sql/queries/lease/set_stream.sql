-- The command stream the cursor counts in changed (a stream created anew):
-- its cursor starts over.
UPDATE engine_lease SET command_stream = $2, command_cursor = $3 WHERE epoch = $1 RETURNING epoch
