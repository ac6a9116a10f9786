-- Stored shares per asset (assets nobody holds are left out).
SELECT asset, SUM(qty)::BIGINT FROM holdings GROUP BY asset HAVING SUM(qty) <> 0 ORDER BY asset
