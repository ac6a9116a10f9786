-- stockbot, schema version 8: the outcomes of a group commit's stream
-- commands (one row per commit, a JSON array of every command's outcome,
-- tens of kilobytes under load) are compressed with lz4 where the server
-- has it, as the fill journal is since version 6: pglz, the default,
-- cost the database more CPU per trade than the rest of the commit's rows
-- (seen in a profile of the split deployment under `stockbot loadgen`).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE command_outcomes ALTER COLUMN outcomes SET COMPRESSION lz4;
    END IF;
END
$$;
