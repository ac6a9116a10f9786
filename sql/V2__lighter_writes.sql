-- stockbot, schema version 2: cheaper group commits.
-- * The log's payload as JSON (validated text, kept as written) rather than
--   JSONB: appends skip building the binary form (measured ~15% faster
--   batches), and the rare readers (`audit`, operators) parse on read.
-- * Ledger tables leave room on each page, so rewriting a player's ledger
--   every batch can be a heap-only (HOT) update that touches no index.
ALTER TABLE events ALTER COLUMN payload TYPE JSON USING payload::JSON;
ALTER TABLE players SET (fillfactor = 70);
ALTER TABLE holdings SET (fillfactor = 70);
