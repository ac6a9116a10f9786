-- A ledger's positions; unchanged ones are left alone (no new row version).
INSERT INTO holdings (player, asset, qty, reserved_qty, cost_basis)
SELECT * FROM unnest($1::BIGINT[], $2::INTEGER[], $3::BIGINT[], $4::BIGINT[], $5::NUMERIC[])
ON CONFLICT (player, asset) DO UPDATE SET
    qty = EXCLUDED.qty,
    reserved_qty = EXCLUDED.reserved_qty,
    cost_basis = EXCLUDED.cost_basis
WHERE (holdings.qty, holdings.reserved_qty, holdings.cost_basis)
      IS DISTINCT FROM (EXCLUDED.qty, EXCLUDED.reserved_qty, EXCLUDED.cost_basis)
