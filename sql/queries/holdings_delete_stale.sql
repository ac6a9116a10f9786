-- Positions of the batch's players ($1) that their new ledgers no longer
-- hold (the ledgers' positions are the pairs ($2[i], $3[i])).
DELETE FROM holdings h
WHERE h.player = ANY($1::BIGINT[])
  AND NOT EXISTS (
      SELECT 1 FROM unnest($2::BIGINT[], $3::INTEGER[]) AS kept (player, asset)
      WHERE kept.player = h.player AND kept.asset = h.asset)
