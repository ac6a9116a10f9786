-- One group commit's fills (a JSON array, see src/store/fills.rs) in the journal.
INSERT INTO fill_batches (first_seq, last_seq, last_trade, fills) VALUES ($1, $2, $3, $4)
