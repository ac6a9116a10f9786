-- stockbot, schema version 6: the fill journal and the history chunks are
-- compressed with lz4 where the server has it (PostgreSQL 14+ built with
-- lz4, as Debian's and the official images are). JSON fills shrink a few
-- times, so a checkpoint writes a fraction of the TOAST chunks and WAL it
-- did uncompressed; lz4 costs far less CPU than that saves (measured with
-- `stockbot loadgen`: more trades per second, fewer slow seconds during
-- checkpoints). Without lz4 the columns stay stored as they are: pglz would
-- cost more than it saves.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE fill_batches ALTER COLUMN fills SET STORAGE EXTENDED;
        ALTER TABLE fill_batches ALTER COLUMN fills SET COMPRESSION lz4;
        ALTER TABLE player_fills ALTER COLUMN fills SET STORAGE EXTENDED;
        ALTER TABLE player_fills ALTER COLUMN fills SET COMPRESSION lz4;
    END IF;
END
$$;
